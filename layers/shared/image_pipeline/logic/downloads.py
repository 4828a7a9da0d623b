"""Copying one result image into S3: fetch safely, verify, store, count it once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from urllib.parse import urlsplit

from image_pipeline.adapters.image_store import image_key
from image_pipeline.errors import UpstreamError
from image_pipeline.logic.ports import ImageBlobs, TaskStore, Upstream
from image_pipeline.safe_fetch import FetchedImage, FetchError
from image_pipeline.task_models import DownloadJob, StoredImage, TaskError, TaskStatus, utc_now

# A presigned link that has expired answers one of these; the upstream mints a fresh one on request.
EXPIRED_LINK_STATUSES = frozenset({401, 403, 404, 410})

Fetcher = Callable[[str], FetchedImage]


class RetryLater(Exception):
    """A passing failure (network, 5xx, deadline, an AWS fault): the job goes back on the queue."""


class LinkGone(Exception):
    """The link expired and the upstream will not renew it (e.g. past its 14-day retention)."""


class DownloadResult(StrEnum):
    STORED = "stored"
    ALREADY_STORED = "already_stored"
    TASK_FINISHED = "task_finished"  # the task is stored or failed already: nothing to do
    REJECTED = "rejected"  # the image can never be fetched: the task is marked failed


def download_image(
    job: DownloadJob,
    *,
    store: TaskStore,
    blobs: ImageBlobs,
    fetch: Fetcher,
    upstream: Upstream | None,
    clock: Callable[[], datetime] = utc_now,
) -> DownloadResult:
    task = store.get_task(job.taskId)
    if task is None or task.status in (TaskStatus.STORED, TaskStatus.FAILED):
        return DownloadResult.TASK_FINISHED
    if str(job.index) in task.images:
        store.mark_stored(job.taskId, clock())  # finishes a run that crashed between the two writes
        return DownloadResult.ALREADY_STORED
    try:
        image = _fetch_with_fresh_link(job, fetch, upstream)
    except (FetchError, LinkGone) as error:
        if isinstance(error, FetchError) and error.retryable:
            raise RetryLater(str(error)) from error
        store.mark_failed(
            job.taskId, TaskError(code="download_rejected", message=f"image {job.index}: {error}"), clock()
        )
        return DownloadResult.REJECTED
    key = image_key(job.taskId, job.index, image.extension)
    blobs.put(
        key,
        image.body,
        content_type=image.content_type,
        sha256_hex=image.sha256,
        metadata={
            "task-id": job.taskId,
            "index": str(job.index),
            "source-host": urlsplit(image.final_url).hostname or "",
            "width": str(image.width),
            "height": str(image.height),
        },
    )
    recorded = store.add_image(
        job.taskId,
        StoredImage(
            index=job.index,
            key=key,
            contentType=image.content_type,
            bytes=len(image.body),
            sha256=image.sha256,
        ),
        clock(),
    )
    store.mark_stored(job.taskId, clock())
    return DownloadResult.STORED if recorded else DownloadResult.ALREADY_STORED


def _fetch_with_fresh_link(job: DownloadJob, fetch: Fetcher, upstream: Upstream | None) -> FetchedImage:
    try:
        return fetch(job.url)
    except FetchError as error:
        if (
            error.reason != "http_status"
            or error.status_code not in EXPIRED_LINK_STATUSES
            or upstream is None
        ):
            raise
        try:
            fresh_url = upstream.download_url(job.taskId, job.url)
        except UpstreamError as remint_error:
            if remint_error.code in (400, 404, 422):  # e.g. "Temporarily supports records within 14 days"
                raise LinkGone(
                    f"{error}; the upstream will not renew the link: {remint_error.message}"
                ) from None
            raise RetryLater(
                f"result link expired and could not be renewed: {remint_error}"
            ) from remint_error
        return fetch(fresh_url)
