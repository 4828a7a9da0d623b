"""Our own records read back: queue messages and table items keep their exact shape, and a malformed one
is refused with a message that names each field that is wrong."""

from __future__ import annotations

from typing import Any

import pytest
from image_pipeline.task_records import (
    ConfirmSubmit,
    DownloadJob,
    MalformedRecord,
    NotifyTask,
    StoredImage,
    TaskError,
    TaskRecord,
    TaskStatus,
)

IMAGE = {"index": 0, "key": "images/t1/0.png", "contentType": "image/png", "bytes": 68, "sha256": "ab"}


def test_queue_messages_are_compact_json_and_read_back_equal() -> None:
    # Given one message of each kind; When written and read back
    job = DownloadJob(taskId="t1", index=1, url="https://x/é.png")
    minted = DownloadJob(taskId="t1", index=0, url="https://x/fresh.png", sourceUrl="https://x/0.png")
    record = ConfirmSubmit(confirmTask="t1", upstreamTaskId="up1", nextCheckAt="2026-01-01")
    notice = NotifyTask(notifyTask="t1")
    # Then the bodies are what the queues always carried (no spaces, UTF-8, a job without sourceUrl)
    assert job.to_message() == '{"taskId":"t1","index":1,"url":"https://x/é.png"}'
    assert notice.to_message() == '{"notifyTask":"t1"}'
    assert record.to_message() == '{"confirmTask":"t1","upstreamTaskId":"up1","nextCheckAt":"2026-01-01"}'
    # And each reads back as itself
    assert DownloadJob.from_message(job.to_message()) == job
    assert DownloadJob.from_message(minted.to_message()).result_url == "https://x/0.png"
    assert ConfirmSubmit.from_message(record.to_message()) == record
    assert NotifyTask.from_message(notice.to_message().encode()) == notice


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ("not json", ["DownloadJob message is not JSON"]),
        ("[1, 2]", ["must be a JSON object, got list"]),
        ('{"taskId": 1}', ["taskId: must be str, got int", "index: is required", "url: is required"]),
        ('{"taskId": "t", "index": true, "url": "u"}', ["index: must be int, got bool"]),
        ('{"taskId": "t", "index": "0", "url": "u"}', ["index: must be int, got str"]),
        ('{"taskId": "t", "index": 0, "url": "u", "extra": 1}', ["extra: unexpected field"]),
        ('{"taskId": "t", "index": 16, "url": "u"}', ["index: must be 0 to 15, got 16"]),
        ('{"taskId": "t", "index": -1, "url": "u"}', ["index: must be 0 to 15, got -1"]),
        ('{"taskId": "t", "index": 0, "url": "u", "sourceUrl": 5}', ["sourceUrl: must be str | None"]),
    ],
)
def test_a_malformed_download_job_is_refused_naming_what_is_wrong(body: str, needles: list[str]) -> None:
    with pytest.raises(MalformedRecord) as refused:
        DownloadJob.from_message(body)
    for needle in needles:
        assert needle in str(refused.value)


def test_a_confirm_message_needs_its_fields() -> None:
    with pytest.raises(MalformedRecord, match="upstreamTaskId: is required"):
        ConfirmSubmit.from_message('{"confirmTask": "t1", "nextCheckAt": "x"}')
    with pytest.raises(MalformedRecord, match="notifyTask: must be str, got NoneType"):
        NotifyTask.from_message('{"notifyTask": null}')


@pytest.mark.parametrize("kind", [DownloadJob, ConfirmSubmit, NotifyTask])
@pytest.mark.parametrize("body", ["[" * 100_000, '{"a":' * 100_000])
def test_a_message_nested_too_deeply_is_malformed_not_a_recursion_error(kind: Any, body: str) -> None:
    with pytest.raises(MalformedRecord, match=f"{kind.__name__} message nests too deeply"):
        kind.from_message(body)


def item(**changes: Any) -> dict[str, Any]:
    stored = {
        "pk": "task#t1",
        "ttl": 1,
        "taskId": "t1",
        "status": "downloading",
        "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-01T00:00:01.000Z",
        "imagesExpected": 2,
        "images": {"0": IMAGE},
        "error": {"code": 500, "message": "boom"},
        "notification": {"state": "failed", "attempts": 3, "lastError": "refused"},
        "progress": 1,
    }
    return {**stored, **changes}


def test_a_table_item_reads_back_with_its_nested_records_and_without_the_tables_own_attributes() -> None:
    task = TaskRecord.from_item(item())
    assert task.status is TaskStatus.DOWNLOADING
    assert task.images == {"0": StoredImage(**IMAGE)}
    assert task.missing_indexes() == [1]
    assert task.error == TaskError(code=500, message="boom")
    assert task.notification is not None and task.notification.attempts == 3
    assert task.progress == 1.0 and isinstance(task.progress, float)
    assert task.options == {} and task.resultUrls == [] and task.nextCheckAt is None
    assert task.stored_images()[0].to_dict() == IMAGE


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"status": "lost"}, "'lost' is not a valid TaskStatus"),
        ({"status": None}, "None is not a valid TaskStatus"),
        ({"storedCount": "2"}, "storedCount: must be int, got str"),
        ({"taskId": None}, "taskId: must be str, got NoneType"),
        ({"images": {"0": {"index": 0}}}, "image 0 is malformed: key: is required"),
        ({"images": ["x"]}, "images: must be an object"),
        ({"error": "boom"}, "error must be an object, got str"),
    ],
)
def test_a_malformed_table_item_is_refused_naming_the_item_and_the_field(
    changes: dict[str, Any], needle: str
) -> None:
    with pytest.raises(MalformedRecord) as refused:
        TaskRecord.from_item(item(**changes))
    assert "task item task#t1" in str(refused.value)
    assert needle in str(refused.value)


def test_an_item_without_status_or_creation_time_is_refused() -> None:
    stored = item()
    del stored["status"]
    with pytest.raises(MalformedRecord, match="status: is required"):
        TaskRecord.from_item(stored)
    stored = item()
    del stored["createdAt"]
    with pytest.raises(MalformedRecord, match="createdAt: is required"):
        TaskRecord.from_item(stored)


def test_a_long_failure_message_is_kept_to_500_characters() -> None:
    error = TaskError(code="download_rejected", message="x" * 2000)
    assert len(error.message) == 500 and error.message.endswith("…")
    assert error.to_dict() == {"code": "download_rejected", "message": error.message}
