"""The sweep that makes every task end: scheduled (EventBridge) in AWS, periodic in the local stack.

Every unfinished task carries a due time (`nextCheckAt`); the sweep takes the longest-overdue tasks
first and, for each, either moves it on or pushes its due time back, so tasks that cannot move never
starve the others.
- `submitting` past SUBMIT_UNCONFIRMED_AFTER_SECONDS (neither the generate reply nor a callback named
  the upstream's id, so there is nothing to ask about): it ends `failed` / submit_unconfirmed, which
  a callback that still comes later undoes.
- `submitted` past RECONCILE_AFTER_SECONDS: the upstream's task details finish it exactly as its
  callback would have; past the upstream's 14-day retention it ends `failed` / `expired`.
- `downloading` past DOWNLOAD_CHECK_AFTER_SECONDS: images still missing (their jobs dead-lettered,
  or were never sent) are queued again with freshly minted links, at doubling intervals; past
  DOWNLOAD_GIVE_UP_SECONDS after the first callback the task ends `failed` / `download_failed`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from image_pipeline.errors import RateLimited, UpstreamBadRequest, UpstreamError
from image_pipeline.logic.callbacks import (
    DEFAULT_DOWNLOAD_CHECK_AFTER,
    CallbackResult,
    handle_callback,
    resume_stranded_task,
)
from image_pipeline.logic.notifications import NotifyQueue, notify_end
from image_pipeline.logic.ports import JobQueue, SweepRecords, Upstream
from image_pipeline.task_records import SUBMIT_UNCONFIRMED, DownloadJob, TaskError, TaskRecord, utc_now
from image_pipeline.upstream_replies import (
    CallbackData,
    CallbackPayload,
    InvalidReply,
    ResultInfo,
    TaskDetails,
    error_status,
)

# The upstream keeps records 14 days; past that no callback and no poll can ever bring the images.
UPSTREAM_RETENTION = timedelta(days=14)


@dataclass(frozen=True)
class SweepPolicy:
    """When tasks are looked at again, and when a download gives up."""

    reconcile_after: timedelta = timedelta(minutes=30)
    submit_unconfirmed_after: timedelta = timedelta(hours=2)
    download_check_after: timedelta = DEFAULT_DOWNLOAD_CHECK_AFTER
    download_give_up: timedelta = timedelta(hours=6)
    longest_wait: timedelta = timedelta(hours=1)  # push-backs double up to this
    shortest_wait: timedelta = timedelta(seconds=1)

    def wait(self, base: timedelta, visits: int) -> timedelta:
        doubled = base * (2 ** min(visits, 16))
        return max(self.shortest_wait, min(doubled, self.longest_wait))


@dataclass
class SweepReport:
    checked: int = 0
    unconfirmed: int = 0  # submitting tasks the upstream never confirmed, ended submit_unconfirmed
    completed: int = 0
    failed: int = 0
    still_generating: int = 0
    gave_up: int = 0
    resumed: int = 0
    requeued: int = 0  # images queued again for a downloading task
    download_failed: int = 0
    past_bound: int = 0  # tasks past their bound that this sweep could not end (alarmed on)
    announced: int = 0  # ended tasks whose notify message the sweep sent (their sender crashed)
    errors: list[str] = field(default_factory=list)


MARKET_FAILED = 501  # the code of a Market failure callback (docs/upstream.md, Market callbacks)


def payload_from_details(details: TaskDetails) -> CallbackPayload | None:
    """The callback the upstream would have sent for these details; None while still generating."""
    if details.is_success:
        urls = details.result_urls()
        return CallbackPayload(
            code=200,
            msg="success",
            data=CallbackData(taskId=details.taskId, info=ResultInfo(result_urls=urls)),
        )
    if details.is_failure and details.state is not None:  # the Market: its callback would say 501
        return CallbackPayload(
            code=MARKET_FAILED,
            msg="the upstream reported the task failed",
            data=CallbackData(
                taskId=details.taskId, state=details.state, failCode=details.failCode, failMsg=details.failMsg
            ),
        )
    if details.is_failure:
        code = error_status(details.errorCode)
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
    submitted: Iterable[TaskRecord],
    downloading: Iterable[TaskRecord],
    *,
    store: SweepRecords,
    queue: JobQueue,
    upstream: Upstream,
    pacer: Pacer,
    policy: SweepPolicy | None = None,
    ended: Iterable[TaskRecord] = (),
    submitting: Iterable[TaskRecord] = (),
    notify_queue: NotifyQueue | None = None,
    clock: Callable[[], datetime] = utc_now,
    deadline: float | None = None,
) -> SweepReport:
    """`submitting`, `submitted` and `downloading`: tasks of that status whose check is due, most
    overdue first. `ended`: stored or failed tasks whose notify message may never have been sent."""
    policy = policy or SweepPolicy()
    report = SweepReport()
    for task in _until(deadline, submitting):
        try:
            _sweep_submitting(
                task, store=store, policy=policy, clock=clock, report=report, notify_queue=notify_queue
            )
        except Exception as error:  # an AWS fault: it stays due, the next sweep tries again
            report.errors.append(f"{task.taskId}: {type(error).__name__}: {error}")
    for task in _until(deadline, ended):
        _sweep_ended(task, store=store, notify_queue=notify_queue, clock=clock, policy=policy, report=report)
    sweep_downloading = partial(
        _sweep_downloading, store=store, queue=queue, upstream=upstream, pacer=pacer, policy=policy,
        clock=clock, report=report, notify_queue=notify_queue,
    )  # fmt: skip
    reconcile_one = partial(
        _reconcile_one, store=store, queue=queue, upstream=upstream, pacer=pacer, policy=policy,
        clock=clock, report=report, notify_queue=notify_queue,
    )  # fmt: skip
    for task in _until(deadline, downloading):  # the next run picks up the rest: they are still due
        try:
            sweep_downloading(task)
        except Exception as error:  # one task's fault must not stop the sweep
            report.errors.append(f"{task.taskId}: {type(error).__name__}: {error}")
            report.past_bound += _is_past_bound(task, clock(), policy)
            _push_back_quietly(task, store, clock() + policy.download_check_after)
    for task in _until(deadline, submitted):
        report.checked += 1
        try:
            reconcile_one(task)
        except RateLimited as error:
            report.errors.append(f"{task.taskId}: rate limited ({error.message}); stopping this sweep")
            break
        except Exception as error:  # an upstream or AWS fault: this task waits, others go on
            report.errors.append(f"{task.taskId}: {type(error).__name__}: {error}")
            report.past_bound += _is_past_bound(task, clock(), policy)
            _push_back_quietly(task, store, clock() + policy.wait(policy.reconcile_after, task.checks))
    return report


def _until(deadline: float | None, tasks: Iterable[TaskRecord]) -> Iterator[TaskRecord]:
    """The tasks, while the sweep's deadline (time.monotonic()) has not passed."""
    for task in tasks:
        if deadline is not None and time.monotonic() > deadline:
            return
        yield task


