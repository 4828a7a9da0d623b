"""The chaos run's own arithmetic: orphans counted from the bucket's versions, and its percentiles."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from devstack.local.chaos import Planned
from devstack.local.chaos_tally import Tally, count_orphans, percentile


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
