"""Flux Kontext in the emulator: endpoints, validation, lifecycle, images, links, callbacks, faults."""

from __future__ import annotations

import hashlib
import io
import re
import time

import httpx
import pytest
from emulator_helpers import (
    FLUX_GENERATE,
    FLUX_RECORD,
    api,
    finished,
    flux_generate,
    flux_record,
    flux_submit,
    generate,
    record,
    submit,
)
from PIL import Image

from devstack.emulator import sign

RESULT_RE = re.compile(r"^http://127\.0\.0\.1:\d+/s/([0-9a-f]{32})_0_(\d{10})_(\d{4})\.(jpg|png)$")
ORIGIN_RE = re.compile(r"^http://127\.0\.0\.1:\d+/s/([0-9a-f]{32})_origin_(\d{10})_(\d{4})\.(jpg|png)$")
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
DETAIL_KEYS = {
    "taskId",
    "paramJson",
    "completeTime",
    "response",
    "successFlag",
    "errorCode",
    "errorMessage",
    "createTime",
}
RATIOS = {"21:9": (21, 9), "16:9": (16, 9), "4:3": (4, 3), "1:1": (1, 1), "3:4": (3, 4), "9:16": (9, 16)}


def _done(client: httpx.Client, server, task_id: str) -> dict:
    finished(server, task_id)
    return flux_record(client, task_id)["data"]


# ---------------------------------------------------------------------------------------- endpoints
@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_both_flux_endpoints_want_the_bearer_key(emulator, key):
    server = emulator()
    with api(server, key) as client:
        submitted = client.post(FLUX_GENERATE, json={"prompt": "x"})
        details = client.get(FLUX_RECORD, params={"taskId": "0" * 32})
    for reply in (submitted, details):
        assert reply.status_code == 200
        assert reply.json() == {"code": 401, "msg": "You do not have access permissions", "data": None}


def test_wrong_methods_are_405(emulator):
    server = emulator()
    with api(server) as client:
        assert client.get(FLUX_GENERATE).status_code == 405
        assert client.post(FLUX_RECORD).status_code == 405


def test_generate_answers_a_task_id_and_record_info_follows_the_task(emulator):
    # Given an emulator whose generations take a moment
    server = emulator(generation_seconds=0.3)
    with api(server) as client:
        # When a Flux Kontext task is submitted
        reply = flux_generate(client, prompt="a red fox in the snow", aspectRatio="21:9")
        task_id = reply["data"]["taskId"]
        running = flux_record(client, task_id)
        done = _done(client, server, task_id)
    # Then generate answers the 4o envelope with a 32-hex task id
    assert reply["code"] == 200 and reply["msg"] == "success"
    assert re.fullmatch(r"[0-9a-f]{32}", task_id)
    # And record-info has the Flux reference's shape: no status, no progress, ISO times
    assert running["code"] == 200 and set(running["data"]) == DETAIL_KEYS
    assert running["data"]["successFlag"] == 0 and running["data"]["response"] is None
    assert running["data"]["completeTime"] is None and ISO_RE.match(running["data"]["createTime"])
    assert running["data"]["errorCode"] is None and running["data"]["errorMessage"] == ""
    assert set(done) == DETAIL_KEYS and done["successFlag"] == 1 and ISO_RE.match(done["completeTime"])
    assert set(done["response"]) == {"originImageUrl", "resultImageUrl"}
    assert RESULT_RE.match(done["response"]["resultImageUrl"])[1] == task_id
    assert ORIGIN_RE.match(done["response"]["originImageUrl"])[1] == task_id
    assert done["paramJson"] == '{"prompt":"a red fox in the snow","aspectRatio":"21:9"}'


def test_record_info_needs_a_known_task_id(emulator):
    server = emulator()
    with api(server) as client:
        missing = client.get(FLUX_RECORD).json()
        unknown = flux_record(client, "f" * 32)
    assert (missing["code"], missing["msg"]) == (422, "taskId: This field is required")
    assert (unknown["code"], unknown["msg"]) == (422, "record is null")


