"""Fuzzing the upstream pydantic models: any JSON validates or raises ValidationError, nothing else,
and whatever validates keeps the invariants the handlers rely on."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from tests.fuzz._support import (
    SAFE_DEPTH,
    callback_bodies,
    callback_body_strings,
    fuzz_settings,
    json_values,
    mutated,
    nested,
    weighted,
)

DETAILS = [
    {
        "taskId": "t1",
        "successFlag": 1,
        "status": "SUCCESS",
        "progress": "1.00",
        "response": {"resultUrls": ["https://x/a.png"]},
        "createTime": 1795294800000,
        "completeTime": 1795294900000,
    },
    {"taskId": "t2", "successFlag": 0, "status": "GENERATING", "progress": 0.4, "errorCode": None},
    {
        "taskId": "t3",
        "successFlag": 3,
        "status": "GENERATE_FAILED",
        "errorCode": "400",
        "errorMessage": "no",
        "createTime": "2026-11-21 21:00:00",
        "response": {"result_urls": None, "resultImageUrl": "https://x/b.png"},
    },
]
OPTIONS = [
    {"prompt": "a red fox in snow, watercolor", "size": "3:2", "nVariants": 2},
    {
        "prompt": "sky",
        "size": "1:1",
        "filesUrl": ["https://example.com/a.png"],
        "maskUrl": "https://example.com/m.png",
    },
    {
        "size": "2:3",
        "filesUrl": ["https://e.com/a.jpg?x=1"],
        "enableFallback": True,
        "fallbackModel": "FLUX_MAX",
        "isEnhance": True,
    },
]
LEAVES = st.sampled_from(
    [
        "1:1",
        "3:2",
        "2:3",
        "4:3",
        "https://e.com/a.png",
        "https://e.com/a.gif",
        "http://e.com/x.webp",
        "GPT_IMAGE_1",
        "FLUX_MAX",
        "nan",
        "inf",
        "-1",
        "1e999",
        "½",
        "0.5",
        "SUCCESS",
        "CREATE_TASK_FAILED",
        "",
        " ",
        1,
        2,
        3,
        4,
        1.0,
        2.5,
        True,
        None,
        10**40,
        -(10**40),
    ]
)


def documents(bases: list[Any]) -> st.SearchStrategy[Any]:
    return weighted(
        (3, mutated(bases, weighted((2, json_values()), (1, LEAVES)))),
        (1, st.sampled_from(bases)),
        (2, json_values()),
        (1, st.integers(1, SAFE_DEPTH).map(lambda depth: {**bases[0], "extra": nested(depth, 1)})),
    )


def validate_both_ways(model: type[BaseModel], document: Any) -> BaseModel | None:
    """Validate as Python and as JSON text: the same verdict, and only ValidationError for a refusal."""
    try:
        from_python = model.model_validate(document)
    except ValidationError:
        from_python = None
    text = json.dumps(document)
    try:
        from_json = model.model_validate_json(text)
    except ValidationError as error:
        from_json = None
        # pydantic's JSON parser stops at ~200 levels of nesting, which json.loads (what the handlers use)
        # does not: a documented difference of the parser, not of the models.
        if from_python is not None and all("recursion limit" in e["msg"] for e in error.errors()):
            return from_python
    if (from_python is None) != (from_json is None):
        pytest.fail(f"{model.__name__}: python and JSON validation disagree on {text[:300]}")
    return from_python


@fuzz_settings(max_examples=200)
@given(document=documents(callback_bodies()))
def test_callback_payload_validates_or_raises_validation_error(document: Any) -> None:
    from image_pipeline.upstream_models import CALLBACK_TASK_ID_MAX, CallbackPayload

    payload = validate_both_ways(CallbackPayload, document)
    if payload is None:
        return
    assert isinstance(payload, CallbackPayload)
    assert isinstance(payload.code, int) and isinstance(payload.msg, str)
    task_id = payload.task_id
    assert 1 <= len(task_id) <= CALLBACK_TASK_ID_MAX
    assert all(char.isascii() and (char.isalnum() or char in "_-") for char in task_id), task_id
    assert payload.succeeded == (payload.code == 200)
    urls = payload.result_urls()
    assert isinstance(urls, list) and all(isinstance(url, str) and url for url in urls)


@fuzz_settings(max_examples=150)
@given(body=callback_body_strings(big_numbers=True))
def test_callback_payload_from_raw_text_raises_only_validation_error(body: str) -> None:
    from image_pipeline.upstream_models import CallbackPayload

    with contextlib.suppress(ValidationError):
        CallbackPayload.model_validate_json(body)


@fuzz_settings(max_examples=200)
@given(document=documents(DETAILS))
def test_task_details_validates_or_raises_validation_error(document: Any) -> None:
    from image_pipeline.upstream_models import TaskDetails

    details = validate_both_ways(TaskDetails, document)
    if details is None:
        return
    assert isinstance(details, TaskDetails) and isinstance(details.taskId, str)
    assert isinstance(details.is_success, bool) and isinstance(details.is_failure, bool)
    fraction = details.progress_fraction
    assert fraction is None or (not math.isnan(fraction) and 0.0 <= fraction <= 1.0), (
        details.progress,
        fraction,
    )
    if details.response is not None:
        assert all(isinstance(url, str) and url for url in details.response.urls())


@fuzz_settings(max_examples=200)
@given(document=documents(OPTIONS))
def test_generation_options_validates_or_raises_validation_error(document: Any) -> None:
    from image_pipeline.upstream_models import (
        INPUT_IMAGE_EXTENSIONS,
        MAX_INPUT_IMAGES,
        MAX_PROMPT_CHARS,
        GenerateRequest,
        GenerationOptions,
    )

    options = validate_both_ways(GenerationOptions, document)
    if options is None:
        return
    assert isinstance(options, GenerationOptions)
    assert options.size in ("1:1", "3:2", "2:3") and options.nVariants in (1, 2, 4)
    assert options.prompt or options.filesUrl
    assert options.prompt is None or (options.prompt.strip() and len(options.prompt) <= MAX_PROMPT_CHARS)
    assert len(options.filesUrl or ()) <= MAX_INPUT_IMAGES
    for url in [*(options.filesUrl or ()), *([options.maskUrl] if options.maskUrl else [])]:
        assert url.startswith(("https://", "http://"))
        assert url.split("?", 1)[0].split("#", 1)[0].lower().endswith(INPUT_IMAGE_EXTENSIONS)
    assert not options.maskUrl or options.filesUrl
    assert not options.fallbackModel or options.enableFallback
    # What the handler forwards round-trips, and becomes an upstream request that serialises to JSON.
    dumped = options.model_dump(exclude_none=True)
    assert GenerationOptions.model_validate(dumped) == options
    request = GenerateRequest(**dumped, callBackUrl="https://abc.example/Prod/callbacks/s?token=t")
    assert json.loads(json.dumps(request.to_upstream_json()))["size"] == options.size
