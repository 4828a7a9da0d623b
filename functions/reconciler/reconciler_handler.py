"""Scheduled sweep: finish tasks whose callback never came, resume stranded enqueues."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from image_pipeline import wiring
from image_pipeline.logic.callbacks import IN_FLIGHT_GRACE
from image_pipeline.logic.reconcile import Pacer, reconcile
from image_pipeline.observability import logger_for, metrics_for
from image_pipeline.settings import reconciler_settings
from image_pipeline.task_models import TaskStatus, utc_now

logger = logger_for("reconciler")
metrics = metrics_for("reconciler")
SAFETY_MARGIN_SECONDS = 10


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = reconciler_settings()
    store = wiring.tasks_table(settings.tasks_table)
    now = utc_now()
    report = reconcile(
        store.tasks_in_status(
            TaskStatus.SUBMITTED,
            now - timedelta(seconds=settings.reconcile_after_seconds),
            settings.max_tasks,
        ),
        store.tasks_in_status(TaskStatus.DOWNLOADING, now - IN_FLIGHT_GRACE, settings.max_tasks),
        store=store,
        queue=wiring.download_queue(settings.download_queue_url),
        upstream=wiring.upstream_client(settings),
        pacer=Pacer(settings.queries_per_second),
        deadline=time.monotonic() + context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_SECONDS,
    )
    summary = asdict(report)
    logger.info("sweep done", extra=summary)
    for name in ("completed", "failed", "gave_up", "resumed"):
        metrics.add_metric(
            name=f"Reconciled{name.title().replace('_', '')}", unit=MetricUnit.Count, value=summary[name]
        )
    return summary
