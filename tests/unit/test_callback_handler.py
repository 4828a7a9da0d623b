"""The callback receiver, driven with the events/ files under moto."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import boto3
import pytest

from tests.conftest import load_event
from tests.task_fixtures import record_task

# The events' task: our id (in the callback URL) and the upstream's (in the callback body).
TASK_ID = "5f0c2a4b9e8d7c6b5a4f3e2d1c0b9a88"
UPSTREAM_ID = "d231a99a9a9f1dd8f895be1b97be8065"
TOKEN = "example-callback-token-0123456789abcdefABCDEF_-xyz"


def invoke(event: dict[str, Any], context: Any) -> tuple[int, dict[str, Any]]:
    from callback_handler import lambda_handler

    response = lambda_handler(event, context)
    return response["statusCode"], json.loads(response["body"])


def table(resources: Any) -> Any:
    from image_pipeline.adapters.tasks_table import TasksTable

    return TasksTable(resources.tasks_table)


def mint_submission(resources: Any, *, confirmed: bool = True, task_id: str = TASK_ID) -> None:
    """What POST /tasks leaves behind: the task under our id, with the hash of its callback token, and
    (unless its generate call got no answer) the upstream's id from the generate reply."""
    record_task(table(resources), task_id, upstream_task_id=UPSTREAM_ID, confirmed=confirmed, token=TOKEN)


def queued_jobs(resources: Any) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    jobs: list[dict[str, Any]] = []
    for _ in range(5):
        got = sqs.receive_message(QueueUrl=resources.download_queue_url, MaxNumberOfMessages=10)
        jobs += [json.loads(message["Body"]) for message in got.get("Messages", [])]
        if not got.get("Messages"):
            break
    return sorted(jobs, key=lambda job: job["index"])


def table_items(resources: Any) -> list[dict[str, Any]]:
    return boto3.client("dynamodb", region_name="us-east-1").scan(TableName=resources.tasks_table)["Items"]


@pytest.mark.parametrize(
    ("success", "duplicate", "urls"),
    [
        ("callback_4o_success", "callback_4o_duplicate", 2),
        ("callback_flux_success", "callback_flux_duplicate", 1),
    ],
)
def test_first_success_enqueues_one_job_per_image_and_duplicates_do_nothing(
    aws_stack: Any, lambda_context: Any, success: str, duplicate: str, urls: int
) -> None:
    mint_submission(aws_stack)
    assert invoke(load_event(success), lambda_context) == (200, {"status": "accepted"})
    task = table(aws_stack).get_task(TASK_ID)
    assert (
        task is not None
        and task.status == "downloading"
        and task.imagesExpected == urls
        and task.jobsEnqueued
    )
    before = table_items(aws_stack)
    # A later delivery of the same taskId: 200, no new side effect.
    assert invoke(load_event(duplicate), lambda_context) == (200, {"status": "duplicate"})
    assert invoke(load_event(success), lambda_context) == (200, {"status": "duplicate"})
    assert table_items(aws_stack) == before
    jobs = queued_jobs(aws_stack)
    assert [job["index"] for job in jobs] == list(range(urls))
    assert all(
        job["taskId"] == TASK_ID and job["url"].startswith("https://tempfile.aiquickdraw.com/")
        for job in jobs
    )


@pytest.mark.parametrize(("event", "code"), [("callback_4o_failure", 400), ("callback_flux_failure", 501)])
def test_failure_code_records_failed_with_code_and_message(
    aws_stack: Any, lambda_context: Any, event: str, code: int
) -> None:
    mint_submission(aws_stack)
    assert invoke(load_event(event), lambda_context) == (200, {"status": "accepted"})
    task = table(aws_stack).get_task(TASK_ID)
    assert task is not None and task.status == "failed"
    assert task.error is not None and task.error.code == code and task.error.message
    assert queued_jobs(aws_stack) == []
    # A success arriving after the failure does not resurrect the task.
    assert invoke(load_event("callback_4o_success"), lambda_context) == (200, {"status": "duplicate"})
    assert table(aws_stack).get_task(TASK_ID).status == "failed"  # type: ignore[union-attr]


