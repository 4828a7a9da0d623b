"""Scheduled read of the upstream credit balance, published as the CreditBalance metric (alarmed on low)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from image_pipeline import wiring
from image_pipeline.errors import UpstreamError
from image_pipeline.observability import logger_for, metrics_for
from image_pipeline.settings import credit_monitor_settings, parse_at_cold_start

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = logger_for("credit-monitor")
parse_at_cold_start(credit_monitor_settings)
metrics = metrics_for("credit-monitor")


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = credit_monitor_settings()
    try:
        credits = wiring.upstream_client(settings).credit()
    except UpstreamError as error:
        # No balance is published rather than a made-up one; raising makes the function's Errors
        # metric (and its alarm) fire, so a broken key or an outage is not mistaken for silence.
        logger.exception("could not read the upstream credit balance", extra={"code": error.code})
        raise
    metrics.add_metric(name="CreditBalance", unit=MetricUnit.Count, value=credits)
    logger.info("upstream credit balance", extra={"credits": credits})
    return {"credits": credits}
