"""Callback delivery: body shapes, retries on the schedule, signing, duplicates, concurrency, drops."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import socket
import threading
import time

import pytest
from emulator_helpers import api, finished, record, submit

from devstack.emulator import sign


def test_success_callback_has_the_4o_shape(emulator, receiver):
    # Given a receiver that answers 200
    hook = receiver()
    server = emulator()
    # When a task with two variants succeeds
    with api(server) as client:
        task_id = submit(client, nVariants=2, callBackUrl=hook.url)
        [delivered] = hook.wait_for(1)
        urls = record(client, task_id)["data"]["response"]["resultUrls"]
    # Then the body is the documented 4o success body, posted as JSON, unsigned without a key
    assert delivered["body"] == {
        "code": 200,
        "msg": "success",
        "data": {"taskId": task_id, "info": {"result_urls": urls}},
    }
    assert delivered["headers"]["Content-Type"] == "application/json"
    assert "X-Webhook-Signature" not in delivered["headers"]
    attempts = server.wait_for_deliveries(task_id, 1)
    assert [(a["attempt"], a["statusCode"], a["error"]) for a in attempts] == [(0, 200, None)]


def test_callbacks_are_signed_with_the_webhook_hmac_key(emulator, receiver):
    hook = receiver()
    server = emulator(hmac_key="whsec-test")
    with api(server) as client:
        task_id = submit(client, callBackUrl=hook.url)
        [delivered] = hook.wait_for(1)
    timestamp = delivered["headers"]["X-Webhook-Timestamp"]
    expected = base64.b64encode(
        hmac.new(b"whsec-test", f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    ).decode()
    assert delivered["headers"]["X-Webhook-Signature"] == expected == sign("whsec-test", task_id, timestamp)
    assert abs(int(timestamp) - time.time()) < 5


def test_failed_deliveries_are_retried_on_the_schedule(emulator, receiver):
    # Given a receiver that fails three times, then accepts
    hook = receiver(500, 502, 404)
    server = emulator(callback_retry_schedule=(0.2, 0.4, 0.6))
    with api(server) as client:
        task_id = submit(client, callBackUrl=hook.url)
        requests = hook.wait_for(4, timeout=5)
    # Then there were exactly four attempts, none earlier than the schedule says (how much later
    # depends on the machine's load, so only a loose upper bound: the order is what the schedule fixes)
    assert len(requests) == 4
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(requests)]
    for gap, planned in zip(gaps, (0.2, 0.4, 0.6), strict=True):
        assert planned - 0.02 <= gap <= planned + 3, gaps
    # The emulator records an attempt once its answer is in, a moment after the receiver saw it.
    attempts = server.wait_for_deliveries(task_id, 4, timeout=5)
    assert [(a["attempt"], a["statusCode"]) for a in attempts] == [(0, 500), (1, 502), (2, 404), (3, 200)]
    assert all(r["body"] == requests[0]["body"] for r in requests)


def test_delivery_stops_after_three_failed_retries(emulator, receiver):
    hook = receiver(*([503] * 10))
    server = emulator(callback_retry_schedule=(0.05, 0.05, 0.05))
    with api(server) as client:
        task_id = submit(client, callBackUrl=hook.url)
        hook.wait_for(4)
        assert server.wait_until_idle()  # no retry left to come
    assert len(hook.requests) == 4
    assert [a["statusCode"] for a in server.wait_for_deliveries(task_id, 4, timeout=5)] == [503] * 4


def test_timeouts_and_refused_connections_count_as_failures(emulator, receiver):
    # Given a receiver too slow for the timeout the first time
    hook = receiver(delays=(1.0,))
    with socket.socket() as probe:  # a port on which nobody listens
        probe.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}/cb"
    server = emulator(callback_timeout_seconds=0.3, callback_retry_schedule=(0.05, 0.05, 0.05))
    with api(server) as client:
        slow = submit(client, callBackUrl=hook.url)
        dead = submit(client, callBackUrl=dead_url)
        hook.wait_for(2)
        server.wait_for(lambda: len(server.deliveries(dead)) == 4, 5)
    slow_attempts = server.wait_for_deliveries(slow, 2)
    assert "Timeout" in slow_attempts[0]["error"] and slow_attempts[0]["statusCode"] is None
    assert slow_attempts[1]["statusCode"] == 200
    dead_attempts = server.deliveries(dead)
    assert len(dead_attempts) == 4 and all("ConnectError" in a["error"] for a in dead_attempts)


@pytest.mark.parametrize("code", [400, 451, 500])
def test_failure_callbacks_carry_the_code_and_null_info(emulator, receiver, code):
    hook = receiver()
    server = emulator()
    with api(server) as client:
        task_id = submit(client, prompt=f"x [fault:fail={code}]", callBackUrl=hook.url)
        [delivered] = hook.wait_for(1)
        data = record(client, task_id)["data"]
    body = delivered["body"]
    assert body["code"] == code and body["data"] == {"taskId": task_id, "info": None}
    assert body["msg"] == data["errorMessage"] and data["errorCode"] == code


def test_single_image_shape_for_success_and_501_failure(emulator, receiver):
    hook = receiver()
    server = emulator()
    with api(server) as client:
        ok = submit(client, prompt="x [fault:shape=flux]", callBackUrl=hook.url)
        failed = submit(client, prompt="x [fault:fail=501]", callBackUrl=hook.url)
        bodies = {r["body"]["data"]["taskId"]: r["body"] for r in hook.wait_for(2)}
        url = record(client, ok)["data"]["response"]["resultUrls"][0]
    assert bodies[ok] == {
        "code": 200,
        "msg": "BFL image generated successfully.",
        "data": {"taskId": ok, "info": {"originImageUrl": url, "resultImageUrl": url}},
    }
    assert bodies[failed]["code"] == 501
    assert bodies[failed]["data"]["info"] == {"originImageUrl": "", "resultImageUrl": ""}


def test_duplicate_delivers_the_same_callback_n_times_in_a_row(emulator, receiver):
    hook = receiver(hold=0.05)
    server = emulator()
    with api(server) as client:
        task_id = submit(client, prompt="x [fault:duplicate=3]", callBackUrl=hook.url)
        requests = hook.wait_for(3)
        assert server.wait_until_idle()  # no fourth copy to come
    assert len(hook.requests) == 3
    assert all(r["body"]["data"]["taskId"] == task_id for r in requests)
    assert hook.max_in_flight == 1  # one after the other
    assert [a["round"] for a in server.wait_for_deliveries(task_id, 3, timeout=5)] == [0, 1, 2]


def test_concurrent_sends_copies_at_the_same_moment(emulator, receiver):
    hook = receiver(hold=0.3)
    server = emulator()
    with api(server) as client:
        task_id = submit(client, prompt="x [fault:concurrent=3]", callBackUrl=hook.url)
        requests = hook.wait_for(3)
    assert len(requests) == 3 and hook.max_in_flight == 3
    assert max(r["at"] for r in requests) - min(r["at"] for r in requests) < 0.2
    assert sorted(a["lane"] for a in server.wait_for_deliveries(task_id, 3)) == [0, 1, 2]


def test_dropped_callback_is_never_delivered(emulator, receiver):
    hook = receiver()
    server = emulator()
    with api(server) as client:
        task_id = submit(client, prompt="x [fault:drop]", callBackUrl=hook.url)
        finished(server, task_id)
        assert server.wait_until_idle()  # the completion has delivered what it was going to
    assert hook.requests == []
    assert [a.get("dropped") for a in server.deliveries(task_id)] == [True]


@pytest.mark.parametrize(("key", "expected"), [("task_id", {"task_id"}), ("both", {"taskId", "task_id"})])
def test_signature_sample_task_id_conflict(emulator, receiver, key, expected):
    hook = receiver()
    server = emulator()
    with api(server) as client:
        task_id = submit(client, prompt=f"x [fault:task_key={key}]", callBackUrl=hook.url)
        [delivered] = hook.wait_for(1)
    data = delivered["body"]["data"]
    assert set(data) - {"info"} == expected and all(data[k] == task_id for k in expected)


def test_admin_redelivery_and_forced_completion(emulator, receiver):
    hook = receiver()
    server = emulator()
    with api(server) as client:
        # Given a task that would never finish by itself
        task_id = submit(client, prompt="x [fault:stall]", callBackUrl=hook.url)
        assert server.wait_until_idle()  # no completion is due
        assert record(client, task_id)["data"]["successFlag"] == 0
        # When the admin endpoint completes it, then asks for a re-delivery
        done = client.post(f"/admin/tasks/{task_id}/complete", json={}).json()
        hook.wait_for(1)
        again = client.post(f"/admin/tasks/{task_id}/redeliver").json()
        requests = hook.wait_for(2)
        assert client.post(f"/admin/tasks/{task_id}/complete").json()["completedNow"] is False
    # Then the same body arrives twice, the second recorded as a redelivery
    assert done["completedNow"] is True and done["status"] == "SUCCESS" and again["redelivered"] is True
    assert requests[0]["body"] == requests[1]["body"]
    assert [a["reason"] for a in server.wait_for_deliveries(task_id, 2, timeout=5)] == ["final", "redeliver"]


def test_admin_can_fail_a_task_now(emulator, receiver):
    hook = receiver()
    server = emulator(generation_seconds=30)
    with api(server) as client:
        task_id = submit(client, callBackUrl=hook.url)
        reply = client.post(
            f"/admin/tasks/{task_id}/complete", json={"fail": 500, "message": "failed to get user token"}
        )
        [delivered] = hook.wait_for(1)
    assert reply.json()["errorCode"] == 500
    assert delivered["body"] == {
        "code": 500,
        "msg": "failed to get user token",
        "data": {"taskId": task_id, "info": None},
    }


def test_callbacks_to_non_loopback_hosts_are_blocked_by_default(emulator):
    server = emulator()
    with api(server) as client:
        task_id = submit(client, callBackUrl="https://hooks.example.com/cb")
    [attempt] = server.wait_for_deliveries(task_id, 1)
    assert attempt["statusCode"] is None and attempt["error"].startswith("blocked")
    assert server.wait_until_idle()
    assert len(server.deliveries(task_id)) == 1  # not retried


def test_the_delivery_log_is_in_the_order_the_attempts_started(emulator):
    """An attempt is recorded when it is answered: a quick redelivery can be answered before the slower
    first attempt (seen once in CI as ['redeliver', 'final'])."""
    from devstack.emulator.model import MAX_DELIVERY_RECORDS

    server = emulator()
    with api(server) as client:
        task_id = submit(client, prompt="x [fault:stall]")
    server.core._record_delivery(task_id, {"reason": "redeliver", "at": 20.0})
    server.core._record_delivery(task_id, {"reason": "final", "at": 10.0})
    assert [entry["reason"] for entry in server.deliveries(task_id)] == ["final", "redeliver"]
    for at in range(MAX_DELIVERY_RECORDS):  # bounded: the oldest attempts go first
        server.core._record_delivery(task_id, {"reason": "retry", "at": 30.0 + at})
    kept = server.deliveries(task_id)
    assert len(kept) == MAX_DELIVERY_RECORDS and kept[0]["at"] == 30.0  # "final" and "redeliver" went


def test_the_scheduler_is_idle_once_what_is_due_and_what_that_schedules_has_run():
    from devstack.emulator.callbacks import Scheduler

    scheduler = Scheduler(workers=2)
    scheduler.start()
    ran: list[str] = []

    def retry() -> None:
        time.sleep(0.1)
        ran.append("retry")

    def attempt() -> None:
        ran.append("attempt")
        scheduler.call_later(0.2, retry)  # a follow-up, queued before this job ends

    running = threading.Event()

    def slow() -> None:
        running.set()
        time.sleep(0.3)
        ran.append("slow")

    try:
        scheduler.call_later(0.2, attempt)
        assert scheduler.wait_idle(timeout=5) and ran == ["attempt", "retry"]
        scheduler.call_later(0, slow)
        assert running.wait(timeout=5)
        assert scheduler.wait_idle(timeout=5) and ran[-1] == "slow"  # nothing due, one job running
        scheduler.call_later(30, lambda: None)
        assert not scheduler.wait_idle(timeout=0.1)  # something is still due
    finally:
        scheduler.stop()
