"""Shared strategies and probes for the fuzz tests (imported as tests.fuzz._support).

Every fuzz test uses one moto stack for all its examples (the stack costs ~0.5 s to build), so
properties are stated relative to a before/after snapshot of the table and the queues.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from typing import Any

import boto3
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.conftest import load_event

# The events' task: our id (its callback URL's) and the upstream's (its callback bodies').
TASK_ID = "5f0c2a4b9e8d7c6b5a4f3e2d1c0b9a88"
UPSTREAM_ID = "d231a99a9a9f1dd8f895be1b97be8065"
TOKEN = "example-callback-token-0123456789abcdefABCDEF_-xyz"
# A task whose generate call got no answer: `submitting`, its upstream id still unknown.
OTHER_TASK_ID = "0123456789abcdef0123456789abcdef"
OTHER_TOKEN = "another-callback-token-ZYXWVUTSRQPONMLKJIHGFEDCBA_-987"
MAX_BODY_BYTES = 64 * 1024

# Generic fuzzers nest up to this depth; deeper bodies (json.loads' RecursionError) have their own
# reproducers: test_deeply_nested_json_*.
SAFE_DEPTH = 2_000
DYNAMODB_SAFE_INT = 10**30  # numbers DynamoDB can store, for strategies that must stay storable


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """one_of with weights (a plain one_of flattens nested one_ofs and weighs every branch alike)."""
    return st.sampled_from([strategy for weight, strategy in choices for _ in range(weight)]).flatmap(
        lambda s: s
    )


def fuzz_settings(max_examples: int) -> Any:
    return settings(
        derandomize=True,
        database=None,
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


# -- JSON values -------------------------------------------------------------------------------


def scalars(*, big_numbers: bool = True) -> st.SearchStrategy[Any]:
    if big_numbers:
        integers = st.integers()
        floats = st.floats(allow_nan=False, allow_infinity=False)
    else:
        integers = st.integers(-DYNAMODB_SAFE_INT, DYNAMODB_SAFE_INT)
        floats = st.floats(-1e15, 1e15, allow_nan=False)
    return st.one_of(
        st.none(),
        st.booleans(),
        integers,
        st.sampled_from([0, 1, 2, 4, 200, 400, 451, 500, 501, -1, 2**31, 2**63]),
        floats,
        st.text(max_size=40),
        st.sampled_from(["", " ", "200", "null", "true", "1:1", "3:2", "\u0000", "\u202e", "é", "🦊" * 3]),
    )


def json_values(*, big_numbers: bool = True, max_leaves: int = 25) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars(big_numbers=big_numbers),
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(st.text(max_size=12), children, max_size=5),
        ),
        max_leaves=max_leaves,
    )


def nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"n": value}
    return value


# -- structural mutation -------------------------------------------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _paths(inner, (*prefix, index))
    return found


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


@st.composite
def mutated(
    draw: st.DrawFn, bases: list[Any], replacements: st.SearchStrategy[Any], max_mutations: int = 3
) -> Any:
    """A real document with 1..n fields removed, retyped, replaced, duplicated under an alias, or added."""
    document = copy.deepcopy(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(1, max_mutations))):
        path = draw(st.sampled_from(_paths(document)))
        target = _get(document, path)
        operation = draw(st.sampled_from(["remove", "replace", "retype", "add", "wrap"]))
        if operation == "add" and isinstance(target, dict):
            target[
                draw(
                    st.text(max_size=12)
                    | st.sampled_from(
                        ["taskId", "task_id", "info", "result_urls", "resultUrls", "resultImageUrl", "code"]
                    )
                )
            ] = draw(replacements)
            continue
        if not path:
            if operation in ("replace", "retype"):
                document = draw(replacements)
            elif operation == "wrap":
                document = [document]
            continue
        parent, key = _get(document, path[:-1]), path[-1]
        if operation == "remove":
            del parent[key]
        elif operation == "replace":
            parent[key] = draw(replacements)
        elif operation == "retype":
            parent[key] = draw(
                st.sampled_from(
                    [
                        str,
                        lambda v: [v],
                        lambda v: {"value": v},
                        lambda v: None,
                        json.dumps,
                        lambda v: bool(v),
                    ]
                )
            )(target)
        elif operation == "wrap":
            parent[key] = [target] if draw(st.booleans()) else {"taskId": target}
    return document


# -- callback events -------------------------------------------------------------------------------

CALLBACK_EVENTS = [
    "callback_4o_success",
    "callback_4o_failure",
    "callback_4o_duplicate",
    "callback_flux_success",
    "callback_flux_failure",
    "callback_flux_duplicate",
]


def callback_bodies() -> list[Any]:
    return [json.loads(load_event(name)["body"]) for name in CALLBACK_EVENTS]


@st.composite
def large_body(draw: st.DrawFn) -> str:
    """A real callback padded to just under, at, or over the body limit (in UTF-8 bytes, not characters)."""
    document = copy.deepcopy(draw(st.sampled_from(callback_bodies())))
    char = draw(st.sampled_from(["x", "é", "🦊", "\u0000", "\\"]))
    overhead = len(json.dumps(document).encode())
    target = draw(
        st.sampled_from([MAX_BODY_BYTES - 1, MAX_BODY_BYTES, MAX_BODY_BYTES + 1, 2 * MAX_BODY_BYTES, 300_000])
    )
    per_char = len(json.dumps(char).encode()) - 2
    document["msg"] = char * max(0, (target - overhead - 10) // per_char)
    return json.dumps(document)


@st.composite
def other_task_callback(draw: st.DrawFn) -> Any:
    """A well-formed callback for some other (valid-looking) taskId: our own ids among them, which are
    not the upstream's."""
    document = copy.deepcopy(draw(st.sampled_from(callback_bodies())))
    document["data"]["taskId"] = draw(
        st.sampled_from([TASK_ID, OTHER_TASK_ID, UPSTREAM_ID.upper()])
        | st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True)
    )
    return document