def test_a_callback_teaches_a_task_whose_generate_reply_never_came_its_upstream_id(
    aws_stack: Any, lambda_context: Any
) -> None:
    from image_pipeline.task_records import utc_now

    # Given a task recorded under our id whose generate call got no answer (no upstream id yet)
    mint_submission(aws_stack, confirmed=False)
    assert table(aws_stack).get_task(TASK_ID).status == "submitting"  # type: ignore[union-attr]
    # When its callback arrives on its own URL
    assert invoke(load_event("callback_4o_success"), lambda_context) == (200, {"status": "accepted"})
    # Then the task learns the upstream's id and its downloads are queued
    store = table(aws_stack)
    task = store.get_task(TASK_ID)
    assert task is not None and (task.status, task.upstreamTaskId) == ("downloading", UPSTREAM_ID)
    assert len(queued_jobs(aws_stack)) == 2
    # And a generate reply that still comes afterwards moves nothing back
    assert not store.confirm_submitted(TASK_ID, UPSTREAM_ID, utc_now(), utc_now())
    assert store.get_task(TASK_ID).status == "downloading"  # type: ignore[union-attr]


def test_a_late_callback_reopens_a_task_that_ended_submit_unconfirmed(
    aws_stack: Any, lambda_context: Any
) -> None:
    from image_pipeline.task_records import SUBMIT_UNCONFIRMED, TaskError, utc_now

    # Given a task whose submit was never confirmed, ended by the reconciler (and announced)
    record_task(
        table(aws_stack),
        TASK_ID,
        confirmed=False,
        token=TOKEN,
        webhook_url="https://hooks.example.com/imagegen",
    )
    store = table(aws_stack)
    assert store.mark_failed(
        TASK_ID, TaskError(code=SUBMIT_UNCONFIRMED, message="never confirmed"), utc_now()
    )
    store.record_delivery(TASK_ID, {"state": "delivered", "attempts": 1, "lastError": None})
    store.clear_notify_mark(TASK_ID, webhook_url="https://hooks.example.com/imagegen", event_published=True)
    # When its callback comes after all
    assert invoke(load_event("callback_4o_success"), lambda_context) == (200, {"status": "accepted"})
    # Then it moves on, its error gone, its notification to be made afresh
    task = store.get_task(TASK_ID)
    assert task is not None and task.status == "downloading" and task.error is None
    assert task.upstreamTaskId == UPSTREAM_ID and task.reopened == 1
    assert task.notification is not None and (task.notification.state, task.notification.attempts) == (
        "pending",
        0,
    )
    assert not task.eventPublished
    assert len(queued_jobs(aws_stack)) == 2
    # And a second delivery is a duplicate, as for any task
    assert invoke(load_event("callback_4o_duplicate"), lambda_context) == (200, {"status": "duplicate"})


def test_a_failure_that_is_not_submit_unconfirmed_is_never_reopened(
    aws_stack: Any, lambda_context: Any
) -> None:
    from image_pipeline.task_records import TaskError, utc_now

    mint_submission(aws_stack, confirmed=False)
    assert table(aws_stack).mark_failed(TASK_ID, TaskError(code="download_failed", message="x"), utc_now())
    assert invoke(load_event("callback_4o_success"), lambda_context) == (200, {"status": "duplicate"})
    assert table(aws_stack).get_task(TASK_ID).status == "failed"  # type: ignore[union-attr]
    assert queued_jobs(aws_stack) == []


def assert_rejected_without_writes(
    aws_stack: Any, lambda_context: Any, event: dict[str, Any], status: int
) -> str:
    before = table_items(aws_stack)
    got_status, body = invoke(event, lambda_context)
    assert got_status == status, body
    assert table_items(aws_stack) == before
    assert queued_jobs(aws_stack) == []
    return str(body["message"])


def test_forged_token_is_403_and_changes_nothing(aws_stack: Any, lambda_context: Any) -> None:
    mint_submission(aws_stack)
    message = assert_rejected_without_writes(
        aws_stack, lambda_context, load_event("callback_forged_token"), 403
    )
    assert "token" in message and "forged-token" not in message


def test_missing_token_is_401(aws_stack: Any, lambda_context: Any) -> None:
    mint_submission(aws_stack)
    event = load_event("callback_4o_success")
    event["queryStringParameters"] = None
    event["multiValueQueryStringParameters"] = None
    assert_rejected_without_writes(aws_stack, lambda_context, event, 401)


def test_unknown_callback_url_is_404(aws_stack: Any, lambda_context: Any) -> None:
    assert_rejected_without_writes(aws_stack, lambda_context, load_event("callback_4o_success"), 404)


