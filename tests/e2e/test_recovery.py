"""Missed callbacks end to end: the scheduled reconciler finds them and finishes the task."""

from __future__ import annotations

import httpx
import pytest

from devstack.local.stack import LocalStack, StackConfig
from tests.e2e.conftest import stack_fixture, wait_for, wait_for_status

pytestmark = pytest.mark.e2e


recovering_stack = stack_fixture(
    StackConfig(
        api_port=0,
        generation_seconds=0.3,
        callback_retry_schedule=(0.5, 0.5, 0.5),
        reconcile_interval_seconds=1.0,
        reconcile_after_seconds=2.0,
    )
)


def test_dropped_callbacks_are_recovered_by_the_reconciler(recovering_stack: LocalStack) -> None:
    stack = recovering_stack
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        dropped = [
            api.post(
                "/tasks", json={"prompt": f"lost in the post {i} [fault:drop]", "size": "1:1", "nVariants": 2}
            ).json()["taskId"]
            for i in range(3)
        ]
        failed = api.post("/tasks", json={"prompt": "lost and failed [fault:drop,fail=500]", "size": "1:1"})
        for task_id in dropped:
            task = wait_for_status(api, task_id, {"stored", "failed"}, timeout=60)
            assert task["status"] == "stored" and len(task["images"]) == 2
            generated = {
                image["sha256"] for image in stack.emulator.inspect_task(stack.upstream_id(task_id))["images"]
            }
            assert {image["sha256"] for image in task["images"]} == generated
            # The drop is recorded just after the upstream's task ends: wait for it, then check it.
            deliveries = wait_for(
                lambda task_id=task_id: stack.emulator.deliveries(stack.upstream_id(task_id))
            )
            assert all(d.get("dropped") for d in deliveries)
        task = wait_for_status(api, failed.json()["taskId"], {"stored", "failed"}, timeout=60)
        assert task["status"] == "failed" and task["error"]["code"] == 500


def test_reconciler_respects_the_per_task_query_limit(recovering_stack: LocalStack) -> None:
    stack = recovering_stack
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        task_id = api.post("/tasks", json={"prompt": "slow [fault:drop,stall]", "size": "1:1"}).json()[
            "taskId"
        ]
        # Several sweeps pass over the stalled task; the emulator answers 429 past 3 queries/s per task.
        wait_for(
            lambda: stack.scheduler.last_results.get("ReconcilerFunction", {}).get("still_generating"), 30
        )
        assert api.get(f"/tasks/{task_id}").json()["status"] == "submitted"
        results = stack.scheduler.last_results["ReconcilerFunction"]
        assert not [error for error in results["errors"] if "rate limited" in error]
