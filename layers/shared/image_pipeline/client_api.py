"""The client API's answers as models: the OpenAPI document (openapi.json) is generated from these and
the routes that use them, so the published contract is the code's own."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from image_pipeline.input_records import REFERENCE_FORMS
from image_pipeline.pydantic_model import Model

TaskStatusName = Literal["submitting", "submitted", "downloading", "stored", "failed"]


class NotificationOut(Model):
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    lastError: str | None = None


class FieldProblem(Model):
    field: str = Field(description="the request field, header or parameter at fault ('body' for the whole)")
    message: str


class ErrorBody(Model):
    """Every error the API answers itself has this shape."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "message": "invalid request: check size",
                    "errors": [{"field": "size", "message": "Input should be '1:1', '3:2' or '2:3'"}],
                },
                {"message": "task 0123456789abcdef0123456789abcdef not found", "errors": []},
            ]
        }
    )

    message: str
    errors: list[FieldProblem] = Field(default_factory=list)


class TaskSubmitted(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"taskId": "522f93e8ab824c009f4d6aad6a8a95f7", "status": "submitted"}]
        }
    )

    taskId: str = Field(description="our id of the task (minted before the upstream is called)")
    status: TaskStatusName = Field(
        description=(
            "submitted: the upstream accepted it; submitting: its generate call got no definite answer "
            "yet (the task is yours all the same and ends like any other); an Idempotency-Key retry "
            "answers with the task as it stands now"
        )
    )


class TaskErrorOut(Model):
    code: int | str = Field(
        description=(
            "upstream code (400, 451, 500, 501) or ours: download_rejected, download_failed, expired, "
            "submit_unconfirmed"
        )
    )
    message: str = Field(max_length=500)


class StoredImageOut(Model):
    index: int
    key: str
    contentType: str
    bytes: int
    sha256: str


class LinkedImage(StoredImageOut):
    url: str = Field(description="a presigned GET link, valid for PRESIGNED_URL_SECONDS")


UPSTREAM_TASK_ID = Field(
    default=None, description="the upstream's id of the task; null until the upstream confirmed it"
)


class TaskSummary(Model):
    taskId: str
    upstreamTaskId: str | None = UPSTREAM_TASK_ID
    model: str = Field(description="the model's id, as GET /models lists it")
    status: TaskStatusName
    images: list[StoredImageOut]
    error: TaskErrorOut | None
    createdAt: str
    updatedAt: str


class InputUsed(Model):
    field: str = Field(description="the request field: filesUrl[0], maskUrl, inputImage, input.image_urls[1]")
    ref: str = Field(description=f"the reference given there: {REFERENCE_FORMS}")


class PresignedUpload(Model):
    method: Literal["PUT"]
    url: str = Field(description="a presigned S3 PUT, valid until expiresAt")
    headers: dict[str, str] = Field(
        description="send exactly these (Content-Type, Content-Length): they are signed, S3 refuses others"
    )


class UploadCreated(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "uploadId": "3f9c2b7a1d4e4f6a8b0c2d4e6f8a0b1c.png",
                    "reference": "upload:3f9c2b7a1d4e4f6a8b0c2d4e6f8a0b1c.png",
                    "upload": {
                        "method": "PUT",
                        "url": "https://bucket.s3.us-east-1.amazonaws.com/uploads/...?X-Amz-Algorithm=...",
                        "headers": {"Content-Type": "image/png", "Content-Length": "48213"},
                    },
                    "expiresAt": "2026-11-21T21:34:40.123Z",
                }
            ]
        }
    )

    uploadId: str
    reference: str = Field(description="what to put where an image URL goes: upload:<uploadId>")
    upload: PresignedUpload
    expiresAt: str = Field(description="when the presigned PUT stops working")


