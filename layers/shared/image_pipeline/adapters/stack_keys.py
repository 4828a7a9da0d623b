"""Keys the stack makes for itself and keeps in its tasks table ("key#<name>" items, without the
attributes the table's indexes read): random, made by the first caller that needs one, the same for
every container after that. The list cursors' signing key is one: a Secrets Manager secret would cost
$0.40 a month for a value only this stack reads. Rotate a key by deleting its item."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from image_pipeline.adapters.aws import AwsAdapter, client
from image_pipeline.adapters.dynamo_items import is_condition_failure
from image_pipeline.adapters.secrets import SECRET_CACHE_SECONDS

KEY_BYTES = 48  # 64 characters of URL-safe base64


class StackKeys(AwsAdapter):
    def __init__(
        self,
        table_name: str,
        *,
        dynamodb: Any = None,
        cache_seconds: float = SECRET_CACHE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table_name = table_name
        self._db = dynamodb or client("dynamodb")
        self._cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._cached: dict[str, tuple[str, float]] = {}

    def key(self, name: str) -> str:
        """The stack's key `name`, made now if it has none; read again after `cache_seconds` (a rotated
        key reaches every container within that)."""
        cached = self._cached.get(name)
        if cached is not None and self._monotonic() - cached[1] < self._cache_seconds:
            return cached[0]
        value = self._read(name) or self._make(name)
        self._cached[name] = (value, self._monotonic())
        return value

    def _read(self, name: str) -> str | None:
        found = self._db.get_item(
            TableName=self.table_name, Key={"pk": {"S": f"key#{name}"}}, ConsistentRead=True
        ).get("Item")
        value = (found or {}).get("key", {}).get("S")
        return str(value) if value else None

    def _make(self, name: str) -> str:
        """A new key, unless another container's lands first (then theirs). An item without a usable
        key (written by hand) is replaced. A few rounds at most: each loses only to a rotation."""
        for _round in range(3):
            made = secrets.token_urlsafe(KEY_BYTES)
            try:
                self._db.put_item(
                    TableName=self.table_name,
                    Item={"pk": {"S": f"key#{name}"}, "key": {"S": made}},
                    ConditionExpression=(
                        "attribute_not_exists(pk) OR attribute_not_exists(#key) OR #key = :empty"
                    ),
                    ExpressionAttributeNames={"#key": "key"},
                    ExpressionAttributeValues={":empty": {"S": ""}},
                )
            except ClientError as error:
                if not is_condition_failure(error):
                    raise
                theirs = self._read(name)
                if theirs is not None:
                    return theirs
                continue  # made and deleted (rotated) in between: make one again
            return made
        raise RuntimeError(f"the stack's key {name!r} kept changing while it was made")
