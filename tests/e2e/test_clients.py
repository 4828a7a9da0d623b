"""Two client apps on the local stack, over HTTP, with their own keys as API Gateway checks them:
each sees, lists and deletes only its own tasks."""

from __future__ import annotations

import boto3
import httpx
import pytest

from devstack.local.stack import LocalStack
from tests.e2e.conftest import stack_fixture, wait_for_status

pytestmark = pytest.mark.e2e
KEYS = "alice:key-of-alice,bob:key-of-bob"


stack = stack_fixture(
    environment={
        "LOCAL_API_KEYS": KEYS,
        "LOCAL_API_PORT": "0",
        "EMULATOR_GENERATION_SECONDS": "0.3",
        "LOCAL_RECONCILE_INTERVAL_SECONDS": "0",
        # A window the burst below always fits in, however slow the machine (20 submits in 10 s is not)
        "SUBMIT_RATE_WINDOW_SECONDS": "120",
    }
)


def client(stack: LocalStack, key: str | None) -> httpx.Client:
    return httpx.Client(base_url=stack.api_url, timeout=30, headers={"x-api-key": key} if key else {})


def test_without_a_known_key_the_front_door_answers_forbidden(stack: LocalStack) -> None:
    for key in (None, "not-a-key"):
        with client(stack, key) as anonymous:
            answer = anonymous.post("/tasks", json={"prompt": "a fox", "size": "1:1"})
            assert (answer.status_code, answer.json()) == (403, {"message": "Forbidden"})
    with client(stack, None) as anonymous:  # the contract is readable without a key
        assert anonymous.get("/openapi.json").json()["openapi"] == "3.1.0"


def test_each_client_sees_lists_and_deletes_only_its_own_tasks(stack: LocalStack) -> None:
    with client(stack, "key-of-alice") as alice, client(stack, "key-of-bob") as bob:
        alices = alice.post("/tasks", json={"prompt": "alice's fox", "size": "1:1", "nVariants": 2}).json()[
            "taskId"
        ]
        bobs = bob.post("/tasks", json={"prompt": "bob's owl", "size": "1:1"}).json()["taskId"]
        stored = wait_for_status(alice, alices, {"stored", "failed"})
        assert stored["status"] == "stored" and len(stored["images"]) == 2
        wait_for_status(bob, bobs, {"stored", "failed"})
        # another client's task is exactly an unknown one
        for method in ("GET", "DELETE"):
            answer = bob.request(method, f"/tasks/{alices}")
            assert (answer.status_code, answer.json()["message"]) == (404, f"task {alices} not found")
        assert [task["taskId"] for task in alice.get("/tasks").json()["tasks"]] == [alices]
        assert [task["taskId"] for task in bob.get("/tasks").json()["tasks"]] == [bobs]
        # deleting removes every stored version, then the task is gone for its owner too
        assert alice.delete(f"/tasks/{alices}").status_code == 204
        assert stack.resources is not None
        s3 = boto3.client("s3", endpoint_url=stack.endpoint_url, region_name="us-east-1")
        left = s3.list_object_versions(Bucket=stack.resources.images_bucket, Prefix=f"images/{alices}/")
        assert not left.get("Versions") and not left.get("DeleteMarkers")
        assert alice.get(f"/tasks/{alices}").status_code == 404
        assert alice.delete(f"/tasks/{alices}").status_code == 404
        assert alice.get("/tasks").json() == {"tasks": [], "nextCursor": None}
        assert bob.get(f"/tasks/{bobs}").json()["status"] == "stored"


def test_one_clients_burst_leaves_the_other_client_its_share_of_the_generate_window(
    stack: LocalStack,
) -> None:
    """20 submits from one client (the deployment's whole window): it gets its 50 %, the rest 429 with
    Retry-After, and the other client still goes through."""
    with client(stack, "key-of-alice") as alice, client(stack, "key-of-bob") as bob:
        answers = [alice.post("/tasks", json={"prompt": f"burst {n}", "size": "1:1"}) for n in range(20)]
        statuses = [answer.status_code for answer in answers]
        assert statuses.count(202) <= 10 and statuses.count(429) >= 10, statuses
        refused = next(answer for answer in answers if answer.status_code == 429)
        assert "CLIENT_GENERATE_SHARE_PERCENT" in refused.json()["message"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 120
        assert bob.post("/tasks", json={"prompt": "bob's turn", "size": "1:1"}).status_code == 202
