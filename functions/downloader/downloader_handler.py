"""Downloader: one SQS message per image; failures are reported per message, never for the whole batch."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError
from image_pipeline import wiring
from image_pipeline.logic.downloads import RetryLater, download_image
from image_pipeline.observability import logger_for, metrics_for
from image_pipeline.safe_fetch import FetchedImage, FetchPolicy, fetch_image
from image_pipeline.settings import DownloaderSettings, downloader_settings
from image_pipeline.task_models import DownloadJob

logger = logger_for("downloader")
metrics = metrics_for("downloader")
# Report every failed message individually, even when the whole batch failed: same retry either way,
# but the backoff below applies per message.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

# Passing failures come back after base, 2x, 4x ... seconds (capped), instead of all at once.
BACKOFF_CAP_SECONDS = 900


def retry_delay(receive_count: int, base_seconds: int) -> int:
    return min(BACKOFF_CAP_SECONDS, base_seconds * 2 ** max(0, receive_count - 1))


@cache
def fetch_policy(settings: DownloaderSettings) -> FetchPolicy:
    return FetchPolicy(
        allowed_hosts=settings.allowed_host_list,
        trusted_origins=settings.trusted_origin_list,
        max_bytes=settings.max_image_bytes,
        deadline_seconds=settings.deadline_seconds,
        max_pixels=settings.max_pixels,
    )


def fetch(url: str) -> FetchedImage:
    return fetch_image(url, fetch_policy(downloader_settings()))


def process_record(record: SQSRecord) -> str:
    settings = downloader_settings()
    job = DownloadJob.model_validate_json(record.body)  # a malformed message fails, and ends in the DLQ
    try:
        result = download_image(
            job,
            store=wiring.tasks_table(settings.tasks_table),
            blobs=wiring.image_store(settings.images_bucket),
            fetch=fetch,
            upstream=wiring.upstream_client(settings),
        )
    except (RetryLater, ClientError, BotoCoreError) as error:  # passing: the message comes back later
        receive_count = int(record.attributes.approximate_receive_count or 1)
        delay = retry_delay(receive_count, settings.retry_base_seconds)
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


def _delay_retry(record: SQSRecord, seconds: int) -> None:
    try:
        wiring.download_queue(downloader_settings().download_queue_url).delay_retry(
            record.receipt_handle, seconds
        )
    except (ClientError, BotoCoreError):
        # Without the backoff the message still returns after the queue's visibility timeout.
        logger.exception("could not delay the retry")


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=process_record, processor=processor, context=context
    )
