"""4. Pipeline throughput on the local stack (moto, the upstream emulator, the front door, the SQS poller
and the functions in worker processes): K tasks submitted over HTTP, time until every image is stored."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TextIO

from tests.bench.common import (
    EXIT_ERROR,
    add_code_paths,
    banner,
    median,
    ms,
    percentile,
    print_table,
    use_local_environment,
)

TASKS = 20
VARIANTS = 2
GENERATION_SECONDS = 0.2
WORKERS = 4
STORED_TIMEOUT_SECONDS = 90.0
POLL_SECONDS = 0.1


class _WithoutAccessLog:
    """stderr without the front door's per-request access log (which would also print callback tokens)."""

    _ACCESS_LOG = re.compile(r'\[api\] \S+ "')

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return len(text) if self._ACCESS_LOG.match(text) else self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def quiet_access_log() -> Iterator[None]:
    original = sys.stderr
    sys.stderr = _WithoutAccessLog(original)
    try:
        yield
    finally:
        sys.stderr = original


def main() -> int:
    banner(
        f"4. Pipeline throughput on the local stack: {TASKS} tasks x {VARIANTS} variants,"
        f" generation {GENERATION_SECONDS:g} s"
    )
    use_local_environment()
    add_code_paths()
    try:
        import httpx
        from image_pipeline.adapters import aws
        from image_pipeline.adapters.tasks_table import TasksTable

        from devstack.local.stack import LocalStack, StackConfig

        config = StackConfig(
            api_port=0,  # a free port on 127.0.0.1
            generation_seconds=GENERATION_SECONDS,
            callback_retry_schedule=(1.0, 2.0, 3.0),
            workers=WORKERS,
            # The emulator's own limit (20 generate calls per 10 s) would measure the emulator, not us.
            emulator_overrides={"generate_rate_limit": 0},
        )
        started = time.perf_counter()
        with quiet_access_log(), LocalStack(config) as stack:
            startup = time.perf_counter() - started
            assert stack.resources is not None
            aws.reset_clients()  # built against the stack's moto endpoint from here on
            store = TasksTable(stack.resources.tasks_table)
            submitted: dict[str, tuple[float, float]] = {}  # task id -> (wall clock at submit, latency)
            with httpx.Client(base_url=stack.api_url, timeout=30) as api:
                first_submit = time.time()
                for index in range(TASKS):  # back to back from one client
                    wall, clock = time.time(), time.perf_counter()
                    response = api.post(
                        "/tasks",
                        json={"prompt": f"bench task {index}", "size": "1:1", "nVariants": VARIANTS},
                    )
                    latency = time.perf_counter() - clock
                    if response.status_code != 202:
                        raise RuntimeError(
                            f"submit {index}: HTTP {response.status_code} {response.text[:200]}"
                        )
                    submitted[response.json()["taskId"]] = (wall, latency)
                submit_span = time.time() - first_submit
            finished = wait_until_finished(store, list(submitted))
        aws.reset_clients()
    except Exception as error:  # report and fail the run, whatever broke
        print(f"ERROR: {type(error).__name__}: {error}")
        return EXIT_ERROR

    stored = {task_id: record for task_id, record in finished.items() if record.status == "stored"}
    not_stored = {task_id: (record.status if record else "missing") for task_id, record in finished.items()}
    not_stored = {task_id: status for task_id, status in not_stored.items() if status != "stored"}
    stored_at = {task_id: parse_time(record.updatedAt) for task_id, record in stored.items()}
    to_stored = [stored_at[task_id] - submitted[task_id][0] for task_id in stored]
    submit_latency = [latency for _wall, latency in submitted.values()]
    span = (max(stored_at.values()) - first_submit) if stored_at else float("nan")
    images = sum(record.storedCount for record in stored.values())

    print_table(
        "Throughput (first submit -> last task stored)",
        ["tasks", "stored", "not stored", "images stored", "submit span s", "total s", "tasks/s", "images/s"],
        [
            (
                TASKS,
                len(stored),
                len(not_stored),
                images,
                f"{submit_span:.2f}",
                f"{span:.2f}",
                f"{len(stored) / span:.2f}",
                f"{images / span:.2f}",
            )
        ],
        notes=[
            f"stack start-up (moto server, emulator, front door, {WORKERS} warm worker processes):"
            f" {startup:.1f} s, not counted",
            "tasks submitted back to back from one client; emulator generate rate limit off; one machine,"
            " so the functions, moto and the emulator share its cores",
        ],
    )
    print_table(
        "Latency (ms)",
        ["measure", "n", "p50", "p95", "min", "max"],
        [
            (
                name,
                len(values),
                ms(median(values)),
                ms(percentile(values, 95)),
                ms(min(values)),
                ms(max(values)),
            )
            for name, values in (
                ("submit (POST /tasks -> 202)", submit_latency),
                ("submit -> stored", to_stored),
            )
            if values
        ],
        notes=[
            "submit -> stored: from the wall clock before POST /tasks to the task's updatedAt when marked"
            " stored (written by the downloader on this machine; ms resolution), so polling adds nothing",
            f"includes the emulator's generation time ({GENERATION_SECONDS:g} s); p95 is nearest-rank",
        ],
    )
    if not_stored:
        print(
            f"ERROR: {len(not_stored)} task(s) not stored within {STORED_TIMEOUT_SECONDS:g} s: {not_stored}"
        )
        return EXIT_ERROR
    return 0


def wait_until_finished(store: Any, task_ids: list[str]) -> dict[str, Any]:
    """Poll the table (not the API: no load on the functions) until every task is stored or failed."""
    finished: dict[str, Any] = {}
    pending = list(task_ids)
    deadline = time.monotonic() + STORED_TIMEOUT_SECONDS
    while pending and time.monotonic() < deadline:
        for task_id in list(pending):
            record = store.get_task(task_id)
            if record is not None and record.status in ("stored", "failed"):
                finished[task_id] = record
                pending.remove(task_id)
        if pending:
            time.sleep(POLL_SECONDS)
    for task_id in pending:
        finished[task_id] = store.get_task(task_id)
    return finished


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


if __name__ == "__main__":
    sys.exit(main())
