"""The notification side's AWS adapters: the notify queue and the event bus."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from image_pipeline.adapters.aws import AwsAdapter, client
from image_pipeline.task_records import EVENT_SOURCE, NotifyTask

MAX_VISIBILITY_SECONDS = 43200  # SQS's limit: 12 hours
MAX_DELAY_SECONDS = 900  # SQS's limit for a message's delay: 15 minutes


class NotificationQueue(AwsAdapter):
    def __init__(self, queue_url: str, *, sqs: Any = None) -> None:
        self.queue_url = queue_url
        self._sqs = sqs or client("sqs")

    def send_notify(self, task_id: str) -> None:
        self._sqs.send_message(
            QueueUrl=self.queue_url, MessageBody=NotifyTask(notifyTask=task_id).to_message()
        )

    def send_again(self, body: str, delay_seconds: int = 0) -> None:
        """A fresh copy of a message this invocation did not attempt: its receive count starts over."""
        self._sqs.send_message(
            QueueUrl=self.queue_url,
            MessageBody=body,
            DelaySeconds=max(0, min(delay_seconds, MAX_DELAY_SECONDS)),
        )

    def delay_retry(self, receipt_handle: str, seconds: int) -> None:
        self._sqs.change_message_visibility(
            QueueUrl=self.queue_url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=max(0, min(seconds, MAX_VISIBILITY_SECONDS)),
        )


class EventBus(AwsAdapter):
    """A custom EventBridge bus: source image-pipeline, detail-types "Task Stored" / "Task Failed"."""

    def __init__(self, bus_name: str, *, events: Any = None) -> None:
        self.bus_name = bus_name
        self._events = events or client("events")

    def publish(self, detail_type: str, detail: dict[str, Any], resources: Sequence[str]) -> None:
        answer = self._events.put_events(
            Entries=[
                {
                    "EventBusName": self.bus_name,
                    "Source": EVENT_SOURCE,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail),
                    "Resources": list(resources),
                }
            ]
        )
        if answer.get("FailedEntryCount"):
            problem = answer["Entries"][0]
            raise EventNotPublished(f"{problem.get('ErrorCode')}: {problem.get('ErrorMessage')}")


class EventNotPublished(RuntimeError):
    """EventBridge refused the entry; the notify message is retried."""
