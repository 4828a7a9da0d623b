"""One place that builds the Logger and Metrics of every function."""

from __future__ import annotations

import os
import warnings

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "ImagePipeline")

# An invocation with nothing to count is normal here (the reconciler publishes only non-zero counts,
# a duplicate callback counts nothing): Powertools' warning about it would fill every log stream.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


def logger_for(service: str) -> Logger:
    return Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", service))


def metrics_for(service: str) -> Metrics:
    """Metrics of one function, with state of its own.

    Powertools' Metrics share their metric and dimension sets across instances in a process: where one
    process runs several functions (the local stack's workers, the tests) the first function's
    `service` dimension would label every other's metrics.
    """
    provider = AmazonCloudWatchEMFProvider(
        namespace=NAMESPACE,
        service=service,
        metric_set={},
        dimension_set={},
        metadata_set={},
        default_dimensions={},
    )
    return Metrics(namespace=NAMESPACE, service=service, provider=provider)
