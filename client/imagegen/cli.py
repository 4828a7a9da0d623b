"""``imagegen``: generate images through the bundle's API and download them.

    imagegen generate "a red fox in snow" --size 3:2 --variants 2 --out ./images
    imagegen generate --files https://example.com/photo.png      # an edit: reference images, no prompt
    imagegen generate --model flux-kontext-pro --aspect-ratio 21:9 --format png "a lighthouse at dusk"
    imagegen generate --model flux-kontext-max --input-image https://example.com/photo.jpg "make it snow"
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
import json
import math
import mimetypes
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import httpx

from imagegen import __version__
from imagegen.api import (
    ASPECT_RATIOS,
    DEFAULT_API_URL,
    DEFAULT_ASPECT_RATIO,
    DEFAULT_OUTPUT_FORMAT,
    DEFAULT_SAFETY_TOLERANCE,
    DEFAULT_SIZE,
    FALLBACK_MODELS,
    FLUX_FIELDS,
    FLUX_MODELS,
    FOUR_O_FIELDS,
    FOUR_O_MODEL,
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    LIST_LIMIT_MIN,
    MAX_EDIT_SAFETY_TOLERANCE,
    MAX_FILES,
    MAX_SAFETY_TOLERANCE,
    MAX_WATERMARK_CHARS,
    MODELS,
    OUTPUT_FORMATS,
    SIZES,
    TASK_STATUSES,
    VARIANTS,
    ApiConnectionError,
    ApiError,
    ChecksumMismatchError,
    ConflictError,
    DownloadedImage,
    DownloadError,
    ForbiddenError,
    ImageApiClient,
    InsufficientCreditsError,
    RateLimitedError,
    RequestValidationError,
    RetryNotice,
    ServiceUnavailableError,
    Task,
    TaskImage,
    TaskNotFoundError,
    TaskRequest,
    UpstreamAuthError,
    is_http_url,
    normalize_base_url,
)
from imagegen.progress import ProgressReporter

__all__ = ["ExitCode", "build_parser", "image_filename", "main"]

ENV_API_URL = "IMAGEGEN_API_URL"
ENV_API_KEY = "IMAGEGEN_API_KEY"
TICK = 0.25  # seconds between redraws of the bar while waiting (TTY only)
# The request fields as the command line names them, for its messages.
FLAGS = {
    "prompt": "PROMPT",
    "model": "--model",
    "size": "--size",
    "filesUrl": "--files",
    "maskUrl": "--mask",
    "nVariants": "--variants",
    "isEnhance": "--enhance",
    "enableFallback": "--fallback",
    "fallbackModel": "--fallback-model",
    "aspectRatio": "--aspect-ratio",
    "inputImage": "--input-image",
    "outputFormat": "--format",
    "enableTranslation": "--translate",
    "promptUpsampling": "--upsample-prompt",
    "safetyTolerance": "--safety-tolerance",
    "watermark": "--watermark",
    "webhookUrl": "--webhook-url",
}

EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/jpg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
}


class ExitCode(IntEnum):
    OK = 0
    TASK_FAILED = 1
    USAGE = 2
    API = 3
    TIMEOUT = 4
    INTERRUPTED = 130


class UsageError(Exception):
    """A problem with the command line, reported with exit code 2."""


class TaskTimeout(Exception):
    def __init__(self, task_id: str, timeout: float, last_status: str | None) -> None:
        super().__init__(task_id)
        self.task_id = task_id
        self.timeout = timeout
        self.last_status = last_status


@dataclass
class Runtime:
    """What :func:`main` can be handed by tests: an httpx transport and the clock."""

    transport: httpx.BaseTransport | None
    sleep: Callable[[float], None]
    monotonic: Callable[[], float]


# ---------------------------------------------------------------------------------------------- parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _list_limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not LIST_LIMIT_MIN <= value <= LIST_LIMIT_MAX:
        raise argparse.ArgumentTypeError(f"must be {LIST_LIMIT_MIN} to {LIST_LIMIT_MAX}, got {value}")
    return value


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _http_url(text: str) -> str:
    if not is_http_url(text):
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {text!r}")
    return text


def _global_options(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: the options may come before or after the command without one hiding the other.
    group = parser.add_argument_group("API options")
    group.add_argument(
        "--api-url",
        default=argparse.SUPPRESS,
        metavar="URL",
        help=f"the bundle's API, e.g. https://abc.execute-api.us-east-1.amazonaws.com/Prod "
        f"(env {ENV_API_URL}; default {DEFAULT_API_URL}, the local stack of `make local`)",
    )
    group.add_argument(
        "--api-key",
        default=argparse.SUPPRESS,
        metavar="KEY",
        help=f"sent as x-api-key when the API requires one (env {ENV_API_KEY})",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print exactly one JSON document on stdout (progress and messages go to stderr)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagegen",
        description="Generate images with the 4o Image or Flux Kontext API through the image pipeline "
        "bundle.",
        epilog="exit codes: 0 ok, 1 task failed, 2 usage/validation error, 3 API/network error, 4 timeout",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _global_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    gen = commands.add_parser(
        "generate",
        help="submit a prompt, wait for the images and download them",
        description="Submit a generation, follow it with a progress bar, download and verify the images. "
        f"With {FOUR_O_MODEL} (the default) give a prompt, reference images (--files), or both: --files "
        "alone edits or varies the images. With a Flux Kontext model give a prompt, and --input-image to "
        "edit an image. Each model takes only its own options.",
    )
    gen.add_argument("prompt", nargs="?", help="what to draw (optional with --files)")
    gen.add_argument(
        "--model",
        choices=MODELS,
        help=f"the image model (default {FOUR_O_MODEL}; {' and '.join(FLUX_MODELS)} are Flux Kontext)",
    )
    gen.add_argument(
        "--out", type=Path, default=Path("images"), metavar="DIR", help="where to save (default ./images)"
    )
    gen.add_argument(
        "--webhook-url",
        "--webhook",
        dest="webhook",
        type=_http_url,
        metavar="URL",
        help="where the API sends one signed event when the task is stored or failed (https; "
        "a local stack also takes the http origins in its WEBHOOK_TRUSTED_ORIGINS)",
    )
    four_o = gen.add_argument_group(f"{FOUR_O_MODEL} options")
    four_o.add_argument("--size", choices=SIZES, help=f"aspect ratio (default {DEFAULT_SIZE})")
    four_o.add_argument("--variants", type=int, choices=VARIANTS, help="number of images (default 1)")
    four_o.add_argument(
        "--files",
        nargs="+",
        action="extend",
        type=_http_url,
        default=[],
        metavar="URL",
        help=f"reference image URLs (.png, .jpg, .webp...; at most {MAX_FILES})",
    )
    four_o.add_argument("--mask", type=_http_url, metavar="URL", help="mask image URL (needs --files)")
    four_o.add_argument(
        "--enhance", action="store_true", default=None, help="let the service enhance the prompt"
    )
    four_o.add_argument(
        "--fallback", action="store_true", default=None, help="fall back to another model if 4o fails"
    )
    four_o.add_argument("--fallback-model", choices=FALLBACK_MODELS, help="model for --fallback")
    flux = gen.add_argument_group(f"Flux Kontext options ({', '.join(FLUX_MODELS)})")
    flux.add_argument(
        "--aspect-ratio", choices=ASPECT_RATIOS, help=f"aspect ratio (default {DEFAULT_ASPECT_RATIO})"
    )
    flux.add_argument("--input-image", type=_http_url, metavar="URL", help="an image to edit")
    flux.add_argument(
        "--format",
        dest="output_format",
        choices=OUTPUT_FORMATS,
        help=f"image format (default {DEFAULT_OUTPUT_FORMAT}; saved as .jpg or .png)",
    )
    flux.add_argument(
        "--safety-tolerance",
        type=_whole_number,
        metavar="N",
        help=f"0 (strictest) to {MAX_SAFETY_TOLERANCE}, to {MAX_EDIT_SAFETY_TOLERANCE} with --input-image "
        f"(default {DEFAULT_SAFETY_TOLERANCE})",
    )
    flux.add_argument(
        "--translate",
        action=argparse.BooleanOptionalAction,
        help="translate a prompt that is not in English (the service's default: on)",
    )
    flux.add_argument(
        "--upsample-prompt", action="store_true", default=None, help="let the service elaborate the prompt"
    )
    flux.add_argument(
        "--watermark",
        metavar="TEXT",
        help=f"a watermark on the image (at most {MAX_WATERMARK_CHARS} characters)",
    )
    gen.add_argument(
        "--timeout",
        type=_positive_float,
        default=600.0,
        metavar="SECONDS",
        help="give up waiting after this long (default 600)",
    )
    gen.add_argument(
        "--poll-interval",
        type=_positive_float,
        default=2.0,
        metavar="S",
        help="seconds between status checks (default 2)",
    )
    gen.add_argument(
        "--no-download", action="store_true", help="print the image links instead of downloading"
    )
    _global_options(gen)
    gen.set_defaults(handler=cmd_generate)

    status = commands.add_parser(
        "status", help="show a task's status", description="Show a task's status, progress, error and images."
    )
    status.add_argument("task_id", metavar="TASK_ID")
    _global_options(status)
    status.set_defaults(handler=cmd_status)

    listing = commands.add_parser(
        "list",
        help="list your tasks, newest first",
        description="List this API key's tasks, newest first, a page at a time (--all: every page).",
    )
    listing.add_argument("--status", choices=TASK_STATUSES, help="only tasks in this status")
    listing.add_argument(
        "--limit",
        type=_list_limit,
        metavar="N",
        help=f"tasks per page, {LIST_LIMIT_MIN}-{LIST_LIMIT_MAX} (the API's default: {LIST_LIMIT_DEFAULT})",
    )
    listing.add_argument("--all", action="store_true", help="follow nextCursor through every page")
    listing.add_argument("--cursor", metavar="CURSOR", help="start at this page (a nextCursor)")
    _global_options(listing)
    listing.set_defaults(handler=cmd_list)

    delete = commands.add_parser(
        "delete",
        help="delete a finished task and its images",
        description="Delete a stored or failed task and every stored version of its images.",
    )
    delete.add_argument("task_id", metavar="TASK_ID")
    _global_options(delete)
    delete.set_defaults(handler=cmd_delete)
    return parser


# ---------------------------------------------------------------------------------------------- main


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
        _err(f"imagegen: error: {exc}")
        return ExitCode.USAGE
    except ApiError as exc:
        code = _report_api_error(exc, args)
        _resume_hint(args)
        return code
    except KeyboardInterrupt:
        _err("\ninterrupted")
        _resume_hint(args)
        return ExitCode.INTERRUPTED


def _resume_hint(args: argparse.Namespace) -> None:
    if args.command == "generate" and getattr(args, "task_id", None):
        _err(f"the task {args.task_id} was submitted: check it later with `imagegen status {args.task_id}`")


def _client(args: argparse.Namespace, runtime: Runtime, notify: Callable[[str], None]) -> ImageApiClient:
    api_url = getattr(args, "api_url", None) or os.environ.get(ENV_API_URL) or DEFAULT_API_URL
    api_key = getattr(args, "api_key", None) or os.environ.get(ENV_API_KEY) or None
    try:
        base_url = normalize_base_url(api_url)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    args.resolved_api_url, args.resolved_api_key = base_url, api_key

    def on_retry(notice: RetryNotice) -> None:
        notify(
            f"warning: {notice.reason} on {notice.method} {_short(notice.url)}; retrying in "
            f"{notice.delay:g}s (attempt {notice.attempt + 1} of {notice.max_attempts})"
        )

    return ImageApiClient(
        base_url, api_key, transport=runtime.transport, sleep=runtime.sleep, on_retry=on_retry
    )


# ---------------------------------------------------------------------------------------------- generate


@dataclass
class Generation:
    """What ``generate`` knows so far: the ``--json`` document, written whatever the outcome."""

    task_id: str
    task: Task | None = None
    files: list[tuple[int, DownloadedImage]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "taskId": self.task_id,
            "status": self.task.status if self.task else "submitted",
            "task": dict(self.task.raw) if self.task else None,
            "files": [
                {"index": index, "path": str(saved.path), "bytes": saved.bytes, "sha256": saved.sha256}
                for index, saved in self.files
            ],
        }


def cmd_generate(args: argparse.Namespace, runtime: Runtime) -> int:
    request = TaskRequest(
        prompt=args.prompt,
        model=args.model,
        size=args.size,
        files=tuple(args.files),
        mask=args.mask,
        variants=args.variants,
        enhance=args.enhance,
        fallback=args.fallback,
        fallback_model=args.fallback_model,
        aspect_ratio=args.aspect_ratio,
        input_image=args.input_image,
        output_format=args.output_format,
        translate=args.translate,
        upsample_prompt=args.upsample_prompt,
        safety_tolerance=args.safety_tolerance,
        watermark=args.watermark,
        webhook=args.webhook,
    )
    if problems := _request_problems(request):
        raise UsageError("; ".join(problems))
    out: Path = args.out
    if not args.no_download:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or exc
            raise UsageError(f"cannot use {str(out)!r} as the output directory: {reason}") from None

    reporter = ProgressReporter(sys.stderr, monotonic=runtime.monotonic)
    with _client(args, runtime, reporter.note) as client:
        submission = client.submit_task(request, idempotency_key=str(uuid.uuid4()))
        args.task_id = submission.task_id  # for the error messages
        generation = Generation(submission.task_id)
        if not args.json:
            print(f"taskId: {submission.task_id}", flush=True)
        try:
            return _follow(client, request, generation, args, reporter, runtime)
        finally:
            if args.json:  # once submitted, the task exists: say so, whatever happened next
                _print_json(generation.to_json())


def _request_problems(request: TaskRequest) -> list[str]:
    """What is wrong with the request, in the command line's words: first the options of the other model,
    each named (nothing is sent while there is one), then the rest."""
    others = FOUR_O_FIELDS if request.is_flux else FLUX_FIELDS
    flags = [
        "--no-translate" if name == "enableTranslation" and request.translate is False else FLAGS[name]
        for name in request.given()
        if name in others
    ]
    found = []
    if flags:
        named = ", ".join(flags)
        one = len(flags) == 1
        kind = FOUR_O_MODEL if request.is_flux else "Flux Kontext"
        what = f"{named} is a {kind} option" if one else f"{named} are {kind} options"
        it = "it" if one else "them"
        if request.is_flux:
            found.append(
                f"{what}: --model {request.model_name} does not take {it} (Flux Kontext takes "
                "--aspect-ratio, --input-image, --format, --safety-tolerance, --translate/--no-translate, "
                "--upsample-prompt, --watermark)"
            )
        else:
            found.append(
                f"{what}: {request.model_name} does not take {it} "
                f"(add --model {' or --model '.join(FLUX_MODELS)})"
            )
    found += [
        f"{FLAGS.get(p.field, p.field)}: {_in_flags(p.message)}"
        for p in request.problems()
        if p.field not in others
    ]
    return found


def _follow(
    client: ImageApiClient,
    request: TaskRequest,
    generation: Generation,
    args: argparse.Namespace,
    reporter: ProgressReporter,
    runtime: Runtime,
) -> int:
    task_id = generation.task_id
    try:
        task = _wait_for_task(client, generation, args.timeout, args.poll_interval, reporter, runtime)
    except TaskTimeout as exc:
        _err(
            f"error: timed out after {exc.timeout:g}s waiting for task {task_id} (last status: "
            f"{exc.last_status or 'unknown'}); it may still finish: "
            f"check with `imagegen status {task_id}`"
        )
        return ExitCode.TIMEOUT
    finally:
        reporter.finish()

    if task.status == "failed":
        error = str(task.error) if task.error else "no error details"
        _err(f"error: task {task_id} failed: {error}")
        return ExitCode.TASK_FAILED
    if not task.images:
        _err(f"error: task {task_id} is stored but the API listed no images")
        return ExitCode.API
    if len(task.images) < request.image_count:
        _err(f"warning: asked for {request.image_count} images, the task has {len(task.images)}")
    if args.no_download:
        if not args.json:
            for image in task.images:
                print(f"image {image.index}: {image.url}")
        return ExitCode.OK
    return _download_all(client, generation, args.out, quiet=args.json)


def _in_flags(message: str) -> str:
    """A request problem in the command line's words: ``filesUrl`` -> ``--files``."""
    return re.sub(r"\b[a-z]+[A-Z]\w*\b", lambda m: FLAGS.get(m.group(), m.group()), message)


