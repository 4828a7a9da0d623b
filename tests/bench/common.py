"""What every benchmark shares: paths, a local-only environment, statistics, tables and budgets."""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LAYER_DIR = ROOT / "layers" / "shared"
FUNCTION_DIRS = {name: ROOT / "functions" / name for name in ("api", "callback", "downloader")}
HANDLER_MODULES = {name: f"{name}_handler" for name in FUNCTION_DIRS}

EXIT_OK = 0
EXIT_BUDGET_BROKEN = 1
EXIT_ERROR = 2

# Never reach real AWS from a benchmark, whatever the developer's shell holds.
_DROPPED = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_SECURITY_TOKEN")
_LOCAL = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_METRICS_NAMESPACE": "ImagePipelineBench",
    "POWERTOOLS_DEV": "false",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "ERROR",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def local_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of `base` (default os.environ) with fake credentials and no real AWS endpoint or profile."""
    environment = dict(os.environ if base is None else base)
    for name in _DROPPED:
        environment.pop(name, None)
    environment.update(_LOCAL)
    return environment


def use_local_environment() -> None:
    for name in _DROPPED:
        os.environ.pop(name, None)
    os.environ.update(_LOCAL)


def add_code_paths(*functions: str) -> None:
    """The layer and the given function directories first on sys.path, as Lambda lays them out."""
    paths = [str(LAYER_DIR), *(str(FUNCTION_DIRS[name]) for name in functions), str(ROOT)]
    sys.path[:0] = [path for path in paths if path not in sys.path]


class LambdaContext:
    function_name = "bench-function"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench-function"
    aws_request_id = "bench-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/bench-function"
    log_stream_name = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


# ------------------------------------------------------------------------------------------- statistics


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): always one of the measured values."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def spread(values: Sequence[float], show: Callable[[float], str] = str, unit: str = "") -> str:
    """The median of several runs and their range: `12.3 ms (11.9..13.0)`; a lone value alone."""
    if len(values) == 1:
        return f"{show(values[0])}{unit}"
    return f"{show(median(values))}{unit} ({show(min(values))}..{show(max(values))})"


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x" if baseline > 0 else "n/a"


def mib(size: float) -> str:
    return f"{size / (1024 * 1024):.1f}"


# ------------------------------------------------------------------------------------------- output


def machine() -> str:
    """Cores, CPU model, architecture, Python and the load when asked: what the table was measured on."""
    import platform

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ""
    with contextlib.suppress(OSError, AttributeError):
        load = f", load average {os.getloadavg()[0]:.1f}"
    return f"{os.cpu_count()} cores, {model} ({platform.machine()}), Python {platform.python_version()}{load}"


def banner(title: str) -> None:
    line = "=" * max(60, len(title) + 6)
    print(f"\n{line}\n== {title}\n{line}", flush=True)


def print_table(
    title: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    notes: Sequence[str] = (),
) -> None:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))

    def line(values: Sequence[str]) -> str:
        parts = [
            value.ljust(widths[index]) if index == 0 else value.rjust(widths[index])
            for index, value in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    print(f"\n{title}" if title else "")
    print(line(headers))
    print(line(["-" * width for width in widths]))
    for row in cells:
        print(line(row))
    for note in notes:
        print(f"  note: {note}")
    sys.stdout.flush()


@dataclass
class Budgets:
    """The stated budgets of one benchmark: printed beside the measurement, broken ones fail the run."""

    rows: list[tuple[str, str, str, bool]] = field(default_factory=list)

    def check(self, name: str, measured: str, budget: str, ok: bool) -> None:
        self.rows.append((name, measured, budget, ok))

    def report(self) -> int:
        if not self.rows:
            return EXIT_OK
        print_table(
            "Budgets",
            ["budget", "measured", "limit", "result"],
            [(name, measured, budget, "ok" if ok else "BROKEN") for name, measured, budget, ok in self.rows],
        )
        return EXIT_OK if all(ok for *_, ok in self.rows) else EXIT_BUDGET_BROKEN


# ------------------------------------------------------------------------------------------- summary

SUMMARY_FILE_VARIABLE = "BENCH_SUMMARY_FILE"


MEASURED = "measured"  # timed or counted in this run
COMPUTED = "computed"  # derived in this run from measured figures, the template or list prices
ASSUMED = "assumed"  # rests on a figure nobody measured here: the row says which and why


@dataclass
class Row:
    """One row of `make bench`'s summary table: a figure, its floor, the value, their ratio, the target,
    and its basis: measured, computed (from what) or assumed (what)."""

    figure: str
    floor: str
    value: str
    ratio: str
    target: str
    ok: bool | None  # None: no target to meet
    basis: str = MEASURED

    def to_json(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "floor": self.floor,
            "value": self.value,
            "ratio": self.ratio,
            "target": self.target,
            "ok": self.ok,
            "basis": self.basis,
        }


def summary_rows(rows: Iterable[Row]) -> None:
    """Hand rows to `python -m tests.bench` (one JSON line each), or print them when run alone."""
    import json

    rows = list(rows)
    path = os.environ.get(SUMMARY_FILE_VARIABLE)
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row.to_json()) + "\n")
    else:
        print_summary(rows)


SUMMARY_NOTES = (
    "value, floor and ratio: the median of the runs, their range in brackets (min..max); a ratio is the"
    " median of each run's own value over its own floor",
    "basis: measured = timed or counted in this run; computed = derived in this run from what it measured,"
    " the template and list prices; assumed = rests on a figure not measured here (the row names it)",
)


def print_summary(rows: Sequence[Row], title: str = "Summary") -> None:
    print_table(
        title,
        ["figure", "basis", "floor / anchor", "value", "ratio", "target", "met?"],
        [
            (
                row.figure,
                row.basis,
                row.floor,
                row.value,
                row.ratio,
                row.target,
                {True: "yes", False: "NO", None: "-"}[row.ok],
            )
            for row in rows
        ],
        notes=SUMMARY_NOTES,
    )