class TaskView(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "taskId": "522f93e8ab824c009f4d6aad6a8a95f7",
                    "upstreamTaskId": "task_4o_9d1c2b3a4f5e",
                    "model": "gpt-4o-image",
                    "status": "stored",
                    "progress": 1.0,
                    "images": [
                        {
                            "index": 0,
                            "key": "images/522f93e8ab824c009f4d6aad6a8a95f7/0.png",
                            "contentType": "image/png",
                            "bytes": 78866,
                            "sha256": "9f2c0e4b5a8d7c6b1e3f2a0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b",
                            "url": "https://bucket.s3.us-east-1.amazonaws.com/images/522f.../0.png?X-Amz-Algorithm=...",
                        }
                    ],
                    "error": None,
                    "createdAt": "2026-11-21T21:19:40.123Z",
                    "updatedAt": "2026-11-21T21:19:48.456Z",
                }
            ]
        }
    )

    taskId: str
    upstreamTaskId: str | None = UPSTREAM_TASK_ID
    model: str = Field(description="the model's id, as GET /models lists it")
    status: TaskStatusName
    progress: float | None = Field(description="upstream generation progress 0..1 while submitted")
    images: list[LinkedImage]
    error: TaskErrorOut | None
    createdAt: str
    updatedAt: str
    notification: NotificationOut | None = Field(
        default=None, description="the webhook's delivery; present when a webhookUrl was given"
    )
    inputs: list[InputUsed] | None = Field(
        default=None, description="the input references the task used; present when it used any"
    )


class TaskPage(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tasks": [
                        {
                            "taskId": "522f93e8ab824c009f4d6aad6a8a95f7",
                            "upstreamTaskId": "d231a99a9a9f1dd8f895be1b97be8065",
                            "model": "gpt-4o-image",
                            "status": "stored",
                            "images": [
                                {
                                    "index": 0,
                                    "key": "images/522f93e8ab824c009f4d6aad6a8a95f7/0.png",
                                    "contentType": "image/png",
                                    "bytes": 78866,
                                    "sha256": "1f2e3d4c5b6a7988" * 4,
                                }
                            ],
                            "error": None,
                            "createdAt": "2026-11-21T21:19:40.123Z",
                            "updatedAt": "2026-11-21T21:19:48.456Z",
                        }
                    ],
                    "nextCursor": "eyJwayI6InRhc2sjNTIyZjkzZTgifQ.5d1Yb3cA",
                }
            ]
        }
    )

    tasks: list[TaskSummary]
    nextCursor: str | None = Field(
        description=(
            "pass as ?cursor= for the next page; null on the last. One request examines at most 300 of "
            "the client's tasks, so a page filtered by a rare status may hold fewer than limit, even "
            "none, and still have a nextCursor: follow it until null"
        )
    )


ERROR_DESCRIPTIONS = {
    400: "a malformed request (e.g. a cursor this client was not given)",
    402: "the upstream account is out of credits",
    403: "no or unknown API key, or an unknown route (Missing Authentication Token)",
    404: "no such task for this client",
    409: "the task is still running, or the task an Idempotency-Key made was deleted",
    413: "the request body is too large",
    422: "invalid request: each bad field named",
    429: "over the generation rate or the client's quota; see Retry-After",
    502: "the upstream rejected this deployment's API key (not the client's fault)",
    503: "the upstream or AWS is unavailable; see Retry-After",
}


def responses(
    success: int, model: type[BaseModel] | None, description: str, *errors: int | tuple[int, str]
) -> dict[int, Any]:
    """OpenAPI responses of one route: its success and the errors it can answer, all in ErrorBody form
    (an error given as (code, text) has a description of its own on this route)."""
    answers: dict[int, Any] = {
        success: {"description": description}
        | ({"content": {"application/json": {"model": model}}} if model else {})
    }
    for error in errors:
        code, text = error if isinstance(error, tuple) else (error, ERROR_DESCRIPTIONS[error])
        answers[code] = {
            "description": text,
            "content": {"application/json": {"model": ErrorBody}},
        }
    return answers
