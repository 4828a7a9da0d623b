"""The Market in the emulator: endpoints, errors in the body, states, images, callbacks, fault switches."""

from __future__ import annotations

import json
import re
import time

import pytest
from emulator_helpers import FLUX_RECORD, api, finished, record, submit
from market_helpers import (
    COMMON_DOWNLOAD_URL,
    CREATE_TASK,
    NO_POLL_LIMIT,
    RECORD_INFO,
    create_task,
    image_of,
    record_info,
    result_urls,
    submit_market,
)

from devstack.emulator import sign
from tests.http_fixtures import Reply, image_server, png_bytes

BANANA = "google/nano-banana"
INPUT_IMAGE = "<an image on a loopback host>"  # stands for the test's image server URL
PENDING_KEYS = {
    "taskId", "model", "state", "param", "resultJson", "failCode", "failMsg", "costTime", "completeTime",
    "createTime",
}  # fmt: skip
RESULT_RE = re.compile(r"^http://127\.0\.0\.1:\d+/s/([0-9a-f]{32})_(\d)_(\d{10})_(\d{4})\.(png|jpg|webp)$")
MAGIC = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def _done(client, server, task_id: str) -> dict:
    finished(server, task_id)
    return record_info(client, task_id)["data"]


# ---------------------------------------------------------------------------------------- endpoints
@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_both_market_endpoints_want_the_bearer_key_and_answer_401_in_the_body(emulator, key):
    server = emulator()
    with api(server, key) as client:
        created = client.post(CREATE_TASK, json={"model": BANANA, "input": {"prompt": "x"}})
        details = client.get(RECORD_INFO, params={"taskId": "0" * 32})
    for reply in (created, details):
        assert reply.status_code == 200
        assert reply.json() == {"code": 401, "msg": "You do not have access permissions", "data": None}


def test_wrong_methods_are_405(emulator):
    server = emulator()
    with api(server) as client:
        assert client.get(CREATE_TASK).status_code == 405
        assert client.post(RECORD_INFO).status_code == 405


def test_create_task_answers_task_and_record_ids_and_record_info_walks_through_the_states(emulator):
    # Given generations that take two seconds
    server = emulator(generation_seconds=2.0, **NO_POLL_LIMIT)
    with api(server) as client:
        # When a Market task is created and polled until it ends
        reply = create_task(client, BANANA, prompt="a banana in space")
        task_id = reply["data"]["taskId"]
        seen: list[str] = []
        first = record_info(client, task_id)["data"]
        for _ in range(200):
            state = record_info(client, task_id)["data"]["state"]
            if not seen or seen[-1] != state:
                seen.append(state)
            if state in ("success", "fail"):
                break
            time.sleep(0.02)
    # Then createTask answered taskId and an equal recordId (as live answers do)
    assert reply == {"code": 200, "msg": "success", "data": {"taskId": task_id, "recordId": task_id}}
    assert re.fullmatch(r"[0-9a-f]{32}", task_id)
    # And the task went waiting -> queuing -> generating -> success
    assert seen == ["waiting", "queuing", "generating", "success"], seen
    # And a pending record has the live shape: no updateTime, empty resultJson, null failure fields
    assert set(first) == PENDING_KEYS
    assert first["resultJson"] == "" and first["failCode"] is None and first["failMsg"] is None
    assert first["costTime"] is None and first["completeTime"] is None and first["model"] == BANANA


def test_param_is_the_request_as_a_string_with_input_encoded_twice(emulator):
    server = emulator()
    with api(server) as client:
        body = {"model": BANANA, "callBackUrl": "http://127.0.0.1:9/cb?t=1", "input": {"prompt": "x"}}
        task_id = client.post(CREATE_TASK, json=body).json()["data"]["taskId"]
        param = record_info(client, task_id)["data"]["param"]
    decoded = json.loads(param)
    assert decoded == {"input": '{"prompt":"x"}', "callBackUrl": "http://127.0.0.1:9/cb?t=1", "model": BANANA}
    assert json.loads(decoded["input"]) == body["input"]


