"""Flux Kontext through the API: its own fields, its own endpoints, nothing else sent upstream."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx

from tests.conftest import load_event
from tests.unit.test_api_handler import get_task

UPSTREAM = "https://api.kie.ai"
FLUX_GENERATE = f"{UPSTREAM}/api/v1/flux/kontext/generate"
FLUX_RECORD_INFO = f"{UPSTREAM}/api/v1/flux/kontext/record-info"
COMMON_DOWNLOAD_URL = f"{UPSTREAM}/api/v1/common/download-url"
GENERATE_4O = f"{UPSTREAM}/api/v1/gpt4o-image/generate"
TASK_ID = "d231a99a9a9f1dd8f895be1b97be8065"


def invoke(body: Any, context: Any, event_name: str = "api_submit_task") -> tuple[int, dict[str, Any]]:
    from api_handler import lambda_handler

    event = load_event(event_name)
    if body is not None:
        event["body"] = json.dumps(body)
    response = lambda_handler(event, context)
    return response["statusCode"], json.loads(response["body"])


@pytest.fixture
def upstream() -> Any:
    with respx.mock(assert_all_called=False) as router:
        router.post(FLUX_GENERATE).mock(
            return_value=httpx.Response(
                200, json={"code": 200, "msg": "success", "data": {"taskId": TASK_ID}}
            )
        )
        router.post(GENERATE_4O).mock(return_value=httpx.Response(500))
        router.get(FLUX_RECORD_INFO).mock(
            return_value=httpx.Response(200, json={"code": 200, "msg": "success", "data": {"successFlag": 0}})
        )
        yield router


def test_a_flux_task_goes_to_the_flux_endpoint_with_its_fields(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    status, body = invoke(None, lambda_context, "api_submit_task_flux")
    assert (status, body["status"]) == (202, "submitted")
    sent = json.loads(upstream.routes[0].calls.last.request.content)
    assert (
        sent["model"] == "flux-kontext-pro"
        and sent["aspectRatio"] == "16:9"
        and sent["outputFormat"] == "jpeg"
    )
    assert sent["prompt"].startswith("a paper lantern") and sent["callBackUrl"].startswith("https://")
    assert not upstream.routes[1].called  # nothing went to the 4o endpoint
    status, task, _ = get_task(body["taskId"], lambda_context)
    assert status == 200 and task["model"] == "flux-kontext-pro" and task["status"] == "submitted"
    assert task["upstreamTaskId"] == TASK_ID


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "flux-kontext-max", "prompt": "a lantern", "nVariants": 2}, "nVariants"),
        ({"model": "flux-kontext-pro", "prompt": "a lantern", "size": "1:1"}, "size"),
        (
            {"model": "flux-kontext-pro", "prompt": "a lantern", "filesUrl": ["https://x.example/a.png"]},
            "filesUrl",
        ),
        ({"prompt": "a lantern", "size": "1:1", "aspectRatio": "16:9"}, "aspectRatio"),
        (
            {"model": "gpt-4o-image", "prompt": "a lantern", "size": "1:1", "outputFormat": "png"},
            "outputFormat",
        ),
        ({"model": "flux-kontext-pro", "aspectRatio": "16:9"}, "prompt"),
        ({"model": "flux-kontext-pro", "prompt": "x", "aspectRatio": "2:1"}, "aspectRatio"),
        ({"model": "flux-kontext-pro", "prompt": "x", "outputFormat": "gif"}, "outputFormat"),
        ({"model": "flux-kontext-pro", "prompt": "x", "safetyTolerance": 7}, "safetyTolerance"),
        (
            {
                "model": "flux-kontext-pro",
                "prompt": "x",
                "inputImage": "https://x.example/a.png",
                "safetyTolerance": 3,
            },
            "safetyTolerance",
        ),
        ({"model": "flux-kontext-ultra", "prompt": "x"}, "model"),
        ({"prompt": "a lantern"}, "size"),  # gpt-4o-image still needs its size
    ],
)
def test_a_field_the_model_does_not_take_is_a_422_naming_it_and_nothing_is_sent(
    aws_stack: Any, upstream: Any, lambda_context: Any, body: dict[str, Any], field: str
) -> None:
    status, answer = invoke(body, lambda_context)
    assert status == 422, answer
    assert [problem["field"] for problem in answer["errors"]] == [field], answer
    assert not upstream.routes[0].called and not upstream.routes[1].called


def test_a_flux_task_whose_callback_never_came_is_finished_through_flux_record_info(
    aws_stack: Any, upstream: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from image_pipeline.adapters.tasks_table import TasksTable
    from image_pipeline.settings import reset_settings_cache

    monkeypatch.setenv("RECONCILE_AFTER_SECONDS", "0")
    reset_settings_cache()
    status, body = invoke(None, lambda_context, "api_submit_task_flux")
    assert status == 202
    ours = body["taskId"]
    store = TasksTable(aws_stack.tasks_table)
    task = store.get_task(ours)
    from image_pipeline.task_records import utc_now

    store.push_back(task, utc_now())  # due now
    result = "https://tempfile.aiquickdraw.com/s/flux_0.jpg"
    upstream.get(FLUX_RECORD_INFO).mock(
        return_value=httpx.Response(
            200,
            json={
                "code": 200,
                "msg": "success",
                "data": {"taskId": TASK_ID, "successFlag": 1, "response": {"resultImageUrl": result}},
            },
        )
    )
    from reconciler_handler import lambda_handler as sweep

    report = sweep(load_event("reconciler_scheduled"), lambda_context)
    assert report["completed"] == 1
    finished = store.get_task(ours)
    assert finished.status == "downloading" and finished.resultUrls == [result]
    assert upstream.routes[2].calls.last.request.url.params["taskId"] == TASK_ID  # asked by its own id


def test_an_expired_flux_link_is_renewed_through_the_common_download_url(aws_stack: Any) -> None:
    from image_pipeline.adapters.upstream import UpstreamClient

    with respx.mock:
        route = respx.post(COMMON_DOWNLOAD_URL).mock(
            return_value=httpx.Response(
                200, json={"code": 200, "msg": "success", "data": "https://fresh.example/a.jpg"}
            )
        )
        client = UpstreamClient(UPSTREAM, "key")
        assert (
            client.download_url(TASK_ID, "https://old.example/a.jpg", "flux-kontext-max")
            == "https://fresh.example/a.jpg"
        )
    assert json.loads(route.calls.last.request.content) == {"url": "https://old.example/a.jpg"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "a fox", "size": "1:1", "enableFallback": 0}, "enableFallback"),  # 0 is no boolean
        ({"prompt": "a fox", "size": "1:1", "isEnhance": "true"}, "isEnhance"),
        ({"model": "flux-kontext-pro", "prompt": "a fox", "safetyTolerance": "3"}, "safetyTolerance"),
        ({"model": "flux-kontext-pro", "prompt": "a fox", "promptUpsampling": 1}, "promptUpsampling"),
    ],
)
def test_values_of_another_json_type_are_refused_as_the_contract_says(
    aws_stack: Any, upstream: Any, lambda_context: Any, body: dict[str, Any], field: str
) -> None:
    # schemathesis found `enableFallback: 0` accepted (pydantic's lax mode) though the schema says boolean
    status, answer = invoke(body, lambda_context)
    assert status == 422 and [problem["field"] for problem in answer["errors"]] == [field], answer
    assert not upstream.routes[0].called and not upstream.routes[1].called


def test_a_whole_number_written_as_6_0_is_an_integer_as_json_schema_says(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    # schemathesis sent safetyTolerance 6.0: an integer to JSON Schema, refused by strict mode alone
    body = {"model": "flux-kontext-max", "prompt": "a fox", "safetyTolerance": 6.0}
    status, answer = invoke(body, lambda_context)
    assert status == 202, answer
    assert json.loads(upstream.routes[0].calls.last.request.content)["safetyTolerance"] == 6
