"""Our own records: the task as we store and report it, and the download job on the queue."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from image_pipeline.models_base import Model

# Failure messages come from outside (the upstream's callback, a fetch error): kept short when stored.
MAX_ERROR_MESSAGE_CHARS = 500


class TaskStatus(StrEnum):
    SUBMITTED = "submitted"  # accepted upstream, no callback yet
    DOWNLOADING = "downloading"  # callback said success; images are being copied to S3
    STORED = "stored"  # every image is in S3
    FAILED = "failed"  # the upstream, or a download, failed for good
    DELETED = "deleted"  # its client deleted it: images gone, only the id is kept (late callbacks)


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def image_key(task_id: str, index: int, extension: str) -> str:
    """Where image `index` of a task is stored in the bucket."""
    return f"images/{task_id}/{index}.{extension}"


class TaskError(Model):
    code: int | str
    message: str

    @field_validator("message")
    @classmethod
    def _truncate(cls, message: str) -> str:
        if len(message) <= MAX_ERROR_MESSAGE_CHARS:
            return message
        return message[: MAX_ERROR_MESSAGE_CHARS - 1] + "…"


class StoredImage(Model):
    index: int
    key: str
    contentType: str
    bytes: int
    sha256: str


EVENT_SOURCE = "image-pipeline"  # the source of every event on the bus


class Notification(Model):
    state: Literal["pending", "delivered", "failed"] = "pending"
    attempts: int = 0
    lastError: str | None = None


class NotifyTask(Model):
    """One SQS message on the notification queue: tell the world that this task ended."""

    model_config = ConfigDict(extra="forbid")

    notifyTask: str  # the taskId


class TaskRecord(Model):
    """One item of the tasks table (pk = "task#<taskId>")."""

    model_config = ConfigDict(extra="ignore")

    taskId: str
    status: TaskStatus
    submissionId: str | None = None
    owner: str | None = None  # the client app (API key id) that submitted it
    options: dict[str, Any] = Field(default_factory=dict)
    imagesExpected: int = 0
    storedCount: int = 0
    images: dict[str, StoredImage] = Field(default_factory=dict)
    resultUrls: list[str] = Field(default_factory=list)
    jobsEnqueued: bool = False
    enqueueFailed: bool = False
    error: TaskError | None = None
    createdAt: str
    updatedAt: str
    callbackAt: str | None = None
    nextCheckAt: str | None = None  # when the reconciler looks at it next; absent once it has ended
    checks: int = 0  # reconciler visits that found nothing to do
    requeues: int = 0  # reconciler rounds that re-queued missing images
    lastDownloadError: str | None = None
    progress: float | None = None  # the upstream's last reported progress (cached for pollers)
    webhookUrl: str | None = None  # where the client asked to be told when the task ends
    notification: Notification | None = None  # the webhook's delivery, when one was asked for
    notifyPending: bool = False  # ended, and its notify message is not yet known to be queued
    eventPublished: bool = False

    @property
    def model(self) -> str:
        """gpt-4o-image, or the Flux Kontext model its options name."""
        return str(self.options.get("model") or "gpt-4o-image")

    def missing_indexes(self) -> list[int]:
        return [index for index in range(self.imagesExpected) if str(index) not in self.images]

    def stored_images(self) -> list[StoredImage]:
        return sorted(self.images.values(), key=lambda image: image.index)


class DownloadJob(Model):
    """One SQS message: copy result image `index` of `taskId` from `url` into S3."""

    model_config = ConfigDict(extra="forbid")

    taskId: str
    index: int = Field(ge=0, lt=16)
    url: str
    # The result URL this job copies, when `url` is a fresh link the reconciler minted for it.
    sourceUrl: str | None = None

    @property
    def result_url(self) -> str:
        return self.sourceUrl or self.url


class RecordTask(Model):
    """One SQS message: a task the API could not record (DynamoDB kept failing); the downloader does."""

    model_config = ConfigDict(extra="forbid")

    recordTask: str  # the taskId
    submissionId: str
    options: dict[str, Any]
    nextCheckAt: str
    owner: str | None = None
    webhookUrl: str | None = None
