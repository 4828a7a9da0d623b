"""Every AWS call a function makes, as IAM authorizes it: the action(s) and the resource ARN(s).

Recording hooks botocore's ``provide-client-params`` event on every client created while it is on
(``botocore.session.Session.create_client`` is wrapped, from the test side only: production code
knows nothing of it). That event fires once per API call, per page of a paginator, and also for
``generate_presigned_url``, which makes no call at all but hands out a link that S3 authorizes
against the signer's role when it is used: it is recorded as the action the link performs.

A call belongs to the function whose handler module is on the stack (``api_handler`` ->
ApiFunction, from template.yaml's Handler entries); calls made outside any handler (a test's own
setup) are not recorded. The local stack's worker processes record through `invoke_recording`.

Nothing here imports pytest: the local stack's worker processes import this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ACCOUNT = "123456789012"  # moto's default account: the tests' resources live there
REGION = "us-east-1"


@dataclass(frozen=True)
class Permission:
    """One action on one resource that IAM checks for a call."""

    action: str
    resource: str
    # Condition keys the request carries: s3:prefix, and dynamodb:LeadingKeys once per partition key
    # value the call touches (tests/iam/policy.py evaluates statements' conditions on them).
    context: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Call:
    function: str  # logical id of the function that made it
    operation: str  # "dynamodb.Query", "s3.presign GetObject"
    permissions: tuple[Permission, ...]
    site: str  # the code of this bundle that made it: "TasksTable.get_task", "secrets.resolve_secret"
    step: str = ""  # the scenario step, when a scenario runs it

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, line: str) -> Call:
        raw = json.loads(line)
        permissions = tuple(
            Permission(p["action"], p["resource"], tuple((key, value) for key, value in p["context"]))
            for p in raw["permissions"]
        )
        return cls(raw["function"], raw["operation"], permissions, raw["site"], raw.get("step", ""))


# -- operation -> IAM action and resource --------------------------------------------------------
# Where the action IAM checks is not "<service>:<Operation>". Batch APIs are authorized per entry as
# the single action; a HEAD needs the GET; presigning needs what the link will do.
ACTION_NAMES: dict[tuple[str, str], str] = {
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "ListObjects"): "s3:ListBucket",
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("s3", "ListObjectVersions"): "s3:ListBucketVersions",
    ("s3", "GetObjectAttributes"): "s3:GetObject",
}
# With a VersionId the object actions are the *Version ones.
VERSIONED_ACTIONS = {
    "s3:GetObject": "s3:GetObjectVersion",
    "s3:DeleteObject": "s3:DeleteObjectVersion",
}
# DynamoDB's transactions have no action of their own: each item needs its own action.
TRANSACT_ITEM_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}
# Calls no policy needs to allow.
NEEDS_NO_PERMISSION = {("sts", "GetCallerIdentity")}


def table_arn(name: str, region: str) -> str:
    return name if name.startswith("arn:") else f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{name}"


def queue_arn(queue_url: str, region: str) -> str:
    """https://sqs.<region>.amazonaws.com/<account>/<name> (or a local endpoint's) -> its ARN."""
    parts = [part for part in urlsplit(queue_url).path.split("/") if part]
    account, name = (parts[-2], parts[-1]) if len(parts) >= 2 else (ACCOUNT, queue_url)
    return f"arn:aws:sqs:{region}:{account}:{name}"


def parameter_arn(name: str, region: str) -> str:
    if name.startswith("arn:"):
        return name
    return f"arn:aws:ssm:{region}:{ACCOUNT}:parameter{name if name.startswith('/') else '/' + name}"


def event_bus_arn(name: str | None, region: str) -> str:
    if name and name.startswith("arn:"):
        return name
    return f"arn:aws:events:{region}:{ACCOUNT}:event-bus/{name or 'default'}"


def s3_arn(bucket: str, key: str | None = None) -> str:
    return f"arn:aws:s3:::{bucket}" + (f"/{key}" if key is not None else "")


