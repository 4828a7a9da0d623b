"""A request the API's models refused, told in our words: which field, and what to send instead.

pydantic's errors name locations as tuples (``("body", "filesUrl", 1)``) and say things like "String
should match pattern '^https?://...'"; a client wants ``filesUrl[1]`` and what a valid value looks like.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

# A rule over several fields raises "maskUrl: a mask edits ...": the field at fault, then why.
MODEL_RULE = re.compile(r"(?P<field>[A-Za-z]+(?:\[[0-9]+\])?): (?P<message>.+)", re.DOTALL)
URL_FIELDS = ("filesUrl", "maskUrl", "inputImage", "webhookUrl")
NOT_JSON = "the body is not valid JSON (cut short, or a syntax error): send one JSON object"


def request_problems(errors: Iterable[Mapping[str, Any]]) -> tuple[int, dict[str, Any]]:
    """The status and ErrorBody for a request's validation errors: 400 for a body that is not JSON at
    all, else 422 listing each field at fault."""
    problems = []
    for problem in errors:
        if problem.get("type") == "json_invalid":
            return 400, {
                "message": f"malformed request: {NOT_JSON}",
                "errors": [{"field": "body", "message": NOT_JSON}],
            }
        location = field_name(problem.get("loc", ()))
        message = in_our_words(problem, location)
        named = MODEL_RULE.match(message) if not location else None
        if named:
            location, message = named["field"], named["message"]
        problems.append({"field": location or "body", "message": message})
    return 422, invalid_request_body(problems)


def invalid_request_body(problems: list[dict[str, str]]) -> dict[str, Any]:
    """The 422 ErrorBody naming each field at fault: a request's model's refusals, or the API's own."""
    fields = ", ".join(problem["field"] for problem in problems)
    return {"message": f"invalid request: check {fields}", "errors": problems}


def field_name(location: Iterable[Any]) -> str:
    """pydantic's location as the client wrote it: `filesUrl[1]`, `input.prompt` (never `body`)."""
    name = ""
    for part in location:
        if isinstance(part, int):
            name += f"[{part}]"
        elif part not in ("body", "query", "header", "path") and not str(part).startswith(
            ("function-", "str")
        ):
            name += f".{part}" if name else str(part)
    return name


def in_our_words(problem: Mapping[str, Any], field: str) -> str:
    """pydantic's message without library prefixes or regexes, saying what to send instead."""
    kind = str(problem.get("type", ""))
    message = str(problem.get("msg", "invalid")).removeprefix("Value error, ")  # our rules' ValueErrors
    base = field.split("[", 1)[0]
    if base in URL_FIELDS and kind.startswith("string_"):
        if base == "webhookUrl":
            return "must be an https URL of a public host, such as https://hooks.example.com/imagegen"
        return (
            "must be an http(s) URL of an image file (.png, .jpg, .jpeg or .webp), 8 to 2048 characters, "
            "or upload:<uploadId> or task:<taskId>/<index>"
        )
    if kind == "string_pattern_mismatch":
        return "must not be blank" if base == "prompt" else "is not in the expected form"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a field of this request"
    return message.replace("Input should be", "must be").replace("String should have", "must have")