def _sweep_ended(
    task: TaskRecord,
    *,
    store: SweepRecords,
    notify_queue: NotifyQueue | None,
    clock: Callable[[], datetime],
    policy: SweepPolicy,
    report: SweepReport,
) -> None:
    """An ended task still marked for notifying: its notify message sent again, or the mark cleared."""
    if task.notifyPending and notify_queue is not None:
        # Sent (again) or not, it is looked at later: the notifier clears the mark once it has
        # handled a message, and until then the message is not sent at every sweep.
        if notify_end(task.taskId, notify_queue=notify_queue):
            report.announced += 1
        _push_back_quietly(task, store, clock() + policy.download_check_after)
    else:  # nothing left to announce: it leaves the index
        with contextlib.suppress(Exception):
            store.clear_notify_mark(task.taskId, webhook_url=task.webhookUrl, reopened=task.reopened)


def _is_past_bound(task: TaskRecord, now: datetime, policy: SweepPolicy) -> bool:
    """Whether the task should have ended by now (it is only still open because ending it failed)."""
    if task.callbackAt:
        return now - datetime.fromisoformat(task.callbackAt) >= policy.download_give_up
    return now - datetime.fromisoformat(task.createdAt) > UPSTREAM_RETENTION


def _sweep_submitting(
    task: TaskRecord,
    *,
    store: SweepRecords,
    policy: SweepPolicy,
    clock: Callable[[], datetime],
    report: SweepReport,
    notify_queue: NotifyQueue | None,
) -> None:
    now = clock()
    bound = datetime.fromisoformat(task.createdAt) + policy.submit_unconfirmed_after
    if now < bound:  # due early (the bound was shortened since it was submitted): look again then
        store.push_back(task, bound)
        return
    hours = policy.submit_unconfirmed_after.total_seconds() / 3600
    error = TaskError(
        code=SUBMIT_UNCONFIRMED,
        message=(
            f"the upstream never confirmed this task within {hours:g} h (its generate call got no "
            "answer and no callback came): it may have accepted, and charged for, it; if its callback "
            "still comes, the task moves on and you are notified again"
        ),
    )
    if store.mark_failed(task.taskId, error, now):
        report.unconfirmed += 1
        notify_end(task.taskId, notify_queue=notify_queue)


