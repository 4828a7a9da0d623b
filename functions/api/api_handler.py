"""Client API: submit a generation, list a client's tasks, report one, delete one; GET /openapi.json.

Every task belongs to the client app (API key) that submitted it: to any other it does not exist.
"""

from __future__ import annotations

import binascii
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Header, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from image_pipeline import wiring
from image_pipeline.api_contract import ContractResolver
from image_pipeline.client_api import (
    TaskPage,
    TaskStatusName,
    TaskSubmitted,
    TaskView,
    UploadCreated,
    responses,
)
from image_pipeline.client_requests import TaskRequest, UploadRequest
from image_pipeline.errors import (
    AwsFault,
    DailyImageLimitReached,
    GenerateShareExceeded,
    IdempotencyKeyReused,
    IdempotencyKeyTaskDeleted,
    ImageDeletionError,
    InputRejected,
    InsufficientCredits,
    InvalidCursor,
    InvalidIdempotencyKey,
    RateLimited,
    ReferenceNotFound,
    TaskNotFound,
    TaskStillRunning,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamUnauthorized,
    WebhookUrlError,
)
from image_pipeline.logic.client_tasks import delete_task, list_tasks
from image_pipeline.logic.inputs import new_upload, resolve_inputs
from image_pipeline.logic.status import task_status
from image_pipeline.logic.submission import (
    IDEMPOTENCY_KEY_PATTERN,
    SubmittedTask,
    SubmitTimes,
    check_request,
    submit_task,
)
from image_pipeline.model_catalog import ModelCatalog, model_catalog
from image_pipeline.observability import logger_for, metrics_for
from image_pipeline.request_problems import invalid_request_body, request_problems
from image_pipeline.settings import ApiSettings, api_settings, parse_at_cold_start
from image_pipeline.task_records import TaskStatus, utc_now

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = logger_for("api")
parse_at_cold_start(api_settings)
metrics = metrics_for("api")
app = ContractResolver(enable_validation=True)


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers
    )


def callback_base(settings: ApiSettings) -> str:
    """Where the upstream calls back: the callback API (its own throttle, no API key), not this one.

    PublicBaseUrl when set (a custom domain of the callback API) plus the callback path, else
    CALLBACK_BASE_URL (the template sets CallbackApi's URL), else the request's own domain and stage
    (local stacks, where one front door serves both APIs).
    """
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/") + settings.callback_path
    if settings.callback_base_url:
        return settings.callback_base_url.rstrip("/")
    context = app.current_event.request_context
    return f"https://{context.domain_name}/{context.stage}{settings.callback_path}"


LOCAL_CLIENT = "local"  # every request's client where no API key is required (the local stacks)
API_KEY_SECURITY: list[dict[str, list[str]]] = [{"apiKey": []}]
SUBMIT_LIMITS = (
    "over a generation limit, see Retry-After: the deployment's window (20 generations in 10 s), this "
    "client's share of it (CLIENT_GENERATE_SHARE_PERCENT, 50%), this client's images for the UTC day "
    "(CLIENT_DAILY_IMAGES, 2000; a task counts the images it asks for), or its request throttle or quota"
)


def caller() -> str:
    """The client app making the request: API Gateway's id of its API key."""
    identity = app.current_event.request_context.identity
    return identity.api_key_id or LOCAL_CLIENT


class UnreadableBody(ValueError):
    """A body Powertools cannot hand to validation as one JSON object."""


@app.post(
    "/tasks",
    operation_id="createTask",
    tags=["tasks"],
    summary="Submit a generation",
    status_code=202,
    security=API_KEY_SECURITY,
    responses=responses(
        202,
        TaskSubmitted,
        "accepted: taskId is ours; status submitted, or submitting while the upstream has not confirmed it",
        400,
        402,
        403,
        (404, "an input reference (upload:<uploadId>, task:<taskId>/<index>) this client does not hold"),
        409,
        413,
        422,
        (429, SUBMIT_LIMITS),
        502,
        503,
    ),
)
def create_task(
    options: TaskRequest,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description=(
                "a retry with the same key and body (by the same client, within a day) answers with the "
                "same task as it stands, never a second generation; the same key with another body is 422"
            ),
            # checked by logic.submission.check_request (in our words); the contract says the same
            json_schema_extra={"minLength": 1, "maxLength": 255, "pattern": IDEMPOTENCY_KEY_PATTERN},
        ),
    ] = None,
) -> Response[Any]:
    # Validation reads the first item of a JSON array as the object: one task per request only.
    if not isinstance(app.current_event.json_body, dict):
        raise UnreadableBody("the body must be one JSON object with the task's fields")
    settings = api_settings()
    owner = caller()
    check_request(
        options,
        idempotency_key,
        check_webhook_url=lambda url: wiring.check_webhook_url(url, settings.webhook_trusted_origin_list),
    )
    submitted = _submit(options, owner, idempotency_key, settings)
    _report(submitted, options, owner)
    return _json(202, {"taskId": submitted.task_id, "status": submitted.status.value})


