"""A submit whose generate call gets no definite answer (the upstream made the task but its reply timed
out) is never lost, never unowned and never paid twice: the task id is ours, minted and recorded before
the upstream is called. End to end over HTTP, two client apps with their own keys."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from devstack.local.stack import LocalStack
from tests.e2e.conftest import running_stack, wait_for, wait_for_status
from tests.e2e.test_notifications import Receiver
from tests.loopback_server import LoopbackServer

pytestmark = pytest.mark.e2e
KEYS = "alice:key-of-alice,bob:key-of-bob"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
UNCONFIRMED_AFTER = 6  # seconds: SUBMIT_UNCONFIRMED_AFTER_SECONDS, compressed


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    listening = Receiver()
    listening.server = LoopbackServer(listening.answer, methods=("POST",))
    yield listening
    listening.server.close()


@pytest.fixture(scope="module")
def stack(receiver: Receiver) -> Iterator[LocalStack]:
    environment = {
        "LOCAL_API_KEYS": KEYS,
        "LOCAL_API_PORT": "0",
        "EMULATOR_GENERATION_SECONDS": "0.3",
        "EMULATOR_CALLBACK_RETRY_SCHEDULE": "0.5,1,2",
        "KIE_API_TIMEOUT_SECONDS": "1",  # generate's reply comes after 2 s: it times out
        "LOCAL_RECONCILE_INTERVAL_SECONDS": "1",
        "RECONCILE_AFTER_SECONDS": "30",
        "SUBMIT_UNCONFIRMED_AFTER_SECONDS": str(UNCONFIRMED_AFTER),
        "WEBHOOK_TRUSTED_ORIGINS": receiver.origin,
        "LOCAL_WEBHOOK_SECRET": SECRET,
        "WEBHOOK_RETRY_BASE_SECONDS": "0",
    }
    with running_stack(environment=environment) as running:  # the receiver's origin is known only now
        yield running


def client(stack: LocalStack, key: str) -> httpx.Client:
    return httpx.Client(base_url=stack.api_url, timeout=30, headers={"x-api-key": key})


def generations(stack: LocalStack, marker: str) -> list[dict[str, Any]]:
    """The upstream tasks the emulator created for prompts containing `marker` (each one paid for)."""
    found = []
    for upstream_id in stack.emulator.core.task_ids():
        info = stack.emulator.inspect_task(upstream_id)
        if info and marker in (info["request"].get("prompt") or ""):
            found.append(info)
    return found


def webhook_events(receiver: Receiver, path: str) -> list[dict[str, Any]]:
    return [Webhook(SECRET).verify(body, headers) for headers, body in receiver.at(path)]


def test_a_timed_out_submit_is_the_submitters_task_and_ends_stored_and_notified(
    stack: LocalStack, receiver: Receiver
) -> None:
    with client(stack, "key-of-alice") as alice, client(stack, "key-of-bob") as bob:
        # Given a generate call whose reply comes after our timeout (the upstream made the task)
        answer = alice.post(
            "/tasks",
            json={
                "prompt": "late reply fox [fault:submit_delay=2]",
                "size": "1:1",
                "webhookUrl": f"{receiver.origin}/late-fox",
            },
        )
        # Then the client gets our id at once, with the task still being submitted
        assert answer.status_code == 202, answer.text
        submitted = answer.json()
        task_id = submitted["taskId"]
        assert submitted["status"] == "submitting"
        # And the task is alice's: hers to read (and it ends stored), in her list, not bob's to see
        stored = wait_for_status(alice, task_id, {"stored", "failed"}, timeout=40)
        assert stored["status"] == "stored", stored
        upstream = generations(stack, "late reply fox")
        assert len(upstream) == 1
        assert stored["upstreamTaskId"] == upstream[0]["taskId"]
        assert {image["sha256"] for image in stored["images"]} == {
            image["sha256"] for image in upstream[0]["images"]
        }
        assert task_id in [task["taskId"] for task in alice.get("/tasks").json()["tasks"]]
        assert bob.get(f"/tasks/{task_id}").status_code == 404
        assert task_id not in [task["taskId"] for task in bob.get("/tasks").json()["tasks"]]
        # And her webhook tells her, under our id
        events = wait_for(lambda: webhook_events(receiver, "/late-fox"), timeout=30)
        assert [(event["type"], event["data"]["taskId"]) for event in events] == [("task.stored", task_id)]


def test_a_retry_with_the_same_idempotency_key_returns_the_same_task_and_never_pays_twice(
    stack: LocalStack,
) -> None:
    body = {"prompt": "retried owl [fault:submit_delay=2]", "size": "1:1"}
    headers = {"Idempotency-Key": "owl-1"}
    with client(stack, "key-of-alice") as alice:
        # Given a first request still waiting for generate's reply
        first: dict[str, httpx.Response] = {}
        sending = threading.Thread(
            target=lambda: first.update(answer=alice.post("/tasks", json=body, headers=headers))
        )
        sending.start()
        wait_for(lambda: generations(stack, "retried owl"), timeout=10, interval=0.05)
        # When the client retries meanwhile, and again after the first one timed out
        during = alice.post("/tasks", json=body, headers=headers)
        sending.join(timeout=30)
        after_timeout = alice.post("/tasks", json=body, headers=headers)
        # Then every answer is the same task, as it stands
        task_id = first["answer"].json()["taskId"]
        assert (first["answer"].status_code, first["answer"].json()["status"]) == (202, "submitting")
        # (as it stands: on a loaded machine the callback may have come before the retry is answered)
        assert during.status_code == 202 and during.json()["taskId"] == task_id, during.text
        assert during.json()["status"] in ("submitting", "submitted", "downloading", "stored"), during.text
        assert after_timeout.status_code == 202 and after_timeout.json()["taskId"] == task_id
        stored = wait_for_status(alice, task_id, {"stored", "failed"}, timeout=40)
        assert stored["status"] == "stored", stored
        once_more = alice.post("/tasks", json=body, headers=headers)
        assert (once_more.status_code, once_more.json()) == (202, {"taskId": task_id, "status": "stored"})
        # And the upstream generated it exactly once
        assert len(generations(stack, "retried owl")) == 1
        # The same key with another body is refused, and generates nothing
        other = alice.post("/tasks", json={**body, "prompt": "retried owl, but blue"}, headers=headers)
        assert other.status_code == 422 and other.json()["errors"][0]["field"] == "Idempotency-Key"
        assert len(generations(stack, "retried owl")) == 1


def test_the_same_key_from_two_clients_is_two_tasks(stack: LocalStack) -> None:
    body = {"prompt": "shared key hare", "size": "1:1"}
    with client(stack, "key-of-alice") as alice, client(stack, "key-of-bob") as bob:
        alices = alice.post("/tasks", json=body, headers={"Idempotency-Key": "k"}).json()["taskId"]
        bobs = bob.post("/tasks", json=body, headers={"Idempotency-Key": "k"}).json()["taskId"]
        assert alices != bobs
        assert bob.get(f"/tasks/{alices}").status_code == 404


def test_a_refused_submit_leaves_no_task_and_its_key_can_be_used_again(stack: LocalStack) -> None:
    with client(stack, "key-of-alice") as alice:
        before = {task["taskId"] for task in alice.get("/tasks", params={"limit": 100}).json()["tasks"]}
        body = {"prompt": "no credit [fault:submit=402]", "size": "1:1"}
        refused = alice.post("/tasks", json=body, headers={"Idempotency-Key": "r"})
        assert refused.status_code == 402, refused.text
        assert "taskId" not in refused.json()
        after = {task["taskId"] for task in alice.get("/tasks", params={"limit": 100}).json()["tasks"]}
        assert after == before
        # the key is free again: a retry after the refusal is a new attempt (it is refused again here)
        again = alice.post("/tasks", json=body, headers={"Idempotency-Key": "r"})
        assert again.status_code == 402
        assert len(generations(stack, "no credit")) == 0


def test_a_task_never_confirmed_ends_failed_and_a_late_callback_still_stores_it(
    stack: LocalStack, receiver: Receiver
) -> None:
    with client(stack, "key-of-alice") as alice:
        # Given a task whose generate reply never came and whose callback does not come either
        answer = alice.post(
            "/tasks",
            json={
                "prompt": "silent heron [fault:submit_delay=2,stall]",
                "size": "1:1",
                "webhookUrl": f"{receiver.origin}/heron",
            },
        )
        task_id = answer.json()["taskId"]
        assert answer.json()["status"] == "submitting"
        # When SUBMIT_UNCONFIRMED_AFTER_SECONDS passes, it ends failed, saying it may have been charged
        failed = wait_for_status(alice, task_id, {"failed", "stored"}, timeout=40)
        assert failed["status"] == "failed" and failed["error"]["code"] == "submit_unconfirmed", failed
        assert "charged" in failed["error"]["message"]
        events = wait_for(lambda: webhook_events(receiver, "/heron"), timeout=30)
        assert [event["type"] for event in events] == ["task.failed"]
        # And when the upstream's callback comes after all, the task moves on and the client is told again
        (upstream,) = generations(stack, "silent heron")
        assert stack.emulator.complete_task(upstream["taskId"])
        stored = wait_for_status(alice, task_id, {"stored"}, timeout=40)
        assert stored["upstreamTaskId"] == upstream["taskId"] and stored["error"] is None
        events = wait_for(
            lambda: len(webhook_events(receiver, "/heron")) >= 2 and webhook_events(receiver, "/heron"),
            timeout=30,
        )
        assert [event["type"] for event in events] == ["task.failed", "task.stored"]
