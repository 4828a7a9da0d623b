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
`nextCheckAt` a little ahead; whoever ended it sends the notify message, and the notifier clears both
once it has handled it. If the message was never sent or never handled, the reconciler finds the
ended task due and sends it again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from image_pipeline.adapters.dynamo_items import (
    _epoch,
    _from_item,
    _to_item,
    _values,
    submission_key,
    task_key,
)
from image_pipeline.adapters.task_queries import CURSOR_KEYS, DUE_INDEX, OWNER_INDEX, TaskQueries
from image_pipeline.task_models import StoredImage, TaskError, TaskRecord, TaskStatus, iso

__all__ = [
    "CURSOR_KEYS",
    "DUE_INDEX",
    "NOTIFY_GRACE",
    "OWNER_INDEX",
    "TasksTable",
    "submission_key",
    "task_key",
]

# How long an ended task waits for its notify message before the reconciler sends it instead.
NOTIFY_GRACE = timedelta(minutes=2)
# The outbox mark that every write ending a task sets, with its values (_end_mark).
END_MARK = "notifyPending = :true, nextCheckAt = :notify"


def _end_mark(now: datetime) -> dict[str, Any]:
    return {"true": True, "notify": iso(now + NOTIFY_GRACE)}


class TasksTable(TaskQueries):
    """Submissions (callback capabilities) and the task lifecycle; reads and bookkeeping in TaskQueries."""

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
        return TaskRecord.from_item(_from_item(found["Item"])) if "Item" in found else None

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
            f"#status = :failed, #error = :error, {END_MARK}",
            {"#error": "error"},
            "",
            failed=TaskStatus.FAILED.value,
            **_end_mark(now),
            error=error.to_dict(),
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
                image=image.to_dict(), now=iso(now), one=1, downloading=TaskStatus.DOWNLOADING.value
            ),
            ReturnValues="ALL_NEW",
        )
        return TaskRecord.from_item(_from_item(found["Attributes"])) if found is not None else None

    def finish_with_image(
        self, task_id: str, image: StoredImage, *, stored_before: int, images_expected: int, now: datetime
    ) -> bool:
        """Record the task's last missing image and end it `stored`, in one write.

        Only if the task still has exactly `stored_before` images, this one not among them, and it is
        the last: a caller working from a stale read is refused and records the image with add_image.
        """
        if stored_before + 1 != images_expected:
            return False
        count_is = "storedCount = :before" if stored_before else "attribute_not_exists(storedCount)"
        return (
            self._update_if(
                Key=task_key(task_id),
                UpdateExpression=(
                    "SET images.#index = :image, storedCount = :expected, #status = :stored, "
                    f"updatedAt = :now, {END_MARK}"
                ),
                ConditionExpression=(
                    f"attribute_not_exists(images.#index) AND #status = :downloading AND {count_is} "
                    "AND imagesExpected = :expected"
                ),
                ExpressionAttributeNames={"#index": str(image.index), "#status": "status"},
                ExpressionAttributeValues=_values(
                    image=image.to_dict(),
                    expected=images_expected,
                    stored=TaskStatus.STORED.value,
                    downloading=TaskStatus.DOWNLOADING.value,
                    now=iso(now),
                    **_end_mark(now),
                    **({"before": stored_before} if stored_before else {}),
                ),
            )
            is not None
        )

    def mark_stored(self, task_id: str, now: datetime) -> bool:
        return (
            self._update_if(
                Key=task_key(task_id),
                UpdateExpression=(f"SET #status = :stored, updatedAt = :now, {END_MARK}"),
                ConditionExpression="#status = :downloading AND storedCount >= imagesExpected",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=_values(
                    stored=TaskStatus.STORED.value,
                    downloading=TaskStatus.DOWNLOADING.value,
                    now=iso(now),
                    **_end_mark(now),
                ),
            )
            is not None
        )

    def mark_failed(self, task_id: str, error: TaskError, now: datetime) -> bool:
        """A download failed for good: the task ends failed unless it already ended."""
        return (
            self._update_if(
                Key=task_key(task_id),
                UpdateExpression=f"SET #status = :failed, #error = :error, updatedAt = :now, {END_MARK}",
                ConditionExpression="#status IN (:submitted, :downloading)",
                ExpressionAttributeNames={"#status": "status", "#error": "error"},
                ExpressionAttributeValues=_values(
                    failed=TaskStatus.FAILED.value,
                    error=error.to_dict(),
                    now=iso(now),
                    submitted=TaskStatus.SUBMITTED.value,
                    downloading=TaskStatus.DOWNLOADING.value,
                    **_end_mark(now),
                ),
            )
            is not None
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
