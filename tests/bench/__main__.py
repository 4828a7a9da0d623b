"""`python -m tests.bench [name ...]`: run every benchmark (or the named ones), each in a fresh interpreter,
then print the performance budget as one table: every figure of issue 13 measured in this run, against
its floor and its target.

Each module prints its detail tables and hands its summary rows over through a file (BENCH_SUMMARY_FILE);
a figure whose module failed is listed as not measured.

Exit status: 0 when every budget holds, 1 when a stated budget is clearly broken, 2 when a benchmark could
not run (error or timeout). A target not met shows as NO in the table without failing the run: targets are
read on a quiet machine, and a shared one moves them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.common import (
    EXIT_BUDGET_BROKEN,
    EXIT_ERROR,
    EXIT_OK,
    ROOT,
    SUMMARY_FILE_VARIABLE,
    Row,
    banner,
    local_environment,
    machine,
    print_summary,
    print_table,
)

# name -> (module, time limit in seconds); the whole run is meant to stay under about five minutes
BENCHMARKS = {
    "cold_start": ("tests.bench.bench_cold_start", 240),
    "downloader_memory": ("tests.bench.bench_downloader_memory", 90),
    "safe_fetch": ("tests.bench.bench_safe_fetch", 60),
    "pipeline": ("tests.bench.bench_pipeline", 360),
    "fixed_costs": ("tests.bench.fixed_costs", 60),
}
OUTCOMES = {EXIT_OK: "ok", EXIT_BUDGET_BROKEN: "BUDGET BROKEN", EXIT_ERROR: "ERROR"}
# The table, in its order: (figure prefix, module that measures it). Rows are sorted by it, and a
# figure whose module did not hand its rows over is listed as not measured.
FIGURES = [
    ("cold start bytecode", "cold_start"),
    ("cold import", "cold_start"),
    ("cold start", "cold_start"),
    ("callback -> all images stored", "pipeline"),
    ("downloader event source batching window", "pipeline"),
    ("safe fetch", "safe_fetch"),
    ("DynamoDB write units", "pipeline"),
    ("compute + requests", "pipeline"),
    ("fixed monthly cost", "fixed_costs"),
    ("make test", ""),
    ("downloader extra peak memory", "downloader_memory"),
]
NOT_TIMED = Row(
    "make test",
    "-",
    "not timed here",
    "-",
    "<= 4 min; test-unit <= 60 s; install <= 30 s",
    None,
    "-",
)


def run(module: str, limit: int, summary_file: Path) -> tuple[int, float]:
    started = time.perf_counter()
    sys.stdout.flush()
    # Its own session, so a benchmark that hangs is stopped with every process it started (servers, workers).
    process = subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env={**local_environment(), SUMMARY_FILE_VARIABLE: str(summary_file)},
        start_new_session=True,
    )
    try:
        code = process.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        print(f"ERROR: {module} did not finish within {limit} s; stopped", flush=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        code = -1
    return code, time.perf_counter() - started


def outcome(code: int) -> str:
    return "TIMEOUT" if code == -1 else OUTCOMES.get(code, f"ERROR (exit {code})")


def collect(summary_file: Path, results: dict[str, tuple[int, float]]) -> list[Row]:
    """The rows the modules handed over, in the issue's order, and one for each figure not measured."""
    rows = [Row(**json.loads(line)) for line in summary_file.read_text().splitlines() if line.strip()]
    for prefix, module in FIGURES:
        if any(row.figure.startswith(prefix) for row in rows):
            continue
        if module in results:
            rows.append(
                Row(
                    prefix, "-", f"not measured: {module} {outcome(results[module][0])}", "-", "-", False, "-"
                )
            )
        elif not module and len(results) == len(BENCHMARKS):
            rows.append(NOT_TIMED)

    def rank(row: Row) -> int:
        return next(
            (index for index, (prefix, _m) in enumerate(FIGURES) if row.figure.startswith(prefix)),
            len(FIGURES),
        )

    return sorted(rows, key=rank)


def main(argv: list[str]) -> int:
    unknown = [name for name in argv if name not in BENCHMARKS]
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    selected = argv or list(BENCHMARKS)
    with tempfile.TemporaryDirectory(prefix="bench-summary-") as folder:
        summary_file = Path(folder) / "rows.jsonl"
        summary_file.touch()
        results = {name: run(*BENCHMARKS[name], summary_file) for name in selected}
        rows = collect(summary_file, results)
    print_table(
        "Benchmarks run",
        ["benchmark", "result", "seconds"],
        [(name, outcome(code), f"{seconds:.1f}") for name, (code, seconds) in results.items()],
    )
    banner(f"Performance budget (issue 13), measured side by side in this run: {machine()}")
    print_summary(rows, title="")
    codes = {code for code, _seconds in results.values()}
    if codes <= {EXIT_OK}:
        return EXIT_OK
    if codes <= {EXIT_OK, EXIT_BUDGET_BROKEN}:
        return EXIT_BUDGET_BROKEN
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
