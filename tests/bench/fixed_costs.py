"""The stack's fixed monthly cost at zero traffic, from template.yaml with its parameters' defaults.

Every fixed charge: alarms (a metric-math alarm is billed per metric it reads), the dashboard, custom
metrics published on a schedule, the SQS event sources' idle long polling, the scheduled functions'
runs and their log lines, the secrets the stack creates (Secrets Manager has no free tier past a
first month's trial). Prices from tests/bench/costs.py PRICES; the always-free tiers (CloudWatch:
10 alarm metrics, 10 custom metrics, 3 dashboards, 5 GB of logs; SQS: 1M requests; Lambda: 1M requests
and 400,000 GB-s a month) give the second figure.
"""

from __future__ import annotations

from typing import Any

from tests.bench.costs import IDLE_POLLERS, LONG_POLL_SECONDS, MONTH_SECONDS, price

SCHEDULED_RUN_SECONDS = 0.3  # an idle sweep or a balance read, billed (measured locally: well under)
LOG_BYTES_PER_RUN = 600  # START, END, REPORT and one summary line


def _condition(name: str | None, template: dict[str, Any], parameters: dict[str, str]) -> bool:
    if name is None:
        return True
    kind, operands = next(iter(template["Conditions"][name].items()))
    if kind != "Fn::Equals":
        return True  # Fn::Not etc.: only the alarm level's conditions matter here
    left, right = operands
    value = parameters.get(left["Ref"], "") if isinstance(left, dict) else left
    return bool(value == right)


def _state_enabled(value: Any, template: dict[str, Any], parameters: dict[str, str]) -> bool:
    if isinstance(value, dict) and "Fn::If" in value:
        condition, yes, no = value["Fn::If"]
        value = yes if _condition(condition, template, parameters) else no
    return value in (None, "ENABLED", True)


def fixed_monthly(template: dict[str, Any], overrides: dict[str, str] | None = None) -> dict[str, Any]:
    parameters = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    parameters.update(overrides or {})
    resources = {
        name: r
        for name, r in template["Resources"].items()
        if _condition(r.get("Condition"), template, parameters)
    }
    alarm_metrics = sum(
        sum(1 for m in r["Properties"]["Metrics"] if "MetricStat" in m) if "Metrics" in r["Properties"] else 1
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    )
    dashboards = sum(1 for r in resources.values() if r["Type"] == "AWS::CloudWatch::Dashboard")
    secrets = sum(1 for r in resources.values() if r["Type"] == "AWS::SecretsManager::Secret")
    sqs_sources = 0
    runs = 0.0
    custom_metrics = 0
    for r in resources.values():
        if r["Type"] != "AWS::Serverless::Function":
            continue
        for event in r["Properties"].get("Events", {}).values():
            if event["Type"] == "SQS":
                sqs_sources += 1
            if event["Type"] == "Schedule" and _state_enabled(
                event["Properties"].get("State"), template, parameters
            ):
                rate = event["Properties"]["Schedule"]  # rate(5 minutes) / rate(1 hour)
                amount, unit = rate[len("rate(") : -1].split()
                seconds = int(amount) * (60 if unit.startswith("minute") else 3600)
                runs += MONTH_SECONDS / seconds
                if r["Properties"]["Handler"].startswith("credit_handler"):
                    custom_metrics += 1  # CreditBalance, every hour
    polls = sqs_sources * IDLE_POLLERS * MONTH_SECONDS / LONG_POLL_SECONDS
    gb_seconds = runs * SCHEDULED_RUN_SECONDS * 0.25
    logs_gb = runs * LOG_BYTES_PER_RUN / 1e9
    items = {
        f"{alarm_metrics} alarm metrics": (
            price("cloudwatch_alarm_metric_month", alarm_metrics),
            price("cloudwatch_alarm_metric_month", max(0, alarm_metrics - 10)),
        ),
        f"{dashboards} dashboard": (
            price("cloudwatch_dashboard_month", dashboards),
            price("cloudwatch_dashboard_month", max(0, dashboards - 3)),
        ),
        f"{custom_metrics} custom metric published hourly": (
            price("cloudwatch_custom_metric_month", custom_metrics),
            price("cloudwatch_custom_metric_month", max(0, custom_metrics - 10)),
        ),
        f"idle polling of {sqs_sources} SQS event sources ({polls / 1e6:.2f}M requests)": (
            price("sqs_request", polls),
            price("sqs_request", max(0.0, polls - 1_000_000)),
        ),
        f"{runs:.0f} scheduled runs (requests, {gb_seconds:.0f} GB-s)": (
            price("lambda_request", runs) + price("lambda_gb_second_arm64", gb_seconds),
            0.0,
        ),
        f"their log lines ({logs_gb * 1000:.1f} MB)": (price("cloudwatch_logs_gb", logs_gb), 0.0),
        f"{secrets} Secrets Manager secret": (
            price("secretsmanager_secret_month", secrets),
            price("secretsmanager_secret_month", secrets),
        ),
    }
    return {
        "items": items,
        "list": sum(value for value, _free in items.values()),
        "free": sum(free for _value, free in items.values()),
    }


TARGET = 0.50  # USD a month at zero traffic (issue 13)


def main() -> None:
    from devstack.common.template import load_template
    from tests.bench.common import ASSUMED, COMPUTED, Row, banner, print_table, summary_rows

    banner("5. Fixed monthly cost at zero traffic, from template.yaml")
    template = load_template()
    default = template["Parameters"]["AlarmLevel"]["Default"]
    totals = {}
    for level in ("essential", "all"):
        fixed = fixed_monthly(template, {"AlarmLevel": level})
        totals[level] = fixed
        print_table(
            f"Fixed monthly cost at zero traffic, AlarmLevel={level} (USD)",
            ["charge", "list price", "after always-free tiers"],
            [
                *((name, f"{v:.2f}", f"{free:.2f}") for name, (v, free) in fixed["items"].items()),
                ("total", f"{fixed['list']:.2f}", f"{fixed['free']:.2f}"),
            ],
        )
    fixed = totals[default]
    # The idle polling (IDLE_POLLERS long polls per queue) and the scheduled runs' duration are not measured
    # here: the rows rest on them.
    assumed = f"idle SQS polling: {IDLE_POLLERS} long polls per queue assumed"
    summary_rows(
        [
            Row(
                f"fixed monthly cost at zero traffic, AlarmLevel={default}, list ({assumed})",
                "-",
                f"${fixed['list']:.2f}",
                "-",
                f"<= ${TARGET:.2f}",
                fixed["list"] <= TARGET,
                ASSUMED,
            ),
            Row(
                f"fixed monthly cost at zero traffic, AlarmLevel={default}, after free tiers",
                "-",
                f"${fixed['free']:.2f}",
                "-",
                f"<= ${TARGET:.2f}",
                fixed["free"] <= TARGET,
                COMPUTED,
            ),
        ]
    )


if __name__ == "__main__":
    main()
