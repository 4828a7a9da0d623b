"""Client apps as first-class users: each sees only its own tasks (get, list, delete), with its own
idempotency keys; driven through the API handler under moto, two clients told apart by API key id."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import boto3
import httpx
import pytest
import respx

from tests.conftest import load_event

GENERATE = "https://api.kie.ai/api/v1/gpt4o-image/generate"
RECORD_INFO = "https://api.kie.ai/api/v1/gpt4o-image/record-info"


def request(
    client: str,
    method: str,
    path: str,
    context: Any,
    body: Any = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    from api_handler import lambda_handler

    event = load_event("api_submit_task" if method == "POST" else "api_get_task")
    event["httpMethod"] = method
    event["path"] = path
    event["resource"] = "/tasks/{taskId}" if path.count("/") == 2 else path
    event["pathParameters"] = {"taskId": path.split("/")[2]} if path.count("/") == 2 else None
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    event["body"] = json.dumps(body) if body is not None else None
    event["headers"] = {**event["headers"], **(headers or {})}
    event["multiValueHeaders"] = {
        **event["multiValueHeaders"],
        **{k: [v] for k, v in (headers or {}).items()},
    }
    event["requestContext"]["identity"]["apiKeyId"] = client
    response = lambda_handler(event, context)
    return response["statusCode"], json.loads(response["body"]) if response.get("body") else None


@pytest.fixture
def upstream() -> Any:
    with respx.mock(assert_all_called=False) as router:
        counter = iter(range(1000))

        def generated(_request: httpx.Request) -> httpx.Response:
            task_id = f"{next(counter):032x}"
            return httpx.Response(200, json={"code": 200, "msg": "success", "data": {"taskId": task_id}})

        router.post(GENERATE).mock(side_effect=generated)
        router.get(RECORD_INFO).mock(
            return_value=httpx.Response(200, json={"code": 200, "msg": "success", "data": {"successFlag": 0}})
        )
        yield router


def submit(client: str, context: Any, prompt: str = "a fox", **headers: str) -> str:
    status, body = request(
        client, "POST", "/tasks", context, {"prompt": prompt, "size": "1:1"}, headers=headers
    )
    assert status == 202, body
    return str(body["taskId"])


def finish(resources: Any, task_id: str, images: int = 0, failed: bool = False) -> None:
    """What the callback and the downloader would do: the task ends stored (images in S3) or failed."""
    from image_pipeline.adapters.tasks_table import TasksTable
    from image_pipeline.task_records import StoredImage, TaskError, utc_now

    store = TasksTable(resources.tasks_table)
    task = store.get_task(task_id)
    assert task is not None and task.upstream_id
    if failed:
        assert store.fail_from_callback(
            task_id, task.upstream_id, TaskError(code=500, message="x"), utc_now()
        )
        return
    urls = [f"https://tempfile.aiquickdraw.com/s/{task_id}_{i}.png" for i in range(images)]
    assert store.start_downloading(task_id, task.upstream_id, urls, utc_now(), utc_now())
    s3 = boto3.client("s3", region_name="us-east-1")
    for index in range(images):
        key = f"images/{task_id}/{index}.png"
        for version in (b"first", b"second"):  # a versioned bucket: two versions of each image
            s3.put_object(Bucket=resources.images_bucket, Key=key, Body=version)
        image = StoredImage(
            index=index,
            key=key,
            contentType="image/png",
            bytes=6,
            sha256=hashlib.sha256(b"second").hexdigest(),
        )
        store.add_image(task_id, image, utc_now())
    assert store.mark_stored(task_id, utc_now())


def test_another_clients_task_does_not_exist_for_you(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    alices = submit("alice", lambda_context)
    # Bob gets exactly what an unknown id gets
    unknown_status, unknown_body = request("bob", "GET", f"/tasks/{'f' * 32}", lambda_context)
    assert request("bob", "GET", f"/tasks/{alices}", lambda_context) == (
        404,
        {**unknown_body, "message": f"task {alices} not found"},
    )
    assert unknown_status == 404
    assert request("bob", "DELETE", f"/tasks/{alices}", lambda_context)[0] == 404
    assert request("bob", "GET", "/tasks", lambda_context) == (200, {"tasks": [], "nextCursor": None})
    # while Alice sees it
    status, task = request("alice", "GET", f"/tasks/{alices}", lambda_context)
    assert status == 200 and task["status"] == "submitted"


def test_the_list_is_newest_first_paginated_and_filtered(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    mine = [submit("alice", lambda_context, f"fox {i}") for i in range(5)]
    submit("bob", lambda_context, "not alice's")
    finish(aws_stack, mine[1], images=1)
    finish(aws_stack, mine[3], failed=True)
    seen: list[str] = []
    cursor = None
    for _page in range(5):
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        status, page = request("alice", "GET", "/tasks", lambda_context, query=query)
        assert status == 200 and len(page["tasks"]) <= 2
        assert all("url" not in image for task in page["tasks"] for image in task["images"])
        seen += [task["taskId"] for task in page["tasks"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == list(reversed(mine))
    status, stored = request("alice", "GET", "/tasks", lambda_context, query={"status": "stored"})
    assert [task["taskId"] for task in stored["tasks"]] == [mine[1]]
    assert stored["tasks"][0]["images"][0]["key"] == f"images/{mine[1]}/0.png"
    status, failed = request(
        "alice", "GET", "/tasks", lambda_context, query={"status": "failed", "limit": "1"}
    )
    assert [task["taskId"] for task in failed["tasks"]] == [mine[3]] and failed["nextCursor"] is None


@pytest.mark.parametrize("limit", ["0", "101", "x"])
def test_a_limit_outside_1_to_100_is_a_clear_422(
    aws_stack: Any, upstream: Any, lambda_context: Any, limit: str
) -> None:
    status, body = request("alice", "GET", "/tasks", lambda_context, query={"limit": limit})
    assert status == 422 and body["errors"][0]["field"] == "limit"


def test_a_cursor_from_another_client_or_forged_is_400_never_their_data(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    for i in range(3):
        submit("alice", lambda_context, f"fox {i}")
    _, page = request("alice", "GET", "/tasks", lambda_context, query={"limit": "1"})
    alices_cursor = page["nextCursor"]
    assert alices_cursor
    status, body = request("bob", "GET", "/tasks", lambda_context, query={"cursor": alices_cursor})
    assert status == 400 and body["errors"][0]["field"] == "cursor"
    # alice's own cursor continues alice's list
    status, body = request("alice", "GET", "/tasks", lambda_context, query={"cursor": alices_cursor})
    assert status == 200 and len(body["tasks"]) == 2
    for junk in ("not-base64!", _unsigned(["1", "2"]), "x" * 2000, ""):
        assert request("alice", "GET", "/tasks", lambda_context, query={"cursor": junk})[0] in (400, 422)


def _unsigned(key: Any) -> str:
    """A cursor as this API wrote them before they were signed: base64url of the key's JSON."""
    import base64

    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def _edited(cursor: str, **changes: str) -> str:
    """`cursor` with its key's fields changed, its signature (if any) kept as it was."""
    import base64

    payload, dot, signature = cursor.partition(".")
    key = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return _unsigned({**key, **changes}).rstrip("=") + dot + signature


