"""4. The pipeline on the local stack (moto, the upstream emulator, the front door, the SQS pollers and the
functions in worker processes), RUNS times, each on a fresh stack, in two phases:

- the webhook/event client: K tasks submitted over HTTP back to back, each read once when it ended (the
  client is told of the end by its webhook or the event bus, so it never polls);
- the polling client: P tasks each followed by the `imagegen generate` CLI with its defaults (a GET every
  `--poll-interval`, 2 s, until the task ends, then the images downloaded), the emulator generating each
  image for POLLING_GENERATION_SECONDS (assumed: the upstream's "roughly 20-120 s", its low end). Each GET of
  a task still generating makes a conditional write (the progress refresh claim), and one every 5 s asks
  the upstream and writes the progress.

Measures throughput, callback -> all images stored (from the callback handler's entry, as its worker
clocked it, to the downloader's write that marks the task stored), and what each client costs: every AWS
call counted by operation at moto, DynamoDB write units from the items themselves (tests/bench/costs.py),
API Gateway requests as the front door passed them to a function, Lambda GB-s from each invocation's
duration with its CPU time stretched to the function's share of a vCPU. Warm instances only: Lambda's
init time is not in the GB-s, so the cost is a lower bound. Scheduled runs (the reconciler) are a fixed
cost (tests/bench/fixed_costs.py) and do not run here.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from tests.bench.common import (
    ASSUMED,
    COMPUTED,
    EXIT_ERROR,
    Row,
    add_code_paths,
    banner,
    median,
    ms,
    percentile,
    print_table,
    spread,
    summary_rows,
    use_local_environment,
)

RUNS = 3
TASKS = 20
VARIANTS = 2
GENERATION_SECONDS = 0.2
POLLING_TASKS = 4
POLLING_GENERATION_SECONDS = 20.0  # assumed (module docstring)
WORKERS = 4
STORED_TIMEOUT_SECONDS = 90.0
CLI_TIMEOUT_SECONDS = 120.0
POLL_SECONDS = 0.1
SETTLE_SECONDS = 2.0  # the notifier's last messages
# The API's submit guard (image_pipeline.adapters.submit_guard): 20 generate calls in any 10 s. The polling
# client starts once the webhook client's submits have left that window, or its submits would probe 20
# taken slots (20 refused writes) and be refused, which is the first client's doing, not polling's.
GUARD_WINDOW_SECONDS = 10.0
API_FUNCTIONS = ("ApiFunction", "CallbackFunction")  # behind API Gateway


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


@dataclass(frozen=True)
class Invocation:
    function: str
    started_at: float  # wall clock at the handler's entry, in its worker
    seconds: float
    cpu_seconds: float
    route: str | None  # "GET /tasks/{taskId}" when API Gateway invoked it
    task: str | None  # the task a callback is for: our id, in its path (/callbacks/{taskId})
    status: int | None  # an API answer's statusCode


@dataclass
class Phase:
    """What one client's tasks cost: the calls at moto and the invocations, from its first submit on."""

    tasks: int = 0
    images: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    wru: dict[str, int] = field(default_factory=dict)
    rru: float = 0.0
    events: int = 0
    invocations: list[Invocation] = field(default_factory=list)


@dataclass
class Run:
    startup: float
    webhook: Phase
    polling: Phase
    submit_latency: list[float]
    to_stored: list[float]
    callback_to_stored: list[float]
    submit_span: float
    span: float
    polling_seconds: float
    not_stored: dict[str, str]


def poll_interval() -> float:
    """`imagegen generate`'s default --poll-interval, read from its parser."""
    from imagegen.cli import build_parser

    return float(build_parser().parse_args(["generate", "x"]).poll_interval)


