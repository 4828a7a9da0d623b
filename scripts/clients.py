"""Client apps of a deployed stack: add one (its own API key on the stack's usage plan), remove one, list.

    python scripts/clients.py add NAME       # make add-client NAME=...
    python scripts/clients.py remove NAME    # make remove-client NAME=...
    python scripts/clients.py list           # make list-clients

A client is the API key `imagegen-<NAME>` attached to the stack's usage plan (the `ClientUsagePlanId`
output): each key gets the plan's throttle and daily quota for itself, and every task belongs to the
key that submitted it. Keys are looked up among the plan's keys only, so a key of the same name on
another stack (imagegen-dev, say) is never touched. The stack is samconfig.toml's (`--stack`, `--region`
to choose another); `--usage-plan-id` skips reading the stack's outputs.

Uses boto3 with your usual AWS credentials; the AWS CLI is not needed.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

ROOT = Path(__file__).resolve().parents[1]
KEY_PREFIX = "imagegen-"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PLAN_OUTPUT = "ClientUsagePlanId"


class ClientsError(Exception):
    """Something the operator has to fix; the message says what."""


@dataclass(frozen=True)
class Target:
    usage_plan_id: str
    stack_key_id: str | None = None  # the stack's own ClientApiKey: listed, never removed here
    api_url: str | None = None


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


def stack_target(cloudformation: Any, stack: str) -> Target:
    """The usage plan (and the stack's own key, its API URL) from the stack's outputs."""
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as error:
        raise ClientsError(f"stack {stack}: {error.response['Error'].get('Message', error)}") from None
    outputs = {item["OutputKey"]: item["OutputValue"] for item in stacks[0].get("Outputs", [])}
    if PLAN_OUTPUT not in outputs:
        raise ClientsError(
            f"stack {stack} has no {PLAN_OUTPUT} output: deploy this version of template.yaml first "
            "(or pass --usage-plan-id)"
        )
    return Target(outputs[PLAN_OUTPUT], outputs.get("ApiKeyId"), outputs.get("ApiUrl"))


def plan_keys(apigateway: Any, usage_plan_id: str, name: str | None = None) -> Iterator[dict[str, Any]]:
    """The plan's keys (id, name); with `name`, only keys of exactly that name (the query is a prefix)."""
    query = {"nameQuery": name} if name else {}
    for page in apigateway.get_paginator("get_usage_plan_keys").paginate(usagePlanId=usage_plan_id, **query):
        for item in page.get("items", []):
            if name is None or item.get("name") == name:
                yield item


def add(apigateway: Any, target: Target, client: str) -> dict[str, Any]:
    """Create the client's key and attach it to the plan; the created key, value included."""
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
    return key


def remove(apigateway: Any, target: Target, client: str) -> list[str]:
    """Delete the client's key(s) on this plan; their ids."""
    name = key_name(client)
    keys = [item["id"] for item in plan_keys(apigateway, target.usage_plan_id, name)]
    if not keys:
        raise ClientsError(f"no client {client} on usage plan {target.usage_plan_id} (make list-clients)")
    if target.stack_key_id in keys:
        raise ClientsError(f"{name} is the stack's own ClientApiKey: CloudFormation manages it")
    for key_id in keys:
        apigateway.delete_api_key(apiKey=key_id)  # also detaches it from every usage plan
    return keys


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
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "add", help="create the API key imagegen-NAME on the usage plan; prints its value"
    ).add_argument("name")
    commands.add_parser("remove", help="delete the client's API key").add_argument("name")
    commands.add_parser("list", help="the usage plan's keys")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    session = boto3.session.Session(region_name=args.region)
    apigateway = session.client("apigateway")
    try:
        if args.command in ("add", "remove"):
            key_name(args.name)  # a bad name is refused before any AWS call
        if args.usage_plan_id:
            target = Target(args.usage_plan_id)
        else:
            target = stack_target(session.client("cloudformation"), args.stack)
        if args.command == "add":
            key = add(apigateway, target, args.name)
            print(
                f"client {args.name}: API key {key['name']} (id {key['id']}) "
                f"on usage plan {target.usage_plan_id}"
            )
            if target.api_url:
                print(f"API: {target.api_url}")
            print(f"x-api-key: {key['value']}")
            print(
                "Give the client this value now: it is not printed again (reading it back needs "
                "apigateway:GET rights: aws apigateway get-api-key --include-value --api-key <id>).",
                file=sys.stderr,
            )
        elif args.command == "remove":
            removed = remove(apigateway, target, args.name)
            print(f"client {args.name}: API key {', '.join(removed)} deleted; its requests now get 403")
        else:
            print(f"{'client':<40} {'key id':<12} enabled")
            for label, key_id, enabled in clients(apigateway, target):
                print(f"{label:<40} {key_id:<12} {'yes' if enabled else 'no'}")
    except ClientsError as error:
        print(f"clients: {error}", file=sys.stderr)
        return 1
    except ClientError as error:
        print(f"clients: {error.response['Error'].get('Message', error)}", file=sys.stderr)
        return 1
    except BotoCoreError as error:  # no credentials, no region, no network
        print(f"clients: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