def _wait_for_task(
    client: ImageApiClient,
    generation: Generation,
    timeout: float,
    interval: float,
    reporter: ProgressReporter,
    runtime: Runtime,
) -> Task:
    """Poll until the task is stored/failed. Bounded twice: by the clock and by a number of polls."""
    deadline = runtime.monotonic() + timeout
    reporter.update("submitted")
    for _ in range(math.ceil(timeout / interval) + 1):
        remaining = deadline - runtime.monotonic()
        if remaining <= 0:
            break
        _wait(min(interval, remaining), reporter, runtime)
        task = generation.task = client.get_task(generation.task_id)
        reporter.update(task.status, task.progress)
        if task.terminal:
            return task
    raise TaskTimeout(generation.task_id, timeout, reporter.status)


def _wait(seconds: float, reporter: ProgressReporter, runtime: Runtime) -> None:
    if not reporter.tty:
        runtime.sleep(seconds)
        return
    end = runtime.monotonic() + seconds
    while (left := end - runtime.monotonic()) > 0:
        runtime.sleep(min(TICK, left))
        reporter.tick()


def _download_all(client: ImageApiClient, generation: Generation, out: Path, *, quiet: bool) -> int:
    """Download every image of the task into ``out``; each saved path on stdout unless ``quiet``."""
    assert generation.task is not None
    task = generation.task
    failures = 0
    for image in task.images:
        dest = out / image_filename(task.task_id, image)
        try:
            saved = client.download_image(image.url or "", dest, expected_sha256=image.sha256)
        except ChecksumMismatchError as exc:
            failures += 1
            _err(f"error: image {image.index}: {exc.message}; the file was not kept")
            continue
        except DownloadError as exc:
            failures += 1
            _err(f"error: image {image.index}: {exc.message}")
            continue
        except ApiConnectionError as exc:
            failures += 1
            _err(f"error: image {image.index}: cannot download ({exc.message})")
            continue
        except OSError as exc:
            failures += 1
            _err(f"error: image {image.index}: cannot write {dest}: {exc.strerror or exc}")
            continue
        if image.sha256 is None:
            _err(f"warning: image {image.index}: the API gave no sha256, {dest} was not verified")
        generation.files.append((image.index, saved))
        if not quiet:
            print(saved.path, flush=True)
    if failures:
        _err(f"error: {failures} of {len(task.images)} images could not be saved")
        return ExitCode.API
    return ExitCode.OK


