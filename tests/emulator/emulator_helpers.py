"""Helpers for the emulator tests: a scriptable callback receiver and thin API calls."""

from __future__ import annotations

import json
import ssl
import threading
import time
from typing import Any

import httpx

from devstack.emulator import EmulatorServer
from tests.loopback_server import Exchange, LoopbackServer

API_KEY = "test-key"
_TLS = ssl.create_default_context()  # built once: every test talks plain HTTP to 127.0.0.1
FAST = {
    "api_key": API_KEY,
    "generation_seconds": 0.2,
    "callback_retry_schedule": (0.1, 0.2, 0.3),
    "callback_timeout_seconds": 2.0,
    "record_info_rate_limit": 0,
}


class Receiver:
    """A callback endpoint on 127.0.0.1 (tests/loopback_server.py): answers the scripted statuses in
    order, then 200."""

    def __init__(self, statuses: tuple[int, ...] = (), delays: tuple[float, ...] = (), hold: float = 0.0):
        self.requests: list[dict[str, Any]] = []
        self._statuses = list(statuses)
        self._delays = list(delays)
        self._hold = hold
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self._server = LoopbackServer(self._answer, methods=("POST",))

    def _answer(self, exchange: Exchange) -> None:
        raw = exchange.read_body()
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            status = self._statuses.pop(0) if self._statuses else 200
            delay = self._delays.pop(0) if self._delays else self._hold
            self.requests.append(
                {"at": time.monotonic(), "headers": dict(exchange.headers), "body": json.loads(raw)}
            )
        time.sleep(delay)
        with self._lock:
            self.in_flight -= 1
        try:
            exchange.send_response(status)
            exchange.send_header("Content-Length", "2")
            exchange.end_headers()
            exchange.wfile.write(b"ok")
        except OSError:
            pass

    @property
    def url(self) -> str:
        return f"{self._server.origin}/hook?source=emulator"

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.requests)

    def stop(self) -> None:
        self._server.close()


def api(server: EmulatorServer, key: str | None = API_KEY) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.base_url, headers=headers, trust_env=False, timeout=10, verify=_TLS)


def generate(client: httpx.Client, **body: Any) -> dict[str, Any]:
    body = {"size": "1:1", "prompt": "a lighthouse at dusk", **body}
    return client.post("/api/v1/gpt4o-image/generate", json=body).json()


def submit(client: httpx.Client, **body: Any) -> str:
    reply = generate(client, **body)
    assert reply["code"] == 200, reply
    return reply["data"]["taskId"]


def record(client: httpx.Client, task_id: str) -> dict[str, Any]:
    return client.get("/api/v1/gpt4o-image/record-info", params={"taskId": task_id}).json()


def finished(server: EmulatorServer, task_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """Wait until the task left GENERATING; the admin view of it."""
    assert server.wait_for(lambda: server.inspect_task(task_id)["status"] != "GENERATING", timeout)
    return server.inspect_task(task_id)


FLUX_GENERATE = "/api/v1/flux/kontext/generate"
FLUX_RECORD = "/api/v1/flux/kontext/record-info"


def flux_generate(client: httpx.Client, **body: Any) -> dict[str, Any]:
    body = {"prompt": "a lighthouse at dusk", **body}
    return client.post(FLUX_GENERATE, json=body).json()


def flux_submit(client: httpx.Client, **body: Any) -> str:
    reply = flux_generate(client, **body)
    assert reply["code"] == 200, reply
    return reply["data"]["taskId"]


def flux_record(client: httpx.Client, task_id: str) -> dict[str, Any]:
    return client.get(FLUX_RECORD, params={"taskId": task_id}).json()
