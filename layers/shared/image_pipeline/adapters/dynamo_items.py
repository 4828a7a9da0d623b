"""Turning values into DynamoDB items and back, the table's keys, and the conditional write every
state change of the tasks table is made of."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from image_pipeline.adapters.aws import AwsAdapter, client

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _serializer.serialize(value) for name, value in values.items()}


def expression_values(**named: Any) -> dict[str, Any]:
    return {f":{name}": _serializer.serialize(value) for name, value in named.items()}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
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


def is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def task_key(task_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"task#{task_id}"}}


def epoch_seconds(moment: datetime) -> int:
    return int(moment.timestamp())


class ConditionalTable(AwsAdapter):
    """A DynamoDB table written with conditional updates (a failed condition is an answer, not an error).

    An AwsAdapter: any other fault leaves its subclasses' public methods (TaskQueries, TasksTable) as
    AwsFault."""

    def __init__(self, table_name: str, *, ttl_days: int = 30, dynamodb: Any = None) -> None:
        self.table_name = table_name
        self.ttl = timedelta(days=ttl_days)
        self._db = dynamodb or client("dynamodb")

    def _update_if(self, **request: Any) -> dict[str, Any] | None:
        """One conditional UpdateItem: its response, or None when the condition did not hold."""
        try:
            response: dict[str, Any] = self._db.update_item(TableName=self.table_name, **request)
        except ClientError as error:
            if is_condition_failure(error):
                return None
            raise
        return response