def test_each_api_sees_only_its_own_tasks(emulator):
    server = emulator()
    with api(server) as client:
        kontext = flux_submit(client)
        four_o = submit(client)
        assert record(client, kontext)["msg"] == "record is null"
        assert flux_record(client, four_o)["msg"] == "record is null"
        assert flux_record(client, kontext)["code"] == record(client, four_o)["code"] == 200
    assert server.inspect_task(kontext)["api"] == "flux-kontext"
    assert server.inspect_task(four_o)["api"] == "gpt4o-image"


def test_defaults_and_every_documented_field(emulator):
    server = emulator()
    with api(server) as client:
        plain = flux_submit(client, prompt="a quiet harbour")
        full_body = {
            "prompt": "add hot-air balloons",
            "model": "flux-kontext-max",
            "aspectRatio": "9:16",
            "inputImage": "https://example.com/landscape.jpg",
            "outputFormat": "png",
            "enableTranslation": False,
            "promptUpsampling": True,
            "safetyTolerance": 2,
            "uploadCn": True,
            "watermark": "studio-mark",
            "callBackUrl": "http://127.0.0.1:9/hook?a=1",
        }
        full = flux_submit(client, **full_body)
    assert server.inspect_task(plain)["request"] == {
        "prompt": "a quiet harbour",
        "model": "flux-kontext-pro",
        "aspectRatio": "16:9",
        "inputImage": None,
        "outputFormat": "jpeg",
        "enableTranslation": True,
        "promptUpsampling": False,
        "safetyTolerance": 2,
        "uploadCn": False,
        "watermark": None,
        "callBackUrl": None,
    }
    assert server.inspect_task(full)["request"] == full_body
    assert server.inspect_task(full)["paramJson"] == (
        '{"prompt":"add hot-air balloons","model":"flux-kontext-max","aspectRatio":"9:16",'
        '"inputImage":"https://example.com/landscape.jpg","outputFormat":"png","enableTranslation":false,'
        '"promptUpsampling":true,"safetyTolerance":2,"uploadCn":true,"watermark":"studio-mark",'
        '"callBackUrl":"http://127.0.0.1:9/hook?a=1"}'
    )


# ---------------------------------------------------------------------------------------- validation
EDIT = {"inputImage": "https://example.com/in.png"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "prompt: This field is required"),
        ({"prompt": "   "}, "prompt: This field is required"),
        ({"prompt": 7}, "prompt: must be a string"),
        ({"prompt": "x" * 20_001}, "prompt: longer than 20000 characters"),
        ({"model": "flux-kontext-dev"}, "model: must be one of flux-kontext-pro, flux-kontext-max"),
        ({"aspectRatio": "3:2"}, "aspectRatio: must be one of 21:9, 16:9, 4:3, 1:1, 3:4, 9:16"),
        ({"aspectRatio": 1}, "aspectRatio: must be one of"),
        ({"inputImage": "not a url"}, "inputImage: must be an http(s) URL"),
        ({"inputImage": ["https://e.com/a.png"]}, "inputImage: must be a string URL"),
        ({"outputFormat": "webp"}, "outputFormat: must be one of jpeg, png"),
        ({"enableTranslation": "yes"}, "enableTranslation: must be a boolean"),
        ({"promptUpsampling": 1}, "promptUpsampling: must be a boolean"),
        ({"uploadCn": "false"}, "uploadCn: must be a boolean"),
        ({"safetyTolerance": 7}, "safetyTolerance: must be an integer from 0 to 6 in text to image"),
        ({"safetyTolerance": -1}, "safetyTolerance: must be an integer from 0 to 6"),
        ({"safetyTolerance": "2"}, "safetyTolerance: must be an integer"),
        ({"safetyTolerance": 2.5}, "safetyTolerance: must be an integer"),
        ({"safetyTolerance": True}, "safetyTolerance: must be an integer"),
        ({**EDIT, "safetyTolerance": 3}, "safetyTolerance: must be an integer from 0 to 2 in edit mode"),
        ({"watermark": 5}, "watermark: must be a string"),
        ({"callBackUrl": "ftp://example.com/hook"}, "callBackUrl: must be an http(s) URL"),
    ],
)
def test_every_field_with_a_bad_value_is_a_422_naming_it(emulator, body, message):
    server = emulator()
    body = {"prompt": "a lighthouse", **body} if "prompt" not in body and body else body
    with api(server) as client:
        reply = client.post(FLUX_GENERATE, json=body)
    assert reply.status_code == 200
    assert reply.json()["code"] == 422
    assert reply.json()["msg"].startswith(message), reply.json()
    assert server.core.task_ids() == []


