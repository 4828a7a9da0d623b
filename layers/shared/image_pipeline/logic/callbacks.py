"""Receiving a callback: authenticate, deduplicate by taskId with one conditional write, enqueue downloads.

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
from image_pipeline.logic.notifications import NotifyQueue, announce_end
from image_pipeline.logic.ports import JobQueue, TaskStore
from image_pipeline.task_models import (
    MAX_IMAGES_PER_TASK,
    DownloadJob,
    TaskError,
    TaskRecord,
    TaskStatus,
    utc_now,
)
from image_pipeline.tokens import check_webhook_signature, is_submission_id, token_matches
from image_pipeline.upstream_replies import CallbackPayload, InvalidReply, is_storable_text

# A delivery that finds jobs not yet enqueued re-sends them only if the first attempt said it failed,
# or if it started longer ago than any callback invocation can run (it crashed): never while a
# concurrent first delivery is still sending.
IN_FLIGHT_GRACE = timedelta(seconds=30)
# The reconciler's first look at a downloading task: after the queue's own retries (5 receives with
# backoff) have had their chance.
DEFAULT_DOWNLOAD_CHECK_AFTER = timedelta(minutes=10)
FOREIGN_TASK = "this task belongs to another submission; a callback URL can only report its own task"
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
    submission_id: str,
    token: str | None,
    headers: Mapping[str, str],
    store: TaskStore,
    hmac_key: str = "",
    hmac_window_seconds: int = 300,
) -> str | None:
    """Raise CallbackRejected unless the callback proves it is the one we asked for. Changes nothing.

    Returns the taskId the capability is already bound to (None when the callback beat the submit).
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
    if not is_submission_id(submission_id):
        raise CallbackRejected(404, "unknown callback URL")
    submission = store.get_submission(submission_id)
    if submission is None:
        raise CallbackRejected(404, "unknown callback URL")
    if not token_matches(token, submission.get("tokenHash", "")):
        raise CallbackRejected(403, "callback token does not match")
    bound_task = submission.get("taskId")
    if bound_task is not None and bound_task != payload.task_id:
        raise CallbackRejected(403, "this callback URL belongs to another task")
    return str(bound_task) if bound_task is not None else None


def handle_callback(
    payload: CallbackPayload,
    *,
    submission_id: str,
    bound_task_id: str | None,
    store: TaskStore,
    queue: JobQueue,
    download_check_after: timedelta = DEFAULT_DOWNLOAD_CHECK_AFTER,
    notices: NotifyQueue | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> CallbackResult:
    """Apply an authenticated callback. Only the first delivery for a taskId has an effect, and only a
    callback of the task's own submission has any: a capability proves nothing about other tasks."""
    task_id = payload.task_id
    bound_here = False
    if bound_task_id is None:
        # The capability is not tied to a task yet: the callback beat the submit's record, or the
        # submit never learnt its taskId. It may only claim a task no other submission owns.
        _refuse_if_foreign(store.get_task(task_id), submission_id, store=store, bound_here=False)
        if not store.bind_submission(submission_id, task_id):
            raise CallbackRejected(403, "this callback URL belongs to another task")
        bound_here = True
    urls = payload.result_urls()
    if payload.succeeded and urls:
        now = clock()
        if store.start_downloading(task_id, submission_id, urls, now, now + download_check_after):
            _enqueue(task_id, urls, store=store, queue=queue, clock=clock)
            return CallbackResult.ACCEPTED
        task = store.get_task(task_id)
        _refuse_if_foreign(task, submission_id, store=store, bound_here=bound_here)
        return _resume_if_stranded(task, store=store, queue=queue, clock=clock, grace=IN_FLIGHT_GRACE)
    error = TaskError(
        code=payload.code if not payload.succeeded else "no_images",
        message=payload.msg if not payload.succeeded and payload.msg else _failure_message(payload),
    )
    if store.fail_from_callback(task_id, submission_id, error, clock()):
        announce_end(task_id, notices=notices)
        return CallbackResult.ACCEPTED
    _refuse_if_foreign(store.get_task(task_id), submission_id, store=store, bound_here=bound_here)
    return CallbackResult.DUPLICATE


def _refuse_if_foreign(
    task: TaskRecord | None, submission_id: str, *, store: TaskStore, bound_here: bool
) -> None:
    if task is None or task.submissionId in (None, submission_id):
        return
    if bound_here:  # undo our own binding: the refused callback leaves nothing behind
        store.unbind_submission(submission_id, task.taskId)
    raise CallbackRejected(403, FOREIGN_TASK)


def _failure_message(payload: CallbackPayload) -> str:
    if payload.succeeded:
        return "the upstream reported success but listed no images"
    return DEFAULT_FAILURE_MESSAGES.get(payload.code, f"the upstream reported failure code {payload.code}")


def _enqueue(
    task_id: str, urls: list[str], *, store: TaskStore, queue: JobQueue, clock: Callable[[], datetime]
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
    store: TaskStore,
    queue: JobQueue,
    clock: Callable[[], datetime],
    grace: timedelta,
) -> CallbackResult:
    if task is not None and is_stranded(task, clock(), grace):
        _enqueue(task.taskId, task.resultUrls, store=store, queue=queue, clock=clock)
        return CallbackResult.RESUMED
    return CallbackResult.DUPLICATE


def resume_stranded_task(
    task: TaskRecord, *, store: TaskStore, queue: JobQueue, clock: Callable[[], datetime] = utc_now
) -> bool:
    """The reconciler's sweep: re-send the jobs of a task whose enqueue never completed."""
    resumed = _resume_if_stranded(task, store=store, queue=queue, clock=clock, grace=IN_FLIGHT_GRACE)
    return resumed is CallbackResult.RESUMED
