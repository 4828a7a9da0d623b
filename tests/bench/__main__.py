"""`python -m tests.bench [name ...]`: run every benchmark (or the named ones), each in a fresh interpreter.

Exit status: 0 when every budget holds, 1 when a stated budget is clearly broken, 2 when a benchmark could
not run (error or timeout).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from tests.bench.common import EXIT_BUDGET_BROKEN, EXIT_ERROR, EXIT_OK, ROOT, local_environment, print_table

# name -> time limit in seconds (the whole run is meant to stay under about three minutes)
BENCHMARKS = {
    "cold_start": 150,
    "downloader_memory": 90,
    "safe_fetch": 60,
    "pipeline": 150,
}
OUTCOMES = {EXIT_OK: "ok", EXIT_BUDGET_BROKEN: "BUDGET BROKEN", EXIT_ERROR: "ERROR"}


def run(name: str, limit: int) -> tuple[int, float]:
    started = time.perf_counter()
    sys.stdout.flush()
    # Its own session, so a benchmark that hangs is stopped with every process it started (servers, workers).
    process = subprocess.Popen(
        [sys.executable, "-m", f"tests.bench.bench_{name}"],
        cwd=ROOT,
        env=local_environment(),
        start_new_session=True,
    )
    try:
        code = process.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        print(f"ERROR: bench_{name} did not finish within {limit} s; stopped", flush=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        code = -1
    return code, time.perf_counter() - started


def main(argv: list[str]) -> int:
    unknown = [name for name in argv if name not in BENCHMARKS]
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    selected = argv or list(BENCHMARKS)
    results = {name: run(name, BENCHMARKS[name]) for name in selected}
    print_table(
        "Summary",
        ["benchmark", "result", "seconds"],
        [
            (name, "TIMEOUT" if code == -1 else OUTCOMES.get(code, f"ERROR (exit {code})"), f"{seconds:.1f}")
            for name, (code, seconds) in results.items()
        ],
    )
    codes = {code for code, _seconds in results.values()}
    if codes <= {EXIT_OK}:
        return EXIT_OK
    if codes <= {EXIT_OK, EXIT_BUDGET_BROKEN}:
        return EXIT_BUDGET_BROKEN
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