def main() -> int:
    banner(
        f"4. Pipeline on the local stack, {RUNS} runs: {TASKS} tasks x {VARIANTS} variants for the webhook"
        f" client (generation {GENERATION_SECONDS:g} s), {POLLING_TASKS} followed by the imagegen CLI"
        f" (generation {POLLING_GENERATION_SECONDS:g} s, assumed)"
    )
    use_local_environment()
    add_code_paths()
    try:
        from devstack.common.template import load_template

        template = load_template()
        runs = [run_once(template) for _ in range(RUNS)]
    except Exception as error:  # report and fail the run, whatever broke
        print(f"ERROR: {type(error).__name__}: {error}")
        return EXIT_ERROR
    return report(runs, template)


def run_once(template: dict[str, Any]) -> Run:
    import boto3
    import httpx
    from botocore.config import Config
    from image_pipeline.adapters import aws
    from image_pipeline.adapters.tasks_table import TasksTable

    from devstack.local.lambda_runtime import LambdaPool, Timed
    from devstack.local.stack import LocalStack, StackConfig
    from tests.bench.costs import OBSERVER_AGENT, CallCounter, Indexes

    table = template["Resources"]["TasksTable"]["Properties"]
    counter = CallCounter("-TasksTable", Indexes(table, [k["AttributeName"] for k in table["KeySchema"]]))
    invocations: list[Invocation] = []
    original_submit = LambdaPool.submit

    def timed_submit(pool: Any, logical_id: str, event: dict[str, Any]) -> Any:
        # Each invocation as its worker clocked it (what Lambda bills): the wait for a free worker process
        # is a local artefact, Lambda would start another instance.
        outcome: Future[dict[str, Any]] = Future()

        def done(timed: Future[Timed]) -> None:
            try:
                seen = timed.result()
            except BaseException as error:  # handed to the caller as the plain submit would
                outcome.set_exception(error)
                return
            status = seen.result.get("statusCode") if "httpMethod" in event else None
            invocations.append(
                Invocation(
                    logical_id,
                    seen.started_at,
                    seen.seconds,
                    seen.cpu_seconds,
                    f"{event['httpMethod']} {event.get('resource')}" if "httpMethod" in event else None,
                    (event.get("pathParameters") or {}).get("taskId")
                    if logical_id == "CallbackFunction"
                    else None,
                    status if isinstance(status, int) else None,
                )
            )
            outcome.set_result(seen.result)

        pool.submit_timed(logical_id, event).add_done_callback(done)
        return outcome

    def phase(tasks: int, images: int) -> Phase:
        return Phase(
            tasks,
            images,
            dict(counter.calls),
            dict(counter.wru),
            counter.rru,
            counter.events,
            list(invocations),
        )

    LambdaPool.submit = timed_submit  # type: ignore[method-assign,assignment]
    config = StackConfig(
        aws_middleware=counter.middleware,
        api_port=0,  # a free port on 127.0.0.1
        generation_seconds=GENERATION_SECONDS,
        callback_retry_schedule=(1.0, 2.0, 3.0),
        workers=WORKERS,
        reconcile_interval_seconds=0,  # scheduled runs are a fixed cost, not a task's
        # The emulator's own limit (20 generate calls per 10 s) would measure the emulator, not us.
        emulator_overrides={"generate_rate_limit": 0},
        # One client submits the whole run: its share of the generate window (50 %, 10 in any 10 s)
        # would pace the submits, not measure the pipeline.
        extra_environment={"CLIENT_GENERATE_SHARE_PERCENT": "100"},
    )
    try:
        started = time.perf_counter()
        with quiet_access_log(), LocalStack(config) as stack:
            startup = time.perf_counter() - started
            assert stack.resources is not None
            aws.reset_clients()  # built against the stack's moto endpoint from here on
            observer = boto3.client("dynamodb", config=Config(user_agent_extra=OBSERVER_AGENT))
            store = TasksTable(stack.resources.tasks_table, dynamodb=observer)
            counter.reset()
            invocations.clear()
            # -- the webhook/event client
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
                last_submit = time.time()
                submit_span = last_submit - first_submit
            finished = wait_until_finished(store, list(submitted))
            with httpx.Client(base_url=stack.api_url, timeout=30) as api:
                for task_id in submitted:  # the client's one read of each ended task
                    api.get(f"/tasks/{task_id}")
            time.sleep(SETTLE_SECONDS)
            stored = {task_id: r for task_id, r in finished.items() if r is not None and r.status == "stored"}
            webhook = phase(len(stored), sum(r.storedCount for r in stored.values()))
            callbacks = webhook.invocations
            # -- the polling client
            time.sleep(max(0.0, GUARD_WINDOW_SECONDS + 1.0 - (time.time() - last_submit)))
            counter.reset()
            invocations.clear()
            polling_started = time.perf_counter()
            polled = follow_with_the_cli(stack.api_url)
            polling_seconds = time.perf_counter() - polling_started
            time.sleep(SETTLE_SECONDS)
            polled_records = {task_id: store.get_task(task_id) for task_id in polled}
            polled_stored = [r for r in polled_records.values() if r is not None and r.status == "stored"]
            polling = phase(len(polled_stored), sum(r.storedCount for r in polled_stored))
    finally:
        aws.reset_clients()
        LambdaPool.submit = original_submit  # type: ignore[method-assign]

    not_stored = {
        task_id: (record.status if record else "missing")
        for task_id, record in [*finished.items(), *polled_records.items()]
        if record is None or record.status != "stored"
    }
    stored_at = {task_id: parse_time(record.updatedAt) for task_id, record in stored.items()}
    return Run(
        startup=startup,
        webhook=webhook,
        polling=polling,
        submit_latency=[latency for _wall, latency in submitted.values()],
        to_stored=[stored_at[task_id] - submitted[task_id][0] for task_id in stored],
        callback_to_stored=[
            stored_at[task_id] - entry
            for task_id, record in stored.items()
            if (entry := callback_entry(callbacks, task_id)) is not None
        ],
        submit_span=submit_span,
        span=(max(stored_at.values()) - first_submit) if stored_at else float("nan"),
        polling_seconds=polling_seconds,
        not_stored=not_stored,
    )


