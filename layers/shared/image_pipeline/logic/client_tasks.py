"""A client app's own tasks: listing them page by page, and deleting one with everything it stored.

A task belongs to the client that submitted it; to any other client it does not exist (404, exactly
as an unknown id). List cursors are opaque to clients, but only the client they were given to can use
one: anything else is refused (400), never answered with another client's tasks.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from image_pipeline.errors import InvalidCursor, TaskNotFound, TaskStillRunning
from image_pipeline.logic.ports import ImageBlobs, TaskStore
from image_pipeline.task_models import TaskRecord, TaskStatus, utc_now
from image_pipeline.upstream_replies import TASK_ID

RUNNING = (TaskStatus.SUBMITTING, TaskStatus.SUBMITTED, TaskStatus.DOWNLOADING)
MAX_CURSOR_CHARS = 1024


def own_task(task_id: str, owner: str, store: TaskStore) -> TaskRecord:
    """The task if it is this client's and not deleted; TaskNotFound otherwise (whoever else owns it)."""
    # Task ids are short tokens; anything else cannot exist (and must not reach DynamoDB's key limits).
    task = store.get_task(task_id) if TASK_ID.fullmatch(task_id) else None
    if task is None or task.owner != owner or task.status is TaskStatus.DELETED:
        raise TaskNotFound(task_id[:64])
    return task


def summary(task: TaskRecord) -> dict[str, Any]:
    """A task as the list shows it: GET /tasks/{id}'s shape without links or live progress."""
    return {
        "taskId": task.taskId,
        "upstreamTaskId": task.upstream_id,
        "model": task.model,
        "status": task.status.value,
        "images": [image.to_dict() for image in task.stored_images()],
        "error": task.error.to_dict() if task.error else None,
        "createdAt": task.createdAt,
        "updatedAt": task.updatedAt,
    }


def list_tasks(
    owner: str,
    *,
    store: TaskStore,
    limit: int,
    status: TaskStatus | None = None,
    cursor: str | None = None,
) -> dict[str, Any]:
    after = decode_cursor(cursor, owner) if cursor else None
    tasks, last = store.tasks_of(owner, limit=limit, status=status, after=after)
    return {
        "tasks": [summary(task) for task in tasks],
        "nextCursor": encode_cursor(last) if last else None,
    }


def delete_task(
    task_id: str,
    owner: str,
    *,
    store: TaskStore,
    images: ImageBlobs,
    clock: Callable[[], datetime] = utc_now,
) -> None:
    """Every stored version of its images, then the record (kept as a bare tombstone, so a late
    callback for it is a duplicate and stores nothing). A running task is refused: 409."""
    task = own_task(task_id, owner, store)
    if task.status in RUNNING:
        raise TaskStillRunning("task is still running")
    images.delete_task_images(task.taskId)
    if not store.tombstone(task.taskId, owner, clock()):
        raise TaskNotFound(task_id[:64])  # deleted meanwhile by a concurrent request


def encode_cursor(key: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, owner: str) -> dict[str, str]:
    """The key a cursor continues after; InvalidCursor unless it is one this client was given."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidCursor("cursor is not one this API returned")
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor("cursor is not one this API returned") from None
    if (
        not isinstance(key, dict)
        or set(key) != {"pk", "owner", "createdAt"}
        or not all(isinstance(value, str) for value in key.values())
        or not key["pk"].startswith("task#")
        or not TASK_ID.fullmatch(key["pk"].removeprefix("task#"))
    ):
        raise InvalidCursor("cursor is not one this API returned")
    if key["owner"] != owner:
        raise InvalidCursor("cursor belongs to another client")
    return key