def test_a_finished_record_has_seconds_milliseconds_and_the_result_list_as_a_string(emulator):
    server = emulator(generation_seconds=0.2)
    with api(server) as client:
        task_id = submit_market(client, BANANA, prompt="x")
        data = _done(client, server, task_id)
    assert data["state"] == "success" and set(data) == PENDING_KEYS
    assert isinstance(data["resultJson"], str) and len(result_urls(data)) == 1
    assert data["completeTime"] >= data["createTime"] > 1_600_000_000_000
    assert isinstance(data["costTime"], int) and data["costTime"] < 60  # seconds


@pytest.mark.parametrize(
    ("params", "code", "msg"),
    [({}, 400, "taskId parameter is required"), ({"taskId": "f" * 32}, 422, "recordInfo is null")],
)
def test_record_info_errors_come_in_the_body(emulator, params, code, msg):
    server = emulator()
    with api(server) as client:
        reply = client.get(RECORD_INFO, params=params)
    assert reply.status_code == 200 and reply.json() == {"code": code, "msg": msg, "data": None}


def test_each_api_sees_only_its_own_tasks(emulator):
    server = emulator()
    with api(server) as client:
        market = submit_market(client, BANANA, prompt="x")
        four_o = submit(client)
        assert record_info(client, four_o)["msg"] == "recordInfo is null"
        assert record(client, market)["msg"] == "record is null"
        assert client.get(FLUX_RECORD, params={"taskId": market}).json()["msg"] == "record is null"
    assert server.inspect_task(market)["api"] == "market"


# ---------------------------------------------------------------------------------------- submit errors
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "google/pro-image-to-image", "input": {"prompt": "x"}}, "model: "),
        ({"input": {"prompt": "x"}}, "model: This field is required"),
        ({"model": BANANA}, "input: This field is required"),
        ({"model": BANANA, "input": ["x"]}, "input: must be an object"),
        ({"model": BANANA, "input": {"prompt": "x", "aspect_ratio": "1:1"}}, "input.aspect_ratio: "),
        ({"model": BANANA, "input": {"prompt": "x", "image_size": "7:5"}}, "input.image_size: "),
        ({"model": BANANA, "input": {"image_size": "1:1"}}, "input.prompt: This field is required"),
        (
            {"model": "nano-banana-2", "input": {"prompt": "x", "google_search": True}},
            "input.google_search: ",
        ),
        ({"model": "google/imagen4-fast", "input": {"prompt": "x", "num_images": 2}}, "input.num_images: "),
        ({"model": BANANA, "input": {"prompt": "x"}, "callBackUrl": "ftp://x"}, "callBackUrl: "),
        ([1, 2], "Format Error"),
    ],
)
def test_invalid_requests_are_422_in_an_http_200(emulator, body, message):
    server = emulator()
    with api(server) as client:
        reply = client.post(CREATE_TASK, json=body)
    assert reply.status_code == 200
    assert reply.json()["code"] == 422 and reply.json()["msg"].startswith(message), reply.json()
    assert server.core.task_ids() == []


def test_the_21st_new_task_in_10_seconds_is_429_in_the_body_counting_4o_tasks_too(emulator):
    server = emulator(generation_seconds=5)
    with api(server) as client:
        for _ in range(10):
            submit(client)
        replies = [
            client.post(CREATE_TASK, json={"model": BANANA, "input": {"prompt": "x"}}) for _ in range(11)
        ]
    assert [r.json()["code"] for r in replies] == [200] * 10 + [429]
    assert replies[-1].status_code == 200  # the Market's 429 is in the body, unlike 4o's