@pytest.mark.parametrize(
    "changes",
    [
        {"owner": "bob"},  # names the client presenting it
        {"createdAt": ""},  # an empty key value (DynamoDB refuses it: a 503, not a 400)
        {"pk": "task#" + "0" * 32},  # continues after another task
    ],
)
def test_an_edited_cursor_is_400_whoever_it_names(
    aws_stack: Any, upstream: Any, lambda_context: Any, changes: dict[str, str]
) -> None:
    for i in range(3):
        submit("alice", lambda_context, f"fox {i}")
    _, page = request("alice", "GET", "/tasks", lambda_context, query={"limit": "1"})
    edited = _edited(page["nextCursor"], **changes)
    client = changes.get("owner", "alice")
    status, body = request(client, "GET", "/tasks", lambda_context, query={"cursor": edited})
    assert (status, body["errors"]) == (
        400,
        [{"field": "cursor", "message": "cursor is not one this API returned"}],
    ), body
    # nor is the key as it was, without its signature
    key = {"pk": page["tasks"][0]["taskId"], "owner": client, "createdAt": page["tasks"][0]["createdAt"]}
    unsigned = _unsigned({**key, "pk": "task#" + key["pk"], **changes})
    assert request(client, "GET", "/tasks", lambda_context, query={"cursor": unsigned})[0] == 400


def test_a_cursor_signed_with_another_key_is_400(
    aws_stack: Any, upstream: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another deployment's cursor (or one from before the key was rotated) is not one we issued."""
    from image_pipeline import wiring
    from image_pipeline.settings import reset_settings_cache

    for i in range(2):
        submit("alice", lambda_context, f"fox {i}")
    _, page = request("alice", "GET", "/tasks", lambda_context, query={"limit": "1"})
    monkeypatch.setenv("CURSOR_KEY", "another-deployment-s-key-" + "k" * 32)
    reset_settings_cache()
    wiring.reset()
    status, body = request("alice", "GET", "/tasks", lambda_context, query={"cursor": page["nextCursor"]})
    assert status == 400 and body["errors"][0]["field"] == "cursor"


def test_the_cursor_key_is_made_once_per_stack_and_kept_in_its_table(aws_stack: Any) -> None:
    """The stack's own random key, made by the first list that needs it and shared by every container:
    no Secrets Manager secret at $0.40 a month for 64 characters that only this stack reads."""
    from image_pipeline import wiring
    from image_pipeline.settings import api_settings

    first = wiring.cursor_key(api_settings())
    wiring.reset()  # another container, its own cache
    assert wiring.cursor_key(api_settings()) == first and len(first) >= 48
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=aws_stack.tasks_table, Key={"pk": {"S": "key#list-cursors"}}, ConsistentRead=True
    )["Item"]
    assert item["key"]["S"].encode() == first and "owner" not in item and "status" not in item