def image_filename(task_id: str, image: TaskImage) -> str:
    """``{taskId}_{index}.{ext}``, the extension from the content type (``.jpg`` for a JPEG, ``.png``...),
    else from the stored key (``images/{taskId}/0.jpg``); the task id is made safe for a file name (it
    comes from the network)."""
    safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", task_id).lstrip(".") or "task"
    content_type = image.content_type.split(";", 1)[0].strip().lower()
    ext = EXTENSIONS.get(content_type)
    if ext is None:
        suffix = Path(image.key).suffix.lower().lstrip(".")
        ext = EXTENSIONS.get(f"image/{suffix}") if suffix else None
    if ext is None:
        guessed = mimetypes.guess_extension(content_type)
        ext = guessed.lstrip(".") if guessed else "bin"
    return f"{safe_id}_{image.index}.{ext}"


# ---------------------------------------------------------------------------------------------- status


def cmd_status(args: argparse.Namespace, runtime: Runtime) -> int:
    if not args.task_id.strip():
        raise UsageError("the task id is empty")
    with _client(args, runtime, _err) as client:
        task = client.get_task(args.task_id)
    if args.json:
        _print_json(task.raw)  # the API's answer as is
        return ExitCode.OK
    rows: list[tuple[str, Any]] = [("task", task.task_id)]
    if task.model:
        rows.append(("model", task.model))
    rows.append(("status", task.status))
    rows.append(("progress", "-" if task.progress is None else f"{round(task.progress * 100)}%"))
    if task.created_at:
        rows.append(("created", task.created_at))
    if task.updated_at:
        rows.append(("updated", task.updated_at))
    if task.error:
        rows.append(("error", str(task.error)))
    if task.notification:
        rows.append(("webhook", str(task.notification)))
    rows.append(("images", len(task.images)))
    for name, value in rows:
        print(f"{name + ':':<10}{value}")
    for image in task.images:
        size = f"{image.bytes} bytes" if image.bytes is not None else "? bytes"
        print(f"  [{image.index}] {image.content_type}, {size}, sha256 {image.sha256 or '?'}")
        print(f"      {image.url}")
    return ExitCode.OK


