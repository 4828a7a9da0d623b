"""HTTP front of the emulator (stdlib ThreadingHTTPServer, on 127.0.0.1 by default) and its Python handle."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .config import EmulatorConfig
from .core import EmulatorCore
from .faults import FaultSpecError
from .model import ApiReply, FileReply, envelope

log = logging.getLogger("devstack.emulator")

HOST = "127.0.0.1"
# What a client on this machine dials when the server binds a wildcard address.
_WILDCARD_DIAL = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 - names, not binds
MAX_BODY_BYTES = 1 << 20
TRICKLE_PIECES = 40
API = "/api/v1"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins every handler thread
    block_on_close = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, core: EmulatorCore, host: str, port: int) -> None:
        self.core = core
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def end_reads(self) -> None:
        """Wake handlers blocked reading from idle clients (they see EOF), so stop() is quick."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers after stop()
    server_version = "kie-4o-emulator/1"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.core.config.socket_timeout_seconds or None)

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    # ------------------------------------------------------------------ plumbing
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    @property
    def core(self) -> EmulatorCore:
        return self.server.core

    def _read_json(self) -> tuple[bool, Any]:
        """(ok, value): ok is False for a body that is not JSON (or is too big)."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return False, None
        if length <= 0:
            return True, None
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            return False, None
        raw = self.rfile.read(length)
        try:
            return True, json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return False, None

    def _send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _reply(self, reply: ApiReply) -> None:
        if reply.delay_seconds:
            time.sleep(reply.delay_seconds)
        self._send_json(reply.http_status, reply.body)

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            if path.startswith(API + "/"):
                self._api(method, path[len(API) :], query)
            elif path.startswith("/s/") and method in ("GET", "HEAD"):
                self._file(path[3:], query)
            elif path == "/admin" or path.startswith("/admin/"):
                self._admin(method, path, query)
            else:
                self._send_json(404, envelope(404, "Not Found"))
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception:
            log.exception("emulator request failed: %s %s", method, self.path)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send_json(500, envelope(500, "Server exception (emulator bug)"))

    # ------------------------------------------------------------------ the upstream API
    def _api(self, method: str, route: str, query: dict[str, str]) -> None:
        routes: dict[tuple[str, str], Callable[[str, dict[str, str]], None]] = {
            ("POST", "/gpt4o-image/generate"): self._generate,
            ("GET", "/gpt4o-image/record-info"): self._record_info,
            ("POST", "/flux/kontext/generate"): self._flux_generate,
            ("POST", "/jobs/createTask"): self._market_create_task,
            ("GET", "/jobs/recordInfo"): self._market_record_info,
            ("GET", "/flux/kontext/record-info"): self._flux_record_info,
            ("POST", "/gpt4o-image/download-url"): self._download_url,
            ("POST", "/common/download-url"): self._common_download_url,
            ("GET", "/chat/credit"): self._credit,
        }
        handler = routes.get((method, route))
        if handler is None:
            known = any(r == route for _, r in routes)
            code = 405 if known else 404
            self._send_json(code, envelope(code, "Method Not Allowed" if known else "Not Found"))
            return
        api_key = self.core.authorize(self.headers.get("Authorization"))
        if api_key is None:
            self._reply(self.core.unauthorized())
            return
        handler(api_key, query)

    def _generate(self, api_key: str, _query: dict[str, str]) -> None:
        ok, body = self._read_json()
        self._reply(self.core.generate(api_key, body if ok else None))

    def _record_info(self, _api_key: str, query: dict[str, str]) -> None:
        self._reply(self.core.record_info(query.get("taskId")))

    def _flux_generate(self, api_key: str, _query: dict[str, str]) -> None:
        ok, body = self._read_json()
        self._reply(self.core.flux_generate(api_key, body if ok else None))

    def _flux_record_info(self, _api_key: str, query: dict[str, str]) -> None:
        self._reply(self.core.record_info(query.get("taskId"), flux=True))

    def _market_create_task(self, api_key: str, _query: dict[str, str]) -> None:
        ok, body = self._read_json()
        self._reply(self.core.market_create_task(api_key, body if ok else None))

    def _market_record_info(self, _api_key: str, query: dict[str, str]) -> None:
        self._reply(self.core.market_record_info(query.get("taskId")))

    def _download_url(self, _api_key: str, _query: dict[str, str]) -> None:
        ok, body = self._read_json()
        self._reply(self.core.download_url(body if ok else None, generic=False))

    def _common_download_url(self, _api_key: str, _query: dict[str, str]) -> None:
        ok, body = self._read_json()
        self._reply(self.core.download_url(body if ok else None, generic=True))

    def _credit(self, _api_key: str, _query: dict[str, str]) -> None:
        self._reply(self.core.credit())

    # ------------------------------------------------------------------ result files
    def _file(self, name: str, query: dict[str, str]) -> None:
        reply = self.core.file(name, query)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(reply.declared_length))
        if reply.status == 200:
            self.send_header("Cache-Control", "max-age=1209600")
        self.end_headers()
        if self.command == "HEAD":
            return
        digest = hashlib.sha256()
        served: dict[str, Any] | None = None

        def record(sha256: str, sent: int) -> None:
            nonlocal served
            served = {
                "path": "/s/" + name,
                "presigned": "X-Amz-Signature" in query,
                "taskId": reply.task_id,
                "index": reply.index,
                "status": reply.status,
                "sha256": sha256,
                "bytes": sent,
                "declaredLength": reply.declared_length,
                "complete": sent == reply.declared_length,
                "faults": list(reply.applied),
                "at": time.time(),
            }
            self.core.record_served(served)

        # A serve is recorded before its last byte leaves: a client that has read the whole body (and any
        # admin request it makes next) finds it recorded. A truncated body ends when the connection
        # closes, after the record below. (No 200 here has an empty body.)
        sent = 0
        try:
            sent = self._stream(reply, digest, record if reply.status == 200 else None)
        finally:
            if reply.status == 200:
                if served is None:
                    record(digest.hexdigest(), sent)
                elif served["bytes"] != sent:  # the last write failed: what was really sent
                    self.core.amend_served(
                        served, sha256=digest.hexdigest(), bytes=sent, complete=sent == reply.declared_length
                    )
            if sent != reply.declared_length:
                self.close_connection = True

    def _stream(
        self, reply: FileReply, digest: Any, before_last: Callable[[str, int], None] | None = None
    ) -> int:
        """Write the body (`digest` takes what was written); `before_last(sha256, length)` is called with
        the whole body's digest and length just before its last piece is written."""
        remaining = reply.length
        piece = max(1, math.ceil(reply.length / TRICKLE_PIECES)) if reply.trickle_seconds else 1 << 20
        pause = reply.trickle_seconds / TRICKLE_PIECES if reply.trickle_seconds else 0.0
        sent = 0
        for chunk in reply.chunks():
            for start in range(0, len(chunk), piece):
                if remaining <= 0:
                    return sent
                part = chunk[start : start + min(piece, remaining)]
                if before_last is not None and len(part) == remaining:
                    whole = digest.copy()
                    whole.update(part)
                    before_last(whole.hexdigest(), sent + len(part))
                self.wfile.write(part)
                digest.update(part)
                sent += len(part)
                remaining -= len(part)
                if pause:
                    self.wfile.flush()
                    if self.core.stop_event.wait(pause):
                        return sent
        return sent

    # ------------------------------------------------------------------ admin
    def _admin(self, method: str, path: str, query: dict[str, str]) -> None:
        if not self.client_address[0].startswith("127.") and self.client_address[0] != "::1":
            self._send_json(403, {"error": "admin endpoints answer loopback clients only"})
            return
        ok, body = self._read_json() if method in ("POST", "PUT") else (True, None)
        if not ok or (body is not None and not isinstance(body, dict)):
            self._send_json(400, {"error": "body must be a JSON object"})
            return
        body = body or {}
        segments = path.split("/")[2:]  # after "/admin"
        core = self.core
        try:
            match (method, segments):
                case ("GET", ["health"]):
                    self._send_json(200, {"ok": True, "baseUrl": core.public_base})
                case ("GET", ["faults"]):
                    self._send_json(200, {"faults": core.run_faults()})
                case ("POST" | "PUT", ["faults"]):
                    replace_all = bool(body.get("replace", method == "PUT"))
                    if "spec" in body:
                        faults = core.set_faults(str(body["spec"]), replace=replace_all)
                    else:
                        spec = body.get("faults", {k: v for k, v in body.items() if k != "replace"})
                        if not isinstance(spec, dict):
                            raise FaultSpecError("faults must be an object")
                        faults = core.set_faults(spec, replace=replace_all)
                    self._send_json(200, {"faults": faults})
                case ("DELETE", ["faults"]) | ("POST", ["faults", "clear"]):
                    self._send_json(200, {"faults": core.clear_faults()})
                case ("GET", ["tasks"]):
                    self._send_json(200, {"tasks": core.task_ids()})
                case ("GET", ["tasks", task_id]):
                    self._task_or_404(task_id)
                case ("POST", ["tasks", task_id, "complete"]):
                    fail = body.get("fail")
                    if fail is not None and (isinstance(fail, bool) or not isinstance(fail, int)):
                        raise FaultSpecError("fail must be an integer code")
                    done = core.complete(task_id, fail=fail, message=body.get("message"))
                    self._task_or_404(task_id, extra={"completedNow": done})
                case ("POST", ["tasks", task_id, "redeliver"]):
                    self._task_or_404(task_id, extra={"redelivered": core.redeliver(task_id)})
                case ("GET", ["images"]):
                    self._send_json(200, core.images())
                case ("GET", ["deliveries"]):
                    task_id = query.get("taskId", "")
                    info = core.inspect(task_id)
                    if info is None:
                        self._send_json(404, {"error": f"unknown task {task_id!r}"})
                    else:
                        self._send_json(200, {"taskId": task_id, "deliveries": info["deliveries"]})
                case ("GET", ["credits"]):
                    self._send_json(200, {"credits": core.credit().body["data"]})
                case ("POST" | "PUT", ["credits"]):
                    value = body.get("credits")
                    if isinstance(value, bool) or not isinstance(value, int | float):
                        raise FaultSpecError("credits must be a number")
                    core.set_credits(value)
                    self._send_json(200, {"credits": core.credit().body["data"]})
                case ("POST", ["reset"]):
                    core.reset()
                    self._send_json(200, {"ok": True})
                case _:
                    self._send_json(404, {"error": f"no admin route {method} {path}"})
        except FaultSpecError as exc:
            self._send_json(400, {"error": str(exc)})

    def _task_or_404(self, task_id: str, extra: dict[str, Any] | None = None) -> None:
        info = self.core.inspect(task_id)
        if info is None:
            self._send_json(404, {"error": f"unknown task {task_id!r}"})
        else:
            self._send_json(200, {**info, **(extra or {})})


