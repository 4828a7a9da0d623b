"""Downloader: one SQS message per image; failures are reported per message, never for the whole batch.

It never runs out its own timeout (image_pipeline.logic.download_budget): each record gets at most the
invocation's remaining time minus a margin; a record that cannot start in time is sent again as a fresh
message (its receive count starts over) and counted done.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from image_pipeline import wiring
from image_pipeline.errors import AwsFault
from image_pipeline.fetched_image import FetchedImage
from image_pipeline.logic.download_budget import STORE_MARGIN_SECONDS, can_start, fetch_deadline, retry_delay
from image_pipeline.logic.downloads import RetryLater, download_image
from image_pipeline.logic.records import confirm_submit
from image_pipeline.observability import logger_for, metrics_for
from image_pipeline.settings import DownloaderSettings, downloader_settings, parse_at_cold_start
from image_pipeline.sqs_batch import BatchResponse, InvocationClock, QueueMessage, hand_back, process_batch
from image_pipeline.task_records import ConfirmSubmit, download_queue_message

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = logger_for("downloader")
parse_at_cold_start(downloader_settings)
metrics = metrics_for("downloader")

# Seconds this invocation can still spend on fetching (image_pipeline.sqs_batch).
clock = InvocationClock(margin_seconds=STORE_MARGIN_SECONDS)


def fetch(url: str) -> FetchedImage:
    """One safe fetch, bounded by the policy's deadline and by what is left of the invocation."""
    policy = wiring.fetch_policy(downloader_settings())
    deadline = fetch_deadline(policy.deadline_seconds, clock.time_left())
    if deadline < policy.deadline_seconds:
        policy = dataclasses.replace(policy, deadline_seconds=deadline)
    return wiring.safe_fetch(url, policy)


def process_record(record: QueueMessage) -> str:
    settings = downloader_settings()
    if not can_start(clock.time_left()):
        return _hand_back(record)
    job = download_queue_message(record.body)  # a malformed message fails, and ends in the DLQ
    if isinstance(job, ConfirmSubmit):
        return _confirm_submit(job, settings)
    try:
        result = download_image(
            job,
            store=wiring.tasks_table(settings.tasks_table, settings.record_ttl_days),
            blobs=wiring.image_store(settings.images_bucket),
            fetch=fetch,
            upstream=wiring.upstream_client(settings),
            time_left=clock.time_left,
            notify_queue=wiring.notify_queue(settings.notification_queue_url),
        )
    except (RetryLater, AwsFault) as error:  # passing: the message comes back later
        delay = retry_delay(record.receive_count, settings.retry_base_seconds)
        logger.warning(
            "download will be retried",
            extra={"task_id": job.taskId, "index": job.index, "reason": str(error), "retry_in": delay},
        )
        _delay_retry(record, delay)
        raise
    logger.info("download done", extra={"task_id": job.taskId, "index": job.index, "result": result})
    metrics.add_metric(
        name=f"Download{result.value.title().replace('_', '')}", unit=MetricUnit.Count, value=1
    )
    return result.value


def _hand_back(record: QueueMessage) -> str:
    """Not started for lack of time: a fresh copy goes back on the queue, this one is done."""
    hand_back(
        record,
        send_again=wiring.download_queue(downloader_settings().download_queue_url).send_again,
        come_back=lambda message: _delay_retry(message, 0),  # not lost: it comes back now, one receive spent
    )
    logger.info("record handed back for lack of time", extra={"message_id": record.message_id})
    return "handed_back"


def _confirm_submit(message: ConfirmSubmit, settings: DownloaderSettings) -> str:
    """The API's outbox: write the upstream id the API could not (DynamoDB faults are retried by SQS)."""
    store = wiring.tasks_table(settings.tasks_table, settings.record_ttl_days)
    written = confirm_submit(message, store=store)
    logger.info(
        "submit confirmed from the outbox"
        if written
        else "submit already confirmed (its callback came first)",
        extra={"task_id": message.confirmTask, "upstream_task_id": message.upstreamTaskId},
    )
    return "confirmed" if written else "already_confirmed"


def _delay_retry(record: QueueMessage, seconds: int) -> None:
    try:
        wiring.download_queue(downloader_settings().download_queue_url).delay_retry(
            record.receipt_handle, seconds
        )
    except AwsFault:
        # Without the backoff the message still returns after the queue's visibility timeout.
        logger.exception("could not delay the retry")


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> BatchResponse:
    clock.start(context)
    # Every failed message is reported on its own, even when all failed: the backoff is per message.
    return process_batch(event, process_record, log=logger, reported=(RetryLater, AwsFault))
