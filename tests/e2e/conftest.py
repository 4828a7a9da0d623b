"""The local stack as a fixture: moto, the emulator, the front door and the poller, over real HTTP.

Every e2e module starts its stack through `running_stack` (or `stack_fixture`, its module-scoped
fixture): from a StackConfig, or from shell variables as `make local` reads them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from devstack.local.stack import LocalStack, StackConfig

# Variables that would point a stack started from the shell at another upstream, AWS or public URL.
POINTS_ELSEWHERE = ("KIE_API_BASE_URL", "AWS_ENDPOINT_URL", "LOCAL_PUBLIC_BASE_URL")


@contextmanager
def running_stack(
    config: StackConfig | None = None,
    *,
    environment: Mapping[str, str] | None = None,
    unset: Iterable[str] = (),
) -> Iterator[LocalStack]:
    """The local stack, started for the block and stopped after it.

    With `config`, exactly that configuration (the shell's variables are not read). With `environment`,
    as `make local` starts it: these variables set over the shell's, POINTS_ELSEWHERE and `unset`
    removed, then StackConfig.from_environment() (the shell's own setting variables still apply)."""
    if config is not None:
        with LocalStack(config) as running:
            yield running
        return
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (environment or {}).items():
            patch.setenv(name, value)
        for name in (*POINTS_ELSEWHERE, *unset):
            patch.delenv(name, raising=False)
        with LocalStack(StackConfig.from_environment()) as running:
            yield running


def stack_fixture(
    config: StackConfig | None = None,
    *,
    environment: Mapping[str, str] | None = None,
    unset: Iterable[str] = (),
) -> Any:
    """A module-scoped fixture of a running stack (see running_stack), named by the module attribute
    it is assigned to: `stack = stack_fixture(StackConfig(...))`."""

    @pytest.fixture(scope="module")
    def fixture() -> Iterator[LocalStack]:
        with running_stack(config, environment=environment, unset=unset) as running:
            yield running

    return fixture


stack = stack_fixture(
    StackConfig(
        api_port=0,
        generation_seconds=0.5,
        callback_retry_schedule=(1.0, 2.0, 3.0),
        workers=4,
        reconcile_interval_seconds=0,  # a dropped callback must stay dropped here; see test_recovery.py
        # One client submits a module's tests back to back: the whole generate window is its own
        # (the share between clients: tests/unit/test_client_safety.py, tests/e2e/test_clients.py).
        extra_environment={"CLIENT_GENERATE_SHARE_PERCENT": "100"},
    )
)


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
