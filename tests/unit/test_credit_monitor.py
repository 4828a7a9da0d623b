"""The scheduled credit monitor: the upstream's balance as the CreditBalance metric, failures loud.

The upstream is faked with respx (as in test_reconciler) or is the emulator on 127.0.0.1; no AWS call.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from tests.conftest import load_event

CREDIT = "https://api.kie.ai/api/v1/chat/credit"


@pytest.fixture
def stdout(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> pytest.CaptureFixture[str]:
    """What the function prints (EMF metrics and JSON logs), as CloudWatch would receive it."""
    from credit_handler import logger

    # The log handler keeps the stdout it was created with (an earlier capture): write to today's.
    monkeypatch.setattr(logger.registered_handler, "stream", _CurrentStdout())
    return capsys


class _CurrentStdout:
    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture(autouse=True)
def fresh_metrics() -> None:
    """Invocations with metrics disabled (the IAM scenario, in whichever worker runs it) keep their
    values unflushed in the module's Metrics: each test here starts from none."""
    import credit_handler

    credit_handler.metrics.clear_metrics()


@pytest.fixture
def monitor_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from image_pipeline import wiring
    from image_pipeline.settings import reset_settings_cache

    monkeypatch.setenv("KIE_API_BASE_URL", "https://api.kie.ai")
    monkeypatch.setenv("KIE_API_KEY", "upstream-test-key")
    monkeypatch.setenv("KIE_API_KEY_PARAMETER", "")
    # The metric is printed as EMF on stdout, which is what CloudWatch reads in Lambda.
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    reset_settings_cache()
    wiring.reset()
    yield
    reset_settings_cache()
    wiring.reset()


def run(context: Any) -> dict[str, Any]:
    from credit_handler import lambda_handler

    return lambda_handler(load_event("credit_monitor_scheduled"), context)


def emitted_metrics(stdout: str) -> list[dict[str, Any]]:
    """The EMF documents Powertools printed: one dict per flush, metric name -> value."""
    documents = []
    for line in stdout.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            document = json.loads(line)
            blocks = document["_aws"]["CloudWatchMetrics"]
            units = {m["Name"]: m["Unit"] for block in blocks for m in block["Metrics"]}
            documents.append(
                {
                    "namespace": blocks[0]["Namespace"],
                    "service": document.get("service"),
                    "dimensions": {
                        name: document[name]
                        for block in blocks
                        for dimension_set in block["Dimensions"]
                        for name in dimension_set
                    },
                    "values": {name: _single(document[name]) for name in units},
                    "units": units,
                }
            )
    return documents


def _single(value: Any) -> Any:
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def test_scheduled_event_is_an_eventbridge_schedule() -> None:
    event = load_event("credit_monitor_scheduled")
    assert (event["source"], event["detail-type"]) == ("aws.events", "Scheduled Event")


def test_balance_is_published_as_a_metric_and_returned(
    monitor_env: None, lambda_context: Any, stdout: pytest.CaptureFixture[str]
) -> None:
    with respx.mock:
        route = respx.get(CREDIT).mock(
            return_value=httpx.Response(200, json={"code": 200, "msg": "success", "data": 1234.5})
        )
        result = run(lambda_context)

    assert result == {"credits": 1234.5}
    assert route.call_count == 1
    assert route.calls.last.request.headers["Authorization"] == "Bearer upstream-test-key"
    [document] = [d for d in emitted_metrics(stdout.readouterr().out) if "CreditBalance" in d["values"]]
    assert document["values"]["CreditBalance"] == 1234.5
    assert document["units"]["CreditBalance"] == "Count"
    assert document["namespace"] == "ImagePipelineTests"
    assert document["service"] == "credit-monitor"
    assert document["dimensions"] == {"service": "credit-monitor"}


def test_the_metric_is_the_one_the_template_alarms_on() -> None:
    """Same name and dimensions as CreditBalanceAlarm, else the alarm would only ever see missing data."""
    from devstack.common.template import resources_of_type

    [alarm] = [
        a
        for a in resources_of_type("AWS::CloudWatch::Alarm").values()
        if a.get("MetricName") == "CreditBalance"
    ]
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {"service": "credit-monitor"}
    [function] = [
        f
        for f in resources_of_type("AWS::Serverless::Function").values()
        if f["Handler"] == "credit_handler.lambda_handler"
    ]
    assert function["CodeUri"].rstrip("/") == "functions/credit_monitor"
    assert function["Environment"]["Variables"].get("POWERTOOLS_SERVICE_NAME", "credit-monitor") == (
        "credit-monitor"
    )