# ---------------------------------------------------------------------------------------------- list


def cmd_list(args: argparse.Namespace, runtime: Runtime) -> int:
    with _client(args, runtime, _err) as client:
        if args.all:
            pages = list(client.iter_pages(status=args.status, limit=args.limit, cursor=args.cursor))
            tasks = [task for page in pages for task in page.tasks]
            answer: dict[str, Any] = {"tasks": [dict(task.raw) for task in tasks], "nextCursor": None}
        else:
            page = client.list_tasks(status=args.status, limit=args.limit, cursor=args.cursor)
            tasks, answer = list(page.tasks), dict(page.raw)
    if args.json:
        _print_json(answer)
        return ExitCode.OK
    if not tasks:
        _err("no tasks" + (f" with status {args.status}" if args.status else ""))
    else:
        rows = [("TASK", "STATUS", "MODEL", "IMAGES", "CREATED", "ERROR")]
        rows += [
            (
                t.task_id,
                t.status,
                t.model or "-",
                str(len(t.images)),
                t.created_at or "-",
                str(t.error) if t.error else "",
            )
            for t in tasks
        ]
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        for row in rows:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if cursor := answer.get("nextCursor"):
        _err(f"more tasks: add --all for every page, or --cursor {cursor} for the next one")
    return ExitCode.OK


