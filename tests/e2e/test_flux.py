"""Flux Kontext end to end on the local stack: the emulator's Flux endpoints, its single-image callbacks,
JPEG or PNG stored with the right type, failures, and the reconciler through Flux record-info."""

from __future__ import annotations

import hashlib

import boto3
import httpx
import pytest

from devstack.local.stack import LocalStack, StackConfig
from tests.e2e.conftest import stack_fixture, wait_for, wait_for_status

pytestmark = pytest.mark.e2e


stack = stack_fixture(
    StackConfig(
        api_port=0,
        generation_seconds=0.3,
        callback_retry_schedule=(0.5, 0.5, 0.5),
        reconcile_interval_seconds=1.0,
        reconcile_after_seconds=2.0,
    )
)


@pytest.mark.parametrize(
    ("output_format", "extension", "content_type"),
    [("jpeg", "jpg", "image/jpeg"), ("png", "png", "image/png")],
)
def test_a_flux_task_is_stored_in_its_format_byte_for_byte(
    stack: LocalStack, api: httpx.Client, output_format: str, extension: str, content_type: str
) -> None:
    body = {
        "model": "flux-kontext-max",
        "prompt": "a lantern at dusk",
        "aspectRatio": "1:1",
        "outputFormat": output_format,
    }
    submitted = api.post("/tasks", json=body)
    assert submitted.status_code == 202, submitted.text
    task = wait_for_status(api, submitted.json()["taskId"], {"stored", "failed"})
    assert task["status"] == "stored" and task["model"] == "flux-kontext-max"
    [image] = task["images"]
    assert image["key"] == f"images/{task['taskId']}/0.{extension}" and image["contentType"] == content_type
    assert stack.resources is not None
    s3 = boto3.client("s3", endpoint_url=stack.endpoint_url, region_name="us-east-1")
    stored = s3.get_object(Bucket=stack.resources.images_bucket, Key=image["key"])["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == image["sha256"]
    served = {
        entry["sha256"] for entry in stack.emulator.inspect_task(stack.upstream_id(task["taskId"]))["images"]
    }
    assert image["sha256"] in served


def test_a_flux_failure_ends_the_task_failed_with_its_code(api: httpx.Client) -> None:
    submitted = api.post("/tasks", json={"model": "flux-kontext-pro", "prompt": "nope [fault:fail=501]"})
    task = wait_for_status(api, submitted.json()["taskId"], {"stored", "failed"})
    assert task["status"] == "failed" and task["error"]["code"] == 501


def test_a_flux_task_whose_callback_never_comes_is_finished_by_the_reconciler(
    stack: LocalStack, api: httpx.Client
) -> None:
    submitted = api.post("/tasks", json={"model": "flux-kontext-pro", "prompt": "lost [fault:drop]"})
    task = wait_for_status(api, submitted.json()["taskId"], {"stored", "failed"}, timeout=60)
    assert task["status"] == "stored" and len(task["images"]) == 1
    # The drop is recorded just after the upstream's task ends: wait for it (all() of none is true).
    deliveries = wait_for(lambda: stack.emulator.deliveries(stack.upstream_id(task["taskId"])))
    assert all(delivery.get("dropped") for delivery in deliveries)


def test_a_4o_field_with_flux_is_refused_and_nothing_is_generated(
    stack: LocalStack, api: httpx.Client
) -> None:
    before = len(stack.emulator.core.task_ids())
    answer = api.post("/tasks", json={"model": "flux-kontext-pro", "prompt": "a lantern", "nVariants": 2})
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "nVariants"
    assert len(stack.emulator.core.task_ids()) == before
