"""1. Cold start, on the deployed artefacts: `sam build` output for this machine's architecture, run by a
fresh interpreter (-I -S) that sees only the function, its layer and boto3 (what the Lambda runtime adds).

- cold import: `import boto3` then `import <handler>` in one interpreter; the figure is the whole import
  against boto3's alone (a handler that leaves boto3 to its first call saves nothing here). Beside it,
  the Powertools "hello" anchor (tests/bench/anchor) and the design's floor: boto3 + Powertools Logger
  and Metrics + one dataclass, what any of the pipeline's functions imports (the API's floor is the
  anchor: its router validates with pydantic). pydantic alone is measured too.
- cold start: the import plus the first invocation on the function's `events/` file, against moto (a
  server in this process, seeded as `sam_local seed` does), against a bare handler that imports boto3,
  makes the function's clients and makes one call. Work deferred to the first call counts here.

The artefacts are what Lambda runs: `sam build` output with the bytecode `make build` adds
(scripts/compile_bytecode.py), every file dated 1980-01-01 as `sam package` zips it, run read-only (-B:
no .pyc is written, so none is left for the next run). Beside them, the same build without the bytecode
step: what plain `sam build` ships, where every cold start compiles each module it imports. The runtime's
packages (boto3 and what it imports) come compiled, as in Lambda (tests/lambda_artefacts.link_runtime):
the venv holds no bytecode, and `import boto3` from source costs about three times what it does compiled.
Every .py of the runtime and of the build is checked for a usable hash-checked .pyc, and the check is
printed with the tables.

Runs are interleaved round by round (drift on a shared machine hits every target alike); each figure is
the median of the rounds with their range, each ratio the median of the rounds' paired ratios.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.bench.common import (
    EXIT_ERROR,
    ROOT,
    Row,
    banner,
    local_environment,
    median,
    ms,
    print_table,
    spread,
    summary_rows,
)
from tests.lambda_artefacts import (
    HOST_ARCH,
    BytecodeCheck,
    add_bytecode,
    check_bytecode,
    date_like_a_sam_zip,
    link_runtime,
)

RUNS = 7
PROBE_TIMEOUT_SECONDS = 60
# function -> (build folder, handler module, event file, clients the bare handler makes, target)
FUNCTIONS: dict[str, tuple[str, str, str, tuple[str, ...], float]] = {
    "callback": ("CallbackFunction", "callback_handler", "callback_4o_success", ("dynamodb", "sqs"), 1.3),
    "downloader": (
        "DownloaderFunction",
        "downloader_handler",
        "sqs_download_batch",
        ("dynamodb", "sqs", "s3"),
        1.3,
    ),
    "reconciler": (
        "ReconcilerFunction",
        "reconciler_handler",
        "reconciler_scheduled",
        ("dynamodb", "sqs"),
        1.4,
    ),
    "api": ("ApiFunction", "api_handler", "api_get_task", ("dynamodb", "s3", "sqs"), 1.6),
}
# The pipeline functions' floor: Powertools Logger and Metrics, and one plain record (they read our own
# records and the upstream's replies without pydantic). The API's is the anchor: it validates with pydantic.
FLOOR_CODE = """
from dataclasses import dataclass
from aws_lambda_powertools import Logger, Metrics
@dataclass
class Floor:
    name: str
    count: int = 0
Floor(name="x")
Logger(service="floor"); Metrics(namespace="Floor", service="floor")
"""
# Parts, each alone after boto3: pydantic (the API's only) and the floor's Logger and Metrics. Powertools'
# package __init__ imports its Logger, Metrics and Tracer modules together, so "logger" and "metrics"
# differ only by the instance they make.
PART_CODES = {
    "pydantic": """
from pydantic import BaseModel
class Part(BaseModel):
    name: str
    count: int = 0