def _push_back_quietly(task: TaskRecord, store: SweepRecords, next_check_at: datetime) -> None:
    with contextlib.suppress(Exception):  # it stays due, and the next sweep tries again
        store.push_back(task, next_check_at)


def _sweep_downloading(
    task: TaskRecord,
    *,
    store: SweepRecords,
    queue: JobQueue,
    upstream: Upstream,
    pacer: Pacer,
    policy: SweepPolicy,
    clock: Callable[[], datetime],
    report: SweepReport,
    notify_queue: NotifyQueue | None = None,
) -> None:
    now = clock()
    missing = task.missing_indexes()
    if not missing:  # every image is in: a crash came between the last image and the final write
        if store.mark_stored(task.taskId, now):
            notify_end(task.taskId, notify_queue=notify_queue)
        report.completed += 1
        return
    started = datetime.fromisoformat(task.callbackAt or task.updatedAt)
    if now - started >= policy.download_give_up:
        _give_up_download(
            task, missing, now, store=store, policy=policy, report=report, notify_queue=notify_queue
        )
        return
    if resume_stranded_task(task, store=store, queue=queue, clock=clock):
        report.resumed += 1  # the callback's enqueue never completed: send every job now
    else:
        queue.send([_fresh_job(task, index, upstream, pacer) for index in missing])
        report.requeued += len(missing)
    store.push_back(task, now + policy.wait(policy.download_check_after, task.requeues), requeued=True)


def _fresh_job(task: TaskRecord, index: int, upstream: Upstream, pacer: Pacer) -> DownloadJob:
    """A job for a missing image with a newly minted link (the one it had may have expired)."""
    source = task.resultUrls[index]
    pacer.wait()
    try:
        fresh = upstream.download_url(task.upstream_id or task.taskId, source, task.model)
    except UpstreamError:
        # Past the retention, or the upstream is down: the source URL still works until it expires,
        # and the downloader renews it itself if it has; the give-up bound ends the rest.
        return DownloadJob(taskId=task.taskId, index=index, url=source)
    return DownloadJob(taskId=task.taskId, index=index, url=fresh, sourceUrl=source)


def _give_up_download(
    task: TaskRecord,
    missing: list[int],
    now: datetime,
    *,
    store: SweepRecords,
    policy: SweepPolicy,
    report: SweepReport,
    notify_queue: NotifyQueue | None,
) -> None:
    hours = policy.download_give_up.total_seconds() / 3600
    reason = task.lastDownloadError or "no download attempt was recorded"
    error = TaskError(
        code="download_failed",
        message=(
            f"image(s) {', '.join(map(str, missing))} not stored within {hours:g} h; last error: {reason}"
        ),
    )
    if store.mark_failed(task.taskId, error, now):  # False: it ended meanwhile, nothing to do
        report.download_failed += 1
        notify_end(task.taskId, notify_queue=notify_queue)


def _reconcile_one(
    task: TaskRecord,
    *,
    store: SweepRecords,
    queue: JobQueue,
    upstream: Upstream,
    pacer: Pacer,
    policy: SweepPolicy,
    clock: Callable[[], datetime],
    report: SweepReport,
    notify_queue: NotifyQueue | None = None,
) -> None:
    now = clock()
    past_retention = now - datetime.fromisoformat(task.createdAt) > UPSTREAM_RETENTION
    upstream_id = task.upstream_id
    if upstream_id is None:  # a submitted task always has one; nothing to ask the upstream without it
        raise ValueError("a submitted task without the upstream's id")
    pacer.wait()
    try:
        details = upstream.task_details(upstream_id, task.model)
    except UpstreamBadRequest:
        if not past_retention:
            raise
        details = None  # "record is null": the upstream has forgotten it
    try:
        payload = payload_from_details(details) if details else None
    except InvalidReply:  # details no callback could carry (a foreign taskId): the retention decides
        if not past_retention:
            raise
        payload = None
    if payload is None:
        if past_retention:
            expired = store.mark_failed(
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
            if expired:
                notify_end(task.taskId, notify_queue=notify_queue)
            report.gave_up += 1
        else:
            report.still_generating += 1
            store.push_back(task, now + policy.wait(policy.reconcile_after, task.checks))
        return
    result = handle_callback(
        payload,
        task=task,
        store=store,
        queue=queue,
        download_check_after=policy.download_check_after,
        notify_queue=notify_queue,
        clock=clock,
    )
    if result is CallbackResult.ACCEPTED:
        if payload.succeeded and payload.result_urls():
            report.completed += 1
        else:
            report.failed += 1
