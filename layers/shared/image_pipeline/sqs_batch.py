"""SQS batches with partial responses (ReportBatchItemFailures): each message is handled on its own,
and only the ones that failed are reported, by message id, so only they come back.

Written out rather than Powertools' BatchProcessor: this loop is all the downloader and the notifier
need, and importing Powertools' batch utility (with the data classes of every event source and
asyncio) added about 24 ms of CPU to their cold start.

Neither function may run out its own timeout: a timed-out invocation reports nothing, so every
message of the batch would come back and count a receive. Each gives its records a time budget from
:class:`InvocationClock`, and a record that cannot start in time is handed back (:func:`hand_back`):
a fresh copy goes on the queue, its receive count starting over, and this one is done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from image_pipeline.task_records import MalformedRecord

BatchResponse = dict[str, list[dict[str, str]]]


@dataclass(frozen=True)
class QueueMessage:
    """What a handler needs of one SQS record."""

    message_id: str
    body: str
    receipt_handle: str
    receive_count: int  # 1 on the first delivery

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> QueueMessage:
        attributes = record.get("attributes") or {}
        return cls(
            message_id=record["messageId"],
            body=record.get("body", ""),
            receipt_handle=record.get("receiptHandle", ""),
            receive_count=int(attributes.get("ApproximateReceiveCount") or 1),
        )


def process_batch(
    event: Mapping[str, Any],
    handle: Callable[[QueueMessage], object],
    *,
    log: logging.Logger | logging.LoggerAdapter[Any] | Any,
    reported: tuple[type[BaseException], ...] = (),
) -> BatchResponse:
    """Run `handle` on every record; a record whose handler raised is reported as failed.

    `reported`: exceptions the handler has already logged (a planned retry); a message that is not one
    of ours (MalformedRecord) is logged in one line, with why; any other exception is logged here with
    its traceback, since nothing else would say why the message came back.
    """
    failures: list[dict[str, str]] = []
    for record in event.get("Records", []):
        message = QueueMessage.from_record(record)
        try:
            handle(message)
        except reported:
            failures.append({"itemIdentifier": message.message_id})
        except MalformedRecord as error:  # no retry can read it: its traceback would say nothing more
            log.error("malformed message: it fails at every receive and ends in the dead-letter queue",
                      extra={"message_id": message.message_id, "reason": str(error)})  # fmt: skip
            failures.append({"itemIdentifier": message.message_id})
        except Exception:
            log.exception("message failed; it comes back after its visibility timeout",
                          extra={"message_id": message.message_id})  # fmt: skip
            failures.append({"itemIdentifier": message.message_id})
    return {"batchItemFailures": failures}


class RemainingTime(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


class InvocationClock:
    """The current invocation's end, as the Lambda context reports it, less a margin kept back for the
    work a record still does after its longest step (writes after a fetch or a POST)."""

    def __init__(self, margin_seconds: float) -> None:
        self.margin_seconds = margin_seconds
        self.ends_at = float("inf")

    def start(self, context: RemainingTime) -> None:
        self.ends_at = time.monotonic() + context.get_remaining_time_in_millis() / 1000

    def time_left(self) -> float:
        """Seconds this invocation can still give a record's longest step."""
        return self.ends_at - time.monotonic() - self.margin_seconds


class NoTimeToStart(Exception):
    """The record was not started and could not be handed back: it returns after its visibility."""


def hand_back(
    message: QueueMessage,
    *,
    send_again: Callable[[str], None],
    come_back: Callable[[QueueMessage], None],
) -> None:
    """Not started: `send_again(body)` puts a fresh copy on the queue (its receive count starts over)
    and this message is done (not reported). If the copy cannot be sent, `come_back(message)` sets
    when this one is visible again (one receive spent) and NoTimeToStart reports it failed."""
    try:
        send_again(message.body)
    except Exception as error:
        come_back(message)
        raise NoTimeToStart("no time left to start this record and it could not be re-sent") from error