# ---------------------------------------------------------------------------------------------- delete


def cmd_delete(args: argparse.Namespace, runtime: Runtime) -> int:
    if not args.task_id.strip():
        raise UsageError("the task id is empty")
    with _client(args, runtime, _err) as client:
        deleted_now = client.delete_task(args.task_id)
    if args.json:
        _print_json({"taskId": args.task_id, "deleted": True})
    elif deleted_now:
        print(f"deleted task {args.task_id}")
    else:
        print(f"deleted task {args.task_id} (by an earlier try whose answer was lost)")
    return ExitCode.OK


# ---------------------------------------------------------------------------------------------- errors


def _report_api_error(exc: ApiError, args: argparse.Namespace) -> int:
    api_url = getattr(args, "resolved_api_url", DEFAULT_API_URL)
    status = f"HTTP {exc.status}" if exc.status is not None else ""
    match exc:
        case RequestValidationError():
            _err(f"error: the API rejected the request ({status}): {exc.message}")
            for field_error in exc.field_errors:
                _err(f"  - {field_error.field}: {field_error.message}")
            return ExitCode.USAGE
        case InsufficientCreditsError():
            _err(f"error: insufficient credits on the image service account ({status}): {exc.message}")
        case ForbiddenError():
            hint = (
                "the API key was rejected: check --api-key / " + ENV_API_KEY
                if getattr(args, "resolved_api_key", None)
                else f"this API needs a key: pass --api-key KEY or set {ENV_API_KEY}"
            )
            _err(f"error: forbidden ({status}): {hint}")
        case ConflictError() if args.command == "delete":
            _err(
                f"error: task {args.task_id} is still running ({status}): it can be deleted once it is "
                f"stored or failed (`imagegen status {args.task_id}`)"
            )
        case ConflictError():
            _err(f"error: conflict ({status}): {exc.message}{_advice(exc.message)}")
        case TaskNotFoundError():
            task_id = getattr(args, "task_id", "?")
            detail = "" if "not found" in exc.message.lower() else f": {exc.message}"
            _err(f"error: task {task_id} not found ({status}){detail}")
        case RateLimitedError():
            advice = _advice(exc.message)
            _err(f"error: still rate limited after several tries ({status}): {exc.message}{advice}")
        case UpstreamAuthError():
            _err(
                f"error: the image service rejected the API's own upstream key ({status}); "
                "not your fault: the operator of the API must fix it"
            )
        case ServiceUnavailableError():
            what = status if "unavailable" in exc.message.lower() else f"service unavailable ({status})"
            _err(f"error: {what}: {exc.message}{_advice(exc.message)}")
        case ApiConnectionError() if exc.refused:
            local = "start the local stack with `make local`, or " if _is_local(api_url) else ""
            _err(
                f"error: cannot connect to {api_url} (connection refused): "
                f"{local}check --api-url / {ENV_API_URL}"
            )
        case ApiConnectionError():
            _err(f"error: network error talking to {api_url}: {exc.message}")
        case _:
            where = f" from {exc.method} {_short(exc.url)}" if exc.method and exc.url else ""
            body = exc.body if isinstance(exc.body, str) or exc.body is None else json.dumps(exc.body)
            detail = f"{status}{where}" if status else f"bad answer{where}"
            _err(f"error: unexpected API answer ({detail}): {_one_line(body or exc.message)}")
    return ExitCode.API


def _advice(message: str) -> str:
    """``"; try again later"``, unless the API's message already says when to try again."""
    said = any(word in message.lower() for word in ("try again", "retry"))
    return "" if said else "; try again later"


def _is_local(url: str) -> bool:
    host = httpx.URL(url).host
    return host in ("127.0.0.1", "localhost", "::1", "0.0.0.0")  # noqa: S104


def _short(url: str | None) -> str:
    """A URL without its query string (presigned links carry credentials there)."""
    return (url or "").split("?", 1)[0]


def _one_line(text: str, limit: int = 500) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _print_json(document: Any) -> None:
    """The command's one JSON document, the only thing on stdout with --json."""
    print(json.dumps(document, indent=2), flush=True)


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
