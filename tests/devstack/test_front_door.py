"""The local front door answers what API Gateway has no route for as API Gateway does: 403
{"message": "Missing Authentication Token"} in JSON, whatever the method (TRACE and made-up ones too),
and keeps the connection; routed requests still reach their function."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from devstack.local.front_door import FrontDoor

MISSING_TOKEN = {"message": "Missing Authentication Token"}


class FakePool:
    """Stands in for LambdaPool: records each event and answers 200 at once."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def submit(self, function: str, event: dict[str, Any]) -> Future[dict[str, Any]]:
        self.events.append((function, event))
        future: Future[dict[str, Any]] = Future()
        future.set_result({"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{}"})
        return future


@pytest.fixture(scope="module")
def pool() -> FakePool:
    return FakePool()


@pytest.fixture(scope="module")
def door(pool: FakePool) -> Iterator[FrontDoor]:
    front_door = FrontDoor(pool, port=0, access_log=False)  # type: ignore[arg-type]
    front_door.start()
    try:
        yield front_door
    finally:
        front_door.stop()


@pytest.fixture
def api(door: FrontDoor) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=door.base_url, timeout=10) as client:
        yield client


def unrouted_standard_method(door: FrontDoor, path: str) -> str:
    routed = {compiled.route.method for compiled in door.routes if compiled.route.path == path}
    return next(m for m in ("PUT", "PATCH", "DELETE", "POST", "GET") if m not in routed)


def assert_missing_token(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == MISSING_TOKEN


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "BREW"])
def test_a_method_api_gateway_does_not_route_is_403_json(api: httpx.Client, method: str) -> None:
    assert_missing_token(api.request(method, "/tasks"))
    assert_missing_token(api.request(method, "/tasks", content=b'{"prompt": "x"}'))


def test_an_unrouted_method_on_a_routed_path_is_403_json(door: FrontDoor, api: httpx.Client) -> None:
    assert_missing_token(api.request(unrouted_standard_method(door, "/tasks"), "/tasks"))


@pytest.mark.parametrize("path", ["/", "/nowhere", "/tasks/a/b", "/TASKS", "/tasks/"])
def test_a_path_api_gateway_does_not_route_is_403_json(api: httpx.Client, path: str) -> None:
    assert_missing_token(api.get(path))


def test_the_connection_is_kept_after_a_403(door: FrontDoor, pool: FakePool) -> None:
    address = urlsplit(door.base_url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    try:
        connection.request("TRACE", "/tasks")
        response = connection.getresponse()
        assert (response.status, json.loads(response.read())) == (403, MISSING_TOKEN)
        socket = connection.sock
        before = len(pool.events)
        connection.request("GET", "/tasks")
        assert connection.getresponse().status == 200
        assert connection.sock is socket and socket is not None  # the same connection, now routed
    finally:
        connection.close()
    function, event = pool.events[before]
    assert (function, event["httpMethod"], event["path"]) == ("ApiFunction", "GET", "/tasks")


def test_a_front_door_never_started_stops_at_once() -> None:
    """LocalStack binds the front door before it starts anything else, and stops it if that fails."""
    front_door = FrontDoor(port=0, access_log=False)
    errors: list[BaseException] = []

    def stop() -> None:
        try:
            front_door.stop()
        except BaseException as error:
            errors.append(error)

    stopping = threading.Thread(target=stop, daemon=True)
    stopping.start()
    stopping.join(timeout=5)
    assert not stopping.is_alive(), "stop() waited for a serve_forever that never ran"
    assert errors == []
    with socket.create_server(("127.0.0.1", urlsplit(front_door.base_url).port or 0)):
        pass  # its port is free again