Part(name="x")
""",
    "logger": 'from aws_lambda_powertools import Logger\nLogger(service="part")',
    "metrics": 'from aws_lambda_powertools import Metrics\nMetrics(namespace="Part", service="part")',
}

# import boto3, then the module (or code): both times, in one fresh interpreter.
IMPORT_PROBE = """
import json, sys, time
spec = json.loads(sys.argv[1])
sys.path[:0] = spec["paths"]
t0 = time.perf_counter()
import boto3
t1 = time.perf_counter()
if spec.get("module"):
    __import__(spec["module"])
else:
    exec(spec["code"], {})
t2 = time.perf_counter()
print(json.dumps({"boto3": t1 - t0, "total": t2 - t0, "modules": sorted(sys.modules)}))
"""

# The function's import and first invocation, as the Lambda runtime's init and first invoke.
START_PROBE = """
import json, sys, time
spec = json.loads(sys.argv[1])
sys.path[:0] = spec["paths"]
t0 = time.perf_counter()
module = __import__(spec["module"])
t1 = time.perf_counter()
class Context:
    function_name = "bench"; function_version = "$LATEST"; memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench-1"; log_group_name = "/aws/lambda/bench"; log_stream_name = "bench"
    def get_remaining_time_in_millis(self): return 60000
