"""Shared fixtures: AWS is moto (in-process), events come from events/, never a real AWS call."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"


def _share_botocore_data_loader() -> None:
    """One botocore data loader per test process, instead of one per boto3 Session.

    Each Session parses the service models, endpoint rule sets and partitions it needs from their JSON
    (a few ms to tens of ms each), and moto's mock_aws gives every test a fresh default Session: the
    aws_stack fixture alone re-parsed them twice per test, a third of the unit tests' time. A Loader
    caches what it loaded and botocore already shares those objects between the clients of one
    Session, so sharing them between Sessions changes nothing but the time. Test processes only: the
    local stack's function workers and every subprocess load their models as they would anywhere.
    """
    create_loader = botocore.session.create_loader
    if getattr(create_loader, "shared", False):
        return
    loaders: dict[str | None, Any] = {}

    def shared_loader(search_path_string: str | None = None) -> Any:
        if search_path_string not in loaders:
            loaders[search_path_string] = create_loader(search_path_string)
        return loaders[search_path_string]

    shared_loader.shared = True  # type: ignore[attr-defined]
    botocore.session.create_loader = shared_loader


_share_botocore_data_loader()

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
    # xdist hands out the modules with the most tests first unless told to keep the collection order,
    # which pytest_collection_modifyitems below makes longest first.
    if _distributed_by_file(config) and hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


# -- scheduling under pytest-xdist (`make test`: -n auto --dist loadfile) ----------------------------------
# A hint only, never a condition of any test: roughly how long each slow module takes on 2 cores and 4
# workers (setup, local stack, sam build and waits included). A module not listed: 0.05 s a test.
MODULE_SECONDS = {
    # sam local (CI, or wherever a container engine answers): a sam build, moto and the emulator in
    # containers, then one Lambda container per invoke (about 5 s each); unlisted, they started last.
    "samlocal/test_sam_local_events.py": 110,
    "sam/test_sam_build.py": 60,  # 30 to 90 s: two sam builds
    "samlocal/test_sam_local_start_api.py": 45,
    "samlocal/test_sam_local_smoke.py": 20,
    "e2e/test_chaos.py": 50,
    "e2e/test_every_task_ends.py": 45,
    "e2e/test_pipeline.py": 40,
    "unit/test_downloader_handler.py": 28,
    "fuzz/test_fuzz_api.py": 23,
    "unit/test_api_handler.py": 22,
    "e2e/test_contract.py": 20,
    "e2e/test_notifications.py": 19,
    "e2e/test_cli.py": 18,
    "e2e/test_recovery.py": 15,
    "e2e/test_clients.py": 15,
    "emulator/test_emulator_flux.py": 15,
    "e2e/test_flux.py": 14,
    "e2e/test_make_local.py": 14,
    "unit/test_callback_handler.py": 10,
    "fuzz/test_fuzz_callback.py": 10,
    "emulator/test_emulator_callbacks.py": 10,
    "iam/test_least_privilege.py": 8,
}


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto`: two workers a core. The suite waits far more than it computes (local stacks, sam
    build, subprocesses, fault scenarios that wait out retries and timeouts), so one worker a core
    leaves the cores idle half the time. PYTEST_XDIST_AUTO_NUM_WORKERS=N still sets N exactly."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    from xdist.plugin import pytest_xdist_auto_num_workers as one_a_core

    return 2 * int(one_a_core(config))


def _distributed_by_file(config: pytest.Config) -> bool:
    """The controlling process of `pytest -n N --dist loadfile` (or loadscope)."""
    return config.getoption("dist", "no") in ("loadfile", "loadscope") and bool(
        config.getoption("numprocesses", None)
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist by file, hand out the longest modules first (each stays on one worker, in its own
    order), so that no long module starts last and runs alone while the other workers idle. Every
    worker collects the same order; a run without xdist keeps the collection order."""
    if not hasattr(config, "workerinput"):  # only xdist's workers collect what xdist hands out
        return
    counts: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        counts[module] = counts.get(module, 0) + 1
    rank = {
        module: (-MODULE_SECONDS.get(module.removeprefix("tests/"), 0.05 * count), index)
        for index, (module, count) in enumerate(counts.items())
    }
    items.sort(key=lambda item: rank[item.nodeid.split("::", 1)[0]])
