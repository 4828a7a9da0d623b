"""The client API's answers as models: the OpenAPI document (openapi.json) is generated from these and
the routes that use them, so the published contract is the code's own."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from image_pipeline.upstream_models import GenerationOptions, HttpsUrl

TaskStatusName = Literal["submitted", "downloading", "stored", "failed"]


class TaskRequest(GenerationOptions):
    """POST /tasks: the generation's fields, and where to be told when the task ends."""

    webhookUrl: HttpsUrl | None = Field(
        default=None,
        description=(
            "https URL that receives one signed event (Standard Webhooks) when the task is stored or "
            "failed; private, loopback and link-local addresses are refused"
        ),
    )


class NotificationOut(BaseModel):
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    lastError: str | None = None


class FieldProblem(BaseModel):
    field: str = Field(description="the request field, header or parameter at fault ('body' for the whole)")
    message: str


class ErrorBody(BaseModel):
    """Every error the API answers itself has this shape."""

    message: str
    errors: list[FieldProblem] = Field(default_factory=list)


class TaskSubmitted(BaseModel):
    taskId: str = Field(description="the upstream's task id")
    status: Literal["submitted"]


class TaskErrorOut(BaseModel):
    code: int | str = Field(
        description="upstream code (400, 451, 500, 501) or ours: download_rejected, download_failed, expired"
    )
    message: str = Field(max_length=500)


class StoredImageOut(BaseModel):
    index: int
    key: str
    contentType: str
    bytes: int
    sha256: str


class LinkedImage(StoredImageOut):
    url: str = Field(description="a presigned GET link, valid for PRESIGNED_URL_SECONDS")


class TaskSummary(BaseModel):
    taskId: str
    status: TaskStatusName
    images: list[StoredImageOut]
    error: TaskErrorOut | None
    createdAt: str
    updatedAt: str


class TaskView(BaseModel):
    taskId: str
    status: TaskStatusName
    progress: float | None = Field(description="upstream generation progress 0..1 while submitted")
    images: list[LinkedImage]
    error: TaskErrorOut | None
    createdAt: str
    updatedAt: str
    notification: NotificationOut | None = Field(
        default=None, description="the webhook's delivery; present when a webhookUrl was given"
    )


class TaskPage(BaseModel):
    tasks: list[TaskSummary]
    nextCursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


ERROR_DESCRIPTIONS = {
    400: "a malformed request (e.g. a cursor this client was not given)",
    402: "the upstream account is out of credits",
    403: "no or unknown API key, or an unknown route (Missing Authentication Token)",
    404: "no such task for this client",
    409: "the same Idempotency-Key is still being processed, or the task is still running",
    413: "the request body is too large",
    422: "invalid request: each bad field named",
    429: "over the generation rate or the client's quota; see Retry-After",
    502: "the upstream rejected this deployment's API key (not the client's fault)",
    503: "the upstream or AWS is unavailable; see Retry-After",
}


def responses(success: int, model: type[BaseModel] | None, description: str, *errors: int) -> dict[int, Any]:
    """OpenAPI responses of one route: its success and the errors it can answer, all in ErrorBody form."""
    answers: dict[int, Any] = {
        success: {"description": description}
        | ({"content": {"application/json": {"model": model}}} if model else {})
    }
    for code in errors:
        answers[code] = {
            "description": ERROR_DESCRIPTIONS[code],
            "content": {"application/json": {"model": ErrorBody}},
        }
    return answers
