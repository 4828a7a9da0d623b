"""Tasks in the table as the API leaves them, for tests that start from one: recorded under our id
before the upstream call (`submitting`), then confirmed with the upstream's id (`submitted`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from image_pipeline.task_records import utc_now
from image_pipeline.tokens import hash_token

TOKEN = "callback-token-for-tests"
OPTIONS = {"prompt": "x", "size": "1:1"}


def upstream_id_of(task_id: str) -> str:
    """The upstream id these fixtures give a task: distinct from ours, so a test that mixes them fails."""
    return f"up{task_id}"


def record_task(
    store: Any,
    task_id: str,
    *,
    owner: str = "local",
    upstream_task_id: str | None = None,
    confirmed: bool = True,
    token: str = TOKEN,
    options: dict[str, Any] | None = None,
    created: datetime | None = None,
    next_check_at: datetime | None = None,
    webhook_url: str | None = None,
) -> None:
    """A task as POST /tasks records it; `confirmed` (default): its generate reply named the upstream id."""
    now = created or utc_now()
    assert store.create_task(
        task_id,
        owner=owner,
        options=dict(options or OPTIONS),
        token_hash=hash_token(token),
        now=now,
        next_check_at=next_check_at or now + timedelta(hours=2),
        webhook_url=webhook_url,
    ), f"task {task_id} exists already"
    if confirmed:
        assert store.confirm_submitted(
            task_id, upstream_task_id or upstream_id_of(task_id), now, next_check_at or now
        )
