"""SQS adapter: download jobs go out in batches, and every entry's result is checked.

The queue also carries the rare ConfirmSubmit message: a task the upstream accepted whose upstream id
the API could not write to DynamoDB, written by the downloader once DynamoDB answers again (SQS keeps
it and retries it meanwhile).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from image_pipeline.adapters.aws import AwsAdapter, client
from image_pipeline.errors import EnqueueError
from image_pipeline.task_records import ConfirmSubmit, DownloadJob

SQS_BATCH_LIMIT = 10


class DownloadQueue(AwsAdapter):
    def __init__(self, queue_url: str, *, sqs: Any = None) -> None:
        self.queue_url = queue_url
        self._sqs = sqs or client("sqs")

    def send(self, jobs: Sequence[DownloadJob]) -> None:
        for start in range(0, len(jobs), SQS_BATCH_LIMIT):
            self._send_batch(jobs[start : start + SQS_BATCH_LIMIT])

    def _send_batch(self, jobs: Sequence[DownloadJob]) -> None:
        pending = {str(position): job for position, job in enumerate(jobs)}
        problems: list[str] = []
        for _attempt in range(2):  # one immediate retry of the entries SQS refused
            result = self._sqs.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": entry_id, "MessageBody": job.to_message()} for entry_id, job in pending.items()
                ],
            )
            problems = [
                f"{failed.get('Code')}: {failed.get('Message', '')}" for failed in result.get("Failed", [])
            ]
            pending = {failed["Id"]: pending[failed["Id"]] for failed in result.get("Failed", [])}
            if not pending:
                return
        raise EnqueueError(f"{len(pending)} download job(s) were not enqueued ({'; '.join(problems)})")

    def delay_retry(self, receipt_handle: str, seconds: int) -> None:
        """Back off a failed job: it comes back after `seconds` instead of the queue's visibility timeout."""
        self._sqs.change_message_visibility(
            QueueUrl=self.queue_url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=max(0, min(seconds, 43200)),
        )

    def send_confirm(self, message: ConfirmSubmit) -> None:
        self._sqs.send_message(QueueUrl=self.queue_url, MessageBody=message.to_message())

    def send_again(self, body: str) -> None:
        """A fresh copy of a message this invocation had no time to start: its receive count starts over."""
        self._sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)
