"""Runs the template's handlers the way Lambda does: one event at a time per instance, in worker processes.

Each worker process is one warm "instance" that imports the handler modules on first use. The pool
gives real concurrency (ten callbacks at once run in parallel, their conditional writes racing in
DynamoDB) without Docker.
"""

from __future__ import annotations

import dataclasses
import importlib
import multiprocessing
import os
import signal
import sys
import time
import traceback
import uuid
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from devstack.common.template import ROOT, load_template, resources_of_type


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    module: str
    function: str
    code_dir: str
    timeout_seconds: int
    environment: dict[str, str]  # resolved from the template (devstack.common.function_environment)


def function_specs() -> dict[str, FunctionSpec]:
    template = load_template()
    globals_ = template.get("Globals", {}).get("Function", {})
    specs = {}
    for name, properties in resources_of_type("AWS::Serverless::Function", template).items():
        module, function = properties["Handler"].rsplit(".", 1)
        specs[name] = FunctionSpec(
            logical_id=name,
            module=module,
            function=function,
            code_dir=str(ROOT / properties["CodeUri"]),
            timeout_seconds=int(properties.get("Timeout", globals_.get("Timeout", 3))),
            environment={},
        )
    return specs


def layer_dirs() -> list[str]:
    return [
        str(ROOT / layer["ContentUri"])
        for layer in resources_of_type("AWS::Serverless::LayerVersion").values()
    ]


class _Context:
    def __init__(self, spec_name: str, timeout_seconds: int) -> None:
        self.function_name = spec_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 256
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{spec_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec_name}"
        self.log_stream_name = "local"
        self._timeout_ms = timeout_seconds * 1000

    def get_remaining_time_in_millis(self) -> int:
        return self._timeout_ms


_all_warm: Any = None  # the pool's barrier of every worker, for warm_up


def _worker_init(paths: list[str], all_warm: Any = None) -> None:
    global _all_warm
    _all_warm = all_warm
    # Ctrl-C reaches the whole process group: the parent stops the workers in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.path[:0] = [path for path in paths if path not in sys.path]
    # A function's stdout is its log stream: keep it off the stdout of whoever runs the stack.
    sys.stdout = sys.stderr


def _import_handlers(specs: list[FunctionSpec], wait_for_all: bool = False) -> None:
    """Import each handler with its own function's environment, as its Lambda instance would (what a
    module reads at import time, such as Powertools' log level, is that function's).

    With `wait_for_all` this worker then waits (the pool's barrier) until every worker has done so: no
    worker takes a second warm-up while another has none and imports on its first request."""
    for spec in specs:
        _apply_environment(spec.environment)
        importlib.import_module(spec.module)
    if wait_for_all and _all_warm is not None:
        _all_warm.wait(timeout=120)


_applied_environment: set[str] = set()


def _apply_environment(environment: dict[str, str]) -> None:
    """A worker runs several functions: each invocation sees only its own function's variables."""
    for name in _applied_environment - environment.keys():
        os.environ.pop(name, None)
    os.environ.update(environment)
    _applied_environment.clear()
    _applied_environment.update(environment)


def _invoke_in_worker(spec: FunctionSpec, event: dict[str, Any]) -> dict[str, Any]:
    _apply_environment(spec.environment)
    handler = getattr(importlib.import_module(spec.module), spec.function)
    try:
        result: dict[str, Any] = handler(event, _Context(spec.logical_id, spec.timeout_seconds))
    except Exception as error:  # a Lambda crash: reported to the caller, as Lambda reports it
        traceback.print_exc()
        return {"errorType": type(error).__name__, "errorMessage": str(error)}
    return result


@dataclass(frozen=True)
class Timed:
    """One invocation as its worker saw it (the benchmarks' billed GB-seconds and their latencies)."""

    result: dict[str, Any]
    started_at: float  # wall clock (time.time()) as the handler was entered
    seconds: float  # its duration in the worker: what Lambda bills, without the wait for a worker
    cpu_seconds: float  # the worker process's CPU time over it (every thread)


def _invoke_timed_in_worker(spec: FunctionSpec, event: dict[str, Any]) -> Timed:
    started_at, started, cpu = time.time(), time.perf_counter(), time.process_time()
    result = _invoke_in_worker(spec, event)
    return Timed(result, started_at, time.perf_counter() - started, time.process_time() - cpu)


class LambdaPool:
    def __init__(self, workers: int = 4, environments: dict[str, dict[str, str]] | None = None) -> None:
        specs = {
            name: dataclasses.replace(spec, environment=(environments or {}).get(name, {}))
            for name, spec in function_specs().items()
        }
        self.specs = specs
        paths = [*layer_dirs(), *sorted({spec.code_dir for spec in specs.values()}), str(ROOT)]
        self.workers = workers
        context = multiprocessing.get_context("spawn")
        self._executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_worker_init,
            initargs=(paths, context.Barrier(workers)),
        )

    def submit(self, logical_id: str, event: dict[str, Any]) -> Future[dict[str, Any]]:
        return self._executor.submit(_invoke_in_worker, self.specs[logical_id], event)

    def submit_timed(self, logical_id: str, event: dict[str, Any]) -> Future[Timed]:
        """As submit, with when the handler was entered, its own duration and CPU time (the benchmarks')."""
        return self._executor.submit(_invoke_timed_in_worker, self.specs[logical_id], event)

    def invoke(self, logical_id: str, event: dict[str, Any]) -> dict[str, Any]:
        spec = self.specs[logical_id]
        return self.submit(logical_id, event).result(timeout=spec.timeout_seconds + 30)

    def warm_up(self, workers: int | None = None) -> None:
        """Start the workers and import the handlers now, so the first request does not pay for it.

        All the pool's workers: one warm-up each, held until every one runs (a worker that started
        first would otherwise take two while a slower one took none and imported on its first
        request). With fewer `workers`, that many warm-ups, not held (which workers get them is open)."""
        specs = sorted(self.specs.values(), key=lambda spec: spec.logical_id)
        count = self.workers if workers is None else min(workers, self.workers)
        every = count == self.workers
        futures = [self._executor.submit(_import_handlers, specs, every) for _ in range(count)]
        for future in futures:
            future.result(timeout=180)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
