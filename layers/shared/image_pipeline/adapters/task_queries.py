"""The tasks table's reads and bookkeeping for the sweeps, the notifier and the client API: due tasks,
push-backs, the progress cache, notification state, a client's own tasks and deleting one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from image_pipeline.adapters.dynamo_items import ConditionalTable, expression_values, from_item, task_key
from image_pipeline.task_records import TaskRecord, TaskStatus, iso

DUE_INDEX = "status-nextCheckAt"
OWNER_INDEX = "owner-createdAt"
# Only for the task's current end: a late callback that reopened a submit_unconfirmed task counts up
# `reopened`, and what the notifier learnt about the earlier end must not be written onto the new one.
NOT_DELETED = "#status <> :deleted"  # a tombstone is final: no write updates it
NOT_DELIVERED = "(attribute_not_exists(notification.#state) OR notification.#state <> :delivered)"
SAME_END = "(attribute_not_exists(reopened) OR reopened = :reopened)"
# The most tasks one GET /tasks examines: 3 index queries and 3 batch reads of 100, whatever a
# client's history (3,000 tasks took 30 of each, 3.9 s; 150,000 would pass API Gateway's 29 s).
LIST_READ_BUDGET = 300
# The attributes of a list cursor: the key of the last task returned, in the owner index.
CURSOR_KEYS = ("pk", "owner", "createdAt")


class TaskQueries(ConditionalTable):
    # -- notifications (the client's webhook, the event bus) ------------------------------------

    def clear_notify_mark(
        self, task_id: str, *, webhook_url: str | None, event_published: bool = False, reopened: int = 0
    ) -> bool:
        """The ended task's notify message is handled (and its event is on the bus, if
        `event_published`): it leaves the reconciler's index, in one write.

        Only while its webhookUrl is still the one the handler read: a webhook the submit recorded
        meanwhile keeps the mark, so the reconciler sends the message again and it is delivered.
        """
        same_webhook = "webhookUrl = :webhook" if webhook_url else "attribute_not_exists(webhookUrl)"
        cleared = self._update_if(
            Key=task_key(task_id),
            UpdateExpression=("SET eventPublished = :true " if event_published else "")
            + "REMOVE notifyPending, nextCheckAt",
            ConditionExpression=f"#status IN (:stored, :failed) AND {same_webhook} AND {SAME_END}",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=expression_values(
                stored=TaskStatus.STORED.value,
                failed=TaskStatus.FAILED.value,
                reopened=reopened,
                **({"true": True} if event_published else {}),
                **({"webhook": webhook_url} if webhook_url else {}),
            ),
        )
        if cleared is None and event_published:  # the mark stays; the event is out all the same
            self._update_if(
                Key=task_key(task_id),
                UpdateExpression="SET eventPublished = :true",
                ConditionExpression=f"attribute_exists(pk) AND {NOT_DELETED} AND {SAME_END}",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=expression_values(
                    true=True, reopened=reopened, deleted=TaskStatus.DELETED.value
                ),
            )
        return cleared is not None

    def record_delivery(self, task_id: str, notification: dict[str, Any], *, reopened: int = 0) -> None:
        """The webhook's state after one delivery attempt (never moves back from delivered), for the
        end it was about (not one a late callback made since)."""
        self._update_if(
            Key=task_key(task_id),
            UpdateExpression="SET notification = :notification",
            ConditionExpression=f"attribute_exists(pk) AND {NOT_DELETED} AND {NOT_DELIVERED} AND {SAME_END}",
            ExpressionAttributeNames={"#state": "state", "#status": "status"},
            ExpressionAttributeValues=expression_values(
                notification=notification,
                delivered="delivered",
                reopened=reopened,
                deleted=TaskStatus.DELETED.value,
            ),
        )

    def begin_webhook_attempt(self, task_id: str) -> int | None:
        """Count one webhook attempt, before its POST: the attempts so far, this one included, or None
        when the webhook is no longer pending (delivered, failed, or the task deleted).

        One atomic write: two copies of a notify message each count the POST they make, and a POST
        the function never records the answer of (it crashed or timed out) is counted all the same.
        """
        answer = self._update_if(
            Key=task_key(task_id),
            UpdateExpression="SET notification.attempts = if_not_exists(notification.attempts, :zero) + :one",
            ConditionExpression="notification.#state = :pending",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues=expression_values(zero=0, one=1, pending="pending"),
            ReturnValues="UPDATED_NEW",
        )
        if answer is None:
            return None
        return int(from_item(answer["Attributes"])["notification"]["attempts"])

    def push_back(self, task: TaskRecord, next_check_at: datetime, *, requeued: bool = False) -> bool:
        """Nothing more to do for this task now: look again at `next_check_at` (counts the visit)."""
        counter = "requeues" if requeued else "checks"
        return (
            self._update_if(
                Key=task_key(task.taskId),
                UpdateExpression=f"SET nextCheckAt = :due ADD {counter} :one",
                ConditionExpression=f"#status = :status AND {NOT_DELETED}",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=expression_values(
                    due=iso(next_check_at), one=1, status=task.status.value, deleted=TaskStatus.DELETED.value
                ),
            )
            is not None
        )

    def claim_progress_refresh(self, task_id: str, now: datetime, stale_before: datetime) -> bool:
        """True for the one poller that may ask the upstream now (the cached progress is stale)."""
        return (
            self._update_if(
                Key=task_key(task_id),
                UpdateExpression="SET progressAt = :now",
                ConditionExpression=(
                    "#status = :submitted AND (attribute_not_exists(progressAt) OR progressAt < :stale)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=expression_values(
                    now=iso(now), stale=iso(stale_before), submitted=TaskStatus.SUBMITTED.value
                ),
            )
            is not None
        )

    def save_progress(self, task_id: str, progress: float) -> None:
        self._update_if(
            Key=task_key(task_id),
            UpdateExpression="SET progress = :progress",
            ConditionExpression="#status = :submitted",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=expression_values(
                progress=Decimal(str(round(progress, 4))), submitted=TaskStatus.SUBMITTED.value
            ),
        )

    def tasks_due(self, status: TaskStatus, now: datetime, limit: int = 100) -> Iterator[TaskRecord]:
        """Unfinished tasks in `status` whose check is due, the longest overdue first.

        The index holds keys only (an update that leaves `status` and `nextCheckAt` alone writes nothing
        to it): each task is read from the table as the sweep reaches it, consistently, and skipped if it
        has moved on since the index saw it.
        """
        paginator = self._db.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.table_name,
            IndexName=DUE_INDEX,
            KeyConditionExpression="#status = :status AND nextCheckAt <= :now",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=expression_values(status=status.value, now=iso(now)),
            PaginationConfig={"MaxItems": limit, "PageSize": min(limit, 100)},
        )
        due_by = iso(now)
        for page in pages:
            for key in page.get("Items", []):
                found = self._db.get_item(
                    TableName=self.table_name, Key={"pk": key["pk"]}, ConsistentRead=True
                )
                if "Item" not in found:
                    continue
                task = TaskRecord.from_item(from_item(found["Item"]))
                if task.status is status and task.nextCheckAt is not None and task.nextCheckAt <= due_by:
                    yield task

    # -- a client's own tasks ---------------------------------------------------------------------

    def tasks_of(
        self,
        owner: str,
        *,
        limit: int,
        status: TaskStatus | None = None,
        after: dict[str, str] | None = None,
    ) -> tuple[list[TaskRecord], dict[str, str] | None]:
        """One page of a client's tasks, newest first, and the key to continue after (None: no more).

        The owner index holds keys only, so that no update but the task's creation and deletion writes
        to it: each page of keys is read from the table with one BatchGetItem, and `status` is matched
        here. One call examines at most LIST_READ_BUDGET tasks whatever the client's history: looking
        for a rare status, it may return fewer than `limit` (even none) and the key of the last task
        it examined, to continue from.
        """
        found: list[TaskRecord] = []
        start = {name: {"S": value} for name, value in after.items()} if after else None
        examined = 0
        while True:
            request: dict[str, Any] = {
                "TableName": self.table_name,
                "IndexName": OWNER_INDEX,
                "KeyConditionExpression": "#owner = :owner",
                "ExpressionAttributeNames": {"#owner": "owner"},
                "ExpressionAttributeValues": expression_values(owner=owner),
                "ScanIndexForward": False,
                "Limit": min(100, LIST_READ_BUDGET - examined, limit - len(found) if status is None else 100),
            }
            if start:
                request["ExclusiveStartKey"] = start
            page = self._db.query(**request)
            keys = page.get("Items", [])
            records = self._read_many([key["pk"]["S"] for key in keys])
            listed = [
                task
                for task in (records.get(key["pk"]["S"]) for key in keys)
                # deleted meanwhile, or not in the status asked for
                if task is not None and task.owner == owner and (status is None or task.status is status)
            ]
            for task in listed:
                found.append(task)
                if len(found) == limit:
                    more = task is not listed[-1] or "LastEvaluatedKey" in page
                    return found, _cursor_key(task, owner) if more else None
            start = page.get("LastEvaluatedKey")
            if not start:
                return found, None
            examined += len(keys)
            if examined >= LIST_READ_BUDGET:  # the rest in the next request, from the last one examined
                return found, {name: start[name]["S"] for name in CURSOR_KEYS}

    def _read_many(self, pks: list[str]) -> dict[str, TaskRecord]:
        """The items of up to 100 keys, by key (BatchGetItem, again for any keys it left unprocessed)."""
        records: dict[str, TaskRecord] = {}
        wanted: list[dict[str, Any]] = [{"pk": {"S": pk}} for pk in dict.fromkeys(pks)]
        for _attempt in range(5):
            if not wanted:
                break
            answer = self._db.batch_get_item(
                RequestItems={self.table_name: {"Keys": wanted, "ConsistentRead": True}}
            )
            for item in answer.get("Responses", {}).get(self.table_name, []):
                record = from_item(item)
                records[record["pk"]] = TaskRecord.from_item(record)
            wanted = answer.get("UnprocessedKeys", {}).get(self.table_name, {}).get("Keys", [])
        if wanted:  # throttled throughout: an AWS fault like any other (503, retry)
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "keys unprocessed"}},
                "BatchGetItem",
            )
        return records

    def tombstone(self, task_id: str, owner: str, now: datetime) -> bool:
        """Forget a finished task but its id: a late callback for it is then a plain duplicate.

        False when the task is not this owner's finished task (it is running, gone or someone else's).
        """
        return (
            self._update_if(
                Key=task_key(task_id),
                UpdateExpression=(
                    "SET #status = :deleted, updatedAt = :now "
                    "REMOVE #owner, options, images, resultUrls, #error, progress, lastDownloadError, "
                    "webhookUrl, notification, notifyPending, nextCheckAt"
                ),
                ConditionExpression="#owner = :owner AND #status IN (:stored, :failed)",
                ExpressionAttributeNames={"#status": "status", "#owner": "owner", "#error": "error"},
                ExpressionAttributeValues=expression_values(
                    deleted=TaskStatus.DELETED.value,
                    now=iso(now),
                    owner=owner,
                    stored=TaskStatus.STORED.value,
                    failed=TaskStatus.FAILED.value,
                ),
            )
            is not None
        )


def _cursor_key(task: TaskRecord, owner: str) -> dict[str, str]:
    return {"pk": f"task#{task.taskId}", "owner": owner, "createdAt": task.createdAt}
