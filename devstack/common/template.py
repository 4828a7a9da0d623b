"""Reads template.yaml so the local stack and the tests build exactly what the template declares."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that keeps CloudFormation short-form tags (!Ref, !GetAtt, !Sub ...) as plain dicts."""


def _intrinsic(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


@cache
def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open() as handle:
        document: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return document


def resources_of_type(
    resource_type: str, template: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    template = template or load_template()
    return {
        name: resource.get("Properties", {})
        for name, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


@dataclass(frozen=True)
class Route:
    function: str  # logical id of the function, e.g. "ApiFunction"
    method: str  # upper case
    path: str  # API Gateway resource path, e.g. "/tasks/{taskId}"
    api_key_required: bool
    handler: str  # "module.function"
    code_uri: str


def api_routes(template: dict[str, Any] | None = None) -> list[Route]:
    """Every Api event of every function, with whether the route needs an API key."""
    template = template or load_template()
    apis = resources_of_type("AWS::Serverless::Api", template)
    routes = []
    for name, function in resources_of_type("AWS::Serverless::Function", template).items():
        for event in function.get("Events", {}).values():
            if event["Type"] != "Api":
                continue
            properties = event["Properties"]
            api_name = properties.get("RestApiId", {}).get("Ref")
            default_required = bool(apis.get(api_name, {}).get("Auth", {}).get("ApiKeyRequired", False))
            routes.append(
                Route(
                    function=name,
                    method=properties["Method"].upper(),
                    path=properties["Path"],
                    api_key_required=bool(properties.get("Auth", {}).get("ApiKeyRequired", default_required)),
                    handler=function["Handler"],
                    code_uri=function["CodeUri"],
                )
            )
    return routes


def function_properties(logical_id: str, template: dict[str, Any] | None = None) -> dict[str, Any]:
    return resources_of_type("AWS::Serverless::Function", template)[logical_id]
