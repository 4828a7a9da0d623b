"""Telling the client app: signed webhooks to a receiver on loopback (verified with the standardwebhooks
package), retries with one webhook-id, unsafe URLs refused at submit, and events on the bus (read
through an EventBridge rule into an SQS queue in moto)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from devstack.local.stack import LocalStack
from tests.e2e.conftest import running_stack, wait_for, wait_for_status
from tests.loopback_server import Exchange, LoopbackServer

pytestmark = pytest.mark.e2e
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass
class Receiver:
    """A client app's webhook endpoint (tests/loopback_server.py): records every delivery, answers as
    scripted per path, counts the connections it accepts."""

    deliveries: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    scripts: dict[str, list[int]] = field(default_factory=dict)
    server: LoopbackServer | None = None

    @property
    def origin(self) -> str:
        assert self.server is not None
        return self.server.origin

    @property
    def connections(self) -> int:
        assert self.server is not None
        return self.server.settled_connections()

    def at(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        return [(headers, body) for where, headers, body in self.deliveries if where == path]

    def answer(self, exchange: Exchange) -> None:
        body = exchange.read_body()
        self.deliveries.append((exchange.path, {k.lower(): v for k, v in exchange.headers.items()}, body))
        script = self.scripts.get(exchange.path, [])
        status = script.pop(0) if script else 200
        exchange.send_response(status)
        exchange.send_header("Content-Length", "2")
        exchange.end_headers()
        exchange.wfile.write(b"ok")


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    """The listed receiver, and a canary on loopback that nothing may ever reach."""
    listed, canary = Receiver(), Receiver()
    for receiver in (listed, canary):
        receiver.server = LoopbackServer(receiver.answer, methods=("POST",))
    yield listed, canary
    for receiver in (listed, canary):
        assert receiver.server is not None
        receiver.server.close()


@pytest.fixture(scope="module")
def stack(receivers: tuple[Receiver, Receiver]) -> Iterator[LocalStack]:
    listed, _canary = receivers
    environment = {
        "LOCAL_API_PORT": "0",
        "EMULATOR_GENERATION_SECONDS": "0.3",
        "LOCAL_RECONCILE_INTERVAL_SECONDS": "1",
        "RECONCILE_AFTER_SECONDS": "30",
        "WEBHOOK_TRUSTED_ORIGINS": listed.origin,
        "LOCAL_WEBHOOK_SECRET": SECRET,
        "WEBHOOK_RETRY_BASE_SECONDS": "0",
    }
    with running_stack(environment=environment, unset=["LOCAL_API_KEYS"]) as running:
        yield running


def verified(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """What a client app does with a delivery: verify it with the standardwebhooks package."""
    payload: dict[str, Any] = Webhook(SECRET).verify(body, headers)
    return payload


def test_a_stored_and_a_failed_task_each_produce_exactly_one_signed_event(
    stack: LocalStack, api: httpx.Client, receivers: tuple[Receiver, Receiver]
) -> None:
    listed, _ = receivers
    stored_id = api.post(
        "/tasks",
        json={"prompt": "a fox", "size": "1:1", "nVariants": 2, "webhookUrl": f"{listed.origin}/stored"},
    ).json()["taskId"]
    failed_id = api.post(
        "/tasks",
        json={"prompt": "nope [fault:fail=400]", "size": "1:1", "webhookUrl": f"{listed.origin}/failed"},
    ).json()["taskId"]
    for path, task_id, kind in (("/stored", stored_id, "task.stored"), ("/failed", failed_id, "task.failed")):
        wait_for(lambda path=path: listed.at(path), timeout=40)
        task = wait_for_status(api, task_id, {"stored", "failed"})
        wait_for(
            lambda task_id=task_id: (
                api.get(f"/tasks/{task_id}").json()["notification"]["state"] == "delivered"
            )
        )
        wait_for(lambda: stack.queued_messages() == 0)  # no notify message left to deliver again
        [(headers, body)] = listed.at(path)  # exactly one delivery of one logical event
        event = verified(headers, body)
        assert event["type"] == kind and event["data"]["taskId"] == task_id
        assert event["data"]["status"] == task["status"]
        assert headers["webhook-id"] == f"msg_{task_id}_{task['status']}"
    stored_event = verified(*listed.at("/stored")[0])
    assert len(stored_event["data"]["images"]) == 2
    for image in stored_event["data"]["images"]:  # the links in the event fetch the stored bytes
        assert {"key", "contentType", "bytes", "sha256", "url"} <= image.keys()
    assert api.get(f"/tasks/{stored_id}").json()["notification"] == {
        "state": "delivered",
        "attempts": 1,
        "lastError": None,
    }


def test_a_receiver_that_fails_twice_gets_the_same_webhook_id_three_times(
    stack: LocalStack, api: httpx.Client, receivers: tuple[Receiver, Receiver]
) -> None:
    listed, _ = receivers
    listed.scripts["/flaky"] = [500, 500, 200]
    task_id = api.post(
        "/tasks", json={"prompt": "a flaky owl", "size": "1:1", "webhookUrl": f"{listed.origin}/flaky"}
    ).json()["taskId"]
    wait_for(lambda: len(listed.at("/flaky")) >= 3, timeout=60)
    wait_for(lambda: api.get(f"/tasks/{task_id}").json()["notification"]["state"] == "delivered", timeout=30)
    wait_for(lambda: stack.queued_messages() == 0)  # no notify message left to deliver again
    deliveries = listed.at("/flaky")
    assert len(deliveries) == 3
    assert {headers["webhook-id"] for headers, _ in deliveries} == {f"msg_{task_id}_stored"}
    assert all(verified(headers, body)["data"]["taskId"] == task_id for headers, body in deliveries)
    assert api.get(f"/tasks/{task_id}").json()["notification"]["attempts"] == 3


def test_unsafe_webhook_urls_are_refused_at_submit_and_nothing_reaches_the_canary(
    stack: LocalStack, api: httpx.Client, receivers: tuple[Receiver, Receiver]
) -> None:
    _listed, canary = receivers
    canary_port = canary.origin.rsplit(":", 1)[1]
    unsafe = [
        f"{canary.origin}/hook",  # loopback, not listed
        f"http://localhost:{canary_port}/hook",
        f"https://localhost:{canary_port}/hook",
        f"https://2130706433:{canary_port}/hook",  # 127.0.0.1 in decimal
        f"https://[::1]:{canary_port}/hook",
        "https://169.254.169.254/latest/meta-data",  # these literals are checked, never sent traffic
        "https://10.0.0.1/hook",
        "https://192.168.1.1/hook",
        "https://100.64.0.1/hook",
        "https://[fe80::1]/hook",
        "http://example.com/hook",  # http on a public host
    ]
    for url in unsafe:
        answer = api.post("/tasks", json={"prompt": "a fox", "size": "1:1", "webhookUrl": url})
        assert answer.status_code == 422, (url, answer.text)
        assert answer.json()["errors"][0]["field"] == "webhookUrl", url
    assert canary.connections == 0


def test_events_reach_the_bus(stack: LocalStack, api: httpx.Client) -> None:
    assert stack.resources is not None
    bus = stack.resources.event_buses["EventBus"]
    events = boto3.client("events", endpoint_url=stack.endpoint_url, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=stack.endpoint_url, region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="task-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="stored-tasks", EventBusName=bus, EventPattern=json.dumps({"source": ["image-pipeline"]})
    )
    events.put_targets(Rule="stored-tasks", EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])
    task_id = api.post("/tasks", json={"prompt": "an event", "size": "1:1"}).json()["taskId"]
    wait_for_status(api, task_id, {"stored", "failed"})

    def received() -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        found = [json.loads(message["Body"]) for message in messages]
        return [event for event in found if event["detail"]["taskId"] == task_id]

    [event] = wait_for(received, timeout=30)
    assert event["source"] == "image-pipeline" and event["detail-type"] == "Task Stored"
    assert event["detail"]["status"] == "stored"
    assert all("url" not in image for image in event["detail"]["images"])