@pytest.mark.parametrize("code", [455, 500, 505])
def test_submit_faults_answer_their_code_in_the_body(emulator, code):
    server = emulator()
    with api(server) as client:
        reply = client.post(
            CREATE_TASK, json={"model": BANANA, "input": {"prompt": f"x [fault:submit={code}]"}}
        )
        mirrored = client.post(
            CREATE_TASK, json={"model": BANANA, "input": {"prompt": f"x [fault:submit={code},mirror_http]"}}
        )
    assert reply.status_code == 200 and reply.json()["code"] == code
    assert mirrored.status_code == code and mirrored.json()["code"] == code


def test_credits_are_charged_per_image_refunded_on_failure_and_402_when_short(emulator):
    server = emulator(credits=30, credits_per_image=6)
    with api(server) as client:
        four = submit_market(client, "google/imagen4-fast", prompt="x", num_images="4")
        assert client.get("/api/v1/chat/credit").json()["data"] == 6
        short = create_task(client, "google/imagen4-fast", prompt="x", num_images="2")
        failing = submit_market(client, BANANA, prompt="x [fault:fail=500]")
        finished(server, failing)
        finished(server, four)
        balance = client.get("/api/v1/chat/credit").json()["data"]
    assert short == {"code": 402, "msg": "The current credits are insufficient. Please top up.", "data": None}
    assert balance == 6  # the failed task's 6 came back


def test_an_unknown_fault_marker_in_the_prompt_is_a_422(emulator):
    server = emulator()
    with api(server) as client:
        reply = create_task(client, BANANA, prompt="x [fault:nonsense]")
    assert reply["code"] == 422 and "emulator fault marker" in reply["msg"]


# ---------------------------------------------------------------------------------------- images
@pytest.mark.parametrize(
    ("model", "given", "count", "fmt", "size"),
    [
        (BANANA, {"image_size": "16:9"}, 1, "PNG", (1360, 765)),
        (BANANA, {"image_size": "auto", "output_format": "jpeg"}, 1, "JPEG", (1024, 1024)),
        (
            "nano-banana-pro",
            {"aspect_ratio": "4:5", "resolution": "2K", "output_format": "jpg"},
            1,
            "JPEG",
            None,
        ),
        ("nano-banana-2", {"aspect_ratio": "1:4"}, 1, "JPEG", (512, 2048)),  # its default format is jpg
        ("seedream/4.5-text-to-image", {"aspect_ratio": "21:9", "quality": "high"}, 1, "PNG", None),
        ("gpt-image/1.5-text-to-image", {"aspect_ratio": "2:3", "quality": "high"}, 1, "PNG", (1024, 1536)),
        ("flux-2/pro-text-to-image", {"aspect_ratio": "3:4", "resolution": "2K"}, 1, "PNG", None),
        ("google/imagen4-fast", {"num_images": "4"}, 4, "PNG", None),  # 16:9 by default
        ("qwen/image-edit", {"image_url": INPUT_IMAGE, "num_images": "3"}, 3, "PNG", (1024, 768)),
        ("ideogram/v3-text-to-image", {"image_size": "portrait_16_9"}, 1, "PNG", (576, 1024)),
    ],
)
def test_results_are_real_images_in_the_asked_ratio_resolution_format_and_number(
    emulator, model, given, count, fmt, size
):
    server = emulator(generation_seconds=0.1)
    with image_server() as host, api(server) as client:
        # an edit model's input image is fetched: from a loopback image host
        served = host.serve("/a.png", Reply(200, png_bytes()))
        given = {name: served if value == INPUT_IMAGE else value for name, value in given.items()}
        task_id = submit_market(client, model, prompt=f"{model} test", **given)
        data = _done(client, server, task_id)
        urls = result_urls(data)
        images = [image_of(client, url) for url in urls]
    assert len(urls) == count == len({RESULT_RE.match(url)[2] for url in urls})
    assert all(RESULT_RE.match(url)[1] == task_id for url in urls)
    ratio = given.get("aspect_ratio") or given.get("image_size")
    for got_format, (width, height), content_type in images:
        assert got_format == fmt and content_type == MAGIC[fmt]
        if size:
            assert (width, height) == size
        if ratio and ":" in ratio:
            w, h = map(int, ratio.split(":"))
            assert width * h == height * w  # exactly the ratio
    if model == "google/imagen4-fast":
        assert images[0][1][0] * 9 == images[0][1][1] * 16
    if model == "seedream/4.5-text-to-image":
        assert max(images[0][1]) > 4096 * 0.9  # quality high: 4K


