"""``imagegen``: generate images through the bundle's API and download them.

    imagegen generate "a red fox in snow" --size 3:2 --variants 2 --out ./images
    imagegen generate --files https://example.com/photo.png      # an edit: reference images, no prompt
    imagegen generate --model flux-kontext-pro --aspect-ratio 21:9 --format png "a lighthouse at dusk"
    imagegen generate --model flux-kontext-max --input-image https://example.com/photo.jpg "make it snow"
    imagegen generate --model nano-banana-pro --input aspect_ratio=16:9 --input resolution=2K "a lighthouse"
    imagegen generate --model google/imagen4-fast --input-json @input.json "four owls"
    imagegen models [MODEL]                                      # the models, or one model's input fields
    imagegen status TASK_ID
    imagegen list [--status S] [--limit N] [--all]
    imagegen delete TASK_ID

``--json`` (anywhere on the line) makes every command print exactly one JSON document on stdout and
nothing else there; progress and messages go to stderr. The API is ``--api-url`` / ``IMAGEGEN_API_URL``
(default the local stack, http://127.0.0.1:3000), its key ``--api-key`` / ``IMAGEGEN_API_KEY``.

Exit codes: 0 ok, 1 the task failed, 2 usage or validation error, 3 API or network error,
4 timed out waiting for the task (130 when interrupted).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

import httpx

from imagegen.api import ApiError
from imagegen.cli.api_errors import report_api_error
from imagegen.cli.context import Runtime
from imagegen.cli.generate import image_filename
from imagegen.cli.output import ExitCode, UsageError, err
from imagegen.cli.parser import build_parser

__all__ = ["ExitCode", "build_parser", "image_filename", "main"]


def main(
    argv: Sequence[str] | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> int:
    """Run the CLI and return its exit code (the console script passes it to ``sys.exit``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        if isinstance(exc.code, int):
            return exc.code
        return ExitCode.OK if exc.code is None else ExitCode.USAGE
    args.json = getattr(args, "json", False)
    runtime = Runtime(transport=transport, sleep=sleep, monotonic=monotonic)
    try:
        return int(args.handler(args, runtime))
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        err(f"imagegen: error: {exc}")
        return ExitCode.USAGE
    except ApiError as exc:
        code = report_api_error(exc, args)
        _resume_hint(args)
        return code
    except KeyboardInterrupt:
        err("\ninterrupted")
        _resume_hint(args)
        return ExitCode.INTERRUPTED


def _resume_hint(args: argparse.Namespace) -> None:
    if args.command == "generate" and getattr(args, "task_id", None):
        err(f"the task {args.task_id} was submitted: check it later with `imagegen status {args.task_id}`")
