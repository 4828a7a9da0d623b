"""DynamoDB adapter of the tasks table: every state change is one conditional write.

Items (pk only):
- "sub#<submissionId>": a callback capability minted before the upstream call: the token's hash and,
  once known, the taskId it belongs to. It exists before the upstream can possibly call back.
- "task#<taskId>": the task record (image_pipeline.task_models.TaskRecord).

Every unfinished task carries `nextCheckAt`, the moment the reconciler should look at it; finished
tasks drop it, so the `status-nextCheckAt` index is sparse and holds only work that is still due.
Both indexes project keys only: a write to the table touches an index only when it changes that
index's keys, and the readers fetch the items themselves (template.yaml, README "What it costs").

Notifications use the same outbox: the write that ends a task also sets `notifyPending` and a
`nextCheckAt` a little ahead; whoever ended it sends the notify message and clears both. If it
crashed in between, the reconciler finds the ended task due and sends the message itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from image_pipeline.adapters.aws import client
from image_pipeline.task_models import StoredImage, TaskError, TaskRecord, TaskStatus, iso

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

DUE_INDEX = "status-nextCheckAt"
OWNER_INDEX = "owner-createdAt"
# The attributes of a list cursor: the key of the last task returned, in the owner index.
CURSOR_KEYS = ("pk", "owner", "createdAt")
# How long an ended task waits for its notify message before the reconciler sends it instead.
NOTIFY_GRACE = timedelta(minutes=2)


def _to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _serializer.serialize(value) for name, value in values.items()}


def _values(**named: Any) -> dict[str, Any]:
    return {f":{name}": _serializer.serialize(value) for name, value in named.items()}


def _from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return _plain({name: _deserializer.deserialize(value) for name, value in item.items()})


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal: turn them back into ints for pydantic and JSON."""
    if isinstance(value, dict):
        return {key: _plain(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_plain(inner) for inner in value]
    if type(value).__name__ == "Decimal":
        return int(value) if value == int(value) else float(value)
    return value


def _is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def task_key(task_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"task#{task_id}"}}


def submission_key(submission_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"sub#{submission_id}"}}


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


