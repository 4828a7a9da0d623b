"""An in-memory emulation of the bundle's API (and of S3's presigned links) for the imagegen tests.

``FakeApi.handler`` is plugged into :class:`httpx.MockTransport`; tests script what POST answers
and which states a task goes through on successive GETs, then drive ``imagegen.cli.main(argv)``.
(A uniquely named module rather than conftest.py, so importing it never picks another suite's conftest.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

API_URL = "https://abc.execute-api.us-east-1.amazonaws.com/Prod"
API_KEY = "test-key"
STORAGE_HOST = "bucket.s3.test"

PNG = b"\x89PNG\r\n\x1a\n" + b"fake png pixels " * 64
JPEG = b"\xff\xd8\xff\xe0" + b"fake jpeg pixels " * 64

Scripted = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


@dataclass
class FakeApi:
    """The contract of POST /tasks and GET /tasks/{id}, plus presigned downloads."""

    api_key: str | None = API_KEY
    task_id: str = "task-123"
    # answers for the next POSTs (then the normal 202); an Exception is raised as a network error
    post_script: list[Scripted] = field(default_factory=list)
    # answers for the next GETs of a task (then the last state repeats forever)
    get_script: list[Scripted] = field(default_factory=list)
    tasks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    polls: int = 0

    # -- scripting helpers

    def add_task(self, *states: dict[str, Any], task_id: str | None = None) -> str:
        self.tasks[task_id or self.task_id] = list(states)
        return task_id or self.task_id

    def image(self, index: int, data: bytes, content_type: str, *, sha: str | None = None) -> dict[str, Any]:
        key = f"images/{self.task_id}/{index}"
        url = f"https://{STORAGE_HOST}/{key}?X-Amz-Signature=secret{index}&X-Amz-Expires=900"
        self.blobs[f"/{key}"] = data
        return {
            "index": index,
            "key": key,
            "contentType": content_type,
            "bytes": len(data),
            "sha256": sha or sha256(data),
            "url": url,
        }

    # -- what the tests inspect

    def posts(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "POST"]

    def gets(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "GET" and r.url.host != STORAGE_HOST]

    def downloads(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.host == STORAGE_HOST]

    # -- the transport

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == STORAGE_HOST:
            blob = self.blobs.get(request.url.path)
            if blob is None:
                return httpx.Response(403, text="<Error><Code>AccessDenied</Code></Error>")
            return httpx.Response(200, content=blob, headers={"Content-Type": "image/png"})

        assert request.url.host == httpx.URL(API_URL).host, request.url
        path = request.url.path
        assert path.startswith("/Prod/tasks"), path
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            return json_response(403, {"message": "Forbidden"})

        if request.method == "POST" and path == "/Prod/tasks":
            if self.post_script:
                return self._play(self.post_script.pop(0), request)
            body = json.loads(request.content)
            assert isinstance(body.get("prompt"), str)
            return json_response(202, {"taskId": self.task_id, "status": "submitted"})

        if request.method == "GET" and path.startswith("/Prod/tasks/"):
            self.polls += 1
            if self.get_script:
                return self._play(self.get_script.pop(0), request)
            task_id = path.removeprefix("/Prod/tasks/")
            states = self.tasks.get(task_id)
            if not states:
                return json_response(404, {"message": f"task {task_id} not found"})
            state = states.pop(0) if len(states) > 1 else states[0]
            return json_response(200, task_body(task_id, **state))

        return json_response(404, {"message": "Not Found"})

    @staticmethod
    def _play(item: Scripted, request: httpx.Request) -> httpx.Response:
        if isinstance(item, Exception):
            raise item
        if isinstance(item, httpx.Response):
            return item
        return item(request)


def task_body(
    task_id: str,
    status: str,
    progress: float | None = None,
    images: list[dict[str, Any]] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "taskId": task_id,
        "status": status,
        "progress": progress,
        "images": images or [],
        "error": error,
        "createdAt": "2025-01-01T00:00:00Z",
        "updatedAt": "2025-01-01T00:00:10Z",
    }


@dataclass
class FakeClock:
    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Result:
    code: int
    out: str
    err: str
