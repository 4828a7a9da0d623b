"""The client API, driven with the events/ files under moto; the upstream through respx."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from image_pipeline.tokens import is_our_task_id

from tests.conftest import load_event

UPSTREAM = "https://api.kie.ai"
GENERATE = f"{UPSTREAM}/api/v1/gpt4o-image/generate"
RECORD_INFO = f"{UPSTREAM}/api/v1/gpt4o-image/record-info"
TASK_ID = "d231a99a9a9f1dd8f895be1b97be8065"  # the upstream's id of the task (ours is minted per submit)


class _AnyTime(str):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.endswith("Z") and "T" in other

    __hash__ = str.__hash__


ANY_TIME = _AnyTime("<an ISO time>")


def aws_stack_item(table: str, task_id: str) -> dict[str, Any]:
    import boto3

    item: dict[str, Any] = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=table, Key={"pk": {"S": f"task#{task_id}"}}
    )["Item"]
    return item


def invoke(event: dict[str, Any], context: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    from api_handler import lambda_handler

    response = lambda_handler(event, context)
    headers = {name: values[-1] for name, values in (response.get("multiValueHeaders") or {}).items()}
    headers.update(response.get("headers") or {})
    return response["statusCode"], json.loads(response["body"]), headers


def with_body(event: dict[str, Any], body: Any) -> dict[str, Any]:
    return {**event, "body": body if isinstance(body, str) else json.dumps(body)}


def submit_ok(task_id: str = TASK_ID) -> httpx.Response:
    return httpx.Response(200, json={"code": 200, "msg": "success", "data": {"taskId": task_id}})


def get_task(task_id: str, context: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    event = load_event("api_get_task")
    event["pathParameters"] = {"taskId": task_id}
    event["path"] = f"/tasks/{task_id}"
    event["requestContext"] = {**event["requestContext"], "path": f"/Prod/tasks/{task_id}"}
    return invoke(event, context)


def submit(context: Any, event: dict[str, Any] | None = None) -> str:
    """POST /tasks; our id of the task it made."""
    status, body, _ = invoke(event or load_event("api_submit_task"), context)
    assert status == 202, body
    task_id: str = body["taskId"]
    return task_id


def details(progress: str = "0.10") -> httpx.Response:
    data = {"taskId": TASK_ID, "successFlag": 0, "status": "GENERATING", "progress": progress}
    return httpx.Response(200, json={"code": 200, "msg": "success", "data": data})


@pytest.fixture
def upstream() -> Any:
    with respx.mock(assert_all_called=False) as router:
        yield router


def test_submit_records_the_task_and_answers_202(aws_stack: Any, upstream: Any, lambda_context: Any) -> None:
    # Given an upstream that accepts the generation
    route = upstream.post(GENERATE).mock(return_value=submit_ok())
    upstream.get(RECORD_INFO).mock(return_value=details())
    # When a client submits
    status, body, _ = invoke(load_event("api_submit_task"), lambda_context)
    # Then it gets our id of the task (not the upstream's), and the task is recorded as submitted
    assert status == 202 and body["status"] == "submitted"
    assert is_our_task_id(body["taskId"]) and body["taskId"] != TASK_ID
    sent = json.loads(route.calls.last.request.content)
    assert sent["prompt"] == "a red fox in snow, watercolor"
    assert sent["size"] == "3:2" and sent["nVariants"] == 2
    assert route.calls.last.request.headers["Authorization"] == "Bearer upstream-test-key"
    status, task, _ = get_task(body["taskId"], lambda_context)
    assert status == 200 and task["status"] == "submitted" and task["images"] == [] and task["error"] is None
    assert (task["taskId"], task["upstreamTaskId"]) == (body["taskId"], TASK_ID)


def test_callback_url_is_this_api_with_an_unguessable_token(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    from image_pipeline.adapters.tasks_table import TasksTable
    from image_pipeline.tokens import token_matches

    route = upstream.post(GENERATE).mock(return_value=submit_ok())
    task_id = submit(lambda_context)
    callback_url = json.loads(route.calls.last.request.content)["callBackUrl"]
    parts = urlsplit(callback_url)
    # The request's domain and stage make the public URL, and it names our id of the task.
    assert f"{parts.scheme}://{parts.netloc}" == "https://abc123.execute-api.us-east-1.amazonaws.com"
    assert parts.path == f"/Prod/callbacks/{task_id}"
    token = parse_qs(parts.query)["token"][0]
    assert len(token) >= 43  # 256 random bits, url-safe base64
    item = aws_stack_item(aws_stack.tasks_table, task_id)
    assert token not in json.dumps(item)  # only the hash is stored
    stored = TasksTable(aws_stack.tasks_table).get_task(task_id)
    assert stored is not None and stored.tokenHash and token_matches(token, stored.tokenHash)


def test_public_base_url_overrides_the_request_domain(
    aws_stack: Any, upstream: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from image_pipeline.settings import reset_settings_cache

    monkeypatch.setenv("PUBLIC_BASE_URL", "https://images.example.com/")
    reset_settings_cache()
    route = upstream.post(GENERATE).mock(return_value=submit_ok())
    invoke(load_event("api_submit_task"), lambda_context)
    assert json.loads(route.calls.last.request.content)["callBackUrl"].startswith(
        "https://images.example.com/callbacks/"
    )


def test_edit_with_mask_is_passed_through(aws_stack: Any, upstream: Any, lambda_context: Any) -> None:
    route = upstream.post(GENERATE).mock(return_value=submit_ok())
    status, _, _ = invoke(load_event("api_submit_task_edit"), lambda_context)
    sent = json.loads(route.calls.last.request.content)
    assert status == 202
    assert sent["filesUrl"] == ["https://example.com/original-image.png"]
    assert sent["maskUrl"] == "https://example.com/mask-image.png"


def test_invalid_body_names_each_bad_field_and_calls_nothing(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    route = upstream.post(GENERATE).mock(return_value=submit_ok())
    status, body, _ = invoke(load_event("api_submit_task_invalid"), lambda_context)
    assert status == 422
    fields = {problem["field"] for problem in body["errors"]}
    assert {"size", "nVariants", "colour"} <= fields
    assert "size" in body["message"]
    assert not route.called


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"size": "1:1"}, "prompt", "filesUrl"),
        ({"prompt": "x", "size": "1:1", "filesUrl": ["https://e.com/a.gif"]}, "filesUrl[0]", ".png"),
        (
            {"prompt": "x", "size": "1:1", "filesUrl": [f"https://e.com/{i}.png" for i in range(6)]},
            "filesUrl",
            "5",
        ),
        ({"prompt": "x", "size": "1:1", "fallbackModel": "FLUX_MAX"}, "fallbackModel", "enableFallback"),
        (
            {"prompt": "x", "size": "1:1", "enableFallback": True, "fallbackModel": "DALL_E"},
            "fallbackModel",
            "",
        ),
        ({"prompt": "x", "size": "1:1", "maskUrl": "https://e.com/m.png"}, "maskUrl", "filesUrl"),
        (
            {"prompt": "x", "size": "1:1", "filesUrl": ["https://e.com/a.png", "https://e.com/b.txt"]},
            "filesUrl[1]",
            ".png",
        ),
        ({"prompt": "x", "size": "1:1", "webhookUrl": "hello"}, "webhookUrl", "https://hooks.example.com"),
        ({"prompt": "   ", "size": "1:1"}, "prompt", "blank"),
        ({"prompt": "x", "size": "1:1", "callBackUrl": "https://evil.example/cb"}, "callBackUrl", ""),
    ],
)
def test_each_generate_rule_is_enforced(
    aws_stack: Any, upstream: Any, lambda_context: Any, body: dict[str, Any], field: str, needle: str
) -> None:
    route = upstream.post(GENERATE).mock(return_value=submit_ok())
    status, answer, _ = invoke(with_body(load_event("api_submit_task"), body), lambda_context)
    assert status == 422, answer
    problems = {problem["field"]: problem["message"] for problem in answer["errors"]}
    assert field in problems, problems
    assert needle in problems[field]
    assert not any(word in problems[field] for word in ("Value error", "String should", "^", "[A-Z")), (
        problems
    )
    assert not route.called


def test_body_that_is_not_json_is_a_clear_400(aws_stack: Any, upstream: Any, lambda_context: Any) -> None:
    for broken in ("{not json", '{"prompt": "x", "size": "1:1"'):  # a syntax error; cut short
        status, body, _ = invoke(with_body(load_event("api_submit_task"), broken), lambda_context)
        assert status == 400, body
        assert body["errors"] == [{"field": "body", "message": body["errors"][0]["message"]}]
        assert "not valid JSON" in body["message"]


@pytest.mark.parametrize(
    ("upstream_answer", "status", "needle", "retry_after"),
    [
        (
            httpx.Response(200, json={"code": 402, "msg": "Credits insufficient"}),
            402,
            "Credits insufficient",
            None,
        ),
        (
            httpx.Response(429, json={"code": 429, "msg": "rate limited"}, headers={"Retry-After": "7"}),
            429,
            "7",
            "7",
        ),
        (httpx.Response(200, json={"code": 429, "msg": "rate limited"}), 429, "retry", "10"),
        (
            httpx.Response(200, json={"code": 401, "msg": "You do not have access permissions"}),
            502,
            "API key",
            None,
        ),
        (httpx.Response(200, json={"code": 455, "msg": "maintenance"}), 503, "maintenance", "30"),
        (httpx.Response(200, json={"code": 500, "msg": "server error"}), 503, "unavailable", "30"),
        (httpx.Response(404, text="<html>not found</html>"), 422, "HTTP 404", None),
        (httpx.Response(200, json={"code": 422, "msg": "filesUrl is not reachable"}), 422, "filesUrl", None),
    ],
)
def test_upstream_errors_map_to_what_a_client_can_act_on(
    aws_stack: Any,
    upstream: Any,
    lambda_context: Any,
    upstream_answer: httpx.Response,
    status: int,
    needle: str,
    retry_after: str | None,
) -> None:
    upstream.post(GENERATE).mock(return_value=upstream_answer)
    got_status, body, headers = invoke(load_event("api_submit_task"), lambda_context)
    assert got_status == status
    assert needle in body["message"]
    assert headers.get("Retry-After") == retry_after
    # No task is visible for a refused submission: the upstream made none.
    assert "taskId" not in body
    assert invoke(load_event("api_list_tasks"), lambda_context)[1]["tasks"] == []


@pytest.mark.parametrize(
    "no_answer",
    [
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("connection reset after the request was sent"),
        httpx.Response(502, text="<html>bad gateway</html>"),
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"code": 200, "msg": "success", "data": {}}),
    ],
)
def test_a_generate_call_without_a_definite_answer_is_202_submitting_with_our_id(
    aws_stack: Any, upstream: Any, lambda_context: Any, no_answer: Any
) -> None:
    # Given a generate call whose answer is lost: the upstream may have made (and charged for) the task
    route = upstream.post(GENERATE)
    if isinstance(no_answer, Exception):
        route.mock(side_effect=no_answer)
    else:
        route.mock(return_value=no_answer)
    # Then the client gets our id, and the task is its own, waiting for its callback
    status, body, _ = invoke(load_event("api_submit_task"), lambda_context)
    assert status == 202 and body["status"] == "submitting", body
    status, task, _ = get_task(body["taskId"], lambda_context)
    assert (status, task["status"], task["upstreamTaskId"], task["progress"]) == (
        200,
        "submitting",
        None,
        None,
    )
    assert [
        listed["taskId"] for listed in invoke(load_event("api_list_tasks"), lambda_context)[1]["tasks"]
    ] == [body["taskId"]]


def test_an_upstream_never_reached_is_503_and_leaves_no_task(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    upstream.post(GENERATE).mock(side_effect=httpx.ConnectError("refused"))
    status, body, headers = invoke(load_event("api_submit_task"), lambda_context)
    assert status == 503 and "could not reach" in body["message"] and headers["Retry-After"]
    assert invoke(load_event("api_list_tasks"), lambda_context)[1]["tasks"] == []


def test_unknown_task_is_404(aws_stack: Any, lambda_context: Any) -> None:
    status, body, _ = invoke(load_event("api_get_task_unknown"), lambda_context)
    assert status == 404
    assert "not found" in body["message"]


def test_status_reports_live_progress_while_generating(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    upstream.post(GENERATE).mock(return_value=submit_ok())
    upstream.get(RECORD_INFO).mock(return_value=details("0.48"))
    task_id = submit(lambda_context)
    status, body, _ = get_task(task_id, lambda_context)
    assert status == 200 and body["progress"] == pytest.approx(0.48)


def test_many_pollers_of_one_task_query_the_upstream_once_per_cache_period(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    # Given a task still generating upstream (which allows 3 detail queries per second per task)
    upstream.post(GENERATE).mock(return_value=submit_ok())
    route = upstream.get(RECORD_INFO).mock(return_value=details("0.48"))
    task_id = submit(lambda_context)
    # When a client polls it 20 times in a row
    answers = [get_task(task_id, lambda_context)[1] for _ in range(20)]
    # Then every answer carries the progress, and the upstream was asked once
    assert all(answer["progress"] == pytest.approx(0.48) for answer in answers)
    assert route.call_count == 1
    assert route.calls.last.request.url.params["taskId"] == TASK_ID  # asked by the upstream's id


def test_status_survives_an_upstream_outage(aws_stack: Any, upstream: Any, lambda_context: Any) -> None:
    upstream.post(GENERATE).mock(return_value=submit_ok())
    upstream.get(RECORD_INFO).mock(side_effect=httpx.ConnectError("down"))
    task_id = submit(lambda_context)
    status, body, _ = get_task(task_id, lambda_context)
    assert status == 200 and body["status"] == "submitted" and body["progress"] is None


def test_dynamodb_fault_is_a_clear_503(
    aws_stack: Any, upstream: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from image_pipeline.settings import reset_settings_cache

    monkeypatch.setenv("TASKS_TABLE", "no-such-table")
    reset_settings_cache()
    route = upstream.post(GENERATE).mock(return_value=submit_ok())
    status, body, headers = invoke(load_event("api_submit_task"), lambda_context)
    assert status == 503 and "try again" in body["message"] and headers["Retry-After"]
    assert not route.called  # the task could not be recorded, so nothing was asked for or paid


def test_a_paid_generation_is_answered_even_when_recording_its_upstream_id_fails(
    aws_stack: Any, upstream: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the upstream accepted, a DynamoDB outage must not make a retrying client pay twice."""
    from image_pipeline.adapters.tasks_table import TasksTable
    from image_pipeline.logic import submission

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("DynamoDB unavailable")

    monkeypatch.setattr(TasksTable, "confirm_submitted", broken)
    monkeypatch.setattr(submission, "CONFIRM_BACKOFF_SECONDS", 0)
    route = upstream.post(GENERATE).mock(return_value=submit_ok())
    status, body, _ = invoke(load_event("api_submit_task"), lambda_context)
    assert (status, body["status"]) == (202, "submitting")
    assert get_task(body["taskId"], lambda_context)[1]["status"] == "submitting"
    assert route.call_count == 1


