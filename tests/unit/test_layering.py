"""The import drawing, held by import-linter: the contracts are `[tool.importlinter]` in pyproject.toml
(handlers -> wiring -> adapters and the HTTP fetchers; handlers -> logic -> models; nothing upward; logic
and the I/O side never meet; only adapters and wiring see the AWS SDK; the product never imports the
local stack or the tests). `lint-imports` is run here, so `make test` and `make test-unit` hold them;
and it is run on a copy of the code with a violation written in, to show each kind of contract bites."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the project's contracts, on the code under `root` (the layer's package on the
    path as the Lambda has it; functions/ and devstack/ from `root` itself, lint-imports' working dir)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(root / "layers" / "shared"),
        "COLUMNS": "250",  # one line per contract in the report, whatever the terminal
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_import_contract_is_kept() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, (
        f"lint-imports found imports against the drawing:\n{done.stdout}{done.stderr}"
    )
    assert " 0 broken" in done.stdout


@pytest.fixture
def copy_of_the_code(tmp_path: Path) -> Path:
    """The layer's package, the handlers, the local stack and the contracts, as they are, in tmp_path."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("layers/shared/image_pipeline", "functions", "devstack"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


# (file under the copy, the line written into it, the contract that must break, the import it names)
VIOLATIONS = {
    "logic-imports-boto3": (
        "layers/shared/image_pipeline/logic/status.py",
        "import boto3",
        "Logic imports no adapter, no wiring, no I/O, no configuration, no AWS or HTTP library BROKEN",
        "image_pipeline.logic.status -> boto3",
    ),
    "logic-imports-an-adapter": (
        "layers/shared/image_pipeline/logic/submission.py",
        "from image_pipeline.adapters.tasks_table import TasksTable",
        "Logic imports no adapter, no wiring, no I/O, no configuration, no AWS or HTTP library BROKEN",
        "image_pipeline.logic.submission -> image_pipeline.adapters.tasks_table",
    ),
    "handler-imports-botocore": (
        "functions/api/api_handler.py",
        "from botocore.exceptions import ClientError",
        "Handlers import no AWS SDK, HTTP library, adapter or fetcher themselves: only through wiring BROKEN",
        "functions.api.api_handler -> botocore",
    ),
    "adapter-imports-wiring": (
        "layers/shared/image_pipeline/adapters/image_store.py",
        "from image_pipeline import wiring",
        "image_pipeline, top to bottom: wiring; adapters, HTTP fetchers, logic; configuration; models BROKEN",
        "image_pipeline.adapters.image_store -> image_pipeline.wiring",
    ),
    "models-import-settings": (
        "layers/shared/image_pipeline/task_records.py",
        "from image_pipeline.settings import api_settings",
        "image_pipeline, top to bottom: wiring; adapters, HTTP fetchers, logic; configuration; models BROKEN",
        "image_pipeline.task_records -> image_pipeline.settings",
    ),
    "wiring-imports-logic": (
        "layers/shared/image_pipeline/wiring.py",
        "from image_pipeline.logic import records",
        "Wiring builds adapters and imports no logic BROKEN",
        "image_pipeline.wiring -> image_pipeline.logic.records",
    ),
    "product-imports-the-tests": (
        "functions/callback/callback_handler.py",
        "from tests.conftest import ROOT",
        "The product (image_pipeline, functions) never imports the local stack or the tests BROKEN",
        "functions.callback.callback_handler -> tests",
    ),
    "layer-imports-devstack": (
        "layers/shared/image_pipeline/settings.py",
        "import devstack.common.layer",
        "The product (image_pipeline, functions) never imports the local stack or the tests BROKEN",
        "image_pipeline.settings -> devstack.common.layer",
    ),
}


@pytest.mark.parametrize("violation", sorted(VIOLATIONS))
def test_lint_imports_fails_on_a_violation_written_into_a_copy(
    copy_of_the_code: Path, violation: str
) -> None:
    # Given the code as it is (every contract kept) with one import against the drawing appended
    file, line, contract, named = VIOLATIONS[violation]
    target = copy_of_the_code / file
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    # When lint-imports checks the copy with the project's contracts
    done = lint_imports(copy_of_the_code)
    # Then it fails, naming the broken contract and the import
    report = done.stdout + done.stderr
    assert done.returncode == 1, report
    assert contract in report
    assert named in report  # (an upward import can break other contracts too, through what imports it)


def test_a_new_module_of_the_package_must_be_given_its_layer(copy_of_the_code: Path) -> None:
    """`exhaustive`: a module the drawing does not place is an error, not a module that imports anything."""
    (copy_of_the_code / "layers/shared/image_pipeline/helpers.py").write_text('"""Undrawn."""\n')
    done = lint_imports(copy_of_the_code)
    report = done.stdout + done.stderr
    assert done.returncode == 1, report
    assert "image_pipeline.helpers" in report


def private_imports(tree_root: Path, base: Path = ROOT) -> list[str]:
    """`from <our module> import _name`: a module reaching into another's private helpers."""
    import ast

    found = []
    for path in sorted(tree_root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("image_pipeline"):
                found += [
                    f"{path.relative_to(base)}: {alias.name} from {node.module}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    return found


def test_no_module_imports_another_modules_private_helpers() -> None:
    assert (
        private_imports(ROOT / "layers" / "shared" / "image_pipeline") + private_imports(ROOT / "functions")
        == []
    )


def test_the_private_import_check_sees_one(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("from image_pipeline.adapters.dynamo_items import _hidden\n")
    assert private_imports(tmp_path, tmp_path) == [
        "bad.py: _hidden from image_pipeline.adapters.dynamo_items"
    ]
