"""What the logic needs from the outside world, as Protocols: the real adapters and test fakes both fit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from image_pipeline.task_records import (
    Claim,
    ConfirmSubmit,
    DownloadJob,
    Reopen,
    StoredImage,
    TaskError,
    TaskRecord,
    TaskStatus,
)

if TYPE_CHECKING:  # the callback's and the downloader's logic never needs the upstream's request models
    from image_pipeline.upstream_replies import TaskDetails
    from image_pipeline.upstream_requests import FluxGenerateRequest, GenerateRequest


# The task table, by purpose: each piece of logic asks only for the writes its step makes (the
# adapter, adapters/tasks_table.TasksTable, offers them all). Every write is conditional: it returns
# False (or None) when the task is not in the state the step expects, and the step treats that as
# an answer, never as an error.


class TaskReader(Protocol):
    def get_task(self, task_id: str) -> TaskRecord | None: ...


class SubmissionRecords(TaskReader, Protocol):
    """POST /tasks: the task before the upstream hears of it, then the upstream's id or its withdrawal."""

    def create_task(
        self,
        task_id: str,
        *,
        owner: str,
        options: dict[str, Any],
        token_hash: str,
        now: datetime,
        next_check_at: datetime,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        inputs: list[dict[str, str]] | None = None,
    ) -> bool: ...
    def confirm_submitted(
        self, task_id: str, upstream_task_id: str, now: datetime, next_check_at: datetime
    ) -> bool: ...
    def withdraw(self, task_id: str, now: datetime) -> bool: ...


class OutcomeRecords(TaskReader, Protocol):
    """A callback (or the reconciler standing in for one): the task's first outcome, once."""

    def start_downloading(
        self,
        task_id: str,
        upstream_task_id: str,
        urls: list[str],
        now: datetime,
        next_check_at: datetime,
        *,
        reopen: Reopen | None = None,
    ) -> bool: ...
    def fail_from_callback(
        self,
        task_id: str,
        upstream_task_id: str,
        error: TaskError,
        now: datetime,
        *,
        reopen: Reopen | None = None,
    ) -> bool: ...
    def mark_jobs_enqueued(self, task_id: str, now: datetime) -> None: ...
    def mark_enqueue_failed(self, task_id: str, now: datetime) -> None: ...


class ImageRecords(TaskReader, Protocol):
    """The downloader: each stored image counted once, and the task's end."""

    def add_image(self, task_id: str, image: StoredImage, now: datetime) -> TaskRecord | None: ...
    def finish_with_image(
        self, task_id: str, image: StoredImage, *, stored_before: int, images_expected: int, now: datetime
    ) -> bool: ...
    def mark_stored(self, task_id: str, now: datetime) -> bool: ...
    def mark_failed(self, task_id: str, error: TaskError, now: datetime) -> bool: ...
    def note_download_error(self, task_id: str, reason: str, now: datetime) -> None: ...


class NotificationRecords(TaskReader, Protocol):
    """The notifier: the ended task's webhook attempts and the marks that take it off the sweep."""

    def clear_notify_mark(
        self, task_id: str, *, webhook_url: str | None, event_published: bool = False, reopened: int = 0
    ) -> bool: ...
    def record_delivery(self, task_id: str, notification: dict[str, Any], *, reopened: int = 0) -> None: ...
    def begin_webhook_attempt(self, task_id: str) -> int | None: ...


class SweepRecords(OutcomeRecords, ImageRecords, Protocol):
    """The reconciler: outcomes it learns, downloads it ends, and when to look at a task again."""

    def push_back(self, task: TaskRecord, next_check_at: datetime, *, requeued: bool = False) -> bool: ...
    def clear_notify_mark(
        self, task_id: str, *, webhook_url: str | None, event_published: bool = False, reopened: int = 0
    ) -> bool: ...


class ClientTaskRecords(TaskReader, Protocol):
    """The client's reads and deletes: its pages of tasks, a task's cached progress, tombstones."""

    def tasks_of(
        self,
        owner: str,
        *,
        limit: int,
        status: TaskStatus | None = None,
        after: dict[str, str] | None = None,
    ) -> tuple[list[TaskRecord], dict[str, str] | None]: ...
    def tombstone(self, task_id: str, owner: str, now: datetime) -> bool: ...
    def claim_progress_refresh(self, task_id: str, now: datetime, stale_before: datetime) -> bool: ...
    def save_progress(self, task_id: str, progress: float) -> None: ...


class JobQueue(Protocol):
    def send(self, jobs: Sequence[DownloadJob]) -> None: ...


class ConfirmOutbox(Protocol):
    def send_confirm(self, message: ConfirmSubmit) -> None: ...


class IdempotencyStore(Protocol):
    def claim(self, owner: str, key: str, request_hash: str, task_id: str, now: datetime) -> Claim | None: ...
    def release(self, owner: str, key: str, task_id: str) -> None: ...


class Admission(Protocol):
    def admit(self, owner: str, images: int) -> Callable[[], None]: ...


class Upstream(Protocol):
    def generate(self, request: GenerateRequest) -> str: ...
    def generate_flux(self, request: FluxGenerateRequest) -> str: ...
    def create_market_task(self, model: str, given: dict[str, Any], callback_url: str) -> str: ...
    def task_details(self, task_id: str, model: str = ...) -> TaskDetails: ...
    def download_url(self, task_id: str, url: str, model: str = ...) -> str: ...


class ImageBlobs(Protocol):
    def put(
        self, key: str, body: bytes, *, content_type: str, sha256_hex: str, metadata: dict[str, str]
    ) -> str | None: ...
    def delete_version(self, key: str, version_id: str) -> None: ...
    def presigned_url(self, key: str, expires_seconds: int) -> str: ...
    def delete_task_images(self, task_id: str) -> int: ...