@st.composite
def deep_inside_callback(draw: st.DrawFn) -> str:
    """A real callback carrying a deeply nested value in an extra field, the info, or the result list."""
    document = copy.deepcopy(draw(st.sampled_from(callback_bodies())))
    deep = nested(draw(st.integers(1, SAFE_DEPTH)), draw(st.sampled_from([None, 1, "x", {}])))
    where = draw(st.sampled_from(["extra", "data-extra", "info", "result_urls"]))
    if where == "extra":
        document["extra"] = deep
    elif where == "data-extra":
        document["data"]["extra"] = deep
    elif where == "info":
        document["data"]["info"] = deep
    else:
        document["data"]["info"] = {"result_urls": [deep]}
    return json.dumps(document)


def callback_body_values(*, big_numbers: bool) -> st.SearchStrategy[Any]:
    replacements = weighted(
        (3, json_values(big_numbers=big_numbers)),
        (
            1,
            st.sampled_from(
                [
                    "../../etc",
                    "a" * 129,
                    "a" * 128,
                    "ok-Task_1",
                    "https://tempfile.aiquickdraw.com/s/x.png",
                    "",
                    "200",
                    " 200 ",
                    "2e2",
                    "0x1",
                ]
            ),
        ),
        (
            1,
            st.lists(
                st.sampled_from(["https://tempfile.aiquickdraw.com/s/x.png", ""]), min_size=15, max_size=18
            ),
        ),
    )
    return weighted(
        (4, mutated(callback_bodies(), replacements)),
        (1, other_task_callback()),
        (2, json_values(big_numbers=big_numbers)),
    )


