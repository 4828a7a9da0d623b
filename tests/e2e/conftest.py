"""The local stack as a fixture: moto, the emulator, the front door and the poller, over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from devstack.local.stack import LocalStack, StackConfig


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    config = StackConfig(
        api_port=0,
        generation_seconds=0.5,
        callback_retry_schedule=(1.0, 2.0, 3.0),
        workers=4,
        reconcile_interval_seconds=0,  # a dropped callback must stay dropped here; see test_recovery.py
    )
    with LocalStack(config) as running:
        yield running


@pytest.fixture
def api(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        yield client


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def wait_until_settled(stack: LocalStack, timeout: float = 60.0) -> None:
    """Wait until the pipeline has done all it would still do by itself: the upstream has no callback
    left to (re)deliver and every queue is empty (each message handled and deleted). Then a count of
    what happened is final: nothing wrong can come after it."""
    if stack.emulator is not None:
        assert stack.emulator.wait_until_idle(timeout), "the emulator still has callbacks due"
    wait_for(lambda: stack.queued_messages() == 0, timeout)


def wait_for_status(
    api: httpx.Client, task_id: str, statuses: set[str], timeout: float = 40.0
) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        task: dict[str, Any] = api.get(f"/tasks/{task_id}").json()
        return task if task.get("status") in statuses else None

    result: dict[str, Any] = wait_for(done, timeout)
    return result
