"""Uploads and input references on the local stack, over HTTP (issue 22): a client uploads an image through
its presigned PUT, edits it with 4o and with Flux Kontext, edits a stored image by task reference, and the
emulated upstream fetches exactly those bytes through the presigned links the API handed it."""

from __future__ import annotations

import hashlib
from typing import Any

import boto3
import httpx
import pytest

from devstack.local.stack import LocalStack
from tests.e2e.conftest import stack_fixture, wait_for_status
from tests.http_fixtures import png_bytes

pytestmark = pytest.mark.e2e

stack = stack_fixture(
    environment={
        "LOCAL_API_KEYS": "alice:key-of-alice,bob:key-of-bob",
        "LOCAL_API_PORT": "0",
        "EMULATOR_GENERATION_SECONDS": "0.3",
        "LOCAL_RECONCILE_INTERVAL_SECONDS": "0",
    }
)


def client(stack: LocalStack, key: str) -> httpx.Client:
    return httpx.Client(base_url=stack.api_url, timeout=30, headers={"x-api-key": key})


def upload(api: httpx.Client, data: bytes, content_type: str = "image/png") -> dict[str, Any]:
    """POST /uploads, then the presigned PUT with exactly the headers it was signed with."""
    created = api.post("/uploads", json={"contentType": content_type, "bytes": len(data)})
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    put = httpx.put(body["upload"]["url"], content=data, headers=body["upload"]["headers"], timeout=30)
    assert put.status_code == 200, put.text
    return body


def submit(api: httpx.Client, **body: Any) -> str:
    answer = api.post("/tasks", json=body)
    assert answer.status_code == 202, answer.text
    task_id: str = answer.json()["taskId"]
    return task_id


def fetched(stack: LocalStack, task_id: str) -> list[tuple[str, str | None]]:
    """What the emulated upstream fetched for the task: (field, sha256) of each input."""
    return [
        (entry["field"], entry["sha256"])
        for entry in stack.emulator.inspect_task(stack.upstream_id(task_id))["inputs"]
    ]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_an_upload_is_edited_with_4o_and_flux_and_the_upstream_gets_exactly_its_bytes(
    stack: LocalStack,
) -> None:
    photo = png_bytes(120, 80, (20, 90, 200))
    with client(stack, "key-of-alice") as alice:
        uploaded = upload(alice, photo)
        reference = f"upload:{uploaded['uploadId']}"
        assert uploaded["reference"] == reference
        four_o = submit(alice, prompt="make it night", size="3:2", filesUrl=[reference])
        flux = submit(alice, model="flux-kontext-pro", prompt="make it night", inputImage=reference)
        for task_id in (four_o, flux):
            task = wait_for_status(alice, task_id, {"stored", "failed"})
            assert task["status"] == "stored", task
        assert fetched(stack, four_o) == [("filesUrl[0]", sha256(photo))]
        assert fetched(stack, flux) == [("inputImage", sha256(photo))]
        # the upstream was handed a presigned GET of exactly that object version, never the reference
        request = stack.emulator.inspect_task(stack.upstream_id(four_o))["request"]
        assert f"/uploads/alice/{uploaded['uploadId']}?" in request["filesUrl"][0]
        assert "versionId=" in request["filesUrl"][0]
        assert alice.get(f"/tasks/{four_o}").json()["inputs"] == [{"field": "filesUrl[0]", "ref": reference}]


def test_a_stored_image_is_edited_by_its_task_reference(stack: LocalStack) -> None:
    with client(stack, "key-of-alice") as alice:
        first = submit(alice, prompt="a lighthouse at dusk", size="1:1")
        stored = wait_for_status(alice, first, {"stored", "failed"})
        assert stored["status"] == "stored", stored
        edit = submit(alice, model="flux-kontext-max", prompt="make it night", inputImage=f"task:{first}/0")
        assert wait_for_status(alice, edit, {"stored", "failed"})["status"] == "stored"
    assert fetched(stack, edit) == [("inputImage", stored["images"][0]["sha256"])]


