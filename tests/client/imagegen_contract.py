"""The API's published contract (openapi.json at the top of the repository, kept equal to what the API's
routes generate by tests/unit/test_openapi.py), for the imagegen tests: schemas, validators, and
deterministic instances of the response schemas.

The client package installs without the Lambda layer, so it keeps its own models; these helpers let the
tests hold those models, and the fake API, to the same document the API is generated into.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "openapi.json"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(OPENAPI_PATH.read_text())
    return loaded


def component(name: str) -> dict[str, Any]:
    found: dict[str, Any] = document()["components"]["schemas"][name]
    return found


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` (``#/components/schemas/X``) until a schema without one."""
    while "$ref" in schema:
        schema = component(schema["$ref"].rsplit("/", 1)[-1])
    return schema


@cache
def _validator(name: str) -> Draft202012Validator:
    root = {"$ref": f"#/components/schemas/{name}", "components": document()["components"]}
    return Draft202012Validator(root)


def validator_for(schema: dict[str, Any]) -> Draft202012Validator:
    """A JSON Schema 2020-12 validator (OpenAPI 3.1's dialect) whose refs resolve in the document."""
    if set(schema) == {"$ref"}:
        return _validator(schema["$ref"].rsplit("/", 1)[-1])
    return Draft202012Validator({**schema, "components": document()["components"]})


def problems(schema: dict[str, Any], instance: Any) -> list[str]:
    """Every way ``instance`` breaks ``schema``, as readable lines (empty: it conforms)."""
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in validator_for(schema).iter_errors(instance)
    ]


def field_problems(schema: dict[str, Any], instance: Any) -> list[dict[str, str]]:
    """``problems`` as the API's 422 lists them: each under the field at fault (``body`` for the whole)."""
    return [
        {"field": ".".join(map(str, error.absolute_path)) or "body", "message": error.message}
        for error in validator_for(schema).iter_errors(instance)
    ]


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) of every route in the document."""
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method.upper(), path, operation


def operation(method: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = document()["paths"][path][method.lower()]
    return found


def response_schema(method: str, path: str, status: int) -> dict[str, Any] | None:
    """The JSON body schema of one documented answer, None when it has no body (204)."""
    answer = operation(method, path)["responses"][str(status)]
    if status == 204:
        return None
    schema: dict[str, Any] = answer["content"]["application/json"]["schema"]
    return schema


def request_schema(method: str, path: str) -> dict[str, Any]:
    schema: dict[str, Any] = operation(method, path)["requestBody"]["content"]["application/json"]["schema"]
    return schema


def parameters(method: str, path: str, where: str) -> dict[str, dict[str, Any]]:
    """The operation's parameters in ``where`` (query, path, header) by name."""
    return {p["name"]: p for p in operation(method, path).get("parameters", []) if p["in"] == where}


def non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, {type: null}]`` -> X (what an optional field holds when set)."""
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    return resolve(branches[0]) if len(branches) == 1 else resolve(schema)


# ---------------------------------------------------------------------------------------------- instances


def instance(schema: dict[str, Any], *, full: bool, variant: int = 0) -> Any:
    """A deterministic instance of a response schema: every optional property too when ``full``, only
    the required ones otherwise; ``variant`` picks the branch of each ``anyOf`` and the enum value, so a
    few variants cover ``null`` and non-null, int and str codes. Integers count up in document order
    (image indexes come sorted), strings are lower case, numbers are in 0..1, as the API writes them.
    """
    return _Maker(full, variant).make(schema, "value")


class _Maker:
    def __init__(self, full: bool, variant: int) -> None:
        self.full = full
        self.variant = variant
        self.counter = itertools.count()

    def make(self, schema: dict[str, Any], name: str) -> Any:
        schema = resolve(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return schema["enum"][self.variant % len(schema["enum"])]
        for key in ("anyOf", "oneOf"):
            if key in schema:
                branches = schema[key]
                return self.make(branches[self.variant % len(branches)], name)
        kind = schema.get("type", "object" if "properties" in schema else None)
        match kind:
            case "object":
                required = set(schema.get("required", ()))
                return {
                    prop: self.make(sub, prop)
                    for prop, sub in schema.get("properties", {}).items()
                    if self.full or prop in required
                }
            case "array":
                count = max(schema.get("minItems", 0), 2 if self.full else 0)
                return [self.make(schema.get("items", {}), name) for _ in range(count)]
            case "string":
                text = f"{name.lower()}-{next(self.counter)}"
                minimum, maximum = schema.get("minLength", 0), schema.get("maxLength", len(text))
                return text.ljust(minimum, "x")[:maximum]
            case "integer":
                return next(self.counter)
            case "number":
                return 0.5
            case "boolean":
                return self.variant % 2 == 0
            case "null":
                return None
        raise AssertionError(f"no instance for the schema {schema}")
