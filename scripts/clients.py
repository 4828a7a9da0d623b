"""Client apps of a deployed stack: add one (its own API key on the stack's usage plan, and its webhook
signing secret), remove one, list, rotate a client's signing secret.

    python scripts/clients.py add NAME                     # make add-client NAME=...
    python scripts/clients.py remove NAME                  # make remove-client NAME=...
    python scripts/clients.py list                         # make list-clients
    python scripts/clients.py rotate-secret NAME [--finish]  # make rotate-webhook-secret NAME=... [FINISH=1]

A client is the API key `imagegen-<NAME>` attached to the stack's usage plan (the `ClientUsagePlanId`
output): each key gets the plan's throttle and daily quota for itself, and every task belongs to the
key that submitted it. Keys are looked up among the plan's keys only, so a key of the same name on
another stack (imagegen-dev, say) is never touched. The stack is samconfig.toml's (`--stack`, `--region`
to choose another); `--usage-plan-id` skips reading the stack's outputs.

Each client's webhook signing secrets (Standard Webhooks `whsec_...` values, newest first, two while a
rotation is under way) are the SSM SecureString `<prefix>/<API key id>` the notifier reads; the prefix is
the stack's `WebhookSecretParameterPrefix` (output, else parameter), `--secret-prefix` to name another.

Uses boto3 with your usual AWS credentials; the AWS CLI is not needed.
"""

from __future__ import annotations

import argparse
import base64
import re
import secrets
import sys
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

ROOT = Path(__file__).resolve().parents[1]
KEY_PREFIX = "imagegen-"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PLAN_OUTPUT = "ClientUsagePlanId"
# The template's output and parameter of that name, and the parameter's default (names, not secrets).
SECRET_PREFIX_OUTPUT = "WebhookSecretParameterPrefix"  # noqa: S105
DEFAULT_SECRET_PREFIX = "/imagegen/webhook-secrets"  # noqa: S105
SECRET_PREFIX = re.compile(r"/[A-Za-z0-9_.\-/]+[^/]")  # the parameter's AllowedPattern
WHSEC = "whsec_"
SECRET_BYTES = 32  # as image_pipeline.webhooks.signing.new_secret
CACHE_MINUTES = 5  # the notifier re-reads a client's secrets within 5 minutes (SECRET_CACHE_SECONDS)


class ClientsError(Exception):
    """Something the operator has to fix; the message says what."""


@dataclass(frozen=True)
class Target:
    usage_plan_id: str
    stack_key_id: str | None = None  # the stack's own ClientApiKey: listed, never removed here
    api_url: str | None = None
    secret_prefix: str = DEFAULT_SECRET_PREFIX

    def secret_name(self, key_id: str) -> str:
        """The SSM parameter of that client's webhook signing secrets."""
        return f"{self.secret_prefix}/{key_id}"


@dataclass(frozen=True)
class Rotation:
    parameter: str
    new: str | None  # the secret to hand the client; None when a rotation was finished
    kept: tuple[str, ...]  # every secret the parameter now holds, newest first
    dropped: int  # how many older secrets were dropped


def samconfig_defaults(path: Path = ROOT / "samconfig.toml") -> tuple[str, str | None]:
    """The stack name and region `sam deploy` uses (its deploy parameters, else the global ones)."""
    try:
        config = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        config = {}
    sections = config.get("default", {})
    deploy = sections.get("deploy", {}).get("parameters", {})
    common = sections.get("global", {}).get("parameters", {})
    stack = deploy.get("stack_name") or common.get("stack_name") or "imagegen"
    region = deploy.get("region") or common.get("region") or None
    return str(stack), region