def permissions_for(
    service: str, operation: str, params: Mapping[str, Any], region: str
) -> tuple[Permission, ...]:
    """What IAM checks for `operation` with `params`. A presigned link needs the same: S3 checks the
    signer's permission for the operation when the link is used (a presigned get_object: s3:GetObject)."""
    if (service, operation) in NEEDS_NO_PERMISSION:
        return ()
    action = ACTION_NAMES.get((service, operation), f"{service}:{operation}")
    if service == "dynamodb":
        return _dynamodb(operation, action, params, region)
    if service == "sqs":
        url = params.get("QueueUrl") or params.get("QueueName", "*")
        return (Permission(action, queue_arn(str(url), region)),)
    if service == "s3":
        return _s3(operation, action, params)
    if service == "ssm":
        if operation == "GetParameters":
            return tuple(Permission(action, parameter_arn(n, region)) for n in params.get("Names", []))
        if operation == "GetParametersByPath":
            return (Permission(action, parameter_arn(params["Path"], region)),)
        return (Permission(action, parameter_arn(str(params.get("Name", "*")), region)),)
    if service == "events" and operation == "PutEvents":
        buses = sorted({entry.get("EventBusName") for entry in params.get("Entries", [])}, key=str)
        return tuple(Permission(action, event_bus_arn(bus, region)) for bus in buses)
    if service == "secretsmanager" and "SecretId" in params:
        secret = str(params["SecretId"])
        arn = (
            secret
            if secret.startswith("arn:")
            else f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:{secret}"
        )
        return (Permission(action, arn),)
    # Not mapped yet: "*" is allowed by no role here, so the verdict names this call until it is.
    return (Permission(action, "*"),)


def _dynamodb(operation: str, action: str, params: Mapping[str, Any], region: str) -> tuple[Permission, ...]:
    if operation in ("BatchGetItem", "BatchWriteItem"):
        found = []
        for table, request in params.get("RequestItems", {}).items():
            if operation == "BatchGetItem":
                keys = request.get("Keys", [])
            else:
                keys = [
                    entry.get("PutRequest", {}).get("Item") or entry.get("DeleteRequest", {}).get("Key") or {}
                    for entry in request
                ]
            found.append(Permission(action, table_arn(table, region), _leading_keys(table, None, keys)))
        return tuple(found)
    if operation in ("TransactWriteItems", "TransactGetItems"):
        found = []
        for item in params.get("TransactItems", []):
            for kind, request in item.items():
                table = request["TableName"]
                key = request.get("Item") if kind == "Put" else request.get("Key")
                context = _leading_keys(table, None, [key or {}])
                found.append(Permission(TRANSACT_ITEM_ACTIONS[kind], table_arn(table, region), context))
        return tuple(dict.fromkeys(found))
    table = str(params.get("TableName", "*"))
    arn = table_arn(table, region)
    index = params.get("IndexName") if operation in ("Query", "Scan") else None
    if index:
        arn = f"{arn}/index/{index}"
    if operation in ("GetItem", "DeleteItem", "UpdateItem"):
        context = _leading_keys(table, None, [params.get("Key") or {}])
    elif operation == "PutItem":
        context = _leading_keys(table, None, [params.get("Item") or {}])
    elif operation == "Query":
        context = _leading_keys(table, index, [_queried_key(params)])
    else:  # Scan, DescribeTable ...: no partition key (a ForAllValues condition holds, as in IAM)
        context = ()
    return (Permission(action, arn, context),)


@cache
def partition_keys() -> dict[str, dict[str | None, str]]:
    """Table logical id -> its partition key attribute (under None) and each index's, from template.yaml."""
    from devstack.common.template import load_template, resources_of_type

    def hash_key(schema: list[dict[str, str]]) -> str:
        return next(part["AttributeName"] for part in schema if part["KeyType"] == "HASH")

    found: dict[str, dict[str | None, str]] = {}
    for name, table in resources_of_type("AWS::DynamoDB::Table", load_template()).items():
        keys: dict[str | None, str] = {None: hash_key(table["KeySchema"])}
        for index in table.get("GlobalSecondaryIndexes", []) + table.get("LocalSecondaryIndexes", []):
            keys[index["IndexName"]] = hash_key(index["KeySchema"])
        found[name] = keys
    return found


