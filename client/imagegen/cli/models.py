"""imagegen models: the catalogue of GET /models, or one model's input fields."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from imagegen.cli.context import Runtime, open_client
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
    schema = entry.get("input") or {}
    required = set(schema.get("required") or [])
    where = "inside --input" if entry.get("request") == "input" else "as options"
    print(f"{entry['model']} ({entry.get('title', entry.get('family', ''))}): its fields go {where}")
    rows: list[tuple[str, ...]] = [("FIELD", "TYPE", "REQUIRED", "ALLOWED", "DEFAULT")]
    for name, field in (schema.get("properties") or {}).items():
        rows.append(
            (
                name,
                type_text(field),
                "yes" if name in required else "",
                allowed_text(field),
                "" if field.get("default") is None else str(field["default"]),
            )
        )
    print_table(rows)


def type_text(field: dict[str, Any]) -> str:
    if "type" in field:
        kind = field["type"]
        return "/".join(kind) if isinstance(kind, list) else str(kind)
    kinds = [str(option.get("type")) for option in field.get("anyOf", []) if option.get("type") != "null"]
    return "/".join(kinds) or "any"


def allowed_text(field: dict[str, Any]) -> str:
    for option in [field, *field.get("anyOf", [])]:
        if "enum" in option:
            return ", ".join(map(str, option["enum"]))
    limits = [
        f"{label} {field[key]}"
        for key, label in (
            ("minLength", "min length"),
            ("maxLength", "max length"),
            ("minimum", "min"),
            ("maximum", "max"),
            ("maxItems", "max items"),
        )
        if key in field
    ]
    return ", ".join(limits)


def print_table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
