"""`sam local invoke <Function> -e events/<file>.json` for every event file, against moto and the emulator
in containers (--docker-network), with the output the README's "sam local" section documents.

Each case sets up what its event needs first: `clear` removes the example task d231a99a... and its callback
capability from the table, `seed` puts them there as POST /tasks leaves them (python -m devstack.sam_local
seed [--clear]); a duplicate runs after the first delivery of the same body.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from devstack import sam_local
from tests.conftest import EVENTS
from tests.samlocal.conftest import SamLocal

pytestmark = pytest.mark.samlocal

EXAMPLE = sam_local.EXAMPLE_TASK_ID
INVALID = "invalid request: check size, nVariants, colour"
DUPLICATE = {"status": "duplicate"}

FLUX_INVALID = "invalid request: check nVariants"  # a 4o field with a Flux model
# (event file, function, precondition, expected status code or None for non-HTTP, expected body subset)
CASES: list[tuple[str, str, str, int | None, dict[str, Any]]] = [
    # first, on the fresh stack: no task has waited past RECONCILE_AFTER_SECONDS yet
    ("reconciler_scheduled", "ReconcilerFunction", "clear", None, {"checked": 0, "errors": []}),
    # before any submit has spent credits: the emulator's starting balance
    ("credit_monitor_scheduled", "CreditMonitorFunction", "clear", None, {"credits": 1000000.0}),
    ("sqs_download_batch", "DownloaderFunction", "clear", None, {"batchItemFailures": []}),
    ("api_get_task_unknown", "ApiFunction", "clear", 404, {"message": f"task {'0' * 32} not found"}),
    ("api_get_task", "ApiFunction", "seed", 200, {"taskId": EXAMPLE, "status": "submitted"}),
    ("api_list_tasks", "ApiFunction", "seed", 200, {"nextCursor": None}),
    ("api_submit_task", "ApiFunction", "clear", 202, {"status": "submitted"}),
    ("api_submit_task_edit", "ApiFunction", "clear", 202, {"status": "submitted"}),
    ("api_submit_task_invalid", "ApiFunction", "clear", 422, {"message": INVALID}),
    ("api_submit_task_flux", "ApiFunction", "clear", 202, {"status": "submitted"}),
    ("api_submit_task_flux_invalid", "ApiFunction", "clear", 422, {"message": FLUX_INVALID}),
    ("callback_forged_token", "CallbackFunction", "seed", 403, {"message": "callback token does not match"}),
    ("callback_4o_success", "CallbackFunction", "seed", 200, {"status": "accepted"}),
    ("callback_4o_duplicate", "CallbackFunction", "after:callback_4o_success", 200, DUPLICATE),
    ("callback_4o_failure", "CallbackFunction", "seed", 200, {"status": "accepted"}),
    ("callback_flux_success", "CallbackFunction", "seed", 200, {"status": "accepted"}),
    ("callback_flux_duplicate", "CallbackFunction", "after:callback_flux_success", 200, DUPLICATE),
    ("callback_flux_failure", "CallbackFunction", "seed", 200, {"status": "accepted"}),
    ("api_submit_task_market", "ApiFunction", "clear", 202, {"status": "submitted"}),
    ("callback_market_success", "CallbackFunction", "seed", 200, {"status": "accepted"}),
    ("callback_market_failure", "CallbackFunction", "seed", 200, {"status": "accepted"}),
    ("api_create_upload", "ApiFunction", "clear", 201, {}),
]  # fmt: skip


def test_every_event_file_has_a_case() -> None:
    assert sorted(path.stem for path in EVENTS.glob("*.json")) == sorted(case[0] for case in CASES)


def invoke(samlocal: SamLocal, function: str, event: str) -> dict[str, Any]:
    answer, done = samlocal.invoke(function, EVENTS / f"{event}.json")
    assert done.returncode == 0 and answer is not None, (
        f"sam local invoke {function} -e events/{event}.json: rc={done.returncode}\n"
        f"stdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-4000:]}"
    )
    return answer


@pytest.mark.timeout(900)  # the first case builds the template (sam build) and starts the containers
@pytest.mark.parametrize(
    ("event", "function", "before", "status", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_sam_local_invoke_event(
    samlocal: SamLocal, event: str, function: str, before: str, status: int | None, expected: dict[str, Any]
) -> None:
    services = samlocal.services
    if before in ("seed", "clear"):
        sam_local.seed(services, clear=before == "clear")
    else:
        sam_local.seed(services)
        first = invoke(samlocal, function, before.removeprefix("after:"))
        assert json.loads(str(first["body"])) == {"status": "accepted"}

    answer = invoke(samlocal, function, event)

    if status is None:
        body = answer
    else:
        assert answer["statusCode"] == status, answer
        body = json.loads(str(answer["body"]))
    assert {key: body.get(key) for key in expected} == expected, body
    if event == "api_create_upload":  # a presigned PUT of moto's bucket, signed with its type and length
        assert body["reference"] == f"upload:{body['uploadId']}" and body["upload"]["method"] == "PUT", body
        assert body["upload"]["headers"] == {"Content-Type": "image/png", "Content-Length": "48213"}, body
    if event.startswith("api_submit_task") and status == 202:
        assert len(body["taskId"]) == 32, body  # ours; the emulator container made the upstream's
        upstream = sam_local.upstream_id(services, body["taskId"], time.monotonic() + 30)
        assert upstream != body["taskId"] and services.admin(f"tasks/{upstream}") is not None
