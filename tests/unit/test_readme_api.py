"""docs/api.md's "API" section against openapi.json: every route the contract declares has its
"### `METHOD /path`" heading, and that heading's status table lists exactly the statuses it declares.

The form parsed: within "## API", a heading "### `GET /tasks/{taskId}`" (a query string after the path
is ignored), then a table whose first column is headed "status" and whose rows start with the code in
backticks ("| `404` | ..." or "| `202 {...}` | ...")."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from tests.conftest import ROOT

HEADING = re.compile(r"^### `([A-Z]+) (/[^`?\s]*)[^`]*`\s*$")
STATUS_ROW = re.compile(r"^\|\s*`(\d{3})\b")
# Routes the README documents that are not operations of the document: the document itself (served
# without a key, left out of its own schema) and the callback API's one route (not the client API).
NOT_IN_THE_DOCUMENT = {("GET", "/openapi.json"), ("POST", "/callbacks/{taskId}")}

Route = tuple[str, str]


def api_section(readme: str) -> list[str]:
    lines = readme.splitlines()
    start = lines.index("## API")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start + 1 : end]


def documented(section: list[str]) -> dict[Route, set[str]]:
    """Each route heading of the section and the status codes of its status table(s)."""
    routes: dict[Route, set[str]] = {}
    route: Route | None = None
    in_status_table = False
    previous = ""
    for line in section:
        heading = HEADING.match(line)
        if heading:
            route = (heading.group(1), heading.group(2))
            routes[route] = set()
        elif line.startswith("### "):
            route = None
        if line.startswith("|"):
            if not previous.startswith("|"):  # a table's header row
                in_status_table = line.strip("| ").split("|")[0].strip() == "status"
            elif route and in_status_table and (row := STATUS_ROW.match(line)):
                routes[route].add(row.group(1))
        previous = line
    return routes


def declared(document: dict[str, Any]) -> dict[Route, set[str]]:
    return {
        (method.upper(), path): set(operation["responses"])
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }


def problems(readme: str, document: dict[str, Any]) -> list[str]:
    found = documented(api_section(readme))
    contract = declared(document)
    problems = []
    for route, statuses in sorted(contract.items()):
        name = f"{route[0]} {route[1]}"
        if route not in found:
            problems.append(f"README's API section has no heading ### `{name}`")
            continue
        if missing := statuses - found[route]:
            problems.append(f"{name}: README's status table omits {', '.join(sorted(missing))}")
        if extra := found[route] - statuses:
            problems.append(
                f"{name}: README lists {', '.join(sorted(extra))}, which openapi.json does not declare"
            )
    for route in sorted(set(found) - set(contract) - NOT_IN_THE_DOCUMENT):
        problems.append(f"README documents {route[0]} {route[1]}, which openapi.json does not have")
    return problems


def load() -> tuple[str, dict[str, Any]]:
    return (ROOT / "docs" / "api.md").read_text(), json.loads((ROOT / "openapi.json").read_text())


def test_readme_documents_every_route_and_status_of_openapi_json() -> None:
    readme, document = load()
    assert problems(readme, document) == []


def test_readme_documents_the_routes_outside_the_document_too() -> None:
    readme, _document = load()
    assert set(documented(api_section(readme))) >= NOT_IN_THE_DOCUMENT


SAMPLE_README = """# x

## API

### `GET /things/{id}`

| status | when |
|---|---|
| `200 {"id"}` | the thing |
| `404` | no such thing |

| parameter | meaning |
|---|---|
| `500` | not a status table: ignored |

### `POST /callbacks/{taskId}?token=…`

## Next
"""
SAMPLE_DOCUMENT: dict[str, Any] = {
    "paths": {"/things/{id}": {"get": {"responses": {"200": {}, "404": {}}}}},
}


def test_the_sample_passes() -> None:
    assert problems(SAMPLE_README, SAMPLE_DOCUMENT) == []


def test_a_missing_status_row_is_caught() -> None:
    readme = SAMPLE_README.replace("| `404` | no such thing |\n", "")
    assert problems(readme, SAMPLE_DOCUMENT) == ["GET /things/{id}: README's status table omits 404"]


def test_a_missing_route_is_caught() -> None:
    document = copy.deepcopy(SAMPLE_DOCUMENT)
    document["paths"]["/things"] = {"delete": {"responses": {"204": {}}}}
    assert problems(SAMPLE_README, document) == ["README's API section has no heading ### `DELETE /things`"]


def test_a_status_or_route_the_document_lacks_is_caught() -> None:
    document = copy.deepcopy(SAMPLE_DOCUMENT)
    del document["paths"]["/things/{id}"]["get"]["responses"]["404"]
    assert problems(SAMPLE_README, document) == [
        "GET /things/{id}: README lists 404, which openapi.json does not declare"
    ]
    assert problems(SAMPLE_README + "\n### `GET /gone`\n", SAMPLE_DOCUMENT) == []  # after "## Next"
    readme = SAMPLE_README.replace("## Next", "### `GET /gone`\n\n## Next")
    assert problems(readme, SAMPLE_DOCUMENT) == [
        "README documents GET /gone, which openapi.json does not have"
    ]
