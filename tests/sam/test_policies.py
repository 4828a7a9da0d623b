"""Least privilege, checked on what CloudFormation receives: template.yaml translated offline by the SAM
translator the SAM CLI ships, so the policies SAM adds by itself (a managed policy per event source, the
basic execution role, X-Ray) are checked too, not only the statements the template spells out."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest

from devstack.common.template import load_template

# Actions that have no resource-level permissions, so "*" is their only possible Resource, each with why
# a function may need it. Nothing else gets "*".
# cloudwatch:PutMetricData is deliberately absent: Powertools Metrics writes EMF log lines, which
# CloudWatch turns into metrics from the function's own log group, so no function calls it.
WILDCARD_ALLOWED = {
    "xray:PutTraceSegments": "X-Ray has no resource-level permissions; needed only with Tracing: Active",
    "xray:PutTelemetryRecords": "X-Ray has no resource-level permissions; needed only with Tracing: Active",
}
# Managed policies a function role may carry. AWS's Lambda managed policies
# (AWSLambdaBasicExecutionRole, AWSLambdaSQSQueueExecutionRole, AWSXrayWriteOnlyAccess ...) all grant
# their actions on "*", and their statements are not in the template to check: none is allowed.
MANAGED_POLICIES_ALLOWED: dict[str, str] = {}


class _NoManagedPolicies:
    """The translator resolves managed policy names in Policies through IAM; the template uses none."""

    def load(self) -> dict[str, str]:
        return {}


def translate(template: dict[str, Any]) -> dict[str, Any]:
    from samtranslator.translator.transform import transform

    template = copy.deepcopy(template)
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):  # local folders: what `sam package` would upload
                properties[key] = "s3://placeholder-bucket/placeholder.zip"
    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"  # pseudo parameters; no AWS call is made
    try:
        translated: dict[str, Any] = transform(template, {}, _NoManagedPolicies())
    finally:
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous
    return translated


@cache
def translated_template() -> dict[str, Any]:
    return translate(load_template())


def _branches(value: Any) -> Iterator[Any]:
    """Every value a (possibly Fn::If) node can take; AWS::NoValue dropped."""
    if isinstance(value, dict) and list(value) == ["Fn::If"]:
        for branch in value["Fn::If"][1:]:
            yield from _branches(branch)
    elif value == {"Ref": "AWS::NoValue"}:
        return
    else:
        yield value


def _as_list(value: Any) -> list[Any]:
    values = []
    for item in value if isinstance(value, list) else [value]:
        values.extend(_branches(item))
    return values


def function_roles(template: dict[str, Any]) -> dict[str, str]:
    """Function logical id -> logical id of its execution role."""
    roles = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        role = resource["Properties"]["Role"]
        assert isinstance(role, dict) and "Fn::GetAtt" in role, f"{name}: role is not a role of this stack"
        roles[name] = role["Fn::GetAtt"][0]
    return roles


def role_statements(template: dict[str, Any], role: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(policy name, statement) of the role's inline policies and of every policy attached to it."""
    resources = template["Resources"]
    for policy in resources[role]["Properties"].get("Policies", []):
        for document in _branches(policy):
            for statement in _as_list(document["PolicyDocument"]["Statement"]):
                yield document["PolicyName"], statement
    for name, resource in resources.items():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and {"Ref": role} in _as_list(
            resource["Properties"].get("Roles", [])
        ):
            for statement in _as_list(resource["Properties"]["PolicyDocument"]["Statement"]):
                yield name, statement


def is_wildcard(resource: Any) -> bool:
    """True for "*", or an ARN written out (a string or a Fn::Sub) whose resource part is "*": every queue,
    every table/..., every log-group:... of an account. A Ref or Fn::GetAtt names one resource of this
    stack."""
    text = resource.get("Fn::Sub") if isinstance(resource, dict) else resource
    if isinstance(text, list):
        text = text[0]
    if not isinstance(text, str):
        return False
    # ${AWS::Region}, ${Bucket.Arn}, ${SomePrefix} ...: one name each, so "parameter${Prefix}/*" is the
    # parameters under one prefix, while "parameter/*" is every parameter of the account.
    text = re.sub(r"\$\{[^}]*\}", "NAME", text)
    parts = text.split(":", 5)
    if len(parts) < 6:
        return text == "*"
    service, part = parts[2], parts[5]
    if service == "s3":  # bucket/key: only every bucket's objects is a wildcard
        return part in ("*", "*/*")
    return re.fullmatch(r"[*]|[a-z-]+[/:][*]", part) is not None


