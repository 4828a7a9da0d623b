"""An in-memory emulation of the bundle's API (and of S3's presigned links) for the imagegen tests.

``FakeApi.handler`` is plugged into :class:`httpx.MockTransport`; tests script what POST answers
and which states a task goes through on successive GETs, then drive ``imagegen.cli.main(argv)``.
The fake is held to the API's contract (openapi.json): request bodies are validated as the API validates
them (a 422 naming each bad field, e.g. a field of the other model, or ``input.<name>`` of a Market
model's input, checked by the API's own registry), tasks report the model they were
submitted with, and its own answers must conform to their documented schemas, so the fake cannot drift
from the API either. Only scripted answers (``*_script``) may break the contract.
(A uniquely named module rather than conftest.py, so importing it never picks another suite's conftest.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import imagegen_contract as contract

API_URL = "https://abc.execute-api.us-east-1.amazonaws.com/Prod"
API_KEY = "test-key"
STORAGE_HOST = "bucket.s3.test"

PNG = b"\x89PNG\r\n\x1a\n" + b"fake png pixels " * 64
JPEG = b"\xff\xd8\xff\xe0" + b"fake jpeg pixels " * 64
FOUR_O = "gpt-4o-image"
# the stored key's extension by content type, as the API names its objects (images/{taskId}/0.jpg)
KEY_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}

Scripted = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


@dataclass
class FakeApi:
    """POST /tasks, GET /tasks/{id}, GET /tasks (pages of summaries, newest first), DELETE /tasks/{id},
    GET /models, plus presigned downloads."""

    api_key: str | None = API_KEY
    task_id: str = "task-123"
    # answers for the next POSTs (then the normal 202); an Exception is raised as a network error
    post_script: list[Scripted] = field(default_factory=list)
    # answers for the next GETs of a task (then the last state repeats forever)
    get_script: list[Scripted] = field(default_factory=list)
    # answers for the next GET /tasks and DELETE /tasks/{id}
    list_script: list[Scripted] = field(default_factory=list)
    delete_script: list[Scripted] = field(default_factory=list)
    # answers for the next GET /models (then the API's own catalogue)
    models_script: list[Scripted] = field(default_factory=list)
    tasks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # the model each task was submitted with (POST), else the state's own, else gpt-4o-image
    models: dict[str, str] = field(default_factory=dict)
    blobs: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    polls: int = 0
    # presigned uploads: key -> the Content-Type and Content-Length their PUT was signed with
    upload_terms: dict[str, tuple[str, int]] = field(default_factory=dict)

    # -- scripting helpers

    def add_task(self, *states: dict[str, Any], task_id: str | None = None) -> str:
        self.tasks[task_id or self.task_id] = list(states)
        return task_id or self.task_id

    def image(
        self, index: int, data: bytes, content_type: str, *, sha: str | None = None, key: str | None = None
    ) -> dict[str, Any]:
        key = key or f"images/{self.task_id}/{index}{KEY_EXTENSIONS.get(content_type, '')}"
        url = f"https://{STORAGE_HOST}/{key}?X-Amz-Signature=secret{index}&X-Amz-Expires=900"
        self.blobs[f"/{key}"] = (data, content_type)
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
        if request.url.host == STORAGE_HOST and request.method == "PUT":
            # as S3 checks a presigned PUT: the signed Content-Type and Content-Length, exactly
            signed = self.upload_terms.get(request.url.path)
            sent = (request.headers.get("Content-Type"), int(request.headers.get("Content-Length") or -1))
            if signed is None or sent != signed or len(request.content) != signed[1]:
                return httpx.Response(403, text="<Error><Code>SignatureDoesNotMatch</Code></Error>")
            self.blobs[request.url.path] = (request.content, signed[0])
            return httpx.Response(200)
        if request.url.host == STORAGE_HOST:
            blob = self.blobs.get(request.url.path)
            if blob is None:
                return httpx.Response(403, text="<Error><Code>AccessDenied</Code></Error>")
            data, content_type = blob
            return httpx.Response(200, content=data, headers={"Content-Type": content_type})

        assert request.url.host == httpx.URL(API_URL).host, request.url
        path = request.url.path
        assert path.startswith(("/Prod/tasks", "/Prod/models", "/Prod/uploads")), path
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            return json_response(403, {"message": "Forbidden"})

        if request.method == "POST" and path == "/Prod/tasks":
            if self.post_script:
                return self._play(self.post_script.pop(0), request)
            body = json.loads(request.content)
            if errors := contract.field_problems(contract.request_schema("POST", "/tasks"), body):
                return self._answer("POST", "/tasks", 422, {"message": "invalid request", "errors": errors})
            if errors := market_input_problems(body):
                return self._answer("POST", "/tasks", 422, {"message": "invalid request", "errors": errors})
            self.models[self.task_id] = body.get("model", FOUR_O)
            return self._answer("POST", "/tasks", 202, {"taskId": self.task_id, "status": "submitted"})

        if request.method == "POST" and path == "/Prod/uploads":
            body = json.loads(request.content)
            if errors := contract.field_problems(contract.request_schema("POST", "/uploads"), body):
                return self._answer("POST", "/uploads", 422, {"message": "invalid request", "errors": errors})
            upload_id = f"{len(self.upload_terms):032x}.png"
            key = f"/uploads/local/{upload_id}"
            self.upload_terms[key] = (body["contentType"], body["bytes"])
            headers = {"Content-Type": body["contentType"], "Content-Length": str(body["bytes"])}
            answer = {
                "uploadId": upload_id,
                "reference": f"upload:{upload_id}",
                "upload": {
                    "method": "PUT",
                    "url": f"https://{STORAGE_HOST}{key}?X-Amz-Signature=s",
                    "headers": headers,
                },
                "expiresAt": "2026-11-21T21:34:40.123Z",
            }
            return self._answer("POST", "/uploads", 201, answer)

        if request.method == "GET" and path == "/Prod/models":
            if self.models_script:
                return self._play(self.models_script.pop(0), request)
            # the API's own catalogue (image_pipeline.model_catalog), held to the contract by _answer
            from image_pipeline.model_catalog import model_catalog

            return self._answer("GET", "/models", 200, model_catalog())

        if request.method == "GET" and path == "/Prod/tasks":
            if self.list_script:
                return self._play(self.list_script.pop(0), request)
            return self._list(request)

        if request.method == "GET" and path.startswith("/Prod/tasks/"):
            self.polls += 1
            if self.get_script:
                return self._play(self.get_script.pop(0), request)
            task_id = path.removeprefix("/Prod/tasks/")
            states = self.tasks.get(task_id)
            if not states:
                return self._answer("GET", "/tasks/{taskId}", 404, {"message": f"task {task_id} not found"})
            state = states.pop(0) if len(states) > 1 else states[0]
            body = task_body(task_id, **{"model": self.models.get(task_id, FOUR_O), **state})
            return self._answer("GET", "/tasks/{taskId}", 200, body)

        if request.method == "DELETE" and path.startswith("/Prod/tasks/"):
            if self.delete_script:
                return self._play(self.delete_script.pop(0), request)
            task_id = path.removeprefix("/Prod/tasks/")
            states = self.tasks.get(task_id)
            if not states:
                return self._answer(
                    "DELETE", "/tasks/{taskId}", 404, {"message": f"task {task_id} not found"}
                )
            if states[0]["status"] in ("submitted", "downloading"):
                return self._answer("DELETE", "/tasks/{taskId}", 409, {"message": "task is still running"})
            del self.tasks[task_id]
            return httpx.Response(204)

        return json_response(403, {"message": "Missing Authentication Token"})

    def _list(self, request: httpx.Request) -> httpx.Response:
        """Newest (last added) first; the cursor is opaque to the client, any other is a 400."""
        params = request.url.params
        status, cursor = params.get("status"), params.get("cursor")
        limit = int(params.get("limit", "20"))
        assert set(params) <= {"status", "limit", "cursor"}, params
        if cursor is not None and not cursor.startswith("page-after-"):
            body = {"message": "invalid cursor", "errors": [{"field": "cursor", "message": "not yours"}]}
            return self._answer("GET", "/tasks", 400, body)
        listed = [
            summary_body(task_id, **{"model": self.models.get(task_id, FOUR_O), **states[0]})
            for task_id, states in reversed(self.tasks.items())
            if status is None or states[0]["status"] == status
        ]
        start = int(cursor.removeprefix("page-after-")) if cursor else 0
        more = start + limit < len(listed)
        page = {
            "tasks": listed[start : start + limit],
            "nextCursor": f"page-after-{start + limit}" if more else None,
        }
        return self._answer("GET", "/tasks", 200, page)

    @staticmethod
    def _answer(method: str, path: str, status: int, body: dict[str, Any]) -> httpx.Response:
        schema = contract.response_schema(method, path, status)
        assert schema is not None and contract.problems(schema, body) == [], (method, path, status, body)
        return json_response(status, body)

    @staticmethod
    def _play(item: Scripted, request: httpx.Request) -> httpx.Response:
        if isinstance(item, Exception):
            raise item
        if isinstance(item, httpx.Response):
            return item
        return item(request)


def market_input_problems(body: dict[str, Any]) -> list[dict[str, str]]:
    """What the API says of a Market model's input (the contract's schema cannot: a model's fields are
    its registry entry's, image_pipeline.market_registry), each on ``input.<name>``."""
    from image_pipeline.market_registry import market_model, validate_input

    if market_model(body.get("model")) is None:
        return []
    checked = validate_input(body["model"], body.get("input"))
    return [] if isinstance(checked, dict) else [problem.as_dict() for problem in checked]


def task_body(
    task_id: str,
    status: str,
    progress: float | None = None,
    images: list[dict[str, Any]] | None = None,
    error: dict[str, Any] | None = None,
    model: str = FOUR_O,
) -> dict[str, Any]:
    return {
        "taskId": task_id,
        "model": model,
        "status": status,
        "progress": progress,
        "images": images or [],
        "error": error,
        "createdAt": "2025-01-01T00:00:00Z",
        "updatedAt": "2025-01-01T00:00:10Z",
    }


def summary_body(task_id: str, status: str, **state: Any) -> dict[str, Any]:
    """The task as ``GET /tasks`` lists it: no progress, images without their links."""
    body = task_body(task_id, status, **state)
    del body["progress"]
    body["images"] = [{k: v for k, v in image.items() if k != "url"} for image in body["images"]]
    return body


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
