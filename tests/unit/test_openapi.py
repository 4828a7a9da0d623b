"""The published contract: openapi.json is what the API's routes generate, and GET /openapi.json serves it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, load_event


def test_the_committed_openapi_json_is_what_the_routes_generate() -> None:
    from api_handler import openapi_json

    committed = json.loads((ROOT / "openapi.json").read_text())
    assert committed == json.loads(openapi_json()), "openapi.json is stale: run `make openapi` and commit it"


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
