"""Callback receiver: POST /callbacks/{taskId}?token=... from the upstream (taskId is ours).

One route, so no router: the few fields of the API Gateway proxy event it needs are read from the event
itself, which keeps the router, the OpenAPI and validation machinery and Powertools' event data classes
(every event source's, imported together) out of this function's cold start: it must answer fast.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from image_pipeline import wiring
from image_pipeline.errors import AwsFault, CallbackRejected, EnqueueError
from image_pipeline.logic.callbacks import CallbackResult, authenticate, handle_callback, parse_callback
from image_pipeline.observability import logger_for, metrics_for
from image_pipeline.settings import callback_settings, parse_at_cold_start

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = logger_for("callback")
parse_at_cold_start(callback_settings)
metrics = metrics_for("callback")


def _json(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def raw_body(body: str | None, is_base64: bool) -> bytes:
    if body is None:
        return b""
    if not is_base64:
        return body.encode("utf-8", errors="surrogatepass")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise CallbackRejected(400, "callback body is marked base64 but is not valid base64") from None


def receive_callback(event: dict[str, Any]) -> CallbackResult:
    """`event` is API Gateway's REST proxy event."""
    settings = callback_settings()
    task_id = (event.get("pathParameters") or {}).get("taskId")
    if event.get("httpMethod") != "POST" or not task_id:
        raise CallbackRejected(404, "unknown callback URL")
    payload = parse_callback(
        raw_body(event.get("body"), bool(event.get("isBase64Encoded"))), settings.max_body_bytes
    )
    store = wiring.tasks_table(settings.tasks_table, settings.record_ttl_days)
    task = authenticate(
        payload,
        task_id=task_id,
        token=(event.get("queryStringParameters") or {}).get("token"),
        headers=event.get("headers") or {},
        store=store,
        hmac_key=wiring.hmac_key(settings),
        hmac_window_seconds=settings.hmac_window_seconds,
    )
    result = handle_callback(
        payload,
        task=task,
        store=store,
        queue=wiring.download_queue(settings.download_queue_url),
        download_check_after=timedelta(seconds=settings.download_check_after_seconds),
        notify_queue=wiring.notify_queue(settings.notification_queue_url),
    )
    logger.info(
        "callback handled",
        extra={
            "task_id": task.taskId,
            "upstream_task_id": payload.task_id,
            "code": payload.code,
            "result": result,
        },
    )
    return result


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        result = receive_callback(event)
    except CallbackRejected as error:
        # The token is never logged: the message names what failed, not the value.
        logger.warning("callback rejected", extra={"status": error.status_code, "reason": error.message})
        metrics.add_metric(name="CallbackRejected", unit=MetricUnit.Count, value=1)
        return _json(error.status_code, {"message": error.message})
    except (EnqueueError, AwsFault):
        # A 5xx makes the upstream deliver again; the task state lets that delivery finish the work.
        logger.exception("callback could not be fully processed; the upstream will retry")
        return _json(503, {"message": "temporarily unable to record the callback; please retry"})
    metrics.add_metric(name=f"Callback{result.value.title()}", unit=MetricUnit.Count, value=1)
    return _json(200, {"status": result.value})
