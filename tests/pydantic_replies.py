"""The pydantic models of the upstream's replies that image_pipeline.upstream_replies replaced, kept as the
reference its tests compare verdicts with: whatever these accept the plain classes accept, with the same
values, and whatever these refuse they refuse.

One deliberate difference, written into the reference: a JSON true/false is not a number (pydantic's lax
mode read true as 1, so `"code": true` was a failure with code 1 and `"successFlag": true` a success).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from image_pipeline.upstream_replies import CALLBACK_TASK_ID_MAX, MAX_STATUS_CODE
from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field


def _not_a_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


NotBoolean = BeforeValidator(_not_a_boolean)
WholeNumber = Annotated[int, NotBoolean]
WholeNumberOrText = Annotated[int | str, NotBoolean]


class Envelope(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: WholeNumber
    msg: str = ""
    data: Any = None


class ResultInfo(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    result_urls: list[str] | None = Field(
        default=None, validation_alias=AliasChoices("result_urls", "resultUrls")
    )
    resultImageUrl: str | None = None
    originImageUrl: str | None = None


class TaskDetails(BaseModel):
    model_config = ConfigDict(extra="allow")

    taskId: str
    successFlag: WholeNumber | None = None
    status: str | None = None
    progress: Annotated[str | float, NotBoolean] | None = None
    response: ResultInfo | None = None
    errorCode: WholeNumberOrText | None = None
    errorMessage: str | None = None
    createTime: WholeNumberOrText | None = None
    completeTime: WholeNumberOrText | None = None
    state: str | None = None
    resultJson: str | None = None
    failCode: WholeNumberOrText | None = None
    failMsg: str | None = None


class CallbackData(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    taskId: Annotated[
        str, Field(min_length=1, max_length=CALLBACK_TASK_ID_MAX, pattern=r"^[A-Za-z0-9_-]+$")
    ] = Field(validation_alias=AliasChoices("taskId", "task_id"))
    info: ResultInfo | None = None
    state: str | None = None
    resultJson: str | None = None
    failCode: WholeNumberOrText | None = None
    failMsg: str | None = None


class CallbackPayload(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: Annotated[WholeNumber, Field(ge=0, le=MAX_STATUS_CODE)]
    msg: str = ""
    data: CallbackData


def plain(value: Any) -> Any:
    """A reply (either kind) as plain data over its declared fields only, for comparing the two."""
    if isinstance(value, BaseModel):
        return {name: plain(getattr(value, name)) for name in type(value).model_fields}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value
