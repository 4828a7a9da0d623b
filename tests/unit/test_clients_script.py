"""scripts/clients.py (make add-client / remove-client / list-clients / rotate-webhook-secret) against moto:
API Gateway keys and usage plans, SSM SecureStrings for the webhook signing secrets, and a CloudFormation
stack's outputs. Never real AWS."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from image_pipeline.webhooks.signing import parse_secrets, sign
from moto import mock_aws
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from devstack.common.template import load_template
from scripts import clients

REGION = "eu-west-1"
PREFIX = "/imagegen-test/webhook-secrets"  # the stack's WebhookSecretParameterPrefix output


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
            "WebhookSecretParameterPrefix": PREFIX,
        }
        template = {
            "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
            "Outputs": {name: {"Value": value} for name, value in outputs.items()},
        }
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName="imagegen", TemplateBody=json.dumps(template)
        )
        yield {
            "apigateway": apigateway,
            "ssm": boto3.client("ssm", region_name=REGION),
            "plan": plan["id"],
            "stack_key": stack_key["id"],
        }


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = clients.main(["--stack", "imagegen", "--region", REGION, *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def plan_key_names(aws: dict[str, Any], plan: str | None = None) -> dict[str, str]:
    items = aws["apigateway"].get_usage_plan_keys(usagePlanId=plan or aws["plan"])["items"]
    existing = {key["id"] for key in aws["apigateway"].get_api_keys()["items"]}
    return {key["name"]: key["id"] for key in items if key["id"] in existing}


def stored_secrets(aws: dict[str, Any], key_id: str, prefix: str = PREFIX) -> str | None:
    """The parameter's value, or None when there is none."""
    try:
        parameter = aws["ssm"].get_parameter(Name=f"{prefix}/{key_id}", WithDecryption=True)["Parameter"]
    except ClientError as error:
        assert error.response["Error"]["Code"] == "ParameterNotFound"
        return None
    assert parameter["Type"] == "SecureString"
    return str(parameter["Value"])


def printed_secret(out: str) -> str:
    (line,) = [line for line in out.splitlines() if line.startswith("webhook secret: ")]
    return line.removeprefix("webhook secret: ")


