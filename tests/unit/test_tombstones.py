"""A deleted task stays deleted: no write of any function recreates or updates its tombstone.

DELETE leaves a bare tombstone (its id, `deleted`, updatedAt and TTL) so a late callback is a plain
duplicate. Every write a late message could make (a repeated outbox confirmation, a callback, a
download's record, the notifier's marks, the reconciler's visits) is tried against one here; the
item must come out exactly as DELETE left it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3
import pytest

from tests.task_fixtures import record_task, upstream_id_of

TASK_ID = "7a1c2b3d4e5f60718293a4b5c6d7e8f9"


@pytest.fixture
def tombstone(aws_stack: Any) -> Any:
    from image_pipeline.adapters.tasks_table import TasksTable
    from image_pipeline.task_records import TaskError, utc_now

    store = TasksTable(aws_stack.tasks_table)
    record_task(store, TASK_ID, owner="alice", webhook_url="https://hooks.example.com/x")
    assert store.fail_from_callback(
        TASK_ID, upstream_id_of(TASK_ID), TaskError(code=500, message="x"), utc_now()
    )
    assert store.tombstone(TASK_ID, "alice", utc_now())
    return store


def raw_item(aws_stack: Any) -> dict[str, Any]:
    found = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=aws_stack.tasks_table, Key={"pk": {"S": f"task#{TASK_ID}"}}, ConsistentRead=True
    )
    item: dict[str, Any] = found["Item"]
    return item


def late_writes() -> dict[str, Any]:
    from image_pipeline.task_records import Reopen, StoredImage, TaskError, utc_now

    now = utc_now()
    image = StoredImage(
        index=0, key=f"images/{TASK_ID}/0.png", contentType="image/png", bytes=1, sha256="0" * 64
    )
    upstream = upstream_id_of(TASK_ID)
    return {
        "confirm_submitted": lambda s: s.confirm_submitted(TASK_ID, upstream, now, now),
        "withdraw": lambda s: s.withdraw(TASK_ID, now),
        "start_downloading": lambda s: s.start_downloading(TASK_ID, upstream, ["https://x/0.png"], now, now),
        "start_downloading reopened": lambda s: s.start_downloading(
            TASK_ID, upstream, ["https://x/0.png"], now, now, reopen=Reopen(webhook=True)
        ),
        "fail_from_callback": lambda s: s.fail_from_callback(
            TASK_ID, upstream, TaskError(code=1, message="x"), now
        ),
        "mark_jobs_enqueued": lambda s: s.mark_jobs_enqueued(TASK_ID, now),
        "mark_enqueue_failed": lambda s: s.mark_enqueue_failed(TASK_ID, now),
        "add_image": lambda s: s.add_image(TASK_ID, image, now),
        "finish_with_image": lambda s: s.finish_with_image(
            TASK_ID, image, stored_before=0, images_expected=1, now=now
        ),
        "mark_stored": lambda s: s.mark_stored(TASK_ID, now),
        "mark_failed": lambda s: s.mark_failed(TASK_ID, TaskError(code=1, message="x"), now),
        "note_download_error": lambda s: s.note_download_error(TASK_ID, "x", now),
        "push_back": lambda s: s.push_back(s.get_task(TASK_ID), now + timedelta(minutes=5)),
        "claim_progress_refresh": lambda s: s.claim_progress_refresh(TASK_ID, now, now),
        "save_progress": lambda s: s.save_progress(TASK_ID, 0.5),
        "clear_notify_mark": lambda s: s.clear_notify_mark(TASK_ID, webhook_url=None, event_published=True),
        "record_delivery": lambda s: s.record_delivery(TASK_ID, {"state": "delivered", "attempts": 1}),
        "begin_webhook_attempt": lambda s: s.begin_webhook_attempt(TASK_ID),
        "create_task": lambda s: s.create_task(
            TASK_ID, owner="mallory", options={}, token_hash="x", now=now, next_check_at=now
        ),
    }


@pytest.mark.parametrize("write", sorted(late_writes()))
def test_a_late_write_leaves_a_tombstone_as_delete_left_it(
    aws_stack: Any, tombstone: Any, write: str
) -> None:
    before = raw_item(aws_stack)
    assert before["status"] == {"S": "deleted"} and "owner" not in before
    late_writes()[write](tombstone)  # refused without an error: a late message is simply done
    assert raw_item(aws_stack) == before
    assert tombstone.tasks_of("alice", limit=10)[0] == []
