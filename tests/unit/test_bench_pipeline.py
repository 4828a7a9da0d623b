"""The pipeline benchmark's own bookkeeping (tests/bench/bench_pipeline.py)."""

from __future__ import annotations


def test_the_pipeline_benchmark_times_each_task_from_its_own_callback() -> None:
    """Callbacks are told apart by the task id of their path (/callbacks/{taskId}): a task's latency
    starts at its own first accepted callback, never another task's."""
    from tests.bench.bench_pipeline import Invocation, callback_entry

    def call(task: str, started: float, status: int) -> Invocation:
        return Invocation("CallbackFunction", started, 0.01, 0.01, "POST /callbacks/{taskId}", task, status)

    callbacks = [call("a" * 32, 1.0, 200), call("b" * 32, 5.0, 403), call("b" * 32, 7.0, 200)]
    assert callback_entry(callbacks, "a" * 32) == 1.0
    assert callback_entry(callbacks, "b" * 32) == 7.0  # the one that was accepted
    assert callback_entry(callbacks, "c" * 32) is None
