"""Writing a submitted task: what the API does after the upstream accepted it, and what the downloader
does for a task the API could not write (the record outbox). Light on imports: the downloader loads it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from image_pipeline.logic.ports import TaskStore
from image_pipeline.task_models import RecordTask, utc_now


class SubmissionConflict(RuntimeError):
    """The upstream returned a taskId whose capability is already bound elsewhere (should never happen)."""


def record_task(record: RecordTask, *, store: TaskStore, clock: Callable[[], datetime] = utc_now) -> None:
    """Bind the capability to its task and write the task (idempotent: safe to repeat)."""
    if not store.bind_submission(record.submissionId, record.recordTask):
        raise SubmissionConflict(f"callback capability {record.submissionId} is bound to another task")
    store.record_submitted(
        record.recordTask,
        record.submissionId,
        record.options,
        clock(),
        datetime.fromisoformat(record.nextCheckAt),
        owner=record.owner,
        webhook_url=record.webhookUrl,
    )
