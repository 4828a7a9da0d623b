"""Idempotency-Key on POST /tasks, in its own DynamoDB table: each (client, key) is claimed once for one
task id, before anything is recorded or paid for, so a retry always finds the task the first request
made, whatever became of that request (a timeout, a crash, a reply still on its way)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from image_pipeline.adapters.aws import AwsAdapter
from image_pipeline.adapters.dynamo_items import (
    epoch_seconds,
    expression_values,
    from_item,
    is_condition_failure,
    to_item,
)
from image_pipeline.task_records import Claim

ONE_DAY = timedelta(days=1)


class IdempotencyClaims(AwsAdapter):
    """Items {id: "<client>#<sha256 of the key>", taskId, requestHash, expiration} (TTL on expiration)."""

    def __init__(self, table_name: str, *, dynamodb: Any = None, lifetime: timedelta = ONE_DAY) -> None:
        from image_pipeline.adapters.aws import client

        self.table_name = table_name
        self.lifetime = lifetime
        self._db = dynamodb or client("dynamodb")

    @staticmethod
    def _id(owner: str, key: str) -> str:
        # Hashed: a key is the client's text (up to 255 characters), the item id needs no more than this.
        return f"{owner}#{hashlib.sha256(key.encode()).hexdigest()}"

    def claim(self, owner: str, key: str, request_hash: str, task_id: str, now: datetime) -> Claim | None:
        """None when this call claimed the key for `task_id`; else the claim made before it."""
        try:
            self._db.put_item(
                TableName=self.table_name,
                Item=to_item(
                    {
                        "id": self._id(owner, key),
                        "taskId": task_id,
                        "requestHash": request_hash,
                        "expiration": epoch_seconds(now + self.lifetime),
                    }
                ),
                # TTL deletes lazily: a claim past its lifetime is free again, as if it were gone.
                ConditionExpression="attribute_not_exists(id) OR expiration < :now",
                ExpressionAttributeValues=expression_values(now=epoch_seconds(now)),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            old_item: Any = error.response.get("Item") or {}
            before = from_item(old_item)
            if not isinstance(before.get("taskId"), str) or not isinstance(before.get("requestHash"), str):
                raise  # not an item we wrote: an AWS fault like any other
            return Claim(task_id=before["taskId"], request_hash=before["requestHash"])
        return None

    def release(self, owner: str, key: str, task_id: str) -> None:
        """The claimed task was refused by the upstream, so never made: the key may be used again."""
        try:
            self._db.delete_item(
                TableName=self.table_name,
                Key={"id": {"S": self._id(owner, key)}},
                ConditionExpression="taskId = :task",
                ExpressionAttributeValues=expression_values(task=task_id),
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise
