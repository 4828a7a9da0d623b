"""The sweep for missed callbacks, under moto, with the upstream's task details through respx."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import boto3
import httpx
import pytest
import respx

from tests.conftest import load_event
from tests.task_fixtures import record_task, upstream_id_of

RECORD_INFO = "https://api.kie.ai/api/v1/gpt4o-image/record-info"
# Our id of the task; the upstream knows it as upstream_id_of(TASK_ID), and is only ever asked with that.
TASK_ID = "5f0c2a4b9e8d7c6b5a4f3e2d1c0b9a88"
UPSTREAM_ID = upstream_id_of(TASK_ID)


@pytest.fixture
def reconciler_env(aws_stack: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    from image_pipeline.settings import reset_settings_cache

    monkeypatch.setenv("RECONCILE_AFTER_SECONDS", "0")
    monkeypatch.setenv("RECONCILE_QUERIES_PER_SECOND", "50")
    reset_settings_cache()
    return aws_stack


def store(resources: Any) -> Any:
    from image_pipeline.adapters.tasks_table import TasksTable

    return TasksTable(resources.tasks_table)


def submitted(resources: Any, task_id: str = TASK_ID, age: timedelta = timedelta(minutes=40)) -> None:
    from image_pipeline.task_records import utc_now

    created = utc_now() - age
    # Due when the API's default RECONCILE_AFTER_SECONDS (30 minutes) has passed.
    record_task(store(resources), task_id, created=created, next_check_at=created + timedelta(minutes=30))


def details(task_id: str = UPSTREAM_ID, **fields: Any) -> httpx.Response:
    return httpx.Response(200, json={"code": 200, "msg": "success", "data": {"taskId": task_id, **fields}})


def asked_about(route: Any) -> list[str]:
    """The upstream ids the sweep asked record-info about."""
    return [call.request.url.params["taskId"] for call in route.calls]


def sweep(context: Any) -> dict[str, Any]:
    from reconciler_handler import lambda_handler

    return lambda_handler(load_event("reconciler_scheduled"), context)


def queued(resources: Any) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    got = sqs.receive_message(QueueUrl=resources.download_queue_url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in got.get("Messages", [])]


@pytest.mark.parametrize("key", ["resultUrls", "result_urls"])
def test_missed_success_is_completed_exactly_as_its_callback_would(
    reconciler_env: Any, lambda_context: Any, key: str
) -> None:
    submitted(reconciler_env)
    urls = ["https://tempfile.aiquickdraw.com/s/a.png", "https://tempfile.aiquickdraw.com/s/b.png"]
    with respx.mock:
        route = respx.get(RECORD_INFO).mock(
            return_value=details(successFlag=1, status="SUCCESS", response={key: urls})
        )
        report = sweep(lambda_context)
    assert asked_about(route) == [UPSTREAM_ID]
    assert report["checked"] == 1 and report["completed"] == 1
    task = store(reconciler_env).get_task(TASK_ID)
    assert task.status == "downloading" and task.jobsEnqueued and task.imagesExpected == 2
    assert [job["url"] for job in sorted(queued(reconciler_env), key=lambda j: j["index"])] == urls
    # A late callback after the sweep is a plain duplicate.
    from image_pipeline import wiring
    from image_pipeline.logic.callbacks import CallbackResult, handle_callback
    from image_pipeline.upstream_replies import CallbackPayload

    late = CallbackPayload.from_json(
        {"code": 200, "msg": "success", "data": {"taskId": UPSTREAM_ID, "info": {"result_urls": urls}}}
    )
    result = handle_callback(
        late,
        task=store(reconciler_env).get_task(TASK_ID),
        store=store(reconciler_env),
        queue=wiring.download_queue(reconciler_env.download_queue_url),
    )
    assert result is CallbackResult.DUPLICATE


@pytest.mark.parametrize("flag", [2, 3])
def test_missed_failure_records_the_upstream_code(
    reconciler_env: Any, lambda_context: Any, flag: int
) -> None:
    submitted(reconciler_env)
    with respx.mock:
        respx.get(RECORD_INFO).mock(
            return_value=details(successFlag=flag, errorCode=451, errorMessage="could not download filesUrl")
        )
        report = sweep(lambda_context)
    assert report["failed"] == 1
    task = store(reconciler_env).get_task(TASK_ID)
    assert task.status == "failed" and task.error.code == 451 and "filesUrl" in task.error.message


@pytest.mark.parametrize(
    ("error_code", "recorded"),
    [
        (451, 451),
        ("400", 400),
        (9999, 9999),
        ("0", 0),
        ("²", 500),  # str.isdigit() says yes, int() says no
        ("٣", 500),  # an Arabic-Indic 3: int() reads it, but it is no status code
        (10000, 500),  # past 9999: no callback could carry it
        ("10000", 500),
        (-1, 500),
        (" 400", 500),
        ("E42", 500),
        ("", 500),
        (None, 500),
        (200, 500),  # a failure is never a success
    ],
)
def test_an_upstream_error_code_is_an_ascii_integer_up_to_9999_or_500(error_code: Any, recorded: int) -> None:
    from image_pipeline.logic.reconcile import payload_from_details
    from image_pipeline.upstream_replies import TaskDetails

    payload = payload_from_details(TaskDetails(taskId=TASK_ID, successFlag=2, errorCode=error_code))
    assert payload is not None and payload.code == recorded and not payload.succeeded


@pytest.mark.parametrize("age", [timedelta(minutes=40), timedelta(days=15)])
@pytest.mark.parametrize("error_code", ["²", 10000])
def test_a_failure_with_an_unreadable_code_ends_the_task_failed_500(
    reconciler_env: Any, lambda_context: Any, error_code: Any, age: timedelta
) -> None:
    """Within the retention or past it: never a task that stays submitted, sweep after sweep."""
    submitted(reconciler_env, age=age)
    with respx.mock:
        respx.get(RECORD_INFO).mock(
            return_value=details(successFlag=2, errorCode=error_code, errorMessage="odd failure")
        )
        report = sweep(lambda_context)
    assert report["failed"] == 1 and not report["errors"], report
    task = store(reconciler_env).get_task(TASK_ID)
    assert (task.status, task.error.code, task.error.message) == ("failed", 500, "odd failure")


def test_past_the_retention_details_no_callback_could_carry_end_the_task_expired(
    reconciler_env: Any, lambda_context: Any
) -> None:
    """The retention comes first: details that cannot stand in for a callback (here a foreign taskId)
    fail the sweep of a young task, which is tried again, but end a task past 14 days."""
    submitted(reconciler_env, age=timedelta(days=15))
    with respx.mock:
        respx.get(RECORD_INFO).mock(
            return_value=details(task_id="not/a task id", successFlag=2, errorCode=400)
        )
        report = sweep(lambda_context)
    assert report["gave_up"] == 1 and not report["errors"], report
    task = store(reconciler_env).get_task(TASK_ID)
    assert task.status == "failed" and task.error.code == "expired"


def test_still_generating_is_left_alone(reconciler_env: Any, lambda_context: Any) -> None:
    submitted(reconciler_env)
    with respx.mock:
        respx.get(RECORD_INFO).mock(return_value=details(successFlag=0, progress="0.40"))
        report = sweep(lambda_context)
    assert report["still_generating"] == 1
    assert store(reconciler_env).get_task(TASK_ID).status == "submitted"


def test_young_tasks_are_not_polled(aws_stack: Any, lambda_context: Any) -> None:
    submitted(aws_stack, age=timedelta(minutes=1))  # default threshold: 30 minutes
    with respx.mock:
        route = respx.get(RECORD_INFO).mock(return_value=details(successFlag=0))
        report = sweep(lambda_context)
    assert report["checked"] == 0 and not route.called


def test_gives_up_after_the_upstream_retention_with_a_clear_failure(
    reconciler_env: Any, lambda_context: Any
) -> None:
    submitted(reconciler_env, age=timedelta(days=15))
    with respx.mock:
        route = respx.get(RECORD_INFO).mock(
            return_value=httpx.Response(
                200, json={"code": 422, "msg": "Temporarily supports records within 14 days"}
            )
        )
        report = sweep(lambda_context)
    assert asked_about(route) == [UPSTREAM_ID]
    assert report["gave_up"] == 1
    task = store(reconciler_env).get_task(TASK_ID)
    assert task.status == "failed" and task.error.code == "expired" and "14-day" in task.error.message


def test_stranded_enqueue_is_resumed(reconciler_env: Any, lambda_context: Any) -> None:
    from image_pipeline.task_records import utc_now

    submitted(reconciler_env)
    # The callback's DynamoDB write happened, its SQS send did not (crash): a minute ago.
    store(reconciler_env).start_downloading(
        TASK_ID,
        UPSTREAM_ID,
        ["https://tempfile.aiquickdraw.com/s/a.png"],
        utc_now() - timedelta(minutes=1),
        utc_now() - timedelta(minutes=1),
    )
    with respx.mock:
        report = sweep(lambda_context)
    assert report["resumed"] == 1
    assert len(queued(reconciler_env)) == 1
    assert store(reconciler_env).get_task(TASK_ID).jobsEnqueued


def test_rate_limit_stops_the_sweep_without_changes(reconciler_env: Any, lambda_context: Any) -> None:
    for index in range(3):
        submitted(reconciler_env, task_id=f"{index:032x}")
    with respx.mock:
        route = respx.get(RECORD_INFO).mock(
            return_value=httpx.Response(429, json={"code": 429, "msg": "slow down"})
        )
        report = sweep(lambda_context)
    assert route.call_count == 1 and report["errors"]
    assert all(store(reconciler_env).get_task(f"{i:032x}").status == "submitted" for i in range(3))


def notify_messages(resources: Any) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    got = sqs.receive_message(QueueUrl=resources.queues["NotificationQueue"].url, MaxNumberOfMessages=10)
    return [json.loads(message["Body"]) for message in got.get("Messages", [])]


def test_a_submit_never_confirmed_ends_failed_past_its_bound_and_one_within_it_waits(
    reconciler_env: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from image_pipeline.settings import reset_settings_cache
    from image_pipeline.task_records import utc_now

    monkeypatch.setenv("SUBMIT_UNCONFIRMED_AFTER_SECONDS", "3600")
    reset_settings_cache()
    # Given two tasks whose generate call got no answer and whose callback never came (no upstream
    # id, so nothing to ask the upstream about), both due: one submitted 61 minutes ago, past
    # SUBMIT_UNCONFIRMED_AFTER_SECONDS, one 40 minutes ago, due early (the bound was 30 minutes then)
    tasks = store(reconciler_env)
    lost, young = TASK_ID, "0123456789abcdef0123456789abcdef"
    for task_id, age in ((lost, timedelta(minutes=61)), (young, timedelta(minutes=40))):
        created = utc_now() - age
        record_task(
            tasks, task_id, confirmed=False, created=created, next_check_at=created + timedelta(minutes=30)
        )
    # When the reconciler sweeps
    with respx.mock:  # any upstream call fails the sweep's errors below
        report = sweep(lambda_context)
    assert report["errors"] == [] and report["checked"] == 0
    # Then the one past its bound ends failed, submit_unconfirmed, and its end is announced
    assert report["unconfirmed"] == 1
    ended = tasks.get_task(lost)
    assert ended.status == "failed" and ended.error.code == "submit_unconfirmed"
    assert "1 h" in ended.error.message
    assert ended.notifyPending and ended.nextCheckAt is not None
    assert notify_messages(reconciler_env) == [{"notifyTask": lost}]
    # and the other is pushed back to its own bound, still submitting, and not looked at before then
    waiting = tasks.get_task(young)
    assert waiting.status == "submitting" and waiting.error is None and waiting.checks == 1
    bound = datetime.fromisoformat(waiting.createdAt) + timedelta(hours=1)
    assert datetime.fromisoformat(waiting.nextCheckAt) == bound
    with respx.mock:
        again = sweep(lambda_context)
    assert again["unconfirmed"] == 0 and again["errors"] == []
    assert tasks.get_task(young).checks == 1


def test_pacer_keeps_queries_under_the_rate() -> None:
    from image_pipeline.logic.reconcile import Pacer

    now = [100.0]
    queried_at: list[float] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    pacer = Pacer(per_second=3, sleep=sleep, monotonic=lambda: now[0])
    for _ in range(7):
        pacer.wait()
        queried_at.append(now[0])
    # Never more than 3 queries in any one-second window.
    assert all(
        later - earlier >= 1.0 - 1e-9 for earlier, later in zip(queried_at, queried_at[3:], strict=False)
    )


DOWNLOAD_URL = "https://api.kie.ai/api/v1/gpt4o-image/download-url"
SOURCE_URLS = ["https://tempfile.aiquickdraw.com/s/a.png", "https://tempfile.aiquickdraw.com/s/b.png"]


def dead_lettered(
    resources: Any, task_id: str = TASK_ID, *, called_back: timedelta, stored: tuple[int, ...] = ()
) -> None:
    """A downloading task whose jobs were sent long ago and never finished (they sit in the DLQ)."""
    from image_pipeline.task_records import StoredImage, utc_now

    submitted(resources, task_id, age=called_back + timedelta(minutes=1))
    at = utc_now() - called_back
    tasks = store(resources)
    # Due when the callback's default DOWNLOAD_CHECK_AFTER_SECONDS (10 minutes) has passed.
    assert tasks.start_downloading(
        task_id, upstream_id_of(task_id), SOURCE_URLS, at, at + timedelta(minutes=10)
    )
    tasks.mark_jobs_enqueued(task_id, at)
    for index in stored:
        image = StoredImage(
            index=index, key=f"images/{task_id}/{index}.png", contentType="image/png", bytes=1, sha256="0"
        )
        tasks.add_image(task_id, image, at)
    tasks.note_download_error(task_id, "image 1: http_status: 503 from the image host", at)


def fresh_link(request: httpx.Request) -> httpx.Response:
    source = json.loads(request.content)["url"]
    return httpx.Response(200, json={"code": 200, "msg": "success", "data": source + "?fresh=1"})


def test_missing_images_of_a_stuck_download_are_requeued_with_fresh_links(
    reconciler_env: Any, lambda_context: Any
) -> None:
    # Given a task downloading for 20 minutes, image 0 stored, image 1's job dead-lettered
    dead_lettered(reconciler_env, called_back=timedelta(minutes=20), stored=(0,))
    # When the reconciler sweeps
    with respx.mock:
        remint = respx.post(DOWNLOAD_URL).mock(side_effect=fresh_link)
        report = sweep(lambda_context)
    # Then only the missing image is queued again, on a freshly minted link naming its source (asked
    # for under the upstream's id of the task)
    assert report["requeued"] == 1 and remint.call_count == 1
    assert json.loads(remint.calls.last.request.content) == {"taskId": UPSTREAM_ID, "url": SOURCE_URLS[1]}
    assert queued(reconciler_env) == [
        {"taskId": TASK_ID, "index": 1, "url": SOURCE_URLS[1] + "?fresh=1", "sourceUrl": SOURCE_URLS[1]}
    ]
    # and the task is looked at again later, not at every sweep
    from image_pipeline.task_records import utc_now

    task = store(reconciler_env).get_task(TASK_ID)
    assert task.status == "downloading" and task.requeues == 1
    assert task.nextCheckAt > utc_now().isoformat()
    with respx.mock:
        assert sweep(lambda_context)["requeued"] == 0


def test_a_download_that_never_succeeds_ends_failed_past_the_bound(
    reconciler_env: Any, lambda_context: Any
) -> None:
    # Given a task whose images have failed to download for longer than DOWNLOAD_GIVE_UP_SECONDS (6 h)
    dead_lettered(reconciler_env, called_back=timedelta(hours=6, minutes=5), stored=(0,))
    with respx.mock:
        report = sweep(lambda_context)
    # Then it ends failed, naming the images and the last reason
    assert report["download_failed"] == 1
    task = store(reconciler_env).get_task(TASK_ID)
    assert task.status == "failed" and task.error.code == "download_failed"
    assert "image(s) 1 " in task.error.message and "503 from the image host" in task.error.message
    # ended: its end is announced (the notify outbox), and the mark stays for the notifier to clear
    assert task.notifyPending and task.nextCheckAt is not None
    notifications = boto3.client("sqs", region_name="us-east-1").receive_message(
        QueueUrl=reconciler_env.queues["NotificationQueue"].url, MaxNumberOfMessages=10
    )["Messages"]
    assert [json.loads(message["Body"]) for message in notifications] == [{"notifyTask": TASK_ID}]
    assert queued(reconciler_env) == []


def test_stuck_tasks_cannot_starve_a_newer_one(
    reconciler_env: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from image_pipeline.settings import reset_settings_cache

    # Given a sweep cap of 3 and three old stuck downloads whose links cannot be renewed right now
    monkeypatch.setenv("RECONCILE_MAX_TASKS", "3")
    reset_settings_cache()
    for index in range(3):
        dead_lettered(reconciler_env, f"{index:032x}", called_back=timedelta(hours=2))
    # and a newer task whose jobs dead-lettered too
    dead_lettered(reconciler_env, called_back=timedelta(minutes=15))
    with respx.mock:
        respx.post(DOWNLOAD_URL).mock(return_value=httpx.Response(500, json={"code": 500, "msg": "down"}))
        first = sweep(lambda_context)
        second = sweep(lambda_context)
    # Then the first sweep takes the three most overdue and pushes them back; the second reaches the newer
    assert first["requeued"] == 6 and second["requeued"] == 2
    requeued_tasks = {job["taskId"] for job in queued(reconciler_env) + queued(reconciler_env)}
    assert TASK_ID in requeued_tasks


def test_a_still_generating_task_is_pushed_back_not_polled_every_sweep(
    reconciler_env: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from image_pipeline.settings import reset_settings_cache

    monkeypatch.setenv("RECONCILE_AFTER_SECONDS", "60")  # the first push-back: a minute
    reset_settings_cache()
    submitted(reconciler_env)
    with respx.mock:
        route = respx.get(RECORD_INFO).mock(return_value=details(successFlag=0, progress="0.40"))
        sweep(lambda_context)
        sweep(lambda_context)
    assert route.call_count == 1
    assert store(reconciler_env).get_task(TASK_ID).checks == 1


def test_an_invocation_with_nothing_to_count_logs_no_powertools_warning() -> None:
    import importlib
    import warnings

    from image_pipeline import observability

    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        importlib.reload(observability)  # the module's own filter, as at a cold start
        observability.metrics_for("quiet").flush_metrics()
    assert not [w for w in caught if "No application metrics" in str(w.message)]


MARKET_RECORD_INFO = "https://api.kie.ai/api/v1/jobs/recordInfo"


def market_submitted(resources: Any, model: str = "google/imagen4-fast") -> None:
    from image_pipeline.task_records import utc_now

    created = utc_now() - timedelta(minutes=40)
    record_task(
        store(resources),
        TASK_ID,
        created=created,
        next_check_at=created + timedelta(minutes=30),
        options={"model": model, "input": {"prompt": "a lighthouse", "num_images": "2"}},
    )


def test_a_market_task_whose_callback_never_came_is_finished_through_record_info(
    reconciler_env: Any, lambda_context: Any
) -> None:
    market_submitted(reconciler_env)
    urls = ["https://tempfile.aiquickdraw.com/images/a.png", "https://tempfile.aiquickdraw.com/images/b.png"]
    with respx.mock:
        route = respx.get(MARKET_RECORD_INFO).mock(
            return_value=details(
                model="google/imagen4-fast",
                state="success",
                resultJson=json.dumps({"resultUrls": urls}),
                failCode=None,
                failMsg=None,
                costTime=12,
            )
        )
        report = sweep(lambda_context)
    assert asked_about(route) == [UPSTREAM_ID]
    assert report["completed"] == 1
    task = store(reconciler_env).get_task(TASK_ID)
    assert task.status == "downloading" and task.imagesExpected == 2
    assert [job["url"] for job in sorted(queued(reconciler_env), key=lambda j: j["index"])] == urls


@pytest.mark.parametrize("state", ["waiting", "queuing", "generating"])
def test_a_running_market_task_is_left_alone(reconciler_env: Any, lambda_context: Any, state: str) -> None:
    market_submitted(reconciler_env)
    with respx.mock:
        respx.get(MARKET_RECORD_INFO).mock(return_value=details(state=state, resultJson="", failCode=None))
        report = sweep(lambda_context)
    assert report["still_generating"] == 1
    assert store(reconciler_env).get_task(TASK_ID).status == "submitted"


def test_a_failed_market_task_keeps_its_fail_code_and_message(
    reconciler_env: Any, lambda_context: Any
) -> None:
    market_submitted(reconciler_env)
    with respx.mock:
        respx.get(MARKET_RECORD_INFO).mock(
            return_value=details(
                state="fail", resultJson=None, failCode="500", failMsg="Internal server error"
            )
        )
        report = sweep(lambda_context)
    assert report["failed"] == 1
    task = store(reconciler_env).get_task(TASK_ID)
    assert task.status == "failed" and task.error.code == 501
    assert task.error.message == "Internal server error (failCode 500)"
