"""What the 4o Image / Flux Kontext platform sends us (docs/upstream.md): envelopes, task details, callbacks.

Plain classes, no pydantic: the callback, downloader, reconciler and notifier import this on their cold
path, where pydantic alone would cost about half the budget. `from_json` reads a decoded JSON document
as leniently as the pydantic models it replaced did (pydantic's lax mode), so nothing the platform sent
before is refused now: a whole number may come as 200, 200.0, "200" or " 2_00.0 "; a result list as
`result_urls` or `resultUrls`; a task id as `taskId` or `task_id`; unknown fields are ignored. One
exception to that: a JSON true/false is never a number here (pydantic took true as 1, so a callback
`"code": true` failed a task with code 1).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from image_pipeline.json_fields import Fields, InvalidReply, refused

__all__ = [
    "CALLBACK_TASK_ID_MAX",
    "FLUX_MODELS",
    "FOUR_O_MODEL",
    "MAX_STATUS_CODE",
    "TASK_ID",
    "CallbackData",
    "CallbackPayload",
    "Envelope",
    "InvalidReply",
    "ResultInfo",
    "TaskDetails",
    "error_status",
    "is_storable_text",
]

FOUR_O_MODEL = "gpt-4o-image"
FLUX_MODELS = ("flux-kontext-pro", "flux-kontext-max")
CALLBACK_TASK_ID_MAX = 128
TASK_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{CALLBACK_TASK_ID_MAX}}}")
TASK_ID_RULE = f"must be 1 to {CALLBACK_TASK_ID_MAX} letters, digits, '_' or '-'"
MAX_STATUS_CODE = 9999  # the platform's codes are HTTP-like; anything longer is not a status
STATUS_CODE_RULE = f"must be a whole number from 0 to {MAX_STATUS_CODE}"


_STATUS_CODE_TEXT = re.compile(r"[0-9]{1,4}")  # ASCII digits only: \d and str.isdigit() take "²", "٣"


def error_status(value: int | str | None) -> int:
    """The status an upstream error code (a task's `errorCode`) stands for: an ASCII integer from 0 to
    9999, as a number or as text, is itself; anything else ("²", "٣", 10000, -1, "E42", none) is 500,
    a failure the upstream did not name in a way we can keep."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    return int(text) if isinstance(text, str) and _STATUS_CODE_TEXT.fullmatch(text) else 500


def result_json_urls(result_json: str | None) -> list[str]:
    """The Market's `resultJson`, a JSON *string* `{"resultUrls": [...]}` ("" or null until success):
    its URLs, or none when it holds no readable list."""
    if not result_json:
        return []
    try:
        decoded = json.loads(result_json)
    except (ValueError, RecursionError):
        return []
    urls = decoded.get("resultUrls") if isinstance(decoded, dict) else None
    if not isinstance(urls, list):
        return []
    return [url for url in urls if isinstance(url, str) and url]


MARKET_SUCCESS, MARKET_FAIL = "success", "fail"  # a Market task's `state` once it has ended


def is_storable_text(document: Any) -> bool:
    """False when a string in the document holds a lone surrogate (valid JSON, not storable UTF-8)."""
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- the values a field takes: each converter returns the value or raises Refused saying what fits ----

# pydantic-core's lax reading of an integer from text: a sign, ASCII digits with single underscores
# between them, an optional ".000" tail, inside white space as Rust trims it (not Python's strip()).
_WHOLE_NUMBER_TEXT = re.compile(r"([+-]?)([0-9]+(?:_[0-9]+)*)(?:\.0+)?")
_RUST_WHITESPACE = "\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(
    chr(code) for code in range(0x2000, 0x200B)
)
_MAX_DIGITS = 4300  # pydantic's (and Python's) limit on the digits of an integer read from text
_FLOAT_INT_LIMIT = 2.0**63  # pydantic reads a float as an integer only inside a signed 64-bit range


def _whole_number_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        whole = value.is_integer() and -_FLOAT_INT_LIMIT < value < _FLOAT_INT_LIMIT
        return int(value) if whole else None
    if not isinstance(value, str):
        return None
    match = _WHOLE_NUMBER_TEXT.fullmatch(value.strip(_RUST_WHITESPACE))
    if match is None:
        return None
    sign = "-" if match[1] == "-" else ""
    digits = match[2].replace("_", "").lstrip("0") or "0"
    if len(sign + digits) > _MAX_DIGITS:
        return None
    try:
        return int(sign + digits)
    except ValueError:  # an interpreter run with a lower limit (PYTHONINTMAXSTRDIGITS)
        return None


def _whole_number(value: Any) -> int:
    number = _whole_number_or_none(value)
    if number is None:
        raise refused("must be a whole number", value, int, float, str)
    return number


