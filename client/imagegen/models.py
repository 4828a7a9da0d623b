"""What the bundle's API takes and answers: the task request (for gpt-4o-image or Flux Kontext), the task
and its images, a page of tasks, the error body, retry notices.

The client installs without the Lambda layer, so these models are the client's own; they follow the API's
published contract (``openapi.json``: the request of ``POST /tasks``, ``TaskSubmitted``, ``TaskView``,
``TaskSummary``, ``TaskPage``, ``ErrorBody``), and ``tests/client/test_imagegen_contract.py`` fails when
they drift from it: every request field with its enum, limits and rules, every answer read and written
back without losing a field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Self, TypeGuard
from urllib.parse import urlsplit

from imagegen.errors import FieldError, UnexpectedResponseError

# -- the request (TaskRequest): which model, and that model's fields
FOUR_O_MODEL: Final = "gpt-4o-image"
FLUX_MODELS: Final = ("flux-kontext-pro", "flux-kontext-max")
MODELS: Final = (FOUR_O_MODEL, *FLUX_MODELS)
DEFAULT_MODEL: Final = FOUR_O_MODEL
# gpt-4o-image
SIZES: Final = ("1:1", "3:2", "2:3")
DEFAULT_SIZE: Final = "1:1"
VARIANTS: Final = (1, 2, 4)
FALLBACK_MODELS: Final = ("GPT_IMAGE_1", "FLUX_MAX")
MAX_FILES: Final = 5
# flux-kontext-pro, flux-kontext-max
ASPECT_RATIOS: Final = ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16")
DEFAULT_ASPECT_RATIO: Final = "16:9"
OUTPUT_FORMATS: Final = ("jpeg", "png")
DEFAULT_OUTPUT_FORMAT: Final = "jpeg"
MAX_SAFETY_TOLERANCE: Final = 6
MAX_EDIT_SAFETY_TOLERANCE: Final = 2  # with an inputImage
DEFAULT_SAFETY_TOLERANCE: Final = 2
MAX_WATERMARK_CHARS: Final = 200
# each model's own request fields (the API's names): another model's field is refused
FOUR_O_FIELDS: Final = (
    "size",
    "filesUrl",
    "maskUrl",
    "nVariants",
    "isEnhance",
    "enableFallback",
    "fallbackModel",
)
FLUX_FIELDS: Final = (
    "aspectRatio",
    "inputImage",
    "outputFormat",
    "enableTranslation",
    "promptUpsampling",
    "safetyTolerance",
    "watermark",
)
# both
MAX_PROMPT_CHARS: Final = 5000
PROMPT_PATTERN: Final = r"\S"
URL_MIN_CHARS: Final = 8
URL_MAX_CHARS: Final = 2048
HTTP_URL_PATTERN: Final = r"^https?://[^\s]+$"
IMAGE_EXTENSIONS: Final = (".jpg", ".jpeg", ".jfif", ".pjpeg", ".pjp", ".png", ".webp")
# An http(s) URL of an image file: a plain host name, an optional port, a path of URL characters ending
# in an image extension in any letter case: the contract's own pattern (filesUrl, maskUrl).
IMAGE_URL_PATTERN: Final = (
    r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/[A-Za-z0-9._~%!$&'()*+,;=:@/-]*"
    r"\.([jJ][pP][eE]?[gG]|[jJ][fF][iI][fF]|[pP][jJ][pP]([eE][gG])?|[pP][nN][gG]|[wW][eE][bB][pP])"
    r"([?#][!-~]*)?$"
)
# webhookUrl: an http(s) URL (HTTP_URL_PATTERN) that is also https to a plain host name.
WEBHOOK_URL_PATTERN: Final = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\s]*)?$"

# -- the answers (TaskView, TaskSummary) and GET /tasks
TASK_STATUSES: Final = ("submitted", "downloading", "stored", "failed")
TERMINAL_STATUSES: Final = frozenset({"stored", "failed"})
LIST_LIMIT_MIN: Final = 1
LIST_LIMIT_MAX: Final = 100
LIST_LIMIT_DEFAULT: Final = 20
NOTIFICATION_STATES: Final = ("pending", "delivered", "failed")


@dataclass(frozen=True)
class TaskRequest:
    """What ``POST /tasks`` accepts. ``model`` (None: the API's default, gpt-4o-image) chooses the fields:

    * gpt-4o-image: a prompt, reference images (``files``), or both; ``size``, ``mask``, ``variants``,
      ``enhance``, ``fallback``, ``fallback_model``;
    * flux-kontext-pro / flux-kontext-max: a prompt (required), ``aspect_ratio``, ``input_image`` (an
      edit), ``output_format``, ``translate``, ``upsample_prompt``, ``safety_tolerance``, ``watermark``.

    A field left None is not sent (the API applies its default); a field of the other model is refused.
    ``webhook`` (both) is told when the task ends. :meth:`problems` checks the request with the API's
    rules before anything is sent.
    """

    prompt: str | None = None
    model: str | None = None
    # gpt-4o-image
    size: str | None = None  # sent as DEFAULT_SIZE when None (the API requires it)
    files: tuple[str, ...] = ()
    mask: str | None = None
    variants: int | None = None  # sent as 1
    enhance: bool | None = None  # sent as False
    fallback: bool | None = None  # sent as False
    fallback_model: str | None = None
    # flux-kontext-pro, flux-kontext-max
    aspect_ratio: str | None = None
    input_image: str | None = None
    output_format: str | None = None
    translate: bool | None = None
    upsample_prompt: bool | None = None
    safety_tolerance: int | None = None
    watermark: str | None = None
    # both
    webhook: str | None = None

    @property
    def model_name(self) -> str:
        """The model the task runs on."""
        return self.model if self.model is not None else DEFAULT_MODEL

    @property
    def is_flux(self) -> bool:
        return self.model_name in FLUX_MODELS

    @property
    def image_count(self) -> int:
        """How many images the task makes: one with Flux Kontext, ``variants`` with 4o."""
        return 1 if self.is_flux else self.variants or 1

    def given(self) -> list[str]:
        """The model-specific fields this request sets, by their API names, in the contract's order."""
        values: dict[str, Any] = {
            "size": self.size,
            "filesUrl": self.files or None,
            "maskUrl": self.mask,
            "nVariants": self.variants,
            "isEnhance": self.enhance,
            "enableFallback": self.fallback,
            "fallbackModel": self.fallback_model,
            "aspectRatio": self.aspect_ratio,
            "inputImage": self.input_image,
            "outputFormat": self.output_format,
            "enableTranslation": self.translate,
            "promptUpsampling": self.upsample_prompt,
            "safetyTolerance": self.safety_tolerance,
            "watermark": self.watermark,
        }
        return [name for name, value in values.items() if value is not None]

    def problems(self) -> list[FieldError]:
        found: list[FieldError] = []
        if self.model is not None and self.model not in MODELS:
            found.append(FieldError("model", f"must be one of {', '.join(MODELS)}"))
        if self.prompt is not None:
            if not re.search(PROMPT_PATTERN, self.prompt):
                found.append(FieldError("prompt", "must not be empty"))
            elif len(self.prompt) > MAX_PROMPT_CHARS:
                found.append(
                    FieldError("prompt", f"at most {MAX_PROMPT_CHARS} characters (got {len(self.prompt)})")
                )
        if self.is_flux:
            found.extend(self._flux_problems())
        else:
            found.extend(self._four_o_problems())
        if self.webhook is not None and not (
            URL_MIN_CHARS <= len(self.webhook) <= URL_MAX_CHARS
            and re.search(HTTP_URL_PATTERN, self.webhook)
            and re.search(WEBHOOK_URL_PATTERN, self.webhook)
        ):
            found.append(FieldError("webhookUrl", f"not an https URL of a host name: {self.webhook!r}"))
        texts = (self.prompt, self.mask, self.input_image, self.watermark, self.webhook, *self.files)
        if any(_has_lone_surrogate(text) for text in texts if text):
            found.append(FieldError("body", "contains invalid Unicode (a lone surrogate)"))
        return found

    def _four_o_problems(self) -> list[FieldError]:
        found = [
            FieldError(name, f"is a Flux Kontext field; {self.model_name} does not take it")
            for name in self.given()
            if name in FLUX_FIELDS
        ]
        if self.prompt is None and not self.files:
            found.append(FieldError("prompt", "give a prompt, reference images (filesUrl), or both"))
        if self.size is not None and self.size not in SIZES:
            found.append(FieldError("size", f"must be one of {', '.join(SIZES)}"))
        if self.variants is not None and self.variants not in VARIANTS:
            found.append(FieldError("nVariants", f"must be one of {', '.join(map(str, VARIANTS))}"))
        if len(self.files) > MAX_FILES:
            found.append(FieldError("filesUrl", f"at most {MAX_FILES} URLs (got {len(self.files)})"))
        found.extend(FieldError("filesUrl", problem) for url in self.files if (problem := _image_url(url)))
        if self.mask is not None:
            if problem := _image_url(self.mask):
                found.append(FieldError("maskUrl", problem))
            if not self.files:
                found.append(FieldError("maskUrl", "a mask edits an image: give the image in filesUrl"))
        if self.fallback_model is not None:
            if self.fallback_model not in FALLBACK_MODELS:
                found.append(FieldError("fallbackModel", f"must be one of {', '.join(FALLBACK_MODELS)}"))
            if not self.fallback:
                found.append(FieldError("fallbackModel", "only meaningful with enableFallback"))
        return found

    def _flux_problems(self) -> list[FieldError]:
        found = [
            FieldError(name, f"is a {FOUR_O_MODEL} field; {self.model_name} does not take it")
            for name in self.given()
            if name in FOUR_O_FIELDS
        ]
        if self.prompt is None:
            found.append(FieldError("prompt", f"{self.model_name} needs a prompt"))
        if self.aspect_ratio is not None and self.aspect_ratio not in ASPECT_RATIOS:
            found.append(FieldError("aspectRatio", f"must be one of {', '.join(ASPECT_RATIOS)}"))
        if self.input_image is not None and not (
            URL_MIN_CHARS <= len(self.input_image) <= URL_MAX_CHARS
            and re.search(HTTP_URL_PATTERN, self.input_image)
        ):
            found.append(FieldError("inputImage", f"not an http(s) URL: {self.input_image!r}"))
        if self.output_format is not None and self.output_format not in OUTPUT_FORMATS:
            found.append(FieldError("outputFormat", f"must be one of {', '.join(OUTPUT_FORMATS)}"))
        if self.safety_tolerance is not None:
            highest = MAX_SAFETY_TOLERANCE if self.input_image is None else MAX_EDIT_SAFETY_TOLERANCE
            if isinstance(self.safety_tolerance, bool) or not 0 <= self.safety_tolerance <= highest:
                edit = " when editing an inputImage" if self.input_image is not None else ""
                found.append(FieldError("safetyTolerance", f"must be 0 to {highest}{edit}"))
        if self.watermark is not None and len(self.watermark) > MAX_WATERMARK_CHARS:
            found.append(FieldError("watermark", f"at most {MAX_WATERMARK_CHARS} characters"))
        return found

    def to_json(self) -> dict[str, Any]:
        """The body as sent: what is set, nothing left out (the API, not this method, says what is wrong).
        A 4o body always carries its size, variants, enhance and fallback (their defaults when unset)."""
        body: dict[str, Any] = {}
        if self.model is not None:
            body["model"] = self.model
        if self.prompt is not None:
            body["prompt"] = self.prompt
        if not self.is_flux:
            body |= {
                "size": DEFAULT_SIZE if self.size is None else self.size,
                "nVariants": 1 if self.variants is None else self.variants,
                "isEnhance": bool(self.enhance),
                "enableFallback": bool(self.fallback),
            }
        else:
            fields = {"size": self.size, "nVariants": self.variants}
            fields |= {"isEnhance": self.enhance, "enableFallback": self.fallback}
            body |= {name: value for name, value in fields.items() if value is not None}
        if self.files:
            body["filesUrl"] = list(self.files)
        optional = {
            "maskUrl": self.mask,
            "fallbackModel": self.fallback_model,
            "aspectRatio": self.aspect_ratio,
            "inputImage": self.input_image,
            "outputFormat": self.output_format,
            "enableTranslation": self.translate,
            "promptUpsampling": self.upsample_prompt,
            "safetyTolerance": self.safety_tolerance,
            "watermark": self.watermark,
            "webhookUrl": self.webhook,
        }
        body |= {name: value for name, value in optional.items() if value is not None}
        return body


@dataclass(frozen=True)
class Submission:
    """``202`` of ``POST /tasks`` (``TaskSubmitted``), with the Idempotency-Key that was sent."""

    task_id: str
    status: str
    idempotency_key: str

    @classmethod
    def from_json(cls, data: Any, *, idempotency_key: str) -> Self:
        if not isinstance(data, dict) or not _non_empty_str(data.get("taskId")):
            raise UnexpectedResponseError("the submission answer has no taskId", body=data)
        return cls(data["taskId"], str(data.get("status") or "submitted"), idempotency_key)

    def to_json(self) -> dict[str, Any]:
        return {"taskId": self.task_id, "status": self.status}


@dataclass(frozen=True)
class TaskImage:
    """A stored image: ``LinkedImage`` (with its presigned ``url``) in a task, ``StoredImageOut``
    (no link) in a page of tasks."""

    index: int
    url: str | None = None
    key: str = ""
    content_type: str = "application/octet-stream"
    bytes: int | None = None
    sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "index": self.index,
            "key": self.key,
            "contentType": self.content_type,
            "bytes": self.bytes,
            "sha256": self.sha256,
        }
        if self.url is not None:
            body["url"] = self.url
        return body


