"""The notifier, driven with SQS events under moto: the event goes on the bus once, the webhook is
POSTed signed (verified with the standardwebhooks package) and retried with the same webhook-id until
it is answered or its attempts run out."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import load_event
from tests.task_fixtures import record_task, upstream_id_of
from tests.unit.webhooks.receiver import Exchange, Receiver, hang_until_closed, status

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TASK_ID = "5f0c2a4b9e8d7c6b5a4f3e2d1c0b9a88"
UPSTREAM_ID = upstream_id_of(TASK_ID)


def stamped_ok(h: Exchange, r: Receiver) -> None:
    """200 at once, and when it came (``r.notes["ok_at"]``, time.monotonic())."""
    with r.lock:
        r.notes.setdefault("ok_at", []).append(time.monotonic())
    h.respond(200, b"ok")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(
        {"/ok": status(200), "/down": status(503), "/hang": hang_until_closed, "/stamped": stamped_ok}
    )
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _fresh_breaker() -> Iterator[None]:
    """Each test starts in a new Lambda environment: no client resting from another test."""
    from notifier_handler import client_breaker

    client_breaker.cache_clear()
    yield
    client_breaker.cache_clear()


@pytest.fixture
def notifier_env(aws_stack: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Any:
    from image_pipeline.settings import reset_settings_cache

    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("WEBHOOK_TRUSTED_ORIGINS", receiver.origin)
    monkeypatch.setenv("WEBHOOK_MAX_ATTEMPTS", "3")
    reset_settings_cache()
    return aws_stack


def ended_task(
    resources: Any,
    webhook_url: str | None,
    *,
    failed: bool = False,
    task_id: str = TASK_ID,
    owner: str = "alice",
) -> None:
    from image_pipeline.adapters.tasks_table import TasksTable
    from image_pipeline.task_records import StoredImage, TaskError, utc_now

    store = TasksTable(resources.tasks_table)
    record_task(store, task_id, owner=owner, webhook_url=webhook_url)
    if failed:
        assert store.fail_from_callback(
            task_id, upstream_id_of(task_id), TaskError(code=400, message="refused"), utc_now()
        )
    else:
        url = "https://tempfile.aiquickdraw.com/s/a.png"
        assert store.start_downloading(task_id, upstream_id_of(task_id), [url], utc_now(), utc_now())
        image = StoredImage(
            index=0, key=f"images/{task_id}/0.png", contentType="image/png", bytes=1, sha256="0" * 64
        )
        store.add_image(task_id, image, utc_now())
        assert store.mark_stored(task_id, utc_now())


class CountdownContext:
    """A Lambda context whose remaining time runs down with the clock, as the real one does."""

    function_name = "notifier"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:notifier"
    aws_request_id = "33333333-4444-5555-6666-777777777777"

    def __init__(self, timeout_seconds: float = 30) -> None:
        self.ends = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.ends - time.monotonic()) * 1000))


def notify_record(task_id: str = TASK_ID, receive_count: int = 1) -> dict[str, Any]:
    record = {
        **load_event("sqs_download_batch")["Records"][0],
        "messageId": f"notify-{task_id}" if task_id != TASK_ID else "notify-0",
        "body": json.dumps({"notifyTask": task_id}),
    }
    record["attributes"] = {**record["attributes"], "ApproximateReceiveCount": str(receive_count)}
    return record


def notify_batch(records: list[dict[str, Any]], context: Any = None) -> dict[str, Any]:
    from notifier_handler import lambda_handler

    result: dict[str, Any] = lambda_handler({"Records": records}, context or CountdownContext(30))
    return result


def notify(receive_count: int = 1) -> dict[str, Any]:
    return notify_batch([notify_record(TASK_ID, receive_count)])


def task(resources: Any, task_id: str = TASK_ID) -> Any:
    from image_pipeline.adapters.tasks_table import TasksTable

    return TasksTable(resources.tasks_table).get_task(task_id)


def queued(resources: Any) -> list[dict[str, Any]]:
    """The notify messages on the queue now (received, so they come back only after their visibility)."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = resources.queues["NotificationQueue"].url
    found: list[dict[str, Any]] = []
    while got := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["ApproximateReceiveCount"]
    ).get("Messages"):
        found += got
    return found


