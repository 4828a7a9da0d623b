"""Submitting a task: mint the callback capability first, then ask the upstream, then record the task."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote

from image_pipeline.errors import UpstreamError
from image_pipeline.logic.ports import RecordOutbox, TaskStore, Upstream
from image_pipeline.logic.records import SubmissionConflict, record_task
from image_pipeline.task_models import RecordTask, iso, utc_now
from image_pipeline.tokens import hash_token, new_callback_token, new_submission_id
from image_pipeline.upstream_models import (
    FluxGenerateRequest,
    FluxKontextOptions,
    GenerateRequest,
    GenerationOptions,
)

if TYPE_CHECKING:
    from image_pipeline.api_models import TaskRequest

__all__ = ["SubmissionConflict", "SubmittedTask", "record_task", "submit_task"]

RECORD_ATTEMPTS = 3
RECORD_BACKOFF_SECONDS = 0.5
# How long a task waits for its callback before the reconciler asks the upstream about it.
DEFAULT_RECONCILE_AFTER = timedelta(minutes=30)


class SubmittedTask(NamedTuple):
    task_id: str
    recorded: bool  # False: storage failed after the upstream accepted; the outbox records it later
    queued_for_record: bool = False  # the RecordTask message is on the queue


def upstream_fields(generation: GenerationOptions | FluxKontextOptions) -> dict[str, Any]:
    """The generate fields of a request, as recorded with the task (Flux's include its model)."""
    return generation.model_dump(exclude_none=True)


def callback_url(callback_base: str, submission_id: str, token: str) -> str:
    return f"{callback_base.rstrip('/')}/{submission_id}?token={quote(token, safe='')}"


def submit_task(
    options: TaskRequest,
    *,
    callback_base: str,
    store: TaskStore,
    upstream: Upstream,
    owner: str,
    outbox: RecordOutbox | None = None,
    reconcile_after: timedelta = DEFAULT_RECONCILE_AFTER,
    clock: Callable[[], datetime] = utc_now,
    sleep: Callable[[float], None] = time.sleep,
) -> SubmittedTask:
    """Submit upstream and record the task; returns the upstream's taskId.

    The callback can beat our own write of the task (the upstream may answer the callback before it
    answers us). It is not lost: the capability item exists before the upstream call, so the callback
    authenticates against it, binds it to its taskId and creates the task itself; record_submitted
    below then only fills in the submit's fields and never moves the task back.
    """
    submission_id = new_submission_id()
    token = new_callback_token()
    store.put_submission(submission_id, hash_token(token), clock())
    generation = options.generation()
    callback = callback_url(callback_base, submission_id, token)
    try:
        if isinstance(generation, FluxKontextOptions):
            task_id = upstream.generate_flux(
                FluxGenerateRequest(**upstream_fields(generation), callBackUrl=callback)
            )
        else:
            task_id = upstream.generate(GenerateRequest(**upstream_fields(generation), callBackUrl=callback))
    except UpstreamError as error:
        # An error envelope means no task exists upstream; a timeout (code None) may hide one whose
        # callback is still to come, so its capability stays (its TTL removes it otherwise).
        if error.code is not None:
            with contextlib.suppress(Exception):  # tidy-up only: the TTL removes it otherwise
                store.delete_submission(submission_id)
        raise
    record = RecordTask(
        recordTask=task_id,
        submissionId=submission_id,
        options=upstream_fields(generation),
        webhookUrl=options.webhookUrl,
        nextCheckAt=iso(clock() + reconcile_after),
        owner=owner,
    )
    if _record(record, store=store, clock=clock, sleep=sleep):
        return SubmittedTask(task_id, recorded=True)
    # A task the table does not know would 404 forever and no sweep would find it: hand the record to
    # SQS (another service, so rarely down at the same time), whose consumer writes it when it can.
    if outbox is None:
        return SubmittedTask(task_id, recorded=False)
    try:
        outbox.send_record(record)
    except Exception:  # the answer must still name the paid task; the caller logs it
        return SubmittedTask(task_id, recorded=False)
    return SubmittedTask(task_id, recorded=False, queued_for_record=True)


def _record(
    record: RecordTask,
    *,
    store: TaskStore,
    clock: Callable[[], datetime],
    sleep: Callable[[float], None],
) -> bool:
    """Record the task; False if storage kept failing.

    The upstream has accepted (and charged for) this generation, so failing the request now would
    make a retrying client pay twice. After a few rounds we stop trying and still answer with the
    taskId; the caller hands the record to the outbox.
    """
    for attempt in range(RECORD_ATTEMPTS):
        try:
            record_task(record, store=store, clock=clock)
            return True
        except SubmissionConflict:
            raise
        except Exception:  # an AWS fault that outlived the SDK's retries: wait, then try again
            if attempt == RECORD_ATTEMPTS - 1:
                return False
            sleep(RECORD_BACKOFF_SECONDS * 2**attempt)
    return False
