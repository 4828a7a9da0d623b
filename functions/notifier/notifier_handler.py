"""Notifier: one SQS message per ended task; the event goes on the bus, the webhook is POSTed signed.

A webhook that is not answered 2xx comes back after base x 2^(attempt-1) seconds (capped at 12 h),
with the same webhook-id, until WEBHOOK_MAX_ATTEMPTS; then the task's notification is `failed`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from image_pipeline import wiring
from image_pipeline.logic.notifications import WebhookNotDelivered, notify
from image_pipeline.observability import logger_for, metrics_for
from image_pipeline.settings import notifier_settings
from image_pipeline.sqs_batch import BatchResponse, QueueMessage, process_batch
from image_pipeline.task_models import NotifyTask

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = logger_for("notifier")
metrics = metrics_for("notifier")
MAX_WAIT_SECONDS = 43200


def retry_delay(attempt: int, base_seconds: int) -> int:
    return min(MAX_WAIT_SECONDS, base_seconds * 2 ** max(0, attempt - 1))


def process_record(record: QueueMessage) -> str:
    settings = notifier_settings()
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
        )
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


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> BatchResponse:
    return process_batch(event, process_record, log=logger, reported=(WebhookNotDelivered,))
