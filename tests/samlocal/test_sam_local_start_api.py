"""A task through `sam local start-api`: submit, callback, download, status; AWS is moto and the upstream is
the emulator, both containers on the network the Lambda containers join (--docker-network).

start-api listens on 127.0.0.1 and containers cannot reach the host's loopback, so the emulator's own
callback cannot arrive; the test relays it (devstack.sam_local.relay: the callback body and URL from the
emulator's admin API, POSTed to start-api), then runs what Lambda's SQS event source would:
`sam local invoke DownloaderFunction -e <the queued jobs as an SQS event>` (devstack.sam_local.drain),
which fetches the images from the emulator container (a trusted origin) and stores them in moto's S3.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest

from devstack import sam_local
from tests.samlocal.conftest import SamLocal

pytestmark = pytest.mark.samlocal


@pytest.fixture(scope="module")
def api(start_api: str) -> Any:
    with httpx.Client(base_url=start_api, timeout=120) as client:
        yield client


@pytest.mark.timeout(900)
def test_submit_callback_download_status_round_trip(samlocal: SamLocal, api: httpx.Client) -> None:
    services = samlocal.services
    resources = services.stack_resources()
    sqs = services.aws().client("sqs")
    sqs.purge_queue(QueueUrl=services.download_queue_url_here)  # jobs other tests left behind

    # Submit, twice with one Idempotency-Key: one task.
    body = {"prompt": "a lighthouse at dusk, sam local", "size": "3:2", "nVariants": 2}
    first = api.post("/tasks", json=body, headers={"Idempotency-Key": "sam-local-round-trip"})
    assert first.status_code == 202, first.text
    task_id = first.json()["taskId"]
    again = api.post("/tasks", json=body, headers={"Idempotency-Key": "sam-local-round-trip"})
    assert (again.status_code, again.json()["taskId"]) == (202, task_id)
    status = api.get(f"/tasks/{task_id}")
    assert status.status_code == 200 and status.json()["status"] == "submitted", status.text
    upstream_id = status.json()["upstreamTaskId"]  # the emulator knows the task by its own id

    # The upstream (emulator container) got it, with a callback URL on start-api's origin.
    upstream = services.admin(f"tasks/{upstream_id}")
    assert upstream is not None and upstream["request"]["callBackUrl"].startswith(
        f"{api.base_url}/callbacks/"
    )

    # Callback, relayed to start-api.
    code, text = sam_local.relay(services, task_id, str(api.base_url))
    upstream = services.admin(f"tasks/{upstream_id}")
    assert upstream is not None and upstream["status"] == "SUCCESS", upstream
    assert (code, json.loads(text)) == (200, {"status": "accepted"})
    assert api.get(f"/tasks/{task_id}").json()["status"] == "downloading"

    # The download jobs, as Lambda's SQS event source hands them over.
    event, answer, done = sam_local.drain(
        services, samlocal.sam, samlocal.config_file, skip_pull=samlocal.skip_pull
    )
    assert done is not None, "no download job was queued"
    assert answer == {"batchItemFailures": []}, f"{answer}\n{done.stderr[-4000:]}"
    jobs = sorted((job["taskId"], job["index"], job["url"]) for job in map(json.loads, bodies(event)))
    assert jobs == [(task_id, index, url) for index, url in enumerate(upstream["resultUrls"])]
    assert all(url.startswith(f"{services.upstream_url}/") for url in upstream["resultUrls"])

    # Stored: both images, byte for byte what the emulator generated.
    final = api.get(f"/tasks/{task_id}")
    assert final.status_code == 200, final.text
    task = final.json()
    assert task["status"] == "stored" and task["progress"] == 1.0 and task["error"] is None, task
    assert [image["index"] for image in task["images"]] == [0, 1]
    generated = {image["index"]: image["sha256"] for image in upstream["images"]}
    s3 = services.aws().client("s3")
    for image in task["images"]:
        assert (
            image["key"] == f"images/{task_id}/{image['index']}.png" and image["contentType"] == "image/png"
        )
        stored = s3.get_object(Bucket=resources.images_bucket, Key=image["key"])["Body"].read()
        assert hashlib.sha256(stored).hexdigest() == image["sha256"] == generated[image["index"]]
        # Presigned for the address the functions use (moto on the container network).
        assert image["url"].startswith(f"{services.moto_url}/{resources.images_bucket}/{image['key']}?")


def bodies(event: dict[str, Any]) -> list[str]:
    return [record["body"] for record in event["Records"]]


def test_start_api_answers_like_the_local_stack(samlocal: SamLocal, api: httpx.Client) -> None:
    unknown = api.get("/tasks/00000000000000000000000000000000")
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"message": "task 00000000000000000000000000000000 not found", "errors": []},
    )
    invalid = api.post("/tasks", json={"prompt": "x", "size": "4:3"})
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["field"] == "size", invalid.text
    forged = api.post(
        "/callbacks/ffffffffffffffffffffffffffffffff?token=forged",
        json={"code": 200, "data": {"taskId": "abc"}},
    )
    assert forged.status_code == 404, forged.text