def test_a_callback_naming_another_upstream_task_than_its_own_is_403(
    aws_stack: Any, lambda_context: Any
) -> None:
    record_task(table(aws_stack), TASK_ID, upstream_task_id="ffffffffffffffffffffffffffffffff", token=TOKEN)
    message = assert_rejected_without_writes(
        aws_stack, lambda_context, load_event("callback_4o_success"), 403
    )
    assert "another upstream task" in message


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("{not json", "not JSON"),
        ('{"code": 200, "msg": "success"}', "data"),
        ('{"code": "two hundred", "data": {"taskId": "abc"}}', "code"),
        ('{"code": 200, "data": {"taskId": "../../etc"}}', "taskId"),
        ('{"code": 200, "data": {"info": {"result_urls": []}}}', "taskId"),
        ("[]", "callback format"),
    ],
)
def test_malformed_body_is_400_and_changes_nothing(
    aws_stack: Any, lambda_context: Any, body: str, needle: str
) -> None:
    mint_submission(aws_stack)
    event = {**load_event("callback_4o_success"), "body": body}
    assert needle in assert_rejected_without_writes(aws_stack, lambda_context, event, 400)


def test_oversized_body_is_413(aws_stack: Any, lambda_context: Any) -> None:
    mint_submission(aws_stack)
    event = load_event("callback_4o_success")
    document = json.loads(event["body"])
    document["msg"] = "x" * 70_000
    event["body"] = json.dumps(document)
    assert "limit" in assert_rejected_without_writes(aws_stack, lambda_context, event, 413)