def key_name(client: str) -> str:
    if not NAME.fullmatch(client):
        raise ClientsError(
            f"client name {client!r}: 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return KEY_PREFIX + client


def secret_prefix(prefix: str) -> str:
    text = prefix.rstrip("/")
    if not SECRET_PREFIX.fullmatch(text):
        raise ClientsError(
            f"secret prefix {prefix!r}: an SSM path such as {DEFAULT_SECRET_PREFIX} "
            "(letters, digits, '_', '.', '-', '/', starting with '/')"
        )
    return text


def new_secret() -> str:
    """A fresh Standard Webhooks signing secret, as image_pipeline.webhooks.signing.new_secret makes it."""
    return WHSEC + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def stack_target(cloudformation: Any, stack: str) -> Target:
    """The usage plan (and the stack's own key, its API URL) from the stack's outputs."""
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as error:
        raise ClientsError(f"stack {stack}: {error.response['Error'].get('Message', error)}") from None
    outputs = {item["OutputKey"]: item["OutputValue"] for item in stacks[0].get("Outputs", [])}
    parameters = {
        item["ParameterKey"]: item.get("ParameterValue") for item in stacks[0].get("Parameters", [])
    }
    if PLAN_OUTPUT not in outputs:
        raise ClientsError(
            f"stack {stack} has no {PLAN_OUTPUT} output: deploy this version of template.yaml first "
            "(or pass --usage-plan-id)"
        )
    prefix = (
        outputs.get(SECRET_PREFIX_OUTPUT) or parameters.get(SECRET_PREFIX_OUTPUT) or DEFAULT_SECRET_PREFIX
    )
    return Target(outputs[PLAN_OUTPUT], outputs.get("ApiKeyId"), outputs.get("ApiUrl"), secret_prefix(prefix))


def plan_keys(apigateway: Any, usage_plan_id: str, name: str | None = None) -> Iterator[dict[str, Any]]:
    """The plan's keys (id, name); with `name`, only keys of exactly that name (the query is a prefix)."""
    query = {"nameQuery": name} if name else {}
    for page in apigateway.get_paginator("get_usage_plan_keys").paginate(usagePlanId=usage_plan_id, **query):
        for item in page.get("items", []):
            if name is None or item.get("name") == name:
                yield item


def add(apigateway: Any, ssm: Any, target: Target, client: str) -> tuple[dict[str, Any], str]:
    """Create the client's key, attach it to the plan and create its webhook signing secret.

    The created key (value included) and the secret; on any failure nothing is left behind."""
    name = key_name(client)
    apigateway.get_usage_plan(usagePlanId=target.usage_plan_id)  # NotFound before anything is created
    if any(plan_keys(apigateway, target.usage_plan_id, name)):
        raise ClientsError(f"client {client} already has a key ({name}); remove it first to issue a new one")
    key: dict[str, Any] = apigateway.create_api_key(
        name=name, description=f"image-pipeline client app {client}", enabled=True
    )
    try:
        apigateway.create_usage_plan_key(usagePlanId=target.usage_plan_id, keyId=key["id"], keyType="API_KEY")
    except (ClientError, BotoCoreError):
        apigateway.delete_api_key(apiKey=key["id"])  # no key left behind that no plan admits
        raise
    parameter = target.secret_name(key["id"])
    secret = new_secret()
    try:
        put_secrets(ssm, parameter, (secret,), client, overwrite=False)
    except (ClientError, BotoCoreError) as error:
        apigateway.delete_api_key(apiKey=key["id"])  # no client whose webhooks nobody can sign
        raise ClientsError(
            f"could not create the webhook signing secret {parameter}: {_message(error)}; "
            f"the API key {key['id']} was deleted again, nothing was created"
        ) from None
    return key, secret


def remove(apigateway: Any, ssm: Any, target: Target, client: str) -> list[tuple[str, bool]]:
    """Delete the client's key(s) on this plan and their signing secrets; (key id, a secret was deleted).

    The secret goes first: should deleting the key then fail, running remove again finishes the job."""
    name = key_name(client)
    keys = [item["id"] for item in plan_keys(apigateway, target.usage_plan_id, name)]
    if not keys:
        raise ClientsError(f"no client {client} on usage plan {target.usage_plan_id} (make list-clients)")
    if target.stack_key_id in keys:
        raise ClientsError(f"{name} is the stack's own ClientApiKey: CloudFormation manages it")
    removed = []
    for key_id in keys:
        try:
            ssm.delete_parameter(Name=target.secret_name(key_id))
            had_secret = True
        except ClientError as error:
            if error.response["Error"].get("Code") != "ParameterNotFound":
                raise
            had_secret = False  # a client added before webhook secrets existed
        apigateway.delete_api_key(apiKey=key_id)  # also detaches it from every usage plan
        removed.append((key_id, had_secret))
    return removed


def client_key(apigateway: Any, target: Target, client: str) -> str:
    """The id of the client's one key on the plan: `imagegen-<NAME>`, else the key named exactly NAME
    (how `list` shows the stack's own ClientApiKey, whose name CloudFormation chose)."""
    for name in (key_name(client), client):
        keys = [item["id"] for item in plan_keys(apigateway, target.usage_plan_id, name)]
        if len(keys) > 1:
            raise ClientsError(f"{len(keys)} keys named {name} on usage plan {target.usage_plan_id}")
        if keys:
            return keys[0]
    raise ClientsError(f"no client {client} on usage plan {target.usage_plan_id} (make list-clients)")


def read_secrets(ssm: Any, parameter: str) -> tuple[str, ...]:
    """The secrets the parameter holds, newest first; () when there is no parameter."""
    try:
        value = ssm.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]
    except ClientError as error:
        if error.response["Error"].get("Code") == "ParameterNotFound":
            return ()
        raise
    found: list[str] = []
    for item in re.split(r"[\s,]+", value):
        if item and item not in found:
            found.append(item)
    if not found or not all(item.startswith(WHSEC) for item in found):
        # never echo it: it is a secret, or something pasted there by mistake
        raise ClientsError(
            f"{parameter} does not hold {WHSEC}... secrets separated by spaces: fix it, or delete it "
            "and run rotate-secret again to start afresh"
        )
    return tuple(found)


