"""Fixtures: a receiver on 127.0.0.1 (a trusted origin), and the canary that nothing may reach."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.webhooks.receiver import (
    Receiver,
    endless_answer,
    huge_declared_answer,
    stall_before_answer,
    status,
    trickle_after_200,
)


@pytest.fixture(scope="module")
def canary() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _no_canary_traffic(canary: Receiver) -> Iterator[None]:
    before = canary.settled_connections()
    yield
    assert canary.settled_connections() == before, "a connection reached the canary on 127.0.0.1"
    assert canary.received == []


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(
        {
            "/ok": status(200),
            "/accepted": status(202),
            "/no-content": status(204),
            "/fail": status(500),
            "/gone": status(410),
            "/redirect": status(302, Location="/ok"),
            "/slow": stall_before_answer,
            "/endless": endless_answer,
            "/huge": huge_declared_answer,
            "/trickle": trickle_after_200,
        }
    )
    yield server
    server.close()
