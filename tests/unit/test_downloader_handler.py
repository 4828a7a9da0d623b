"""The downloader, driven with events/sqs_download_batch.json under moto, fetching from a local server."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
import respx

from tests.conftest import load_event
from tests.http_fixtures import ImageServer, Reply, image_server, png_bytes
from tests.task_fixtures import record_task

# The events' task: our id (the jobs name it), and the upstream's (the one it renews links under).
TASK_ID = "5f0c2a4b9e8d7c6b5a4f3e2d1c0b9a88"
UPSTREAM_ID = "d231a99a9a9f1dd8f895be1b97be8065"
DOWNLOAD_URL = "https://api.kie.ai/api/v1/gpt4o-image/download-url"


@pytest.fixture
def server(aws_stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[ImageServer]:
    from image_pipeline.settings import reset_settings_cache

    with image_server() as running:
        # The local server stands in for the upstream's file host: trusted by exact origin only.
        monkeypatch.setenv("DOWNLOAD_TRUSTED_ORIGINS", running.origin)
        monkeypatch.setenv("DOWNLOAD_DEADLINE_SECONDS", "10")
        reset_settings_cache()
        yield running


@pytest.fixture
def upstream() -> Iterator[Any]:
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        yield router


def downloading_task(resources: Any, urls: list[str]) -> None:
    from image_pipeline.adapters.tasks_table import TasksTable
    from image_pipeline.task_records import utc_now

    store = TasksTable(resources.tasks_table)
    record_task(store, TASK_ID, upstream_task_id=UPSTREAM_ID)
    assert store.start_downloading(TASK_ID, UPSTREAM_ID, urls, utc_now(), utc_now())
    store.mark_jobs_enqueued(TASK_ID, utc_now())


def batch(urls: list[str], receive_count: str = "1") -> dict[str, Any]:
    event = load_event("sqs_download_batch")
    records = []
    for index, url in enumerate(urls):
        record = json.loads(json.dumps(event["Records"][index % len(event["Records"])]))
        record["messageId"] = f"message-{index}"
        record["body"] = json.dumps({"taskId": TASK_ID, "index": index, "url": url})
        record["attributes"]["ApproximateReceiveCount"] = receive_count
        records.append(record)
    return {"Records": records}


def run(event: dict[str, Any], context: Any) -> list[str]:
    from downloader_handler import lambda_handler

    return [failure["itemIdentifier"] for failure in lambda_handler(event, context)["batchItemFailures"]]


def task(resources: Any) -> Any:
    from image_pipeline.adapters.tasks_table import TasksTable

    return TasksTable(resources.tasks_table).get_task(TASK_ID)


def test_batch_stores_every_image_and_marks_the_task_stored(
    aws_stack: Any, server: ImageServer, upstream: Any, lambda_context: Any
) -> None:
    images = [png_bytes(64, 48, (255, 0, 0)), png_bytes(48, 64, (0, 0, 255))]
    urls = [server.serve(f"/s/{TASK_ID}_{i}.png", Reply(body=body)) for i, body in enumerate(images)]
    downloading_task(aws_stack, urls)

    assert run(batch(urls), lambda_context) == []

    s3 = boto3.client("s3", region_name="us-east-1")
    for index, body in enumerate(images):
        stored = s3.get_object(Bucket=aws_stack.images_bucket, Key=f"images/{TASK_ID}/{index}.png")
        assert stored["Body"].read() == body
        assert stored["ContentType"] == "image/png"
        assert stored["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest()
        assert stored["Metadata"]["task-id"] == TASK_ID
    record = task(aws_stack)
    assert record.status == "stored" and record.storedCount == 2
    assert [image.sha256 for image in record.stored_images()] == [
        hashlib.sha256(b).hexdigest() for b in images
    ]


def test_processing_a_job_twice_is_harmless(
    aws_stack: Any, server: ImageServer, upstream: Any, lambda_context: Any
) -> None:
    urls = [server.serve(f"/s/{TASK_ID}_{i}.png", Reply(body=png_bytes())) for i in range(2)]
    downloading_task(aws_stack, urls)
    assert run(batch(urls[:1]), lambda_context) == []
    assert task(aws_stack).status == "downloading"
    # The same job again (SQS at-least-once delivery), then the whole batch.
    assert run(batch(urls[:1]), lambda_context) == []
    assert run(batch(urls), lambda_context) == []
    record = task(aws_stack)
    assert record.status == "stored" and record.storedCount == 2
    keys = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=aws_stack.images_bucket)[
        "Contents"
    ]
    assert sorted(item["Key"] for item in keys) == [f"images/{TASK_ID}/0.png", f"images/{TASK_ID}/1.png"]


def test_a_passing_failure_fails_only_its_message_and_backs_off(
    aws_stack: Any, server: ImageServer, upstream: Any, lambda_context: Any
) -> None:
    good = server.serve("/s/good.png", Reply(body=png_bytes()))
    flaky = server.serve("/s/flaky.png", Reply(503, b"busy", "text/plain"), Reply(body=png_bytes(10, 10)))
    downloading_task(aws_stack, [good, flaky])
    sqs = boto3.client("sqs", region_name="us-east-1")
    sqs.send_message(QueueUrl=aws_stack.download_queue_url, MessageBody="{}")
    message = sqs.receive_message(QueueUrl=aws_stack.download_queue_url, VisibilityTimeout=0)["Messages"][0]
    event = batch([good, flaky], receive_count="3")
    event["Records"][1]["receiptHandle"] = message["ReceiptHandle"]

    assert run(event, lambda_context) == ["message-1"]
    assert task(aws_stack).storedCount == 1
    # The failed message is hidden for the backoff (10 s * 2^(3-1)), not retried at once.
    assert sqs.receive_message(QueueUrl=aws_stack.download_queue_url).get("Messages") is None
    # Redelivered later, it completes the task.
    assert run(batch([good, flaky]), lambda_context) == []
    assert task(aws_stack).status == "stored"


def test_expired_link_is_reminted_through_download_url(
    aws_stack: Any, server: ImageServer, upstream: Any, lambda_context: Any
) -> None:
    expired = server.serve(
        "/s/expired.png", Reply(403, b"<Error>Request has expired</Error>", "application/xml")
    )
    fresh = server.serve("/d/fresh.png", Reply(body=png_bytes()))
    remint = upstream.post(DOWNLOAD_URL).mock(
        return_value=httpx.Response(
            200, json={"code": 200, "msg": "success", "data": fresh + "?X-Amz-Expires=1200"}
        )
    )
    downloading_task(aws_stack, [expired])
    assert run(batch([expired]), lambda_context) == []
    # The link is renewed under the upstream's id of the task: ours means nothing to the upstream.
    assert json.loads(remint.calls.last.request.content) == {"taskId": UPSTREAM_ID, "url": expired}
    assert task(aws_stack).status == "stored"


def test_link_past_retention_fails_the_task_clearly(
    aws_stack: Any, server: ImageServer, upstream: Any, lambda_context: Any
) -> None:
    expired = server.serve("/s/old.png", Reply(404, b"gone", "text/plain"))
    upstream.post(DOWNLOAD_URL).mock(
        return_value=httpx.Response(
            200, json={"code": 422, "msg": "Temporarily supports records within 14 days"}
        )
    )
    downloading_task(aws_stack, [expired])
    assert run(batch([expired]), lambda_context) == []
    record = task(aws_stack)
    assert record.status == "failed" and "14 days" in record.error.message


@pytest.mark.parametrize(
    ("make_url", "needle"),
    [
        (
            lambda server: server.serve(
                "/s/page.png", Reply(body=b"<html>hi</html>", content_type="image/png")
            ),
            "image",
        ),
        (lambda server: "https://evil.example.com/x.png", "evil.example.com"),
        (lambda server: "http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
    ],
)
def test_an_image_that_can_never_be_fetched_fails_the_task_without_retries(
    aws_stack: Any, server: ImageServer, upstream: Any, lambda_context: Any, make_url: Any, needle: str
) -> None:
    url = make_url(server)
    downloading_task(aws_stack, [url])
    assert run(batch([url]), lambda_context) == []
    record = task(aws_stack)
    assert record.status == "failed" and record.error.code == "download_rejected"
    assert needle in record.error.message
    assert "Contents" not in boto3.client("s3", region_name="us-east-1").list_objects_v2(
        Bucket=aws_stack.images_bucket
    )


def test_malformed_message_fails_alone(
    aws_stack: Any, server: ImageServer, upstream: Any, lambda_context: Any
) -> None:
    url = server.serve("/s/ok.png", Reply(body=png_bytes()))
    downloading_task(aws_stack, [url])
    event = batch([url, url])
    event["Records"][1]["body"] = '{"taskId": 1}'
    assert run(event, lambda_context) == ["message-1"]
    assert task(aws_stack).status == "stored"


def test_s3_fault_is_retried_not_lost(
    aws_stack: Any, server: ImageServer, upstream: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from image_pipeline import wiring
    from image_pipeline.settings import reset_settings_cache

    url = server.serve("/s/ok.png", Reply(body=png_bytes()))
    downloading_task(aws_stack, [url])
    monkeypatch.setenv("IMAGES_BUCKET", "no-such-bucket")
    reset_settings_cache()
    wiring.reset()
    assert run(batch([url]), lambda_context) == ["message-0"]
    assert task(aws_stack).status == "downloading"
    monkeypatch.setenv("IMAGES_BUCKET", aws_stack.images_bucket)
    reset_settings_cache()
    wiring.reset()
    assert run(batch([url]), lambda_context) == []
    assert task(aws_stack).status == "stored"


class CountdownContext:
    """A Lambda context whose remaining time runs down with the clock, as the real one does."""

    function_name = "downloader"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:downloader"
    aws_request_id = "22222222-3333-4444-5555-666666666666"

    def __init__(self, timeout_seconds: float) -> None:
        self.ends = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.ends - time.monotonic()) * 1000))


def queued_bodies(resources: Any) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    bodies: list[dict[str, Any]] = []
    while got := sqs.receive_message(QueueUrl=resources.download_queue_url, MaxNumberOfMessages=10).get(
        "Messages"
    ):
        bodies += [json.loads(message["Body"]) for message in got]
    return bodies


def test_a_slow_host_never_makes_a_batch_of_ten_time_out(
    aws_stack: Any, server: ImageServer, upstream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from image_pipeline.settings import reset_settings_cache

    # Given a host that takes 2 s per image, a fetch deadline longer than the whole invocation,
    monkeypatch.setenv("DOWNLOAD_DEADLINE_SECONDS", "45")
    reset_settings_cache()
    urls = [
        server.serve(f"/s/{TASK_ID}_{i}.png", Reply(body=png_bytes(), delay_seconds=2.0)) for i in range(10)
    ]
    downloading_task(aws_stack, urls)
    # When a batch of 10 arrives in an invocation with 15 s left
    context = CountdownContext(timeout_seconds=15)
    failures = run(batch(urls), context)
    # Then the function answers before its timeout (a timed-out batch reports nothing: all 10 return)
    assert context.get_remaining_time_in_millis() > 0
    # and every record is accounted for: stored, reported as failed, or sent again untouched
    stored = {image.index for image in task(aws_stack).stored_images()}
    failed = {int(identifier.split("-")[1]) for identifier in failures}
    resent = {body["index"] for body in queued_bodies(aws_stack)}
    assert stored and resent, "some records ran, the ones with no time left were handed back"
    assert stored | failed | resent == set(range(10))
    # Records that never started are sent again as fresh messages, not counted as failed attempts.
    assert not resent & failed


# DynamoDB bills every write: the task's item should be written once per image and no more.
TABLE_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}


@contextlib.contextmanager
def writes_to_tasks_table(resources: Any) -> Iterator[list[str]]:
    """The write requests the functions send to the tasks table while the block runs (refused ones too)."""
    from image_pipeline.adapters import aws

    seen: list[str] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in TABLE_WRITES and params.get("TableName") == resources.tasks_table:
            seen.append(params.get("UpdateExpression", model.name))

    events = aws.client("dynamodb").meta.events
    events.register("provide-client-params.dynamodb", record)
    try:
        yield seen
    finally:
        events.unregister("provide-client-params.dynamodb", record)


@pytest.mark.parametrize("images", [1, 2, 4])
def test_the_last_image_ends_the_task_in_the_write_that_records_it(
    aws_stack: Any, server: ImageServer, upstream: Any, lambda_context: Any, images: int
) -> None:
    urls = [server.serve(f"/s/{TASK_ID}_{i}.png", Reply(body=png_bytes())) for i in range(images)]
    downloading_task(aws_stack, urls)

    with writes_to_tasks_table(aws_stack) as writes:
        assert run(batch(urls), lambda_context) == []

    record = task(aws_stack)
    assert record.status == "stored" and record.storedCount == images
    assert record.notifyPending and record.nextCheckAt  # the outbox mark, for the notifier to clear
    image_writes = [expression for expression in writes if "images." in expression]
    assert len(image_writes) == images, writes  # one per image: no separate "stored" write
    assert len(writes) == images, writes


def test_a_stale_last_image_falls_back_and_still_ends_the_task_once(aws_stack: Any) -> None:
    from image_pipeline.adapters.tasks_table import TasksTable
    from image_pipeline.task_records import StoredImage, utc_now

    store = TasksTable(aws_stack.tasks_table)
    record_task(store, TASK_ID, upstream_task_id=UPSTREAM_ID)
    assert store.start_downloading(
        TASK_ID, UPSTREAM_ID, ["https://a/0.png", "https://a/1.png"], utc_now(), utc_now()
    )
    image = StoredImage(
        index=1, key=f"images/{TASK_ID}/1.png", contentType="image/png", bytes=3, sha256="0" * 64
    )
    # Read when image 0 was not yet stored: image 1 is not the last one, the write is refused.
    assert not store.finish_with_image(TASK_ID, image, stored_before=1, images_expected=2, now=utc_now())
    assert store.get_task(TASK_ID).status == "downloading"  # type: ignore[union-attr]
    first = StoredImage(
        index=0, key=f"images/{TASK_ID}/0.png", contentType="image/png", bytes=3, sha256="1" * 64
    )
    assert store.finish_with_image(TASK_ID, first, stored_before=0, images_expected=1, now=utc_now()) is False
    assert store.add_image(TASK_ID, first, utc_now()) is not None
    assert store.finish_with_image(TASK_ID, image, stored_before=1, images_expected=2, now=utc_now())
    # A second copy of the last image (a redelivered job) changes nothing.
    assert not store.finish_with_image(TASK_ID, image, stored_before=1, images_expected=2, now=utc_now())
    ended = store.get_task(TASK_ID)
    assert ended is not None and ended.status == "stored" and ended.storedCount == 2
    assert ended.notifyPending and ended.nextCheckAt is not None


def test_a_retry_after_a_crash_between_upload_and_record_keeps_one_copy(
    aws_stack: Any, server: ImageServer, upstream: Any, lambda_context: Any
) -> None:
    """The same image fetched twice (a run that crashed after its upload, or two jobs for one image in
    concurrent batches) is stored once: S3 refuses the second upload, and the image is recorded."""
    body = png_bytes(32, 32, (0, 128, 0))
    url = server.serve(f"/s/{TASK_ID}_0.png", Reply(body=body))
    downloading_task(aws_stack, [url])
    s3 = boto3.client("s3", region_name="us-east-1")
    key = f"images/{TASK_ID}/0.png"
    # Given an earlier run uploaded the image and crashed before recording it
    s3.put_object(Bucket=aws_stack.images_bucket, Key=key, Body=body, ContentType="image/png")
    # When the job comes back
    assert run(batch([url]), lambda_context) == []
    # Then the task is stored with that image, and S3 holds one copy of it
    record = task(aws_stack)
    assert record.status == "stored" and record.storedCount == 1
    assert record.stored_images()[0].sha256 == hashlib.sha256(body).hexdigest()
    versions = s3.list_object_versions(Bucket=aws_stack.images_bucket, Prefix=key)["Versions"]
    assert len(versions) == 1


def test_a_confirm_submit_from_the_api_outbox_is_written_once_beside_the_download_jobs(
    aws_stack: Any, server: ImageServer, upstream: Any, lambda_context: Any
) -> None:
    """The API could not write the upstream's id down (DynamoDB kept failing) and queued it instead."""
    from image_pipeline.adapters.tasks_table import TasksTable
    from image_pipeline.task_records import ConfirmSubmit, iso, utc_now

    store = TasksTable(aws_stack.tasks_table)
    unconfirmed = "0123456789abcdef0123456789abcdef"
    record_task(store, unconfirmed, confirmed=False)
    url = server.serve(f"/s/{TASK_ID}_0.png", Reply(body=png_bytes()))
    downloading_task(aws_stack, [url])
    confirm = ConfirmSubmit(
        confirmTask=unconfirmed, upstreamTaskId="up-" + unconfirmed, nextCheckAt=iso(utc_now())
    ).to_message()
    event = batch([url, url, url])
    event["Records"][1]["body"] = confirm
    event["Records"][2]["body"] = json.dumps({"confirmTask": unconfirmed})  # malformed: fails alone

    assert run(event, lambda_context) == ["message-2"]
    confirmed = store.get_task(unconfirmed)
    assert confirmed is not None and confirmed.status == "submitted"
    assert confirmed.upstream_id == "up-" + unconfirmed
    assert task(aws_stack).status == "stored"
    # The same message again (SQS at-least-once) changes nothing and is not a failure.
    again = batch([url])
    again["Records"][0]["body"] = confirm
    assert run(again, lambda_context) == []
    assert store.get_task(unconfirmed) == confirmed