answer = module.lambda_handler(spec["event"], Context())
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "total": t2 - t0, "answer": str(answer)[:300]}))
"""

# The floor of a cold start: boto3, the function's clients, one call.
BARE_PROBE = """
import json, sys, time
spec = json.loads(sys.argv[1])
sys.path[:0] = spec["paths"]
t0 = time.perf_counter()
import boto3
clients = {name: boto3.client(name) for name in spec["clients"]}
clients["dynamodb"].get_item(TableName=spec["table"], Key={"pk": {"S": "task#none"}})
t1 = time.perf_counter()
print(json.dumps({"total": t1 - t0}))
"""


def compile_bytecode(build: Path) -> None:
    done = add_bytecode(build)
    if done.returncode != 0:
        raise RuntimeError(f"compile_bytecode failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def sam_build(target: Path) -> None:
    sam = shutil.which("sam", path=str(Path(sys.executable).parent)) or shutil.which("sam")
    if not sam:
        raise RuntimeError("the SAM CLI is not installed (make install)")
    env = {**local_environment(), "SAM_CLI_TELEMETRY": "0"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    command = [
        sam, "build", "--build-dir", str(target / "build"), "--cache-dir", str(target / "cache"),
        "--parameter-overrides", f"Architecture={HOST_ARCH}",
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"sam build failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def probe(code: str, spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        # -B: Lambda's code is read-only; nothing a run compiles is kept for the next one.
        [sys.executable, "-I", "-S", "-B", "-c", code, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_SECONDS,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"probe failed ({spec.get('module')}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


class Stack:
    """moto in this process with the template's tables, queues and bucket, and each function's environment."""

    def __init__(self) -> None:
        import boto3

        from devstack.common.aws_resources import create_stack_resources
        from devstack.common.function_environment import LocalValues, function_environments
        from devstack.common.moto_server import LocalMotoServer

        self.server = LocalMotoServer().start()
        os.environ["AWS_ENDPOINT_URL"] = self.server.endpoint_url
        self.resources = create_stack_resources(boto3.Session(region_name="us-east-1"), prefix="bench")
        self.environments = function_environments(
            LocalValues(
                resources=self.resources,
                upstream_url="http://127.0.0.1:9",  # nothing listens: an upstream call fails at once
                callback_base_url="http://127.0.0.1:9",
                overrides={"POWERTOOLS_LOG_LEVEL": "ERROR"},
            )
        )

    def environment(self, logical_id: str) -> dict[str, str]:
        return {
            **local_environment(),
            **self.environments.get(logical_id, {}),
            "AWS_ENDPOINT_URL": self.server.endpoint_url,
            "POWERTOOLS_METRICS_DISABLED": "true",
        }

    def seed(self) -> None:
        """The example task of events/*.json, submitted and waiting for its callback (sam_local seed):
        under our id (the callback URL's), confirmed with the upstream's (the callback body's)."""
        from datetime import timedelta

        from image_pipeline.adapters import aws
        from image_pipeline.adapters.tasks_table import TasksTable
        from image_pipeline.task_records import utc_now
        from image_pipeline.tokens import hash_token

        callback = json.loads((ROOT / "events" / "callback_4o_success.json").read_text())
        task_id = callback["pathParameters"]["taskId"]
        upstream_task_id = json.loads(callback["body"])["data"]["taskId"]
        token = callback["queryStringParameters"]["token"]
        aws.reset_clients()
        store = TasksTable(self.resources.tasks_table)
        aws.client("dynamodb").delete_item(
            TableName=self.resources.tasks_table, Key={"pk": {"S": f"task#{task_id}"}}
        )
        now = utc_now()
        due = now + timedelta(minutes=30)
        if not store.create_task(
            task_id,
            owner="local",
            options={"prompt": "example", "size": "1:1"},
            token_hash=hash_token(token),
            now=now,
            next_check_at=due,
        ) or not store.confirm_submitted(task_id, upstream_task_id, now, due):
            raise RuntimeError(f"could not seed the example task {task_id}")

    def stop(self) -> None:
        self.server.stop()
        os.environ.pop("AWS_ENDPOINT_URL", None)


def print_bytecode(checks: dict[str, BytecodeCheck]) -> None:
    print_table(
        "Bytecode: every .py against the .pyc a read-only import would use (this Python, hash-checked,"
        " this source's hash)",
        ["tree", ".py", "usable .pyc", "missing", "unusable"],
        [
            (tree, check.sources, check.usable, len(check.missing), len(check.unusable))
            for tree, check in checks.items()
        ],
        notes=[check.describe() for check in checks.values() if check.missing or check.unusable][:3],
    )


def paired(values: list[float], floors: list[float]) -> list[float]:
    """Each round's value over the same round's floor."""
    return [value / floor for value, floor in zip(values, floors, strict=True)]


def times(values: list[float]) -> str:
    return spread(values, ms, " ms")


def ratios(values: list[float]) -> str:
    return spread(values, lambda value: f"{value:.2f}", "x")


def main() -> int:
    banner(f"1. Cold start on the sam build output ({HOST_ARCH}), fresh interpreters, median of {RUNS}")
    sys.path[:0] = [str(ROOT / "layers" / "shared"), str(ROOT)]
    os.environ.update(local_environment())
    work = Path(tempfile.mkdtemp(prefix="bench-cold-"))
    stack = None
    try:
        sam_build(work)
        build = work / "build"
        plain = work / "plain"  # what `sam build` alone ships: no bytecode
        shutil.copytree(build, plain, symlinks=True)
        compile_bytecode(build)
        for tree in (build, plain):
            date_like_a_sam_zip(tree)
        runtime = link_runtime(work / "runtime")
        layer = build / "SharedLayer" / "python"
        bytecode = {
            "runtime: boto3 & co, compiled as Lambda ships them": check_bytecode(runtime),
            "build with bytecode (make build)": check_bytecode(build),
            "sam build alone (the comparison below)": check_bytecode(plain),
        }
        print_bytecode(bytecode)
        stack = Stack()
        events = {
            name: json.loads((ROOT / "events" / f"{spec[2]}.json").read_text())
            for name, spec in FUNCTIONS.items()
        }
        imports: dict[str, list[tuple[float, float]]] = {
            name: [] for name in [*FUNCTIONS, "anchor", "floor", *PART_CODES]
        }
        starts: dict[str, list[float]] = {name: [] for name in FUNCTIONS}
        plain_starts: dict[str, list[float]] = {name: [] for name in FUNCTIONS}
        bares: dict[str, list[float]] = {name: [] for name in FUNCTIONS}
        loaded: dict[str, list[str]] = {}
        answers: dict[str, str] = {}
        plain_env = local_environment()
        for round_ in range(RUNS + 1):  # round 0 warms the page cache, and is discarded
            for name, (folder, module, _event, clients, _target) in FUNCTIONS.items():
                paths = [str(build / folder), str(layer), str(runtime)]
                env = stack.environment(folder)
                found = probe(IMPORT_PROBE, {"paths": paths, "module": module}, env)
                loaded[name] = found["modules"]
                stack.seed()
                started = probe(START_PROBE, {"paths": paths, "module": module, "event": events[name]}, env)
                answers[name] = started["answer"]
                plain_paths = [str(plain / folder), str(plain / "SharedLayer" / "python"), str(runtime)]
                stack.seed()
                plain_start = probe(
                    START_PROBE, {"paths": plain_paths, "module": module, "event": events[name]}, env
                )
                bare = probe(
                    BARE_PROBE,
                    {"paths": [str(runtime)], "clients": clients, "table": stack.resources.tasks_table},
                    env,
                )
                if round_:
                    imports[name].append((found["boto3"], found["total"]))
                    starts[name].append(started["total"])
                    plain_starts[name].append(plain_start["total"])
                    bares[name].append(bare["total"])
            anchor = probe(
                IMPORT_PROBE,
                {
                    "paths": [str(ROOT / "tests" / "bench" / "anchor"), str(layer), str(runtime)],
                    "module": "hello_handler",
                },
                plain_env,
            )
            floor = probe(IMPORT_PROBE, {"paths": [str(layer), str(runtime)], "code": FLOOR_CODE}, plain_env)
            parts = {
                name: probe(IMPORT_PROBE, {"paths": [str(layer), str(runtime)], "code": code}, plain_env)
                for name, code in PART_CODES.items()
            }
            if round_:
                imports["anchor"].append((anchor["boto3"], anchor["total"]))
                imports["floor"].append((floor["boto3"], floor["total"]))
                for name, found in parts.items():
                    imports[name].append((found["boto3"], found["total"]))
    except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as error:
        print(f"ERROR: {error}")
        return EXIT_ERROR
    finally:
        if stack is not None:
            stack.stop()
        shutil.rmtree(work, ignore_errors=True)

    def round_ratios(name: str) -> list[float]:
        return paired([total for _boto, total in imports[name]], [boto for boto, _total in imports[name]])

    def import_ratio(name: str) -> tuple[float, float, float]:
        boto3_alone = median([boto for boto, _total in imports[name]])
        total = median([total for _boto, total in imports[name]])
        return boto3_alone, total, median(round_ratios(name))

    print_table(
        f"Cold import: import boto3, then the handler, in one fresh interpreter (ms, median of {RUNS};"
        " ratio: median of the rounds' own)",
        ["target", "boto3", "boto3 + handler", "ratio", "modules"],
        [
            (name, ms(a), ms(b), f"{r:.2f}x", len(loaded.get(name, [])) or "")
            for name in imports
            for a, b, r in [import_ratio(name)]
        ],
        notes=[
            "anchor = Powertools hello: Logger, Metrics, APIGatewayRestResolver(enable_validation=True),"
            " one pydantic body, boto3 (tests/bench/anchor/hello_handler.py)",
            "floor = boto3 + Powertools Logger and Metrics + one dataclass (the API's floor is the anchor)",
            "pydantic = BaseModel and one model built, alone after boto3 (only the API imports it);"
            " logger, metrics = each alone (Powertools' package imports Logger, Metrics and Tracer"
            " together: one of them costs what both do)",
        ],
    )
    markers = {"httpx": "httpx", "PIL": "PIL", "safe_fetch": "image_pipeline.safe_fetch",
               "webhooks": "image_pipeline.webhooks", "event_handler": "aws_lambda_powertools.event_handler",
               "client_requests": "image_pipeline.client_requests", "pydantic": "pydantic"}  # fmt: skip
    print_table(
        "What each handler's import loads (yes = loaded)",
        ["function", *markers],
        [
            (
                name,
                *(
                    "yes" if any(m == p or m.startswith(p + ".") for m in loaded[name]) else "-"
                    for p in markers.values()
                ),
            )
            for name in FUNCTIONS
        ],
    )
    print_table(
        "Cold start: import + first invocation on its events/ file, vs a bare boto3 handler (ms, median)",
        ["function", "event", "bare: boto3 + clients + 1 call", "import + first call", "ratio", "answer"],
        [
            (
                name,
                FUNCTIONS[name][2],
                ms(median(bares[name])),
                ms(median(starts[name])),
                f"{median(paired(starts[name], bares[name])):.2f}x",
                answers[name][:60],
            )
            for name in FUNCTIONS
        ],
        notes=["against moto in this process (a local HTTP server): each AWS call is a real request"],
    )
    print_table(
        "Shipping bytecode: cold start of `sam build` alone vs with compile_bytecode (ms, median)",
        ["function", "sam build alone", "with bytecode (make build)", "saved", "ratio to bare, alone"],
        [
            (
                name,
                ms(median(plain_starts[name])),
                ms(median(starts[name])),
                ms(median(plain_starts[name]) - median(starts[name])),
                f"{median(paired(plain_starts[name], bares[name])):.2f}x",
            )
            for name in FUNCTIONS
        ],
        notes=["both dated 1980-01-01 as in a SAM zip and run read-only (-B), so nothing compiled is kept"],
    )
    anchor_ratio = median(round_ratios("anchor"))
    floor_ratio = median(round_ratios("floor"))
    out_of_reach = [
        f"{name} <= {target}x"
        for name, (*_rest, target) in FUNCTIONS.items()
        if target < (anchor_ratio if name == "api" else floor_ratio)
    ]
    if out_of_reach:
        print(
            f"\nBelow what the design imports before any code of its own (floor {floor_ratio:.2f}x; the API"
            f" also its router, anchor {anchor_ratio:.2f}x), out of reach while it imports them: "
            + ", ".join(out_of_reach)
        )
    shipped = [bytecode[tree] for tree in list(bytecode)[:2]]
    rows = [
        Row(
            "cold start bytecode: runtime + build .py with a usable hash-checked .pyc",
            "-",
            f"{sum(check.usable for check in shipped)} of {sum(check.sources for check in shipped)}",
            "-",
            f"every one (sam build alone: {list(bytecode.values())[2].usable})",
            all(check.complete for check in shipped),
        )
    ]
    for name, (*_rest, target) in FUNCTIONS.items():
        each = round_ratios(name)
        rows.append(
            Row(
                f"cold import: {name}",
                f"import boto3 {times([boto for boto, _total in imports[name]])}",
                times([total for _boto, total in imports[name]]),
                ratios(each),
                f"<= {target}x (anchor {anchor_ratio:.2f}x, floor {floor_ratio:.2f}x)",
                median(each) <= target,
            )
        )
    for name, (*_rest, target) in FUNCTIONS.items():
        each = paired(starts[name], bares[name])
        rows.append(
            Row(
                f"cold start (import + 1st call): {name}",
                f"bare handler {times(bares[name])}",
                times(starts[name]),
                ratios(each),
                f"<= {target}x",
                median(each) <= target,
            )
        )
    for name in FUNCTIONS:
        rows.append(
            Row(
                f"cold start without shipped bytecode (sam build alone): {name}",
                f"with bytecode {times(starts[name])}",
                times(plain_starts[name]),
                ratios(paired(plain_starts[name], starts[name])),
                "- (make build ships it)",
                None,
            )
        )
    summary_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