@pytest.mark.parametrize(("switch", "fmt", "extension"), [("webp", "WEBP", "webp"), ("jpeg", "JPEG", "jpg")])
def test_market_format_chooses_the_format_of_models_without_a_format_field(emulator, switch, fmt, extension):
    server = emulator(generation_seconds=0.1)
    with api(server) as client:
        chosen = submit_market(client, "google/imagen4", prompt=f"x [fault:market_format={switch}]")
        asked = submit_market(client, BANANA, prompt=f"x [fault:market_format={switch}]")  # has a field: png
        url = result_urls(_done(client, server, chosen))[0]
        kept = result_urls(_done(client, server, asked))[0]
        assert url.endswith("." + extension) and image_of(client, url)[0] == fmt
        assert kept.endswith(".png") and image_of(client, kept)[0] == "PNG"


def test_the_common_download_url_re_mints_market_links_and_the_4o_one_does_not(emulator):
    server = emulator(generation_seconds=0.1)
    with api(server) as client:
        task_id = submit_market(client, "google/imagen4-fast", prompt="x [fault:stale_links]", num_images="2")
        urls = result_urls(_done(client, server, task_id))
        assert client.get(urls[1]).status_code == 403  # the result URL has expired
        minted = client.post(COMMON_DOWNLOAD_URL, json={"url": urls[1]}).json()
        four_o = client.post(
            "/api/v1/gpt4o-image/download-url", json={"taskId": task_id, "url": urls[1]}
        ).json()
        fresh = image_of(client, minted["data"])
    assert minted["code"] == 200 and "X-Amz-Signature=" in minted["data"] and "_1_" in minted["data"]
    assert four_o["code"] == 422 and four_o["msg"] == "record is null"
    assert fresh[0] == "PNG"


def test_expired_makes_result_and_minted_links_answer_403(emulator):
    server = emulator(generation_seconds=0.1)
    with api(server) as client:
        task_id = submit_market(client, BANANA, prompt="x [fault:expired]")
        url = result_urls(_done(client, server, task_id))[0]
        minted = client.post(COMMON_DOWNLOAD_URL, json={"url": url}).json()["data"]
        assert client.get(url).status_code == 403
        assert client.get(minted).status_code == 403


# ---------------------------------------------------------------------------------------- callbacks
def test_success_callback_is_record_info_shaped_and_signed(emulator, receiver):
    hook = receiver()
    server = emulator(hmac_key="whsec-test", generation_seconds=0.1)
    with api(server) as client:
        task_id = submit_market(client, "google/imagen4-fast", hook.url, prompt="x", num_images="2")
        [delivered] = hook.wait_for(1)
        data = record_info(client, task_id)["data"]
    body = delivered["body"]
    assert body["code"] == 200 and body["msg"] == "Playground task completed successfully."
    assert set(body["data"]) == {
        "taskId", "model", "state", "param", "resultJson", "costTime", "completeTime", "createTime",
        "updateTime", "creditsConsumed",
    }  # fmt: skip
    assert body["data"]["state"] == "success" and body["data"]["model"] == "google/imagen4-fast"
    assert result_urls(body["data"]) == result_urls(data) and len(result_urls(data)) == 2
    assert body["data"]["param"] == data["param"] and body["data"]["creditsConsumed"] > 0
    assert body["data"]["updateTime"] == body["data"]["completeTime"] == data["completeTime"]
    assert "info" not in body["data"]
    timestamp = delivered["headers"]["X-Webhook-Timestamp"]
    assert delivered["headers"]["X-Webhook-Signature"] == sign("whsec-test", task_id, timestamp)


