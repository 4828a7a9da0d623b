"""What template.yaml promises an operator, checked on the template and on its offline translation: the
callbacks' own front, one retention for data, logs without query strings, an alarm for each failure mode."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.common.template import api_routes, load_template, resources_of_type
from tests.sam.test_policies import translated_template

FUNCTIONS = (
    "ApiFunction",
    "CallbackFunction",
    "DownloaderFunction",
    "ReconcilerFunction",
    "CreditMonitorFunction",
)
TABLE_WRITERS = ("ApiFunction", "CallbackFunction", "DownloaderFunction", "ReconcilerFunction")


def resources() -> dict[str, Any]:
    resources: dict[str, Any] = load_template()["Resources"]
    return resources


def _references(node: Any) -> Iterator[str]:
    """Logical ids a node refers to (Ref, Fn::GetAtt, ${...} in Fn::Sub)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                yield value
            elif key == "Fn::GetAtt":
                yield value[0] if isinstance(value, list) else str(value).split(".")[0]
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                for name in re.findall(r"\$\{([^}!]+)\}", text):
                    yield name.split(".")[0]
                if isinstance(value, list):
                    yield from _references(value[1])
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def dependencies(template: dict[str, Any]) -> dict[str, set[str]]:
    declared = template["Resources"]
    graph = {}
    for name, resource in declared.items():
        depends_on = resource.get("DependsOn", [])
        targets = set(_references({k: v for k, v in resource.items() if k != "DependsOn"}))
        targets |= set([depends_on] if isinstance(depends_on, str) else depends_on)
        graph[name] = {target for target in targets if target in declared and target != name}
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in graph[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


# -- item 4: the callbacks' own front ---------------------------------------------------------------


def test_callbacks_have_their_own_api_without_key_tracing_or_shared_throttle() -> None:
    apis = resources_of_type("AWS::Serverless::Api")
    assert set(apis) == {"ImagesApi", "CallbackApi"}
    callback, images = apis["CallbackApi"], apis["ImagesApi"]
    assert "Auth" not in callback and images["Auth"]["ApiKeyRequired"] is True
    for api in (callback, images):
        assert api["TracingEnabled"] is False
        assert api["OpenApiVersion"]  # no extra "Stage" stage without these settings
        [settings] = api["MethodSettings"]
        assert settings["ThrottlingRateLimit"] > 0 and settings["ThrottlingBurstLimit"] > 0
    assert callback["MethodSettings"][0]["DataTraceEnabled"] is False  # execution logs hold whole requests
    routes = {(route.method, route.path): route for route in api_routes()}
    assert not routes[("POST", "/callbacks/{taskId}")].api_key_required
    assert routes[("POST", "/tasks")].api_key_required and routes[("GET", "/tasks/{taskId}")].api_key_required
    on_api = {
        (event["Properties"]["Method"], event["Properties"]["Path"]): event["Properties"]["RestApiId"]["Ref"]
        for function in resources_of_type("AWS::Serverless::Function").values()
        for event in function.get("Events", {}).values()
        if event["Type"] == "Api"
    }
    assert on_api == {
        ("post", "/tasks"): "ImagesApi",
        ("get", "/tasks"): "ImagesApi",
        ("get", "/tasks/{taskId}"): "ImagesApi",
        ("get", "/models"): "ImagesApi",
        ("post", "/uploads"): "ImagesApi",
        ("delete", "/tasks/{taskId}"): "ImagesApi",
        ("get", "/openapi.json"): "ImagesApi",
        ("get", "/docs"): "ImagesApi",
        ("post", "/callbacks/{taskId}"): "CallbackApi",
    }
    assert not routes[("GET", "/openapi.json")].api_key_required  # the contract, readable without a key
    assert not routes[("GET", "/docs")].api_key_required  # Swagger UI: the key goes in with Authorize
    assert routes[("GET", "/models")].api_key_required
    assert routes[("POST", "/uploads")].api_key_required
    assert (
        routes[("GET", "/tasks")].api_key_required and routes[("DELETE", "/tasks/{taskId}")].api_key_required
    )


def test_callback_urls_name_the_callback_api_and_nothing_depends_on_itself() -> None:
    variables = resources()["ApiFunction"]["Properties"]["Environment"]["Variables"]
    base = variables["CALLBACK_BASE_URL"]["Fn::Sub"]
    assert base.startswith("https://${CallbackApi}.execute-api.") and base.endswith("/callbacks")
    assert variables["PUBLIC_BASE_URL"] == {"Ref": "PublicBaseUrl"}
    graph = dependencies(translated_template())
    assert "ApiFunction" not in reachable(graph, "CallbackApi")
    cyclic = [name for name in graph if name in reachable(graph, name)]
    assert cyclic == []


def test_the_api_function_hands_out_the_callback_api_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from api_handler import callback_base
    from image_pipeline.settings import ApiSettings

    environment = {"TASKS_TABLE": "t", "IMAGES_BUCKET": "b"}
    callback_api = "https://cb123.execute-api.us-east-1.amazonaws.com/Prod/callbacks"
    settings = ApiSettings.from_environ({**environment, "CALLBACK_BASE_URL": callback_api + "/"})
    assert callback_base(settings) == callback_api
    settings = ApiSettings.from_environ(
        {**environment, "CALLBACK_BASE_URL": callback_api, "PUBLIC_BASE_URL": "https://hooks.example.com/"}
    )
    assert callback_base(settings) == "https://hooks.example.com/callbacks"


def test_outputs_name_both_apis() -> None:
    outputs = load_template()["Outputs"]
    assert "${ImagesApi}" in outputs["ApiUrl"]["Value"]["Fn::Sub"]
    assert "${CallbackApi}" in outputs["CallbackApiUrl"]["Value"]["Fn::Sub"]


# -- item 5: bounded cost ---------------------------------------------------------------------------


def test_client_usage_plan_has_a_daily_quota() -> None:
    plan = resources()["ClientUsagePlan"]["Properties"]
    assert plan["Quota"] == {"Limit": {"Ref": "ClientDailyQuota"}, "Period": "DAY"}
    assert load_template()["Parameters"]["ClientDailyQuota"]["Default"] == 5000


def test_credit_balance_is_read_hourly_and_alarmed_below_the_threshold() -> None:
    monitor = resources()["CreditMonitorFunction"]["Properties"]
    assert monitor["Handler"] == "credit_handler.lambda_handler"
    assert monitor["CodeUri"].rstrip("/") == "functions/credit_monitor"
    assert monitor["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "credit-monitor"
    [event] = monitor["Events"].values()
    assert (event["Type"], event["Properties"]["Schedule"]) == ("Schedule", "rate(1 hour)")
    alarm = resources()["CreditBalanceAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("ImagePipeline", "CreditBalance")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "credit-monitor"}]
    assert alarm["Threshold"] == {"Ref": "CreditAlarmThreshold"}
    assert alarm["ComparisonOperator"] == "LessThanThreshold"


# -- item 6: operable ------------------------------------------------------------------------------


def test_access_logs_never_hold_a_query_string() -> None:
    template = load_template()
    log_format = template["Mappings"]["AccessLog"]["Format"]["Json"]
    assert "$context.requestId" in log_format and "$context.path" in log_format
    variables = set(re.findall(r"\$context\.[A-Za-z.]+", log_format))
    # None of these carries the query string; anything added must be checked and listed here.
    assert variables <= {
        "$context.requestId",
        "$context.requestTimeEpoch",
        "$context.identity.sourceIp",
        "$context.httpMethod",
        "$context.resourcePath",
        "$context.path",
        "$context.status",
        "$context.error.responseType",
        "$context.responseLength",
        "$context.responseLatency",
        "$context.integration.status",
        "$context.integration.latency",
        "$context.identity.apiKeyId",
    }
    for name, api in resources_of_type("AWS::Serverless::Api").items():
        setting = api["AccessLogSetting"]
        assert setting["Format"] == {"Fn::FindInMap": ["AccessLog", "Format", "Json"]}
        assert f"${{{name}AccessLogs}}" in setting["DestinationArn"]["Fn::Sub"]
        group = resources()[f"{name}AccessLogs"]
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_one_retention_for_records_and_images() -> None:
    for function in TABLE_WRITERS:
        variables = resources()[function]["Properties"]["Environment"]["Variables"]
        assert variables["RECORD_TTL_DAYS"] == {"Ref": "RetentionDays"}, function
    rules = {
        rule["Id"]: rule
        for rule in resources()["ImagesBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    }
    assert rules["ExpireImages"]["Prefix"] == "images/"
    assert rules["ExpireImages"]["ExpirationInDays"] == {"Ref": "RetentionDays"}
    assert rules["ExpireOldVersions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30


def test_no_function_pays_for_empty_traces() -> None:
    template = load_template()
    assert "Tracing" not in template["Globals"]["Function"]
    assert all(
        "Tracing" not in function for function in resources_of_type("AWS::Serverless::Function").values()
    )


def test_every_failure_mode_has_an_alarm_on_the_dashboard() -> None:
    # AlarmLevel=all: every alarm but the essential level's one errors alarm (a metric-math alarm)
    alarms = {
        name: a for name, a in resources_of_type("AWS::CloudWatch::Alarm").items() if "Metrics" not in a
    }
    watched = {
        (alarm["Namespace"], alarm["MetricName"], str(alarm["Dimensions"][0]["Value"]))
        for alarm in alarms.values()
    }
    for function in FUNCTIONS:
        for metric in ("Errors", "Throttles"):
            assert ("AWS/Lambda", metric, str({"Ref": function})) in watched, (function, metric)
    for api in ("images", "callbacks"):
        assert ("AWS/ApiGateway", "5XXError", str({"Fn::Sub": f"${{AWS::StackName}}-{api}"})) in watched
    queue = str({"Fn::GetAtt": ["DownloadQueue", "QueueName"]})
    dead_letters = str({"Fn::GetAtt": ["DownloadDeadLetterQueue", "QueueName"]})
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage", queue) in watched
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", dead_letters) in watched
    assert ("ImagePipeline", "TasksPastBound", "reconciler") in watched
    assert all(
        alarm["AlarmActions"]
        == {"Fn::If": ["HasAlarmEmail", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]}
        for alarm in alarms.values()
    )
    body = resources()["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    essential_only = {
        name for name, alarm in resources().items() if alarm.get("Condition") == "EssentialAlarms"
    }
    assert {name for name in alarms if f"${{{name}.Arn}}" in body} == set(alarms) - essential_only


ESSENTIAL_ALARMS = {
    "DownloadDeadLetterAlarm",
    "NotificationDeadLetterAlarm",
    "TasksPastBoundAlarm",
    "FunctionErrorsAlarm",
}


def test_essential_alarms_by_default_every_alarm_with_alarm_level_all() -> None:
    template = load_template()
    assert template["Parameters"]["AlarmLevel"]["Default"] == "essential"
    declared = {name: r for name, r in resources().items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    # Given the default AlarmLevel: only the essential alarms exist (no condition, or EssentialAlarms)
    essential = {name for name, r in declared.items() if r.get("Condition") in (None, "EssentialAlarms")}
    assert essential == ESSENTIAL_ALARMS
    # Then every other alarm, the dashboard and the hourly credit reading come with AlarmLevel=all
    assert {r.get("Condition") for name, r in declared.items() if name not in ESSENTIAL_ALARMS} == {
        "AllAlarms"
    }
    assert resources()["Dashboard"]["Condition"] == "AllAlarms"
    [event] = resources()["CreditMonitorFunction"]["Properties"]["Events"].values()
    assert event["Properties"]["State"] == {"Fn::If": ["AllAlarms", "ENABLED", "DISABLED"]}
    # The one errors alarm sums every function's Errors metric (billed per metric it reads)
    metrics = declared["FunctionErrorsAlarm"]["Properties"]["Metrics"]
    watched = {
        m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"] for m in metrics if "MetricStat" in m
    }
    assert watched == set(resources_of_type("AWS::Serverless::Function"))
    assert {m["MetricStat"]["Metric"]["MetricName"] for m in metrics if "MetricStat" in m} == {"Errors"}


def test_download_jobs_are_not_held_back_by_a_batching_window() -> None:
    [event] = resources()["DownloaderFunction"]["Properties"]["Events"].values()
    assert event["Type"] == "SQS"
    assert "MaximumBatchingWindowInSeconds" not in event["Properties"]


def test_the_tasks_indexes_project_keys_only() -> None:
    indexes = resources()["TasksTable"]["Properties"]["GlobalSecondaryIndexes"]
    assert {index["IndexName"]: index["Projection"]["ProjectionType"] for index in indexes} == {
        "status-nextCheckAt": "KEYS_ONLY",
        "owner-createdAt": "KEYS_ONLY",
    }


def test_an_uploads_bytes_are_kept_no_longer_than_upload_retention_days_and_one_more() -> None:
    # An upload is a client's photo, for the edits that follow: its expired current version and any it
    # overwrote go a day later, not after the 30 days the images' old versions are kept for.
    rules = {
        rule["Id"]: rule
        for rule in resources()["ImagesBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    }
    uploads = rules["ExpireUploads"]
    assert uploads["Prefix"] == "uploads/"
    assert uploads["ExpirationInDays"] == {"Ref": "UploadRetentionDays"}
    assert uploads["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
