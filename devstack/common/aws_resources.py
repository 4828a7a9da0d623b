"""Creates the table, queues and bucket that template.yaml declares, in moto or any AWS endpoint.

Idempotent: what exists already is left as it is, so it can point at a long-lived local endpoint.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from devstack.common.template import load_template, resources_of_type


@dataclass(frozen=True)
class QueueResources:
    url: str
    arn: str
    dead_letter_url: str
    dead_letter_id: str
    max_receive_count: int
    visibility_timeout: int


@dataclass(frozen=True)
class StackResources:
    tasks_table: str
    idempotency_table: str
    download_queue_url: str
    download_queue_arn: str
    dead_letter_queue_url: str
    images_bucket: str
    max_receive_count: int
    visibility_timeout: int
    queues: dict[str, QueueResources] = field(default_factory=dict)  # every queue with a redrive policy
    event_buses: dict[str, str] = field(default_factory=dict)  # logical id -> bus name


def _logical(resource_type: str, template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    found = resources_of_type(resource_type, template)
    if not found:
        raise LookupError(f"template.yaml declares no {resource_type}")
    return next(iter(found.items()))


def create_table(dynamodb: Any, name: str, properties: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if properties.get("GlobalSecondaryIndexes"):
        arguments["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
    try:
        dynamodb.create_table(**arguments)
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceInUseException":
            raise
        return
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
        )


def create_stack_resources(session: Any, *, prefix: str = "imagegen-local") -> StackResources:
    template = load_template()
    dynamodb = session.client("dynamodb")
    sqs = session.client("sqs")
    s3 = session.client("s3")

    table_names = {}
    for table_id, table in resources_of_type("AWS::DynamoDB::Table", template).items():
        table_names[table_id] = f"{prefix}-{table_id}"
        create_table(dynamodb, table_names[table_id], table)

    queues = {
        queue_id: _create_queue_pair(
            sqs, prefix, queue_id, queue, resources_of_type("AWS::SQS::Queue", template)
        )
        for queue_id, queue in resources_of_type("AWS::SQS::Queue", template).items()
        if "RedrivePolicy" in queue
    }
    main_id = "DownloadQueue" if "DownloadQueue" in queues else next(iter(queues))
    main = queues[main_id]
    buses = {}
    for bus_id in resources_of_type("AWS::Events::EventBus", template):
        buses[bus_id] = f"{prefix}-{bus_id}"
        events = session.client("events")
        with contextlib.suppress(events.exceptions.ResourceAlreadyExistsException):
            events.create_event_bus(Name=buses[bus_id])

    bucket_id, bucket_properties = _logical("AWS::S3::Bucket", template)
    bucket = f"{prefix}-{bucket_id}".lower()
    try:
        region = session.region_name or "us-east-1"
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    versioning = bucket_properties.get("VersioningConfiguration", {}).get("Status")
    if versioning:  # as deployed: every overwrite keeps the old version (DELETE /tasks removes them all)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": versioning})
    return StackResources(
        queues=queues,
        event_buses=buses,
        tasks_table=table_names["TasksTable"],
        idempotency_table=table_names["IdempotencyTable"],
        download_queue_url=main.url,
        download_queue_arn=main.arn,
        dead_letter_queue_url=main.dead_letter_url,
        images_bucket=bucket,
        max_receive_count=main.max_receive_count,
        visibility_timeout=main.visibility_timeout,
    )


def _create_queue_pair(
    sqs: Any, prefix: str, queue_id: str, queue: dict[str, Any], every_queue: dict[str, dict[str, Any]]
) -> QueueResources:
    """A queue with a redrive policy, and its dead-letter queue, as the template declares them."""
    dead_id = queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    dead_url = sqs.create_queue(
        QueueName=f"{prefix}-{dead_id}",
        Attributes={
            "MessageRetentionPeriod": str(every_queue[dead_id].get("MessageRetentionPeriod", 345600))
        },
    )["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    max_receive = int(queue["RedrivePolicy"]["maxReceiveCount"])
    visibility = int(queue["VisibilityTimeout"])
    url = sqs.create_queue(
        QueueName=f"{prefix}-{queue_id}",
        Attributes={
            "VisibilityTimeout": str(visibility),
            "MessageRetentionPeriod": str(queue.get("MessageRetentionPeriod", 345600)),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": max_receive}),
        },
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return QueueResources(url, arn, dead_url, dead_id, max_receive, visibility)
