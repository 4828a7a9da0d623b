"""The ``generate`` command: submit the request, follow the task with a progress bar, download the images."""

from __future__ import annotations

import argparse
import math
import mimetypes
import re
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagegen.api import (
    FLUX_FIELDS,
    FLUX_MODELS,
    FOUR_O_FIELDS,
    FOUR_O_MODEL,
    ApiConnectionError,
    ApiError,
    ChecksumMismatchError,
    DownloadedImage,
    DownloadError,
    ImageApiClient,
    Task,
    TaskImage,
    TaskRequest,
)
from imagegen.cli.context import Runtime, open_client
from imagegen.cli.market import build_input, json_types
from imagegen.cli.output import ExitCode, UsageError, err, print_json
from imagegen.progress import ProgressReporter

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
    "input": "--input",
    "input.prompt": "PROMPT",
}

EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/jpg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
}


class TaskTimeout(Exception):
    def __init__(self, task_id: str, timeout: float, last_status: str | None) -> None:
        super().__init__(task_id)
        self.task_id = task_id
        self.timeout = timeout
        self.last_status = last_status


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


def cmd_edit(args: argparse.Namespace, runtime: Runtime) -> int:
    """``imagegen edit TASK_ID [--image N] PROMPT``: a generate whose input is task:<TASK_ID>/<N>."""
    if args.image_index < 0:
        raise UsageError("--image: the index of a stored image, 0 or more")
    reference = f"task:{args.task_id}/{args.image_index}"
    model = args.model or FOUR_O_MODEL
    if model in FLUX_MODELS:
        if args.input_image:
            raise UsageError("--input-image: edit takes its image from the task; drop --input-image")
        args.input_image = reference
    elif model == FOUR_O_MODEL:
        args.files = [reference, *args.files]
    else:
        with open_client(args, runtime, lambda _notice: None) as client:
            described = _described(client.list_models(), model)
        fields = (described or {}).get("imageUrlFields") or []
        if not fields:
            raise UsageError(f"--model {model} takes no input image: `imagegen models` lists those that do")
        # the catalogue types it: a list field takes the reference as its one item (build_input)
        args.inputs = [*args.inputs, (fields[0], reference)]
    return cmd_generate(args, runtime)


def _upload_images(args: argparse.Namespace, runtime: Runtime) -> None:
    """--image PATH: upload each local file (POST /uploads and its presigned PUT) and use its reference:
    one of the 4o --files, the Flux Kontext --input-image, or a Market model's first image field (as
    --input FIELD=upload:<id>: one item each of an array field)."""
    paths: list[Path] = list(getattr(args, "uploads", None) or [])
    if not paths:
        return
    model = args.model or FOUR_O_MODEL
    if model in FLUX_MODELS and (len(paths) > 1 or args.input_image):
        raise UsageError("--image: Flux Kontext edits one image: give one --image and no --input-image")
    for path in paths:
        if not path.is_file():
            raise UsageError(f"--image: no such file: {str(path)!r}")
    references = []
    with open_client(args, runtime, lambda _notice: None) as client:
        catalogue = client.list_models()
        market_field = None
        if model not in (FOUR_O_MODEL, *FLUX_MODELS):
            market_field = _market_image_field(catalogue, model, len(paths))
        field = market_field or ("inputImage" if model in FLUX_MODELS else "filesUrl")
        _within_the_models_limit(catalogue, model, field, paths)
        for path in paths:
            try:
                references.append(client.upload_image(path).reference)
            except ValueError as exc:
                raise UsageError(f"--image: {exc}") from None
    if market_field is not None:
        args.inputs = [*args.inputs, *((market_field, reference) for reference in references)]
    elif model in FLUX_MODELS:
        args.input_image = references[0]
    else:
        args.files = [*args.files, *references]


def _described(catalogue: list[dict[str, Any]], model: str) -> dict[str, Any] | None:
    """The model's entry in GET /models, if it has one."""
    return next((entry for entry in catalogue if entry.get("model") == model), None)


def _within_the_models_limit(
    catalogue: list[dict[str, Any]], model: str, field: str, paths: list[Path]
) -> None:
    """Refuse, before uploading it, a file larger than GET /models says the model takes in that field."""
    limit = ((_described(catalogue, model) or {}).get("maxInputBytes") or {}).get(field)
    for path in paths:
        size = path.stat().st_size
        if isinstance(limit, int) and size > limit:
            raise UsageError(
                f"--image: {str(path)!r} is {size} bytes: {model} takes at most {limit} in {field}"
            )


def _market_image_field(catalogue: list[dict[str, Any]], model: str, count: int) -> str:
    """The first image field of a Market model (GET /models), checked to take `count` images."""
    described = _described(catalogue, model)
    if described is None:
        raise UsageError(f"--model {model} is not a model this API takes: `imagegen models` lists them")
    fields = described.get("imageUrlFields") or []
    if not fields:
        raise UsageError(f"--image: {model} takes no input image: `imagegen models` lists those that do")
    schema = ((described.get("input") or {}).get("properties") or {}).get(fields[0]) or {}
    if count > 1 and "array" not in json_types(schema):
        raise UsageError(f"--image: {model}'s {fields[0]} takes one image: give one --image")
    return str(fields[0])


