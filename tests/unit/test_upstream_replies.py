"""The upstream's replies read without pydantic: the same verdicts as the pydantic models they replaced
(tests/pydantic_replies.py), every problem named in plain words, and no pydantic on the import path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from image_pipeline.errors import CallbackRejected
from image_pipeline.logic.callbacks import parse_callback
from image_pipeline.upstream_replies import (
    CallbackData,
    CallbackPayload,
    Envelope,
    InvalidReply,
    ResultInfo,
    TaskDetails,
)
from pydantic import ValidationError

from tests import pydantic_replies
from tests.conftest import ROOT

TASK = "d231a99a9a9f1dd8f895be1b97be8065"


def callback(code: Any = 200, **data: Any) -> dict[str, Any]:
    return {"code": code, "msg": "success", "data": {"taskId": TASK, **data}}


def details(**fields: Any) -> dict[str, Any]:
    return {"taskId": TASK, **fields}


# (reply class, document, what it reads as: {attribute: value}, or the problem a refusal names)
ACCEPTED: list[tuple[type, Any, dict[str, Any]]] = [
    # A whole number as pydantic's lax mode took it: a float without a fraction, numeric text.
    (CallbackPayload, callback(200.0), {"code": 200}),
    (CallbackPayload, callback("200"), {"code": 200}),
    (CallbackPayload, callback(" 200\n"), {"code": 200}),
    (CallbackPayload, callback("\u3000+0200.000"), {"code": 200}),
    (CallbackPayload, callback("1_000"), {"code": 1000}),
    (CallbackPayload, callback("-0"), {"code": 0}),
    (CallbackPayload, callback(9999), {"code": 9999}),
    (CallbackPayload, {"code": 501, "data": {"taskId": TASK}}, {"msg": "", "result_urls": []}),
    # Both task id keys; the first present wins, even when the other is malformed.
    (CallbackPayload, {"code": 200, "data": {"task_id": TASK}}, {"task_id": TASK}),
    (CallbackPayload, {"code": 200, "data": {"taskId": TASK, "task_id": "$$"}}, {"task_id": TASK}),
    (CallbackPayload, callback(taskId="a" * 128), {"task_id": "a" * 128}),
    # Both result list keys and the single-image shape; empty URLs are dropped.
    (
        CallbackPayload,
        callback(info={"resultUrls": ["https://r/1.png", ""]}),
        {"result_urls": ["https://r/1.png"]},
    ),
    (CallbackPayload, callback(info={"result_urls": None, "resultUrls": ["x"]}), {"result_urls": []}),
    (
        CallbackPayload,
        callback(info={"resultImageUrl": "https://r", "originImageUrl": None}),
        {"result_urls": ["https://r"]},
    ),
    (CallbackPayload, callback(info=None), {"result_urls": []}),
    # Unknown fields, at any level and of any shape, are ignored.
    (CallbackPayload, {**callback(info={"x": [1]}, extra={"deep": [[]]}), "extra": None}, {"code": 200}),
    (TaskDetails, details(progress="1.00", createTime="2024-01-15 10:30:00"), {"progress": "1.00"}),
    (
        TaskDetails,
        details(progress=1, errorCode=400.0, createTime=1755572609000),
        {"progress": 1.0, "errorCode": 400},
    ),
    (TaskDetails, details(errorCode="400", successFlag="3"), {"errorCode": "400", "successFlag": 3}),
    (TaskDetails, details(progress=float("inf"), status=None), {"progress_fraction": 1.0}),
    (TaskDetails, details(taskId="", successFlag=10**30), {"taskId": "", "successFlag": 10**30}),
    (TaskDetails, details(response={}), {"response": ResultInfo()}),
    (Envelope, {"code": "200", "data": [1, {"a": None}]}, {"code": 200, "data": [1, {"a": None}]}),
    (Envelope, {"code": 10**30}, {"code": 10**30, "msg": "", "data": None}),
]
REFUSED: list[tuple[type, Any, str]] = [
    (CallbackPayload, [], "must be an object, not an array"),
    (CallbackPayload, None, "must be an object, not null"),
    (CallbackPayload, {"code": 200}, "data: is required"),
    (CallbackPayload, {"data": {"taskId": TASK}}, "code: is required"),
    (CallbackPayload, callback(True), "code: must be a whole number from 0 to 9999, not a boolean"),
    (CallbackPayload, callback(200.5), "code: must be a whole number from 0 to 9999"),
    (CallbackPayload, callback(10000), "code: must be a whole number from 0 to 9999"),
    (CallbackPayload, callback(-1), "code: must be a whole number from 0 to 9999"),
    (CallbackPayload, callback("2e2"), "code: must be a whole number from 0 to 9999"),
    (CallbackPayload, callback("200."), "code: must be a whole number from 0 to 9999"),
    (CallbackPayload, callback("٢٠٠"), "code: must be a whole number from 0 to 9999"),
    (CallbackPayload, callback("\ufeff200"), "code: must be a whole number from 0 to 9999"),
    (CallbackPayload, callback(float("nan")), "code: must be a whole number from 0 to 9999"),
    (CallbackPayload, callback(None), "code: must be a whole number from 0 to 9999, not null"),
    (CallbackPayload, {**callback(), "msg": None}, "msg: must be a string, not null"),
    (CallbackPayload, {"code": 200, "data": None}, "data: must be an object, not null"),
    (CallbackPayload, {"code": 200, "data": [TASK]}, "data: must be an object, not an array"),
    (CallbackPayload, {"code": 200, "data": {}}, "data.taskId: is required"),
    (
        CallbackPayload,
        callback(taskId="../../etc"),
        "data.taskId: must be 1 to 128 letters, digits, '_' or '-'",
    ),
    (CallbackPayload, callback(taskId=""), "data.taskId: must be 1 to 128"),
    (CallbackPayload, callback(taskId="a" * 129), "data.taskId: must be 1 to 128"),
    (CallbackPayload, callback(taskId=TASK + "\n"), "data.taskId: must be 1 to 128"),
    (
        CallbackPayload,
        callback(taskId=12345),
        "data.taskId: must be 1 to 128 letters, digits, '_' or '-', not a number",
    ),
    (
        CallbackPayload,
        {"code": 200, "data": {"taskId": None, "task_id": TASK}},
        "data.taskId: must be 1 to 128",
    ),
    (CallbackPayload, {"code": 200, "data": {"task_id": "a b"}}, "data.task_id: must be 1 to 128"),
    (CallbackPayload, callback(info=[]), "data.info: must be an object, not an array"),
    (
        CallbackPayload,
        callback(info={"result_urls": "https://r"}),
        "data.info.result_urls: must be an array of strings",
    ),
    (
        CallbackPayload,
        callback(info={"resultUrls": ["x", None]}),
        "data.info.resultUrls[1]: must be a string, not null",
    ),
    (
        CallbackPayload,
        callback(info={"result_urls": 5, "resultUrls": ["x"]}),
        "data.info.result_urls: must be an array",
    ),
    (
        CallbackPayload,
        callback(info={"resultImageUrl": 1}),
        "data.info.resultImageUrl: must be a string, not a number",
    ),
    (TaskDetails, {}, "taskId: is required"),
    (TaskDetails, details(taskId=None), "taskId: must be a string, not null"),
    (TaskDetails, details(successFlag="done"), "successFlag: must be a whole number"),
    (TaskDetails, details(successFlag=True), "successFlag: must be a whole number, not a boolean"),
    (TaskDetails, details(successFlag=9.3e18), "successFlag: must be a whole number"),
    (TaskDetails, details(successFlag="1" * 4301), "successFlag: must be a whole number"),
    (TaskDetails, details(progress=[]), "progress: must be a number or a string, not an array"),
    (TaskDetails, details(progress=10**400), "progress: must be a number or a string"),
    (TaskDetails, details(progress=False), "progress: must be a number or a string, not a boolean"),
    (TaskDetails, details(errorCode=400.5), "errorCode: must be a whole number or a string"),
    (TaskDetails, details(createTime={}), "createTime: must be a whole number or a string, not an object"),
    (TaskDetails, details(response="https://r"), "response: must be an object, not a string"),
    (Envelope, {"msg": "x"}, "code: is required"),
    (Envelope, {"code": 200, "msg": 5}, "msg: must be a string, not a number"),
    (Envelope, "<html>", "must be an object, not a string"),
]


def observed(reply: Any, name: str) -> Any:
    value = getattr(reply, name)
    return value() if callable(value) else value


@pytest.mark.parametrize(("cls", "document", "expected"), ACCEPTED)
def test_tricky_documents_that_are_accepted(cls: Any, document: Any, expected: dict[str, Any]) -> None:
    reply = cls.from_json(document)
    assert {name: observed(reply, name) for name in expected} == expected
    # The pydantic model it replaced read the same values.
    reference = getattr(pydantic_replies, cls.__name__).model_validate(document)
    assert json.dumps(pydantic_replies.plain(reply)) == json.dumps(pydantic_replies.plain(reference))


@pytest.mark.parametrize(("cls", "document", "problem"), REFUSED)
def test_tricky_documents_that_are_refused(cls: Any, document: Any, problem: str) -> None:
    with pytest.raises(InvalidReply) as refused:
        cls.from_json(document)
    assert any(listed.startswith(problem) for listed in refused.value.problems), refused.value.problems
    with pytest.raises(ValidationError):  # and the pydantic model it replaced refused it too
        getattr(pydantic_replies, cls.__name__).model_validate(document)


def test_every_problem_is_listed() -> None:
    document = {
        "code": "x",
        "msg": 1,
        "data": {"taskId": "$", "info": {"resultUrls": [1, None], "resultImageUrl": 2}},
    }
    with pytest.raises(InvalidReply) as refused:
        CallbackPayload.from_json(document)
    assert refused.value.problems == [
        "code: must be a whole number from 0 to 9999",
        "msg: must be a string, not a number",
        "data.taskId: must be 1 to 128 letters, digits, '_' or '-'",
        "data.info.resultUrls[0]: must be a string, not a number",
        "data.info.resultUrls[1]: must be a string, not null",
        "data.info.resultImageUrl: must be a string, not a number",
    ]
    assert str(refused.value) == "; ".join(refused.value.problems)
    assert isinstance(refused.value, ValueError)


def test_a_malformed_callback_is_refused_naming_each_problem_in_plain_words() -> None:
    body = json.dumps({"code": "two hundred", "data": {"taskId": "../../etc", "info": {"resultUrls": [7]}}})
    with pytest.raises(CallbackRejected) as refused:
        parse_callback(body, 64 * 1024)
    assert refused.value.status_code == 400
    assert refused.value.message == (
        "callback body does not match the callback format: code: must be a whole number from 0 to 9999; "
        "data.taskId: must be 1 to 128 letters, digits, '_' or '-'; "
        "data.info.resultUrls[0]: must be a string, not a number"
    )
    with pytest.raises(CallbackRejected, match=r"format: must be an object, not an array$"):
        parse_callback("[]", 64 * 1024)


def test_booleans_are_not_numbers_although_pydantic_took_them_as_1_and_0() -> None:
    # The one verdict that differs from the old models: `"code": true` failed the task with code 1.
    for document in (callback(True), callback(False)):
        with pytest.raises(InvalidReply):
            CallbackPayload.from_json(document)
    with pytest.raises(InvalidReply):
        TaskDetails.from_json(details(successFlag=True))


def test_built_by_hand_as_the_reconciler_does() -> None:
    payload = CallbackPayload(
        code=200,
        msg="success",
        data=CallbackData(taskId=TASK, info=ResultInfo(result_urls=["https://r/1.png"])),
    )
    assert payload.task_id == TASK and payload.succeeded and payload.result_urls() == ["https://r/1.png"]
    assert payload == CallbackPayload.from_json(
        {"code": 200, "msg": "success", "data": {"taskId": TASK, "info": {"resultUrls": ["https://r/1.png"]}}}
    )
    # What the pydantic models refused on construction is still refused.
    with pytest.raises(InvalidReply, match="taskId"):
        CallbackData(taskId="not/a/task")
    with pytest.raises(InvalidReply, match="code"):
        CallbackPayload(code=123456, data=CallbackData(taskId=TASK))
    with pytest.raises(TypeError):
        CallbackPayload(200, "success", CallbackData(taskId=TASK))  # type: ignore[misc]


def test_reading_replies_loads_no_pydantic() -> None:
    # Given a fresh interpreter with only the layer on its path
    code = (
        "import sys, json\n"
        "import image_pipeline.upstream_replies, image_pipeline.adapters.upstream\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "layers" / "shared")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True, env=environment
    )
    loaded = json.loads(done.stdout.splitlines()[-1])
    # Then neither pydantic nor the request models came with them
    unexpected = [
        name
        for name in loaded
        if name.split(".")[0] in ("pydantic", "pydantic_core") or name == "image_pipeline.upstream_requests"
    ]
    assert unexpected == []
    assert "image_pipeline.upstream_replies" in loaded


def test_a_market_callback_is_read_by_its_state_and_its_result_json_string() -> None:
    success = CallbackPayload.from_json(
        {
            "code": 200,
            "msg": "Playground task completed successfully.",
            "data": {
                "taskId": "ed578231bfed231f0884c564579a965d",
                "model": "google/nano-banana",
                "state": "success",
                "param": '{"input":"{}"}',
                "resultJson": json.dumps({"resultUrls": ["https://tempfile.aiquickdraw.com/images/a.png"]}),
                "costTime": 83,
                "creditsConsumed": 3,
            },
        }
    )
    assert success.succeeded and success.result_urls() == ["https://tempfile.aiquickdraw.com/images/a.png"]
    failure = CallbackPayload.from_json(
        {
            "code": 501,
            "msg": "Playground task failed.",
            "data": {
                "taskId": "bd8f4b1a",
                "state": "fail",
                "failCode": "500",
                "failMsg": "Internal server error",
            },
        }
    )
    assert not failure.succeeded and failure.result_urls() == []
    assert (failure.failure_code, failure.failure_message) == (501, "Internal server error (failCode 500)")
    # The state decides, not the code: a fail state sent with code 200 is a failure (kept as 500).
    odd = CallbackPayload.from_json({"code": 200, "msg": "", "data": {"taskId": "x1", "state": "fail"}})
    assert not odd.succeeded and odd.failure_code == 500
    # An unreadable resultJson lists no images (the task then ends failed no_images, never guesses).
    broken = CallbackPayload.from_json(
        {"code": 200, "data": {"taskId": "x2", "state": "success", "resultJson": "{"}}
    )
    assert broken.succeeded and broken.result_urls() == []
