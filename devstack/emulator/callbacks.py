"""Timers and callback delivery: one scheduler thread, a bounded worker pool, httpx for the POSTs."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import heapq
import hmac
import ipaddress
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from .faults import Faults

log = logging.getLogger(__name__)

MAX_WORKERS = 32
BARRIER_TIMEOUT_SECONDS = 5.0


def sign(key: str, task_id: str, timestamp: str) -> str:
    """``base64(HMAC-SHA256(key, taskId + "." + timestamp))``: the webhook signature."""
    mac = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Scheduler:
    """Runs callables at a monotonic time on a bounded pool; stop() drops what is still pending."""

    def __init__(self, workers: int = MAX_WORKERS) -> None:
        self._heap: list[tuple[float, int, Callable[[], object]]] = []
        self._seq = itertools.count()
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        self._idle = threading.Condition(lock)  # notified when a job ends (see wait_idle)
        self._running = 0  # jobs handed to the pool and not yet ended
        self._stopped = False
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emulator-work")
        self._thread = threading.Thread(target=self._run, name="emulator-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def call_at(self, due: float, fn: Callable[[], object]) -> None:
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (due, next(self._seq), fn))
            self._cond.notify()

    def call_later(self, delay: float, fn: Callable[[], object]) -> None:
        self.call_at(time.monotonic() + max(0.0, delay), fn)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                now = time.monotonic()
                if not self._heap or self._heap[0][0] > now:
                    timeout = 1.0 if not self._heap else min(1.0, self._heap[0][0] - now)
                    self._cond.wait(timeout)
                    continue
                _, _, fn = heapq.heappop(self._heap)
                self._running += 1
            try:
                self._pool.submit(self._guard, fn)
            except RuntimeError:  # the pool is shutting down
                self._ended()
                return

    def _guard(self, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception:
            log.exception("emulator background job failed")
        finally:
            self._ended()

    def _ended(self) -> None:
        with self._idle:
            self._running -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is due and nothing runs (a job's follow-ups are queued before it ends):
        whatever the emulator was going to do by itself, it has done. False if `timeout` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._heap and not self._running, timeout)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()
            self._idle.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class Delivery:
    """One callback to deliver: the body and how (faults) it is delivered."""

    task_id: str
    url: str
    body: dict[str, Any]
    faults: Faults
    reason: str = "final"


RecordFn = Callable[[str, dict[str, Any]], None]


class CallbackDispatcher:
    """Delivers callbacks with retries on a schedule, duplicates, concurrency, drops and signing.

    A delivery has ``concurrent`` lanes whose first POSTs leave together; each lane makes
    ``duplicate`` rounds in a row; a round is one attempt plus a retry per schedule entry until a
    2xx answer. Every attempt is reported through ``record(task_id, attempt)``.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        record: RecordFn,
        *,
        retry_schedule: tuple[float, ...],
        timeout: float,
        hmac_key: str | None,
        allow_external: bool,
    ) -> None:
        self._scheduler = scheduler
        self._record = record
        self._schedule = retry_schedule
        self._hmac_key = hmac_key
        self._allow_external = allow_external
        self._timeout = timeout
        self._client: httpx.Client | None = None  # built on first use: loading CA certificates is slow
        self._client_lock = threading.Lock()
        self._closed = False

    def _http(self) -> httpx.Client:
        with self._client_lock:
            if self._closed:
                raise RuntimeError("dispatcher closed")
            if self._client is None:
                self._client = httpx.Client(
                    timeout=self._timeout,
                    trust_env=False,
                    follow_redirects=False,
                    limits=httpx.Limits(max_connections=64, max_keepalive_connections=0),
                )
            return self._client

    def close(self) -> None:
        with self._client_lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def deliver(self, delivery: Delivery) -> None:
        faults = delivery.faults
        if faults.drop:
            self._record(delivery.task_id, {"reason": delivery.reason, "dropped": True, "at": time.time()})
            return
        lanes = faults.concurrent
        barrier = threading.Barrier(lanes, timeout=BARRIER_TIMEOUT_SECONDS) if lanes > 1 else None
        payload = json.dumps(delivery.body, ensure_ascii=False).encode()
        for lane in range(lanes):
            self._scheduler.call_later(0, self._attempt_job(delivery, payload, lane, 0, 0, barrier))

    def _attempt_job(
        self,
        delivery: Delivery,
        payload: bytes,
        lane: int,
        round_no: int,
        attempt: int,
        barrier: threading.Barrier | None,
    ) -> Callable[[], object]:
        def job() -> None:
            if barrier is not None:
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait()
            ok = self._post(delivery, payload, lane, round_no, attempt)
            if ok:
                if round_no + 1 < delivery.faults.duplicate:
                    self._scheduler.call_later(
                        0, self._attempt_job(delivery, payload, lane, round_no + 1, 0, None)
                    )
            elif ok is False and attempt < len(self._schedule):
                self._scheduler.call_later(
                    self._schedule[attempt],
                    self._attempt_job(delivery, payload, lane, round_no, attempt + 1, None),
                )

        return job

    def _post(
        self, delivery: Delivery, payload: bytes, lane: int, round_no: int, attempt: int
    ) -> bool | None:
        """True on 2xx, False on a retryable failure, None when delivery is refused outright."""
        entry: dict[str, Any] = {
            "reason": delivery.reason,
            "lane": lane,
            "round": round_no,
            "attempt": attempt,
            "url": delivery.url,
            "at": time.time(),
            "statusCode": None,
            "error": None,
        }
        if not self._allow_external and not is_loopback_url(delivery.url):
            entry["error"] = "blocked: callback host is not loopback (allow_external_callbacks is off)"
            self._record(delivery.task_id, entry)
            return None
        headers = {"Content-Type": "application/json", "User-Agent": "kie-4o-emulator/1"}
        if self._hmac_key:
            timestamp = str(int(time.time()))
            headers["X-Webhook-Timestamp"] = timestamp
            headers["X-Webhook-Signature"] = sign(self._hmac_key, delivery.task_id, timestamp)
            entry["timestamp"] = timestamp
        started = time.monotonic()
        try:
            response = self._http().post(delivery.url, content=payload, headers=headers)
            entry["statusCode"] = response.status_code
            ok = 200 <= response.status_code < 300
        except httpx.HTTPError as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
            ok = False
        except RuntimeError as exc:  # the client was closed by stop()
            entry["error"] = f"stopped: {exc}"
            ok = False
        entry["elapsedMs"] = round((time.monotonic() - started) * 1000, 1)
        self._record(delivery.task_id, entry)
        return ok