def follow_with_the_cli(api_url: str) -> list[str]:
    """POLLING_TASKS `imagegen generate` processes at once, with the CLI's defaults but the API's URL and
    the number of images; their task ids."""
    import json

    with tempfile.TemporaryDirectory(prefix="bench-cli-") as folder:

        def command(index: int) -> list[str]:
            prompt = f"[fault:gen={POLLING_GENERATION_SECONDS:g}] bench polled task {index}"
            out = str(Path(folder) / str(index))
            return [sys.executable, "-m", "imagegen", "generate", prompt, "--variants", str(VARIANTS),
                    "--api-url", api_url, "--json", "--out", out]  # fmt: skip

        processes = [
            subprocess.Popen(command(index), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for index in range(POLLING_TASKS)
        ]
        task_ids = []
        for process in processes:
            out, errors = process.communicate(timeout=CLI_TIMEOUT_SECONDS)
            if process.returncode != 0:
                raise RuntimeError(f"imagegen generate exited {process.returncode}: {errors[-500:]}")
            task_ids.append(json.loads(out)["taskId"])
    return task_ids


def callback_entry(callbacks: list[Invocation], task_id: str) -> float | None:
    """When the callback handler that recorded this task's outcome was entered (the first one that
    answered 200; the first of all when none did)."""
    mine = sorted(
        (call for call in callbacks if call.function == "CallbackFunction" and call.task == task_id),
        key=lambda call: call.started_at,
    )
    accepted = [call for call in mine if call.status == 200]
    return (accepted or mine)[0].started_at if mine else None


def wait_until_finished(store: Any, task_ids: list[str]) -> dict[str, Any]:
    """Poll the table (not the API: no load on the functions; not counted) until every task has ended."""
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


def batching_window(template: dict[str, Any]) -> int:
    """The downloader's SQS event source's MaximumBatchingWindowInSeconds (0 when not set)."""
    events = template["Resources"]["DownloaderFunction"]["Properties"]["Events"]
    return max(
        int(event["Properties"].get("MaximumBatchingWindowInSeconds", 0))
        for event in events.values()
        if event["Type"] == "SQS"
    )


# ------------------------------------------------------------------------------------------- costs


def memory_sizes(template: dict[str, Any]) -> dict[str, int]:
    default = int(template["Globals"]["Function"].get("MemorySize", 128))
    return {
        name: int(resource["Properties"].get("MemorySize", default))
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def costs(phase: Phase, template: dict[str, Any]) -> dict[str, Any]:
    """Per 1,000 images, USD by part, from what the phase counted and list prices."""
    from tests.bench.costs import IDLE_RECEIVE, S3_GETS, S3_PUTS, billed_seconds, price

    memory = memory_sizes(template)
    gb_seconds = sum(
        memory[call.function] / 1024 * billed_seconds(call.seconds, call.cpu_seconds, memory[call.function])
        for call in phase.invocations
    )
    as_measured = sum(memory[call.function] / 1024 * call.seconds for call in phase.invocations)
    calls = phase.calls
    parts = {
        "Lambda requests": price("lambda_request", len(phase.invocations)),
        "Lambda GB-s (arm64, CPU share)": price("lambda_gb_second_arm64", gb_seconds),
        "API Gateway requests": price("apigateway_rest_request", api_requests(phase)),
        "SQS requests": price("sqs_request", sum(c for n, c in calls.items() if n.startswith("sqs:") and n != f"sqs:{IDLE_RECEIVE}")),
        "S3 PUT/COPY/LIST": price("s3_put", sum(c for n, c in calls.items() if n.removeprefix("s3:") in S3_PUTS and n.startswith("s3:"))),
        "S3 GET/HEAD": price("s3_get", sum(c for n, c in calls.items() if n.removeprefix("s3:") in S3_GETS and n.startswith("s3:"))),
        "DynamoDB writes": price("dynamodb_wru", sum(phase.wru.values())),
        "DynamoDB reads": price("dynamodb_rru", phase.rru),
        "EventBridge events": price("eventbridge_event", phase.events),
    }  # fmt: skip
    per_images = 1000 / phase.images
    return {
        "parts": {name: value * per_images for name, value in parts.items()},
        "total": sum(parts.values()) * per_images,
        "gb_seconds": gb_seconds,
        "as_measured": as_measured,
    }


def api_requests(phase: Phase) -> int:
    return sum(1 for call in phase.invocations if call.route is not None)


def status_gets(phase: Phase) -> int:
    return sum(1 for call in phase.invocations if call.route == "GET /tasks/{taskId}")


# ------------------------------------------------------------------------------------------- report


def report(runs: list[Run], template: dict[str, Any]) -> int:
    from tests.bench.costs import MB_PER_VCPU, PRICES, cron_poller_monthly

    print_table(
        "Throughput of the webhook client's tasks (first submit -> last task stored), each run",
        [
            "run",
            "stack start s",
            "tasks",
            "stored",
            "images",
            "submit span s",
            "total s",
            "tasks/s",
            "images/s",
        ],
        [
            (
                index + 1,
                f"{run.startup:.1f}",
                TASKS,
                run.webhook.tasks,
                run.webhook.images,
                f"{run.submit_span:.2f}",
                f"{run.span:.2f}",
                f"{run.webhook.tasks / run.span:.2f}",
                f"{run.webhook.images / run.span:.2f}",
            )
            for index, run in enumerate(runs)
        ],
        notes=[
            f"a fresh stack each run (moto server, emulator, front door, {WORKERS} warm worker processes),"
            " its start not counted",
            "tasks submitted back to back from one client; emulator generate rate limit off; one machine,"
            " so the functions, moto and the emulator share its cores",
        ],
    )
    every = {
        "submit (POST /tasks -> 202)": [value for run in runs for value in run.submit_latency],
        "submit -> stored": [value for run in runs for value in run.to_stored],
        "callback handler entered -> stored": [value for run in runs for value in run.callback_to_stored],
    }
    print_table(
        f"Latency of the webhook client's tasks (ms, all {RUNS} runs together)",
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
            for name, values in every.items()
            if values
        ],
        notes=[
            "stored: the task's updatedAt as the downloader marked it stored (ms resolution), so polling adds"
            " nothing; submit: the wall clock before POST /tasks, so it includes the emulator's generation"
            f" ({GENERATION_SECONDS:g} s)",
            "callback handler entered: the wall clock in the callback's worker as its handler was called (the"
            " first callback of the task answered 200), so the emulator's send and the front door are not in"
            " it; p95 is nearest-rank",
        ],
    )
    not_stored = {task: status for run in runs for task, status in run.not_stored.items()}
    if not_stored:
        print(
            f"ERROR: {len(not_stored)} task(s) not stored within {STORED_TIMEOUT_SECONDS:g} s: {not_stored}"
        )
        return EXIT_ERROR

    interval = poll_interval()
    phases = {
        "webhook/event client": [run.webhook for run in runs],
        "CLI polling client": [run.polling for run in runs],
    }
    last = {name: each[-1] for name, each in phases.items()}
    print_table(
        f"AWS calls by operation, per task (run {RUNS})",
        ["operation", *phases],
        [
            (name, *(f"{phase.calls.get(name, 0) / phase.tasks:.2f}" for phase in last.values()))
            for name in sorted({name for phase in last.values() for name in phase.calls})
        ],
    )
    print_table(
        f"DynamoDB write units on the tasks table, per task (run {RUNS})",
        ["operation", *(f"{name}: {part}" for name in phases for part in ("table", "indexes"))],
        [
            (
                op,
                *(
                    f"{phase.wru.get(f'{part}:{op}', 0) / phase.tasks:.2f}"
                    for phase in last.values()
                    for part in ("table", "index")
                ),
            )
            for op in ("PutItem", "UpdateItem", "DeleteItem")
        ],
        notes=[
            "WRU = ceil(item KB) per write (a refused conditional write too), plus one per index entry"
            " written (two when an index key changes), from the template's projections",
            f"the polling client: {POLLING_TASKS} tasks, each followed by `imagegen generate` with its defaults"
            f" (a GET every {interval:g} s, then the images downloaded), {POLLING_GENERATION_SECONDS:g} s of"
            " generation (the upstream's roughly 20-120 s: its low end, assumed); each GET of a task still"
            " generating claims the progress refresh (a conditional write, billed when refused), one every"
            " 5 s asks the upstream and writes the progress",
        ],
    )
    spent = {name: [costs(phase, template) for phase in each] for name, each in phases.items()}
    part_names = list(spent["webhook/event client"][0]["parts"])
    print_table(
        f"Cost per 1,000 images (us-east-1 list prices, before free tiers; cents, median of {RUNS} runs)",
        ["part", *phases],
        [
            *(
                (part, *(f"{median([c['parts'][part] for c in each]) * 100:.3f}" for each in spent.values()))
                for part in part_names
            ),
            ("total", *(f"{median([c['total'] for c in each]) * 100:.3f}" for each in spent.values())),
        ],
        notes=[
            *(
                f"{name}: {median([len(p.invocations) for p in phases[name]]):.0f} invocations"
                f" ({median([api_requests(p) for p in phases[name]]):.0f} through API Gateway, of them"
                f" {median([status_gets(p) for p in phases[name]]):.0f} GET /tasks/{{taskId}}) for"
                f" {median([p.images for p in phases[name]]):.0f} images,"
                f" {median([c['gb_seconds'] for c in each]):.2f} GB-s (as measured here, unscaled:"
                f" {median([c['as_measured'] for c in each]):.2f})"
                for name, each in spent.items()
            ),
            "GB-s: each invocation's wall time in its worker, its CPU time stretched by the function's share of"
            f" a vCPU (memory / {MB_PER_VCPU} MB: 0.14 at 256 MB, 0.29 at 512), waits as measured; this"
            " machine's cores taken as Graviton's; warm instances only: init is not billed here, so these"
            " figures are lower bounds",
            "API Gateway: the requests the front door passed to a function (submits, callbacks, GETs);"
            " SQS: every request but the ReceiveMessage calls that brought nothing (the event sources' idle"
            " polling, a fixed cost: fixed_costs.py)",
            "prices: tests/bench/costs.py PRICES ("
            + ", ".join(sorted({v[2] for v in PRICES.values()}))
            + "); storage (S3, DynamoDB, logs) apart",
        ],
    )
    cron = cron_poller_monthly()
    print_table(
        "The cron poller of issue 13's cost row (USD a month, list price): a figure given there without its"
        " derivation; this is one that reaches it",
        ["part", "USD"],
        [*((name, f"{value:.3f}") for name, value in cron.items() if name not in ("total", "runs")), ("total", f"{cron['total']:.2f}")],
        notes=[
            f"a 128 MB arm64 function running all month, each of its {cron['runs']:,.0f} runs asking the"
            " upstream and then waiting out its 30 s; 600 bytes of log lines a run (tests/bench/costs.py"
            " cron_poller_monthly); assumed, not measured"
        ],
    )  # fmt: skip

    per_run = {name: [c["total"] * 100 for c in each] for name, each in spent.items()}
    wru = {name: [sum(p.wru.values()) / p.tasks for p in each] for name, each in phases.items()}
    p50s = [median(run.callback_to_stored) * 1000 for run in runs]
    p95s = [percentile(run.callback_to_stored, 95) * 1000 for run in runs]
    window = batching_window(template)
    webhook_cents, polling_cents = per_run["webhook/event client"], per_run["CLI polling client"]
    polling_ratio = [p / w for p, w in zip(polling_cents, webhook_cents, strict=True)]
    whole = lambda value: f"{value:.0f}"  # noqa: E731
    one = lambda value: f"{value:.1f}"  # noqa: E731
    two = lambda value: f"{value:.2f}"  # noqa: E731
    lower_bound = "lower bound: init not billed"
    summary_rows(
        [
            Row("callback -> all images stored (from the handler's entry), local stack, p50", "-", spread(p50s, whole, " ms"), "-", "<= 150 ms", median(p50s) <= 150),
            Row("callback -> all images stored (from the handler's entry), local stack, p95", "-", spread(p95s, whole, " ms"), "-", "<= 300 ms", median(p95s) <= 300),
            Row("downloader event source batching window (template)", "-", f"{window} s", "-", "0 s (removed)", window == 0, COMPUTED),
            Row("DynamoDB write units per 2-image task, webhook/event client", "-", spread(wru["webhook/event client"], one, " WRU"), "-", "<= 12 WRU", median(wru["webhook/event client"]) <= 12, COMPUTED),
            Row(f"DynamoDB write units per 2-image task, CLI polling client (every {interval:g} s, {POLLING_GENERATION_SECONDS:g} s generation assumed)", f"webhook/event client {spread(wru['webhook/event client'], one, ' WRU')}", spread(wru["CLI polling client"], one, " WRU"), spread([p / w for p, w in zip(wru["CLI polling client"], wru["webhook/event client"], strict=True)], two, "x"), "- (<= 12 WRU is the webhook client's)", None, ASSUMED),
            Row(f"compute + requests per 1,000 images, webhook/event client ({lower_bound})", f"cron poller ${cron['total']:.2f}/month (assumed: 128 MB busy all month)", spread(webhook_cents, two, " cents"), "-", "<= 1.5 cents", median(webhook_cents) <= 1.5, COMPUTED),
            Row(f"compute + requests per 1,000 images, CLI polling client (every {interval:g} s, {POLLING_GENERATION_SECONDS:g} s generation assumed; {lower_bound})", f"webhook/event client {spread(webhook_cents, two, ' cents')}", spread(polling_cents, two, " cents"), spread(polling_ratio, two, "x"), "- (<= 1.5 cents is the webhook client's)", None, ASSUMED),
        ]
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