def _submit(
    options: TaskRequest, owner: str, idempotency_key: str | None, settings: ApiSettings
) -> SubmittedTask:
    """logic.submission.submit_task with this deployment's adapters (those it has: an idempotency
    table, an outbox queue, a generate rate limit are each optional)."""
    return submit_task(
        options,
        owner=owner,
        callback_base=callback_base(settings),
        store=wiring.tasks_table(settings.tasks_table, settings.record_ttl_days),
        upstream=wiring.upstream_client(settings),
        idempotency_key=idempotency_key,
        claims=wiring.idempotency_claims(settings.idempotency_table) if settings.idempotency_table else None,
        admission=wiring.generate_admission(
            settings.tasks_table,
            settings.submit_rate_limit,
            settings.submit_rate_window_seconds,
            settings.client_generate_share_percent,
            settings.client_daily_images,
        ),
        outbox=wiring.download_queue(settings.download_queue_url) if settings.download_queue_url else None,
        times=SubmitTimes.from_seconds(
            settings.reconcile_after_seconds, settings.submit_unconfirmed_after_seconds
        ),
        resolve_inputs=lambda: resolve_inputs(
            options.model_dump(),
            owner,
            objects=_inputs(settings),
            check_image=wiring.image_checker(settings.input_max_pixels),
            link_seconds=settings.input_link_seconds,
            market_fields=options.market_image_fields(),
            byte_limits=options.input_byte_limits(),
        ),
    )


def _inputs(settings: ApiSettings) -> Any:
    return wiring.input_store(settings.tasks_table, settings.images_bucket, settings.record_ttl_days)


def _report(submitted: SubmittedTask, options: TaskRequest, owner: str) -> None:
    """The submission's log lines and metric (a retry answered from its key is not counted again)."""
    if submitted.unconfirmed:
        logger.warning(
            "generate got no definite answer: the task waits for its callback"
            + ("; its upstream id is queued for recording" if submitted.confirm_queued else ""),
            extra={"task_id": submitted.task_id},
        )
    logger.info(
        "task submitted",
        extra={
            "task_id": submitted.task_id,
            "status": submitted.status.value,
            "repeated": submitted.repeated,
            "model": options.model,
            "client": owner,
        },
    )
    if submitted.new:
        metrics.add_metric(name="TasksSubmitted", unit=MetricUnit.Count, value=1)


@app.post(
    "/uploads",
    operation_id="createUpload",
    tags=["uploads"],
    summary="Upload an input image: a presigned PUT, then upload:<uploadId> wherever an image URL goes",
    status_code=201,
    security=API_KEY_SECURITY,
    responses=responses(
        201, UploadCreated, "the upload's id and its presigned PUT", 400, 403, 413, 422, 429, 503
    ),
)
def create_upload(upload: UploadRequest) -> Response[Any]:
    if not isinstance(app.current_event.json_body, dict):
        raise UnreadableBody("the body must be one JSON object: contentType and bytes")
    settings, owner = api_settings(), caller()
    created = new_upload(
        upload.contentType,
        upload.bytes,
        owner,
        objects=_inputs(settings),
        max_bytes=settings.upload_max_bytes,
        link_seconds=settings.upload_link_seconds,
        retention=timedelta(days=settings.upload_retention_days),
        now=utc_now(),
    )
    logger.info("upload issued", extra={"upload_id": created["uploadId"], "client": owner})
    return _json(201, created)


