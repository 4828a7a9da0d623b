"""What the pipeline costs: AWS calls counted by operation at moto (a WSGI wrapper around the local stack's
moto server), DynamoDB write units computed from the items before and after each write, and list prices.

PRICES is the one table of prices (us-east-1, on-demand, before any free tier), each with its source.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

# (price in USD, per how many units, source)
PRICES: dict[str, tuple[float, int, str]] = {
    "lambda_request": (0.20, 1_000_000, "https://aws.amazon.com/lambda/pricing/"),
    "lambda_gb_second_arm64": (0.0000133334, 1, "https://aws.amazon.com/lambda/pricing/"),
    "apigateway_rest_request": (3.50, 1_000_000, "https://aws.amazon.com/api-gateway/pricing/"),
    "sqs_request": (0.40, 1_000_000, "https://aws.amazon.com/sqs/pricing/"),
    "s3_put": (0.005, 1_000, "https://aws.amazon.com/s3/pricing/"),
    "s3_get": (0.0004, 1_000, "https://aws.amazon.com/s3/pricing/"),
    "dynamodb_wru": (0.625, 1_000_000, "https://aws.amazon.com/dynamodb/pricing/on-demand/"),
    "dynamodb_rru": (0.125, 1_000_000, "https://aws.amazon.com/dynamodb/pricing/on-demand/"),
    "eventbridge_event": (1.00, 1_000_000, "https://aws.amazon.com/eventbridge/pricing/"),
    "cloudwatch_alarm_metric_month": (0.10, 1, "https://aws.amazon.com/cloudwatch/pricing/"),
    "cloudwatch_custom_metric_month": (0.30, 1, "https://aws.amazon.com/cloudwatch/pricing/"),
    "cloudwatch_dashboard_month": (3.00, 1, "https://aws.amazon.com/cloudwatch/pricing/"),
    "cloudwatch_logs_gb": (0.50, 1, "https://aws.amazon.com/cloudwatch/pricing/"),
    "secretsmanager_secret_month": (0.40, 1, "https://aws.amazon.com/secrets-manager/pricing/"),
}
S3_PUTS = {"PutObject", "DeleteObjects", "ListObjectVersions", "ListObjectsV2", "CopyObject"}
S3_GETS = {"GetObject", "HeadObject"}
# Lambda gives a function CPU in proportion to its memory: one vCPU at 1,769 MB, so 0.14 of one at 256 MB.
# https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html
MB_PER_VCPU = 1769
# The benchmark's own reads of the table (waiting for its tasks to end) carry this in their User-Agent and
# are not counted: they are the observer's, not the pipeline's.
OBSERVER_AGENT = "bench-observer"
WRITES = {"PutItem", "UpdateItem", "DeleteItem"}
# A ReceiveMessage that brought no message: the event source mappings' idle polling, which goes on with or
# without traffic (fixed_costs.py counts it), not a task's cost.
IDLE_RECEIVE = "ReceiveMessage, empty"
# Seconds in a month (30 days) and the idle poll rate of an SQS event source mapping: Lambda keeps about
# five long polls of 20 s open on an empty queue (not documented exactly; blog measurements agree).
MONTH_SECONDS = 30 * 24 * 3600
IDLE_POLLERS = 5
LONG_POLL_SECONDS = 20


def price(name: str, units: float) -> float:
    amount, per, _source = PRICES[name]
    return amount * units / per


def billed_seconds(seconds: float, cpu_seconds: float, memory_mb: int) -> float:
    """An invocation measured here (wall time, CPU time of its worker) as Lambda would run it at
    `memory_mb`: its CPU work stretched by the function's share of a vCPU, its waits unchanged, rounded
    up to the millisecond. This machine's cores count as Graviton's (not measured here)."""
    share = min(1.0, memory_mb / MB_PER_VCPU)
    waits = max(0.0, seconds - cpu_seconds)
    return math.ceil((waits + cpu_seconds / share) * 1000) / 1000


# ----------------------------------------------------------------------------------------- the cron poller
# Issue 13 set the cost row beside "a cron Lambda polling record-info every 30 s: $4.36 a month fixed"
# without saying how it was reached. The figure is matched by a 128 MB arm64 function kept running all month,
# each run asking the upstream and then waiting out its 30 s (86,400 runs), at list price, with 600 bytes of
# log lines a run (START, END, REPORT, one line). That derivation is ours: the figure stays an assumption.
CRON_POLL_SECONDS = 30
CRON_MEMORY_MB = 128
CRON_LOG_BYTES_PER_RUN = 600


def cron_poller_monthly() -> dict[str, float]:
    runs = MONTH_SECONDS / CRON_POLL_SECONDS
    parts = {
        "GB-s": price("lambda_gb_second_arm64", MONTH_SECONDS * CRON_MEMORY_MB / 1024),
        "requests": price("lambda_request", runs),
        "log lines": price("cloudwatch_logs_gb", runs * CRON_LOG_BYTES_PER_RUN / 1e9),
    }
    return {**parts, "total": sum(parts.values()), "runs": runs}


# ----------------------------------------------------------------------------------------- item sizes


def _value_size(value: dict[str, Any]) -> int:
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        digits = len(re.sub(r"[^0-9]", "", inner).lstrip("0")) or 1
        return math.ceil(digits / 2) + 1
    if kind == "B":
        return len(inner) * 3 // 4
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(_value_size(v) + 1 for v in inner)
    if kind in ("SS", "NS", "BS"):
        return sum(len(str(v)) for v in inner)
    return 0


def item_size(item: dict[str, Any] | None) -> int:
    """DynamoDB's item size: attribute names plus values (docs: Item sizes and formats)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in (item or {}).items())