@pytest.mark.parametrize(("body", "accepted"), [({}, 6), ({}, 0), (EDIT, 2), (EDIT, 0)])
def test_safety_tolerance_bounds_per_mode_are_accepted(emulator, body, accepted):
    server = emulator()
    with api(server) as client:
        task_id = flux_submit(client, **body, safetyTolerance=accepted)
    assert server.inspect_task(task_id)["request"]["safetyTolerance"] == accepted


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b""])
def test_a_body_that_is_not_a_json_object_gets_400(emulator, raw):
    server = emulator()
    with api(server) as client:
        reply = client.post(FLUX_GENERATE, content=raw, headers={"Content-Type": "application/json"})
    assert reply.json()["code"] == 400 and server.core.task_ids() == []


# ---------------------------------------------------------------------------------------- images
@pytest.mark.parametrize("ratio", list(RATIOS))
@pytest.mark.parametrize(
    ("output_format", "magic", "content_type", "pil_format"),
    [
        (None, b"\xff\xd8\xff", "image/jpeg", "JPEG"),
        ("png", b"\x89PNG\r\n\x1a\n", "image/png", "PNG"),
    ],
)
def test_result_is_a_real_image_in_the_format_and_aspect_ratio_asked_for(
    emulator, ratio, output_format, magic, content_type, pil_format
):
    # Given a task asking for one aspect ratio, in JPEG (the default) or PNG
    server = emulator(generation_seconds=0.05)
    extra = {"outputFormat": output_format} if output_format else {}
    with api(server) as client:
        task_id = flux_submit(client, prompt="a red fox", aspectRatio=ratio, **extra)
        url = _done(client, server, task_id)["response"]["resultImageUrl"]
        served = client.get(url)
    # Then the file is that format, magic bytes and all, in exactly that ratio
    assert served.status_code == 200 and served.headers["Content-Type"] == content_type
    assert served.content.startswith(magic)
    assert url.endswith(".png" if output_format == "png" else ".jpg")
    image = Image.open(io.BytesIO(served.content))
    width, height = image.size
    across, down = RATIOS[ratio]
    assert image.format == pil_format and width * down == height * across
    assert 0.9e6 <= width * height <= 1.1e6  # about one megapixel, like the real model
    # And its sha256 is the one the emulator recorded
    [result, origin] = server.inspect_task(task_id)["images"]
    assert (result["role"], origin["role"]) == ("result", "origin")
    assert result["sha256"] == hashlib.sha256(served.content).hexdigest() == origin["sha256"]
    assert (result["width"], result["height"], result["content_type"]) == (width, height, content_type)


def test_images_depend_on_the_prompt_and_are_stable(emulator):
    server = emulator(generation_seconds=0.05)
    with api(server) as client:
        fox = flux_submit(client, prompt="a red fox")
        owl = flux_submit(client, prompt="a snowy owl")
        fox_url = _done(client, server, fox)["response"]["resultImageUrl"]
        owl_url = _done(client, server, owl)["response"]["resultImageUrl"]
        first, again, other = client.get(fox_url), client.get(fox_url), client.get(owl_url)
    assert first.content == again.content != other.content


