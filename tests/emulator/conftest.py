"""Fixtures: an emulator per test (fast timings) and scriptable callback receivers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from emulator_helpers import FAST, Receiver

from devstack.emulator import EmulatorConfig, EmulatorServer


@pytest.fixture
def emulator() -> Iterator[Callable[..., EmulatorServer]]:
    """``emulator(**config_overrides)`` starts an EmulatorServer on a free port, stopped after the test."""
    servers: list[EmulatorServer] = []

    def start(**overrides: Any) -> EmulatorServer:
        server = EmulatorServer(EmulatorConfig(**{**FAST, **overrides})).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    receivers: list[Receiver] = []

    def start(*statuses: int, delays: tuple[float, ...] = (), hold: float = 0.0) -> Receiver:
        r = Receiver(statuses, delays, hold)
        receivers.append(r)
        return r

    yield start
    for r in receivers:
        r.stop()