@dataclass(frozen=True)
class TaskError:
    """``TaskErrorOut``: the upstream's code (an int) or the bundle's (a string), and a message."""

    code: int | str | None
    message: str

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}" if self.code not in (None, "") else self.message

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class Notification:
    """``NotificationOut``: how the delivery of the task's webhook event stands."""

    state: str
    attempts: int = 0
    last_error: str | None = None

    def __str__(self) -> str:
        tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        return f"{self.state} ({tries}{f'; last error: {self.last_error}' if self.last_error else ''})"

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "attempts": self.attempts, "lastError": self.last_error}


@dataclass(frozen=True)
class Task:
    """``GET /tasks/{taskId}`` (``TaskView``), or one task of a page (``TaskSummary``: no progress, no
    links), with the ``model`` it runs on. Read leniently: only ``taskId`` and ``status`` must be there."""

    task_id: str
    status: str
    progress: float | None = None
    images: tuple[TaskImage, ...] = ()
    model: str | None = None  # gpt-4o-image, flux-kontext-pro, flux-kontext-max (None: not said)
    error: TaskError | None = None
    created_at: str | None = None
    updated_at: str | None = None
    notification: Notification | None = None  # when the task was submitted with a webhook
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_json(cls, data: Any, *, links: bool = True) -> Self:
        """Read a task; ``links=False`` for the summaries of ``GET /tasks``, whose images have no url.
        Raise :class:`UnexpectedResponseError` if it is not a task."""
        if not isinstance(data, dict):
            raise UnexpectedResponseError("the task answer is not a JSON object", body=data)
        task_id, status = data.get("taskId"), data.get("status")
        if not _non_empty_str(task_id) or not _non_empty_str(status):
            raise UnexpectedResponseError("the task answer has no taskId/status", body=data)
        images: list[TaskImage] = []
        for item in data.get("images") or ():
            if not isinstance(item, dict) or (links and not isinstance(item.get("url"), str)):
                raise UnexpectedResponseError("an image in the task answer has no url", body=data)
            index = item.get("index", len(images))
            images.append(
                TaskImage(
                    index=index if isinstance(index, int) and not isinstance(index, bool) else len(images),
                    url=item.get("url") if isinstance(item.get("url"), str) else None,
                    key=str(item.get("key") or ""),
                    content_type=str(item.get("contentType") or "application/octet-stream"),
                    bytes=item["bytes"] if isinstance(item.get("bytes"), int) else None,
                    sha256=item["sha256"].lower() if isinstance(item.get("sha256"), str) else None,
                )
            )
        error = data.get("error")
        task_error = None
        if isinstance(error, dict):
            task_error = TaskError(code=error.get("code"), message=str(error.get("message") or "no message"))
        elif isinstance(error, str) and error:
            task_error = TaskError(code=None, message=error)
        notification = data.get("notification")
        return cls(
            task_id=task_id,
            status=status,
            model=_opt_str(data.get("model")),
            progress=_progress(data.get("progress")),
            images=tuple(sorted(images, key=lambda i: i.index)),
            error=task_error,
            created_at=_opt_str(data.get("createdAt")),
            updated_at=_opt_str(data.get("updatedAt")),
            notification=Notification(
                state=str(notification.get("state") or "unknown"),
                attempts=notification["attempts"] if isinstance(notification.get("attempts"), int) else 0,
                last_error=_opt_str(notification.get("lastError")),
            )
            if isinstance(notification, dict)
            else None,
            raw=data,
        )

    def to_json(self, *, links: bool = True) -> dict[str, Any]:
        """The task as the API writes it (``links=False``: as a summary, without progress)."""
        body: dict[str, Any] = {"taskId": self.task_id, "status": self.status}
        if self.model is not None:
            body["model"] = self.model
        if links:
            body["progress"] = self.progress
        body |= {
            "images": [image.to_json() for image in self.images],
            "error": self.error.to_json() if self.error else None,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }
        if self.notification is not None:
            body["notification"] = self.notification.to_json()
        return body