@pytest.mark.parametrize("task_id", ["t" * 3000, "a/b", "..", "ü"])
def test_task_ids_that_cannot_exist_are_404(aws_stack: Any, lambda_context: Any, task_id: str) -> None:
    event = load_event("api_get_task")
    event["pathParameters"] = {"taskId": task_id}
    status, body, _ = invoke(event, lambda_context)
    assert status == 404 and len(body["message"]) < 200


def test_an_upstream_id_that_could_not_be_recorded_is_recorded_later_and_swept_like_any_other(
    aws_stack: Any, upstream: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    from image_pipeline.adapters.tasks_table import TasksTable
    from image_pipeline.logic import submission

    # Given DynamoDB failing for the confirmation after the upstream accepted the generation
    working = TasksTable.confirm_submitted

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("DynamoDB unavailable")

    monkeypatch.setattr(TasksTable, "confirm_submitted", broken)
    monkeypatch.setattr(submission, "CONFIRM_BACKOFF_SECONDS", 0)
    upstream.post(GENERATE).mock(return_value=submit_ok())
    upstream.get(RECORD_INFO).mock(return_value=details())
    task_id = submit(lambda_context)
    assert get_task(task_id, lambda_context)[1]["status"] == "submitting"
    # When DynamoDB is back and the downloader takes the confirmation off the queue (its outbox)
    monkeypatch.setattr(TasksTable, "confirm_submitted", working)
    sqs = boto3.client("sqs", region_name="us-east-1")
    messages = sqs.receive_message(QueueUrl=aws_stack.download_queue_url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(message["Body"]) for message in messages] == [
        {"confirmTask": task_id, "upstreamTaskId": TASK_ID, "nextCheckAt": ANY_TIME}
    ]
    event = load_event("sqs_download_batch")
    event["Records"] = [{**event["Records"][0], "body": messages[0]["Body"], "messageId": "record-0"}]
    from downloader_handler import lambda_handler as downloader

    assert downloader(event, lambda_context) == {"batchItemFailures": []}
    # Then the task is submitted under the upstream's id, and due for the reconciler like any other
    status, task, _ = get_task(task_id, lambda_context)
    assert (status, task["status"], task["upstreamTaskId"]) == (200, "submitted", TASK_ID)
    record = TasksTable(aws_stack.tasks_table).get_task(task_id)
    assert record is not None and record.options["prompt"] == "a red fox in snow, watercolor"
    assert record.nextCheckAt is not None
    # And the message handled twice changes nothing
    assert downloader(event, lambda_context) == {"batchItemFailures": []}
    assert get_task(task_id, lambda_context)[1]["status"] == "submitted"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_json_body_without_a_json_content_type_is_still_read(
    aws_stack: Any, upstream: Any, lambda_context: Any, content_type: str | None
) -> None:
    # Given a client (curl -d, say) that sends the JSON body without Content-Type: application/json
    upstream.post(GENERATE).mock(return_value=submit_ok())
    event = load_event("api_submit_task")
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers.pop("Content-Type")
        if content_type:
            headers["Content-Type"] = content_type if headers is event["headers"] else [content_type]
    # Then the task is submitted as if the header had been there
    status, body, _ = invoke(event, lambda_context)
    assert (status, body["status"]) == (202, "submitted")
