"""Copying one result image into S3: fetch safely, verify, store, count it once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from urllib.parse import urlsplit

from image_pipeline.errors import UpstreamError
from image_pipeline.fetched_image import FetchedImage, FetchError
from image_pipeline.logic.notifications import NotifyQueue, notify_end
from image_pipeline.logic.ports import ImageBlobs, ImageRecords, Upstream
from image_pipeline.task_records import (
    DownloadJob,
    StoredImage,
    TaskError,
    TaskRecord,
    TaskStatus,
    image_key,
    utc_now,
)

# A presigned link that has expired answers one of these; the upstream mints a fresh one on request.
EXPIRED_LINK_STATUSES = frozenset({401, 403, 404, 410})

Fetcher = Callable[[str], FetchedImage]
# Renewing a link is one upstream call (its client timeout) and then a whole fetch: not started
# unless the invocation has that much time left.
REMINT_NEEDS_SECONDS = 15.0


class RetryLater(Exception):
    """A passing failure (network, 5xx, deadline, an AWS fault): the job goes back on the queue."""


class LinkGone(Exception):
    """The link expired and the upstream will not renew it (e.g. past its 14-day retention)."""


class DownloadResult(StrEnum):
    STORED = "stored"
    ALREADY_STORED = "already_stored"
    TASK_FINISHED = "task_finished"  # the task is stored or failed already: nothing to do
    NOT_OURS = "not_ours"  # the job does not copy an image the task currently lists: dropped
    REJECTED = "rejected"  # the image can never be fetched: the task is marked failed


def download_image(
    job: DownloadJob,
    *,
    store: ImageRecords,
    blobs: ImageBlobs,
    fetch: Fetcher,
    upstream: Upstream | None,
    clock: Callable[[], datetime] = utc_now,
    time_left: Callable[[], float] = lambda: float("inf"),
    notify_queue: NotifyQueue | None = None,
) -> DownloadResult:
    task = store.get_task(job.taskId)
    if task is None or task.status in (TaskStatus.STORED, TaskStatus.FAILED, TaskStatus.DELETED):
        return DownloadResult.TASK_FINISHED
    if not _copies_a_listed_image(job, task):
        return DownloadResult.NOT_OURS
    if str(job.index) in task.images:
        # finishes a run that crashed between the two writes
        if store.mark_stored(job.taskId, clock()):
            notify_end(job.taskId, notify_queue=notify_queue)
        return DownloadResult.ALREADY_STORED
    try:
        image = _fetch_with_fresh_link(job, fetch, upstream, time_left, task)
    except RetryLater as error:
        store.note_download_error(job.taskId, f"image {job.index}: {error}", clock())
        raise
    except (FetchError, LinkGone) as error:
        if isinstance(error, FetchError) and error.retryable:
            store.note_download_error(job.taskId, f"image {job.index}: {error}", clock())
            raise RetryLater(str(error)) from error
        if store.mark_failed(
            job.taskId, TaskError(code="download_rejected", message=f"image {job.index}: {error}"), clock()
        ):
            notify_end(job.taskId, notify_queue=notify_queue)
        return DownloadResult.REJECTED
    return _store_and_record(
        job, task, image, store=store, blobs=blobs, clock=clock, notify_queue=notify_queue
    )


def _store_and_record(
    job: DownloadJob,
    task: TaskRecord,
    image: FetchedImage,
    *,
    store: ImageRecords,
    blobs: ImageBlobs,
    clock: Callable[[], datetime],
    notify_queue: NotifyQueue | None,
) -> DownloadResult:
    """Put the fetched image in S3 and count it once on the task (the last one ends it)."""
    key = image_key(job.taskId, job.index, image.extension)
    # None when the key already holds this file (an earlier run crashed before recording it, or the
    # job ran twice at once): one copy in S3 either way, and it is recorded below all the same.
    version = blobs.put(
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
    stored = StoredImage(
        index=job.index,
        key=key,
        contentType=image.content_type,
        bytes=len(image.body),
        sha256=image.sha256,
    )
    # The last missing image ends the task in the write that records it. From a stale read (another
    # image landed meanwhile) that write is refused, and the image is counted the usual way.
    if store.finish_with_image(
        job.taskId,
        stored,
        stored_before=task.storedCount,
        images_expected=task.imagesExpected,
        now=clock(),
    ):
        notify_end(job.taskId, notify_queue=notify_queue)
        return DownloadResult.STORED
    recorded = store.add_image(job.taskId, stored, clock())
    if recorded is None and version is not None:
        _drop_if_unowned(job, key, version, store=store, blobs=blobs)
    # add_image returns the count, so only the image that completes it ends the task. An image
    # recorded by someone else (None) may have been the last one: finish it as that one would.
    if (recorded is None or recorded.storedCount >= recorded.imagesExpected) and store.mark_stored(
        job.taskId, clock()
    ):
        notify_end(job.taskId, notify_queue=notify_queue)
    return DownloadResult.STORED if recorded else DownloadResult.ALREADY_STORED


def _drop_if_unowned(
    job: DownloadJob, key: str, version: str, *, store: ImageRecords, blobs: ImageBlobs
) -> None:
    """The task refused the image it was fetched for: it ended (failed, or deleted by its client) while
    the fetch ran. The version this run wrote then belongs to no task, and DELETE /tasks may already have
    listed the task's versions without it: delete exactly that version, so nothing outlives the task."""
    task = store.get_task(job.taskId)
    if task is not None and task.status in (TaskStatus.DOWNLOADING, TaskStatus.STORED):
        recorded = task.images.get(str(job.index))
        if recorded is not None and recorded.key == key:
            return  # recorded under this key after all (by a run that read before this one wrote)
    blobs.delete_version(key, version)


def _copies_a_listed_image(job: DownloadJob, task: TaskRecord) -> bool:
    """Only the task's own result URLs are copied, and only while it is downloading them: a job left
    over from a callback that was later discarded must not store anything."""
    if task.status is not TaskStatus.DOWNLOADING:
        return False
    return job.index < len(task.resultUrls) and task.resultUrls[job.index] == job.result_url


def _fetch_with_fresh_link(
    job: DownloadJob,
    fetch: Fetcher,
    upstream: Upstream | None,
    time_left: Callable[[], float],
    task: TaskRecord,
) -> FetchedImage:
    try:
        return fetch(job.url)
    except FetchError as error:
        if (
            error.reason != "http_status"
            or error.status_code not in EXPIRED_LINK_STATUSES
            or upstream is None
        ):
            raise
        if time_left() < REMINT_NEEDS_SECONDS:
            raise RetryLater(f"{error}; no time left in this invocation to renew the link") from None
        try:
            # The upstream knows the task by its own id, never by ours.
            fresh_url = upstream.download_url(task.upstream_id or job.taskId, job.result_url, task.model)
        except UpstreamError as remint_error:
            if remint_error.code in (400, 404, 422):  # e.g. "Temporarily supports records within 14 days"
                raise LinkGone(
                    f"{error}; the upstream will not renew the link: {remint_error.message}"
                ) from None
            raise RetryLater(
                f"result link expired and could not be renewed: {remint_error}"
            ) from remint_error
        return fetch(fresh_url)