def delayed_count(resources: Any) -> int:
    sqs = boto3.client("sqs", region_name="us-east-1")
    name = "ApproximateNumberOfMessagesDelayed"
    url = resources.queues["NotificationQueue"].url
    return int(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[name])["Attributes"][name])


def bus_events(resources: Any) -> list[dict[str, Any]]:
    """What a rule on the bus delivers to an SQS queue (moto's EventBridge)."""
    events = boto3.client("events", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="bus-tap")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = resources.event_buses["EventBus"]
    events.put_rule(Name="tap", EventBusName=bus, EventPattern=json.dumps({"source": ["image-pipeline"]}))
    events.put_targets(Rule="tap", EventBusName=bus, Targets=[{"Id": "tap", "Arn": arn}])
    return [
        json.loads(m["Body"])
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    ]


def test_a_stored_task_is_delivered_signed_and_published_once(notifier_env: Any, receiver: Receiver) -> None:
    ended_task(notifier_env, f"{receiver.origin}/ok")
    bus_events(notifier_env)  # subscribe before the event is put
    assert notify() == {"batchItemFailures": []}
    assert notify() == {"batchItemFailures": []}  # a duplicate message: nothing more is sent
    [delivery] = receiver.received
    payload = Webhook(SECRET).verify(delivery.body, delivery.headers)
    assert payload["type"] == "task.stored" and payload["data"]["taskId"] == TASK_ID
    assert delivery.headers["webhook-id"] == f"msg_{TASK_ID}_stored"
    record = task(notifier_env)
    assert record.notification.state == "delivered" and record.notification.attempts == 1
    assert record.eventPublished


def test_a_failing_receiver_is_retried_with_one_webhook_id_then_given_up(
    notifier_env: Any, receiver: Receiver
) -> None:
    ended_task(notifier_env, f"{receiver.origin}/down", failed=True)
    assert notify(1)["batchItemFailures"] == [{"itemIdentifier": "notify-0"}]
    assert task(notifier_env).notification.state == "pending"
    assert notify(2)["batchItemFailures"] == [{"itemIdentifier": "notify-0"}]
    assert notify(3) == {"batchItemFailures": []}  # the last attempt: done with, as failed
    record = task(notifier_env)
    assert record.notification.state == "failed" and record.notification.attempts == 3
    assert "503" in record.notification.lastError
    assert {r.headers["webhook-id"] for r in receiver.received} == {f"msg_{TASK_ID}_failed"}
    assert len(receiver.received) == 3


WEBHOOK = "/ok"


def ended_unconfirmed(store: Any, receiver: Receiver) -> None:
    """A task (with a webhook) whose submit the upstream never confirmed, ended by the reconciler."""
    from image_pipeline.task_records import SUBMIT_UNCONFIRMED, TaskError, utc_now

    record_task(store, TASK_ID, owner="alice", confirmed=False, webhook_url=f"{receiver.origin}{WEBHOOK}")
    assert store.mark_failed(
        TASK_ID, TaskError(code=SUBMIT_UNCONFIRMED, message="never confirmed"), utc_now()
    )


class Jobs:
    """The download queue, as far as a callback uses it."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, jobs: list[Any]) -> None:
        self.sent += jobs


def late_callback(store: Any, *, succeeded: bool = False) -> None:
    """The task's callback comes after all: it reopens the task, ended anew (a failure) or downloading."""
    from image_pipeline.logic.callbacks import CallbackResult, handle_callback
    from image_pipeline.upstream_replies import CallbackPayload

    info = {"result_urls": ["https://tempfile.aiquickdraw.com/s/a.png"]} if succeeded else None
    late = CallbackPayload.from_json(
        {"code": 200 if succeeded else 501, "msg": "m", "data": {"taskId": UPSTREAM_ID, "info": info}}
    )
    task = store.get_task(TASK_ID)
    assert handle_callback(late, task=task, store=store, queue=Jobs()) is CallbackResult.ACCEPTED