def callback_body_strings(*, big_numbers: bool) -> st.SearchStrategy[str]:
    """Raw body text: JSON of anything above, random text, random bytes as text, deep nesting, huge bodies."""
    as_json = callback_body_values(big_numbers=big_numbers).map(
        lambda value: json.dumps(value, ensure_ascii=False)
    )
    return weighted(
        (8, as_json),
        (1, as_json.map(lambda text: text[: len(text) // 2])),  # truncated
        (1, st.text(max_size=200)),
        (1, st.binary(max_size=200).map(lambda raw: raw.decode("latin-1"))),
        (1, st.binary(max_size=200).map(lambda raw: raw.decode("utf-8", errors="replace"))),
        (
            1,
            st.sampled_from(
                [
                    "",
                    " ",
                    "null",
                    "[]",
                    "{}",
                    "0",
                    '""',
                    "NaN",
                    "Infinity",
                    '{"code": NaN}',
                    '{"code": 200, "data": {"taskId": "a", "taskId": "b"}}',
                    "\ufeff{}",
                ]
            ),
        ),
        (1, st.integers(1, SAFE_DEPTH).map(lambda depth: json.dumps(nested(depth, {"code": 200})))),
        (1, deep_inside_callback()),
        (1, large_body()),
    )


def callback_event(
    body: str | None,
    *,
    task_id: str = TASK_ID,
    query: dict[str, Any] | str | None = "default",
    headers: dict[str, str] | str | None = "default",
    base64_encoded: bool = False,
) -> dict[str, Any]:
    event = load_event("callback_4o_success")
    event["body"] = body
    event["isBase64Encoded"] = base64_encoded
    event["path"] = f"/callbacks/{task_id}"
    event["pathParameters"] = {"taskId": task_id}
    event["requestContext"]["path"] = f"/Prod/callbacks/{task_id}"
    if query != "default":
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = (
            {key: [value] for key, value in query.items()} if isinstance(query, dict) else None
        )
    if headers != "default":
        event["headers"] = headers
        event["multiValueHeaders"] = (
            {key: [value] for key, value in headers.items()} if isinstance(headers, dict) else None
        )
    return event


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- invoking and observing ----------------------------------------------------------------------


def call(
    handler: Callable[[dict[str, Any], Any], dict[str, Any]], event: dict[str, Any], context: Any
) -> tuple[int, Any]:
    """Invoke a handler; an exception escaping it fails the test with the event that caused it."""
    try:
        response = handler(event, context)
    except Exception as error:  # pragma: no cover - the failure path of the property
        raise AssertionError(
            f"{type(error).__name__} escaped the handler for body={str(event.get('body'))[:300]!r} "
            f"path={event.get('path')!r} query={event.get('queryStringParameters')!r} "
            f"headers={event.get('headers')!r} b64={event.get('isBase64Encoded')!r}"
        ) from error
    status = response["statusCode"]
    assert isinstance(status, int)
    return status, json.loads(response["body"])


class State:
    """Everything a callback could change: the table's items and every queue's messages.

    Read straight from moto's backends (~0.1 ms, against ~25 ms through boto3, which at two snapshots
    per example would dominate the run); if a moto upgrade moves those internals, it reads through boto3.
    """

    def __init__(self, resources: Any) -> None:
        self.resources = resources

    def snapshot(self) -> tuple[Any, ...]:
        try:
            return self._from_moto()
        except (ImportError, AttributeError, KeyError):  # pragma: no cover - moto internals moved
            return self._through_boto3()

    def _from_moto(self) -> tuple[Any, ...]:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends
        from moto.sqs.models import sqs_backends

        table = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tables[self.resources.tasks_table]
        items = tuple(sorted(json.dumps(item.to_json(), sort_keys=True) for item in table.items.values()))
        queues = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].queues
        messages = tuple(
            (name, tuple(m.body for m in queue._messages)) for name, queue in sorted(queues.items())
        )
        return items, messages

    def _through_boto3(self) -> tuple[Any, ...]:
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        items = dynamodb.scan(TableName=self.resources.tasks_table, ConsistentRead=True)["Items"]
        queues = []
        for url in sorted(sqs.list_queues().get("QueueUrls", [])):
            attributes = sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
            queues.append((url, tuple(sorted(attributes.items()))))
        return tuple(sorted(json.dumps(item, sort_keys=True) for item in items)), tuple(queues)


def mint_task(
    resources: Any,
    *,
    task_id: str = TASK_ID,
    token: str = TOKEN,
    upstream_task_id: str | None = UPSTREAM_ID,
) -> None:
    """What POST /tasks leaves behind (as tests/unit/test_callback_handler.py's mint_submission): the
    task under our id with its callback token's hash, confirmed with the upstream's id unless that is
    None (its generate call got no answer: its first callback teaches it the id)."""
    from image_pipeline.adapters.tasks_table import TasksTable

    from tests.task_fixtures import record_task

    record_task(
        TasksTable(resources.tasks_table),
        task_id,
        upstream_task_id=upstream_task_id,
        confirmed=upstream_task_id is not None,
        token=token,
    )