def units(size: int, unit: int) -> int:
    return max(1, math.ceil(size / unit))


class Indexes:
    """The tasks table's GSIs as the template declares them: keys and projection."""

    def __init__(self, table_properties: dict[str, Any], table_keys: Iterable[str]) -> None:
        self.table_keys = list(table_keys)
        self.indexes = [
            (
                [key["AttributeName"] for key in index["KeySchema"]],
                index["Projection"]["ProjectionType"],
                index["Projection"].get("NonKeyAttributes", []),
            )
            for index in table_properties.get("GlobalSecondaryIndexes", [])
        ]

    def entry(self, keys: list[str], projection: str, extra: list[str], item: dict[str, Any] | None) -> Any:
        if not item or any(key not in item for key in keys):
            return None
        if projection == "ALL":
            return item
        names = {*self.table_keys, *keys, *(extra if projection == "INCLUDE" else [])}
        return {name: value for name, value in item.items() if name in names}

    def writes(self, before: dict[str, Any] | None, after: dict[str, Any] | None) -> int:
        total = 0
        for keys, projection, extra in self.indexes:
            old, new = self.entry(keys, projection, extra, before), self.entry(keys, projection, extra, after)
            if old == new:
                continue
            if old is None or new is None:
                total += units(item_size(old or new), 1024)
            elif all(old[key] == new[key] for key in keys):
                total += units(max(item_size(old), item_size(new)), 1024)
            else:  # the index key changed: the old entry is deleted, the new one put
                total += units(item_size(old), 1024) + units(item_size(new), 1024)
        return total


# ----------------------------------------------------------------------------------------- the counter