class TasksTable:
    def __init__(self, table_name: str, *, ttl_days: int = 30, dynamodb: Any = None) -> None:
        self.table_name = table_name
        self.ttl = timedelta(days=ttl_days)
        self._db = dynamodb or client("dynamodb")

    def _update_if(self, **request: Any) -> dict[str, Any] | None:
        """One conditional UpdateItem: its response, or None when the condition did not hold."""
        try:
            response: dict[str, Any] = self._db.update_item(TableName=self.table_name, **request)
        except ClientError as error:
            if _is_condition_failure(error):
                return None
            raise
        return response

    # -- submissions (callback capabilities) ---------------------------------------------------

    def put_submission(self, submission_id: str, token_hash: str, now: datetime) -> None:
        self._db.put_item(
            TableName=self.table_name,
            Item=_to_item(
                {
                    "pk": f"sub#{submission_id}",
                    "tokenHash": token_hash,
                    "createdAt": iso(now),
                    "expiresAt": _epoch(now + self.ttl),
                }
            ),
            ConditionExpression="attribute_not_exists(pk)",
        )

    def get_submission(self, submission_id: str) -> dict[str, Any] | None:
        found = self._db.get_item(
            TableName=self.table_name, Key=submission_key(submission_id), ConsistentRead=True
        )
        return _from_item(found["Item"]) if "Item" in found else None

    def bind_submission(self, submission_id: str, task_id: str) -> bool:
        """Tie the capability to one taskId forever; False when it already belongs to another task."""
        return (
            self._update_if(
                Key=submission_key(submission_id),
                UpdateExpression="SET taskId = :task",
                ConditionExpression=(
                    "attribute_exists(pk) AND (attribute_not_exists(taskId) OR taskId = :task)"
                ),
                ExpressionAttributeValues=_values(task=task_id),
            )
            is not None
        )

    def delete_submission(self, submission_id: str) -> None:
        self._db.delete_item(TableName=self.table_name, Key=submission_key(submission_id))

    # -- tasks ------------------------------------------------------------------------------

    def get_task(self, task_id: str) -> TaskRecord | None:
        found = self._db.get_item(TableName=self.table_name, Key=task_key(task_id), ConsistentRead=True)
        return TaskRecord.model_validate(_from_item(found["Item"])) if "Item" in found else None

    def record_submitted(
        self,
        task_id: str,
        submission_id: str,
        options: dict[str, Any],
        now: datetime,
        next_check_at: datetime,
        owner: str | None = None,
        webhook_url: str | None = None,
    ) -> None:
        """Create the task, or fill in the submit's fields if its own callback came first.

        `owner` is the client app that submitted it (its API key id): only that client sees it.

        The upstream named this taskId in its answer to *this* submission, so the submission is the
        task's owner. If a callback from another capability got there first (a leaked, still unbound
        callback URL), whatever it wrote is discarded and the task starts again as submitted.
        """
        sets = (
            "taskId = :task, submissionId = :sub, options = :options, "
            "createdAt = if_not_exists(createdAt, :now), expiresAt = if_not_exists(expiresAt, :expires)"
            + (", #owner = :owner" if owner else "")
            + (
                ", webhookUrl = :webhook, notification = if_not_exists(notification, :waiting)"
                if webhook_url
                else ""
            )
        )
        values = {
            "task": task_id,
            "sub": submission_id,
            "options": options,
            "now": iso(now),
            "expires": _epoch(now + self.ttl),
            "submitted": TaskStatus.SUBMITTED.value,
            "empty": {},
            "due": iso(next_check_at),
            **({"owner": owner} if owner else {}),
            **(
                {"webhook": webhook_url, "waiting": {"state": "pending", "attempts": 0}}
                if webhook_url
                else {}
            ),
        }
        names = {"#status": "status", **({"#owner": "owner"} if owner else {})}
        owned = self._update_if(
            Key=task_key(task_id),
            UpdateExpression=(
                f"SET {sets}, #status = if_not_exists(#status, :submitted), "
                "updatedAt = if_not_exists(updatedAt, :now), images = if_not_exists(images, :empty), "
                "nextCheckAt = if_not_exists(nextCheckAt, :due)"
            ),
            ConditionExpression="attribute_not_exists(submissionId) OR submissionId = :sub",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=_values(**values),
        )
        if owned is None:
            self._db.update_item(
                TableName=self.table_name,
                Key=task_key(task_id),
                UpdateExpression=(
                    f"SET {sets}, #status = :submitted, updatedAt = :now, images = :empty, "
                    "storedCount = :zero, nextCheckAt = :due "
                    "REMOVE callbackAt, resultUrls, imagesExpected, jobsEnqueued, enqueueFailed, "
                    "#error, lastDownloadError, requeues"
                ),
                ExpressionAttributeNames={**names, "#error": "error"},
                ExpressionAttributeValues=_values(**values, zero=0),
            )
        if webhook_url:
            self._announce_again_if_ended(task_id, now)

    def _announce_again_if_ended(self, task_id: str, now: datetime) -> None:
        """The callback can end a task before its submit records the webhook: if its end was already
        announced (without the webhook), it becomes due for the reconciler to announce again."""
        self._update_if(
            Key=task_key(task_id),
            UpdateExpression="SET notifyPending = :true, nextCheckAt = :now",
            ConditionExpression=(
                "#status IN (:stored, :failed) AND notification.#state = :pending "
                "AND attribute_not_exists(notifyPending)"
            ),
            ExpressionAttributeNames={"#status": "status", "#state": "state"},
            ExpressionAttributeValues=_values(
                true=True,
                now=iso(now),
                stored=TaskStatus.STORED.value,
                failed=TaskStatus.FAILED.value,
                pending="pending",
            ),
        )

    def unbind_submission(self, submission_id: str, task_id: str) -> None:
        """Undo a binding made for a callback that was then refused (so the capability stays usable)."""
        self._update_if(
            Key=submission_key(submission_id),
            UpdateExpression="REMOVE taskId",
            ConditionExpression="taskId = :task",
            ExpressionAttributeValues=_values(task=task_id),
        )

    def _first_outcome(
        self,
        task_id: str,
        submission_id: str,
        now: datetime,
        sets: str,
        names: dict[str, str],
        removes: str = "",
        **values: Any,
    ) -> bool:
        """The one conditional write that deduplicates callbacks: only a task with no outcome yet moves on."""
        return (
            self._update_if(
                Key=task_key(task_id),
                UpdateExpression=(
                    f"SET {sets}, callbackAt = :now, updatedAt = :now, taskId = :task, "
                    "submissionId = if_not_exists(submissionId, :sub), "
                    "createdAt = if_not_exists(createdAt, :now), "
                    "expiresAt = if_not_exists(expiresAt, :expires), images = if_not_exists(images, :empty)"
                    + (f" REMOVE {removes}" if removes else "")
                ),
                # Only the first outcome, and only for a task of this submission (or not yet recorded).
                ConditionExpression=(
                    "attribute_not_exists(callbackAt) "
                    "AND (attribute_not_exists(#status) OR #status = :submitted) "
                    "AND (attribute_not_exists(submissionId) OR submissionId = :sub)"
                ),
                ExpressionAttributeNames={"#status": "status", **names},
                ExpressionAttributeValues=_values(
                    now=iso(now),
                    task=task_id,
                    sub=submission_id,
                    expires=_epoch(now + self.ttl),
                    empty={},
                    submitted=TaskStatus.SUBMITTED.value,
                    **values,
                ),
            )
            is not None
        )

    def start_downloading(
        self, task_id: str, submission_id: str, urls: list[str], now: datetime, next_check_at: datetime
    ) -> bool:
        return self._first_outcome(
            task_id,
            submission_id,
            now,
            "#status = :downloading, imagesExpected = :count, resultUrls = :urls, jobsEnqueued = :false, "
            "nextCheckAt = :due",
            {},
            downloading=TaskStatus.DOWNLOADING.value,
            count=len(urls),
            urls=urls,
            false=False,
            due=iso(next_check_at),
        )

    def fail_from_callback(self, task_id: str, submission_id: str, error: TaskError, now: datetime) -> bool:
        return self._first_outcome(
            task_id,
            submission_id,
            now,
            "#status = :failed, #error = :error, notifyPending = :true, nextCheckAt = :notify",
            {"#error": "error"},
            "",
            failed=TaskStatus.FAILED.value,
            true=True,
            notify=iso(now + NOTIFY_GRACE),
            error=error.model_dump(),
        )

    def mark_jobs_enqueued(self, task_id: str, now: datetime) -> None:
        self._db.update_item(
            TableName=self.table_name,
            Key=task_key(task_id),
            UpdateExpression="SET jobsEnqueued = :true, enqueueFailed = :false, updatedAt = :now",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues=_values(true=True, false=False, now=iso(now)),
        )

    def mark_enqueue_failed(self, task_id: str, now: datetime) -> None:
        self._db.update_item(
            TableName=self.table_name,
            Key=task_key(task_id),
            UpdateExpression="SET enqueueFailed = :true, updatedAt = :now",
            ConditionExpression="attribute_exists(pk) AND jobsEnqueued = :false",
            ExpressionAttributeValues=_values(true=True, false=False, now=iso(now)),
        )

    def add_image(self, task_id: str, image: StoredImage, now: datetime) -> TaskRecord | None:
        """Record one stored image exactly once; the updated task, or None if it was already recorded."""
        found = self._update_if(
            Key=task_key(task_id),
            UpdateExpression="SET images.#index = :image, updatedAt = :now ADD storedCount :one",
            ConditionExpression="attribute_not_exists(images.#index) AND #status = :downloading",
            ExpressionAttributeNames={"#index": str(image.index), "#status": "status"},
            ExpressionAttributeValues=_values(
                image=image.model_dump(), now=iso(now), one=1, downloading=TaskStatus.DOWNLOADING.value
            ),
            ReturnValues="ALL_NEW",
        )
        return TaskRecord.model_validate(_from_item(found["Attributes"])) if found is not None else None

    def mark_stored(self, task_id: str, now: datetime) -> bool:
        return (
            self._update_if(
                Key=task_key(task_id),
                UpdateExpression=(
                    "SET #status = :stored, updatedAt = :now, notifyPending = :true, nextCheckAt = :notify"
                ),
                ConditionExpression="#status = :downloading AND storedCount >= imagesExpected",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=_values(
                    stored=TaskStatus.STORED.value,
                    downloading=TaskStatus.DOWNLOADING.value,
                    now=iso(now),
                    true=True,
                    notify=iso(now + NOTIFY_GRACE),
                ),
            )
            is not None
        )

    def mark_failed(self, task_id: str, error: TaskError, now: datetime) -> bool:
        """A download failed for good: the task ends failed unless it already ended."""
        return (
            self._update_if(
                Key=task_key(task_id),
                UpdateExpression=(
                    "SET #status = :failed, #error = :error, updatedAt = :now, "
                    "notifyPending = :true, nextCheckAt = :notify"
                ),
                ConditionExpression="#status IN (:submitted, :downloading)",
                ExpressionAttributeNames={"#status": "status", "#error": "error"},
                ExpressionAttributeValues=_values(
                    failed=TaskStatus.FAILED.value,
                    error=error.model_dump(),
                    now=iso(now),
                    submitted=TaskStatus.SUBMITTED.value,
                    downloading=TaskStatus.DOWNLOADING.value,
                    true=True,
                    notify=iso(now + NOTIFY_GRACE),
                ),
            )
            is not None
        )

    # -- notifications (the client's webhook, the event bus) ------------------------------------

    def notify_sent(self, task_id: str) -> None:
        """The notify message is on its queue: the ended task leaves the reconciler's index."""
        self._update_if(
            Key=task_key(task_id),
            UpdateExpression="REMOVE notifyPending, nextCheckAt",
            ConditionExpression="notifyPending = :true AND #status IN (:stored, :failed)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=_values(
                true=True, stored=TaskStatus.STORED.value, failed=TaskStatus.FAILED.value
            ),
        )

    def event_published(self, task_id: str) -> bool:
        """Record that the task's event went to the event bus; False if it already had."""
        return (
            self._update_if(
                Key=task_key(task_id),
                UpdateExpression="SET eventPublished = :true",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(eventPublished)",
                ExpressionAttributeValues=_values(true=True),
            )
            is not None
        )

    def record_delivery(self, task_id: str, notification: dict[str, Any]) -> None:
        """The webhook's state after one delivery attempt (never moves back from delivered)."""
        self._update_if(
            Key=task_key(task_id),
            UpdateExpression="SET notification = :notification",
            ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(notification.#state) "
            "OR notification.#state <> :delivered)",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues=_values(notification=notification, delivered="delivered"),
        )

    def note_download_error(self, task_id: str, reason: str, now: datetime) -> None:
        """Keep the latest passing download failure: the task's error if it has to give up."""
        self._update_if(
            Key=task_key(task_id),
            UpdateExpression="SET lastDownloadError = :reason",
            ConditionExpression="#status = :downloading",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=_values(reason=reason[:500], downloading=TaskStatus.DOWNLOADING.value),
        )

    def push_back(self, task: TaskRecord, next_check_at: datetime, *, requeued: bool = False) -> bool:
        """Nothing more to do for this task now: look again at `next_check_at` (counts the visit)."""
        counter = "requeues" if requeued else "checks"
        return (
            self._update_if(
                Key=task_key(task.taskId),
                UpdateExpression=f"SET nextCheckAt = :due ADD {counter} :one",
                ConditionExpression="#status = :status",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=_values(due=iso(next_check_at), one=1, status=task.status.value),
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
                ExpressionAttributeValues=_values(
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
            ExpressionAttributeValues=_values(
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
            ExpressionAttributeValues=_values(status=status.value, now=iso(now)),
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
                task = TaskRecord.model_validate(_from_item(found["Item"]))
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
        here.
        """
        found: list[TaskRecord] = []
        start = {name: {"S": value} for name, value in after.items()} if after else None
        while True:
            request: dict[str, Any] = {
                "TableName": self.table_name,
                "IndexName": OWNER_INDEX,
                "KeyConditionExpression": "#owner = :owner",
                "ExpressionAttributeNames": {"#owner": "owner"},
                "ExpressionAttributeValues": _values(owner=owner),
                "ScanIndexForward": False,
                "Limit": min(100, limit - len(found)) if status is None else 100,
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
                record = _from_item(item)
                records[record["pk"]] = TaskRecord.model_validate(record)
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
                ExpressionAttributeValues=_values(
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
