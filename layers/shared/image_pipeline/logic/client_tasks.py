"""A client app's own tasks: listing them page by page, and deleting one with everything it stored.

A task belongs to the client that submitted it; to any other client it does not exist (404, exactly
as an unknown id). List cursors are opaque to clients and signed (HMAC-SHA256 with a key the stack
owns, over the key they continue after, which names their client): only a cursor this API issued, to
the client presenting it, unaltered, is read; anything else is refused (400), never answered with
another client's tasks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from image_pipeline.errors import InvalidCursor, TaskNotFound, TaskStillRunning
from image_pipeline.logic.ports import ClientTaskRecords, ImageBlobs
from image_pipeline.task_records import TaskRecord, TaskStatus, utc_now
from image_pipeline.upstream_replies import TASK_ID

RUNNING = (TaskStatus.SUBMITTING, TaskStatus.SUBMITTED, TaskStatus.DOWNLOADING)
MAX_CURSOR_CHARS = 1024


def own_task(task_id: str, owner: str, store: ClientTaskRecords) -> TaskRecord:
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
    store: ClientTaskRecords,
    limit: int,
    status: TaskStatus | None = None,
    cursor: str | None = None,
    cursor_key: Callable[[], bytes],
) -> dict[str, Any]:
    """One page of the owner's tasks. `cursor_key` gives the cursors' signing key; it is asked for only
    when a cursor is read or written (a first page that is also the last needs none)."""
    after = decode_cursor(cursor, owner, cursor_key()) if cursor is not None else None
    tasks, last = store.tasks_of(owner, limit=limit, status=status, after=after)
    return {
        "tasks": [summary(task) for task in tasks],
        "nextCursor": encode_cursor(last, cursor_key()) if last else None,
    }


def delete_task(
    task_id: str,
    owner: str,
    *,
    store: ClientTaskRecords,
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


CURSOR_FIELDS = frozenset({"pk", "owner", "createdAt"})
_NOT_OURS = "cursor is not one this API returned"


def _signature(payload: str, key: bytes) -> str:
    digest = hmac.new(key, b"image-pipeline list cursor\x00" + payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def encode_cursor(key: dict[str, str], signing_key: bytes) -> str:
    """`payload.signature`: the key's JSON and its HMAC, both base64url without padding."""
    payload = base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{payload}.{_signature(payload, signing_key)}"


def decode_cursor(cursor: str, owner: str, signing_key: bytes) -> dict[str, str]:
    """The key a cursor continues after; InvalidCursor unless this API issued it to this client, as it is."""
    payload, _dot, signature = cursor.partition(".")
    # The signature is checked before anything of the payload is read.
    if len(cursor) > MAX_CURSOR_CHARS or not signature.isascii():
        raise InvalidCursor(_NOT_OURS)
    if not hmac.compare_digest(signature, _signature(payload, signing_key)):
        raise InvalidCursor(_NOT_OURS)
    try:
        key = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidCursor(_NOT_OURS) from None
    # Only what encode_cursor wrote passes the signature; checked all the same, so that a signing key
    # that leaked can never hand DynamoDB an empty or foreign key.
    if (
        not isinstance(key, dict)
        or set(key) != CURSOR_FIELDS
        or not all(isinstance(value, str) and value for value in key.values())
        or not key["pk"].startswith("task#")
        or not TASK_ID.fullmatch(key["pk"].removeprefix("task#"))
    ):
        raise InvalidCursor(_NOT_OURS)
    if key["owner"] != owner:
        raise InvalidCursor("cursor belongs to another client")
    return key