@pytest.mark.parametrize(("fail", "fail_code"), [(400, "400"), (500, "500"), (501, "501"), (451, "500")])
def test_a_failure_is_code_501_with_the_reason_in_fail_code(emulator, receiver, fail, fail_code):
    hook = receiver()
    server = emulator(generation_seconds=0.1)
    with api(server) as client:
        task_id = submit_market(client, BANANA, hook.url, prompt=f"x [fault:fail={fail}]")
        [delivered] = hook.wait_for(1)
        data = record_info(client, task_id)["data"]
    body = delivered["body"]
    assert body["code"] == 501 and body["msg"] == "Playground task failed."
    assert body["data"]["state"] == "fail" and body["data"]["failCode"] == fail_code
    assert body["data"]["failMsg"] and body["data"]["creditsConsumed"] == 0
    assert "resultJson" not in body["data"] and "info" not in body["data"]
    assert data["state"] == "fail" and data["failCode"] == fail_code and data["resultJson"] == ""
    assert data["failMsg"] == body["data"]["failMsg"]


def test_market_fail_code_reason_sends_the_fail_code_as_the_callback_code(emulator, receiver):
    hook = receiver()
    server = emulator(generation_seconds=0.1)
    with api(server) as client:
        submit_market(client, BANANA, hook.url, prompt="x [fault:fail=400,market_fail_code=reason]")
        [delivered] = hook.wait_for(1)
    assert delivered["body"]["code"] == 400 and delivered["body"]["data"]["failCode"] == "400"


def test_market_blank_empty_gives_empty_strings_for_a_task_that_did_not_fail(emulator):
    server = emulator(generation_seconds=0.1)
    with api(server) as client:
        task_id = submit_market(client, BANANA, prompt="x [fault:market_blank=empty]")
        data = _done(client, server, task_id)
    assert data["failCode"] == "" and data["failMsg"] == ""


def test_drop_duplicate_and_task_key_apply_to_market_callbacks(emulator, receiver):
    hook = receiver()
    server = emulator(generation_seconds=0.1)
    with api(server) as client:
        dropped = submit_market(client, BANANA, hook.url, prompt="x [fault:drop]")
        doubled = submit_market(client, BANANA, hook.url, prompt="x [fault:duplicate=2,task_key=both]")
        requests = hook.wait_for(2)
        finished(server, dropped)
        time.sleep(0.2)
    assert [r["body"]["data"]["taskId"] for r in hook.requests] == [doubled, doubled]
    assert requests[0]["body"]["data"]["task_id"] == doubled
    assert server.deliveries(dropped) == [
        {"reason": "final", "dropped": True, "at": pytest.approx(time.time(), abs=5)}
    ]


def test_stall_keeps_a_task_generating_until_admin_completes_it_and_redeliver_resends(emulator, receiver):
    hook = receiver()
    server = emulator(generation_seconds=0.05, **NO_POLL_LIMIT)
    with api(server) as client:
        task_id = submit_market(client, BANANA, hook.url, prompt="x [fault:stall]")
        time.sleep(0.3)
        assert record_info(client, task_id)["data"]["state"] == "generating"
        assert server.complete_task(task_id, fail=500, message="gave up")
        [first] = hook.wait_for(1)
        assert server.redeliver(task_id)
        second = hook.wait_for(2)[1]
        data = record_info(client, task_id)["data"]
    assert first["body"] == second["body"] and first["body"]["data"]["failMsg"] == "gave up"
    assert data["state"] == "fail" and data["failCode"] == "500"


def test_record_info_is_limited_to_10_queries_per_second_per_task(emulator):
    server = emulator(generation_seconds=5)
    with api(server) as client:
        task_id = submit_market(client, BANANA, prompt="x")
        replies = [client.get(RECORD_INFO, params={"taskId": task_id}) for _ in range(11)]
    assert [r.json()["code"] for r in replies] == [200] * 10 + [429]
    assert replies[-1].status_code == 200
