"""Our own records: the task as we store and report it, and the download job on the queue."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TaskStatus(StrEnum):
    SUBMITTED = "submitted"  # accepted upstream, no callback yet
    DOWNLOADING = "downloading"  # callback said success; images are being copied to S3
    STORED = "stored"  # every image is in S3
    FAILED = "failed"  # the upstream, or a download, failed for good


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TaskError(BaseModel):
    code: int | str
    message: str


class StoredImage(BaseModel):
    index: int
    key: str
    contentType: str
    bytes: int
    sha256: str


class TaskRecord(BaseModel):
    """One item of the tasks table (pk = "task#<taskId>")."""

    model_config = ConfigDict(extra="ignore")

    taskId: str
    status: TaskStatus
    submissionId: str | None = None
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

    def stored_images(self) -> list[StoredImage]:
        return sorted(self.images.values(), key=lambda image: image.index)


class DownloadJob(BaseModel):
    """One SQS message: copy result image `index` of `taskId` from `url` into S3."""

    model_config = ConfigDict(extra="forbid")

    taskId: str
    index: int = Field(ge=0, lt=16)
    url: str
