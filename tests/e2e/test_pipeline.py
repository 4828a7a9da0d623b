"""End to end, over HTTP, against the local stack: what a client app and the upstream actually do."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from devstack.local.stack import LocalStack
from tests.e2e.conftest import wait_for, wait_for_status, wait_until_settled
from tests.http_fixtures import Reply, image_server, png_bytes, unreachable_url

pytestmark = pytest.mark.e2e


def submit(api: httpx.Client, **body: Any) -> str:
    response = api.post("/tasks", json={"size": "1:1", **body})
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "submitted"
    task_id: str = response.json()["taskId"]
    return task_id


def s3_sha256(stack: LocalStack, key: str) -> str:
    assert stack.resources is not None
    s3 = boto3.client("s3", endpoint_url=stack.endpoint_url, region_name="us-east-1")
    return hashlib.sha256(
        s3.get_object(Bucket=stack.resources.images_bucket, Key=key)["Body"].read()
    ).hexdigest()


def served_count(stack: LocalStack, task_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in stack.emulator.inspect_task(stack.upstream_id(task_id))["served"]:
        counts[entry["path"]] = counts.get(entry["path"], 0) + 1
    return counts


@pytest.mark.parametrize(
    ("variants", "size", "dimensions"),
    [(1, "1:1", (1024, 1024)), (2, "3:2", (1536, 1024)), (4, "2:3", (1024, 1536))],
)
def test_text_to_image_stores_every_variant_byte_for_byte(
    stack: LocalStack, api: httpx.Client, variants: int, size: str, dimensions: tuple[int, int]
) -> None:
    task_id = submit(api, prompt=f"a red fox in snow, {variants} variants", size=size, nVariants=variants)
    task = wait_for_status(api, task_id, {"stored", "failed"})
    assert task["status"] == "stored", task
    generated = {
        image["index"]: image["sha256"]
        for image in stack.emulator.inspect_task(stack.upstream_id(task_id))["images"]
    }
    assert [image["index"] for image in task["images"]] == list(range(variants))
    for image in task["images"]:
        # The bytes in S3, and the ones behind the presigned link, are exactly what the upstream served.
        assert image["sha256"] == generated[image["index"]] == s3_sha256(stack, image["key"])
        assert (
            image["key"] == f"images/{task_id}/{image['index']}.png" and image["contentType"] == "image/png"
        )
        downloaded = httpx.get(image["url"], timeout=10)
        assert (
            downloaded.status_code == 200
            and hashlib.sha256(downloaded.content).hexdigest() == image["sha256"]
        )
    import io

    from PIL import Image

    first = httpx.get(task["images"][0]["url"], timeout=10).content
    assert Image.open(io.BytesIO(first)).size == dimensions


def test_edit_with_a_mask(stack: LocalStack, api: httpx.Client) -> None:
    photo, mask = png_bytes(96, 64), png_bytes(96, 64, (0, 0, 0))
    with image_server() as host:
        files_url = host.serve("/original-image.png", Reply(200, photo))
        mask_url = host.serve("/mask-image.png", Reply(200, mask))
        task_id = submit(
            api,
            prompt="Replace the sky with a starry night sky",
            filesUrl=[files_url],
            maskUrl=mask_url,
            size="3:2",
        )
        assert wait_for_status(api, task_id, {"stored", "failed"})["status"] == "stored"
    upstream = stack.emulator.inspect_task(stack.upstream_id(task_id))
    assert upstream["request"]["maskUrl"] == mask_url
    # the upstream fetched both inputs, exactly the bytes the host served
    assert [(entry["field"], entry["sha256"]) for entry in upstream["inputs"]] == [
        ("filesUrl[0]", hashlib.sha256(photo).hexdigest()),
        ("maskUrl", hashlib.sha256(mask).hexdigest()),
    ]


def test_an_unreachable_files_url_ends_failed_451(stack: LocalStack, api: httpx.Client) -> None:
    # The upstream fetches every filesUrl; one it cannot download ends the task with code 451.
    task_id = submit(api, prompt="make it night", filesUrl=[unreachable_url()])
    task = wait_for_status(api, task_id, {"stored", "failed"})
    assert (task["status"], task["error"]["code"] if task["error"] else None) == ("failed", 451), task


@pytest.mark.parametrize("code", [400, 451, 500, 501])
def test_each_failure_code_ends_failed_with_its_code(stack: LocalStack, api: httpx.Client, code: int) -> None:
    task_id = submit(api, prompt=f"doomed [fault:fail={code}]")
    task = wait_for_status(api, task_id, {"stored", "failed"})
    assert task["status"] == "failed" and task["error"]["code"] == code and task["error"]["message"]
    assert task["images"] == []


def test_duplicate_callbacks_in_a_row_store_each_image_once(stack: LocalStack, api: httpx.Client) -> None:
    task_id = submit(api, prompt="twice told [fault:duplicate=3]", nVariants=2)
    assert wait_for_status(api, task_id, {"stored", "failed"})["status"] == "stored"
    wait_for(lambda: len(stack.emulator.deliveries(stack.upstream_id(task_id))) >= 3)
    wait_until_settled(stack)  # any (wrong) second round of downloads has happened by now
    assert all(count == 1 for count in served_count(stack, task_id).values())
    assert len(served_count(stack, task_id)) == 2


def test_ten_simultaneous_deliveries_store_each_image_once(stack: LocalStack, api: httpx.Client) -> None:
    # The upstream's own delivery is dropped; we then send its exact callback ten times at once.
    task_id = submit(api, prompt="crowded [fault:drop]", nVariants=2)
    task = wait_for(
        lambda: (t := stack.emulator.inspect_task(stack.upstream_id(task_id))) and t["callbackBody"] and t
    )
    callback_url, body = task["request"]["callBackUrl"], task["callbackBody"]
    barrier = threading.Barrier(10)
    answers: list[int] = []

    def deliver() -> None:
        barrier.wait(timeout=10)
        answers.append(httpx.post(callback_url, json=body, timeout=30).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert answers == [200] * 10
    assert wait_for_status(api, task_id, {"stored", "failed"})["status"] == "stored"
    wait_until_settled(stack)
    assert sorted(served_count(stack, task_id).values()) == [1, 1]


def test_callback_that_beats_the_submit_record_is_not_lost(stack: LocalStack, api: httpx.Client) -> None:
    # gen=0: the upstream calls back as soon as it has answered generate, racing our own write.
    task_ids = [submit(api, prompt=f"instant {i} [fault:gen=0]") for i in range(3)]
    for task_id in task_ids:
        assert wait_for_status(api, task_id, {"stored", "failed"})["status"] == "stored"


def test_dropped_callback_leaves_the_task_submitted_and_nothing_breaks(
    stack: LocalStack, api: httpx.Client
) -> None:
    lost = submit(api, prompt="never heard of again [fault:drop]")
    wait_for(lambda: stack.emulator.inspect_task(stack.upstream_id(lost))["deliveries"])
    fine = submit(api, prompt="business as usual")
    assert wait_for_status(api, fine, {"stored", "failed"})["status"] == "stored"
    task = api.get(f"/tasks/{lost}").json()
    assert task["status"] == "submitted" and task["images"] == [] and task["error"] is None
    assert task["progress"] == 1.0  # the upstream says it is done: the client can see it


def test_the_upstreams_callback_is_answered_200_well_within_its_timeout(
    stack: LocalStack, api: httpx.Client
) -> None:
    task_id = submit(api, prompt="patience")
    assert wait_for_status(api, task_id, {"stored", "failed"})["status"] == "stored"
    [delivery] = stack.emulator.wait_for_deliveries(stack.upstream_id(task_id), 1, timeout=10)
    # The upstream gives up on a callback after 15 s: ours answers after the enqueue, not the downloads.
    assert delivery["statusCode"] == 200 and delivery["elapsedMs"] < 15_000


def test_forged_callback_is_refused_over_http(stack: LocalStack, api: httpx.Client) -> None:
    task_id = submit(api, prompt="guarded [fault:drop]")
    task = wait_for(
        lambda: (t := stack.emulator.inspect_task(stack.upstream_id(task_id))) and t["callbackBody"] and t
    )
    real_url = task["request"]["callBackUrl"]
    forged = real_url.split("?", 1)[0] + "?token=guess"
    response = httpx.post(forged, json=task["callbackBody"], timeout=10)
    assert response.status_code == 403
    assert api.get(f"/tasks/{task_id}").json()["status"] == "submitted"


def test_validation_and_routing_errors_over_http(api: httpx.Client) -> None:
    response = api.post("/tasks", json={"prompt": "x", "size": "16:9"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "size"
    assert api.get("/tasks/0123456789abcdef0123456789abcdef").status_code == 404
    assert api.get("/nowhere").status_code == 403  # API Gateway's answer for an unknown route


@pytest.mark.parametrize(
    ("code", "status"), [(402, 402), (429, 429), (401, 502), (455, 503), (500, 503), (422, 422)]
)
def test_submit_errors_reach_the_client_as_actionable_statuses(
    api: httpx.Client, code: int, status: int
) -> None:
    response = api.post("/tasks", json={"prompt": f"refused [fault:submit={code}]", "size": "1:1"})
    assert response.status_code == status, response.text
    if status == 429:
        assert int(response.headers["Retry-After"]) > 0


def test_cli_generates_and_saves_images(
    stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from imagegen.cli import main

    exit_code = main(
        [
            "--api-url",
            stack.api_url,
            "generate",
            "a lighthouse at dusk",
            "--size",
            "3:2",
            "--variants",
            "2",
            "--out",
            str(tmp_path),
            "--poll-interval",
            "0.3",
            "--timeout",
            "60",
        ]
    )
    assert exit_code == 0, capsys.readouterr().err
    files = sorted(tmp_path.glob("*.png"))
    assert len(files) == 2
    printed = capsys.readouterr().out
    task_id = printed.split("taskId:", 1)[1].split()[0]
    generated = {
        image["sha256"] for image in stack.emulator.inspect_task(stack.upstream_id(task_id))["images"]
    }
    assert {hashlib.sha256(path.read_bytes()).hexdigest() for path in files} == generated
    assert main(["--api-url", stack.api_url, "status", task_id]) == 0
    assert "stored" in capsys.readouterr().out