def violations(template: dict[str, Any]) -> list[str]:
    found = []
    for function, role in function_roles(template).items():
        properties = template["Resources"][role]["Properties"]
        for arn in _as_list(properties.get("ManagedPolicyArns", [])):
            if str(arn) not in MANAGED_POLICIES_ALLOWED:
                found.append(f"{function}: managed policy {arn}")
        for policy, statement in role_statements(template, role):
            if statement.get("Effect") != "Allow":
                continue
            if "NotResource" in statement or "NotAction" in statement:
                found.append(f"{function}/{policy}: NotResource/NotAction {statement}")
                continue
            actions = [str(action) for action in _as_list(statement["Action"])]
            if any(is_wildcard(resource) for resource in _as_list(statement["Resource"])):
                unexplained = [action for action in actions if action not in WILDCARD_ALLOWED]
                if unexplained:
                    found.append(f"{function}/{policy}: {unexplained} on {statement['Resource']}")
            if any("*" in action for action in actions):
                found.append(f"{function}/{policy}: wildcard action {actions}")
    return found


def test_no_function_role_has_a_wildcard_it_does_not_need() -> None:
    assert violations(translated_template()) == []


def test_the_check_catches_what_sam_adds_by_itself() -> None:
    # A function as the template declared them before: SAM's own role, an SQS trigger, X-Ray on.
    sam_defaults = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Resources": {
            "Queue": {"Type": "AWS::SQS::Queue"},
            "Worker": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "CodeUri": "functions/downloader/",
                    "Handler": "h.handler",
                    "Runtime": "python3.13",
                    "Tracing": "Active",
                    "Policies": [
                        {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
                    ],
                    "Events": {
                        "Jobs": {"Type": "SQS", "Properties": {"Queue": {"Fn::GetAtt": ["Queue", "Arn"]}}}
                    },
                },
            },
        },
    }
    found = "\n".join(violations(translate(sam_defaults)))
    for expected in (
        "AWSLambdaBasicExecutionRole",
        "AWSLambdaSQSQueueExecutionRole",
        "AWSXrayWriteOnlyAccess",
        "['s3:GetObject'] on *",
    ):
        assert expected in found, found


@pytest.mark.parametrize(
    ("resource", "wildcard"),
    [
        ("*", True),
        ({"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:*"}, True),
        ({"Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/*"}, True),
        ({"Fn::Sub": "arn:${AWS::Partition}:s3:::*/*"}, True),
        ("arn:aws:s3:::some-bucket/*", False),
        ({"Fn::Sub": "${ImagesBucket.Arn}/images/*"}, False),
        ({"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*"}, True),
        ({"Fn::Sub": "${TasksTable.Arn}/index/status-nextCheckAt"}, False),
        ({"Fn::GetAtt": ["DownloadQueue", "Arn"]}, False),
    ],
)
def test_wildcard_resources_are_recognised(resource: Any, wildcard: bool) -> None:
    assert is_wildcard(resource) is wildcard


def test_the_downloader_polls_its_queue_only() -> None:
    template = translated_template()
    resources = template["Resources"]
    mapping = next(r for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping")
    assert mapping["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["DownloadQueue", "Arn"]}
    role = function_roles(template)["DownloaderFunction"]
    sqs = {
        action: statement["Resource"]
        for _, statement in role_statements(template, role)
        for action in _as_list(statement["Action"])
        if str(action).startswith("sqs:")
    }
    needed = (
        "ReceiveMessage",
        "DeleteMessage",
        "GetQueueAttributes",
        "ChangeMessageVisibility",
        "SendMessage",
    )
    assert sqs == {f"sqs:{action}": {"Fn::GetAtt": ["DownloadQueue", "Arn"]} for action in needed}


def test_each_function_logs_to_its_own_group_only() -> None:
    template = translated_template()
    resources = template["Resources"]
    for function, role in function_roles(template).items():
        group = resources[function]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert resources[group]["Type"] == "AWS::Logs::LogGroup"
        assert resources[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        logs = [
            s
            for _, s in role_statements(template, role)
            if any("logs:" in str(a) for a in _as_list(s["Action"]))
        ]
        assert logs and all(s["Resource"] == {"Fn::GetAtt": [group, "Arn"]} for s in logs), (function, logs)
        assert "TracingConfig" not in resources[function]["Properties"] or resources[function]["Properties"][
            "TracingConfig"
        ] == {"Mode": "PassThrough"}
