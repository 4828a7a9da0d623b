"""1. Cold start: the import time of each handler, in a fresh interpreter per run, beside a baseline
that imports everything the layer ships. Also: the heaviest imports, and whether Pillow loads at start.

The venv holds dev tools (aws-sam-cli brings rich, click, pygments and awscrt) that a deployed function
does not have, and httpx and botocore import them when present. The main measurement therefore hides
every installed package outside the layer's requirements (and boto3, which the Lambda runtime provides)
from the probe interpreter, as Lambda would; the venv as it is gets a column of its own.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.bench.common import (
    EXIT_ERROR,
    FUNCTION_DIRS,
    HANDLER_MODULES,
    LAYER_DIR,
    Budgets,
    banner,
    local_environment,
    median,
    ms,
    print_table,
    ratio,
)

RUNS = 5
VENV_RUNS = 3  # the venv as-is column is context, not the measurement: fewer runs
TOP = 5
PROBE_TIMEOUT_SECONDS = 60
RUNTIME_DISTRIBUTIONS = ("boto3",)  # provided by the Lambda Python runtime, not by the layer

# Runs in a fresh interpreter (-I: no cwd, no user site, no PYTHON* variables): time around the imports.
PROBE = """
import json, sys, time
spec = json.loads(sys.argv[1])
hidden = frozenset(spec["hidden"])
refused = set()

class NotDeployed:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in hidden:
            refused.add(name.partition(".")[0])
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

if hidden:
    sys.meta_path.insert(0, NotDeployed())
sys.path[:0] = spec["paths"]
before = set(sys.modules)
skipped = []
t0 = time.perf_counter()
for name in spec["modules"]:
    __import__(name)
for name in spec["optional"]:
    try:
        __import__(name)
    except ImportError:
        skipped.append(name)
elapsed = time.perf_counter() - t0
loaded = set(sys.modules) - before
dev_only = sorted({name.partition(".")[0] for name in loaded} & set(spec["dev_only"]))
print(json.dumps({"seconds": elapsed, "before": sorted(before), "loaded": sorted(loaded), "skipped": skipped,
                  "refused": sorted(refused), "dev_only": dev_only}))
"""

# Which heavy parts each target ends up with (module name prefixes).
MARKERS = {
    "PIL": "PIL",
    "pydantic": "pydantic",
    "httpx": "httpx",
    "botocore": "botocore",
    "pt.event_handler": "aws_lambda_powertools.event_handler",
    "pt.openapi": "aws_lambda_powertools.event_handler.openapi",
    "pt.batch": "aws_lambda_powertools.utilities.batch",
}
NO_PIL_AT_START = ("api", "callback")


def deployed_distributions() -> set[str]:
    """The layer's requirements and the runtime's boto3, with everything they require (no extras)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lines = (LAYER_DIR / "requirements.txt").read_text().splitlines()
    todo = [Requirement(line.split("#")[0]).name for line in lines if line.split("#")[0].strip()]
    todo += RUNTIME_DISTRIBUTIONS
    seen: set[str] = set()
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def not_deployed_modules() -> list[str]:
    """Top-level modules of the installed distributions a deployed function would not have."""
    from packaging.utils import canonicalize_name

    allowed = deployed_distributions()
    return sorted(
        module
        for module, distributions in metadata.packages_distributions().items()
        if not any(canonicalize_name(distribution) in allowed for distribution in distributions)
    )


def _package_modules(package_dir: Path, package: str) -> list[str]:
    names = []
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if "swagger_ui" in parts:  # static assets and their loader, not code a resolver imports
            continue
        names.append(".".join([package, *parts]))
    return names


def _installed_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{package} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def targets() -> dict[str, dict[str, Any]]:
    specs: dict[str, dict[str, Any]] = {}
    for name, module in HANDLER_MODULES.items():
        specs[module] = {
            "function": name,
            "paths": [str(LAYER_DIR), str(FUNCTION_DIRS[name])],
            "modules": [module],
            "optional": [],
        }
    powertools = _installed_dir("aws_lambda_powertools")
    # Everything the layer ships (and boto3, which the Lambda runtime provides and the adapters use).
    specs["baseline (whole layer)"] = {
        "function": None,
        "paths": [str(LAYER_DIR)],
        "modules": [
            "boto3",
            "botocore.exceptions",
            "pydantic",
            "httpx",
            "PIL.Image",
            "PIL.PngImagePlugin",
            "PIL.JpegImagePlugin",
            "PIL.WebPImagePlugin",
            "aws_lambda_powertools",
            "aws_lambda_powertools.logging",
            "aws_lambda_powertools.metrics",
            "aws_lambda_powertools.utilities.batch",
            "aws_lambda_powertools.utilities.data_classes",
            "aws_lambda_powertools.utilities.typing",
            *_package_modules(LAYER_DIR / "image_pipeline", "image_pipeline"),
        ],
        # The full event_handler package; a module needing an extra the layer does not ship is skipped.
        "optional": _package_modules(powertools / "event_handler", "aws_lambda_powertools.event_handler"),
    }
    return specs


def probe(spec: dict[str, Any], *, importtime: bool = False) -> tuple[dict[str, Any], str, float]:
    command = [
        sys.executable,
        "-I",
        *(["-X", "importtime"] if importtime else []),
        "-c",
        PROBE,
        json.dumps(spec),
    ]
    started = time.perf_counter()
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_SECONDS,
        env=local_environment(),
        check=False,
    )
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"import probe failed ({spec['modules'][:1]}):\n{completed.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result, completed.stderr, wall