@app.get(
    "/tasks",
    operation_id="listTasks",
    tags=["tasks"],
    summary="List this client's tasks, newest first",
    security=API_KEY_SECURITY,
    responses=responses(200, TaskPage, "one page of tasks", 400, 403, 422, 429, 503),
)
def get_tasks(
    status: Annotated[TaskStatusName | None, Query(description="only tasks in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="tasks per page")] = 20,
    cursor: Annotated[str | None, Query(max_length=1024, description="nextCursor of the page before")] = None,
) -> Response[Any]:
    settings = api_settings()
    page = list_tasks(
        caller(),
        store=wiring.tasks_table(settings.tasks_table, settings.record_ttl_days),
        limit=limit,
        status=TaskStatus(status) if status else None,
        cursor=cursor,
        cursor_key=lambda: wiring.cursor_key(settings),
    )
    return _json(200, page)


@app.get(
    "/tasks/<taskId>",
    operation_id="getTask",
    tags=["tasks"],
    summary="A task's status and its stored images, with presigned links",
    security=API_KEY_SECURITY,
    responses=responses(200, TaskView, "the task", 403, 404, 422, 429, 503),
)
def get_task(taskId: str) -> Response[Any]:
    settings = api_settings()
    return _json(
        200,
        task_status(
            taskId,
            caller(),
            store=wiring.tasks_table(settings.tasks_table, settings.record_ttl_days),
            images=wiring.image_store(settings.images_bucket),
            presign_seconds=settings.presign_seconds,
            upstream=wiring.upstream_client(settings, timeout_seconds=settings.progress_timeout_seconds),
        ),
    )


@app.delete(
    "/tasks/<taskId>",
    operation_id="deleteTask",
    tags=["tasks"],
    summary="Delete a finished task and every stored version of its images",
    status_code=204,
    security=API_KEY_SECURITY,
    responses=responses(204, None, "deleted", 403, 404, 409, 422, 429, 503),
)
def remove_task(taskId: str) -> Response[Any]:
    settings = api_settings()
    delete_task(
        taskId,
        caller(),
        store=wiring.tasks_table(settings.tasks_table, settings.record_ttl_days),
        images=wiring.image_store(settings.images_bucket),
    )
    logger.info("task deleted", extra={"task_id": taskId, "client": caller()})
    return Response(status_code=204, body=None)


@app.get(
    "/models",
    operation_id="listModels",
    tags=["models"],
    summary="Every model POST /tasks takes: its family, input fields (JSON Schema), image count, formats",
    security=API_KEY_SECURITY,
    responses=responses(200, ModelCatalog, "the models POST /tasks takes", 403, 429),
)
def get_models() -> Response[Any]:
    return _json(200, model_catalog())


@app.get("/openapi.json", summary="This API's OpenAPI document", include_in_schema=False)
def openapi_document() -> Response[Any]:
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=app.contract_json())


@app.exception_handler(RequestValidationError)
def invalid_request(error: RequestValidationError) -> Response[Any]:
    status, body = request_problems(error.errors())
    return _json(status, body)


@app.exception_handler([UnreadableBody, RecursionError, UnicodeDecodeError, binascii.Error])
def unreadable_body(error: Exception) -> Response[Any]:
    reasons = {
        RecursionError: "the body nests too deeply",
        UnicodeDecodeError: "the body is not UTF-8",
        binascii.Error: "the body is not valid base64",
    }
    message = next((text for kind, text in reasons.items() if isinstance(error, kind)), str(error))
    return _json(
        422, {"message": f"invalid request: {message}", "errors": [{"field": "body", "message": message}]}
    )


@app.exception_handler(WebhookUrlError)
def unsafe_webhook_url(error: WebhookUrlError) -> Response[Any]:
    detail = str(error)
    if "loopback" in detail or "private" in detail or error.reason == "scheme":
        detail += (
            "; a webhook is https to a public host (a local stack also calls the http origins listed "
            "in WEBHOOK_TRUSTED_ORIGINS)"
        )
    message = f"webhookUrl is refused: {detail}"
    return _json(422, {"message": message, "errors": [{"field": "webhookUrl", "message": detail}]})


@app.exception_handler(InvalidIdempotencyKey)
def invalid_idempotency_key(error: InvalidIdempotencyKey) -> Response[Any]:
    return _json(
        422, {"message": str(error), "errors": [{"field": "Idempotency-Key", "message": str(error)}]}
    )


@app.exception_handler(IdempotencyKeyReused)
def idempotency_key_reused(error: IdempotencyKeyReused) -> Response[Any]:
    message = "this Idempotency-Key was already used with a different request body"
    return _json(422, {"message": message, "errors": [{"field": "Idempotency-Key", "message": message}]})


@app.exception_handler(IdempotencyKeyTaskDeleted)
def idempotency_task_deleted(error: IdempotencyKeyTaskDeleted) -> Response[Any]:
    message = (
        f"the task this Idempotency-Key made ({error.task_id}) has been deleted; "
        "send a new Idempotency-Key to generate again"
    )
    return _json(409, {"message": message, "errors": [{"field": "Idempotency-Key", "message": message}]})


@app.exception_handler(TaskNotFound)
def task_not_found(error: TaskNotFound) -> Response[Any]:
    return _json(404, {"message": str(error), "errors": []})


@app.exception_handler(ReferenceNotFound)
def reference_not_found(error: ReferenceNotFound) -> Response[Any]:
    message = f"{error.reference} not found"
    return _json(404, {"message": str(error), "errors": [{"field": error.field, "message": message}]})


@app.exception_handler(InputRejected)
def input_rejected(error: InputRejected) -> Response[Any]:
    return _json(422, invalid_request_body([{"field": error.field, "message": error.message}]))


@app.exception_handler(TaskStillRunning)
def task_still_running(error: TaskStillRunning) -> Response[Any]:
    return _json(409, {"message": str(error), "errors": []})


@app.exception_handler(InvalidCursor)
def invalid_cursor(error: InvalidCursor) -> Response[Any]:
    return _json(400, {"message": str(error), "errors": [{"field": "cursor", "message": str(error)}]})


@app.exception_handler(UpstreamError)
def upstream_failed(error: UpstreamError) -> Response[Any]:
    """Map upstream failures onto what the client can act on."""
    logger.warning("upstream refused", extra={"upstream_code": error.code, "upstream_message": error.message})
    if isinstance(error, InsufficientCredits):
        return _json(402, {"message": f"the image service account is out of credits: {error.message}"})
    if isinstance(error, GenerateShareExceeded | DailyImageLimitReached):  # ours, not the upstream's
        message = f"{error.message}; retry in {error.retry_after} s"
        return _json(429, {"message": message}, {"Retry-After": str(error.retry_after)})
    if isinstance(error, RateLimited):
        return _json(
            429,
            {"message": f"too many generation requests; retry in {error.retry_after} s"},
            {"Retry-After": str(error.retry_after)},
        )
    if isinstance(error, UpstreamUnauthorized):
        return _json(
            502, {"message": "the image service rejected this deployment's API key (not your request)"}
        )
    if isinstance(error, UpstreamBadRequest):
        return _json(
            422, {"message": f"the image service refused the request: {error.message}", "errors": []}
        )
    return _json(
        503,
        {"message": f"the image service is unavailable ({error.message}); try again shortly"},
        {"Retry-After": "30"},
    )


@app.exception_handler([AwsFault, ImageDeletionError])
def aws_fault(error: Exception) -> Response[Any]:
    logger.exception("AWS call failed")
    return _json(
        503, {"message": "storage is temporarily unavailable; try again shortly"}, {"Retry-After": "5"}
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(read_body_as_json(event), context)


def read_body_as_json(event: dict[str, Any]) -> dict[str, Any]:
    """Our bodies are JSON whatever the client labelled them (curl -d says form-urlencoded): the
    validation reads a body only when it is labelled JSON, so relabel it rather than refuse it."""
    headers = event.get("headers") or {}
    labelled = next((value for name, value in headers.items() if name.lower() == "content-type"), "")
    if not event.get("body") or "json" in (labelled or "").lower():
        return event
    names = [name for name in headers if name.lower() == "content-type"]
    relabelled = {name: value for name, value in headers.items() if name not in names}
    relabelled["Content-Type"] = "application/json"
    multi = {
        name: value for name, value in (event.get("multiValueHeaders") or {}).items() if name not in names
    }
    multi["Content-Type"] = ["application/json"]
    return {**event, "headers": relabelled, "multiValueHeaders": multi}
