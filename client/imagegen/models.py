"""What the bundle's API takes and answers: the task request, the task and its images, retry notices."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Self
from urllib.parse import urlsplit

from imagegen.errors import FieldError, UnexpectedResponseError

SIZES: Final = ("1:1", "3:2", "2:3")
VARIANTS: Final = (1, 2, 4)
FALLBACK_MODELS: Final = ("GPT_IMAGE_1", "FLUX_MAX")
MAX_FILES: Final = 5
TERMINAL_STATUSES: Final = frozenset({"stored", "failed"})


@dataclass(frozen=True)
class TaskRequest:
    """What ``POST /tasks`` accepts. :meth:`problems` checks it before anything is sent."""

    prompt: str
    size: str = "1:1"
    files: tuple[str, ...] = ()
    mask: str | None = None
    variants: int = 1
    enhance: bool = False
    fallback: bool = False
    fallback_model: str | None = None

    def problems(self) -> list[FieldError]:
        found: list[FieldError] = []
        if not self.prompt.strip():
            found.append(FieldError("prompt", "must not be empty"))
        if self.size not in SIZES:
            found.append(FieldError("size", f"must be one of {', '.join(SIZES)}"))
        if self.variants not in VARIANTS:
            found.append(FieldError("nVariants", f"must be one of {', '.join(map(str, VARIANTS))}"))
        if len(self.files) > MAX_FILES:
            found.append(FieldError("filesUrl", f"at most {MAX_FILES} URLs (got {len(self.files)})"))
        found.extend(
            FieldError("filesUrl", f"not an http(s) URL: {url!r}")
            for url in self.files
            if not is_http_url(url)
        )
        if self.mask is not None and not is_http_url(self.mask):
            found.append(FieldError("maskUrl", f"not an http(s) URL: {self.mask!r}"))
        if self.fallback_model is not None:
            if self.fallback_model not in FALLBACK_MODELS:
                found.append(FieldError("fallbackModel", f"must be one of {', '.join(FALLBACK_MODELS)}"))
            if not self.fallback:
                found.append(FieldError("fallbackModel", "only meaningful with enableFallback (--fallback)"))
        return found

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": self.prompt,
            "size": self.size,
            "nVariants": self.variants,
            "isEnhance": self.enhance,
            "enableFallback": self.fallback,
        }
        if self.files:
            body["filesUrl"] = list(self.files)
        if self.mask is not None:
            body["maskUrl"] = self.mask
        if self.fallback and self.fallback_model is not None:
            body["fallbackModel"] = self.fallback_model
        return body


@dataclass(frozen=True)
class Submission:
    task_id: str
    status: str
    idempotency_key: str


@dataclass(frozen=True)
class TaskImage:
    index: int
    url: str
    key: str = ""
    content_type: str = "application/octet-stream"
    bytes: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class TaskError:
    code: int | str | None
    message: str

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}" if self.code not in (None, "") else self.message


@dataclass(frozen=True)
class Task:
    task_id: str
    status: str
    progress: float | None = None
    images: tuple[TaskImage, ...] = ()
    error: TaskError | None = None
    created_at: str | None = None
    updated_at: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """Read a ``GET /tasks/{id}`` body; raise :class:`UnexpectedResponseError` if it is not one."""
        if not isinstance(data, dict):
            raise UnexpectedResponseError("the task answer is not a JSON object", body=data)
        task_id, status = data.get("taskId"), data.get("status")
        if not isinstance(task_id, str) or not task_id or not isinstance(status, str) or not status:
            raise UnexpectedResponseError("the task answer has no taskId/status", body=data)
        images: list[TaskImage] = []
        for item in data.get("images") or ():
            if not isinstance(item, dict) or not isinstance(item.get("url"), str):
                raise UnexpectedResponseError("an image in the task answer has no url", body=data)
            index = item.get("index", len(images))
            images.append(
                TaskImage(
                    index=index if isinstance(index, int) and not isinstance(index, bool) else len(images),
                    url=item["url"],
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
        return cls(
            task_id=task_id,
            status=status,
            progress=_progress(data.get("progress")),
            images=tuple(sorted(images, key=lambda i: i.index)),
            error=task_error,
            created_at=_opt_str(data.get("createdAt")),
            updated_at=_opt_str(data.get("updatedAt")),
            raw=data,
        )


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


def _progress(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return min(1.0, max(0.0, float(value)))


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
