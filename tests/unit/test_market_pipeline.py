"""The Market through the pipeline: POST /tasks with a model's input object, GET /models, its
recordInfo-shaped callbacks, and the daily image quota counting what the model returns."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx

from tests.conftest import load_event
from tests.task_fixtures import record_task
from tests.unit.test_api_handler import get_task
from tests.unit.test_callback_handler import TOKEN, UPSTREAM_ID, queued_jobs, table
from tests.unit.test_callback_handler import invoke as call_back

UPSTREAM = "https://api.kie.ai"
CREATE = f"{UPSTREAM}/api/v1/jobs/createTask"
GENERATE_4O = f"{UPSTREAM}/api/v1/gpt4o-image/generate"
MARKET_ID = "ed578231bfed231f0884c564579a965d"
OURS = "5f0c2a4b9e8d7c6b5a4f3e2d1c0b9a88"  # the callback events' task


def submit(body: Any, context: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    from api_handler import lambda_handler

    event = load_event("api_submit_task_market")
    if body is not None:
        event["body"] = json.dumps(body)
    response = lambda_handler(event, context)
    return response["statusCode"], json.loads(response["body"]), response.get("headers") or {}


@pytest.fixture
def upstream() -> Any:
    with respx.mock(assert_all_called=False) as router:
        router.post(CREATE).mock(
            return_value=httpx.Response(
                200,
                json={"code": 200, "msg": "success", "data": {"taskId": MARKET_ID, "recordId": MARKET_ID}},
            )
        )
        router.post(GENERATE_4O).mock(return_value=httpx.Response(500))
        router.get(f"{UPSTREAM}/api/v1/jobs/recordInfo").mock(
            return_value=httpx.Response(
                200,
                json={"code": 200, "msg": "success", "data": {"taskId": MARKET_ID, "state": "generating"}},
            )
        )
        yield router


def test_a_market_task_goes_to_create_task_with_its_input_as_the_registry_normalised_it(
    aws_stack: Any, upstream: Any, lambda_context: Any
) -> None:
    status, body, _ = submit(None, lambda_context)
    assert (status, body["status"]) == (202, "submitted")
    sent = json.loads(upstream.routes[0].calls.last.request.content)
    assert sent["model"] == "google/imagen4-fast"
    # num_images 2 (a number) goes as the string the page documents
    assert sent["input"] == {
        "prompt": "a lighthouse at dusk, oil painting",
        "aspect_ratio": "16:9",
        "num_images": "2",
    }
    assert sent["callBackUrl"].split("?")[0].endswith(f"/callbacks/{body['taskId']}")
    assert not upstream.routes[1].called
    status, task, _ = get_task(body["taskId"], lambda_context)
    assert (status, task["model"], task["upstreamTaskId"]) == (200, "google/imagen4-fast", MARKET_ID)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"model": "google/imagen4-fast", "input": {"prompt": "x", "num_images": "5"}}, ["input.num_images"]),
        (
            {"model": "google/nano-banana", "input": {"image_size": "7:7"}},
            ["input.prompt", "input.image_size"],
        ),
        ({"model": "google/nano-banana", "input": {"prompt": "x", "size": "1:1"}}, ["input.size"]),
        (
            {
                "model": "seedream/4.5-edit",
                "input": {"prompt": "x", "aspect_ratio": "1:1", "quality": "basic"},
            },
            ["input.image_urls"],
        ),
        ({"model": "google/nano-banana", "input": "a fox"}, ["input"]),
        ({"model": "google/nano-banana"}, ["input"]),
        ({"model": "google/nano-banana", "prompt": "x", "input": {"prompt": "x"}}, ["prompt"]),
        ({"model": "google/nano-banana", "size": "1:1", "input": {"prompt": "x"}}, ["size"]),
        ({"model": "midjourney/v7", "input": {"prompt": "x"}}, ["model"]),
        ({"prompt": "x", "size": "1:1", "input": {"prompt": "x"}}, ["input"]),
    ],
)
def test_a_bad_market_request_is_a_422_naming_each_field_and_nothing_is_sent(
    aws_stack: Any, upstream: Any, lambda_context: Any, body: dict[str, Any], fields: list[str]
) -> None:
    status, answer, _ = submit(body, lambda_context)
    assert status == 422, answer
    assert sorted(problem["field"] for problem in answer["errors"]) == sorted(fields), answer
    assert all(not problem["message"].startswith("Value error") for problem in answer["errors"]), answer
    assert not upstream.routes[0].called and not upstream.routes[1].called


def test_get_models_lists_every_model_with_its_input_schema(aws_stack: Any, lambda_context: Any) -> None:
    from api_handler import lambda_handler
    from image_pipeline.market_registry import MODELS

    event = load_event("api_list_tasks")
    event.update(
        path="/models", resource="/models", queryStringParameters=None, multiValueQueryStringParameters=None
    )
    response = lambda_handler(event, lambda_context)
    assert response["statusCode"] == 200
    models = {entry["model"]: entry for entry in json.loads(response["body"])["models"]}
    assert list(models)[:3] == ["gpt-4o-image", "flux-kontext-pro", "flux-kontext-max"]
    assert set(MODELS) <= set(models) and len(models) == 3 + len(MODELS)
    fast = models["google/imagen4-fast"]
    assert fast["request"] == "input" and fast["images"] == {"field": "num_images", "default": 1, "max": 4}
    assert fast["input"]["required"] == ["prompt"] and "num_images" in fast["input"]["properties"]
    assert models["qwen/image-edit"]["imageUrlFields"] == ["image_url"]
    assert (
        models["gpt-4o-image"]["request"] == "fields"
        and "size" in models["gpt-4o-image"]["input"]["required"]
    )


def test_the_daily_quota_counts_the_images_a_market_task_asks_for(
    aws_stack: Any, upstream: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from image_pipeline.settings import reset_settings_cache

    monkeypatch.setenv("CLIENT_DAILY_IMAGES", "5")
    reset_settings_cache()
    four = {"model": "google/imagen4-fast", "input": {"prompt": "x", "num_images": "4"}}
    assert submit(four, lambda_context)[0] == 202
    status, answer, _ = submit(four, lambda_context)
    assert status == 429 and "asks for 4" in answer["message"]


def market_task(resources: Any) -> None:
    record_task(
        table(resources),
        OURS,
        upstream_task_id=UPSTREAM_ID,
        token=TOKEN,
        options={"model": "google/imagen4-fast", "input": {"prompt": "a lighthouse", "num_images": "2"}},
    )


def test_a_market_success_callback_enqueues_one_job_per_result_url_once(
    aws_stack: Any, lambda_context: Any
) -> None:
    market_task(aws_stack)
    assert call_back(load_event("callback_market_success"), lambda_context) == (200, {"status": "accepted"})
    task = table(aws_stack).get_task(OURS)
    assert task.status == "downloading" and task.imagesExpected == 2
    body = json.loads(load_event("callback_market_success")["body"])
    urls = json.loads(body["data"]["resultJson"])["resultUrls"]
    assert [job["url"] for job in queued_jobs(aws_stack)] == urls
    assert call_back(load_event("callback_market_success"), lambda_context) == (200, {"status": "duplicate"})


def test_a_market_failure_callback_ends_the_task_failed_with_its_code_and_reason(
    aws_stack: Any, lambda_context: Any
) -> None:
    market_task(aws_stack)
    assert call_back(load_event("callback_market_failure"), lambda_context) == (200, {"status": "accepted"})
    task = table(aws_stack).get_task(OURS)
    assert task.status == "failed" and task.error.code == 501
    assert task.error.message == "Internal server error (failCode 500)"
    assert queued_jobs(aws_stack) == []
