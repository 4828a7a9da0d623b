"""Idempotency-Key on POST /tasks and the account-wide submit guard, under moto."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest
import respx

from tests.conftest import load_event
from tests.unit.test_api_handler import GENERATE, invoke, submit_ok


def with_key(key: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    event = load_event("api_submit_task")
    event["headers"] = {**event["headers"], "Idempotency-Key": key}
    event["multiValueHeaders"] = {**event["multiValueHeaders"], "Idempotency-Key": [key]}
    if body is not None:
        event["body"] = json.dumps(body)
    return event


@pytest.fixture
def upstream() -> Any:
    with respx.mock(assert_all_called=False) as router:
        yield router


def test_retry_with_the_same_key_returns_the_first_task_and_pays_once(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    route = upstream.post(GENERATE).mock(side_effect=[submit_ok("a" * 32), submit_ok("b" * 32)])
    first = invoke(with_key("order-42"), lambda_context)
    second = invoke(with_key("order-42"), lambda_context)
    assert first[0] == second[0] == 202
    assert first[1] == second[1] == {"taskId": first[1]["taskId"], "status": "submitted"}
    assert route.call_count == 1
    # Another key is another generation.
    third = invoke(with_key("order-43"), lambda_context)[1]["taskId"]
    assert third != first[1]["taskId"] and route.call_count == 2


def test_same_key_with_another_body_is_refused(aws_stack: Any, upstream: Any, lambda_context: Any) -> None:
    route = upstream.post(GENERATE).mock(return_value=submit_ok())
    invoke(with_key("k1"), lambda_context)
    status, body, _ = invoke(with_key("k1", {"prompt": "something else", "size": "1:1"}), lambda_context)
    assert status == 422 and body["errors"][0]["field"] == "Idempotency-Key"
    assert route.call_count == 1


def test_failed_submit_can_be_retried_with_the_same_key(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    route = upstream.post(GENERATE).mock(
        side_effect=[httpx.Response(200, json={"code": 500, "msg": "boom"}), submit_ok()]
    )
    assert invoke(with_key("retry-me"), lambda_context)[0] == 503
    assert invoke(with_key("retry-me"), lambda_context)[0] == 202
    assert route.call_count == 2


def test_a_duplicate_while_the_first_still_waits_for_generate_is_the_same_task(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    release = threading.Event()
    entered = threading.Event()

    def slow_generate(request: httpx.Request) -> httpx.Response:
        entered.set()
        release.wait(10)
        return submit_ok()

    route = upstream.post(GENERATE).mock(side_effect=slow_generate)
    outcomes: list[tuple[int, dict[str, Any], dict[str, str]]] = []
    first = threading.Thread(target=lambda: outcomes.append(invoke(with_key("dup"), lambda_context)))
    first.start()
    assert entered.wait(10)
    status, body, _ = invoke(with_key("dup"), lambda_context)
    release.set()
    first.join(10)
    assert (status, body["status"]) == (202, "submitting")
    assert [(answer[0], answer[1]) for answer in outcomes] == [
        (202, {"taskId": body["taskId"], "status": "submitted"})
    ]
    assert route.call_count == 1


def test_a_key_claimed_by_a_request_that_stopped_before_recording_carries_on_with_its_id(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    """A crash between claiming the key and recording the task: the upstream was never called for it."""
    from image_pipeline.adapters.idempotency import IdempotencyClaims
    from image_pipeline.client_requests import TaskRequest
    from image_pipeline.logic.submission import request_hash
    from image_pipeline.task_records import utc_now

    event = with_key("crashed")

    claimed = "c" * 32
    fingerprint = request_hash(TaskRequest.model_validate_json(event["body"]).model_dump(mode="json"))
    assert (
        IdempotencyClaims(aws_stack.idempotency_table).claim(
            "local", "crashed", fingerprint, claimed, utc_now()
        )
        is None
    )
    route = upstream.post(GENERATE).mock(return_value=submit_ok())
    status, answer, _ = invoke(event, lambda_context)
    assert (status, answer) == (202, {"taskId": claimed, "status": "submitted"})
    assert route.call_count == 1


def test_a_retry_of_a_deleted_tasks_key_is_409_and_generates_nothing(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    from image_pipeline.adapters.tasks_table import TasksTable
    from image_pipeline.task_records import TaskError, utc_now

    route = upstream.post(GENERATE).mock(return_value=submit_ok())
    task_id = invoke(with_key("gone"), lambda_context)[1]["taskId"]
    table = TasksTable(aws_stack.tasks_table)
    assert table.mark_failed(task_id, TaskError(code=501, message="failed"), utc_now())
    assert table.tombstone(task_id, "local", utc_now())  # its client deleted it
    status, body, _ = invoke(with_key("gone"), lambda_context)
    assert status == 409 and task_id in body["message"] and "new Idempotency-Key" in body["message"]
    assert route.call_count == 1


def test_bad_idempotency_key_is_422(aws_stack: Any, upstream: Any, lambda_context: Any) -> None:
    status, body, _ = invoke(with_key("x" * 300), lambda_context)
    assert status == 422 and "Idempotency-Key" in body["message"]


def test_guard_keeps_submits_under_the_account_limit(
    aws_stack: Any, upstream: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from image_pipeline.settings import reset_settings_cache

    monkeypatch.setenv("SUBMIT_RATE_LIMIT", "3")
    monkeypatch.setenv("SUBMIT_RATE_WINDOW_SECONDS", "60")
    monkeypatch.setenv("CLIENT_GENERATE_SHARE_PERCENT", "100")
    reset_settings_cache()
    route = upstream.post(GENERATE).mock(return_value=submit_ok())
    statuses = [invoke(with_key(f"k{index}"), lambda_context) for index in range(5)]
    assert [status for status, _, _ in statuses] == [202, 202, 202, 429, 429]
    assert route.call_count == 3  # the upstream never saw the 4th and 5th
    retry_after = int(statuses[3][2]["Retry-After"])
    assert 50 <= retry_after <= 60
    # A retry of an admitted submit is answered from its key, without a slot
    assert invoke(with_key("k0"), lambda_context)[:2] == statuses[0][:2]
    # and the key of a refused one is free: its retry is refused by the guard again, not by the key
    assert invoke(with_key("k3"), lambda_context)[0] == 429
    assert invoke(load_event("api_list_tasks"), lambda_context)[1]["tasks"].__len__() == 3


def test_guard_slot_frees_up_after_the_window(aws_stack: Any) -> None:
    from image_pipeline.adapters.submit_guard import SubmitGuard
    from image_pipeline.errors import RateLimited

    now = [1000.0]
    guard = SubmitGuard(aws_stack.tasks_table, limit=2, window_seconds=10, clock=lambda: now[0])
    guard.acquire()
    now[0] += 4
    guard.acquire()
    with pytest.raises(RateLimited) as refused:
        guard.acquire()
    assert refused.value.retry_after == 6
    now[0] += 6  # the first slot is ten seconds old now
    guard.acquire()
    with pytest.raises(RateLimited):
        guard.acquire()


def test_guard_under_concurrency_admits_exactly_the_limit(aws_stack: Any) -> None:
    from image_pipeline.adapters.submit_guard import SubmitGuard
    from image_pipeline.errors import RateLimited

    admitted: list[bool] = []
    lock = threading.Lock()

    def attempt() -> None:
        try:
            SubmitGuard(aws_stack.tasks_table, limit=5, window_seconds=60).acquire()
            result = True
        except RateLimited:
            result = False
        with lock:
            admitted.append(result)

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert admitted.count(True) == 5 and admitted.count(False) == 7


def test_a_key_that_cannot_be_claimed_is_a_503_before_anything_is_paid(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    """DynamoDB refusing the claim: nothing is recorded and the upstream is never called."""
    from botocore.exceptions import ClientError
    from image_pipeline.adapters.aws import client

    def throttle_claims(params: dict[str, Any], **_kwargs: Any) -> None:
        if params.get("TableName") == aws_stack.idempotency_table:
            error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "throttled"}}
            raise ClientError(error, "PutItem")

    dynamodb = client("dynamodb")
    dynamodb.meta.events.register("before-parameter-build.dynamodb.PutItem", throttle_claims)
    try:
        route = upstream.post(GENERATE).mock(return_value=submit_ok())
        status, _, headers = invoke(with_key("remember-me"), lambda_context)
    finally:
        dynamodb.meta.events.unregister("before-parameter-build.dynamodb.PutItem", throttle_claims)
    assert status == 503 and headers["Retry-After"]
    assert not route.called
    assert invoke(load_event("api_list_tasks"), lambda_context)[1]["tasks"] == []


def test_a_burst_from_one_api_instance_takes_each_slot_with_one_write(aws_stack: Any) -> None:
    """DynamoDB bills a refused conditional write like any other: probing slots already taken is cost."""
    from image_pipeline.adapters.submit_guard import SubmitGuard

    now = [1000.0]
    guard = SubmitGuard(aws_stack.tasks_table, limit=20, window_seconds=10, clock=lambda: now[0])
    writes: list[str] = []

    def count(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "UpdateItem":
            writes.append(params["Key"]["pk"]["S"])

    guard._db.meta.events.register("provide-client-params.dynamodb.UpdateItem", count)
    try:
        for _ in range(20):  # submits back to back, a quarter of a second apart: the window fills up
            guard.acquire()
            now[0] += 0.25
        assert len(writes) == 20 and len(set(writes)) == 20
        now[0] += 10  # the window has moved on: the slots free up in the order they were taken
        for _ in range(20):
            guard.acquire()
            now[0] += 0.25
        assert len(writes) == 40
    finally:
        guard._db.meta.events.unregister("provide-client-params.dynamodb.UpdateItem", count)


def from_client(client: str, key: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    event = with_key(key, body)
    event["requestContext"]["identity"]["apiKeyId"] = client
    return event


def test_one_clients_burst_leaves_its_neighbours_their_share_of_the_window(
    aws_stack: Any, upstream: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from image_pipeline.settings import reset_settings_cache

    monkeypatch.setenv("SUBMIT_RATE_LIMIT", "4")
    monkeypatch.setenv("SUBMIT_RATE_WINDOW_SECONDS", "60")
    monkeypatch.setenv("CLIENT_GENERATE_SHARE_PERCENT", "50")
    reset_settings_cache()
    route = upstream.post(GENERATE).mock(return_value=submit_ok())
    burst = [invoke(from_client("greedy", f"g{index}"), lambda_context) for index in range(4)]
    assert [status for status, _, _ in burst] == [202, 202, 429, 429]
    refused = burst[2]
    assert "50%" in refused[1]["message"] and 50 <= int(refused[2]["Retry-After"]) <= 60
    # Its neighbours get the other half of the window, then the account-wide limit applies to all
    assert invoke(from_client("alice", "a0"), lambda_context)[0] == 202
    assert invoke(from_client("bob", "b0"), lambda_context)[0] == 202
    assert invoke(from_client("carol", "c0"), lambda_context)[0] == 429
    assert route.call_count == 4


def test_the_daily_quota_counts_images_and_resets_at_the_next_utc_day(
    aws_stack: Any, upstream: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from image_pipeline.settings import reset_settings_cache

    monkeypatch.setenv("CLIENT_DAILY_IMAGES", "5")
    reset_settings_cache()
    route = upstream.post(GENERATE).mock(return_value=submit_ok())
    four = {"prompt": "a red fox", "size": "1:1", "nVariants": 4}
    one = {"prompt": "a red fox", "size": "1:1"}
    assert invoke(from_client("alice", "a0", four), lambda_context)[0] == 202
    status, body, headers = invoke(from_client("alice", "a1", {**four, "nVariants": 2}), lambda_context)
    assert status == 429 and "5 images a day" in body["message"] and "4 used" in body["message"]
    assert 0 < int(headers["Retry-After"]) <= 86400
    assert invoke(from_client("alice", "a2", one), lambda_context)[0] == 202  # the fifth image fits
    assert invoke(from_client("alice", "a3", one), lambda_context)[0] == 429
    assert invoke(from_client("bob", "b0", four), lambda_context)[0] == 202  # a quota of its own
    assert route.call_count == 3


def test_images_the_upstream_refused_to_make_are_given_back_to_the_daily_quota(
    aws_stack: Any, upstream: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from image_pipeline.settings import reset_settings_cache

    monkeypatch.setenv("CLIENT_DAILY_IMAGES", "4")
    reset_settings_cache()
    upstream.post(GENERATE).mock(
        side_effect=[httpx.Response(200, json={"code": 422, "msg": "prompt refused"}), submit_ok()]
    )
    four = {"prompt": "a red fox", "size": "1:1", "nVariants": 4}
    assert invoke(from_client("alice", "a0", four), lambda_context)[0] == 422
    assert invoke(from_client("alice", "a1", four), lambda_context)[0] == 202


def test_daily_image_quota_day_boundary(aws_stack: Any) -> None:
    from datetime import UTC, datetime

    from image_pipeline.adapters.submit_guard import DailyImageQuota
    from image_pipeline.errors import DailyImageLimitReached

    now = [datetime(2026, 12, 5, 23, 59, 30, tzinfo=UTC).timestamp()]
    quota = DailyImageQuota(aws_stack.tasks_table, limit=3, clock=lambda: now[0])
    quota.spend("alice", 3)
    with pytest.raises(DailyImageLimitReached) as refused:
        quota.spend("alice", 1)
    assert refused.value.retry_after == 30
    now[0] += 30  # midnight UTC: a new day, a new quota
    day = quota.spend("alice", 3)
    assert day == "2026-12-06"
    quota.refund("alice", 2, day)
    quota.spend("alice", 2)
    with pytest.raises(DailyImageLimitReached):
        quota.spend("alice", 1)