def test_a_download_that_finishes_after_its_task_was_deleted_leaves_no_image_behind(
    aws_stack: Any, server: ImageServer, upstream: Any, lambda_context: Any
) -> None:
    """The reconciler gave up on a slow host, the client deleted the failed task (204), and then the
    download finished: what it wrote belongs to no task, so it deletes exactly the version it wrote."""
    import threading

    from image_pipeline.adapters.image_store import ImageStore
    from image_pipeline.adapters.tasks_table import TasksTable
    from image_pipeline.logic.client_tasks import delete_task
    from image_pipeline.task_records import TaskError, utc_now

    url = server.serve(f"/s/{TASK_ID}_0.png", Reply(body=png_bytes(), delay_seconds=1.5))
    downloading_task(aws_stack, [url])
    store = TasksTable(aws_stack.tasks_table)
    outcome: list[list[str]] = []
    download = threading.Thread(target=lambda: outcome.append(run(batch([url]), lambda_context)))
    download.start()
    deadline = time.monotonic() + 10
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.requests, "the download never reached the image host"
    # While the host is slow: the reconciler ends the task, and its client deletes it.
    assert store.mark_failed(TASK_ID, TaskError(code="download_timeout", message="gave up"), utc_now())
    owner = store.get_task(TASK_ID).owner
    delete_task(TASK_ID, owner, store=store, images=ImageStore(aws_stack.images_bucket))
    download.join(30)
    assert outcome == [[]]  # the job is done, not retried
    versions = boto3.client("s3", region_name="us-east-1").list_object_versions(
        Bucket=aws_stack.images_bucket, Prefix=f"images/{TASK_ID}/"
    )
    assert versions.get("Versions", []) == [] and versions.get("DeleteMarkers", []) == []
    assert store.get_task(TASK_ID).status == "deleted"