class TestSignedCallbacks:
    KEY = "webhook-hmac-key-for-tests"

    @pytest.fixture(autouse=True)
    def _hmac_key(self, aws_stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        from image_pipeline.settings import reset_settings_cache

        monkeypatch.setenv("KIE_WEBHOOK_HMAC_KEY", self.KEY)
        reset_settings_cache()
        mint_submission(aws_stack)

    def signed(self, timestamp: int, key: str | None = None, task_id: str = UPSTREAM_ID) -> dict[str, Any]:
        from image_pipeline.tokens import webhook_signature

        event = load_event("callback_4o_success")
        event["headers"] = {
            **event["headers"],
            "X-Webhook-Timestamp": str(timestamp),
            "X-Webhook-Signature": webhook_signature(key or self.KEY, task_id, str(timestamp)),
        }
        return event

    def test_valid_signature_is_accepted(self, lambda_context: Any) -> None:
        assert invoke(self.signed(int(time.time())), lambda_context) == (200, {"status": "accepted"})

    @pytest.mark.parametrize(
        ("make_event", "needle"),
        [
            (lambda self: load_event("callback_4o_success"), "missing"),
            (lambda self: self.signed(int(time.time()), key="wrong-key"), "does not match"),
            (lambda self: self.signed(int(time.time()), task_id="otherTask"), "does not match"),
            (lambda self: self.signed(int(time.time()) - 360), "window"),
            (lambda self: self.signed(int(time.time()) + 360), "window"),
        ],
    )
    def test_bad_signature_is_401_and_changes_nothing(
        self, aws_stack: Any, lambda_context: Any, make_event: Any, needle: str
    ) -> None:
        message = assert_rejected_without_writes(aws_stack, lambda_context, make_event(self), 401)
        assert needle in message


def test_sqs_failure_answers_503_and_the_next_delivery_finishes_the_job(
    aws_stack: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from image_pipeline import wiring
    from image_pipeline.settings import reset_settings_cache

    mint_submission(aws_stack)
    # Given SQS refusing the send (the queue URL points at a queue that does not exist)
    real_queue = aws_stack.download_queue_url
    monkeypatch.setenv("DOWNLOAD_QUEUE_URL", real_queue + "-missing")
    reset_settings_cache()
    wiring.reset()
    status, body = invoke(load_event("callback_4o_success"), lambda_context)
    assert status == 503 and "retry" in body["message"]
    task = table(aws_stack).get_task(TASK_ID)
    assert task is not None and task.status == "downloading" and not task.jobsEnqueued
    # When the upstream delivers again with SQS healthy
    monkeypatch.setenv("DOWNLOAD_QUEUE_URL", real_queue)
    reset_settings_cache()
    wiring.reset()
    assert invoke(load_event("callback_4o_duplicate"), lambda_context) == (200, {"status": "resumed"})
    # Then the jobs are queued once, and later deliveries are plain duplicates
    assert len(queued_jobs(aws_stack)) == 2
    assert table(aws_stack).get_task(TASK_ID).jobsEnqueued  # type: ignore[union-attr]
    assert invoke(load_event("callback_4o_duplicate"), lambda_context) == (200, {"status": "duplicate"})


def test_ten_concurrent_deliveries_enqueue_exactly_once(aws_stack: Any, lambda_context: Any) -> None:
    mint_submission(aws_stack)
    results: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()

    def deliver() -> None:
        outcome = invoke(load_event("callback_4o_success"), lambda_context)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    statuses = sorted(body["status"] for _, body in results)
    assert [code for code, _ in results] == [200] * 10
    assert statuses.count("accepted") == 1 and statuses.count("duplicate") == 9
    assert len(queued_jobs(aws_stack)) == 2


@pytest.mark.parametrize("task_id", ["x" * 5000, "../etc", "5F0C2A4B9E8D7C6B5A4F3E2D1C0B9A88"])
def test_callback_path_that_cannot_be_ours_is_404_before_any_lookup(
    aws_stack: Any, lambda_context: Any, task_id: str
) -> None:
    event = load_event("callback_4o_success")
    event["pathParameters"] = {"taskId": task_id}
    assert "unknown" in assert_rejected_without_writes(aws_stack, lambda_context, event, 404)


VICTIM_ID = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
VICTIM_TOKEN = "victim-callback-token-9876543210zyxwvuZYXWVU_-abc"


def callback_event_for(task_id: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    event = load_event("callback_4o_success")
    event["path"] = f"/callbacks/{task_id}"
    event["pathParameters"] = {"taskId": task_id}
    event["queryStringParameters"] = {"token": token}
    event["multiValueQueryStringParameters"] = {"token": [token]}
    event["body"] = json.dumps(body)
    return event


def test_a_leaked_callback_url_can_only_ever_move_its_own_task(aws_stack: Any, lambda_context: Any) -> None:
    store = table(aws_stack)
    # Given the victim's task, confirmed and still waiting for its callback
    record_task(store, VICTIM_ID, upstream_task_id=UPSTREAM_ID, token=VICTIM_TOKEN)
    # and another task whose generate call timed out: its callback URL is valid, its upstream id unknown
    mint_submission(aws_stack, confirmed=False)
    # When that URL sends a callback naming the victim's upstream task, with other images
    forged = json.loads(load_event("callback_4o_success")["body"])
    forged["data"]["info"]["result_urls"] = ["https://tempfile.aiquickdraw.com/s/forged.png"]
    assert invoke(callback_event_for(TASK_ID, TOKEN, forged), lambda_context)[0] == 200
    # Then only the URL's own task moved; the victim's is untouched
    victim = store.get_task(VICTIM_ID)
    assert victim is not None and victim.status == "submitted" and victim.resultUrls == []
    # And the victim's genuine callback is still accepted and queues the genuine images
    genuine = json.loads(load_event("callback_4o_success")["body"])
    before = {job["url"] for job in queued_jobs(aws_stack)}
    assert before == {"https://tempfile.aiquickdraw.com/s/forged.png"}
    assert invoke(callback_event_for(VICTIM_ID, VICTIM_TOKEN, genuine), lambda_context) == (
        200,
        {"status": "accepted"},
    )
    victims = [job for job in queued_jobs(aws_stack) if job["taskId"] == VICTIM_ID]
    assert [job["url"] for job in victims] == genuine["data"]["info"]["result_urls"]
    # while the victim's token opens no other task
    assert invoke(callback_event_for(TASK_ID, VICTIM_TOKEN, genuine), lambda_context)[0] == 403


def test_a_huge_failure_message_is_truncated_before_it_is_stored(aws_stack: Any, lambda_context: Any) -> None:
    mint_submission(aws_stack)
    event = load_event("callback_4o_failure")
    body = json.loads(event["body"])
    body["msg"] = "x" * 20_000
    event["body"] = json.dumps(body)
    assert invoke(event, lambda_context) == (200, {"status": "accepted"})
    task = table(aws_stack).get_task(TASK_ID)
    assert task is not None and task.error is not None and len(task.error.message) <= 500