def put_secrets(ssm: Any, parameter: str, values: Sequence[str], client: str, *, overwrite: bool) -> None:
    ssm.put_parameter(
        Name=parameter,
        Value=" ".join(values),
        Type="SecureString",
        Overwrite=overwrite,
        Description=f"image-pipeline webhook signing secrets of client {client}, newest first",
    )


def rotate_secret(apigateway: Any, ssm: Any, target: Target, client: str, *, finish: bool) -> Rotation:
    """Start a rotation (a new secret beside the newest one, both signatures sent), or finish one (keep only
    the newest). Starting one for a client that has no secret yet creates its first."""
    parameter = target.secret_name(client_key(apigateway, target, client))
    current = read_secrets(ssm, parameter)
    if finish:
        if not current:
            raise ClientsError(
                f"client {client} has no webhook signing secret ({parameter}): rotate-secret without "
                "--finish creates one"
            )
        if len(current) > 1:
            put_secrets(ssm, parameter, current[:1], client, overwrite=True)
        return Rotation(parameter, None, current[:1], len(current) - 1)
    new = new_secret()
    kept = (new, *current[:1])
    put_secrets(ssm, parameter, kept, client, overwrite=bool(current))
    return Rotation(parameter, new, kept, max(0, len(current) - 1))


def clients(apigateway: Any, target: Target) -> list[tuple[str, str, bool]]:
    """(client name, key id, enabled) of every key on the plan, by name."""
    rows = []
    for item in plan_keys(apigateway, target.usage_plan_id):
        details = apigateway.get_api_key(apiKey=item["id"], includeValue=False)
        name = item.get("name") or ""
        if item["id"] == target.stack_key_id:
            label = f"{name} (the stack's ClientApiKey)"
        else:
            label = name.removeprefix(KEY_PREFIX) if name.startswith(KEY_PREFIX) else name
        rows.append((label, item["id"], bool(details.get("enabled"))))
    return sorted(rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    stack, region = samconfig_defaults()
    parser = argparse.ArgumentParser(
        prog="clients", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--stack", default=stack, help=f"the deployed stack (default: {stack}, samconfig.toml)"
    )
    parser.add_argument(
        "--region", default=region, help="its region (default: samconfig.toml, else your AWS config)"
    )
    parser.add_argument(
        "--usage-plan-id", help=f"the usage plan itself, instead of the stack's {PLAN_OUTPUT} output"
    )
    parser.add_argument(
        "--secret-prefix",
        help="SSM path of the clients' webhook signing secrets "
        f"(default: the stack's {SECRET_PREFIX_OUTPUT}, else {DEFAULT_SECRET_PREFIX})",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "add",
        help="create the API key imagegen-NAME on the usage plan and its webhook signing secret; prints both",
    ).add_argument("name")
    commands.add_parser(
        "remove", help="delete the client's API key and its webhook signing secret"
    ).add_argument("name")
    commands.add_parser("list", help="the usage plan's keys")
    rotate = commands.add_parser(
        "rotate-secret",
        help="a new webhook signing secret beside the current one (both signatures are sent); prints it",
    )
    rotate.add_argument("name", help="the client, as list shows it")
    rotate.add_argument(
        "--finish", action="store_true", help="keep only the newest secret (once the client verifies with it)"
    )
    return parser.parse_args(argv)


def report_rotation(client: str, rotation: Rotation) -> None:
    later = f"within {CACHE_MINUTES} minutes (the notifier caches secrets)"
    if rotation.new is None:
        if rotation.dropped:
            print(
                f"client {client}: rotation finished, {rotation.parameter} holds the newest secret only; "
                f"{later} deliveries carry its signature alone"
            )
        else:
            print(f"client {client}: {rotation.parameter} holds one secret already: no rotation to finish")
        return
    if len(rotation.kept) == 1:
        print(f"client {client}: first webhook signing secret created in {rotation.parameter}")
    else:
        print(
            f"client {client}: webhook signing secret rotated in {rotation.parameter}: {later} every "
            "delivery carries two signatures, the new secret's and the previous one's"
            + (
                f" ({rotation.dropped} older secret of an unfinished rotation dropped)"
                if rotation.dropped
                else ""
            )
        )
    print(f"webhook secret: {rotation.new}")
    print("Give the client this secret now: it is not printed again.", file=sys.stderr)
    if len(rotation.kept) > 1:
        print(
            f"Once the client verifies with it, finish: make rotate-webhook-secret NAME={client} FINISH=1 "
            "(deliveries then carry the new signature only).",
            file=sys.stderr,
        )


def _message(error: ClientError | BotoCoreError) -> str:
    if isinstance(error, ClientError):
        return str(error.response["Error"].get("Message", error))
    return str(error)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    session = boto3.session.Session(region_name=args.region)
    apigateway = session.client("apigateway")
    ssm = session.client("ssm")
    try:
        if args.command in ("add", "remove", "rotate-secret"):
            key_name(args.name)  # a bad name is refused before any AWS call
        prefix = secret_prefix(args.secret_prefix) if args.secret_prefix else None
        if args.usage_plan_id:
            target = Target(args.usage_plan_id)
        else:
            target = stack_target(session.client("cloudformation"), args.stack)
        if prefix:
            target = replace(target, secret_prefix=prefix)
        if args.command == "add":
            key, secret = add(apigateway, ssm, target, args.name)
            parameter = target.secret_name(key["id"])
            print(
                f"client {args.name}: API key {key['name']} (id {key['id']}) "
                f"on usage plan {target.usage_plan_id}; webhook signing secret in {parameter}"
            )
            if target.api_url:
                print(f"API: {target.api_url}")
            print(f"x-api-key: {key['value']}")
            print(f"webhook secret: {secret}")
            print(
                "Give the client both values now: they are not printed again (reading them back needs "
                "apigateway:GET rights: aws apigateway get-api-key --include-value --api-key <id>; and "
                f"ssm:GetParameter: aws ssm get-parameter --with-decryption --name {parameter}).",
                file=sys.stderr,
            )
        elif args.command == "remove":
            for key_id, had_secret in remove(apigateway, ssm, target, args.name):
                secret_note = (
                    f"webhook signing secret {target.secret_name(key_id)} deleted"
                    if had_secret
                    else "it had no webhook signing secret"
                )
                print(
                    f"client {args.name}: API key {key_id} deleted, its requests now get 403; {secret_note}"
                )
        elif args.command == "rotate-secret":
            rotation = rotate_secret(apigateway, ssm, target, args.name, finish=args.finish)
            report_rotation(args.name, rotation)
        else:
            print(f"{'client':<40} {'key id':<12} enabled")
            for label, key_id, enabled in clients(apigateway, target):
                print(f"{label:<40} {key_id:<12} {'yes' if enabled else 'no'}")
    except ClientsError as error:
        print(f"clients: {error}", file=sys.stderr)
        return 1
    except ClientError as error:
        print(f"clients: {_message(error)}", file=sys.stderr)
        return 1
    except BotoCoreError as error:  # no credentials, no region, no network
        print(f"clients: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
