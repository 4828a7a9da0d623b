"""Market models end to end, over HTTP, against the local stack and the emulated Market: a single-image
and a multi-image model stored in their own formats, a failure, and a dropped callback the reconciler
finishes through recordInfo."""

from __future__ import annotations

import hashlib

import boto3
import httpx
import pytest

from devstack.local.stack import LocalStack, StackConfig
from tests.e2e.conftest import stack_fixture, wait_for_status
from tests.http_fixtures import Reply, image_server, png_bytes

pytestmark = pytest.mark.e2e

market_stack = stack_fixture(
    StackConfig(
        api_port=0,
        generation_seconds=0.3,
        callback_retry_schedule=(0.5, 0.5, 0.5),
        reconcile_interval_seconds=1.0,
        reconcile_after_seconds=2.0,
        extra_environment={"CLIENT_GENERATE_SHARE_PERCENT": "100"},
    )
)


def stored_bytes(stack: LocalStack, key: str) -> bytes:
    assert stack.resources is not None
    s3 = boto3.client("s3", endpoint_url=stack.endpoint_url, region_name="us-east-1")
    body: bytes = s3.get_object(Bucket=stack.resources.images_bucket, Key=key)["Body"].read()
    return body


def generated(stack: LocalStack, task_id: str) -> dict[int, str]:
    return {
        image["index"]: image["sha256"]
        for image in stack.emulator.inspect_task(stack.upstream_id(task_id))["images"]
    }


def submit(api: httpx.Client, model: str, **given: object) -> str:
    answer = api.post("/tasks", json={"model": model, "input": given})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["taskId"])


def test_a_single_image_model_is_stored_in_the_format_it_asked_for(market_stack: LocalStack) -> None:
    with httpx.Client(base_url=market_stack.api_url, timeout=30) as api:
        task_id = submit(api, "google/nano-banana", prompt="a red fox in snow", output_format="jpeg")
        task = wait_for_status(api, task_id, {"stored", "failed"}, timeout=60)
        assert task["status"] == "stored" and task["model"] == "google/nano-banana", task
        [image] = task["images"]
        assert image["contentType"] == "image/jpeg" and image["key"] == f"images/{task_id}/0.jpg"
        body = stored_bytes(market_stack, image["key"])
        assert body[:3] == b"\xff\xd8\xff"  # JPEG by its magic bytes
        assert hashlib.sha256(body).hexdigest() == image["sha256"] == generated(market_stack, task_id)[0]
        listed = api.get("/tasks", params={"status": "stored"}).json()["tasks"]
        assert any(entry["taskId"] == task_id and entry["model"] == "google/nano-banana" for entry in listed)


def test_a_multi_image_model_stores_every_image_it_returns(market_stack: LocalStack) -> None:
    with httpx.Client(base_url=market_stack.api_url, timeout=30) as api:
        task_id = submit(
            api, "google/imagen4-fast", prompt="four lighthouses", num_images=4, aspect_ratio="1:1"
        )
        task = wait_for_status(api, task_id, {"stored", "failed"}, timeout=60)
        assert task["status"] == "stored" and len(task["images"]) == 4, task
        assert {image["index"]: image["sha256"] for image in task["images"]} == generated(
            market_stack, task_id
        )
        # The models without a format field keep what the bytes say (the emulator draws PNG)
        assert {image["contentType"] for image in task["images"]} == {"image/png"}


def test_a_market_failure_ends_the_task_failed_with_501_and_the_reason(market_stack: LocalStack) -> None:
    with httpx.Client(base_url=market_stack.api_url, timeout=30) as api:
        task_id = submit(api, "google/nano-banana", prompt="doomed [fault:fail=500]")
        task = wait_for_status(api, task_id, {"stored", "failed"}, timeout=60)
        assert task["status"] == "failed" and task["error"]["code"] == 501, task
        assert "failCode 500" in task["error"]["message"] and task["images"] == []


def test_a_dropped_market_callback_is_finished_by_the_reconciler_through_record_info(
    market_stack: LocalStack,
) -> None:
    with httpx.Client(base_url=market_stack.api_url, timeout=30) as api:
        task_id = submit(
            api,
            "google/imagen4-fast",
            prompt="lost in the post [fault:drop]",
            num_images=2,
        )
        task = wait_for_status(api, task_id, {"stored", "failed"}, timeout=60)
        assert task["status"] == "stored" and len(task["images"]) == 2, task
        assert {image["index"]: image["sha256"] for image in task["images"]} == generated(
            market_stack, task_id
        )
        deliveries = market_stack.emulator.deliveries(market_stack.upstream_id(task_id))
        assert deliveries and all(delivery.get("dropped") for delivery in deliveries)


def test_an_edit_model_takes_its_image_urls_and_stores_its_result(market_stack: LocalStack) -> None:
    day = png_bytes(64, 36)
    with image_server() as host, httpx.Client(base_url=market_stack.api_url, timeout=30) as api:
        day_url = host.serve("/day.png", Reply(200, day))
        task_id = submit(
            api,
            "seedream/4.5-edit",
            prompt="make it night",
            image_urls=[day_url],
            aspect_ratio="16:9",
            quality="basic",
        )
        request = market_stack.emulator.inspect_task(market_stack.upstream_id(task_id))["request"]
        assert request["input"]["image_urls"] == [day_url]
        task = wait_for_status(api, task_id, {"stored", "failed"}, timeout=60)
        assert task["status"] == "stored" and len(task["images"]) == 1, task
    fetched = market_stack.emulator.inspect_task(market_stack.upstream_id(task_id))["inputs"]
    assert [(entry["field"], entry["sha256"]) for entry in fetched] == [
        ("input.image_urls[0]", hashlib.sha256(day).hexdigest())
    ]
