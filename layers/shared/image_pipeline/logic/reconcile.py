"""The sweep for missed callbacks: ask the upstream about tasks that waited too long, and finish them
exactly as their callback would have. Scheduled (EventBridge) in AWS, periodic in the local stack."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from image_pipeline.errors import RateLimited, UpstreamBadRequest, UpstreamError
from image_pipeline.logic.callbacks import CallbackResult, handle_callback, resume_stranded_task
from image_pipeline.logic.ports import JobQueue, TaskStore, Upstream
from image_pipeline.task_models import TaskError, TaskRecord, utc_now
from image_pipeline.upstream_models import CallbackData, CallbackPayload, ResultInfo, TaskDetails

# The upstream keeps records 14 days; past that no callback and no poll can ever bring the images.
UPSTREAM_RETENTION = timedelta(days=14)


@dataclass
class SweepReport:
    checked: int = 0
    completed: int = 0
    failed: int = 0
    still_generating: int = 0
    gave_up: int = 0
    resumed: int = 0
    errors: list[str] = field(default_factory=list)


def payload_from_details(details: TaskDetails) -> CallbackPayload | None:
    """The callback the upstream would have sent for these details; None while still generating."""
    if details.is_success:
        urls = details.response.urls() if details.response else []
        return CallbackPayload(
            code=200,
            msg="success",
            data=CallbackData(taskId=details.taskId, info=ResultInfo(result_urls=urls)),
        )
    if details.is_failure:
        raw_code = str(details.errorCode or "")
        code = int(raw_code) if raw_code.isdigit() else 500
        return CallbackPayload(
            code=code if code != 200 else 500,
            msg=details.errorMessage or "the upstream reported the task failed",
            data=CallbackData(taskId=details.taskId, info=None),
        )
    return None


class Pacer:
    """At most `per_second` upstream queries per second across the sweep (and so at most one per task)."""

    def __init__(
        self,
        per_second: float,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = 1.0 / per_second
        self._sleep = sleep
        self._monotonic = monotonic
        self._next = monotonic()

    def wait(self) -> None:
        now = self._monotonic()
        if now < self._next:
            self._sleep(self._next - now)
        self._next = max(now, self._next) + self.interval


def reconcile(
    pending: Iterable[TaskRecord],
    stranded: Iterable[TaskRecord],
    *,
    store: TaskStore,
    queue: JobQueue,
    upstream: Upstream,
    pacer: Pacer,
    clock: Callable[[], datetime] = utc_now,
    deadline: float | None = None,
) -> SweepReport:
    """`pending`: tasks still submitted past the threshold. `stranded`: downloading tasks to re-check."""
    report = SweepReport()
    for task in stranded:
        if resume_stranded_task(task, store=store, queue=queue, clock=clock):
            report.resumed += 1
    for task in pending:
        if deadline is not None and time.monotonic() > deadline:
            break  # the next run picks up the rest
        report.checked += 1
        try:
            _reconcile_one(
                task, store=store, queue=queue, upstream=upstream, pacer=pacer, clock=clock, report=report
            )
        except RateLimited as error:
            report.errors.append(f"{task.taskId}: rate limited ({error.message}); stopping this sweep")
            break
        except UpstreamError as error:
            report.errors.append(f"{task.taskId}: {error}")
    return report


def _reconcile_one(
    task: TaskRecord,
    *,
    store: TaskStore,
    queue: JobQueue,
    upstream: Upstream,
    pacer: Pacer,
    clock: Callable[[], datetime],
    report: SweepReport,
) -> None:
    now = clock()
    past_retention = now - datetime.fromisoformat(task.createdAt) > UPSTREAM_RETENTION
    pacer.wait()
    try:
        details = upstream.task_details(task.taskId)
    except UpstreamBadRequest:
        if not past_retention:
            raise
        details = None  # "record is null": the upstream has forgotten it
    payload = payload_from_details(details) if details else None
    if payload is None:
        if past_retention:
            store.mark_failed(
                task.taskId,
                TaskError(
                    code="expired",
                    message=(
                        "no result arrived within the upstream's 14-day retention; "
                        "the images cannot be recovered"
                    ),
                ),
                now,
            )
            report.gave_up += 1
        else:
            report.still_generating += 1
        return
    result = handle_callback(
        payload,
        submission_id=task.submissionId or "",
        bound_task_id=task.taskId,
        store=store,
        queue=queue,
        clock=clock,
    )
    if result is CallbackResult.ACCEPTED:
        if payload.succeeded and payload.result_urls():
            report.completed += 1
        else:
            report.failed += 1
