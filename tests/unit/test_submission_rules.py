"""A submission's own rules (logic.submission.check_request) and how its outcome reads (SubmittedTask):
plain functions, before any adapter is called."""

from __future__ import annotations

import pytest
from image_pipeline.client_requests import TaskRequest
from image_pipeline.errors import InvalidIdempotencyKey, WebhookUrlError
from image_pipeline.logic.submission import (
    MAX_IDEMPOTENCY_KEY_CHARS,
    SubmittedTask,
    SubmitTimes,
    check_request,
)
from image_pipeline.task_records import TaskStatus

PLAIN = TaskRequest.model_validate({"prompt": "a fox", "size": "1:1"})
WITH_WEBHOOK = TaskRequest.model_validate(
    {"prompt": "a fox", "size": "1:1", "webhookUrl": "https://hooks.example.com/done"}
)


def refuse(url: str) -> str:
    raise WebhookUrlError("address_blocked", f"{url} is refused")


@pytest.mark.parametrize("key", [None, "k", "x" * MAX_IDEMPOTENCY_KEY_CHARS, "retry 1 of order #42"])
def test_a_key_of_1_to_255_printable_characters_or_none_passes(key: str | None) -> None:
    check_request(PLAIN, key, check_webhook_url=refuse)  # no webhookUrl: the check is not called


@pytest.mark.parametrize("key", ["", "x" * (MAX_IDEMPOTENCY_KEY_CHARS + 1), "tab\there", "line\n"])
def test_any_other_key_is_refused(key: str) -> None:
    with pytest.raises(InvalidIdempotencyKey, match="1 to 255 characters of visible ASCII or spaces"):
        check_request(PLAIN, key, check_webhook_url=str)


def test_the_webhook_url_is_checked_first() -> None:
    checked: list[str] = []
    check_request(WITH_WEBHOOK, "k", check_webhook_url=checked.append)
    assert checked == ["https://hooks.example.com/done"]
    with pytest.raises(WebhookUrlError):
        check_request(WITH_WEBHOOK, "", check_webhook_url=refuse)  # before the key's own rule


def test_only_a_new_task_without_a_definite_answer_is_unconfirmed() -> None:
    assert SubmittedTask("t1", TaskStatus.SUBMITTING).unconfirmed
    assert not SubmittedTask("t1", TaskStatus.SUBMITTING, repeated=True).unconfirmed
    assert not SubmittedTask("t1", TaskStatus.SUBMITTED).unconfirmed
    assert SubmittedTask("t1", TaskStatus.SUBMITTED).new
    assert not SubmittedTask("t1", TaskStatus.STORED, repeated=True).new


def test_the_times_come_from_seconds() -> None:
    times = SubmitTimes.from_seconds(90, 7200)
    assert (times.reconcile_after.total_seconds(), times.unconfirmed_after.total_seconds()) == (90, 7200)
