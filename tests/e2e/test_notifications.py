"""Telling the client app: signed webhooks to a receiver on loopback (verified with the standardwebhooks
package), retries with one webhook-id, unsafe URLs refused at submit, events on the bus (read
through an EventBridge rule into an SQS queue in moto), and one client's hanging endpoint not holding
up another client's webhooks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from devstack.local.stack import LocalStack, StackConfig
from tests.e2e.conftest import wait_for, wait_for_status

pytestmark = pytest.mark.e2e
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# Two client apps (the local front door checks keys as API Gateway does): alice, and mallory whose
# endpoint hangs.
KEYS = "alice:key-of-alice,mallory:key-of-mallory"
WEBHOOK_TIMEOUT_SECONDS = 2


@dataclass
class Receiver:
    """A client app's webhook endpoint: records every delivery, answers as scripted per path."""

    origin: str = ""
    deliveries: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    scripts: dict[str, list[int]] = field(default_factory=dict)
    connections: int = 0
    arrived: dict[str, list[float]] = field(default_factory=dict)  # path: when (unix seconds)
    hanging: set[str] = field(default_factory=set)  # paths that take the request and never answer
    release: threading.Event = field(default_factory=threading.Event)

    def at(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        return [(headers, body) for where, headers, body in self.deliveries if where == path]


def serve(receiver: Receiver) -> tuple[ThreadingHTTPServer, threading.Thread]:
    class Handler(BaseHTTPRequestHandler):
        def setup(self) -> None:
            receiver.connections += 1
            super().setup()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            receiver.arrived.setdefault(self.path, []).append(time.time())
            receiver.deliveries.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            if self.path in receiver.hanging:
                receiver.release.wait()
                return
            script = receiver.scripts.get(self.path, [])
            status = script.pop(0) if script else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.origin = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    """The listed receiver, and a canary on loopback that nothing may ever reach."""
    listed, canary = Receiver(), Receiver()
    servers = [serve(listed), serve(canary)]
    yield listed, canary
    listed.release.set()
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def stack(receivers: tuple[Receiver, Receiver]) -> Iterator[LocalStack]:
    listed, _canary = receivers
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "LOCAL_API_PORT": "0",
            "EMULATOR_GENERATION_SECONDS": "0.3",
            "LOCAL_RECONCILE_INTERVAL_SECONDS": "1",
            "RECONCILE_AFTER_SECONDS": "30",
            "WEBHOOK_TRUSTED_ORIGINS": listed.origin,
            "LOCAL_WEBHOOK_SECRET": SECRET,
            "WEBHOOK_RETRY_BASE_SECONDS": "0",
            "WEBHOOK_TIMEOUT_SECONDS": str(WEBHOOK_TIMEOUT_SECONDS),
            "LOCAL_API_KEYS": KEYS,
        }.items():
            patch.setenv(name, value)
        for name in ("KIE_API_BASE_URL", "AWS_ENDPOINT_URL", "LOCAL_PUBLIC_BASE_URL"):
            patch.delenv(name, raising=False)
        with LocalStack(StackConfig.from_environment()) as running:
            yield running


@pytest.fixture
def api(stack: LocalStack) -> Iterator[httpx.Client]:
    """Client alice."""
    with httpx.Client(base_url=stack.api_url, timeout=30, headers={"x-api-key": "key-of-alice"}) as client:
        yield client


@pytest.fixture
def mallory(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, timeout=30, headers={"x-api-key": "key-of-mallory"}) as client:
        yield client


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


def test_a_client_whose_endpoint_hangs_does_not_hold_up_another_clients_webhooks(
    stack: LocalStack, api: httpx.Client, mallory: httpx.Client, receivers: tuple[Receiver, Receiver]
) -> None:
    listed, _ = receivers
    listed.hanging.add("/hang")
    # Given mallory's endpoint takes every webhook and never answers, and both clients' tasks end together
    hung = [
        mallory.post(
            "/tasks", json={"prompt": f"hung {n}", "size": "1:1", "webhookUrl": f"{listed.origin}/hang"}
        )
        for n in range(3)
    ]
    paths = [f"/alice/{n}" for n in range(3)]
    tasks = [
        api.post("/tasks", json={"prompt": f"alice {n}", "size": "1:1", "webhookUrl": listed.origin + path})
        for n, path in enumerate(paths)
    ]
    assert [answer.status_code for answer in hung + tasks] == [202] * 6
    # Then each of alice's webhooks arrives, verified, soon after its task ended
    delays = []
    for path, answer in zip(paths, tasks, strict=True):
        [(headers, body)] = wait_for(lambda path=path: listed.at(path), timeout=60)
        task = verified(headers, body)["data"]
        ended = datetime.fromisoformat(task["updatedAt"].replace("Z", "+00:00")).timestamp()
        delays.append(listed.arrived[path][0] - ended)
        assert task["taskId"] == answer.json()["taskId"]
    # at most one timeout of mallory's each (a worker meets the hanging endpoint once, then rests it)
    assert max(delays) < 3 * WEBHOOK_TIMEOUT_SECONDS + 2, delays
    # And mallory's notifications stay pending, their attempts counted (each one a POST that hung)
    for answer in hung:
        task_id = answer.json()["taskId"]
        notification = wait_for(
            lambda task_id=task_id: (
                mallory.get(f"/tasks/{task_id}").json()["notification"]["lastError"]
                and mallory.get(f"/tasks/{task_id}").json()["notification"]
            ),
            timeout=60,
        )
        assert notification["state"] == "pending" and notification["attempts"] >= 1
        assert notification["lastError"].startswith("deadline")
    # every POST was counted before it was made
    assert len(listed.at("/hang")) <= sum(
        mallory.get(f"/tasks/{answer.json()['taskId']}").json()["notification"]["attempts"] for answer in hung
    )
