"""Writing down what the upstream's generate reply told us: the API does it at once, and the downloader
does it for a reply the API could not write (the confirm outbox). Light on imports: the downloader
loads it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from image_pipeline.logic.ports import SubmissionRecords
from image_pipeline.task_records import ConfirmSubmit, utc_now


def confirm_submit(
    message: ConfirmSubmit, *, store: SubmissionRecords, clock: Callable[[], datetime] = utc_now
) -> bool:
    """The task is `submitted` as `upstreamTaskId` (idempotent: safe to repeat).

    False when the task had already moved on (its callback came first and named the same id) or is
    gone: nothing is left to write.
    """
    return store.confirm_submitted(
        message.confirmTask,
        message.upstreamTaskId,
        clock(),
        datetime.fromisoformat(message.nextCheckAt),
    )
