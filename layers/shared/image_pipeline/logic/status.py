"""What GET /tasks/{taskId} answers: the record, fresh links to the stored images, and live progress."""

from __future__ import annotations

from typing import Any

from image_pipeline.errors import TaskNotFound, UpstreamError
from image_pipeline.logic.ports import ImageBlobs, TaskStore, Upstream
from image_pipeline.task_models import TaskRecord, TaskStatus
from image_pipeline.upstream_models import TASK_ID


def task_status(
    task_id: str,
    *,
    store: TaskStore,
    images: ImageBlobs,
    presign_seconds: int,
    upstream: Upstream | None = None,
) -> dict[str, Any]:
    # Task ids are short tokens; anything else cannot exist (and must not reach DynamoDB's key limits).
    task = store.get_task(task_id) if TASK_ID.fullmatch(task_id) else None
    if task is None:
        raise TaskNotFound(task_id[:64])
    return {
        "taskId": task.taskId,
        "status": task.status.value,
        "progress": _progress(task, upstream),
        "images": [
            {**image.model_dump(), "url": images.presigned_url(image.key, presign_seconds)}
            for image in task.stored_images()
        ],
        "error": task.error.model_dump() if task.error else None,
        "createdAt": task.createdAt,
        "updatedAt": task.updatedAt,
    }


def _progress(task: TaskRecord, upstream: Upstream | None) -> float | None:
    """Generation progress, 0..1: done once the upstream has called back with images."""
    if task.status is not TaskStatus.SUBMITTED:
        return None if task.status is TaskStatus.FAILED else 1.0
    if upstream is None:
        return None
    try:
        # Best effort: progress is a nicety, and the upstream allows 3 detail queries per second per task.
        return upstream.task_details(task.taskId).progress_fraction
    except UpstreamError:
        return None
