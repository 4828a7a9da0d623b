"""scripts/clients.py (make add-client / remove-client / list-clients) against moto: API Gateway keys and
usage plans, and a CloudFormation stack's outputs. Never real AWS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devstack.common.template import load_template
from scripts import clients

REGION = "eu-west-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Given a deployed stack: its usage plan, its own key on it, and the outputs naming them."""
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        apigateway = boto3.client("apigateway", region_name=REGION)
        plan = apigateway.create_usage_plan(
            name="imagegen-ClientUsagePlan",
            throttle={"burstLimit": 20, "rateLimit": 10},
            quota={"limit": 5000, "period": "DAY"},
        )
        stack_key = apigateway.create_api_key(name="imagegen-ClientA-1X2Y", enabled=True)
        apigateway.create_usage_plan_key(usagePlanId=plan["id"], keyId=stack_key["id"], keyType="API_KEY")
        outputs = {
            "ClientUsagePlanId": plan["id"],
            "ApiKeyId": stack_key["id"],
            "ApiUrl": "https://abc.execute-api.eu-west-1.amazonaws.com/Prod",
        }
        template = {
            "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
            "Outputs": {name: {"Value": value} for name, value in outputs.items()},
        }
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName="imagegen", TemplateBody=json.dumps(template)
        )
        yield {"apigateway": apigateway, "plan": plan["id"], "stack_key": stack_key["id"]}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = clients.main(["--stack", "imagegen", "--region", REGION, *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def plan_key_names(aws: dict[str, Any], plan: str | None = None) -> dict[str, str]:
    items = aws["apigateway"].get_usage_plan_keys(usagePlanId=plan or aws["plan"])["items"]
    existing = {key["id"] for key in aws["apigateway"].get_api_keys()["items"]}
    return {key["name"]: key["id"] for key in items if key["id"] in existing}


def test_template_outputs_the_usage_plan_the_script_reads() -> None:
    assert load_template()["Outputs"][clients.PLAN_OUTPUT]["Value"] == {"Ref": "ClientUsagePlan"}


def test_add_creates_the_key_on_the_stacks_plan_and_prints_its_value_once(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # When
    code, out, err = run(capsys, "add", "alice")
    # Then
    assert code == 0, err
    key_id = plan_key_names(aws)["imagegen-alice"]
    key = aws["apigateway"].get_api_key(apiKey=key_id, includeValue=True)
    assert key["enabled"] is True
    assert out.count(key["value"]) == 1
    assert f"x-api-key: {key['value']}" in out
    assert "https://abc.execute-api.eu-west-1.amazonaws.com/Prod" in out
    assert "not printed again" in err


def test_adding_a_client_twice_is_refused_and_creates_nothing(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "add", "alice")[0] == 0
    keys_before = len(aws["apigateway"].get_api_keys()["items"])
    code, out, err = run(capsys, "add", "alice")
    assert code == 1
    assert "already has a key" in err
    assert out == ""
    assert len(aws["apigateway"].get_api_keys()["items"]) == keys_before


def test_remove_deletes_only_that_clients_key_on_this_stack(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given alice and bob here, and an "imagegen-alice" of another stack (its own plan)
    apigateway = aws["apigateway"]
    other_plan = apigateway.create_usage_plan(name="imagegen-dev-ClientUsagePlan")["id"]
    other = apigateway.create_api_key(name="imagegen-alice", enabled=True)
    apigateway.create_usage_plan_key(usagePlanId=other_plan, keyId=other["id"], keyType="API_KEY")
    assert run(capsys, "add", "alice")[0] == 0
    assert run(capsys, "add", "bob")[0] == 0
    alice = plan_key_names(aws)["imagegen-alice"]
    # When
    code, out, err = run(capsys, "remove", "alice")
    # Then
    assert code == 0, err
    assert alice in out
    remaining = {key["id"] for key in apigateway.get_api_keys()["items"]}
    assert alice not in remaining
    assert other["id"] in remaining
    assert "imagegen-bob" in plan_key_names(aws)
    assert plan_key_names(aws, other_plan) == {"imagegen-alice": other["id"]}


def test_removing_an_unknown_client_fails(aws: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "remove", "carol")
    assert code == 1
    assert "no client carol" in err


def test_the_stacks_own_key_is_listed_but_never_removed(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "add", "alice")[0] == 0
    code, out, _err = run(capsys, "list")
    assert code == 0
    lines = out.splitlines()[1:]
    assert any(line.split()[0] == "alice" and line.endswith("yes") for line in lines)
    assert any("the stack's ClientApiKey" in line and aws["stack_key"] in line for line in lines)
    # The stack's key follows CloudFormation's naming, not imagegen-<NAME>: refused by name all the same.
    code, _out, err = run(capsys, "remove", "ClientA-1X2Y")
    assert code == 1
    assert "CloudFormation manages it" in err
    assert aws["stack_key"] in {key["id"] for key in aws["apigateway"].get_api_keys()["items"]}


def test_usage_plan_id_given_directly_needs_no_stack(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code = clients.main(
        ["--stack", "no-such-stack", "--region", REGION, "--usage-plan-id", aws["plan"], "add", "ci"]
    )
    assert code == 0
    assert "imagegen-ci" in plan_key_names(aws)


def test_a_stack_without_the_output_or_no_stack_says_what_to_do(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName="old",
        TemplateBody=json.dumps({"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}, "Outputs": {}}),
    )
    assert clients.main(["--stack", "old", "--region", REGION, "list"]) == 1
    assert "no ClientUsagePlanId output" in capsys.readouterr().err
    assert clients.main(["--stack", "missing", "--region", REGION, "list"]) == 1
    assert "stack missing" in capsys.readouterr().err


def test_an_unknown_usage_plan_creates_no_key(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    keys_before = len(aws["apigateway"].get_api_keys()["items"])
    assert clients.main(["--region", REGION, "--usage-plan-id", "nope123", "add", "alice"]) == 1
    assert len(aws["apigateway"].get_api_keys()["items"]) == keys_before


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 65, "ünï"])
def test_client_names_are_checked(name: str) -> None:
    with pytest.raises(clients.ClientsError):
        clients.key_name(name)


def test_stack_and_region_default_to_samconfig(tmp_path: Path) -> None:
    config = tmp_path / "samconfig.toml"
    config.write_text(
        'version = 0.1\n[default.global.parameters]\nstack_name = "imagegen"\n'
        '[default.deploy.parameters]\nregion = "eu-central-1"\n'
    )
    assert clients.samconfig_defaults(config) == ("imagegen", "eu-central-1")
    assert clients.samconfig_defaults(tmp_path / "none.toml") == ("imagegen", None)