def verifies(receiver_secret: str, stored: str) -> bool:
    """Does a receiver holding `receiver_secret` accept a delivery the notifier signs with `stored`?"""
    body = b'{"type":"task.stored","timestamp":"2026-11-21T21:19:48.456Z","data":{}}'
    headers = sign(parse_secrets(stored), "msg_abc_stored", int(time.time()), body)
    try:
        Webhook(receiver_secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


def test_template_outputs_the_usage_plan_the_script_reads() -> None:
    assert load_template()["Outputs"][clients.PLAN_OUTPUT]["Value"] == {"Ref": "ClientUsagePlan"}


def test_template_outputs_the_secret_prefix_the_notifier_reads() -> None:
    template = load_template()
    output = template["Outputs"][clients.SECRET_PREFIX_OUTPUT]["Value"]
    assert output == {"Ref": "WebhookSecretParameterPrefix"}
    parameter = template["Parameters"]["WebhookSecretParameterPrefix"]
    assert parameter["Default"] == clients.DEFAULT_SECRET_PREFIX
    environment = template["Resources"]["NotifierFunction"]["Properties"]["Environment"]["Variables"]
    assert environment["WEBHOOK_SECRET_PARAMETER_PREFIX"] == {"Ref": "WebhookSecretParameterPrefix"}


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


def test_add_creates_the_clients_signing_secret_and_prints_it_once(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # When
    code, out, err = run(capsys, "add", "alice")
    # Then the SecureString <the stack's prefix>/<key id> holds one whsec_ secret, the one printed
    assert code == 0, err
    key_id = plan_key_names(aws)["imagegen-alice"]
    secret = printed_secret(out)
    assert stored_secrets(aws, key_id) == secret
    assert out.count(secret) == 1
    assert secret not in err
    assert f"{PREFIX}/{key_id}" in out
    assert parse_secrets(secret) == (secret,)  # the notifier's parser takes it
    assert secret.startswith("whsec_") and len(secret) == len("whsec_") + 44  # 32 bytes, base64
    # and a receiver using the standardwebhooks package verifies what the notifier signs with it
    assert verifies(secret, secret)
    # Another client gets another secret.
    assert run(capsys, "add", "bob")[0] == 0
    assert stored_secrets(aws, plan_key_names(aws)["imagegen-bob"]) != secret


def test_a_secret_that_cannot_be_created_leaves_no_key_behind(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    keys_before = len(aws["apigateway"].get_api_keys()["items"])
    # SSM refuses names under /aws/: the key is deleted again
    code, out, err = run(capsys, "--secret-prefix", "/aws/reserved", "add", "alice")
    assert code == 1
    assert "could not create the webhook signing secret" in err
    assert "nothing was created" in err
    assert "x-api-key" not in out
    assert len(aws["apigateway"].get_api_keys()["items"]) == keys_before
    assert "imagegen-alice" not in plan_key_names(aws)


def test_the_secret_prefix_comes_from_the_stack_or_the_option(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # A stack deployed before the output existed: its parameter names the prefix
    template = {
        "Parameters": {
            "WebhookSecretParameterPrefix": {"Type": "String", "Default": "/imagegen/webhook-secrets"}
        },
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {"ClientUsagePlanId": {"Value": aws["plan"]}},
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName="older",
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": "WebhookSecretParameterPrefix", "ParameterValue": "/older/hooks"}],
    )
    assert clients.main(["--stack", "older", "--region", REGION, "add", "alice"]) == 0
    assert stored_secrets(aws, plan_key_names(aws)["imagegen-alice"], "/older/hooks")
    # --usage-plan-id reads no stack: the template's default prefix
    assert clients.main(["--region", REGION, "--usage-plan-id", aws["plan"], "add", "bob"]) == 0
    assert stored_secrets(aws, plan_key_names(aws)["imagegen-bob"], clients.DEFAULT_SECRET_PREFIX)
    # --secret-prefix wins over the stack's
    assert run(capsys, "--secret-prefix", "/mine/hooks/", "add", "carol")[0] == 0
    assert stored_secrets(aws, plan_key_names(aws)["imagegen-carol"], "/mine/hooks")
    assert stored_secrets(aws, plan_key_names(aws)["imagegen-carol"]) is None
    code, _out, err = run(capsys, "--secret-prefix", "no-slash", "add", "dave")
    assert code == 1
    assert "secret prefix" in err


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
    bob = plan_key_names(aws)["imagegen-bob"]
    # When
    code, out, err = run(capsys, "remove", "alice")
    # Then
    assert code == 0, err
    assert alice in out
    assert f"{PREFIX}/{alice} deleted" in out
    assert stored_secrets(aws, alice) is None
    assert stored_secrets(aws, bob)
    remaining = {key["id"] for key in apigateway.get_api_keys()["items"]}
    assert alice not in remaining
    assert other["id"] in remaining
    assert "imagegen-bob" in plan_key_names(aws)
    assert plan_key_names(aws, other_plan) == {"imagegen-alice": other["id"]}


def test_removing_a_client_that_had_no_secret_still_removes_it(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a client added before webhook secrets existed
    assert run(capsys, "add", "alice")[0] == 0
    alice = plan_key_names(aws)["imagegen-alice"]
    aws["ssm"].delete_parameter(Name=f"{PREFIX}/{alice}")
    # When
    code, out, err = run(capsys, "remove", "alice")
    # Then
    assert code == 0, err
    assert "no webhook signing secret" in out
    assert alice not in {key["id"] for key in aws["apigateway"].get_api_keys()["items"]}


def test_rotating_sends_both_signatures_until_finished(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given
    code, out, _err = run(capsys, "add", "alice")
    assert code == 0
    old = printed_secret(out)
    alice = plan_key_names(aws)["imagegen-alice"]
    # When a rotation starts
    code, out, err = run(capsys, "rotate-secret", "alice")
    # Then the parameter holds "<new> <old>": receivers holding either secret verify
    assert code == 0, err
    new = printed_secret(out)
    assert new != old
    assert out.count(new) == 1 and old not in out
    assert stored_secrets(aws, alice) == f"{new} {old}"
    assert verifies(old, f"{new} {old}")
    assert verifies(new, f"{new} {old}")
    assert "not printed again" in err
    assert "make rotate-webhook-secret NAME=alice FINISH=1" in err
    # When it is finished
    code, out, err = run(capsys, "rotate-secret", "alice", "--finish")
    # Then only the newest signs: the old secret no longer verifies
    assert code == 0, err
    assert stored_secrets(aws, alice) == new
    assert new not in out and old not in out
    assert verifies(new, new)
    assert not verifies(old, new)
    # Finishing again changes nothing.
    code, out, _err = run(capsys, "rotate-secret", "alice", "--finish")
    assert code == 0
    assert "no rotation to finish" in out
    assert stored_secrets(aws, alice) == new


def test_rotating_again_before_finishing_drops_the_oldest(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "add", "alice")[0] == 0
    alice = plan_key_names(aws)["imagegen-alice"]
    assert run(capsys, "rotate-secret", "alice")[0] == 0
    second, first = (stored_secrets(aws, alice) or "").split()
    code, out, _err = run(capsys, "rotate-secret", "alice")
    assert code == 0
    third = printed_secret(out)
    assert stored_secrets(aws, alice) == f"{third} {second}"
    assert "older secret of an unfinished rotation dropped" in out
    assert first not in out


def test_rotating_creates_the_first_secret_of_a_client_that_has_none(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # The stack's own ClientApiKey (named by CloudFormation, no secret of its own), by the name list shows
    code, out, err = run(capsys, "rotate-secret", "--finish", "imagegen-ClientA-1X2Y")
    assert code == 1
    assert "has no webhook signing secret" in err
    code, out, err = run(capsys, "rotate-secret", "imagegen-ClientA-1X2Y")
    assert code == 0, err
    assert "first webhook signing secret" in out
    assert stored_secrets(aws, aws["stack_key"]) == printed_secret(out)
    assert "FINISH=1" not in err  # nothing to finish: one secret


def test_rotating_refuses_an_unknown_client_or_a_parameter_it_cannot_read(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(capsys, "rotate-secret", "carol")
    assert code == 1
    assert "no client carol" in err
    assert run(capsys, "add", "alice")[0] == 0
    alice = plan_key_names(aws)["imagegen-alice"]
    aws["ssm"].put_parameter(
        Name=f"{PREFIX}/{alice}", Value="hunter2 whsec_x", Type="SecureString", Overwrite=True
    )
    code, out, err = run(capsys, "rotate-secret", "alice")
    assert code == 1
    assert "does not hold whsec_... secrets" in err
    assert "hunter2" not in err + out
    assert stored_secrets(aws, alice) == "hunter2 whsec_x"  # left as it was


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


def test_new_secrets_are_fresh_and_in_the_signing_modules_form() -> None:
    made = {clients.new_secret() for _ in range(20)}
    assert len(made) == 20
    for secret in made:
        assert parse_secrets(secret) == (secret,)
        Webhook(secret)  # the standardwebhooks package accepts it


def test_stack_and_region_default_to_samconfig(tmp_path: Path) -> None:
    config = tmp_path / "samconfig.toml"
    config.write_text(
        'version = 0.1\n[default.global.parameters]\nstack_name = "imagegen"\n'
        '[default.deploy.parameters]\nregion = "eu-central-1"\n'
    )
    assert clients.samconfig_defaults(config) == ("imagegen", "eu-central-1")
    assert clients.samconfig_defaults(tmp_path / "none.toml") == ("imagegen", None)
