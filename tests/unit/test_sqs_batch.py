"""SQS batches with partial responses: each message on its own, only the failed ones reported."""

from __future__ import annotations

from typing import Any

from image_pipeline.sqs_batch import QueueMessage, process_batch
from image_pipeline.task_records import DownloadJob


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def error(self, message: str, *, extra: dict[str, Any]) -> None:
        self.lines.append(("error", message, extra))

    def exception(self, message: str, *, extra: dict[str, Any]) -> None:
        self.lines.append(("exception", message, extra))


def record(message_id: str, body: str) -> dict[str, Any]:
    return {"messageId": message_id, "body": body, "receiptHandle": "r", "attributes": {}}


def test_a_message_that_cannot_be_read_is_reported_without_a_traceback_and_the_rest_go_on() -> None:
    """`"[" * 100000` is a RecursionError to json.loads: read as a malformed message, said in one line."""
    handled: list[str] = []

    def handle(message: QueueMessage) -> None:
        handled.append(DownloadJob.from_message(message.body).taskId)

    log = Log()
    good = DownloadJob(taskId="t1", index=0, url="https://x/0.png").to_message()
    event = {"Records": [record("deep", "[" * 100_000), record("fine", good), record("junk", "{")]}
    assert process_batch(event, handle, log=log) == {
        "batchItemFailures": [{"itemIdentifier": "deep"}, {"itemIdentifier": "junk"}]
    }
    assert handled == ["t1"]
    assert [(level, message, extra["message_id"]) for level, message, extra in log.lines] == [
        ("error", "malformed message: it fails at every receive and ends in the dead-letter queue", "deep"),
        ("error", "malformed message: it fails at every receive and ends in the dead-letter queue", "junk"),
    ]
    assert "nests too deeply" in log.lines[0][2]["reason"]
    assert "is not JSON" in log.lines[1][2]["reason"]


def test_any_other_failure_is_logged_with_its_traceback() -> None:
    def handle(message: QueueMessage) -> None:
        raise RuntimeError("boom")

    log = Log()
    assert process_batch({"Records": [record("m1", "{}")]}, handle, log=log) == {
        "batchItemFailures": [{"itemIdentifier": "m1"}]
    }
    assert [(level, extra) for level, _message, extra in log.lines] == [("exception", {"message_id": "m1"})]
