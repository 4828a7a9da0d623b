"""4. The pipeline on the local stack (moto, the upstream emulator, the front door, the SQS pollers and the
functions in worker processes): K tasks submitted over HTTP, each read once when it ended.

Measures throughput, callback -> all images stored, and what it costs: every AWS call counted by
operation at moto, DynamoDB write units from the items themselves (tests/bench/costs.py), Lambda
durations as measured here. The fixed monthly cost at zero traffic is tests/bench/fixed_costs.py's."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TextIO

from tests.bench.common import (
    EXIT_ERROR,
    Row,
    add_code_paths,
    banner,
    median,
    ms,
    percentile,
    print_table,
    summary_rows,
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

        from devstack.common.template import load_template
        from devstack.local.lambda_runtime import LambdaPool
        from devstack.local.stack import LocalStack, StackConfig
        from tests.bench.costs import CallCounter, Indexes

        template = load_template()
        table = template["Resources"]["TasksTable"]["Properties"]
        counter = CallCounter("-TasksTable", Indexes(table, [k["AttributeName"] for k in table["KeySchema"]]))
        durations: dict[str, list[float]] = {}
        original_submit = LambdaPool.submit

        def timed_submit(pool: Any, logical_id: str, event: dict[str, Any]) -> Any:
            # Each invocation's duration as measured in its worker (what Lambda bills): the wait for a
            # free worker process is a local artefact, Lambda would start another instance.
            outcome: Future[dict[str, Any]] = Future()

            def done(timed: Future[tuple[dict[str, Any], float]]) -> None:
                try:
                    result, seconds = timed.result()
                except BaseException as error:  # handed to the caller as the plain submit would
                    outcome.set_exception(error)
                    return
                durations.setdefault(logical_id, []).append(seconds)
                outcome.set_result(result)

            pool.submit_timed(logical_id, event).add_done_callback(done)
            return outcome

        LambdaPool.submit = timed_submit  # type: ignore[method-assign,assignment]
        config = StackConfig(
            aws_middleware=counter.middleware,
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
            with httpx.Client(base_url=stack.api_url, timeout=30) as api:
                for task_id in submitted:  # the client's one read of each ended task
                    api.get(f"/tasks/{task_id}")
            time.sleep(2.0)  # the notifier's last messages
            counted = (dict(counter.calls), dict(counter.wru), counter.rru, counter.events, dict(durations))
        aws.reset_clients()
        LambdaPool.submit = original_submit  # type: ignore[method-assign]
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
    callback_to_stored = [
        stored_at[task_id] - parse_time(record.callbackAt)
        for task_id, record in stored.items()
        if record.callbackAt
    ]
    return report_costs(counted, len(stored), images, callback_to_stored, template)


def report_costs(
    counted: tuple[dict[str, int], dict[str, int], float, int, dict[str, list[float]]],
    tasks: int,
    images: int,
    callback_to_stored: list[float],
    template: dict[str, Any],
) -> int:
    from tests.bench.costs import PRICES, price

    calls, wru, rru, events, durations = counted
    print_table(
        f"AWS calls by operation, {tasks} tasks x {VARIANTS} images (per task)",
        ["operation", "calls", "per task"],
        [(name, count, f"{count / tasks:.2f}") for name, count in sorted(calls.items())],
    )
    print_table(
        "DynamoDB write units on the tasks table, per task",
        ["operation", "table", "indexes"],
        [
            (op, f"{wru.get('table:' + op, 0) / tasks:.2f}", f"{wru.get('index:' + op, 0) / tasks:.2f}")
            for op in ("PutItem", "UpdateItem", "DeleteItem")
        ],
        notes=[
            "WRU = ceil(item KB) per write (a refused conditional write too), plus one per index entry"
            " written (two when an index key changes), from the template's projections"
        ],
    )
    wru_per_task = sum(wru.values()) / tasks
    functions = {
        name: r["Properties"]
        for name, r in template["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function"
    }
    default_memory = template["Globals"]["Function"].get("MemorySize", 128)
    gb_seconds = sum(
        functions[name].get("MemorySize", default_memory) / 1024 * sum(values)
        for name, values in durations.items()
    )
    invocations = sum(len(values) for values in durations.values())
    per_images = 1000 / images
    parts = {
        "Lambda requests": price("lambda_request", invocations),
        "Lambda GB-s (arm64)": price("lambda_gb_second_arm64", gb_seconds),
        "API Gateway (submit, callback, GET)": price("apigateway_rest_request", 3 * tasks),
        "SQS requests": price("sqs_request", sum(c for n, c in calls.items() if n.startswith("sqs:"))),
        "S3 PUT/LIST": price("s3_put", sum(c for n, c in calls.items() if n.split(":")[-1] in ("PutObject", "ListObjectVersions") and n.startswith("s3:"))),
        "S3 GET/HEAD": price("s3_get", sum(c for n, c in calls.items() if n in ("s3:GetObject", "s3:HeadObject"))),
        "DynamoDB writes": price("dynamodb_wru", sum(wru.values())),
        "DynamoDB reads": price("dynamodb_rru", rru),
        "EventBridge events": price("eventbridge_event", events),
    }  # fmt: skip
    total = sum(parts.values()) * per_images
    print_table(
        "Cost per 1,000 images (us-east-1 list prices, before free tiers; cents)",
        ["part", "cents"],
        [
            *((name, f"{value * per_images * 100:.3f}") for name, value in parts.items()),
            ("total", f"{total * 100:.3f}"),
        ],
        notes=[
            f"{invocations} invocations, {gb_seconds:.2f} GB-s at the template's memory sizes, durations as"
            " measured here (each invocation's wall time inside its worker process, on this machine)",
            "prices: tests/bench/costs.py PRICES ("
            + ", ".join(sorted({v[2] for v in PRICES.values()}))
            + ")",
            "storage (S3, DynamoDB, logs) apart",
        ],
    )
    cb50, cb95 = median(callback_to_stored) * 1000, percentile(callback_to_stored, 95) * 1000
    window = batching_window(template)
    summary_rows(
        [
            Row("callback -> all images stored, local stack, p50", "-", f"{cb50:.0f} ms", "-", "<= 150 ms", cb50 <= 150),
            Row("callback -> all images stored, local stack, p95", "-", f"{cb95:.0f} ms", "-", "<= 300 ms", cb95 <= 300),
            Row("downloader event source batching window (template)", "-", f"{window} s", "-", "0 s (removed)", window == 0),
            Row("DynamoDB write units per 2-image task", "-", f"{wru_per_task:.1f} WRU", "-", "<= 12 WRU", wru_per_task <= 12),
            Row("compute + requests per 1,000 images", "cron poller $4.36/month", f"{total * 100:.2f} cents", "-", "<= 1.5 cents", total * 100 <= 1.5),
        ]
    )  # fmt: skip
    return 0


def batching_window(template: dict[str, Any]) -> int:
    """The downloader's SQS event source's MaximumBatchingWindowInSeconds (0 when not set)."""
    events = template["Resources"]["DownloaderFunction"]["Properties"]["Events"]
    return max(
        int(event["Properties"].get("MaximumBatchingWindowInSeconds", 0))
        for event in events.values()
        if event["Type"] == "SQS"
    )


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
