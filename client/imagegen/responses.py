"""What the API answers (a task, a page of tasks, an error body) and what the client reports back."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Self, TypeGuard

from imagegen.errors import FieldError, UnexpectedResponseError

# -- the answers (TaskView, TaskSummary) and GET /tasks
TASK_STATUSES: Final = ("submitting", "submitted", "downloading", "stored", "failed")
TERMINAL_STATUSES: Final = frozenset({"stored", "failed"})
LIST_LIMIT_MIN: Final = 1
LIST_LIMIT_MAX: Final = 100
LIST_LIMIT_DEFAULT: Final = 20
NOTIFICATION_STATES: Final = ("pending", "delivered", "failed")


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
    upstream_task_id: str | None = None  # the image service's own id, once it confirmed the task
    images: tuple[TaskImage, ...] = ()
    model: str | None = None  # gpt-4o-image, flux-kontext-pro, flux-kontext-max (None: not said)
    error: TaskError | None = None
    created_at: str | None = None
    updated_at: str | None = None
    notification: Notification | None = None  # when the task was submitted with a webhook
    # the input references it used: ({"field": "filesUrl[0]", "ref": "upload:..."}, ...)
    inputs: tuple[Mapping[str, str], ...] = ()
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
            upstream_task_id=_opt_str(data.get("upstreamTaskId")),
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
            inputs=tuple(
                {"field": str(item.get("field")), "ref": str(item.get("ref"))}
                for item in data.get("inputs") or ()
                if isinstance(item, dict)
            ),
            raw=data,
        )

    def to_json(self, *, links: bool = True) -> dict[str, Any]:
        """The task as the API writes it (``links=False``: as a summary, without progress)."""
        body: dict[str, Any] = {"taskId": self.task_id, "status": self.status}
        if "upstreamTaskId" in self.raw or self.upstream_task_id is not None:
            body["upstreamTaskId"] = self.upstream_task_id
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
        if self.inputs:
            body["inputs"] = [dict(item) for item in self.inputs]
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


def _non_empty_str(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)


def _progress(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return min(1.0, max(0.0, float(value)))


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Upload:
    """``POST /uploads`` (``UploadCreated``): the upload's id, its reference and its presigned request."""

    upload_id: str
    reference: str
    method: str
    url: str
    headers: Mapping[str, str]
    expires_at: str

    @classmethod
    def from_json(cls, data: Any) -> Self:
        upload = data.get("upload") if isinstance(data, dict) else None
        if not isinstance(upload, dict) or not all(
            _non_empty_str(value) for value in (data.get("uploadId"), upload.get("url"), upload.get("method"))
        ):
            raise UnexpectedResponseError("the upload answer has no uploadId/upload", body=data)
        given = upload.get("headers")
        headers: dict[str, Any] = given if isinstance(given, dict) else {}
        return cls(
            upload_id=data["uploadId"],
            reference=str(data.get("reference") or f"upload:{data['uploadId']}"),
            method=upload["method"],
            url=upload["url"],
            headers={str(name): str(value) for name, value in headers.items()},
            expires_at=str(data.get("expiresAt") or ""),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "uploadId": self.upload_id,
            "reference": self.reference,
            "upload": {"method": self.method, "url": self.url, "headers": dict(self.headers)},
            "expiresAt": self.expires_at,
        }
