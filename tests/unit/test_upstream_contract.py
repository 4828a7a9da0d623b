"""Our models and client of the upstream accept every form docs/upstream.md documents, conflicts included."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from image_pipeline.adapters.upstream import UpstreamClient
from image_pipeline.errors import (
    InsufficientCredits,
    RateLimited,
    UpstreamBadRequest,
    UpstreamUnauthorized,
    UpstreamUnavailable,
)
from image_pipeline.upstream_replies import CallbackPayload, TaskDetails
from image_pipeline.upstream_requests import GenerateRequest, GenerationOptions
from pydantic import ValidationError

TASK_ID = "d231a99a9a9f1dd8f895be1b97be8065"


def client_answering(handler: Any) -> UpstreamClient:
    return UpstreamClient("https://api.kie.ai", "key-1", transport=httpx.MockTransport(handler))


def envelope(
    code: int = 200, data: Any = None, msg: str = "success", status: int = 200, **headers: str
) -> Any:
    return lambda request: httpx.Response(
        status, json={"code": code, "msg": msg, "data": data}, headers=headers
    )


@pytest.mark.parametrize("key", ["resultUrls", "result_urls"])
@pytest.mark.parametrize("create_time", [1755572609000, "2024-01-15 10:30:00"])
def test_task_details_accept_both_spellings(key: str, create_time: Any) -> None:
    details = TaskDetails.from_json(
        {
            "taskId": TASK_ID,
            "successFlag": 1,
            "status": "SUCCESS",
            "progress": "1.00",
            "createTime": create_time,
            "response": {key: ["https://tempfile.aiquickdraw.com/s/a.png"]},
        }
    )
    assert details.is_success and not details.is_failure
    assert details.response is not None and details.response.urls() == [
        "https://tempfile.aiquickdraw.com/s/a.png"
    ]
    assert details.progress_fraction == 1.0


@pytest.mark.parametrize(
    ("flag", "status"), [(2, "GENERATE_FAILED"), (3, None), (None, "CREATE_TASK_FAILED")]
)
def test_failure_flags_2_and_3_are_terminal(flag: int | None, status: str | None) -> None:
    details = TaskDetails.from_json({"taskId": TASK_ID, "successFlag": flag, "status": status})
    assert details.is_failure and not details.is_success


@pytest.mark.parametrize("id_key", ["taskId", "task_id"])
def test_callback_reads_either_task_id_key(id_key: str) -> None:
    payload = CallbackPayload.from_json(
        {
            "code": 200,
            "msg": "success",
            "data": {id_key: TASK_ID, "info": {"result_urls": ["https://a/1.png"]}},
        }
    )
    assert payload.task_id == TASK_ID and payload.result_urls() == ["https://a/1.png"]


def test_single_image_callback_shape() -> None:
    ok = CallbackPayload.from_json(
        {
            "code": 200,
            "data": {"taskId": "t1", "info": {"originImageUrl": "https://o", "resultImageUrl": "https://r"}},
        }
    )
    failed = CallbackPayload.from_json(
        {"code": 501, "data": {"taskId": "t1", "info": {"originImageUrl": "", "resultImageUrl": ""}}}
    )
    assert ok.result_urls() == ["https://r"]
    assert failed.result_urls() == [] and not failed.succeeded


def test_generate_request_carries_every_field() -> None:
    options = GenerationOptions(
        prompt="p",
        size="2:3",
        filesUrl=["https://e.com/a.webp"],
        maskUrl="https://e.com/m.png",
        nVariants=4,
        isEnhance=True,
        enableFallback=True,
        fallbackModel="GPT_IMAGE_1",
    )
    body = GenerateRequest(
        **options.model_dump(exclude_none=True), callBackUrl="https://x/cb?token=t"
    ).to_upstream_json()
    assert body == {
        "prompt": "p",
        "size": "2:3",
        "filesUrl": ["https://e.com/a.webp"],
        "maskUrl": "https://e.com/m.png",
        "nVariants": 4,
        "isEnhance": True,
        "enableFallback": True,
        "fallbackModel": "GPT_IMAGE_1",
        "callBackUrl": "https://x/cb?token=t",
    }


def test_files_alone_are_enough_for_variants() -> None:
    assert GenerationOptions(size="1:1", filesUrl=["https://e.com/a.jpg"]).prompt is None
    with pytest.raises(ValidationError):
        GenerationOptions(size="1:1")


def test_generate_sends_bearer_and_returns_the_task_id() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"code": 200, "msg": "success", "data": {"taskId": TASK_ID}})

    task_id = client_answering(handler).generate(GenerateRequest(prompt="p", size="1:1"))
    assert task_id == TASK_ID
    assert seen[0].headers["Authorization"] == "Bearer key-1"
    assert seen[0].url.path == "/api/v1/gpt4o-image/generate"
    assert json.loads(seen[0].content) == {
        "prompt": "p",
        "size": "1:1",
        "nVariants": 1,
        "isEnhance": False,
        "enableFallback": False,
    }


@pytest.mark.parametrize(
    ("answer", "error_type", "code"),
    [
        (envelope(401, msg="You do not have access permissions"), UpstreamUnauthorized, 401),
        (envelope(402, msg="insufficient"), InsufficientCredits, 402),
        (envelope(422, msg="This field is required"), UpstreamBadRequest, 422),
        (envelope(400, msg="bad json"), UpstreamBadRequest, 400),
        (envelope(455, msg="maintenance"), UpstreamUnavailable, 455),
        (envelope(500, msg="server"), UpstreamUnavailable, 500),
        (envelope(505, msg="feature disabled"), UpstreamUnavailable, 505),
        (envelope(550, msg="queue full"), UpstreamUnavailable, 550),
        (envelope(429, status=429, **{"Retry-After": "3"}), RateLimited, 429),
        (lambda request: httpx.Response(503, text="<html>"), UpstreamUnavailable, 503),
    ],
)
def test_error_envelopes_become_typed_errors(answer: Any, error_type: type[Exception], code: int) -> None:
    with pytest.raises(error_type) as caught:
        client_answering(answer).generate(GenerateRequest(prompt="p", size="1:1"))
    assert caught.value.code == code  # type: ignore[attr-defined]


def test_rate_limit_carries_retry_after() -> None:
    with pytest.raises(RateLimited) as caught:
        client_answering(envelope(429, status=429, **{"Retry-After": "3"})).generate(
            GenerateRequest(prompt="p", size="1:1")
        )
    assert caught.value.retry_after == 3


def test_network_error_is_unavailable_without_code() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(UpstreamUnavailable) as caught:
        client_answering(handler).task_details(TASK_ID)
    assert caught.value.code is None


@pytest.mark.parametrize(
    "data", ["https://f/x.png?X-Amz-Expires=1200", {"downloadUrl": "https://f/x.png?X-Amz-Expires=1200"}]
)
def test_download_url_reads_both_documented_forms(data: Any) -> None:
    assert (
        client_answering(envelope(data=data))
        .download_url(TASK_ID, "https://r/1.png")
        .startswith("https://f/x.png")
    )


def test_credit_is_a_number() -> None:
    assert client_answering(envelope(data=42.5)).credit() == 42.5


def test_unreadable_task_details_are_unavailable_and_name_each_field() -> None:
    answer = envelope(data={"taskId": TASK_ID, "successFlag": "done", "response": []})
    with pytest.raises(UpstreamUnavailable) as caught:
        client_answering(answer).task_details(TASK_ID)
    assert caught.value.code == 200
    assert caught.value.message == (
        "record-info answered unreadable task details: successFlag: must be a whole number; "
        "response: must be an object, not an array"
    )


@pytest.mark.parametrize(
    ("status", "body", "error_type", "code"),
    [
        (200, {"code": True, "msg": "success", "data": {"taskId": TASK_ID}}, UpstreamUnavailable, 200),
        (200, {"code": 200, "msg": None, "data": {"taskId": TASK_ID}}, UpstreamUnavailable, 200),
        (401, {"msg": "no code at all"}, UpstreamUnauthorized, 401),
        (402, ["not", "an", "envelope"], InsufficientCredits, 402),
    ],
)
def test_a_body_that_is_no_envelope_is_judged_by_the_http_status(
    status: int, body: Any, error_type: type[Exception], code: int
) -> None:
    answer = client_answering(lambda request: httpx.Response(status, json=body))
    with pytest.raises(error_type) as caught:
        answer.generate(GenerateRequest(prompt="p", size="1:1"))
    assert caught.value.code == code  # type: ignore[attr-defined]


@pytest.mark.parametrize("code", [200, "200", 200.0, " 200 "])
def test_an_envelope_code_reads_as_it_always_did(code: Any) -> None:
    answer = client_answering(
        lambda request: httpx.Response(200, json={"code": code, "data": {"taskId": "t"}})
    )
    assert answer.generate(GenerateRequest(prompt="p", size="1:1")) == "t"