# ---------------------------------------------------------------------------------------- links
def test_origin_url_is_the_same_image_and_expires_after_its_ttl(emulator):
    # Given originImageUrl lives 0.5 s (10 minutes upstream) and results the usual 14 days
    server = emulator(generation_seconds=0.05, origin_ttl_seconds=0.5)
    with api(server) as client:
        response = _done(client, server, flux_submit(client))["response"]
        origin_now = client.get(response["originImageUrl"])
        result_now = client.get(response["resultImageUrl"])
        time.sleep(0.7)
        origin_later = client.get(response["originImageUrl"])
        result_later = client.get(response["resultImageUrl"])
    assert origin_now.status_code == result_now.status_code == 200
    assert origin_now.content == result_now.content
    assert origin_later.status_code == 403 and b"Request has expired" in origin_later.content
    assert result_later.status_code == 200


def test_result_urls_expire_like_4o_ones_and_the_common_download_url_renews_them(emulator):
    server = emulator(generation_seconds=0.05, result_ttl_seconds=0.3)
    with api(server) as client:
        task_id = flux_submit(client)
        url = _done(client, server, task_id)["response"]["resultImageUrl"]
        time.sleep(0.5)
        expired = client.get(url)
        common = client.post("/api/v1/common/download-url", json={"url": url}).json()
        renewed = client.get(common["data"])
        # Flux has no download-url of its own, and the 4o one does not know Flux tasks
        four_o = client.post("/api/v1/gpt4o-image/download-url", json={"taskId": task_id, "url": url})
        quick = client.post("/api/v1/gpt4o-image/download-url", json={"imageUrl": url})
    assert expired.status_code == 403
    assert common["code"] == 200 and "X-Amz-Expires=1200" in common["data"]
    assert renewed.status_code == 200 and renewed.content.startswith(b"\xff\xd8\xff")
    assert four_o.json()["msg"] == quick.json()["msg"] == "record is null"


# ---------------------------------------------------------------------------------------- callbacks
def test_success_callback_has_the_single_image_shape_and_is_signed(emulator, receiver):
    # Given a receiver and an emulator with a webhook HMAC key
    hook = receiver()
    server = emulator(hmac_key="whsec-flux")
    # When a Flux task succeeds
    with api(server) as client:
        task_id = flux_submit(client, callBackUrl=hook.url)
        [delivered] = hook.wait_for(1)
        response = flux_record(client, task_id)["data"]["response"]
    # Then the body is the documented single-image body, and the signature covers taskId.timestamp
    assert delivered["body"] == {
        "code": 200,
        "msg": "BFL image generated successfully.",
        "data": {"taskId": task_id, "info": response},
    }
    timestamp = delivered["headers"]["X-Webhook-Timestamp"]
    assert delivered["headers"]["X-Webhook-Signature"] == sign("whsec-flux", task_id, timestamp)
    assert abs(int(timestamp) - time.time()) < 5


def test_callbacks_are_unsigned_without_a_key(emulator, receiver):
    hook = receiver()
    server = emulator()
    with api(server) as client:
        flux_submit(client, callBackUrl=hook.url)
        [delivered] = hook.wait_for(1)
    assert "X-Webhook-Signature" not in delivered["headers"]


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (400, "Your prompt was flagged for violating content policy"),
        (500, "Internal error, please try again later"),
        (501, "Image generation task failed"),
    ],
)
def test_failures_arrive_with_their_code_and_empty_urls(emulator, receiver, code, message):
    hook = receiver()
    server = emulator()
    with api(server) as client:
        task_id = flux_submit(client, prompt=f"x [fault:fail={code}]", callBackUrl=hook.url)
        [delivered] = hook.wait_for(1)
        data = flux_record(client, task_id)["data"]
    assert delivered["body"] == {
        "code": code,
        "msg": message,
        "data": {"taskId": task_id, "info": {"originImageUrl": "", "resultImageUrl": ""}},
    }
    # record-info: 3 = the task was created but its generation failed
    assert (data["successFlag"], data["errorCode"], data["errorMessage"]) == (3, code, message)
    assert data["response"] is None and ISO_RE.match(data["completeTime"])


def test_a_4o_only_failure_code_is_an_internal_error_for_flux(emulator, receiver):
    hook = receiver()
    server = emulator()
    with api(server) as client:
        flux_submit(client, prompt="x [fault:fail=451]", callBackUrl=hook.url)
        [delivered] = hook.wait_for(1)
    assert delivered["body"]["code"] == 500


