"""Notifier: one SQS message per ended task; the event goes on the bus, the webhook is POSTed signed.

A webhook that is not answered 2xx comes back after base x 2^(attempt-1) seconds (capped at 12 h),
with the same webhook-id, until WEBHOOK_MAX_ATTEMPTS POSTs (counted on the task, not by SQS
receives); then the task's notification is `failed`.

It never runs out its own timeout (a timed-out invocation reports nothing, so every message of the
batch would come back): a POST is started only with its whole timeout left in the invocation, less a
margin for the writes after it. A client whose endpoint hung rests for a while (ClientBreaker): its
other notifications are deferred instead of holding up the rest of the batch. A record that is not
attempted, for either reason, is handed back as a fresh message (image_pipeline.sqs_batch), and no
attempt is counted for it.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from image_pipeline import wiring
from image_pipeline.errors import AwsFault
from image_pipeline.logic.notifications import ClientBreaker, WebhookDeferred, WebhookNotDelivered, notify
from image_pipeline.observability import logger_for, metrics_for
from image_pipeline.settings import notifier_settings, parse_at_cold_start
from image_pipeline.sqs_batch import BatchResponse, InvocationClock, QueueMessage, hand_back, process_batch
from image_pipeline.task_records import NotifyTask

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = logger_for("notifier")
parse_at_cold_start(notifier_settings)
metrics = metrics_for("notifier")
MAX_WAIT_SECONDS = 43200
# Kept back from every record's time: the writes after a POST (its outcome, the retry's backoff).
RECORD_MARGIN_SECONDS = 3.0
# A record is started (its task read, its event put on the bus) only with this much time ahead.
MIN_START_SECONDS = 2.0
clock = InvocationClock(margin_seconds=RECORD_MARGIN_SECONDS)


@cache
def client_breaker(timeout_seconds: float) -> ClientBreaker:
    """This environment's breaker: an attempt failed after half its timeout or more rests the client
    for one timeout, then 2, 4 ... (at most 15 minutes, SQS's longest delay) while it keeps hanging."""
    return ClientBreaker(slow_seconds=timeout_seconds / 2, rest_seconds=timeout_seconds)


def retry_delay(attempt: int, base_seconds: int) -> int:
    return min(MAX_WAIT_SECONDS, base_seconds * 2 ** max(0, attempt - 1))


def process_record(record: QueueMessage) -> str:
    settings = notifier_settings()
    if clock.time_left() < MIN_START_SECONDS:
        return _hand_back(record, WebhookDeferred("no time left in this invocation to start"))
    message = NotifyTask.from_message(record.body)  # a malformed message fails, and ends in the DLQ
    try:
        outcome = notify(
            message.notifyTask,
            store=wiring.tasks_table(settings.tasks_table, settings.record_ttl_days),
            images=wiring.image_store(settings.images_bucket),
            presign_seconds=settings.presign_seconds,
            events=wiring.event_bus(settings.event_bus_name) if settings.event_bus_name else None,
            send=wiring.webhook_sender(settings),
            sign=wiring.webhook_signer,
            secrets_for=lambda client_id: wiring.webhook_secrets(settings, client_id),
            max_attempts=settings.webhook_max_attempts,
            attempt_seconds=settings.webhook_timeout_seconds,
            time_left=clock.time_left,
            breaker=client_breaker(settings.webhook_timeout_seconds),
        )
    except WebhookDeferred as deferred:
        return _hand_back(record, deferred)
    except WebhookNotDelivered as error:
        delay = retry_delay(error.attempts, settings.webhook_retry_base_seconds)
        logger.warning(
            "webhook not delivered; retrying",
            extra={
                "task_id": message.notifyTask,
                "attempt": error.attempts,
                "receive_count": record.receive_count,
                "reason": str(error),
                "retry_in": delay,
            },
        )
        wiring.notification_queue(settings.notification_queue_url).delay_retry(record.receipt_handle, delay)
        raise
    logger.info(
        "task announced",
        extra={"task_id": message.notifyTask, "outcome": outcome, "receive_count": record.receive_count},
    )
    metrics.add_metric(name=f"Notify{outcome.value.title().replace('_', '')}", unit=MetricUnit.Count, value=1)
    return outcome.value


def _hand_back(record: QueueMessage, deferred: WebhookDeferred) -> str:
    """Not attempted: a fresh copy goes back on the queue (after `retry_in`), this one is done."""
    queue = wiring.notification_queue(notifier_settings().notification_queue_url)
    hand_back(
        record,
        send_again=lambda body: queue.send_again(body, deferred.retry_in),
        come_back=lambda message: _delay_retry(message, deferred.retry_in),  # one receive spent
    )
    logger.info(
        "record handed back",
        extra={"message_id": record.message_id, "reason": str(deferred), "retry_in": deferred.retry_in},
    )
    metrics.add_metric(name="NotifyHandedBack", unit=MetricUnit.Count, value=1)
    return "handed_back"


def _delay_retry(record: QueueMessage, seconds: int) -> None:
    try:
        wiring.notification_queue(notifier_settings().notification_queue_url).delay_retry(
            record.receipt_handle, seconds
        )
    except AwsFault:
        # Without it the message still returns after the queue's visibility timeout.
        logger.exception("could not set when the message comes back")


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> BatchResponse:
    clock.start(context)
    return process_batch(event, process_record, log=logger, reported=(WebhookNotDelivered,))
