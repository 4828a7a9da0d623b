"""The command line's grammar: ``build_parser``, its commands and options, and the types of their values."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from imagegen import __version__
from imagegen.api import (
    ASPECT_RATIOS,
    DEFAULT_API_URL,
    DEFAULT_ASPECT_RATIO,
    DEFAULT_OUTPUT_FORMAT,
    DEFAULT_SAFETY_TOLERANCE,
    DEFAULT_SIZE,
    FALLBACK_MODELS,
    FLUX_MODELS,
    FOUR_O_MODEL,
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    LIST_LIMIT_MIN,
    MAX_EDIT_SAFETY_TOLERANCE,
    MAX_FILES,
    MAX_SAFETY_TOLERANCE,
    MAX_WATERMARK_CHARS,
    OUTPUT_FORMATS,
    SIZES,
    TASK_STATUSES,
    VARIANTS,
    is_http_url,
    is_reference,
)
from imagegen.cli.context import ENV_API_KEY, ENV_API_URL
from imagegen.cli.generate import cmd_edit, cmd_generate
from imagegen.cli.market import input_json, input_pair
from imagegen.cli.models import cmd_models
from imagegen.cli.tasks import cmd_delete, cmd_list, cmd_status


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


def _image_source(text: str) -> str:
    """An image URL, or upload:<uploadId> / task:<taskId>/<index>: an image the bundle holds."""
    if not (is_http_url(text) or is_reference(text)):
        raise argparse.ArgumentTypeError(
            f"not an http(s) URL, upload:<uploadId> or task:<taskId>/<index>: {text!r}"
        )
    return text


def _generation_options(gen: argparse.ArgumentParser, *, prompt: str = "?") -> None:
    """The options of a generation, shared by generate and edit (whose prompt is required)."""
    if prompt == "?":
        gen.add_argument("prompt", nargs="?", help="what to draw (optional with --files)")
    else:
        gen.add_argument("prompt", help="what to change")
    gen.add_argument(
        "--model",
        metavar="MODEL",
        help=f"the image model (default {FOUR_O_MODEL}; {' and '.join(FLUX_MODELS)} are Flux Kontext; "
        "any other is a Market model: `imagegen models` lists them, give its fields with --input)",
    )
    market = gen.add_argument_group("Market model options (imagegen models MODEL lists a model's fields)")
    market.add_argument(
        "--input",
        dest="inputs",
        action="append",
        default=[],
        type=input_pair,
        metavar="KEY=VALUE",
        help="one field of the model's input (repeat it). VALUE is read as JSON when it parses "
        '(4, 2.5, true, ["https://..."]), else kept as text; but a field that takes text keeps the text '
        'as written (seed=42 for a text seed, num_images=2 as "2"), and a field that takes a list takes '
        "one VALUE as its item (KEY again adds one). PROMPT goes in as input.prompt",
    )
    market.add_argument(
        "--input-json",
        type=input_json,
        metavar="JSON|@FILE",
        help="the whole input object as JSON, or @file.json; PROMPT and --input fields go over it",
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
        type=_image_source,
        default=[],
        metavar="URL",
        help=f"reference images (at most {MAX_FILES}): URLs (.png, .jpg, .webp...), upload:ID, task:ID/N",
    )
    four_o.add_argument(
        "--mask", type=_image_source, metavar="URL", help="mask image URL or reference (needs --files)"
    )
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
    flux.add_argument(
        "--input-image", type=_image_source, metavar="URL", help="an image to edit: a URL or a reference"
    )
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
        description="Generate images with the 4o Image API, Flux Kontext or a Market model (imagegen "
        "models lists them) through the image pipeline bundle.",
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
        "edit an image. With a Market model (any other: `imagegen models`) the prompt goes in as "
        "input.prompt and its other fields with --input or --input-json. Each model takes only its own "
        "options.",
    )
    _generation_options(gen)
    gen.add_argument(
        "--image",
        dest="uploads",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="a local PNG, JPEG or WebP to upload (POST /uploads) and edit: one of the --files of "
        f"{FOUR_O_MODEL}, the --input-image of Flux Kontext, or a Market model's first image field "
        "(repeat it for several images where the model takes them)",
    )
    gen.set_defaults(handler=cmd_generate)

    edit = commands.add_parser(
        "edit",
        help="edit an image a task stored (task:<taskId>/<index>), then wait and download as generate",
        description="Submit an edit of image N of a stored task: the image goes to the model by reference "
        f"(task:<taskId>/<N>), never downloaded and uploaded again. With {FOUR_O_MODEL} (the default) it is "
        "the reference image (filesUrl), with Flux Kontext the input image, with a Market model its first "
        "image field. Every generate option applies.",
    )
    edit.add_argument("task_id", metavar="TASK_ID", help="the task whose stored image to edit")
    _generation_options(edit, prompt="required")
    edit.add_argument(
        "--image",
        dest="image_index",
        type=int,
        default=0,
        metavar="N",
        help="which of its images (default 0)",
    )
    edit.set_defaults(handler=cmd_edit, uploads=[])

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

    models = commands.add_parser(
        "models",
        help="list the models the API offers, or one model's input fields",
        description="Every model POST /tasks takes (GET /models): its family, how many images it makes, "
        "its formats and the fields that take image URLs; with MODEL, that model's input fields.",
    )
    models.add_argument("model", nargs="?", metavar="MODEL", help="one model's fields")
    _global_options(models)
    models.set_defaults(handler=cmd_models)

    delete = commands.add_parser(
        "delete",
        help="delete a finished task and its images",
        description="Delete a stored or failed task and every stored version of its images.",
    )
    delete.add_argument("task_id", metavar="TASK_ID")
    _global_options(delete)
    delete.set_defaults(handler=cmd_delete)
    return parser
