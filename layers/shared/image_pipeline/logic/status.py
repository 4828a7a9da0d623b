"""What GET /tasks/{taskId} answers: the record, fresh links to the stored images, and live progress."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from image_pipeline.errors import UpstreamError
from image_pipeline.logic.client_tasks import own_task
from image_pipeline.logic.ports import ClientTaskRecords, ImageBlobs, Upstream
from image_pipeline.task_records import TaskRecord, TaskStatus, utc_now

# The upstream allows 3 detail queries per second per task; however many clients poll one task, it
# is asked at most once per period, by whichever poller claims the refresh first.
PROGRESS_CACHE = timedelta(seconds=5)


def task_status(
    task_id: str,
    owner: str,
    *,
    store: ClientTaskRecords,
    images: ImageBlobs,
    presign_seconds: int,
    upstream: Upstream | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> dict[str, Any]:
    task = own_task(task_id, owner, store)
    return {
        "taskId": task.taskId,
        "upstreamTaskId": task.upstream_id,
        "model": task.model,
        "status": task.status.value,
        "progress": _progress(task, store, upstream, clock()),
        "images": [
            {**image.to_dict(), "url": images.presigned_url(image.key, presign_seconds)}
            for image in task.stored_images()
        ],
        "error": task.error.to_dict() if task.error else None,
        "createdAt": task.createdAt,
        "updatedAt": task.updatedAt,
        **({"notification": task.notification.to_dict()} if task.webhookUrl and task.notification else {}),
        **({"inputs": [dict(entry) for entry in task.inputs]} if task.inputs else {}),
    }


def _progress(
    task: TaskRecord, store: ClientTaskRecords, upstream: Upstream | None, now: datetime
) -> float | None:
    """Generation progress, 0..1: done once the upstream has called back with images; unknown while
    the upstream has not confirmed the task."""
    if task.status is TaskStatus.SUBMITTING:
        return None
    if task.status is not TaskStatus.SUBMITTED:
        return None if task.status is TaskStatus.FAILED else 1.0
    upstream_id = task.upstream_id
    if upstream is None or upstream_id is None:
        return task.progress
    if not store.claim_progress_refresh(task.taskId, now, now - PROGRESS_CACHE):
        return task.progress  # fresh enough, or another poller is asking right now
    try:
        progress = upstream.task_details(upstream_id, task.model).progress_fraction
    except UpstreamError:
        return task.progress  # best effort: progress is a nicety
    if progress is not None:
        store.save_progress(task.taskId, progress)
    return progress