def cmd_generate(args: argparse.Namespace, runtime: Runtime) -> int:
    _upload_images(args, runtime)
    request = _request(args, schema=None)
    if problems := _request_problems(request):
        raise UsageError("; ".join(problems))
    reporter = ProgressReporter(sys.stderr, monotonic=runtime.monotonic)
    with open_client(args, runtime, reporter.note) as client:
        if request.is_market:
            request = _request(args, schema=_market_schema(client, request.model_name))
        out: Path = args.out
        if not args.no_download:
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                reason = exc.strerror or exc
                raise UsageError(f"cannot use {str(out)!r} as the output directory: {reason}") from None
        submission = client.submit_task(request, idempotency_key=str(uuid.uuid4()))
        args.task_id = submission.task_id  # for the error messages
        generation = Generation(submission.task_id)
        if not args.json:
            print(f"taskId: {submission.task_id}", flush=True)
        try:
            return _follow(client, request, generation, args, reporter, runtime)
        finally:
            if args.json:  # once submitted, the task exists: say so, whatever happened next
                print_json(generation.to_json())


def _request(args: argparse.Namespace, schema: dict[str, Any] | None) -> TaskRequest:
    """The request the options describe. A Market model's prompt goes inside its input (``schema``, the
    model's fields from GET /models, types each --input VALUE; None: the VALUE's JSON alone)."""
    market = TaskRequest(model=args.model).is_market
    if market and args.prompt is not None and any(key == "prompt" for key, _ in args.inputs):
        raise UsageError("the prompt is given twice: as PROMPT and as --input prompt=...; give it once")
    given = build_input(
        args.input_json, args.prompt if market else None, args.inputs, schema if market else None
    )
    return TaskRequest(
        prompt=None if market else args.prompt,
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
        input=given,
    )


def _market_schema(client: ImageApiClient, model: str) -> dict[str, Any] | None:
    """The model's input fields from the catalogue (GET /models, read once), to type the --input values;
    a model the catalogue does not list is a usage error before anything is submitted. When the catalogue
    cannot be read (an API without GET /models), a warning, and the API checks the model and its input."""
    try:
        catalogue = client.list_models()
    except ApiConnectionError:
        raise  # submitting would fail the same way
    except ApiError as exc:
        err(
            f"warning: cannot read the models (GET /models: {exc.message}); --input values are read as "
            "JSON where they parse, and the API checks the model and its input"
        )
        return None
    entry = next((entry for entry in catalogue if entry.get("model") == model), None)
    if entry is None:
        raise UsageError(f"{model!r} is not a model of this API; `imagegen models` lists them")
    if entry.get("request") != "input":
        raise UsageError(
            f"{model} takes its own request fields, not an input object, and this imagegen does not know "
            "them: upgrade imagegen"
        )
    schema = entry.get("input")
    return schema if isinstance(schema, dict) else None


def _request_problems(request: TaskRequest) -> list[str]:
    """What is wrong with the request, in the command line's words: first the options of the other model,
    each named (nothing is sent while there is one), then the rest."""
    if request.is_market:
        return [f"{FLAGS.get(p.field, p.field)}: {_in_flags(p.message)}" for p in request.problems()]
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
        err(
            f"error: timed out after {exc.timeout:g}s waiting for task {task_id} (last status: "
            f"{exc.last_status or 'unknown'}); it may still finish: "
            f"check with `imagegen status {task_id}`"
        )
        return ExitCode.TIMEOUT
    finally:
        reporter.finish()

    if task.status == "failed":
        error = str(task.error) if task.error else "no error details"
        err(f"error: task {task_id} failed: {error}")
        return ExitCode.TASK_FAILED
    if not task.images:
        err(f"error: task {task_id} is stored but the API listed no images")
        return ExitCode.API
    if len(task.images) < request.image_count:
        err(f"warning: asked for {request.image_count} images, the task has {len(task.images)}")
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
            err(f"error: image {image.index}: {exc.message}; the file was not kept")
            continue
        except DownloadError as exc:
            failures += 1
            err(f"error: image {image.index}: {exc.message}")
            continue
        except ApiConnectionError as exc:
            failures += 1
            err(f"error: image {image.index}: cannot download ({exc.message})")
            continue
        except OSError as exc:
            failures += 1
            err(f"error: image {image.index}: cannot write {dest}: {exc.strerror or exc}")
            continue
        if image.sha256 is None:
            err(f"warning: image {image.index}: the API gave no sha256, {dest} was not verified")
        generation.files.append((image.index, saved))
        if not quiet:
            print(saved.path, flush=True)
    if failures:
        err(f"error: {failures} of {len(task.images)} images could not be saved")
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
