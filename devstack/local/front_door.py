"""The local API Gateway: each HTTP request becomes a REST API proxy event for the function that
template.yaml routes it to (routes are read from the template, never restated here).

API keys, as API Gateway checks them: with LOCAL_API_KEYS="alice:KEY_A,bob:KEY_B" a route that needs
a key answers 403 {"message": "Forbidden"} without a known `x-api-key`, and passes the key's name to
the function as requestContext.identity.apiKeyId. Without it no key is needed (every request is the
client "local").

A method or path template.yaml does not route (TRACE /tasks, PUT /tasks, GET /nowhere) answers 403
{"message": "Missing Authentication Token"} as JSON, as API Gateway does.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import time
import uuid
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devstack.common.background import BackgroundServer
from devstack.common.template import Route, api_routes
from devstack.local.lambda_runtime import LambdaPool

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
INTEGRATION_TIMEOUT_SECONDS = 29  # API Gateway's integration timeout
STAGE = "local"


@dataclass(frozen=True)
class CompiledRoute:
    route: Route
    pattern: re.Pattern[str]


def compile_routes(routes: list[Route]) -> list[CompiledRoute]:
    compiled = []
    for route in routes:
        regex = re.sub(r"\\\{([A-Za-z0-9_]+)\\\}", r"(?P<\1>[^/]+)", re.escape(route.path))
        compiled.append(CompiledRoute(route, re.compile(f"^{regex}$")))
    return compiled


def parse_api_keys(spec: str) -> dict[str, str]:
    """LOCAL_API_KEYS ("name:key,name:key") as {key: name}."""
    keys: dict[str, str] = {}
    for entry in (part.strip() for part in spec.split(",") if part.strip()):
        name, separator, key = entry.partition(":")
        if not separator or not name.strip() or not key.strip():
            raise ValueError(f"LOCAL_API_KEYS entry {entry.split(':')[0]!r}... must be name:key")
        if key.strip() in keys:
            raise ValueError(f"LOCAL_API_KEYS gives two clients the same key ({name.strip()})")
        keys[key.strip()] = name.strip()
    return keys


def proxy_event(
    route: Route,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    path_parameters: dict[str, str],
    host: str,
    source_ip: str,
    api_key: tuple[str, str] | None = None,
) -> dict[str, Any]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        single[name] = value
        multi.setdefault(name, []).append(value)
    parsed_query = parse_qs(query, keep_blank_values=True)
    try:
        text_body: str | None = body.decode() if body else None
        encoded = False
    except UnicodeDecodeError:
        text_body, encoded = base64.b64encode(body).decode(), True
    now = time.time()
    return {
        "resource": route.path,
        "path": path,
        "httpMethod": method,
        "headers": single or None,
        "multiValueHeaders": multi or None,
        "queryStringParameters": {k: v[-1] for k, v in parsed_query.items()} or None,
        "multiValueQueryStringParameters": parsed_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": route.path,
            "httpMethod": method,
            "path": path,
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainName": host,
            "domainPrefix": host.split(".")[0],
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(now * 1000),
            "identity": {
                "sourceIp": source_ip,
                "userAgent": single.get("User-Agent", ""),
                **({"apiKey": api_key[0], "apiKeyId": api_key[1]} if api_key else {}),
            },
            "apiId": "local",
        },
        "body": text_body,
        "isBase64Encoded": encoded,
    }


class FrontDoor(BackgroundServer):
    def __init__(
        self,
        pool: LambdaPool | None = None,
        *,
        port: int = 3000,
        host: str = "127.0.0.1",
        access_log: bool = True,
        api_keys: dict[str, str] | None = None,
    ) -> None:
        self.pool = pool
        self.api_keys = api_keys  # {key: client name}; None: no key needed
        self.routes = compile_routes(api_routes())
        front_door = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                # The path only: a callback URL's query string carries its capability token.
                if access_log:
                    sys.stderr.write(f"[api] {self.command} {self.path.split('?', 1)[0]} {code}\n")

            def log_message(self, format: str, *args: Any) -> None:
                if access_log:
                    sys.stderr.write(f"[api] {format % args}\n")

            def _handle(self) -> None:
                try:
                    front_door.handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    # The caller gave up before the answer (e.g. the upstream's callback timeout under
                    # load): the function ran all the same, as behind API Gateway. Say so in one line.
                    sys.stderr.write(f"[api] {self.command} {self.path.split('?', 1)[0]}: caller went away\n")

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

            def __getattr__(self, name: str) -> Any:
                # Any other method (TRACE, CONNECT, PROPFIND, ...) is matched like the rest, so it gets
                # API Gateway's JSON 403 rather than http.server's HTML 501 "Unsupported method".
                if name.startswith("do_"):
                    return self._handle
                raise AttributeError(name)

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        super().__init__(server, "front-door")

    def start(self) -> FrontDoor:
        self.start_serving()
        return self

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for compiled in self.routes:
            found = compiled.pattern.match(path)
            if found and compiled.route.method == method:
                return compiled.route, found.groupdict()
        return None

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            return _send(request, 413, {"message": "Request Too Long"})
        body = request.rfile.read(length) if length else b""
        matched = self.match(request.command, parts.path)
        if matched is None:
            # What API Gateway answers for a route it does not have.
            return _send(request, 403, {"message": "Missing Authentication Token"})
        route, path_parameters = matched
        api_key = None
        if route.api_key_required and self.api_keys is not None:
            presented = request.headers.get("x-api-key", "")
            if presented not in self.api_keys:
                return _send(request, 403, {"message": "Forbidden"})
            api_key = (presented, self.api_keys[presented])
        event = proxy_event(
            route,
            request.command,
            parts.path,
            parts.query,
            list(request.headers.items()),
            body,
            path_parameters,
            request.headers.get("Host", self.base_url.split("//", 1)[1]),
            request.client_address[0],
            api_key,
        )
        assert self.pool is not None, "FrontDoor.pool is set before start()"
        try:
            result = self.pool.submit(route.function, event).result(timeout=INTEGRATION_TIMEOUT_SECONDS)
        except FutureTimeout:
            return _send(request, 504, {"message": "Endpoint request timed out"})
        if "statusCode" not in result:
            sys.stderr.write(f"[api] {route.function} failed: {result}\n")
            return _send(request, 502, {"message": "Internal server error"})
        headers = {name: values[-1] for name, values in (result.get("multiValueHeaders") or {}).items()}
        headers.update(result.get("headers") or {})
        raw = result.get("body") or ""
        payload = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode()
        _send_raw(request, int(result["statusCode"]), payload, headers)


def _send(request: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    _send_raw(request, status, json.dumps(body).encode(), {"Content-Type": "application/json"})


def _send_raw(request: BaseHTTPRequestHandler, status: int, payload: bytes, headers: dict[str, str]) -> None:
    request.send_response(status)
    for name, value in headers.items():
        if name.lower() not in ("content-length", "connection", "transfer-encoding"):
            request.send_header(name, value)
    request.send_header("Content-Length", str(len(payload)))
    request.end_headers()
    if request.command != "HEAD":
        request.wfile.write(payload)