def _status_code(value: Any) -> int:
    number = _whole_number_or_none(value)
    if number is None or not 0 <= number <= MAX_STATUS_CODE:
        raise refused(STATUS_CODE_RULE, value, int, float, str)
    return number


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise refused("must be a string", value, str)
    return value


def _whole_number_or_text(value: Any) -> int | str:
    if isinstance(value, str):  # a string stays the string it is ("400" is not read as 400)
        return value
    number = _whole_number_or_none(value)
    if number is None:
        raise refused("must be a whole number or a string", value, int, float, str)
    return number


def _number_or_text(value: Any) -> float | str:
    if isinstance(value, str | float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # past the largest float, as pydantic refused it
            pass
    raise refused("must be a number or a string", value, int, float, str)


def _callback_task_id(value: Any) -> str:
    if not isinstance(value, str) or not TASK_ID.fullmatch(value):
        raise refused(TASK_ID_RULE, value, str)
    return value


def _or_null[T](convert: Callable[[Any], T]) -> Callable[[Any], T | None]:
    return lambda value: None if value is None else convert(value)


def _read_whole[T](reader: Callable[[Any, str, list[str]], T | None], document: Any) -> T:
    problems: list[str] = []
    read = reader(document, "", problems)
    if problems or read is None:
        raise InvalidReply(problems)
    return read


# -- the replies ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Envelope:
    """Every upstream answer: the body `code` is the real status, whatever the HTTP status says."""

    code: int
    msg: str = ""
    data: Any = None

    @classmethod
    def from_json(cls, document: Any) -> Self:
        return _read_whole(cls._read, document)

    @classmethod
    def _read(cls, document: Any, path: str, problems: list[str]) -> Self | None:
        fields = Fields(document, path, problems)
        code = fields.require(("code",), _whole_number)
        msg = fields.read(("msg",), _text, "")
        data = fields.read(("data",), lambda value: value, None)
        return cls(code=code, msg=msg, data=data) if fields.clean and code is not None else None


@dataclass(frozen=True, kw_only=True)
class ResultInfo:
    """The result part of a callback or of task details, in any of the shapes the platform uses."""

    result_urls: list[str] | None = None
    resultImageUrl: str | None = None
    originImageUrl: str | None = None

    def urls(self) -> list[str]:
        if self.result_urls is not None:
            return [url for url in self.result_urls if url]
        return [self.resultImageUrl] if self.resultImageUrl else []

    @classmethod
    def from_json(cls, document: Any) -> Self:
        return _read_whole(cls._read, document)

    @classmethod
    def _read(cls, document: Any, path: str, problems: list[str]) -> Self | None:
        fields = Fields(document, path, problems)
        # The reference says resultUrls, the quick starts result_urls: the first present wins, as before.
        urls = fields.strings(("result_urls", "resultUrls"))
        result = fields.read(("resultImageUrl",), _or_null(_text), None)
        origin = fields.read(("originImageUrl",), _or_null(_text), None)
        if not fields.clean:
            return None
        return cls(result_urls=urls, resultImageUrl=result, originImageUrl=origin)


@dataclass(frozen=True, kw_only=True)
class TaskDetails:
    """data of GET /api/v1/gpt4o-image/record-info (and of Flux Kontext's record-info)."""

    taskId: str
    successFlag: int | None = None
    status: str | None = None
    progress: str | float | None = None
    response: ResultInfo | None = None
    errorCode: int | str | None = None
    errorMessage: str | None = None
    createTime: int | str | None = None  # [conflict] epoch ms or "YYYY-MM-DD HH:mm:ss"
    completeTime: int | str | None = None
    # The Market's recordInfo: waiting | queuing | generating, then success | fail; results in the
    # resultJson string; a failure's code as a numeric string.
    state: str | None = None
    resultJson: str | None = None
    failCode: int | str | None = None
    failMsg: str | None = None

    @property
    def is_success(self) -> bool:
        return self.successFlag == 1 or self.status == "SUCCESS" or self.state == MARKET_SUCCESS

    @property
    def is_failure(self) -> bool:
        # 3 has been seen for failures too; treat 2 and 3 alike.
        return (
            self.successFlag in (2, 3)
            or self.status in ("CREATE_TASK_FAILED", "GENERATE_FAILED")
            or self.state == MARKET_FAIL
        )

    def result_urls(self) -> list[str]:
        if self.response is not None:
            return self.response.urls()
        return result_json_urls(self.resultJson)

    @property
    def progress_fraction(self) -> float | None:
        try:
            return min(1.0, max(0.0, float(self.progress))) if self.progress is not None else None
        except ValueError:
            return None

    @classmethod
    def from_json(cls, document: Any) -> Self:
        return _read_whole(cls._read, document)

    @classmethod
    def _read(cls, document: Any, path: str, problems: list[str]) -> Self | None:
        fields = Fields(document, path, problems)
        task_id = fields.require(("taskId",), _text)
        optional_text, whole_or_text = _or_null(_text), _or_null(_whole_number_or_text)
        details = cls(  # built before the verdict: TaskDetails checks nothing itself
            taskId=task_id or "",
            successFlag=fields.read(("successFlag",), _or_null(_whole_number), None),
            status=fields.read(("status",), optional_text, None),
            progress=fields.read(("progress",), _or_null(_number_or_text), None),
            response=fields.nested(("response",), ResultInfo._read, nullable=True),
            errorCode=fields.read(("errorCode",), whole_or_text, None),
            errorMessage=fields.read(("errorMessage",), optional_text, None),
            createTime=fields.read(("createTime",), whole_or_text, None),
            completeTime=fields.read(("completeTime",), whole_or_text, None),
            state=fields.read(("state",), optional_text, None),
            resultJson=fields.read(("resultJson",), optional_text, None),
            failCode=fields.read(("failCode",), whole_or_text, None),
            failMsg=fields.read(("failMsg",), optional_text, None),
        )
        return details if fields.clean and task_id is not None else None


@dataclass(frozen=True, kw_only=True)
class CallbackData:
    """The `data` of a callback: whose task, and its result links when it succeeded."""

    taskId: str
    info: ResultInfo | None = None
    # The Market's recordInfo-shaped callback: no info object, the state and a resultJson string.
    state: str | None = None
    resultJson: str | None = None
    failCode: int | str | None = None
    failMsg: str | None = None

    def __post_init__(self) -> None:
        # Built by hand too (the reconciler's stand-in callback): the id still has to be one we can key on.
        if not TASK_ID.fullmatch(self.taskId):
            raise InvalidReply([f"taskId: {TASK_ID_RULE}"])

    @classmethod
    def from_json(cls, document: Any) -> Self:
        return _read_whole(cls._read, document)

    @classmethod
    def _read(cls, document: Any, path: str, problems: list[str]) -> Self | None:
        fields = Fields(document, path, problems)
        # The 4o body says taskId; the platform's signing sample reads task_id: the first present wins.
        task_id = fields.require(("taskId", "task_id"), _callback_task_id)
        info = fields.nested(("info",), ResultInfo._read, nullable=True)
        optional_text = _or_null(_text)
        state = fields.read(("state",), optional_text, None)
        result_json = fields.read(("resultJson",), optional_text, None)
        fail_code = fields.read(("failCode",), _or_null(_whole_number_or_text), None)
        fail_msg = fields.read(("failMsg",), optional_text, None)
        if not fields.clean or task_id is None:
            return None
        return cls(
            taskId=task_id,
            info=info,
            state=state,
            resultJson=result_json,
            failCode=fail_code,
            failMsg=fail_msg,
        )


@dataclass(frozen=True, kw_only=True)
class CallbackPayload:
    """The body the upstream POSTs to callBackUrl: the 4o list shape or the single-image shape."""

    code: int
    msg: str = ""
    data: CallbackData

    def __post_init__(self) -> None:
        if not 0 <= self.code <= MAX_STATUS_CODE:
            raise InvalidReply([f"code: {STATUS_CODE_RULE}"])

    @property
    def task_id(self) -> str:
        return self.data.taskId

    @property
    def succeeded(self) -> bool:
        # A Market callback says what happened in data.state (its codes differ between pages).
        if self.data.state is not None:
            return self.data.state == MARKET_SUCCESS
        return self.code == 200

    @property
    def failure_code(self) -> int:
        """The code a failed task keeps: the callback's own, 500 when it says 200 yet state fail."""
        return self.code if self.code != 200 else 500

    @property
    def failure_message(self) -> str:
        """The upstream's reason: the Market's failMsg and failCode, else the callback's msg."""
        if self.data.failMsg:
            return (
                f"{self.data.failMsg} (failCode {self.data.failCode})"
                if self.data.failCode
                else self.data.failMsg
            )
        return self.msg

    def result_urls(self) -> list[str]:
        if self.data.info is not None:
            return self.data.info.urls()
        return result_json_urls(self.data.resultJson)

    @classmethod
    def from_json(cls, document: Any) -> Self:
        return _read_whole(cls._read, document)

    @classmethod
    def _read(cls, document: Any, path: str, problems: list[str]) -> Self | None:
        fields = Fields(document, path, problems)
        code = fields.require(("code",), _status_code)
        msg = fields.read(("msg",), _text, "")
        data = fields.nested(("data",), CallbackData._read, nullable=False)
        if not fields.clean or code is None or data is None:
            return None
        return cls(code=code, msg=msg, data=data)