def _leading_keys(
    table: str, index: str | None, items: list[Mapping[str, Any]]
) -> tuple[tuple[str, str], ...]:
    """("dynamodb:LeadingKeys", value) for each distinct partition key value among `items` (keys, items or
    a query's key condition), the table's own or, for a query on an index, the index's. Tables are named
    <stack>-<LogicalId> here and in the local stacks; a table the template does not declare has none."""
    logical_id = table.rsplit("/", 1)[-1].rsplit("-", 1)[-1]
    attribute = partition_keys().get(logical_id, {}).get(index)
    if attribute is None:
        return ()
    values = [_plain(item[attribute]) for item in items if attribute in item]
    return tuple(("dynamodb:LeadingKeys", value) for value in dict.fromkeys(values))


def _plain(value: Any) -> str:
    """An attribute value as IAM compares it: {"S": "task#1"} (the client's form) or "task#1" (boto3's
    resource layer, before it serializes)."""
    if isinstance(value, Mapping) and len(value) == 1:
        (kind, inner), *_ = value.items()
        if kind in ("S", "N", "B"):
            return inner.decode() if isinstance(inner, bytes) else str(inner)
    return str(value)


_EQUALITY = re.compile(r"([#\w.]+)\s*=\s*(:\w+)")


def _queried_key(params: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes a query's key condition sets equal to a value (its partition key among them)."""
    names = params.get("ExpressionAttributeNames", {})
    values = params.get("ExpressionAttributeValues", {})
    found: dict[str, Any] = {}
    for name, placeholder in _EQUALITY.findall(str(params.get("KeyConditionExpression", ""))):
        if placeholder in values:
            found[names.get(name, name)] = values[placeholder]
    for name, test in (params.get("KeyConditions") or {}).items():  # the legacy form
        if test.get("ComparisonOperator") == "EQ" and test.get("AttributeValueList"):
            found[name] = test["AttributeValueList"][0]
    return found


def _s3(operation: str, action: str, params: Mapping[str, Any]) -> tuple[Permission, ...]:
    bucket = str(params.get("Bucket", "*"))
    if operation == "DeleteObjects":
        found = [
            Permission(
                "s3:DeleteObjectVersion" if entry.get("VersionId") else "s3:DeleteObject",
                s3_arn(bucket, entry["Key"]),
            )
            for entry in params.get("Delete", {}).get("Objects", [])
        ]
        return tuple(dict.fromkeys(found))
    if operation == "CopyObject":
        source = params["CopySource"]
        if isinstance(source, str):
            source_bucket, _, source_key = source.lstrip("/").partition("/")
        else:
            source_bucket, source_key = source["Bucket"], source["Key"]
        return (
            Permission("s3:GetObject", s3_arn(source_bucket, source_key)),
            Permission("s3:PutObject", s3_arn(bucket, str(params["Key"]))),
        )
    if "Key" in params:
        if params.get("VersionId"):
            action = VERSIONED_ACTIONS.get(action, action)
        return (Permission(action, s3_arn(bucket, str(params["Key"]))),)
    # A bucket-level action: on the bucket's ARN, its prefix a condition key.
    context = (("s3:prefix", str(params["Prefix"])),) if "Prefix" in params else ()
    return (Permission(action, s3_arn(bucket), context),)


# -- recording ---------------------------------------------------------------------------------


@cache
def handler_functions() -> dict[str, str]:
    """Handler module -> function logical id, from template.yaml's Handler entries."""
    from devstack.common.template import load_template, resources_of_type

    return {
        properties["Handler"].rsplit(".", 1)[0]: name
        for name, properties in resources_of_type("AWS::Serverless::Function", load_template()).items()
    }


def _who_called(handlers: Mapping[str, str]) -> tuple[str | None, str]:
    """(the function whose handler is on the stack, the innermost code of this bundle that called)."""
    frame = sys._getframe(1)
    site = ""
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        name = frame.f_code.co_qualname
        public = not name.rsplit(".", 1)[-1].startswith("_") and "<locals>" not in name
        if not site and public and (module.startswith("image_pipeline.") or module in handlers):
            site = name if "." in name else f"{module.rsplit('.', 1)[-1]}.{name}"
        if module in handlers:
            return handlers[module], site
        frame = frame.f_back  # type: ignore[assignment]
    return None, site


@dataclass
class Recorder:
    """Collects the calls made while it is active; `step` labels what a scenario is doing."""

    calls: list[Call] = field(default_factory=list)
    step: str = ""
    active: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hook(self, client: Any) -> None:
        service = client.meta.service_model.service_name
        region = client.meta.region_name or REGION
        handlers = handler_functions()

        def on_params(params: Mapping[str, Any], model: Any, context: Mapping[str, Any], **_: Any) -> None:
            if not self.active:
                return
            function, site = _who_called(handlers)
            if function is None:
                return
            presigned = bool(context.get("is_presign_request"))
            call = Call(
                function=function,
                operation=f"{service}.{'presign ' if presigned else ''}{model.name}",
                permissions=permissions_for(service, model.name, params, region),
                site=site,
                step=self.step,
            )
            with self._lock:
                self.calls.append(call)

        client.meta.events.register("provide-client-params", on_params)

    def by_function(self) -> dict[str, list[Call]]:
        found: dict[str, list[Call]] = {}
        for call in self.calls:
            found.setdefault(call.function, []).append(call)
        return found

    @contextlib.contextmanager
    def labelled(self, step: str) -> Iterator[None]:
        previous, self.step = self.step, step
        try:
            yield
        finally:
            self.step = previous


@contextlib.contextmanager
def recording(recorder: Recorder | None = None) -> Iterator[Recorder]:
    """Hook every botocore client created inside the block (boto3's default session's or any other)."""
    import botocore.session

    recorder = recorder or Recorder()
    original = botocore.session.Session.create_client

    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = original(self, *args, **kwargs)
        recorder.hook(client)
        return client

    botocore.session.Session.create_client = create_client  # type: ignore[method-assign]
    try:
        yield recorder
    finally:
        botocore.session.Session.create_client = original  # type: ignore[method-assign]
        recorder.active = False


def write_calls(calls: list[Call], path: Path) -> None:
    if calls:
        with path.open("a", encoding="utf-8") as out:
            out.writelines(call.to_json() + "\n" for call in calls)


def read_calls(directory: Path) -> list[Call]:
    return [
        Call.from_json(line)
        for path in sorted(directory.glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


# -- the local stack's worker processes ----------------------------------------------------------
RECORD_DIR_VARIABLE = "IAM_RECORD_DIR"
_worker_recorder: Recorder | None = None
_worker_recording: contextlib.AbstractContextManager[Recorder] | None = None  # kept: dropping it ends it


def invoke_recording(spec: Any, event: dict[str, Any]) -> dict[str, Any]:
    """What `LambdaPool.submit` runs instead of `_invoke_in_worker` while the whole-run recorder is on:
    the same invocation, its calls appended to this worker process's own file."""
    global _worker_recorder, _worker_recording
    from devstack.local.lambda_runtime import _invoke_in_worker

    if _worker_recorder is None:
        _worker_recorder = Recorder()
        _worker_recording = recording(_worker_recorder)
        _worker_recording.__enter__()  # for the life of the worker process
    try:
        return _invoke_in_worker(spec, event)
    finally:
        calls, _worker_recorder.calls = _worker_recorder.calls, []
        write_calls(calls, Path(os.environ[RECORD_DIR_VARIABLE]) / f"worker-{os.getpid()}.jsonl")
