"""Lambda's SQS event source, both halves: one receive as the SQS event the function is handed, and
the delete of what the function did not report as failed. The docker-free stack's poller and
`sam local`'s drain both use these."""

from __future__ import annotations

from typing import Any


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def receive_batch(
    sqs: Any, *, queue_url: str, queue_arn: str, region: str, max_messages: int, wait_seconds: int
) -> dict[str, Any]:
    """One receive from the queue, as the SQS event Lambda hands the function (no records: empty)."""
    received = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=max_messages,
        WaitTimeSeconds=wait_seconds,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    return {"Records": [sqs_record(message, queue_arn, region) for message in received]}


def delete_succeeded(
    sqs: Any, queue_url: str, records: list[dict[str, Any]], result: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Delete the records the function did not report in batchItemFailures; the deleted ones.

    A result without batchItemFailures (the function crashed) deletes nothing: like Lambda, every
    message of the batch comes back after the visibility timeout."""
    if result is None or "batchItemFailures" not in result:
        return []
    failed = {failure["itemIdentifier"] for failure in result["batchItemFailures"]}
    done = [record for record in records if record["messageId"] not in failed]
    if done:
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(done)],
        )
    return done