def test_fail_flag_2_reports_a_task_whose_creation_failed(emulator):
    server = emulator()
    with api(server) as client:
        data = _done(client, server, flux_submit(client, prompt="x [fault:fail=500,fail_flag=2]"))
    assert (data["successFlag"], data["errorCode"]) == (2, 500)
    assert server.inspect_task(data["taskId"])["status"] == "CREATE_TASK_FAILED"


def test_failed_deliveries_are_retried_like_4o_ones(emulator, receiver):
    hook = receiver(500, 502)
    server = emulator(callback_retry_schedule=(0.05, 0.05, 0.05))
    with api(server) as client:
        task_id = flux_submit(client, callBackUrl=hook.url)
        requests = hook.wait_for(3)
    attempts = server.wait_for_deliveries(task_id, 3)
    assert [(a["attempt"], a["statusCode"]) for a in attempts] == [(0, 500), (1, 502), (2, 200)]
    assert requests[0]["body"] == requests[2]["body"]


def test_admin_complete_and_redeliver_work_for_flux(emulator, receiver):
    hook = receiver()
    server = emulator()
    with api(server) as client:
        task_id = flux_submit(client, prompt="x [fault:stall]", callBackUrl=hook.url)
        assert flux_record(client, task_id)["data"]["successFlag"] == 0
        assert server.complete_task(task_id, fail=501, message="BFL said no")
        assert server.redeliver(task_id)
        first, second = hook.wait_for(2)
    assert first["body"] == second["body"]
    assert (first["body"]["code"], first["body"]["msg"]) == (501, "BFL said no")


# ---------------------------------------------------------------------------------------- faults
def test_drop_duplicate_and_task_key_apply_to_flux_callbacks(emulator, receiver):
    hook = receiver()
    server = emulator()
    with api(server) as client:
        dropped = flux_submit(client, prompt="x [fault:drop]", callBackUrl=hook.url)
        doubled = flux_submit(client, prompt="x [fault:duplicate=3,task_key=both]", callBackUrl=hook.url)
        hook.wait_for(3)
        finished(server, dropped)
        assert server.wait_until_idle()  # no further copy to come, the drop recorded
    assert [r["body"]["data"]["task_id"] for r in hook.requests] == [doubled] * 3
    assert all(r["body"]["data"]["taskId"] == doubled for r in hook.requests)
    assert server.deliveries(dropped)[0]["dropped"] is True


def test_concurrent_copies_leave_together(emulator, receiver):
    hook = receiver(hold=0.3)
    server = emulator()
    with api(server) as client:
        flux_submit(client, prompt="x [fault:concurrent=3]", callBackUrl=hook.url)
        hook.wait_for(3)
    assert hook.max_in_flight == 3


@pytest.mark.parametrize("code", [400, 402, 455, 500, 550])
def test_submit_errors_arrive_in_the_body_code(emulator, code):
    server = emulator()
    with api(server) as client:
        reply = flux_generate(client, prompt=f"x [fault:submit={code}]")
    assert reply["code"] == code and reply["data"] is None and server.core.task_ids() == []


def test_submit_429_is_http_429_and_unknown_markers_are_422(emulator):
    server = emulator()
    with api(server) as client:
        limited = client.post(FLUX_GENERATE, json={"prompt": "x [fault:submit=429]"})
        typo = flux_generate(client, prompt="x [fault:duplcate=2]")
    assert limited.status_code == 429 and limited.json()["code"] == 429
    assert typo["code"] == 422 and "duplcate" in typo["msg"]


def test_submit_delay_answers_late_with_the_task_created(emulator):
    server = emulator()
    with api(server) as client:
        started = time.monotonic()
        task_id = flux_submit(client, prompt="x [fault:submit_delay=0.4]")
    assert time.monotonic() - started >= 0.4 and task_id in server.core.task_ids()


