"""The published contract: openapi.json is what the API's routes generate, and GET /openapi.json serves it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, load_event


def test_the_committed_openapi_json_is_what_the_routes_generate() -> None:
    from api_handler import app

    committed = json.loads((ROOT / "openapi.json").read_text())
    assert committed == json.loads(app.contract_json()), (
        "openapi.json is stale: run `make openapi` and commit it"
    )


def test_every_route_documents_its_answers_in_the_projects_error_shape() -> None:
    document = json.loads(Path(ROOT / "openapi.json").read_text())
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation.get("security") == [{"apiKey": []}], f"{method} {path}"
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, f"{method} {path} {status}"
    assert "202" in document["paths"]["/tasks"]["post"]["responses"]
    assert "204" in document["paths"]["/tasks/{taskId}"]["delete"]["responses"]


def test_get_openapi_json_serves_it_without_a_key(aws_stack: Any, lambda_context: Any) -> None:
    from api_handler import lambda_handler

    event = load_event("api_get_task")
    event.update(path="/openapi.json", resource="/openapi.json", pathParameters=None)
    response = lambda_handler(event, lambda_context)
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == json.loads((ROOT / "openapi.json").read_text())


def prompt_pattern() -> str:
    document = json.loads((ROOT / "openapi.json").read_text())
    found = [value for value in _patterns(document, "prompt")]
    assert found and len(set(found)) == 1, found
    return found[0]


def _patterns(node: Any, field: str) -> list[str]:
    """Every pattern given to `field` anywhere in the schema (its own, or one branch of an anyOf)."""
    if isinstance(node, dict):
        own = node.get("properties", {}).get(field, {})
        branches = [own, *own.get("anyOf", [])] if isinstance(own, dict) else []
        here = [branch["pattern"] for branch in branches if "pattern" in branch]
        return here + [p for value in node.values() for p in _patterns(value, field)]
    if isinstance(node, list):
        return [p for value in node for p in _patterns(value, field)]
    return []


def test_the_prompt_pattern_means_the_same_in_every_regex_engine() -> None:
    """\\s differs by engine: Python counts U+001C-U+001F and U+0085 as space, ECMAScript (JSON Schema's
    dialect, which schemathesis generates from) does not, and counts U+FEFF. Found by schemathesis."""
    import re

    pattern = prompt_pattern()
    assert not re.search(r"\\[sSwWdDbB]", pattern), pattern


@pytest.mark.parametrize("text", ["\x1c", "\x1f", "\x85", "\ufeff", "\u3000", " \t\n", "a", " \x1ca"])
def test_the_api_takes_a_prompt_as_blank_exactly_when_the_contract_does(text: str) -> None:
    import re

    from image_pipeline.client_requests import TaskRequest
    from pydantic import ValidationError

    published = bool(re.search(prompt_pattern(), text))
    try:
        TaskRequest.model_validate({"prompt": text, "size": "1:1"})
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == published


def test_the_contract_is_one_a_generated_client_can_trust() -> None:
    """Named operations, tagged; a 204 without a body; no 422 where nothing is validated; no schema
    no operation uses; an example beside every body."""
    document = json.loads((ROOT / "openapi.json").read_text())
    operations = {
        (method, path): operation
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }
    assert {key: op["operationId"] for key, op in operations.items()} == {
        ("post", "/tasks"): "createTask",
        ("get", "/tasks"): "listTasks",
        ("get", "/tasks/{taskId}"): "getTask",
        ("delete", "/tasks/{taskId}"): "deleteTask",
        ("get", "/models"): "listModels",
        ("post", "/uploads"): "createUpload",
    }
    assert all(op.get("tags") for op in operations.values())
    assert "content" not in operations[("delete", "/tasks/{taskId}")]["responses"]["204"]
    for key in (("get", "/tasks/{taskId}"), ("delete", "/tasks/{taskId}"), ("get", "/models")):
        assert "422" not in operations[key]["responses"], key
    text = json.dumps(document["paths"]) + json.dumps(document["components"])
    for name in document["components"]["schemas"]:
        assert text.count(f'"#/components/schemas/{name}"') >= 1, f"{name} is used by no operation"
    assert not {"HTTPValidationError", "ValidationError"} & set(document["components"]["schemas"])
    for key, op in operations.items():
        bodies = [op.get("requestBody", {}), *op["responses"].values()]
        for body in bodies:
            for media in body.get("content", {}).values():
                assert "example" in media, f"{key}: a body without an example"
    for family in ("4o Image", "Flux Kontext", "Nano Banana", "Seedream", "Imagen", "Ideogram"):
        assert family in document["info"]["description"]


def test_the_docs_page_shows_the_published_contract(aws_stack: Any, lambda_context: Any) -> None:
    # GET /docs?format=json is the document Swagger UI renders: the one clients are told to trust,
    # not Powertools' raw one (a DELETE with a body to parse, FastAPI's 422 shape, unused schemas).
    from api_handler import lambda_handler

    event = load_event("api_get_task")
    event.update(
        path="/docs", resource="/docs", pathParameters=None, queryStringParameters={"format": "json"}
    )
    response = lambda_handler(event, lambda_context)
    assert response["statusCode"] == 200, response
    shown = json.loads(response["body"])
    committed = json.loads((ROOT / "openapi.json").read_text())
    assert shown["paths"] == committed["paths"]
    assert shown["components"] == committed["components"]
    assert shown["info"] == committed["info"]
