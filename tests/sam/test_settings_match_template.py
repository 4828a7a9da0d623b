"""template.yaml is the one source of each function's configuration: what a function's settings model
needs, its template entry declares, and it declares nothing its settings (or Powertools) do not read."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.common.function_environment import declared_environment
from devstack.common.template import load_template, resources_of_type

# Read by Powertools itself, not by our settings models.
POWERTOOLS = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}
FUNCTIONS = sorted(resources_of_type("AWS::Serverless::Function", load_template()))


def settings_model(logical_id: str) -> Any:
    from image_pipeline.settings import SETTINGS_BY_SERVICE

    service = declared_environment(logical_id)["POWERTOOLS_SERVICE_NAME"]
    assert service in SETTINGS_BY_SERVICE, f"{logical_id}: no settings model for service {service!r}"
    return SETTINGS_BY_SERVICE[service]


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_every_variable_a_function_needs_is_declared_for_it(logical_id: str) -> None:
    declared = declared_environment(logical_id)
    required = settings_model(logical_id).variables(required_only=True)
    assert required <= declared.keys(), f"{logical_id} needs {sorted(required - declared.keys())}"


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_a_function_is_declared_nothing_it_does_not_read(logical_id: str) -> None:
    read = settings_model(logical_id).variables() | POWERTOOLS
    unread = set(declared_environment(logical_id)) - read
    assert not unread, f"{logical_id} is given {sorted(unread)}, which nothing in it reads"


def test_the_local_stack_gives_each_function_its_own_template_environment() -> None:
    from devstack.common.aws_resources import QueueResources, StackResources
    from devstack.common.function_environment import LocalValues, function_environments

    resources = StackResources(
        tasks_table="t",
        idempotency_table="i",
        download_queue_url="q",
        download_queue_arn="qa",
        dead_letter_queue_url="d",
        images_bucket="b",
        max_receive_count=5,
        visibility_timeout=360,
        queues={
            "NotificationQueue": QueueResources("n", "na", "nd", "NotificationDeadLetterQueue", 15, 180),
        },
        event_buses={"EventBus": "bus"},
    )
    environments = function_environments(
        LocalValues(
            resources=resources, upstream_url="http://127.0.0.1:9", callback_base_url="http://127.0.0.1:3000"
        )
    )
    assert environments["CreditMonitorFunction"].get("TASKS_TABLE") is None
    assert environments["ApiFunction"]["TASKS_TABLE"] == "t"
    assert environments["ApiFunction"]["CALLBACK_BASE_URL"] == "http://127.0.0.1:3000/callbacks"
    assert environments["DownloaderFunction"]["DOWNLOAD_TRUSTED_ORIGINS"] == "http://127.0.0.1:9"
    assert "DOWNLOAD_TRUSTED_ORIGINS" not in environments["ApiFunction"]
    assert environments["ReconcilerFunction"]["DOWNLOAD_GIVE_UP_SECONDS"] == "21600"
