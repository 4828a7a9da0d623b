"""The notifier, driven with SQS events under moto: the event goes on the bus once, the webhook is
POSTed signed (verified with the standardwebhooks package) and retried with the same webhook-id until
it is answered or its attempts run out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import load_event
from tests.task_fixtures import record_task, upstream_id_of
from tests.unit.webhooks.receiver import Receiver, status

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TASK_ID = "5f0c2a4b9e8d7c6b5a4f3e2d1c0b9a88"
UPSTREAM_ID = upstream_id_of(TASK_ID)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver({"/ok": status(200), "/down": status(503)})
    yield server
    server.close()


@pytest.fixture
def notifier_env(aws_stack: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Any:
    from image_pipeline.settings import reset_settings_cache

    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("WEBHOOK_TRUSTED_ORIGINS", receiver.origin)
    monkeypatch.setenv("WEBHOOK_MAX_ATTEMPTS", "3")
    reset_settings_cache()
    return aws_stack


def ended_task(resources: Any, webhook_url: str | None, *, failed: bool = False) -> None:
    from image_pipeline.adapters.tasks_table import TasksTable
    from image_pipeline.task_models import StoredImage, TaskError, utc_now

    store = TasksTable(resources.tasks_table)
    record_task(store, TASK_ID, owner="alice", webhook_url=webhook_url)
    if failed:
        assert store.fail_from_callback(
            TASK_ID, UPSTREAM_ID, TaskError(code=400, message="refused"), utc_now()
        )
    else:
        url = "https://tempfile.aiquickdraw.com/s/a.png"
        assert store.start_downloading(TASK_ID, UPSTREAM_ID, [url], utc_now(), utc_now())
        image = StoredImage(
            index=0, key=f"images/{TASK_ID}/0.png", contentType="image/png", bytes=1, sha256="0" * 64
        )
        store.add_image(TASK_ID, image, utc_now())
        assert store.mark_stored(TASK_ID, utc_now())


def notify(receive_count: int = 1) -> dict[str, Any]:
    from notifier_handler import lambda_handler

    event = load_event("sqs_download_batch")
    record = {**event["Records"][0], "messageId": "notify-0", "body": json.dumps({"notifyTask": TASK_ID})}
    record["attributes"] = {**record["attributes"], "ApproximateReceiveCount": str(receive_count)}
    context = type(
        "Context",
        (),
        {
            "get_remaining_time_in_millis": staticmethod(lambda: 30_000),
            "function_name": "n",
            "memory_limit_in_mb": 256,
            "invoked_function_arn": "arn",
            "aws_request_id": "r",
        },
    )()
    result: dict[str, Any] = lambda_handler({"Records": [record]}, context)
    return result


def task(resources: Any) -> Any:
    from image_pipeline.adapters.tasks_table import TasksTable

    return TasksTable(resources.tasks_table).get_task(TASK_ID)


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
    from image_pipeline.task_models import SUBMIT_UNCONFIRMED, TaskError, utc_now

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
    from image_pipeline.task_models import StoredImage, utc_now

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
    # When its callback comes after all and ends it anew (its notify message not sent: notices=None)
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