def test_two_first_lists_at_once_agree_on_one_cursor_key(aws_stack: Any) -> None:
    # the other container's conditional put lands between this one's read and its own put
    from image_pipeline import wiring
    from image_pipeline.settings import api_settings

    settings = api_settings()
    keys = wiring.stack_keys(settings.tasks_table)
    other = "o" * 64

    def the_other_container_first(params: dict[str, Any], **_: Any) -> None:
        boto3.client("dynamodb", region_name="us-east-1").put_item(
            TableName=settings.tasks_table, Item={"pk": {"S": "key#list-cursors"}, "key": {"S": other}}
        )

    keys._db.meta.events.register_first("before-call.dynamodb.PutItem", the_other_container_first)
    assert wiring.cursor_key(settings) == other.encode()


def test_a_rotated_cursor_key_refuses_the_old_cursors(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    # rotation: delete the item; the next list makes a new key (each container within 5 minutes)
    from image_pipeline import wiring

    for i in range(2):
        submit("alice", lambda_context, f"fox {i}")
    _, page = request("alice", "GET", "/tasks", lambda_context, query={"limit": "1"})
    boto3.client("dynamodb", region_name="us-east-1").delete_item(
        TableName=aws_stack.tasks_table, Key={"pk": {"S": "key#list-cursors"}}
    )
    wiring.reset()
    status, body = request("alice", "GET", "/tasks", lambda_context, query={"cursor": page["nextCursor"]})
    assert status == 400 and body["errors"][0]["field"] == "cursor"


def test_a_cursor_key_given_in_the_environment_is_never_short(aws_stack: Any) -> None:
    from image_pipeline import wiring
    from image_pipeline.settings import ApiSettings, ConfigError

    given = "g" * 40
    assert (
        wiring.cursor_key(ApiSettings(tasks_table="t", images_bucket="b", cursor_key=given)) == given.encode()
    )
    with pytest.raises(ConfigError, match="at least 32 characters"):
        wiring.cursor_key(ApiSettings(tasks_table="t", images_bucket="b", cursor_key="k" * 31))


def test_delete_removes_every_stored_version_and_the_record(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    task_id = submit("alice", lambda_context)
    finish(aws_stack, task_id, images=2)
    s3 = boto3.client("s3", region_name="us-east-1")
    listed = s3.list_object_versions(Bucket=aws_stack.images_bucket, Prefix=f"images/{task_id}/")
    assert len(listed["Versions"]) == 4
    assert request("alice", "DELETE", f"/tasks/{task_id}", lambda_context) == (204, None)
    listed = s3.list_object_versions(Bucket=aws_stack.images_bucket, Prefix=f"images/{task_id}/")
    assert not listed.get("Versions") and not listed.get("DeleteMarkers")
    assert request("alice", "GET", f"/tasks/{task_id}", lambda_context)[0] == 404
    assert request("alice", "DELETE", f"/tasks/{task_id}", lambda_context)[0] == 404
    assert request("alice", "GET", "/tasks", lambda_context)[1]["tasks"] == []


def test_a_late_callback_for_a_deleted_task_stores_nothing(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    from image_pipeline.adapters.tasks_table import TasksTable
    from image_pipeline.logic.callbacks import CallbackResult, handle_callback
    from image_pipeline.upstream_replies import CallbackPayload

    task_id = submit("alice", lambda_context)
    finish(aws_stack, task_id, images=1)
    store = TasksTable(aws_stack.tasks_table)
    upstream_id = store.get_task(task_id).upstream_id  # type: ignore[union-attr]
    assert request("alice", "DELETE", f"/tasks/{task_id}", lambda_context)[0] == 204
    late = CallbackPayload.from_json(
        {
            "code": 200,
            "msg": "success",
            "data": {
                "taskId": upstream_id,
                "info": {"result_urls": ["https://tempfile.aiquickdraw.com/s/a.png"]},
            },
        }
    )

    class NoQueue:
        def send(self, jobs: Any) -> None:
            raise AssertionError("nothing may be queued for a deleted task")

    tombstone = store.get_task(task_id)
    assert tombstone is not None and tombstone.owner is None
    result = handle_callback(late, task=tombstone, store=store, queue=NoQueue())
    assert result is CallbackResult.DUPLICATE
    assert request("alice", "GET", f"/tasks/{task_id}", lambda_context)[0] == 404


def test_a_running_task_cannot_be_deleted(aws_stack: Any, upstream: Any, lambda_context: Any) -> None:
    task_id = submit("alice", lambda_context)
    assert request("alice", "DELETE", f"/tasks/{task_id}", lambda_context) == (
        409,
        {"message": "task is still running", "errors": []},
    )
    assert request("alice", "GET", f"/tasks/{task_id}", lambda_context)[0] == 200


def test_idempotency_keys_are_per_client(aws_stack: Any, upstream: Any, lambda_context: Any) -> None:
    alices = submit("alice", lambda_context, "same body", **{"Idempotency-Key": "order-1"})
    bobs = submit("bob", lambda_context, "same body", **{"Idempotency-Key": "order-1"})
    assert alices != bobs  # bob's request was generated, not answered with alice's task
    assert submit("alice", lambda_context, "same body", **{"Idempotency-Key": "order-1"}) == alices
    assert upstream.routes[0].call_count == 2


def test_listing_by_a_rare_status_reads_a_bounded_page_and_continues_by_cursor(
    aws_stack: Any, upstream: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request reads at most LIST_READ_BUDGET of the client's tasks, whatever its history: a page
    may be empty with a nextCursor at the last task examined."""
    from datetime import timedelta

    from image_pipeline.adapters import task_queries
    from image_pipeline.adapters.aws import client
    from image_pipeline.adapters.tasks_table import TasksTable
    from image_pipeline.task_records import utc_now

    from tests.task_fixtures import record_task

    monkeypatch.setattr(task_queries, "LIST_READ_BUDGET", 10)
    store = TasksTable(aws_stack.tasks_table)
    start = utc_now() - timedelta(hours=1)
    ids = [f"{index + 1:032x}" for index in range(25)]
    for index, task_id in enumerate(ids):
        record_task(store, task_id, owner="alice", created=start + timedelta(seconds=index))
    finish(aws_stack, ids[0], failed=True)  # the oldest, so a full scan would read all 25
    read: list[int] = []

    def count(parsed: dict[str, Any], **_kwargs: Any) -> None:
        read.append(len(parsed.get("Items", [])))

    client("dynamodb").meta.events.register("after-call.dynamodb.Query", count)
    pages: list[list[str]] = []
    cursor = None
    for _request in range(10):
        read.clear()
        query = {"status": "failed", **({"cursor": cursor} if cursor else {})}
        status, page = request("alice", "GET", "/tasks", lambda_context, query=query)
        assert status == 200, page
        assert sum(read) <= 10, f"one request read {sum(read)} index keys"
        pages.append([task["taskId"] for task in page["tasks"]])
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert pages == [[], [], [ids[0]]]


def test_a_cursor_key_item_without_a_key_is_replaced_not_a_500(aws_stack: Any) -> None:
    # an operator who "rotates" by blanking the value instead of deleting the item
    from image_pipeline import wiring
    from image_pipeline.settings import api_settings

    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    for item in ({"pk": {"S": "key#list-cursors"}}, {"pk": {"S": "key#list-cursors"}, "key": {"S": ""}}):
        dynamodb.put_item(TableName=aws_stack.tasks_table, Item=item)
        wiring.reset()
        made = wiring.cursor_key(api_settings())
        assert len(made) >= 48
        stored = dynamodb.get_item(
            TableName=aws_stack.tasks_table, Key={"pk": {"S": "key#list-cursors"}}, ConsistentRead=True
        )["Item"]["key"]["S"]
        assert stored.encode() == made


def test_a_container_picks_up_a_rotated_cursor_key_once_its_cache_runs_out(aws_stack: Any) -> None:
    from image_pipeline.adapters.stack_keys import StackKeys

    now = [1000.0]
    keys = StackKeys(aws_stack.tasks_table, cache_seconds=300, monotonic=lambda: now[0])
    first = keys.key("list-cursors")
    boto3.client("dynamodb", region_name="us-east-1").delete_item(
        TableName=aws_stack.tasks_table, Key={"pk": {"S": "key#list-cursors"}}
    )
    now[0] += 299
    assert keys.key("list-cursors") == first  # within the cache: no read
    now[0] += 2
    rotated = keys.key("list-cursors")
    assert rotated != first and StackKeys(aws_stack.tasks_table).key("list-cursors") == rotated
