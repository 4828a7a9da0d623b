"""The downloader's time and retry policy (image_pipeline.logic.download_budget), and how it tells the
messages of its queue apart (task_records.download_queue_message): plain functions, no AWS."""

from __future__ import annotations

import pytest
from image_pipeline.logic.download_budget import (
    BACKOFF_CAP_SECONDS,
    MIN_FETCH_SECONDS,
    can_start,
    fetch_deadline,
    retry_delay,
)
from image_pipeline.logic.downloads import RetryLater
from image_pipeline.task_records import ConfirmSubmit, DownloadJob, MalformedRecord, download_queue_message


def test_a_record_starts_only_with_a_fetch_s_worth_of_time_ahead() -> None:
    assert can_start(MIN_FETCH_SECONDS)
    assert not can_start(MIN_FETCH_SECONDS - 0.01)


@pytest.mark.parametrize(
    ("policy", "time_left", "deadline"), [(20.0, 60.0, 20.0), (20.0, 7.5, 7.5), (20.0, 1.0, 1.0)]
)
def test_a_fetch_gets_its_policy_s_deadline_or_what_is_left(
    policy: float, time_left: float, deadline: float
) -> None:
    assert fetch_deadline(policy, time_left) == deadline


def test_no_fetch_is_started_with_less_than_a_second_left() -> None:
    with pytest.raises(RetryLater, match="no time left"):
        fetch_deadline(20.0, 0.99)


def test_a_passing_failure_backs_off_by_its_receive_count_up_to_the_cap() -> None:
    assert [retry_delay(count, 30) for count in (0, 1, 2, 3, 4)] == [30, 30, 60, 120, 240]
    assert retry_delay(20, 30) == BACKOFF_CAP_SECONDS


def test_the_download_queue_s_messages_are_told_apart_by_the_confirm_task_field() -> None:
    job = DownloadJob(taskId="t1", index=0, url="https://x/confirmTask.png")  # the word in a value
    assert download_queue_message(job.to_message()) == job
    confirm = ConfirmSubmit(confirmTask="t1", upstreamTaskId="up-1", nextCheckAt="2025-01-01T00:00:00Z")
    assert download_queue_message(confirm.to_message()) == confirm


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("not json", "download queue message is not JSON"),
        ("[" * 100_000, "nests too deeply"),
        ('["confirmTask"]', "must be a JSON object, got list"),
        ('{"confirmTask": "t1"}', "ConfirmSubmit message is malformed: upstreamTaskId: is required"),
        ('{"taskId": "t1"}', "DownloadJob message is malformed"),
    ],
)
def test_a_message_of_neither_shape_is_malformed(body: str, needle: str) -> None:
    with pytest.raises(MalformedRecord, match=needle):
        download_queue_message(body)
