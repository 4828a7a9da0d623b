"""ImageApiClient on its own: URL handling, parsing, retries, downloads."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from imagegen.api import (
    ChecksumMismatchError,
    ImageApiClient,
    RateLimitedError,
    RetryNotice,
    Task,
    TaskRequest,
    UnexpectedResponseError,
    UpstreamAuthError,
    normalize_base_url,
    parse_retry_after,
)
from imagegen_fakes import API_KEY, API_URL, PNG, FakeApi, FakeClock, json_response, sha256


def client_for(api: FakeApi, clock: FakeClock, **kwargs) -> ImageApiClient:
    return ImageApiClient(
        API_URL, API_KEY, transport=httpx.MockTransport(api.handler), sleep=clock.sleep, **kwargs
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
        ("http://127.0.0.1:3000/", "http://127.0.0.1:3000"),
        (" https://abc.execute-api.us-east-1.amazonaws.com/Prod// ", API_URL),
    ],
)
def test_normalize_base_url(given, expected):
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize("bad", ["", "localhost:3000", "ftp://x", "https://x/Prod?stage=1"])
def test_normalize_base_url_rejects(bad):
    with pytest.raises(ValueError, match="API URL"):
        normalize_base_url(bad)


def test_parse_retry_after():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None


def test_task_request_problems():
    assert TaskRequest("a fox").problems() == []
    fields = [p.field for p in TaskRequest("", size="4:3", variants=3, files=("x",) * 6).problems()]
    assert fields == ["prompt", "size", "nVariants", "filesUrl"] + ["filesUrl"] * 6


def test_a_market_request_takes_its_prompt_once():
    market = "nano-banana-pro"
    assert TaskRequest("a fox", model=market, input={"resolution": "2K"}).to_json()["input"] == {
        "resolution": "2K",
        "prompt": "a fox",
    }
    assert TaskRequest("a fox", model=market, input={"prompt": "a fox"}).problems() == []
    twice = TaskRequest("a fox", model=market, input={"prompt": "a wolf"}).problems()
    assert [p.field for p in twice] == ["input.prompt"]
    assert [p.field for p in TaskRequest(model=market).problems()] == ["input.prompt"]


def test_task_from_json_tolerates_gaps_and_clamps_progress():
    task = Task.from_json(
        {
            "taskId": "t",
            "status": "stored",
            "progress": 1.7,
            "images": [
                {"index": 1, "url": "https://s/1", "contentType": "image/png", "sha256": "AB"},
                {"index": 0, "url": "https://s/0"},
            ],
            "error": None,
        }
    )
    assert task.terminal and task.progress == 1.0
    assert [i.index for i in task.images] == [0, 1]
    assert task.images[1].sha256 == "ab"
    assert task.images[0].content_type == "application/octet-stream"
    assert Task.from_json({"taskId": "t", "status": "submitted", "progress": None}).progress is None


@pytest.mark.parametrize(
    "body", [[], {"status": "stored"}, {"taskId": "t", "status": "stored", "images": [{}]}]
)
def test_task_from_json_rejects_malformed(body):
    with pytest.raises(UnexpectedResponseError):
        Task.from_json(body)


def test_submit_retries_and_reports_each_retry(clock):
    api = FakeApi()
    api.post_script = [
        json_response(429, {"message": "slow"}, {"Retry-After": "3"}),
        json_response(429, {"message": "slow"}, {"Retry-After": "4"}),
        json_response(429, {"message": "slow"}, {"Retry-After": "5"}),
    ]
    notices: list[RetryNotice] = []
    with client_for(api, clock, on_retry=notices.append) as client, pytest.raises(RateLimitedError) as caught:
        client.submit_task(TaskRequest("a fox"), idempotency_key="key-1")
    assert caught.value.retry_after == 5.0
    assert [(n.attempt, n.delay) for n in notices] == [(1, 3.0), (2, 4.0)]
    assert clock.sleeps == [3.0, 4.0]
    assert [r.headers["Idempotency-Key"] for r in api.posts()] == ["key-1"] * 3


def test_submit_generates_an_idempotency_key_when_none_is_given(clock):
    api = FakeApi()
    with client_for(api, clock) as client:
        submission = client.submit_task(TaskRequest("a fox"))
    assert submission.task_id == "task-123"
    assert api.posts()[0].headers["Idempotency-Key"] == submission.idempotency_key


@pytest.mark.parametrize("task_id", ["", "  "])
def test_get_task_refuses_an_empty_id_before_any_request(clock, task_id):
    api = FakeApi()
    with client_for(api, clock) as client, pytest.raises(ValueError, match="task id is empty"):
        client.get_task(task_id)
    assert api.requests == []


def test_a_502_about_the_upstream_key_is_not_retried(clock):
    api = FakeApi()
    api.post_script = [
        json_response(502, {"message": "the image service rejected this deployment's API key"})
    ]
    with client_for(api, clock) as client, pytest.raises(UpstreamAuthError):
        client.submit_task(TaskRequest("a fox"))
    assert len(api.posts()) == 1 and clock.sleeps == []


def test_download_verifies_and_writes_atomically(tmp_path, clock):
    api = FakeApi()
    image = api.image(0, PNG, "image/png")
    with client_for(api, clock) as client:
        saved = client.download_image(image["url"], tmp_path / "a.png", expected_sha256=sha256(PNG).upper())
        assert saved.bytes == len(PNG) and saved.sha256 == sha256(PNG)
        assert (tmp_path / "a.png").read_bytes() == PNG

        (tmp_path / "b.png").write_bytes(b"old")
        with pytest.raises(ChecksumMismatchError) as caught:
            client.download_image(image["url"], tmp_path / "b.png", expected_sha256="f" * 64)
    assert caught.value.actual == sha256(PNG)
    assert (tmp_path / "b.png").read_bytes() == b"old"  # an existing file is not clobbered
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


def test_download_retries_a_5xx_from_storage(tmp_path, clock):
    api = FakeApi()
    image = api.image(0, PNG, "image/png")
    calls = {"n": 0}
    inner = api.handler

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(503, text="SlowDown")
        return inner(request)

    with ImageApiClient(API_URL, transport=httpx.MockTransport(flaky), sleep=clock.sleep) as client:
        client.download_image(image["url"], tmp_path / "a.png", expected_sha256=sha256(PNG))
    assert (tmp_path / "a.png").read_bytes() == PNG
    assert clock.sleeps == [1.0]
