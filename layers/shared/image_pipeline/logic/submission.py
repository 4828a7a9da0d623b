"""Submitting a task: mint the callback capability first, then ask the upstream, then record the task."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from urllib.parse import quote

from image_pipeline.errors import UpstreamError
from image_pipeline.logic.ports import TaskStore, Upstream
from image_pipeline.task_models import utc_now
from image_pipeline.tokens import hash_token, new_callback_token, new_submission_id
from image_pipeline.upstream_models import GenerateRequest, GenerationOptions


class SubmissionConflict(RuntimeError):
    """The upstream returned a taskId whose capability is already bound elsewhere (should never happen)."""


def callback_url(callback_base: str, submission_id: str, token: str) -> str:
    return f"{callback_base.rstrip('/')}/{submission_id}?token={quote(token, safe='')}"


def submit_task(
    options: GenerationOptions,
    *,
    callback_base: str,
    store: TaskStore,
    upstream: Upstream,
    clock: Callable[[], datetime] = utc_now,
) -> str:
    """Submit upstream and record the task; returns the upstream's taskId.

    The callback can beat our own write of the task (the upstream may answer the callback before it
    answers us). It is not lost: the capability item exists before the upstream call, so the callback
    authenticates against it, binds it to its taskId and creates the task itself; record_submitted
    below then only fills in the submit's fields and never moves the task back.
    """
    submission_id = new_submission_id()
    token = new_callback_token()
    store.put_submission(submission_id, hash_token(token), clock())
    request = GenerateRequest(
        **options.model_dump(exclude_none=True), callBackUrl=callback_url(callback_base, submission_id, token)
    )
    try:
        task_id = upstream.generate(request)
    except UpstreamError as error:
        # An error envelope means no task exists upstream; a timeout (code None) may hide one whose
        # callback is still to come, so its capability stays (its TTL removes it otherwise).
        if error.code is not None:
            store.delete_submission(submission_id)
        raise
    if not store.bind_submission(submission_id, task_id):
        raise SubmissionConflict(
            f"callback capability {submission_id} is bound to another task than {task_id}"
        )
    store.record_submitted(task_id, submission_id, options.model_dump(exclude_none=True), clock())
    return task_id
