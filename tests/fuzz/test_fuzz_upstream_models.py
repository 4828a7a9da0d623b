"""Fuzzing what we read from and send to the upstream: any JSON document gives a reply or InvalidReply
(the request models: a model or ValidationError), nothing else; a reply gets the verdict and the values
the pydantic models it replaced gave (tests/pydantic_replies.py); whatever is accepted keeps the
invariants the handlers rely on."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from tests import pydantic_replies
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
ENVELOPES = [
    {"code": 200, "msg": "success", "data": {"taskId": "t1"}},
    {"code": 429, "msg": "slow down"},
    {"code": "200", "data": None},
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
        # Numbers as pydantic's lax mode read them, and near misses.
        " 200 ",
        "200.0",
        "2_00",
        "\u3000200",
        "\ufeff200",
        "200.",
        "2e2",
        "0x10",
        "-0",
        200.0,
        200.5,
        1e20,
        9999,
        10000,
        False,
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


def read_like_pydantic(cls: Any, document: Any) -> Any:
    """The reply, or None for InvalidReply (any other exception fails): what the pydantic model said."""
    from image_pipeline.upstream_replies import InvalidReply

    try:
        reply = cls.from_json(document)
    except InvalidReply as refused:
        assert refused.problems and all(isinstance(p, str) and p for p in refused.problems)
        reply = None
    try:
        expected = getattr(pydantic_replies, cls.__name__).model_validate(document)
    except ValidationError:
        expected = None
    text = json.dumps(document)[:300]
    assert (reply is None) == (expected is None), f"{cls.__name__}: verdicts differ on {text}"
    if reply is not None:  # the same values, of the same types (json.dumps tells 200 from 200.0, NaN alike)
        assert json.dumps(pydantic_replies.plain(reply)) == json.dumps(pydantic_replies.plain(expected)), text
    return reply


@fuzz_settings(max_examples=200)
@given(document=documents(callback_bodies()))
def test_callback_payload_reads_or_raises_invalid_reply(document: Any) -> None:
    from image_pipeline.upstream_replies import CALLBACK_TASK_ID_MAX, CallbackPayload

    payload = read_like_pydantic(CallbackPayload, document)
    if payload is None:
        return
    assert isinstance(payload, CallbackPayload)
    assert isinstance(payload.code, int) and isinstance(payload.msg, str)
    assert not isinstance(payload.code, bool) and 0 <= payload.code <= 9999
    task_id = payload.task_id
    assert 1 <= len(task_id) <= CALLBACK_TASK_ID_MAX
    assert all(char.isascii() and (char.isalnum() or char in "_-") for char in task_id), task_id
    assert payload.succeeded == (payload.code == 200)
    urls = payload.result_urls()
    assert isinstance(urls, list) and all(isinstance(url, str) and url for url in urls)


@fuzz_settings(max_examples=150)
@given(body=callback_body_strings(big_numbers=True))
def test_callback_payload_from_raw_text_raises_only_invalid_reply(body: str) -> None:
    from image_pipeline.upstream_replies import CallbackPayload, InvalidReply

    try:  # decoded as the callback handler decodes it
        document = json.loads(body)
    except (ValueError, RecursionError):
        return
    with contextlib.suppress(InvalidReply):
        CallbackPayload.from_json(document)


@fuzz_settings(max_examples=200)
@given(document=documents(DETAILS))
def test_task_details_reads_or_raises_invalid_reply(document: Any) -> None:
    from image_pipeline.upstream_replies import TaskDetails

    details = read_like_pydantic(TaskDetails, document)
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


@fuzz_settings(max_examples=150)
@given(document=documents(ENVELOPES))
def test_envelope_reads_or_raises_invalid_reply(document: Any) -> None:
    from image_pipeline.upstream_replies import Envelope

    envelope = read_like_pydantic(Envelope, document)
    if envelope is not None:
        assert isinstance(envelope.code, int) and not isinstance(envelope.code, bool)
        assert isinstance(envelope.msg, str)


@fuzz_settings(max_examples=200)
@given(document=documents(OPTIONS))
def test_generation_options_validates_or_raises_validation_error(document: Any) -> None:
    from image_pipeline.upstream_requests import (
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
