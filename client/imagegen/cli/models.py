"""imagegen models: the catalogue of GET /models, or one model's input fields."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from imagegen.cli.context import Runtime, open_client
from imagegen.cli.generate import FLAGS
from imagegen.cli.output import ExitCode, UsageError, err, print_json


def cmd_models(args: argparse.Namespace, runtime: Runtime) -> int:
    with open_client(args, runtime, err) as client:
        models = client.list_models()
    if args.model:
        chosen = next((entry for entry in models if entry["model"] == args.model), None)
        if chosen is None:
            raise UsageError(f"{args.model!r} is not a model of this API; `imagegen models` lists them")
        if args.json:
            print_json(chosen)
        else:
            print_fields(chosen)
        return ExitCode.OK
    if args.json:
        print_json({"models": models})
        return ExitCode.OK
    rows: list[tuple[str, ...]] = [("MODEL", "FAMILY", "IMAGES", "FORMATS", "IMAGE FIELDS")]
    rows += [
        (
            entry["model"],
            str(entry.get("family", "")),
            images_text(entry.get("images") or {}),
            ", ".join(entry.get("outputFormats") or []),
            ", ".join(entry.get("imageUrlFields") or []) or "-",
        )
        for entry in models
    ]
    print_table(rows)
    return ExitCode.OK


def images_text(images: dict[str, Any]) -> str:
    if "fixed" in images:
        return str(images["fixed"])
    return f"1-{images.get('max', '?')} ({images.get('field', '?')})"


def print_fields(entry: dict[str, Any]) -> None:
    """One row per input field: its name, JSON type, whether it is required, its values or limits, its
    default and its description (for the 4o and Flux Kontext fields, the option that sets it)."""
    schema = entry.get("input") or {}
    required = set(schema.get("required") or [])
    market = entry.get("request") == "input"
    where = "inside --input KEY=VALUE" if market else "as options"
    print(f"{entry['model']} ({entry.get('title', entry.get('family', ''))}): its fields go {where}")
    rows: list[tuple[str, ...]] = [("FIELD", "TYPE", "REQUIRED", "ALLOWED", "DEFAULT", "DESCRIPTION")]
    for name, field in (schema.get("properties") or {}).items():
        description = " ".join(str(field.get("description", "")).split())
        if not market and name in FLAGS:
            description = f"{FLAGS[name]}; {description}" if description else FLAGS[name]
        rows.append(
            (
                name,
                type_text(field),
                "yes" if name in required else "",
                allowed_text(field),
                "" if field.get("default") is None else _value_text(field["default"]),
                description,
            )
        )
    print_table(rows)


def type_text(field: dict[str, Any]) -> str:
    """The field's JSON type(s): ``string``, ``integer/string``, ``array of string``."""
    kinds = []
    for option in _options(field):
        kind = option.get("type")
        for name in kind if isinstance(kind, list) else [kind] if kind else []:
            if name == "array" and isinstance(option.get("items"), dict):
                name = f"array of {type_text(option['items'])}"
            if name != "null" and name not in kinds:
                kinds.append(name)
    return "/".join(kinds) or "any"


def allowed_text(field: dict[str, Any]) -> str:
    """Its values (enum), else its limits: lengths, bounds, item counts."""
    for option in _options(field):
        if "enum" in option:
            return ", ".join(_value_text(value) for value in option["enum"])
    limits = [
        f"{label} {option[key]}"
        for option in _options(field)
        for key, label in (
            ("minLength", "min length"),
            ("maxLength", "max length"),
            ("minimum", "min"),
            ("maximum", "max"),
            ("minItems", "min items"),
            ("maxItems", "max items"),
        )
        if key in option
    ]
    return ", ".join(limits)


def _options(field: dict[str, Any]) -> list[dict[str, Any]]:
    """The field's schema and each of its ``anyOf`` options (``X | None`` fields are an anyOf)."""
    return [field, *(option for option in field.get("anyOf", []) if isinstance(option, dict))]


def _value_text(value: Any) -> str:
    """A value as the command line writes it: text as is, anything else as JSON (``false``, ``4``)."""
    return value if isinstance(value, str) else json.dumps(value)


def print_table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
