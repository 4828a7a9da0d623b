"""Scheduled sweep: every unfinished task whose check is due is moved on, or looked at again later."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import timedelta
from itertools import chain
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from image_pipeline import wiring
from image_pipeline.logic.reconcile import Pacer, SweepPolicy, reconcile
from image_pipeline.observability import logger_for, metrics_for
from image_pipeline.settings import parse_at_cold_start, reconciler_settings
from image_pipeline.task_records import TaskStatus, utc_now

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = logger_for("reconciler")
parse_at_cold_start(reconciler_settings)
metrics = metrics_for("reconciler")
SAFETY_MARGIN_SECONDS = 10
# Metrics worth a CloudWatch series; a zero is not published (each series costs money every month).
REPORTED = {
    "unconfirmed": "SubmitsUnconfirmed",
    "completed": "ReconciledCompleted",
    "failed": "ReconciledFailed",
    "gave_up": "ReconciledGaveUp",
    "resumed": "ReconciledResumed",
    "requeued": "ImagesRequeued",
    "download_failed": "DownloadsGivenUp",
    "past_bound": "TasksPastBound",
    "announced": "EndsAnnouncedBySweep",
}


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = reconciler_settings()
    store = wiring.tasks_table(settings.tasks_table, settings.record_ttl_days)
    now = utc_now()
    report = reconcile(
        store.tasks_due(TaskStatus.SUBMITTED, now, settings.max_tasks),
        store.tasks_due(TaskStatus.DOWNLOADING, now, settings.max_tasks),
        store=store,
        queue=wiring.download_queue(settings.download_queue_url),
        upstream=wiring.upstream_client(settings),
        pacer=Pacer(settings.queries_per_second),
        policy=SweepPolicy(
            reconcile_after=timedelta(seconds=settings.reconcile_after_seconds),
            submit_unconfirmed_after=timedelta(seconds=settings.submit_unconfirmed_after_seconds),
            download_check_after=timedelta(seconds=settings.download_check_after_seconds),
            download_give_up=timedelta(seconds=settings.download_give_up_seconds),
        ),
        ended=chain(
            store.tasks_due(TaskStatus.STORED, now, settings.max_tasks),
            store.tasks_due(TaskStatus.FAILED, now, settings.max_tasks),
        ),
        submitting=store.tasks_due(TaskStatus.SUBMITTING, now, settings.max_tasks),
        notify_queue=wiring.notify_queue(settings.notification_queue_url),
        deadline=time.monotonic() + context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_SECONDS,
    )
    summary = asdict(report)
    logger.info("sweep done", extra=summary)
    for field, metric in REPORTED.items():
        if summary[field]:
            metrics.add_metric(name=metric, unit=MetricUnit.Count, value=summary[field])
    return summary