def test_stall_and_per_task_generation_time(emulator):
    server = emulator(generation_seconds=30)
    with api(server) as client:
        stalled = flux_submit(client, prompt="x [fault:stall]")
        quick = flux_submit(client, prompt="x [fault:gen=0.05]")
        assert _done(client, server, quick)["successFlag"] == 1
        assert flux_record(client, stalled)["data"]["successFlag"] == 0


def test_time_format_switch(emulator):
    server = emulator(generation_seconds=0.05)
    with api(server) as client:
        millis = _done(client, server, flux_submit(client, prompt="x [fault:time_format=ms]"))
        text = _done(client, server, flux_submit(client, prompt="x [fault:time_format=string]"))
    assert isinstance(millis["createTime"], int) and millis["completeTime"] >= millis["createTime"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", text["completeTime"])


@pytest.mark.parametrize(
    ("spec", "code", "http"), [("", 422, 200), ("[fault:tolerance_error=500]", 500, 200)]
)
def test_safety_tolerance_out_of_range_code_switch(emulator, spec, code, http):
    server = emulator()
    with api(server) as client:
        reply = client.post(FLUX_GENERATE, json={"prompt": f"x {spec}", "safetyTolerance": 9})
    assert reply.status_code == http and reply.json()["code"] == code
    assert reply.json()["msg"].startswith("safetyTolerance:")


def test_file_faults_apply_to_flux_results(emulator):
    server = emulator(generation_seconds=0.05)
    with api(server) as client:

        def url(prompt: str, **body: object) -> str:
            return _done(client, server, flux_submit(client, prompt=prompt, **body))["response"][
                "resultImageUrl"
            ]

        flaky = url("x [fault:image_5xx=1]")
        expired = url("x [fault:expired]")
        stale = url("x [fault:stale_links]")
        html = url("x [fault:html]")
        oversize = url("x [fault:oversize=3000000]")
        oversize_png = url("x [fault:oversize=4000000]", outputFormat="png")
        answers = [client.get(flaky).status_code, client.get(flaky).status_code]
        stale_link = client.post("/api/v1/common/download-url", json={"url": stale}).json()["data"]
        statuses = (client.get(expired).status_code, client.get(stale).status_code)
        stale_renewed = client.get(stale_link).status_code
        page = client.get(html)
        big, big_png = client.get(oversize), client.get(oversize_png)
    assert answers == [503, 200]
    assert statuses == (403, 403) and stale_renewed == 200
    assert page.headers["Content-Type"] == "image/jpeg" and page.content.startswith(b"<!DOCTYPE html>")
    assert len(big.content) == 3_000_000 and Image.open(io.BytesIO(big.content)).format == "JPEG"
    assert len(big_png.content) == 4_000_000 and Image.open(io.BytesIO(big_png.content)).format == "PNG"


def test_truncate_announces_more_than_it_sends(emulator):
    server = emulator(generation_seconds=0.05)
    with api(server) as client:
        url = _done(client, server, flux_submit(client, prompt="x [fault:truncate]"))["response"][
            "resultImageUrl"
        ]
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(url)


# ---------------------------------------------------------------------------------------- account
def test_flux_and_4o_share_the_accounts_generate_rate_limit(emulator):
    # Given a limit of 3 generations per window, counted across both APIs
    server = emulator(generate_rate_limit=3, generate_rate_window_seconds=5)
    with api(server) as client:
        answers = [
            generate(client)["code"],
            flux_generate(client)["code"],
            generate(client)["code"],
            client.post(FLUX_GENERATE, json={"prompt": "x"}),
        ]
        fourth_4o = client.post("/api/v1/gpt4o-image/generate", json={"size": "1:1", "prompt": "x"})
    assert answers[:3] == [200, 200, 200]
    assert answers[3].status_code == 429 and answers[3].json()["code"] == 429
    assert fourth_4o.status_code == 429


def test_a_flux_task_costs_one_image_of_credits(emulator):
    server = emulator(credits=10, credits_per_image=6)
    with api(server) as client:
        first = flux_generate(client)
        second = flux_generate(client)
        balance = client.get("/api/v1/chat/credit").json()["data"]
    assert first["code"] == 200 and second["code"] == 402 and balance == 4
