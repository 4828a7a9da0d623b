"""The chaos run's client app: a webhook receiver on loopback that misbehaves at random, within bounds.

Each delivery is verified on arrival with the `standardwebhooks` package (as a client app does, while
its timestamp is fresh), recorded, then answered: 2xx, or a fault drawn at random: a 5xx, an answer
held back longer than the sender's timeout, or a 2xx whose body trickles in slowly. One event (one
`webhook-id`) gets at most `max_faults` failing answers (5xx and timeouts), so it is accepted within
the sender's attempts.

Paths under /hang/ are a client app whose endpoint hangs for the whole run: the delivery is recorded,
then the connection is held without an answer until the receiver stops (bounded by HANG_MAX_SECONDS).
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook

# (fault, weight): drawn per delivery; failing faults only while the event has some left.
FAULTS: list[tuple[str, int]] = [("none", 55), ("5xx", 20), ("timeout", 12), ("slow body", 13)]
FAILING = frozenset({"5xx", "timeout"})
HANG_PREFIX = "/hang/"
HANG_MAX_SECONDS = 1800.0


@dataclass
class Delivery:
    path: str
    webhook_id: str
    payload: dict[str, Any] | None  # the verified event; None when verification failed
    error: str | None  # why it did not verify
    fault: str
    accepted: bool  # answered 2xx in time (a slow body still starts with its 2xx status)
    at: float = 0.0  # when it arrived (epoch seconds)


@dataclass
class ChaosReceiver:
    secret: str
    timeout_seconds: float  # the sender's: a "timeout" holds the answer back longer than this
    max_faults: int = 3
    seed: int = 0
    origin: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    injected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()
        self._failures: Counter[str] = Counter()  # failing answers given, per webhook-id
        self._stopping = threading.Event()  # ends the held connections of /hang/
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def at(self, path: str) -> list[Delivery]:
        with self._lock:
            return [delivery for delivery in self.deliveries if delivery.path == path]

    def choose(self, webhook_id: str) -> str:
        with self._lock:
            allowed = [
                (name, weight)
                for name, weight in FAULTS
                if name not in FAILING or self._failures[webhook_id] < self.max_faults
            ]
            fault = self._random.choices([n for n, _ in allowed], [w for _, w in allowed])[0]
            if fault in FAILING:
                self._failures[webhook_id] += 1
            self.injected[fault] += 1
            return fault

    def record(self, delivery: Delivery) -> None:
        with self._lock:
            self.deliveries.append(delivery)

    def start(self) -> ChaosReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                payload: dict[str, Any] | None = None
                error = None
                try:
                    payload = Webhook(receiver.secret).verify(body, headers)
                except Exception as exc:  # a forged or stale delivery: refused, and a problem in the tally
                    error = f"{type(exc).__name__}: {exc}"
                arrived = time.time()
                if self.path.startswith(HANG_PREFIX):
                    receiver.record(
                        Delivery(
                            self.path, headers.get("webhook-id", ""), payload, error, "hang", False, arrived
                        )
                    )
                    receiver._stopping.wait(HANG_MAX_SECONDS)  # never answers: the sender times out
                    return
                fault = receiver.choose(headers.get("webhook-id", "")) if payload is not None else "refused"
                accepted = payload is not None and fault not in FAILING
                receiver.record(
                    Delivery(
                        self.path, headers.get("webhook-id", ""), payload, error, fault, accepted, arrived
                    )
                )
                with contextlib.suppress(OSError):  # the sender hung up first (its timeout): the point
                    receiver.answer(self, fault)

            def log_message(self, *_args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.block_on_close = False
        self._server = server
        self.origin = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(target=server.serve_forever, name="chaos-receiver", daemon=True)
        self._thread.start()
        return self

    def answer(self, handler: BaseHTTPRequestHandler, fault: str) -> None:
        with self._lock:
            error_status = self._random.choice([500, 502, 503])
            pause = self._random.uniform(0.5, self.timeout_seconds + 1.0) / 4
        if fault == "refused":
            status, body = 400, b"bad signature"
        elif fault == "5xx":
            status, body = error_status, b"chaos: receiver error"
        else:
            status, body = 200, b"ok" * 32
        if fault == "timeout":
            time.sleep(self.timeout_seconds + 1.0)  # bounded: the sender has given up by then
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if fault != "slow body":
            handler.wfile.write(body)
            return
        for start in range(0, len(body), len(body) // 4):  # four pieces, some past the sender's timeout
            handler.wfile.write(body[start : start + len(body) // 4])
            handler.wfile.flush()
            time.sleep(pause)

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> ChaosReceiver:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
