"""Every task ends, and only its own submission moves it: end to end on the local stack, time-compressed
through the same setting variables a user would set in the shell (the stack passes them on)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import boto3
import httpx
import pytest

from devstack.local.stack import LocalStack
from tests.e2e.conftest import stack_fixture, wait_for, wait_for_status

pytestmark = pytest.mark.e2e

COMPRESSED = {
    "LOCAL_API_PORT": "0",
    "EMULATOR_GENERATION_SECONDS": "0.3",
    "EMULATOR_CALLBACK_RETRY_SCHEDULE": "0.5,0.5,0.5",
    "LOCAL_RECONCILE_INTERVAL_SECONDS": "1",
    "RECONCILE_AFTER_SECONDS": "2",
    "KIE_API_TIMEOUT_SECONDS": "1",
    "DOWNLOAD_RETRY_BASE_SECONDS": "0",
    "DOWNLOAD_CHECK_AFTER_SECONDS": "2",
    "DOWNLOAD_GIVE_UP_SECONDS": "15",
}


stack = stack_fixture(environment=COMPRESSED)


def emulator_task_with_prompt(stack: LocalStack, marker: str) -> dict[str, Any]:
    for task_id in stack.emulator.core.task_ids():
        info = stack.emulator.inspect_task(task_id)
        if info and marker in (info["request"]["prompt"] or ""):
            return info
    raise AssertionError(f"the emulator has no task whose prompt contains {marker!r}")


def environment_in_a_worker(stack: LocalStack, function: str, names: list[str]) -> dict[str, str | None]:
    """What `function` reads from its environment when the stack's workers invoke it (the probe runs
    with that function's spec, so its environment is applied exactly as for the function)."""
    assert stack.pool is not None
    probe = f"Probe{function}"
    stack.pool.specs[probe] = dataclasses.replace(
        stack.pool.specs[function], logical_id=probe, module="tests.e2e.worker_probe", function="environment"
    )
    try:
        seen: dict[str, str | None] = stack.pool.invoke(probe, {"names": names})
    finally:
        del stack.pool.specs[probe]
    return seen


def test_the_stack_passes_the_shells_setting_variables_to_the_functions(stack: LocalStack) -> None:
    # template.yaml gives the reconciler DOWNLOAD_GIVE_UP_SECONDS and DOWNLOAD_CHECK_AFTER_SECONDS (the
    # callback the latter) of its own: the shell's values must win over them in every function.
    names = ["DOWNLOAD_GIVE_UP_SECONDS", "DOWNLOAD_CHECK_AFTER_SECONDS", "KIE_API_TIMEOUT_SECONDS"]
    assert stack.pool is not None
    for function in sorted(stack.pool.specs):
        seen = environment_in_a_worker(stack, function, names)
        assert seen == {name: COMPRESSED[name] for name in names}, function


def test_a_leaked_callback_url_can_only_move_its_own_task(stack: LocalStack, api: httpx.Client) -> None:
    # Given a victim task, submitted and still generating
    victim = api.post("/tasks", json={"prompt": "the victim [fault:stall]", "size": "1:1"})
    assert victim.status_code == 202
    victim_id = victim.json()["taskId"]
    victim_upstream = wait_for_status(api, victim_id, {"submitted"})["upstreamTaskId"]
    # and a task whose generate call timed out: its callback URL is valid, its upstream id unknown
    timed_out = api.post(
        "/tasks", json={"prompt": "never answered [fault:submit_delay=3,stall]", "size": "1:1"}
    )
    assert (timed_out.status_code, timed_out.json()["status"]) == (202, "submitting")
    leaked_url = emulator_task_with_prompt(stack, "never answered")["request"]["callBackUrl"]
    assert timed_out.json()["taskId"] in leaked_url
    # When that URL reports the victim's upstream task, with other images
    forged = {
        "code": 200,
        "msg": "success",
        "data": {"taskId": victim_upstream, "info": {"result_urls": [f"{stack.upstream_url}/s/forged.png"]}},
    }
    httpx.post(leaked_url, json=forged, timeout=10)
    # Then the victim's task has not moved
    assert api.get(f"/tasks/{victim_id}").json()["status"] == "submitted"
    # And the victim's genuine callback still stores the genuine images
    assert stack.emulator.complete_task(victim_upstream)
    task = wait_for_status(api, victim_id, {"stored", "failed"}, timeout=40)
    assert task["status"] == "stored"
    generated = {image["sha256"] for image in stack.emulator.inspect_task(victim_upstream)["images"]}
    assert {image["sha256"] for image in task["images"]} == generated


def dead_letters(stack: LocalStack) -> list[dict[str, Any]]:
    assert stack.resources is not None
    sqs = boto3.client("sqs", endpoint_url=stack.endpoint_url, region_name="us-east-1")
    found = []
    while messages := sqs.receive_message(
        QueueUrl=stack.resources.dead_letter_queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
    ).get("Messages"):
        found += messages
        if len(found) > 50:
            break
    return found


def test_an_image_host_outage_longer_than_the_queue_retries_still_ends_stored(
    stack: LocalStack, api: httpx.Client
) -> None:
    # Given an image host answering 503 to the first 8 GETs (the queue gives up after 5 receives)
    task_id = api.post("/tasks", json={"prompt": "outage [fault:image_5xx=8]", "size": "1:1"}).json()[
        "taskId"
    ]
    # Then the task still ends stored, without an operator
    task = wait_for_status(api, task_id, {"stored", "failed"}, timeout=60)
    assert task["status"] == "stored", task
    generated = {
        image["sha256"] for image in stack.emulator.inspect_task(stack.upstream_id(task_id))["images"]
    }
    assert {image["sha256"] for image in task["images"]} == generated
    # And redriving the dead letters by hand afterwards changes nothing (no second copy in S3)
    assert stack.resources is not None
    sqs = boto3.client("sqs", endpoint_url=stack.endpoint_url, region_name="us-east-1")
    redriven = [m for m in dead_letters(stack) if json.loads(m["Body"]).get("taskId") == task_id]
    assert redriven, "the outage outlasted the queue's 5 receives: the first job dead-lettered"
    for message in redriven:
        sqs.send_message(QueueUrl=stack.resources.download_queue_url, MessageBody=message["Body"])
        sqs.delete_message(
            QueueUrl=stack.resources.dead_letter_queue_url, ReceiptHandle=message["ReceiptHandle"]
        )
    wait_for(lambda: queue_is_empty(sqs, stack.resources.download_queue_url), timeout=30)
    s3 = boto3.client("s3", endpoint_url=stack.endpoint_url, region_name="us-east-1")
    key = task["images"][0]["key"]
    versions = s3.list_object_versions(Bucket=stack.resources.images_bucket, Prefix=key).get("Versions", [])
    assert len(versions) == 1
    after = api.get(f"/tasks/{task_id}").json()
    assert after["status"] == "stored"
    assert [image["sha256"] for image in after["images"]] == [image["sha256"] for image in task["images"]]


def queue_is_empty(sqs: Any, queue_url: str) -> bool:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return all(attributes[name] == "0" for name in names)


def test_an_image_host_that_never_recovers_ends_failed_within_the_bound(
    stack: LocalStack, api: httpx.Client
) -> None:
    task_id = api.post(
        "/tasks", json={"prompt": "gone for good [fault:image_5xx=1000]", "size": "1:1"}
    ).json()["taskId"]
    task = wait_for_status(api, task_id, {"stored", "failed"}, timeout=60)
    assert task["status"] == "failed"
    assert task["error"]["code"] == "download_failed"
    assert "503" in task["error"]["message"]
