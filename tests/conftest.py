"""Shared fixtures: AWS is moto (in-process), events come from events/, never a real AWS call."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"

# Never reach real AWS from tests, whatever the developer's shell holds.
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_name, None)
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_METRICS_NAMESPACE": "ImagePipelineTests",
        "POWERTOOLS_DEV": "false",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "SAM_CLI_TELEMETRY": "0",
    }
)


def template_environment(resources: Any) -> dict[str, str]:
    """The union of every function's template environment, resolved for in-process tests."""
    from devstack.common.function_environment import LocalValues, function_environments

    values = LocalValues(
        resources=resources,
        upstream_url="https://api.kie.ai",
        callback_base_url="",
        upstream_api_key="upstream-test-key",
        # The values the template gives a deployed stack, except what the tests fix themselves:
        overrides={
            "CALLBACK_BASE_URL": "",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_METRICS_NAMESPACE": "ImagePipelineTests",
        },
    )
    union: dict[str, str] = {}
    for environment in function_environments(values).values():
        union.update(environment)
    return union


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return event


@pytest.fixture
def lambda_context() -> Any:
    class Context:
        function_name = "test-function"
        memory_limit_in_mb = 256
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
        aws_request_id = "11111111-2222-3333-4444-555555555555"

        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 30_000

    return Context()


@pytest.fixture
def aws_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto with the table, queues and bucket created as template.yaml declares them, env pointing at them."""
    import boto3
    from image_pipeline import wiring
    from image_pipeline.adapters import aws
    from image_pipeline.settings import reset_settings_cache
    from moto import mock_aws

    from devstack.common.aws_resources import create_stack_resources
    from devstack.common.moto_atomic import serialize_in_process_requests

    serialize_in_process_requests()
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        resources = create_stack_resources(boto3.Session(region_name="us-east-1"), prefix="test")
        # Every function's environment as template.yaml declares it (one process runs them all here),
        # against the real upstream's URL with a test key; callback URLs from the request's domain.
        for name, value in template_environment(resources).items():
            monkeypatch.setenv(name, value)
        reset_settings_cache()
        aws.reset_clients()
        wiring.reset()
        yield resources
        reset_settings_cache()
        aws.reset_clients()
        wiring.reset()


def pytest_configure(config: pytest.Config) -> None:
    """IAM_RECORD_DIR=<dir>: record every AWS call the functions make in this run and check each
    against its function's role at the end (tests/iam/plugin.py). Off otherwise: nothing is hooked."""
    if os.environ.get("IAM_RECORD_DIR"):
        from tests.iam.plugin import register

        register(config)
