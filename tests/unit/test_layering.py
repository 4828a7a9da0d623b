"""The import drawing, kept true: handlers -> wiring -> adapters (and the HTTP fetchers);
handlers -> logic -> models; adapters -> models; nothing upward, and logic imports no adapter."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

LAYER = ROOT / "layers" / "shared"
HANDLERS = sorted((ROOT / "functions").glob("*/*_handler.py"))

# What each kind of module may import from image_pipeline (besides its own kind).
ALLOWED = {
    "handlers": {"wiring", "logic", "models", "config"},
    "wiring": {"adapters", "io", "models", "config"},
    "logic": {"models"},
    "adapters": {"models", "config"},
    "io": {"models"},  # safe_fetch, webhooks, image_check: HTTP and bytes, no AWS
    "config": {"models"},
    "models": set(),
}


def kind(module: str) -> str:
    name = module.removeprefix("image_pipeline.")
    if name.startswith("adapters"):
        return "adapters"
    if name.startswith("logic"):
        return "logic"
    if name == "wiring":
        return "wiring"
    if name.startswith(("safe_fetch", "webhooks", "image_check")):
        return "io"
    if name.startswith(("settings", "observability", "sqs_batch")):
        return "config"
    return "models"


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("image_pipeline"):
            if node.module == "image_pipeline":
                found |= {f"image_pipeline.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("image_pipeline")}
    return found


def test_every_import_follows_the_drawing() -> None:
    wrong = []
    sources = [(path, "handlers") for path in HANDLERS]
    for path in (LAYER / "image_pipeline").rglob("*.py"):
        module = ".".join(path.relative_to(LAYER).with_suffix("").parts).removesuffix(".__init__")
        sources.append((path, kind(module)))
    for path, source_kind in sources:
        for target in imports(path):
            target_kind = kind(target)
            if target_kind != source_kind and target_kind not in ALLOWED[source_kind]:
                wrong.append(f"{path.relative_to(ROOT)} ({source_kind}) imports {target} ({target_kind})")
    assert not wrong, "\n".join(wrong)