@dataclass(frozen=True)
class TaskPage:
    """``GET /tasks`` (``TaskPage``): the caller's tasks, newest first, and the cursor of the next page."""

    tasks: tuple[Task, ...]
    next_cursor: str | None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: Any) -> Self:
        if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
            raise UnexpectedResponseError("the task list answer has no tasks", body=data)
        cursor = data.get("nextCursor")
        if cursor is not None and not _non_empty_str(cursor):
            raise UnexpectedResponseError("the task list answer has a bad nextCursor", body=data)
        tasks = tuple(Task.from_json(item, links=False) for item in data["tasks"])
        return cls(tasks=tasks, next_cursor=cursor, raw=data)

    def to_json(self) -> dict[str, Any]:
        return {"tasks": [task.to_json(links=False) for task in self.tasks], "nextCursor": self.next_cursor}


@dataclass(frozen=True)
class ErrorBody:
    """Every error the API answers itself: ``{"message", "errors": [{"field", "message"}]}``."""

    message: str | None
    errors: tuple[FieldError, ...] = ()

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """Whatever the body is (a gateway's HTML, text, JSON): what it says, if it says it our way."""
        if not isinstance(data, dict):
            return cls(message=None)
        message = data.get("message")
        errors = data.get("errors")
        return cls(
            message=str(message) if message else None,
            errors=tuple(
                FieldError(str(e.get("field") or "?"), str(e.get("message") or "invalid"))
                for e in (errors if isinstance(errors, list) else [])
                if isinstance(e, dict)
            ),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "errors": [{"field": e.field, "message": e.message} for e in self.errors],
        }


@dataclass(frozen=True)
class DownloadedImage:
    path: Path
    bytes: int
    sha256: str


@dataclass(frozen=True)
class RetryNotice:
    """Passed to ``on_retry`` before each wait, so the caller can tell the user."""

    attempt: int  # the try that just failed, from 1
    max_attempts: int
    delay: float
    reason: str
    method: str
    url: str


def is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _image_url(url: str) -> str | None:
    """What is wrong with a reference or mask image URL (None: nothing)."""
    if not is_http_url(url):
        return f"not an http(s) URL: {url!r}"
    if not URL_MIN_CHARS <= len(url) <= URL_MAX_CHARS:
        return f"URLs are {URL_MIN_CHARS} to {URL_MAX_CHARS} characters (got {len(url)})"
    if not re.search(IMAGE_URL_PATTERN, url):
        if not urlsplit(url).path.lower().endswith(IMAGE_EXTENSIONS):
            return f"not the URL of an image file ({', '.join(IMAGE_EXTENSIONS)}): {url!r}"
        return (
            "not a plain http(s) image URL (a host name of letters, digits, dots and dashes, URL "
            f"characters in the path): {url!r}"
        )
    return None


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _non_empty_str(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)


def _progress(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return min(1.0, max(0.0, float(value)))


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