def test_another_clients_reference_is_404_exactly_as_an_unknown_one(stack: LocalStack) -> None:
    with client(stack, "key-of-alice") as alice, client(stack, "key-of-bob") as bob:
        uploaded = upload(alice, png_bytes())
        task_id = submit(alice, prompt="alice's fox", size="1:1")
        wait_for_status(alice, task_id, {"stored", "failed"})
        for reference in (
            f"upload:{uploaded['uploadId']}",
            "upload:" + "0" * 32 + ".png",
            f"task:{task_id}/0",
            "task:" + "0" * 32 + "/0",
        ):
            answer = bob.post("/tasks", json={"size": "1:1", "prompt": "mine now", "filesUrl": [reference]})
            assert (answer.status_code, answer.json()) == (
                404,
                {
                    "message": f"filesUrl[0]: {reference} not found",
                    "errors": [{"field": "filesUrl[0]", "message": f"{reference} not found"}],
                },
            )


def test_an_expired_upload_is_422_naming_its_field(stack: LocalStack) -> None:
    assert stack.resources is not None
    with client(stack, "key-of-alice") as alice:
        uploaded = upload(alice, png_bytes())
        # the lifecycle rule's expiry, as S3 does it in a versioned bucket: a delete marker
        s3 = boto3.client("s3", endpoint_url=stack.endpoint_url, region_name="us-east-1")
        s3.delete_object(Bucket=stack.resources.images_bucket, Key=f"uploads/alice/{uploaded['uploadId']}")
        answer = alice.post(
            "/tasks",
            json={"model": "flux-kontext-pro", "prompt": "x", "inputImage": f"upload:{uploaded['uploadId']}"},
        )
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["errors"]
    assert problem["field"] == "inputImage" and "expired or was never uploaded" in problem["message"]


def test_an_upload_that_is_not_an_image_is_422_and_nothing_is_generated(stack: LocalStack) -> None:
    with client(stack, "key-of-alice") as alice:
        uploaded = upload(alice, b"<html>a login page</html>")
        before = len(stack.emulator.core.task_ids())
        answer = alice.post(
            "/tasks", json={"size": "1:1", "filesUrl": ["https://example.com/a.png", uploaded["reference"]]}
        )
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "filesUrl[1]", answer.text
    assert len(stack.emulator.core.task_ids()) == before


def test_an_edit_whose_source_task_is_deleted_meanwhile_ends_and_the_source_stays_gone(
    stack: LocalStack,
) -> None:
    # The source's images are deleted, versions and all, while the upstream may not have fetched them
    # yet: the edit still ends (stored if the fetch came first, else failed 451), and nothing of the
    # deleted task comes back.
    assert stack.resources is not None
    with client(stack, "key-of-alice") as alice:
        source = submit(alice, prompt="a harbour at noon", size="1:1")
        assert wait_for_status(alice, source, {"stored", "failed"})["status"] == "stored"
        edit = submit(alice, prompt="make it night", size="1:1", filesUrl=[f"task:{source}/0"])
        assert alice.delete(f"/tasks/{source}").status_code == 204
        ended = wait_for_status(alice, edit, {"stored", "failed"})
        assert ended["status"] == "stored" or ended["error"]["code"] == 451, ended
        assert alice.get(f"/tasks/{source}").status_code == 404
        again = alice.post("/tasks", json={"size": "1:1", "prompt": "x", "filesUrl": [f"task:{source}/0"]})
        assert again.status_code == 404, again.text
    s3 = boto3.client("s3", endpoint_url=stack.endpoint_url, region_name="us-east-1")
    left = s3.list_object_versions(Bucket=stack.resources.images_bucket, Prefix=f"images/{source}/")
    assert not left.get("Versions") and not left.get("DeleteMarkers"), left