class EmulatorServer:
    """The emulator on a background thread: ``start()``, ``base_url``, ``stop()`` (or ``with``)."""

    def __init__(self, config: EmulatorConfig | None = None, **overrides: Any) -> None:
        config = config or EmulatorConfig()
        self.config = replace(config, **overrides) if overrides else config
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.core = EmulatorCore(self.config, lambda: self.base_url)

    # lifecycle
    def start(self) -> EmulatorServer:
        if self._httpd is not None:
            raise RuntimeError("already started")
        self._httpd = _HTTPServer(self.core, self.config.host, self.config.port)
        self.core.start()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="emulator-http",
            daemon=True,
        )
        self._thread.start()
        log.info("4o image emulator listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.core.stop_event.set()
        httpd.shutdown()
        httpd.end_reads()
        self.core.stop()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        host = _WILDCARD_DIAL.get(self.config.host, self.config.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    # the admin surface, in Python
    def set_faults(self, faults: dict[str, Any] | str | None = None, /, **kw: Any) -> dict[str, Any]:
        """Merge run-wide faults: ``set_faults(duplicate=3)`` or ``set_faults("fail=500,drop")``."""
        if isinstance(faults, str):
            self.core.set_faults(faults)
        return self.core.set_faults({**(faults if isinstance(faults, dict) else {}), **kw})

    def clear_faults(self) -> None:
        self.core.clear_faults()

    def inspect_task(self, task_id: str) -> dict[str, Any] | None:
        return self.core.inspect(task_id)

    def complete_task(self, task_id: str, *, fail: int | None = None, message: str | None = None) -> bool:
        return self.core.complete(task_id, fail=fail, message=message)

    def redeliver(self, task_id: str) -> bool:
        return self.core.redeliver(task_id)

    def deliveries(self, task_id: str) -> list[dict[str, Any]]:
        info = self.core.inspect(task_id)
        return [] if info is None else info["deliveries"]

    def images(self) -> dict[str, Any]:
        return self.core.images()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
        """Poll ``predicate`` until true or ``timeout`` seconds pass (bounded)."""
        for _ in range(max(1, math.ceil(timeout / interval))):
            if predicate():
                return True
            time.sleep(interval)
        return predicate()

    def wait_until_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no timer is due and no background job runs (a completion, a callback attempt):
        what the emulator would still do by itself is done, so an absence can be asserted. False if
        `timeout` passed first (a retry schedule or a generation longer than that is still pending)."""
        return self.core.scheduler.wait_idle(timeout)

    def wait_for_deliveries(
        self, task_id: str, count: int = 1, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` delivery records exist for the task; returns them (maybe fewer)."""
        self.wait_for(lambda: len(self.deliveries(task_id)) >= count, timeout)
        return self.deliveries(task_id)
