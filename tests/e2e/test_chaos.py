"""A small chaos run inside `make test` (`make chaos` runs 200): nothing lost, nothing duplicated,
every task ended, every ended task that asked for a webhook notified exactly once (one verified event
per task, deduped by webhook-id) through a receiver that fails at random, nothing left in S3 of the
tasks deleted on their end, the neighbours of a client whose endpoint hangs notified promptly, and the
edits of a client's upload fed exactly its bytes."""

from __future__ import annotations

import io

import pytest

from devstack.local import chaos

pytestmark = pytest.mark.e2e


def test_small_chaos_run_loses_and_duplicates_nothing() -> None:
    report = io.StringIO()
    result = chaos.run(count=24, seed=5, timeout=300, out=report)
    print(report.getvalue())
    assert result.tasks == 24
    assert (result.lost, result.duplicates, result.unfinished) == (0, 0, 0), report.getvalue()
    assert (result.unowned, result.paid_twice) == (0, 0), report.getvalue()
    assert result.stored == result.images_expected
    assert result.webhooks > 0 and result.notify_lost == 0, report.getvalue()
    assert result.notified == result.webhooks, report.getvalue()
    # a client deleted some tasks on their end, another's endpoint hung throughout
    assert result.deleted > 0 and result.orphans == 0, report.getvalue()
    assert result.hanging_tasks > 0 and result.neighbour_delays, report.getvalue()
    # edits of a client's upload reached the upstream as exactly its bytes
    assert result.edits == result.edits_planned > 0 and result.wrong_inputs == 0, report.getvalue()
    assert result.passed


def test_plan_covers_every_scenario_at_scale() -> None:
    planned = chaos.plan(200, seed=7)
    assert {task.scenario for task in planned} == {name for name, *_ in chaos.SCENARIOS}
    assert 0 < sum(task.webhook for task in planned) < len(planned)  # most ask for a webhook, not all
