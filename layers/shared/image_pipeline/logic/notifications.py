"""Telling the client app that its task ended: the event on the bus, and its signed webhook.

A task's end is announced through an outbox: the write that ends it also marks it `notifyPending`
(due for the reconciler a little later), and whoever ended it then queues a notify message. The
notifier consumes that queue: it puts the event on the event bus once and clears the mark in one
write, then POSTs the webhook (Standard Webhooks signing) until it is answered 2xx or its attempts run
out. A message never sent, or never handled, is sent again by the reconciler while the mark stays, so
a message may arrive twice: the event goes out once, and every attempt of one event carries the same
`webhook-id`, so a receiver can drop repeats.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

from image_pipeline.logic.ports import ImageBlobs, NotificationRecords
from image_pipeline.task_records import Notification, TaskRecord, TaskStatus, utc_now

log = logging.getLogger(__name__)
DETAIL_TYPES = {TaskStatus.STORED: "Task Stored", TaskStatus.FAILED: "Task Failed"}
EVENT_TYPES = {TaskStatus.STORED: "task.stored", TaskStatus.FAILED: "task.failed"}


class NotifyQueue(Protocol):
    def send_notify(self, task_id: str) -> None: ...


class EventBus(Protocol):
    def publish(self, detail_type: str, detail: dict[str, Any], resources: Sequence[str]) -> None: ...


class Delivery(Protocol):
    @property
    def ok(self) -> bool: ...
    @property
    def status_code(self) -> int | None: ...
    @property
    def error(self) -> str | None: ...


WebhookSender = Callable[[str, bytes, dict[str, str]], Delivery]
Signer = Callable[[Sequence[str], str, int, bytes], dict[str, str]]


class NotifyOutcome(StrEnum):
    NOT_ENDED = "not_ended"  # nothing to announce (unknown, running or deleted task)
    PUBLISHED = "published"  # the event is out and no webhook was asked for (or it was already done)
    DELIVERED = "delivered"
    GAVE_UP = "gave_up"  # the webhook's attempts ran out: notification.state = failed


class WebhookDeferred(Exception):
    """Not attempted, and no attempt counted: the message is handed back, to come back in `retry_in`
    seconds (the invocation has no time left for a whole attempt, or the client's endpoint rests)."""

    def __init__(self, reason: str, retry_in: int = 0) -> None:
        super().__init__(reason)
        self.retry_in = retry_in


class WebhookNotDelivered(Exception):
    """A passing failure: the notify message comes back later (same webhook-id).

    `attempts`: the webhook's attempts so far, this one included (its backoff grows with them).
    """

    def __init__(self, error: str, attempts: int) -> None:
        super().__init__(error)
        self.attempts = attempts


@dataclass
class _Rest:
    slow_in_a_row: int = 0
    until: float = 0.0
    probing: bool = False


class ClientBreaker:
    """Per client, in this process: a client whose endpoint hangs rests, so it holds up no one else.

    An attempt that fails after `slow_seconds` or more (the endpoint held the connection: no answer in
    time, or an error answer that came late) rests its client: its other webhooks are deferred,
    without an attempt, for `rest_seconds`, doubled by each slow failure in a row (at most
    `max_rest_seconds`). Once the rest is over one attempt goes through, the others still waiting for
    it; an attempt that is not a slow failure (a 2xx, a quick 4xx or 5xx, a refused connection) ends
    the rest. A deferral costs the webhook nothing: its attempts and backoff are untouched.

    In memory and thread-safe: each warm Lambda environment learns for itself (a hanging client costs
    it one timeout per rest at most); nothing is written to the table.
    """

    def __init__(
        self,
        *,
        slow_seconds: float,
        rest_seconds: float,
        max_rest_seconds: float = 900.0,
        max_clients: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slow_seconds = slow_seconds
        self.rest_seconds = rest_seconds
        self.max_rest_seconds = max_rest_seconds
        self.max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._resting: dict[str, _Rest] = {}

    def admit(self, client: str) -> float:
        """0 when `client`'s webhook may be attempted now (`settle` must follow), else the seconds to
        wait: the rest still to run, or, while the attempt after a rest is under way, one rest."""
        with self._lock:
            rest = self._resting.get(client)
            if rest is None:
                return 0.0
            now = self._clock()
            if now < rest.until:
                return rest.until - now
            if rest.probing:
                return self.rest_seconds
            rest.probing = True
            return 0.0

    def settle(self, client: str, *, ok: bool, seconds: float | None) -> None:
        """The attempt `admit` let through for `client` ended: `ok` for a 2xx, after `seconds`; None
        when it was not made after all."""
        with self._lock:
            rest = self._resting.get(client)
            if seconds is None:
                if rest is not None:
                    rest.probing = False
                return
            if ok or seconds < self.slow_seconds:
                self._resting.pop(client, None)
                return
            now = self._clock()
            if rest is None:
                if len(self._resting) >= self.max_clients:
                    self._forget_rested(now)
                rest = self._resting[client] = _Rest()
            rest.slow_in_a_row += 1
            rest.probing = False
            rest.until = now + min(self.max_rest_seconds, self.rest_seconds * 2 ** (rest.slow_in_a_row - 1))

    def _forget_rested(self, now: float) -> None:
        """Bounded memory: clients whose rest is over, and if that is not enough, the oldest."""
        for client in [
            name for name, rest in self._resting.items() if rest.until <= now and not rest.probing
        ]:
            del self._resting[client]
        while len(self._resting) >= self.max_clients:
            del self._resting[next(iter(self._resting))]


def notify_end(task_id: str, *, notify_queue: NotifyQueue | None) -> bool:
    """Right after a write that ended a task: queue its notify message (the notifier clears the mark).

    Never raises: the task has ended whatever happens here, and a message not sent now is sent by the
    reconciler once the mark is due.
    """
    if notify_queue is None:
        return False
    try:
        notify_queue.send_notify(task_id)
    except Exception:  # the reconciler sends it; the caller's own work is done, but say so
        log.warning("the end of task %s is not announced yet; the reconciler will", task_id, exc_info=True)
        return False
    return True


def webhook_id(task: TaskRecord) -> str:
    """The same for every attempt of the one event a task's end produces (a reopened task's new end
    is a new event)."""
    suffix = f"_r{task.reopened}" if task.reopened else ""
    return f"msg_{task.taskId}_{task.status.value}{suffix}"


def task_data(task: TaskRecord, images: ImageBlobs | None, presign_seconds: int) -> dict[str, Any]:
    """The task as GET /tasks/{id} shows it (links when `images` is given), without live progress."""
    return {
        "taskId": task.taskId,
        "model": task.model,
        "status": task.status.value,
        "progress": 1.0 if task.status is TaskStatus.STORED else None,
        "images": [
            {
                **image.to_dict(),
                **({"url": images.presigned_url(image.key, presign_seconds)} if images else {}),
            }
            for image in task.stored_images()
        ],
        "error": task.error.to_dict() if task.error else None,
        "createdAt": task.createdAt,
        "updatedAt": task.updatedAt,
    }


def _publish_once(
    task: TaskRecord, *, store: NotificationRecords, events: EventBus | None, presign_seconds: int
) -> None:
    """The task's EventBridge event, once, and the outbox mark off (the message is handled)."""
    published = False
    if events is not None and not task.eventPublished:
        detail = task_data(task, None, presign_seconds)  # no links: rules and logs keep events for long
        events.publish(DETAIL_TYPES[task.status], detail, resources=[])
        published = True
    if published or task.notifyPending:
        store.clear_notify_mark(
            task.taskId, webhook_url=task.webhookUrl, event_published=published, reopened=task.reopened
        )


def webhook_body(task: TaskRecord, images: ImageBlobs, presign_seconds: int) -> bytes:
    """The Standard Webhooks payload: type, timestamp, and the task with fresh links."""
    payload = {
        "type": EVENT_TYPES[task.status],
        "timestamp": task.updatedAt,
        "data": task_data(task, images, presign_seconds),
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def notify(
    task_id: str,
    *,
    store: NotificationRecords,
    images: ImageBlobs,
    presign_seconds: int,
    events: EventBus | None,
    send: WebhookSender,
    sign: Signer,
    secrets_for: Callable[[str | None], Sequence[str]],
    max_attempts: int,
    attempt_seconds: float = 0.0,
    time_left: Callable[[], float] = lambda: float("inf"),
    breaker: ClientBreaker | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> NotifyOutcome:
    """One notify message: the event once, then one webhook attempt.

    The attempts are counted on the task (`notification.attempts`), one per POST, whatever number of
    times SQS delivered the message: the last of `max_attempts` gives the webhook up. An attempt is
    made only with its whole `attempt_seconds` (the sender's timeout) still in `time_left()`, and
    while the task owner's endpoint is not resting (`breaker`); otherwise WebhookDeferred, and
    nothing is counted.
    """
    task = store.get_task(task_id)
    if task is None or task.status not in DETAIL_TYPES:
        return NotifyOutcome.NOT_ENDED
    _publish_once(task, store=store, events=events, presign_seconds=presign_seconds)
    notification = task.notification or Notification()
    if not task.webhookUrl or notification.state != "pending":
        return NotifyOutcome.PUBLISHED if notification.state != "delivered" else NotifyOutcome.DELIVERED
    secrets = secrets_for(task.owner)
    if not secrets:
        store.record_delivery(
            task.taskId,
            Notification(
                state="failed",
                attempts=notification.attempts + 1,
                lastError="no signing secret for this client",
            ).to_dict(),
            reopened=task.reopened,
        )
        return NotifyOutcome.GAVE_UP
    body = webhook_body(task, images, presign_seconds)
    client = task.owner or ""
    if breaker is not None and (wait := breaker.admit(client)) > 0:
        raise WebhookDeferred("the client's endpoint rests: it hung on a recent attempt", math.ceil(wait))
    result: Delivery | None = None
    spent: float | None = None
    try:
        if time_left() < attempt_seconds:
            raise WebhookDeferred("no time left in this invocation for a whole attempt")
        headers = sign(secrets, webhook_id(task), int(clock().timestamp()), body)
        attempts = store.begin_webhook_attempt(task.taskId)
        if attempts is None:  # delivered or given up by a copy of this message meanwhile, or deleted
            return NotifyOutcome.PUBLISHED
        started = time.monotonic()
        result = send(task.webhookUrl, body, headers)
        spent = time.monotonic() - started
    finally:
        if breaker is not None:
            breaker.settle(client, ok=result is not None and result.ok, seconds=spent)
    if result.ok:
        store.record_delivery(
            task.taskId, Notification(state="delivered", attempts=attempts).to_dict(), reopened=task.reopened
        )
        return NotifyOutcome.DELIVERED
    error = result.error or f"answered HTTP {result.status_code}"
    final = attempts >= max_attempts
    state: Literal["failed", "pending"] = "failed" if final else "pending"
    store.record_delivery(
        task.taskId,
        Notification(state=state, attempts=attempts, lastError=error[:500]).to_dict(),
        reopened=task.reopened,
    )
    if final:
        return NotifyOutcome.GAVE_UP
    raise WebhookNotDelivered(error, attempts)
