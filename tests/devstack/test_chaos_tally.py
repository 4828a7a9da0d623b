"""The chaos run's own arithmetic: orphans counted from the bucket's versions, the edits' inputs, and
its percentiles."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from devstack.local.chaos import Planned, Upload
from devstack.local.chaos_tally import Tally, check_inputs, count_orphans, percentile


def test_orphans_are_the_versions_of_deleted_or_unknown_tasks(aws_stack: Any) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    bucket = aws_stack.images_bucket
    alive, deleted = "a" * 32, "d" * 32
    for task_id in (alive, deleted, "u" * 32):  # u: no task of the run at all
        s3.put_object(Bucket=bucket, Key=f"images/{task_id}/0.png", Body=b"one")
    s3.put_object(Bucket=bucket, Key=f"images/{deleted}/0.png", Body=b"a second version")
    planned = [Planned(0, "clean", "p0", 1, None), Planned(1, "clean", "p1", 1, None)]
    planned[0].task_id = alive
    planned[1].task_id, planned[1].deleted = deleted, True
    result = Tally()
    assert count_orphans(s3, bucket, planned, result) == 3
    assert sum("orphan images/" in problem for problem in result.problems) == 3


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([], 0.95, None),
        ([4.0], 0.95, 4.0),
        ([float(n) for n in range(1, 21)], 0.95, 19.0),  # nearest rank: the 19th of 20
        ([float(n) for n in range(1, 21)], 0.5, 10.0),
        ([3.0, 1.0, 2.0], 1.0, 3.0),
    ],
)
def test_percentile_is_the_nearest_rank(values: list[float], fraction: float, expected: float | None) -> None:
    assert percentile(values, fraction) == expected


def test_a_slow_neighbour_webhook_fails_the_run() -> None:
    result = Tally(neighbour_delays=[1.0] * 18 + [31.0, 40.0])
    assert not result.passed  # p95 of 20 is the 19th: 31 s
    assert Tally(neighbour_delays=[1.0] * 19 + [40.0]).passed


def _edit(number: int) -> Planned:
    task = Planned(number, "edit upload", f"p{number}", 1, None)
    task.task_id, task.upload = f"{number:032x}", Upload(f"upload:{number}", f"sha-{number}")
    return task


@pytest.mark.parametrize(
    ("fetched", "counted", "wrong"),
    [
        ([["sha-1"]], 1, 0),  # exactly its upload
        ([["sha-2"]], 1, 1),  # another task's upload
        ([["sha-1", "sha-1"]], 1, 1),  # more than it named
        ([[None]], 1, 1),  # a fetch that failed
        ([], 0, 0),  # never reached the upstream: not checked, so the run cannot pass
    ],
)
def test_an_edit_passes_only_with_exactly_its_own_upload_fetched(
    fetched: list[list[str | None]], counted: int, wrong: int
) -> None:
    result = Tally()
    check_inputs(result, _edit(1), fetched)
    assert (result.edits_planned, result.edits, result.wrong_inputs) == (1, counted, wrong)
    assert result.passed == (counted == 1 and wrong == 0)