def heaviest(importtime_log: str, before: set[str]) -> list[tuple[str, int, float, int]]:
    """(package, self us, share, modules): self time summed per top-level package, so rows never overlap."""
    self_us: dict[str, int] = defaultdict(int)
    count: dict[str, int] = defaultdict(int)
    for line in importtime_log.splitlines():
        if not line.startswith("import time:"):
            continue
        fields = line[len("import time:") :].split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue  # the header line
        name = fields[2].strip()
        if name in before:
            continue
        root = name.split(".")[0]
        self_us[root] += int(fields[0])
        count[root] += 1
    total = sum(self_us.values()) or 1
    ranked = sorted(self_us, key=lambda root: self_us[root], reverse=True)[:TOP]
    rows = [(root, self_us[root], self_us[root] / total, count[root]) for root in ranked]
    return [*rows, ("(all)", total, 1.0, sum(count.values()))]


def main() -> int:
    banner(f"1. Cold start: handler import time, fresh interpreter per run, median of {RUNS}")
    try:
        hidden = not_deployed_modules()
        specs = targets()
        names = list(specs)
        modes = {"deployed": hidden, "venv": []}
        seconds: dict[tuple[str, str], list[float]] = {(n, m): [] for n in names for m in modes}
        walls: dict[str, list[float]] = {name: [] for name in names}
        last: dict[tuple[str, str], dict[str, Any]] = {}
        for round_ in range(RUNS + 1):  # round 0 warms the pyc files and the page cache, and is discarded
            for name in names:  # interleaved, so drift on a shared machine hits every target alike
                for mode, hide in modes.items():
                    if mode == "venv" and not 0 < round_ <= VENV_RUNS:
                        continue
                    spec = {**specs[name], "hidden": hide, "dev_only": hidden}
                    result, _log, wall = probe(spec)
                    last[name, mode] = result
                    if round_ > 0:
                        seconds[name, mode].append(result["seconds"])
                        if mode == "deployed":
                            walls[name].append(wall)
        logs = {
            name: probe({**specs[name], "hidden": hidden, "dev_only": hidden}, importtime=True)
            for name in names
        }
    except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as error:
        print(f"ERROR: {error}")
        return EXIT_ERROR

    baseline = next(name for name in names if specs[name]["function"] is None)
    base_median = median(seconds[baseline, "deployed"])
    print_table(
        "Import time, as deployed (ms; time.perf_counter around the import in a fresh interpreter)",
        [
            "target",
            "median",
            "min",
            "max",
            "process wall",
            "vs baseline",
            "modules",
            "| venv as-is",
            "dev-only pkgs",
        ],
        [
            (
                name,
                ms(median(seconds[name, "deployed"])),
                ms(min(seconds[name, "deployed"])),
                ms(max(seconds[name, "deployed"])),
                ms(median(walls[name])),
                ratio(median(seconds[name, "deployed"]), base_median),
                len(last[name, "deployed"]["loaded"]),
                ms(median(seconds[name, "venv"])),
                len(last[name, "venv"]["dev_only"]),
            )
            for name in names
        ],
        notes=[
            "baseline = boto3 + pydantic + httpx + PIL (Image, PNG/JPEG/WebP plugins) + powertools logging,"
            " metrics, batch, data_classes and every event_handler module + every image_pipeline module",
            "baseline skipped (needs an extra the layer does not ship): "
            + (", ".join(last[baseline, "deployed"]["skipped"]) or "none"),
            "as deployed = installed packages outside layers/shared/requirements.txt + boto3 (and what they"
            f" require) are hidden; {len(hidden)} hidden, refused when asked for: "
            + (", ".join(sorted({r for n in names for r in last[n, "deployed"]["refused"]})) or "none"),
            f"venv as-is = the same import with nothing hidden (median of {VENV_RUNS});"
            " dev-only pkgs = how many hidden packages it then loads: "
            + (", ".join(sorted({p for n in names for p in last[n, "venv"]["dev_only"]})) or "none"),
            "process wall = spawn to exit of the probe interpreter (interpreter start included), median",
            "vs baseline < 1.00x means the handler imports only part of what the layer ships",
        ],
    )

    def has(name: str, prefix: str) -> bool:
        loaded = last[name, "deployed"]["loaded"]
        return any(module == prefix or module.startswith(prefix + ".") for module in loaded)

    print_table(
        "What each target imports at cold start (yes = loaded by the import)",
        ["target", *MARKERS],
        [(name, *("yes" if has(name, prefix) else "-" for prefix in MARKERS.values())) for name in names],
    )

    rows = []
    for name in names:
        result, log, _wall = logs[name]
        for rank, (package, self_us, share, modules) in enumerate(
            heaviest(log, set(result["before"])), start=1
        ):
            rows.append(
                (
                    name if rank == 1 else "",
                    "" if package == "(all)" else rank,
                    package,
                    f"{self_us / 1000:.1f}",
                    f"{share * 100:.0f}%",
                    modules,
                )
            )
    print_table(
        f"Heaviest {TOP} imports per target, as deployed (one -X importtime run)",
        ["target", "#", "top-level package", "self ms", "share", "modules"],
        rows,
        notes=[
            "self time of every module summed per top-level package: rows never overlap,"
            " (all) is the whole import",
            "-X importtime inflates absolute times; compare shares, and use the timed table above for ms",
        ],
    )

    budgets = Budgets()
    for name in names:
        function = specs[name]["function"]
        if function is None:
            continue
        pil = has(name, "PIL")
        if function in NO_PIL_AT_START:
            budgets.check(
                f"{name}: PIL at cold start", "imported" if pil else "not imported", "not imported", not pil
            )
        else:
            print(
                f"  info: {name} {'imports' if pil else 'does not import'} PIL at cold start"
                " (no budget: it verifies downloaded images with Pillow, lazily)"
            )
    return budgets.report()


if __name__ == "__main__":
    sys.exit(main())
