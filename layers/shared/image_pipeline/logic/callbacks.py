"""Receiving a callback: authenticate, deduplicate by task with one conditional write, enqueue downloads.

Each task's callback URL carries our task id and a capability minted for that task alone; the callback
body names the upstream's task id, which the task learns from its first callback if the generate reply
never told it (and which every later callback must then repeat).

Nothing is lost between DynamoDB and SQS: the task's first outcome is written with jobsEnqueued=false
and flipped to true only after every job is on the queue. If the send fails, the callback answers 5xx
so the upstream delivers again, and a later delivery (or the reconciler's sweep) finds the task
downloading with jobsEnqueued=false and sends the jobs again. We chose this over a DynamoDB Streams
outbox because it needs no extra moving part and the downloader is idempotent, so a job sent twice
costs one extra GET and no duplicate.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum

from image_pipeline.errors import CallbackRejected
from image_pipeline.logic.notifications import NotifyQueue, notify_end
from image_pipeline.logic.ports import JobQueue, OutcomeRecords
from image_pipeline.task_records import (
    MAX_IMAGES_PER_TASK,
    SUBMIT_UNCONFIRMED,
    DownloadJob,
    Reopen,
    TaskError,
    TaskRecord,
    TaskStatus,
    utc_now,
)
from image_pipeline.tokens import check_webhook_signature, is_our_task_id, token_matches
from image_pipeline.upstream_replies import CallbackPayload, InvalidReply, is_storable_text

# A delivery that finds jobs not yet enqueued re-sends them only if the first attempt said it failed,
# or if it started longer ago than any callback invocation can run (it crashed): never while a
# concurrent first delivery is still sending.
IN_FLIGHT_GRACE = timedelta(seconds=30)
# The reconciler's first look at a downloading task: after the queue's own retries (5 receives with
# backoff) have had their chance.
DEFAULT_DOWNLOAD_CHECK_AFTER = timedelta(minutes=10)
FOREIGN_TASK = "this callback URL belongs to another upstream task; a callback URL can only report its own"
DEFAULT_FAILURE_MESSAGES = {
    400: "the prompt or an input image was refused (content policy, size or format)",
    451: "an input image in filesUrl could not be downloaded",
    500: "the upstream failed internally; try again later",
    501: "image generation failed",
}


class CallbackResult(StrEnum):
    ACCEPTED = "accepted"  # first delivery: the task moved on
    DUPLICATE = "duplicate"  # a later delivery: answered 200, nothing done
    RESUMED = "resumed"  # a later delivery that found jobs not yet enqueued and enqueued them


def parse_callback(body: str | bytes | None, max_body_bytes: int) -> CallbackPayload:
    raw = body.encode("utf-8", errors="surrogatepass") if isinstance(body, str) else (body or b"")
    if len(raw) > max_body_bytes:
        raise CallbackRejected(413, f"callback body is {len(raw)} bytes; the limit is {max_body_bytes}")
    try:
        document = json.loads(raw)
    except RecursionError:
        raise CallbackRejected(400, "callback body nests too deeply to be a callback") from None
    except ValueError as error:
        raise CallbackRejected(400, f"callback body is not JSON: {error}") from None
    if not is_storable_text(document):
        raise CallbackRejected(400, "callback body contains invalid Unicode (a lone surrogate)")
    try:
        payload = CallbackPayload.from_json(document)
    except InvalidReply as error:
        problems = "; ".join(error.problems)
        raise CallbackRejected(400, f"callback body does not match the callback format: {problems}") from None
    if len(payload.result_urls()) > MAX_IMAGES_PER_TASK:
        raise CallbackRejected(400, f"callback lists more than {MAX_IMAGES_PER_TASK} images")
    return payload


def authenticate(
    payload: CallbackPayload,
    *,
    task_id: str,
    token: str | None,
    headers: Mapping[str, str],
    store: OutcomeRecords,
    hmac_key: str = "",
    hmac_window_seconds: int = 300,
) -> TaskRecord:
    """Raise CallbackRejected unless the callback proves it is the one we asked for. Changes nothing.

    Returns the task whose callback URL it came to: the URL's capability was minted for that task
    alone, so it can only ever move that task, and only with the upstream id it has (or first learns).
    """
    if hmac_key:
        lowered = {name.lower(): value for name, value in headers.items()}
        problem = check_webhook_signature(
            hmac_key,
            payload.task_id,
            lowered.get("x-webhook-timestamp"),
            lowered.get("x-webhook-signature"),
            window_seconds=hmac_window_seconds,
        )
        if problem:
            raise CallbackRejected(401, f"callback signature rejected: {problem}")
    if not token:
        raise CallbackRejected(401, "callback URL carries no token")
    if not is_our_task_id(task_id):
        raise CallbackRejected(404, "unknown callback URL")
    task = store.get_task(task_id)
    if task is None or not task.tokenHash:
        raise CallbackRejected(404, "unknown callback URL")
    if not token_matches(token, task.tokenHash):
        raise CallbackRejected(403, "callback token does not match")
    if task.upstream_id is not None and task.upstream_id != payload.task_id:
        raise CallbackRejected(403, FOREIGN_TASK)
    return task


def handle_callback(
    payload: CallbackPayload,
    *,
    task: TaskRecord,
    store: OutcomeRecords,
    queue: JobQueue,
    download_check_after: timedelta = DEFAULT_DOWNLOAD_CHECK_AFTER,
    notify_queue: NotifyQueue | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> CallbackResult:
    """Apply an authenticated callback to its task. Only the first outcome has an effect."""
    for _read in range(2):
        result = _apply_outcome(
            payload,
            task=task,
            store=store,
            queue=queue,
            download_check_after=download_check_after,
            notify_queue=notify_queue,
            clock=clock,
        )
        if result is not None:
            return result
        # Refused: a duplicate, or the task changed since it was read (the reconciler ended it
        # submit_unconfirmed meanwhile, which this outcome may still reopen): read it once more.
        fresh = store.get_task(task.taskId)
        if fresh is None or _reopens(fresh) == _reopens(task) or fresh.status is TaskStatus.DELETED:
            task = fresh or task
            break
        task = fresh
    if payload.succeeded and payload.result_urls():
        return _resume_if_stranded(task, store=store, queue=queue, clock=clock, grace=IN_FLIGHT_GRACE)
    return CallbackResult.DUPLICATE


def _reopens(task: TaskRecord) -> Reopen | None:
    """A task that ended submit_unconfirmed is the one ending a late outcome may still undo."""
    if task.status is TaskStatus.FAILED and task.error and task.error.code == SUBMIT_UNCONFIRMED:
        return Reopen(webhook=bool(task.webhookUrl))
    return None


def _apply_outcome(
    payload: CallbackPayload,
    *,
    task: TaskRecord,
    store: OutcomeRecords,
    queue: JobQueue,
    download_check_after: timedelta,
    notify_queue: NotifyQueue | None,
    clock: Callable[[], datetime],
) -> CallbackResult | None:
    """The first-outcome write for this callback; None when the task refused it."""
    reopen = _reopens(task)
    urls = payload.result_urls()
    now = clock()
    if payload.succeeded and urls:
        if store.start_downloading(
            task.taskId, payload.task_id, urls, now, now + download_check_after, reopen=reopen
        ):
            _enqueue(task.taskId, urls, store=store, queue=queue, clock=clock)
            return CallbackResult.ACCEPTED
        return None
    error = TaskError(
        code=payload.failure_code if not payload.succeeded else "no_images",
        message=payload.failure_message
        if not payload.succeeded and payload.failure_message
        else _failure_message(payload),
    )
    if store.fail_from_callback(task.taskId, payload.task_id, error, now, reopen=reopen):
        notify_end(task.taskId, notify_queue=notify_queue)
        return CallbackResult.ACCEPTED
    return None


def _failure_message(payload: CallbackPayload) -> str:
    if payload.succeeded:
        return "the upstream reported success but listed no images"
    return DEFAULT_FAILURE_MESSAGES.get(payload.code, f"the upstream reported failure code {payload.code}")


def _enqueue(
    task_id: str, urls: list[str], *, store: OutcomeRecords, queue: JobQueue, clock: Callable[[], datetime]
) -> None:
    try:
        queue.send([DownloadJob(taskId=task_id, index=index, url=url) for index, url in enumerate(urls)])
    except Exception:
        store.mark_enqueue_failed(task_id, clock())  # lets the next delivery resume at once
        raise
    store.mark_jobs_enqueued(task_id, clock())


def is_stranded(task: TaskRecord, now: datetime, grace: timedelta) -> bool:
    """Downloading, but its jobs never made it onto the queue."""
    if task.status is not TaskStatus.DOWNLOADING or task.jobsEnqueued:
        return False
    started = datetime.fromisoformat(task.callbackAt or task.updatedAt)
    return task.enqueueFailed or now - started >= grace


def _resume_if_stranded(
    task: TaskRecord | None,
    *,
    store: OutcomeRecords,
    queue: JobQueue,
    clock: Callable[[], datetime],
    grace: timedelta,
) -> CallbackResult:
    if task is not None and is_stranded(task, clock(), grace):
        _enqueue(task.taskId, task.resultUrls, store=store, queue=queue, clock=clock)
        return CallbackResult.RESUMED
    return CallbackResult.DUPLICATE


def resume_stranded_task(
    task: TaskRecord, *, store: OutcomeRecords, queue: JobQueue, clock: Callable[[], datetime] = utc_now
) -> bool:
    """The reconciler's sweep: re-send the jobs of a task whose enqueue never completed."""
    resumed = _resume_if_stranded(task, store=store, queue=queue, clock=clock, grace=IN_FLIGHT_GRACE)
    return resumed is CallbackResult.RESUMED
