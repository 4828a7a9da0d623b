"""DynamoDB adapter of the tasks table: every state change is one conditional write.

Items (pk only): "task#<taskId>", the task record (image_pipeline.task_records.TaskRecord). The taskId is
ours, minted and written (with the hash of its callback capability) before the upstream is called, so
the task exists, owned, before the upstream can possibly call back; the upstream's id is learnt from the
generate reply or from the callback to the task's own URL. Records written before ids were ours are
keyed by the upstream's id and carry a `submissionId` (their capability lived in a "sub#" item).

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

from botocore.exceptions import ClientError

from image_pipeline.adapters.dynamo_items import (
    epoch_seconds,
    expression_values,
    from_item,
    is_condition_failure,
    task_key,
    to_item,
)
from image_pipeline.adapters.task_queries import (
    CURSOR_KEYS,
    DUE_INDEX,
    NOT_DELETED,
    OWNER_INDEX,
    TaskQueries,
)
from image_pipeline.task_records import (
    SUBMIT_UNCONFIRMED,
    Reopen,
    StoredImage,
    TaskError,
    TaskRecord,
    TaskStatus,
    iso,
)

__all__ = [
    "CURSOR_KEYS",
    "DUE_INDEX",
    "NOTIFY_GRACE",
    "OWNER_INDEX",
    "TasksTable",
    "task_key",
]

# How long an ended task waits for its notify message before the reconciler sends it instead.
NOTIFY_GRACE = timedelta(minutes=2)
# The outbox mark that every write ending a task sets, with its values (_end_mark).
NOTIFY_MARK = "notifyPending = :true, nextCheckAt = :notify"


def _end_mark(now: datetime) -> dict[str, Any]:
    return {"true": True, "notify": iso(now + NOTIFY_GRACE)}


class TasksTable(TaskQueries):
    """Submissions and the task lifecycle; reads and bookkeeping in TaskQueries."""

    # -- submissions ----------------------------------------------------------------------------

    def create_task(
        self,
        task_id: str,
        *,
        owner: str,
        options: dict[str, Any],
        token_hash: str,
        now: datetime,
        next_check_at: datetime,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        inputs: list[dict[str, str]] | None = None,
    ) -> bool:
        """Record a task under our id before the upstream hears of it; False if the id is taken.

        It is `submitting` and due at `next_check_at`: if neither the generate reply nor a callback
        confirms it by then, the reconciler ends it (submit_unconfirmed).
        """
        item: dict[str, Any] = {
            "pk": f"task#{task_id}",
            "taskId": task_id,
            "status": TaskStatus.SUBMITTING.value,
            "owner": owner,
            "options": options,
            "tokenHash": token_hash,
            "images": {},
            "createdAt": iso(now),
            "updatedAt": iso(now),
            "nextCheckAt": iso(next_check_at),
            "expiresAt": epoch_seconds(now + self.ttl),
        }
        if webhook_url:
            item["webhookUrl"] = webhook_url
            item["notification"] = {"state": "pending", "attempts": 0}
        if idempotency_key:
            item["idempotencyKey"] = idempotency_key
        if inputs:
            item["inputs"] = inputs
        try:
            self._db.put_item(
                TableName=self.table_name, Item=to_item(item), ConditionExpression="attribute_not_exists(pk)"
            )
        except ClientError as error:
            if is_condition_failure(error):
                return False
            raise
        return True

    def confirm_submitted(
        self, task_id: str, upstream_task_id: str, now: datetime, next_check_at: datetime
    ) -> bool:
        """The upstream's generate reply named its id: the task is `submitted`, due for the reconciler
        at `next_check_at`. False when it has moved on already (its callback came first) or is gone."""
        return (
            self._update_if(
                Key=task_key(task_id),
                UpdateExpression=(
                    "SET upstreamTaskId = :upstream, #status = :submitted, updatedAt = :now, "
                    "nextCheckAt = :due"
                ),
                ConditionExpression="#status = :submitting AND attribute_not_exists(upstreamTaskId)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=expression_values(
                    upstream=upstream_task_id,
                    submitted=TaskStatus.SUBMITTED.value,
                    submitting=TaskStatus.SUBMITTING.value,
                    now=iso(now),
                    due=iso(next_check_at),
                ),
            )
            is not None
        )

    def withdraw(self, task_id: str, now: datetime) -> bool:
        """The upstream refused the submit outright: the task was never made, and no client sees it
        (a bare tombstone, as a deleted task, so a stray callback for it is a plain duplicate)."""
        return (
            self._update_if(
                Key=task_key(task_id),
                UpdateExpression=(
                    "SET #status = :deleted, updatedAt = :now "
                    "REMOVE #owner, options, images, webhookUrl, notification, nextCheckAt"
                ),
                ConditionExpression="#status = :submitting",
                ExpressionAttributeNames={"#status": "status", "#owner": "owner"},
                ExpressionAttributeValues=expression_values(
                    deleted=TaskStatus.DELETED.value, submitting=TaskStatus.SUBMITTING.value, now=iso(now)
                ),
            )
            is not None
        )

    # -- tasks ------------------------------------------------------------------------------

    def get_task(self, task_id: str) -> TaskRecord | None:
        found = self._db.get_item(TableName=self.table_name, Key=task_key(task_id), ConsistentRead=True)
        return TaskRecord.from_item(from_item(found["Item"])) if "Item" in found else None

    def _first_outcome(
        self,
        task_id: str,
        upstream_task_id: str,
        now: datetime,
        sets: str,
        names: dict[str, str],
        *,
        reopen: Reopen | None,
        removes: tuple[str, ...] = (),
        **values: Any,
    ) -> bool:
        """The one conditional write that deduplicates callbacks: only a task with no outcome yet moves
        on, and only with the upstream id it already has (or learns here, from its own callback URL).

        `reopen`: the task ended submit_unconfirmed (its submit was never confirmed) and this is the
        outcome that came after all: it moves on, its error goes, and its end is announced again.
        """
        parts = [sets, "callbackAt = :now", "updatedAt = :now", "upstreamTaskId = :upstream"]
        counters = []
        if reopen is None:
            state = "#status IN (:submitting, :submitted)"
            values.update(submitting=TaskStatus.SUBMITTING.value, submitted=TaskStatus.SUBMITTED.value)
        else:
            state = "#status = :failed_before AND #error.code = :unconfirmed"
            values.update(failed_before=TaskStatus.FAILED.value, unconfirmed=SUBMIT_UNCONFIRMED)
            names = {**names, "#error": "error"}
            parts.append("eventPublished = :unpublished")
            values["unpublished"] = False
            counters.append("reopened :one")
            values["one"] = 1
            if reopen.webhook:  # the new end is a new notification, delivered afresh
                parts.append("notification = :fresh_notification")
                values["fresh_notification"] = {"state": "pending", "attempts": 0}
        expression = "SET " + ", ".join(parts)
        if counters:
            expression += " ADD " + ", ".join(counters)
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        return (
            self._update_if(
                Key=task_key(task_id),
                UpdateExpression=expression,
                ConditionExpression=(
                    f"attribute_not_exists(callbackAt) AND ({state}) "
                    "AND (attribute_not_exists(upstreamTaskId) OR upstreamTaskId = :upstream)"
                ),
                ExpressionAttributeNames={"#status": "status", **names},
                ExpressionAttributeValues=expression_values(
                    now=iso(now), upstream=upstream_task_id, **values
                ),
            )
            is not None
        )

    def start_downloading(
        self,
        task_id: str,
        upstream_task_id: str,
        urls: list[str],
        now: datetime,
        next_check_at: datetime,
        *,
        reopen: Reopen | None = None,
    ) -> bool:
        return self._first_outcome(
            task_id,
            upstream_task_id,
            now,
            "#status = :downloading, imagesExpected = :count, resultUrls = :urls, jobsEnqueued = :false, "
            "nextCheckAt = :due",
            {},
            reopen=reopen,
            removes=("#error", "notifyPending") if reopen else (),
            downloading=TaskStatus.DOWNLOADING.value,
            count=len(urls),
            urls=urls,
            false=False,
            due=iso(next_check_at),
        )

    def fail_from_callback(
        self,
        task_id: str,
        upstream_task_id: str,
        error: TaskError,
        now: datetime,
        *,
        reopen: Reopen | None = None,
    ) -> bool:
        return self._first_outcome(
            task_id,
            upstream_task_id,
            now,
            f"#status = :failed, #error = :error, {NOTIFY_MARK}",
            {"#error": "error"},
            reopen=reopen,
            failed=TaskStatus.FAILED.value,
            **_end_mark(now),
            error=error.to_dict(),
        )

    def mark_jobs_enqueued(self, task_id: str, now: datetime) -> None:
        self._update_if(
            Key=task_key(task_id),
            UpdateExpression="SET jobsEnqueued = :true, enqueueFailed = :false, updatedAt = :now",
            ConditionExpression=f"attribute_exists(pk) AND {NOT_DELETED}",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=expression_values(
                true=True, false=False, now=iso(now), deleted=TaskStatus.DELETED.value
            ),
        )

    def mark_enqueue_failed(self, task_id: str, now: datetime) -> None:
        self._update_if(
            Key=task_key(task_id),
            UpdateExpression="SET enqueueFailed = :true, updatedAt = :now",
            ConditionExpression=f"attribute_exists(pk) AND jobsEnqueued = :false AND {NOT_DELETED}",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=expression_values(
                true=True, false=False, now=iso(now), deleted=TaskStatus.DELETED.value
            ),
        )

    def add_image(self, task_id: str, image: StoredImage, now: datetime) -> TaskRecord | None:
        """Record one stored image exactly once; the updated task, or None if it was already recorded."""
        found = self._update_if(
            Key=task_key(task_id),
            UpdateExpression="SET images.#index = :image, updatedAt = :now ADD storedCount :one",
            ConditionExpression="attribute_not_exists(images.#index) AND #status = :downloading",
            ExpressionAttributeNames={"#index": str(image.index), "#status": "status"},
            ExpressionAttributeValues=expression_values(
                image=image.to_dict(), now=iso(now), one=1, downloading=TaskStatus.DOWNLOADING.value
            ),
            ReturnValues="ALL_NEW",
        )
        return TaskRecord.from_item(from_item(found["Attributes"])) if found is not None else None

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
                    f"updatedAt = :now, {NOTIFY_MARK}"
                ),
                ConditionExpression=(
                    f"attribute_not_exists(images.#index) AND #status = :downloading AND {count_is} "
                    "AND imagesExpected = :expected"
                ),
                ExpressionAttributeNames={"#index": str(image.index), "#status": "status"},
                ExpressionAttributeValues=expression_values(
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
                UpdateExpression=(f"SET #status = :stored, updatedAt = :now, {NOTIFY_MARK}"),
                ConditionExpression="#status = :downloading AND storedCount >= imagesExpected",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=expression_values(
                    stored=TaskStatus.STORED.value,
                    downloading=TaskStatus.DOWNLOADING.value,
                    now=iso(now),
                    **_end_mark(now),
                ),
            )
            is not None
        )

    def mark_failed(self, task_id: str, error: TaskError, now: datetime) -> bool:
        """A download failed for good, or the sweep gave up: the task ends failed unless it already ended."""
        return (
            self._update_if(
                Key=task_key(task_id),
                UpdateExpression=f"SET #status = :failed, #error = :error, updatedAt = :now, {NOTIFY_MARK}",
                ConditionExpression="#status IN (:submitting, :submitted, :downloading)",
                ExpressionAttributeNames={"#status": "status", "#error": "error"},
                ExpressionAttributeValues=expression_values(
                    failed=TaskStatus.FAILED.value,
                    error=error.to_dict(),
                    now=iso(now),
                    submitting=TaskStatus.SUBMITTING.value,
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
            ExpressionAttributeValues=expression_values(
                reason=reason[:500], downloading=TaskStatus.DOWNLOADING.value
            ),
        )