def downloaded(store: Any) -> None:
    """The reopened task's one image is stored: it ends stored."""
    from image_pipeline.task_records import StoredImage, utc_now

    image = StoredImage(index=0, key=f"images/{TASK_ID}/0.png", contentType="image/png", bytes=1, sha256="0")
    assert store.finish_with_image(TASK_ID, image, stored_before=0, images_expected=1, now=utc_now())


def swept_then_delivered(
    receiver: Receiver, lambda_context: Any, *, already: int = 0, kind: str = "task.failed"
) -> None:
    """The next sweep announces the end again, and the notifier delivers the signed webhook (after the
    `already` deliveries before it)."""
    from image_pipeline.settings import reset_settings_cache

    reset_settings_cache()
    from reconciler_handler import lambda_handler as sweep

    assert sweep(load_event("reconciler_scheduled"), lambda_context)["announced"] == 1
    assert notify() == {"batchItemFailures": []}
    [delivery] = receiver.received[already:]
    assert Webhook(SECRET).verify(delivery.body, delivery.headers)["type"] == kind


def test_a_task_without_a_webhook_only_goes_on_the_bus(notifier_env: Any, receiver: Receiver) -> None:
    ended_task(notifier_env, None)
    assert notify() == {"batchItemFailures": []}
    assert receiver.received == []
    record = task(notifier_env)
    assert record.eventPublished and record.notification is None