def test_balance_is_logged(
    monitor_env: None, lambda_context: Any, stdout: pytest.CaptureFixture[str]
) -> None:
    from credit_handler import logger

    level = logger.log_level
    logger.setLevel(logging.INFO)
    try:
        with respx.mock:
            respx.get(CREDIT).mock(
                return_value=httpx.Response(200, json={"code": 200, "msg": "success", "data": 88})
            )
            run(lambda_context)
    finally:
        logger.setLevel(level)
    logs = [json.loads(line) for line in stdout.readouterr().out.splitlines() if '"level"' in line]
    [entry] = [log for log in logs if log.get("credits") == 88]
    assert entry["level"] == "INFO" and "credit" in entry["message"]


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
@pytest.mark.parametrize(
    ("reply", "error_name", "code"),
    [
        (httpx.Response(200, json={"code": 401, "msg": "no access"}), "Unauthorized", 401),
        (httpx.Response(200, json={"code": 455, "msg": "maintenance"}), "Unavailable", 455),
        (httpx.Response(502, text="<html>bad gateway</html>"), "Unavailable", 502),
        (httpx.ConnectTimeout("timed out"), "Unavailable", None),
    ],
    ids=["bad-key", "maintenance", "proxy-502", "timeout"],
)
def test_a_failed_read_raises_so_the_errors_metric_fires(
    monitor_env: None,
    lambda_context: Any,
    stdout: pytest.CaptureFixture[str],
    reply: Any,
    error_name: str,
    code: int | None,
) -> None:
    from image_pipeline import errors

    with respx.mock:
        route = respx.get(CREDIT)
        if isinstance(reply, Exception):
            route.mock(side_effect=reply)
        else:
            route.mock(return_value=reply)
        with pytest.raises(errors.UpstreamError) as raised:
            run(lambda_context)

    # UpstreamNoAnswer (a 502 page, a timeout after sending) is a kind of UpstreamUnavailable.
    assert isinstance(raised.value, getattr(errors, f"Upstream{error_name}")), type(raised.value)
    assert raised.value.code == code
    out = stdout.readouterr().out
    # No balance is made up: nothing is published, and the failure is logged with its code.
    assert all("CreditBalance" not in d["values"] for d in emitted_metrics(out))
    logs = [json.loads(line) for line in out.splitlines() if '"level"' in line]
    [entry] = [log for log in logs if log["level"] == "ERROR"]
    assert "credit" in entry["message"] and entry.get("code") == code
    assert "upstream-test-key" not in out


def test_settings_are_read_once_and_reset_for_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    from image_pipeline.settings import CreditMonitorSettings, credit_monitor_settings, reset_settings_cache

    monkeypatch.setenv("KIE_API_BASE_URL", "https://one.example/")
    reset_settings_cache()
    first = credit_monitor_settings()
    assert isinstance(first, CreditMonitorSettings) and first.base_url == "https://one.example"
    monkeypatch.setenv("KIE_API_BASE_URL", "https://two.example")
    assert credit_monitor_settings() is first  # cached per cold start
    reset_settings_cache()
    assert credit_monitor_settings().base_url == "https://two.example"
    reset_settings_cache()


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_against_the_emulator(
    monkeypatch: pytest.MonkeyPatch, lambda_context: Any, stdout: pytest.CaptureFixture[str]
) -> None:
    """The real HTTP round trip on loopback: the emulator's balance, with its bearer auth."""
    from image_pipeline import wiring
    from image_pipeline.settings import reset_settings_cache

    from devstack.emulator import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(api_key="emulator-key", credits=321.25)) as emulator:
        monkeypatch.setenv("KIE_API_BASE_URL", emulator.base_url)
        monkeypatch.setenv("KIE_API_KEY", "emulator-key")
        monkeypatch.setenv("KIE_API_KEY_PARAMETER", "")
        monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
        reset_settings_cache()
        wiring.reset()
        try:
            assert run(lambda_context) == {"credits": 321.25}
            monkeypatch.setenv("KIE_API_KEY", "wrong-key")
            reset_settings_cache()
            wiring.reset()
            from image_pipeline.errors import UpstreamUnauthorized

            with pytest.raises(UpstreamUnauthorized):
                run(lambda_context)
        finally:
            reset_settings_cache()
            wiring.reset()
    values = [d["values"]["CreditBalance"] for d in emitted_metrics(stdout.readouterr().out) if d["values"]]
    assert values == [321.25]


def test_each_function_labels_its_own_metrics_in_a_shared_process(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local stack's workers and the tests run several functions in one process."""
    from image_pipeline.observability import metrics_for

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    first, second = metrics_for("callback"), metrics_for("credit-monitor")
    first.add_metric(name="One", unit="Count", value=1)  # an invocation that never flushed (it crashed)
    first.add_dimension(name="service", value="callback")
    second.add_metric(name="Two", unit="Count", value=1)
    second.flush_metrics()
    [document] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert document["service"] == "credit-monitor" and "One" not in document
    first.clear_metrics()
