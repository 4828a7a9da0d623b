"""One place that builds the Logger and Metrics of every function."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics

NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "ImagePipeline")


def logger_for(service: str) -> Logger:
    return Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", service))


def metrics_for(service: str) -> Metrics:
    return Metrics(namespace=NAMESPACE, service=service)