def test_an_ended_task_is_announced_by_the_reconciler_when_its_sender_crashed(
    notifier_env: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox: the write that ended the task happened, the notify message was never sent."""
    from datetime import timedelta

    from image_pipeline.adapters import tasks_table
    from image_pipeline.settings import reset_settings_cache

    monkeypatch.setattr(tasks_table, "NOTIFY_GRACE", timedelta(0))
    ended_task(notifier_env, None)
    assert task(notifier_env).notifyPending
    reset_settings_cache()
    from reconciler_handler import lambda_handler as sweep

    report = sweep(load_event("reconciler_scheduled"), lambda_context)
    assert report["announced"] == 1
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = notifier_env.queues["NotificationQueue"].url
    bodies = [
        json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    ]
    assert bodies == [{"notifyTask": TASK_ID}]
    # The mark stays until the notifier has handled the message, but the task is not due at every sweep
    assert task(notifier_env).notifyPending
    assert sweep(load_event("reconciler_scheduled"), lambda_context)["announced"] == 0
    # Once the notifier has handled it, the task leaves the reconciler's index in the same write
    assert notify() == {"batchItemFailures": []}
    record = task(notifier_env)
    assert record.eventPublished and not record.notifyPending and record.nextCheckAt is None


def test_a_late_callback_that_ends_an_announced_task_anew_is_announced_and_delivered_again(
    notifier_env: Any, receiver: Receiver, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task's end can change after it was announced: the late callback of a submit never confirmed."""
    from datetime import timedelta

    from image_pipeline.adapters import tasks_table
    from image_pipeline.adapters.tasks_table import TasksTable

    monkeypatch.setattr(tasks_table, "NOTIFY_GRACE", timedelta(0))
    store = TasksTable(notifier_env.tasks_table)
    # Given a task ended submit_unconfirmed, its end published and its webhook delivered
    ended_unconfirmed(store, receiver)
    assert notify() == {"batchItemFailures": []}
    [first] = receiver.received
    assert Webhook(SECRET).verify(first.body, first.headers)["data"]["error"]["code"] == "submit_unconfirmed"
    assert not task(notifier_env).notifyPending
    # When its callback comes after all and ends it anew (its notify message not sent: notify_queue=None)
    late_callback(store)
    # Then the next sweep announces the new end, and the webhook tells it, as a new event
    swept_then_delivered(receiver, lambda_context, already=1)
    record = task(notifier_env)
    assert record.notification.state == "delivered" and record.eventPublished and not record.notifyPending
    second = receiver.received[1]
    assert Webhook(SECRET).verify(second.body, second.headers)["data"]["error"]["code"] == 501
    # A receiver drops a webhook-id it has seen (Standard Webhooks): the new end needs its own.
    assert second.headers["webhook-id"] != first.headers["webhook-id"]


def test_a_client_without_a_secret_parameter_has_none_but_an_ssm_fault_is_not_taken_for_that(
    aws_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing secret ends the webhook failed; a passing SSM fault must not: the message is retried."""
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
    from botocore.exceptions import ClientError
    from image_pipeline import wiring
    from image_pipeline.settings import notifier_settings, reset_settings_cache

    monkeypatch.setenv("WEBHOOK_SECRET", "")
    monkeypatch.setenv("WEBHOOK_SECRET_PARAMETER_PREFIX", "/imagegen/webhook-secrets")
    monkeypatch.setenv("NOTIFICATION_QUEUE_URL", aws_stack.queues["NotificationQueue"].url)
    reset_settings_cache()
    settings = notifier_settings()
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name="/imagegen/webhook-secrets/alice", Value=SECRET, Type="SecureString"
    )
    assert wiring.webhook_secrets(settings, "alice") == (SECRET,)
    assert wiring.webhook_secrets(settings, "bob") == ()  # no parameter: it cannot be signed

    def throttled(name: str, **_options: Any) -> str:  # what Powertools raises for an SSM throttle
        try:
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "GetParameter"
            )
        except ClientError as error:
            raise GetParameterError(str(error)) from None

    monkeypatch.setattr(parameters, "get_parameter", throttled)
    with pytest.raises(GetParameterError, match="ThrottlingException"):
        wiring.webhook_secrets(settings, "carol")


@pytest.mark.parametrize("succeeded", [False, True], ids=["ends-failed-anew", "reopened-then-stored"])
def test_an_end_that_changes_while_the_notifier_handles_it_is_still_announced(
    notifier_env: Any,
    receiver: Receiver,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
    succeeded: bool,
) -> None:
    """The notifier clears the outbox mark and records the event and the webhook as done: not for an
    end that is no longer the task's (its late callback reopened it meanwhile)."""
    from datetime import timedelta

    from image_pipeline.adapters import tasks_table
    from image_pipeline.adapters.tasks_table import TasksTable

    monkeypatch.setattr(tasks_table, "NOTIFY_GRACE", timedelta(0))
    store = TasksTable(notifier_env.tasks_table)
    # Given a task ended submit_unconfirmed (marked, its notify message queued)
    ended_unconfirmed(store, receiver)
    bus_events(notifier_env)  # subscribe before any event is put
    read_by_the_notifier = store.get_task(TASK_ID)
    reading = TasksTable.get_task

    # When its late callback reopens it just after the notifier read it
    def callback_then_answer(self: Any, task_id: str) -> Any:
        with monkeypatch.context() as unpatched:
            unpatched.setattr(TasksTable, "get_task", reading)
            late_callback(store, succeeded=succeeded)
        return read_by_the_notifier

    with monkeypatch.context() as patched:
        patched.setattr(TasksTable, "get_task", callback_then_answer)
        assert notify() == {"batchItemFailures": []}
    # Then the new end is still to be announced: its event not taken for published, its webhook
    # not taken for delivered
    record = task(notifier_env)
    assert not record.eventPublished
    assert record.notification.state == "pending"
    if succeeded:
        assert record.status == "downloading"
        downloaded(store)  # and it ends, stored
    else:
        assert record.status == "failed" and record.error.code == 501 and record.notifyPending
    # And the next sweep gets the new end out: on the bus and to the webhook
    swept_then_delivered(
        receiver,
        lambda_context,
        already=len(receiver.received),
        kind="task.stored" if succeeded else "task.failed",
    )
    ended = task(notifier_env)
    assert ended.eventPublished and ended.notification.state == "delivered" and not ended.notifyPending
    new_end = {"status": "stored", "error": None} if succeeded else {"status": "failed", "error": 501}
    published = [
        {"status": e["detail"]["status"], "error": (e["detail"]["error"] or {}).get("code")}
        for e in bus_events(notifier_env)
    ]
    assert new_end in published, published


# -- one client's endpoint cannot hold up the others (issue 20, item 4) ---------------------------


def test_giving_up_is_decided_by_the_posts_made_not_by_sqs_receives(
    notifier_env: Any, receiver: Receiver
) -> None:
    """A message can be received more often than it is attempted (handed back, a crash before the
    POST): only the attempts stored on the task count towards WEBHOOK_MAX_ATTEMPTS (3 here)."""
    ended_task(notifier_env, f"{receiver.origin}/down", failed=True)
    # Given a message received for the 3rd time, whose earlier receives never reached the receiver
    # When its first real attempt fails
    assert notify(receive_count=3)["batchItemFailures"] == [{"itemIdentifier": "notify-0"}]
    # Then it is not given up: one attempt of three is spent
    record = task(notifier_env)
    assert (record.notification.state, record.notification.attempts) == ("pending", 1)
    # And a message received for the first time still gives up at the third POST
    assert notify(receive_count=1)["batchItemFailures"] == [{"itemIdentifier": "notify-0"}]
    assert notify(receive_count=1) == {"batchItemFailures": []}
    record = task(notifier_env)
    assert (record.notification.state, record.notification.attempts) == ("failed", 3)
    assert len(receiver.received) == 3


def test_a_record_with_no_time_left_for_an_attempt_is_handed_back_without_costing_one(
    notifier_env: Any, receiver: Receiver
) -> None:
    ended_task(notifier_env, f"{receiver.origin}/ok")
    # Given an invocation with less time left than one attempt's timeout (10 s) needs
    failures = notify_batch([notify_record(TASK_ID, receive_count=4)], CountdownContext(8))
    # Then nothing is POSTed, no attempt is counted, and the record is not reported failed
    assert failures == {"batchItemFailures": []}
    assert receiver.received == []
    record = task(notifier_env)
    assert (record.notification.state, record.notification.attempts) == ("pending", 0)
    # but handed back: a fresh copy on the queue, its receive count started over
    [copy] = queued(notifier_env)
    assert json.loads(copy["Body"]) == {"notifyTask": TASK_ID}
    assert copy["Attributes"]["ApproximateReceiveCount"] == "1"
    # When the copy comes back to an invocation with time, it is delivered on its first attempt
    assert notify() == {"batchItemFailures": []}
    [delivery] = receiver.received
    assert Webhook(SECRET).verify(delivery.body, delivery.headers)["data"]["taskId"] == TASK_ID
    assert task(notifier_env).notification.attempts == 1


# Scaled down from the deployed 10 s webhook timeout in a 30 s function: 2 s in an 8 s invocation.
SCALED_WEBHOOK_TIMEOUT = 2.0
SCALED_INVOCATION = 16.0  # room for 10 records on a loaded machine; the hanging endpoint costs 2 s


def test_a_client_whose_endpoint_hangs_does_not_hold_up_other_clients(
    notifier_env: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The measurement: a batch of 10, half of it one client's whose receiver never answers."""
    from image_pipeline.settings import reset_settings_cache

    monkeypatch.setenv("WEBHOOK_TIMEOUT_SECONDS", str(SCALED_WEBHOOK_TIMEOUT))
    reset_settings_cache()
    hanging = [uuid.uuid4().hex for _ in range(5)]
    others = [uuid.uuid4().hex for _ in range(5)]
    for task_id in hanging:
        ended_task(notifier_env, f"{receiver.origin}/hang", task_id=task_id, owner="mallory")
    for number, task_id in enumerate(others):
        ended_task(notifier_env, f"{receiver.origin}/stamped", task_id=task_id, owner=f"client-{number}")
    # Given a batch that alternates the hanging client's records with other clients' records
    batch = [notify_record(task_id) for pair in zip(hanging, others, strict=True) for task_id in pair]
    context = CountdownContext(SCALED_INVOCATION)
    started = time.monotonic()
    # When the notifier works it
    failures = [failure["itemIdentifier"] for failure in notify_batch(batch, context)["batchItemFailures"]]
    # Then it answers within its invocation (a timed-out batch reports nothing: all 10 would return)
    assert context.get_remaining_time_in_millis() > 0
    # and every other client's webhook is delivered, once, verified, in this invocation, held up by
    # at most the one attempt that found the hanging endpoint
    delays = [at - started for at in receiver.notes["ok_at"]]
    assert len(delays) == len(others)
    # held up by one hanging attempt at most: a second would put a delay past two timeouts
    assert max(delays) < 2 * SCALED_WEBHOOK_TIMEOUT, delays
    for delivery in receiver.received:
        if delivery.path == "/stamped":
            Webhook(SECRET).verify(delivery.body, delivery.headers)
    assert all(task(notifier_env, task_id).notification.state == "delivered" for task_id in others)
    # The hanging endpoint was tried once: that attempt is counted and retried with backoff; the
    # client's other notifications were deferred without an attempt, as fresh (delayed) messages
    assert receiver.hits("/hang") == 1
    attempts = sorted(task(notifier_env, task_id).notification.attempts for task_id in hanging)
    assert attempts == [0, 0, 0, 0, 1]
    assert failures == [f"notify-{hanging[0]}"]
    assert delayed_count(notifier_env) == 4


def test_every_post_is_counted_before_it_is_made_and_only_while_the_webhook_is_pending(
    notifier_env: Any, receiver: Receiver
) -> None:
    """One atomic count per POST: two copies of a message count two, a POST whose answer is never
    recorded (a crash) still counts, and nothing counts once the webhook is settled."""
    from image_pipeline.adapters.tasks_table import TasksTable
    from image_pipeline.task_records import Notification

    ended_task(notifier_env, f"{receiver.origin}/ok")
    store = TasksTable(notifier_env.tasks_table)
    assert [store.begin_webhook_attempt(TASK_ID) for _ in range(2)] == [1, 2]
    assert task(notifier_env).notification.attempts == 2
    store.record_delivery(TASK_ID, Notification(state="delivered", attempts=2).to_dict())
    assert store.begin_webhook_attempt(TASK_ID) is None
    assert store.begin_webhook_attempt("0" * 32) is None  # no such task


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: FakeClock, **options: Any) -> Any:
    from image_pipeline.logic.notifications import ClientBreaker

    return ClientBreaker(slow_seconds=5, rest_seconds=10, max_rest_seconds=900, clock=clock, **options)


def test_a_client_rests_after_a_slow_failure_for_longer_each_time_and_one_attempt_probes() -> None:
    clock = FakeClock()
    rests = breaker(clock)
    # A client never slow is always admitted, and others are untouched by one client's rest
    assert rests.admit("mallory") == 0
    rests.settle("mallory", ok=False, seconds=10.0)  # timed out
    assert rests.admit("mallory") == 10 and rests.admit("alice") == 0
    # Once the rest is over one attempt is admitted; the client's others wait for it
    clock.now += 10
    assert rests.admit("mallory") == 0
    assert rests.admit("mallory") == 10
    rests.settle("mallory", ok=False, seconds=9.0)  # hung again: twice as long, then capped at 15 min
    assert rests.admit("mallory") == 20
    for _ in range(10):
        clock.now += 900
        assert rests.admit("mallory") == 0
        rests.settle("mallory", ok=False, seconds=10.0)
    assert rests.admit("mallory") == 900
    # An attempt that was not made after all lets the next one probe
    clock.now += 900
    assert rests.admit("mallory") == 0
    rests.settle("mallory", ok=False, seconds=None)
    assert rests.admit("mallory") == 0
    # A delivery ends the rest
    rests.settle("mallory", ok=True, seconds=9.9)
    assert rests.admit("mallory") == 0 and rests.admit("mallory") == 0


def test_quick_failures_never_rest_a_client_and_end_a_rest() -> None:
    clock = FakeClock()
    rests = breaker(clock)
    for _ in range(5):  # a 503 or a refused connection holds nobody up
        assert rests.admit("bob") == 0
        rests.settle("bob", ok=False, seconds=0.2)
    rests.settle("bob", ok=False, seconds=6.0)
    clock.now += 10
    assert rests.admit("bob") == 0
    rests.settle("bob", ok=False, seconds=0.1)  # it answers again, if with an error
    assert rests.admit("bob") == 0 and rests.admit("bob") == 0


def test_the_breaker_remembers_a_bounded_number_of_clients() -> None:
    clock = FakeClock()
    rests = breaker(clock, max_clients=3)
    for number in range(10):
        rests.settle(f"client-{number}", ok=False, seconds=10.0)
    assert len(rests._resting) <= 3
    assert rests.admit("client-9") == 10  # the latest is remembered


def test_a_resting_client_is_deferred_by_the_next_invocation_too_then_probed_once(
    notifier_env: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rest outlives the invocation (a warm environment): no POST to the client until it is over."""
    from image_pipeline.settings import reset_settings_cache

    monkeypatch.setenv("WEBHOOK_TIMEOUT_SECONDS", "1")
    reset_settings_cache()
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    for task_id in (first, second):
        ended_task(notifier_env, f"{receiver.origin}/hang", task_id=task_id, owner="mallory")
    # Given the client's endpoint hung on one attempt
    assert notify_batch([notify_record(first)])["batchItemFailures"] == [
        {"itemIdentifier": f"notify-{first}"}
    ]
    # When the next invocation gets another of its notifications, within the rest (1 s)
    assert notify_batch([notify_record(second)]) == {"batchItemFailures": []}
    # Then it is deferred: no POST, no attempt, a delayed copy on the queue
    assert receiver.hits("/hang") == 1
    assert task(notifier_env, second).notification.attempts == 0
    assert delayed_count(notifier_env) == 1
    # And after the rest one attempt goes through (which hangs again: counted, retried later)
    time.sleep(1.1)
    assert notify_batch([notify_record(second)])["batchItemFailures"] == [
        {"itemIdentifier": f"notify-{second}"}
    ]
    assert receiver.hits("/hang") == 2
    assert task(notifier_env, second).notification.attempts == 1


def test_the_longest_webhook_timeout_fits_whole_in_a_fresh_invocation() -> None:
    """Else no record would ever be attempted: each would be handed back, again and again."""
    from image_pipeline.settings import ConfigError, NotifierSettings
    from notifier_handler import MIN_START_SECONDS, RECORD_MARGIN_SECONDS

    from devstack.common.template import load_template, resources_of_type

    function_timeout = resources_of_type("AWS::Serverless::Function", load_template())["NotifierFunction"][
        "Timeout"
    ]
    required = {"TASKS_TABLE": "t", "IMAGES_BUCKET": "b", "NOTIFICATION_QUEUE_URL": "q"}
    longest = NotifierSettings.from_environ(
        {**required, "WEBHOOK_TIMEOUT_SECONDS": "20"}
    ).webhook_timeout_seconds
    with pytest.raises(ConfigError, match="WEBHOOK_TIMEOUT_SECONDS"):
        NotifierSettings.from_environ({**required, "WEBHOOK_TIMEOUT_SECONDS": "20.5"})
    # the task read and its event before the POST, the POST, the writes after it
    assert MIN_START_SECONDS + longest + RECORD_MARGIN_SECONDS <= function_timeout
