"""Fixtures: the canary (no connection may ever reach it), the local server, and FakeNet."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.unit.safe_fetch.peers import FakeNet, LocalServer, fake_resolver, standard_routes


@pytest.fixture(scope="module")
def canary() -> Iterator[LocalServer]:
    server = LocalServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def srv() -> Iterator[LocalServer]:
    server = LocalServer(standard_routes())
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _no_canary_traffic(canary: LocalServer) -> Iterator[None]:
    before = canary.settled_connections()
    yield
    assert canary.settled_connections() == before, "a connection reached the canary on 127.0.0.1"
    assert canary.requests == []


@pytest.fixture
def net(canary: LocalServer) -> Iterator[FakeNet]:
    fake = FakeNet(fake_resolver, internal_ports={443: canary.port})
    yield fake
    fake.close()


@pytest.fixture
def net_client(net: FakeNet) -> Iterator[httpx.Client]:
    with httpx.Client(transport=net, trust_env=False) as client:
        yield client