class CallCounter:
    """WSGI middleware for the local stack's moto server: counts calls and DynamoDB units."""

    def __init__(self, tasks_table_suffix: str, indexes: Indexes, observer: str = OBSERVER_AGENT) -> None:
        self.observer = observer  # requests whose User-Agent holds it are passed on, never counted
        self.calls: Counter[str] = Counter()
        self.wru = Counter[str]()  # "table" / "index" per operation
        self.rru = 0.0
        self.events = 0
        self.suffix = tasks_table_suffix
        self.indexes = indexes
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.wru.clear()
            self.rru = 0.0
            self.events = 0

    def middleware(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        from devstack.common import moto_atomic

        def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if self.observer in environ.get("HTTP_USER_AGENT", ""):
                return app(environ, start_response)
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            if not target:
                operation = self._s3_operation(environ)
                with self._lock:
                    self.calls[f"s3:{operation}"] += 1
                return app(environ, start_response)
            service, _, operation = target.partition(".")
            service = {"AmazonSQS": "sqs", "AWSEvents": "events"}.get(service, service.split("_")[0].lower())
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length else b""
            import io

            environ["wsgi.input"] = io.BytesIO(raw)
            body = json.loads(raw or b"{}")
            status: list[str] = []

            def capture(code: str, headers: Any, *rest: Any) -> Any:
                status.append(code)
                return start_response(code, headers, *rest)

            table = body.get("TableName", "")
            ours = service == "dynamodb" and table.endswith(self.suffix)
            # DynamoDB only (SQS long polls must not hold it): the item before and after, with the write.
            with moto_atomic._lock if service == "dynamodb" else contextlib.nullcontext():
                before = (
                    self._item(table, body.get("Key") or body.get("Item"))
                    if ours and operation in WRITES
                    else None
                )
                answer = list(app(environ, capture))
                after = (
                    self._item(table, body.get("Key") or body.get("Item"))
                    if ours and operation in WRITES
                    else None
                )
            if service == "sqs" and operation == "ReceiveMessage" and not self._messages(answer):
                operation = IDLE_RECEIVE
            with self._lock:
                self.calls[f"{service}:{operation}"] += 1
                if service == "events" and operation == "PutEvents":
                    self.events += len(body.get("Entries", []))
                if ours and operation in WRITES:
                    ok = status and status[0].startswith("200")
                    size = max(item_size(before), item_size(after) if ok else 0)
                    self.wru[f"table:{operation}"] += units(size, 1024)
                    if ok:
                        self.wru[f"index:{operation}"] += self.indexes.writes(before, after)
                elif service == "dynamodb" and operation in ("GetItem", "Query", "BatchGetItem"):
                    self.rru += self._read_units(operation, body, answer)
            return answer

        return application

    @staticmethod
    def _messages(answer: list[bytes]) -> bool:
        try:
            return bool(json.loads(b"".join(answer) or b"{}").get("Messages"))
        except ValueError:
            return True

    @staticmethod
    def _s3_operation(environ: dict[str, Any]) -> str:
        method, query = environ.get("REQUEST_METHOD", ""), environ.get("QUERY_STRING", "")
        if "versions" in query:
            return "ListObjectVersions"
        if "delete" in query and method == "POST":
            return "DeleteObjects"
        # Path style (moto): /<bucket> alone, or with a subresource, is a bucket operation (the stack's
        # set-up: CreateBucket, PutBucketVersioning, ...), not an object's.
        if not environ.get("PATH_INFO", "").strip("/").partition("/")[2]:
            subresource = query.partition("=")[0].partition("&")[0]
            return f"{method} bucket{'?' + subresource if subresource else ''}"
        return {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(
            method, method
        )

    @staticmethod
    def _item(table_name: str, key: dict[str, Any] | None) -> dict[str, Any] | None:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends
        from moto.dynamodb.models.dynamo_type import DynamoType

        if not key or "pk" not in key:
            return None
        table = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_table(table_name)
        item = table.get_item(DynamoType(key["pk"]), None)
        return item.to_json()["Attributes"] if item is not None else None

    @staticmethod
    def _read_units(operation: str, body: dict[str, Any], answer: list[bytes]) -> float:
        try:
            found = json.loads(b"".join(answer) or b"{}")
        except ValueError:
            return 0.0
        if operation == "GetItem":
            size = item_size(found.get("Item"))
            return units(size, 4096) * (1.0 if body.get("ConsistentRead") else 0.5)
        if operation == "Query":
            size = sum(item_size(item) for item in found.get("Items", []))
            return units(size, 4096) * (1.0 if body.get("ConsistentRead") else 0.5)
        return sum(
            units(item_size(item), 4096) for items in found.get("Responses", {}).values() for item in items
        )
