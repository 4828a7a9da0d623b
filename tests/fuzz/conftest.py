"""Fixtures of the fuzz tests: one moto stack per test function, shared by all its examples."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fuzz._support import OTHER_TASK_ID, OTHER_TOKEN, mint_task


@pytest.fixture(autouse=True)
def _quiet_metrics() -> Iterator[None]:
    # Every rejected callback flushes an empty metric set; the warning is noise at hundreds of examples.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        yield


@pytest.fixture
def minted(aws_stack: Any) -> Any:
    """The stack with two tasks: TASK_ID confirmed as the upstream's UPSTREAM_ID, and OTHER_TASK_ID still
    `submitting` (its generate call got no answer): its first callback would teach it an upstream id."""
    mint_task(aws_stack)
    mint_task(aws_stack, task_id=OTHER_TASK_ID, token=OTHER_TOKEN, upstream_task_id=None)
    return aws_stack


@pytest.fixture
def bare_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto with nothing created (~0.05 s against ~1 s for aws_stack), for inputs refused before any AWS
    call: the environment names resources that do not exist, so a stray call fails loudly, offline."""
    from image_pipeline import wiring
    from image_pipeline.adapters import aws
    from image_pipeline.settings import reset_settings_cache
    from moto import mock_aws

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name, value in {
        "TASKS_TABLE": "missing-table",
        "IDEMPOTENCY_TABLE": "missing-idempotency-table",
        "DOWNLOAD_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/missing-queue",
        "IMAGES_BUCKET": "missing-bucket",
        "KIE_API_BASE_URL": "https://api.kie.ai",
        "KIE_API_KEY": "upstream-test-key",
        "KIE_API_KEY_PARAMETER": "",
        "KIE_WEBHOOK_HMAC_KEY": "",
        "KIE_WEBHOOK_HMAC_KEY_PARAMETER": "",
        "PUBLIC_BASE_URL": "",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        reset_settings_cache()
        aws.reset_clients()
        wiring.reset()
        yield
        reset_settings_cache()
        aws.reset_clients()
        wiring.reset()
