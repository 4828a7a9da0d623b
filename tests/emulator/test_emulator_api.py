"""The request side of the emulated 4o Image API: auth, envelopes, validation, limits, lifecycle."""

from __future__ import annotations

import json
import re
import time

import pytest
from emulator_helpers import api, finished, generate, record, submit

GENERATE = "/api/v1/gpt4o-image/generate"
URL_RE = re.compile(r"^http://127\.0\.0\.1:\d+/s/([0-9a-f]{32})_(\d+)_(\d{10})_(\d{4})\.png$")


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_missing_or_wrong_key_gets_the_401_envelope(emulator, key):
    # Given an emulator that knows one key
    server = emulator()
    # When a client calls without it
    with api(server, key) as client:
        reply = client.post(GENERATE, json={"size": "1:1", "prompt": "x"})
        credit = client.get("/api/v1/chat/credit")
    # Then the body code says 401, over HTTP 200, like the real service
    assert reply.status_code == 200
    assert reply.json() == {"code": 401, "msg": "You do not have access permissions", "data": None}
    assert credit.json()["code"] == 401


def test_any_token_is_accepted_when_no_key_is_configured(emulator):
    server = emulator(api_key=None)
    with api(server, "whatever") as client:
        assert generate(client)["code"] == 200
    with api(server, None) as client:
        assert generate(client)["code"] == 401


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"prompt": "x"}, "size: This field is required"),
        ({"size": "16:9", "prompt": "x"}, "size: must be one of 1:1, 3:2, 2:3"),
        ({"size": "1:1"}, "prompt: This field is required"),
        ({"size": "1:1", "prompt": "   "}, "prompt: This field is required"),
        ({"size": "1:1", "filesUrl": [f"https://e.com/{i}.png" for i in range(6)]}, "filesUrl: at most 5"),
        ({"size": "1:1", "filesUrl": ["https://e.com/a.gif"]}, "filesUrl[0]: file type not supported"),
        ({"size": "1:1", "filesUrl": "https://e.com/a.png"}, "filesUrl: must be an array"),
        ({"size": "1:1", "fileUrl": "ftp://e.com/a.png"}, "fileUrl: must be an http(s) URL"),
        ({"size": "1:1", "prompt": "x", "maskUrl": "https://e.com/m.bmp"}, "maskUrl: file type"),
        ({"size": "1:1", "prompt": "x", "nVariants": 3}, "nVariants: must be 1, 2 or 4"),
        ({"size": "1:1", "prompt": "x", "nVariants": True}, "nVariants: must be 1, 2 or 4"),
        ({"size": "1:1", "prompt": "x", "fallbackModel": "DALL_E"}, "fallbackModel: must be one of"),
        ({"size": "1:1", "prompt": "x", "isEnhance": "yes"}, "isEnhance: must be a boolean"),
        ({"size": "1:1", "prompt": "x", "enableFallback": 1}, "enableFallback: must be a boolean"),
        ({"size": "1:1", "prompt": "x", "uploadCn": "false"}, "uploadCn: must be a boolean"),
        ({"size": "1:1", "prompt": "x", "callBackUrl": "not a url"}, "callBackUrl: must be an http(s) URL"),
        ({"size": "1:1", "prompt": 7}, "prompt: must be a string"),
    ],
)
def test_invalid_generate_requests_get_422_with_a_clear_message(emulator, body, message):
    server = emulator()
    with api(server) as client:
        reply = client.post(GENERATE, json=body)
    assert reply.status_code == 200
    assert reply.json()["code"] == 422
    assert reply.json()["msg"].startswith(message), reply.json()
    assert server.core.task_ids() == []


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b""])
def test_a_body_that_is_not_a_json_object_gets_400(emulator, raw):
    server = emulator()
    with api(server) as client:
        reply = client.post(GENERATE, content=raw, headers={"Content-Type": "application/json"})
    assert reply.json()["code"] == 400


def test_every_documented_field_is_accepted_and_echoed_in_param_json(emulator):
    server = emulator()
    body = {
        "size": "2:3",
        "prompt": "keep the subject, watercolour",
        "filesUrl": ["https://e.com/a.JPG", "https://e.com/b.webp?sig=1"],
        "maskUrl": "https://e.com/mask.png",
        "nVariants": 4,
        "isEnhance": True,
        "enableFallback": True,
        "fallbackModel": "GPT_IMAGE_1",
        "uploadCn": False,
        "callBackUrl": "http://127.0.0.1:9/cb?tenant=a&x=1",
    }
    with api(server) as client:
        task_id = submit(client, **body)
        data = record(client, task_id)["data"]
    assert re.fullmatch(r"[0-9a-f]{32}", task_id)
    assert json.loads(data["paramJson"]) == body
    assert server.inspect_task(task_id)["request"]["callBackUrl"] == "http://127.0.0.1:9/cb?tenant=a&x=1"


def test_deprecated_file_url_stands_in_for_files_url(emulator):
    server = emulator()
    with api(server) as client:
        task_id = submit(client, prompt=None, fileUrl="https://e.com/source.jpeg")
    assert server.inspect_task(task_id)["request"]["filesUrl"] == ["https://e.com/source.jpeg"]


def test_task_goes_from_generating_with_rising_progress_to_success(emulator):
    # Given a generation time of 0.6 s
    server = emulator(generation_seconds=0.6)
    with api(server) as client:
        task_id = submit(client, size="3:2", nVariants=2)
        seen = []
        # When the client polls until the task is done
        for _ in range(100):
            data = record(client, task_id)["data"]
            seen.append(data)
            if data["successFlag"] != 0:
                break
            time.sleep(0.05)
    # Then progress rises through decimal strings to "1.00" and the result has two URLs
    generating = [d for d in seen if d["successFlag"] == 0]
    assert len(generating) >= 3
    assert all(d["status"] == "GENERATING" and d["response"] is None for d in generating)
    progress = [float(d["progress"]) for d in seen]
    assert all(re.fullmatch(r"[01]\.\d\d", d["progress"]) for d in seen)
    assert progress == sorted(progress) and progress[0] < 0.5 < progress[-2]
    done = seen[-1]
    assert done["status"] == "SUCCESS" and done["successFlag"] == 1 and done["progress"] == "1.00"
    assert isinstance(done["createTime"], int) and done["completeTime"] >= done["createTime"] + 500
    urls = done["response"]["resultUrls"]
    assert len(urls) == 2
    for index, url in enumerate(urls):
        match = URL_RE.match(url)
        assert match and match[1] == task_id and int(match[2]) == index
    assert done["errorCode"] is None and done["errorMessage"] is None


def test_twenty_generate_requests_per_ten_seconds_then_429(emulator):
    server = emulator(generate_rate_limit=20)
    with api(server) as client:
        codes = [client.post(GENERATE, json={}).json()["code"] for _ in range(20)]
        over = client.post(GENERATE, json={"size": "1:1", "prompt": "x"})
    assert codes == [422] * 20  # counted even when invalid, like a gateway limit
    assert over.status_code == 429 and over.json()["code"] == 429
    with api(server, None) as other:  # the limit is per key: an unknown key is still a 401
        assert other.post(GENERATE, json={}).json()["code"] == 401


def test_generate_rate_window_slides(emulator):
    server = emulator(generate_rate_limit=2, generate_rate_window_seconds=0.3)
    with api(server) as client:
        assert [generate(client)["code"] for _ in range(3)] == [200, 200, 429]
        time.sleep(0.35)
        assert generate(client)["code"] == 200


def test_three_record_info_queries_per_second_per_task(emulator):
    server = emulator(record_info_rate_limit=3, record_info_rate_window_seconds=0.4)
    with api(server) as client:
        first, second = submit(client), submit(client)
        replies = [client.get("/api/v1/gpt4o-image/record-info", params={"taskId": first}) for _ in range(4)]
        assert [r.json()["code"] for r in replies] == [200, 200, 200, 429]
        assert replies[-1].status_code == 429
        assert record(client, second)["code"] == 200  # per task
        time.sleep(0.45)
        assert record(client, first)["code"] == 200


def test_record_info_for_unknown_or_missing_task(emulator):
    server = emulator()
    with api(server) as client:
        assert record(client, "0" * 32) == {"code": 422, "msg": "record is null", "data": None}
        missing = client.get("/api/v1/gpt4o-image/record-info").json()
    assert missing["code"] == 422 and "taskId" in missing["msg"]


def test_credits_are_spent_per_image_and_402_when_short(emulator):
    server = emulator(credits=18, credits_per_image=6)
    with api(server) as client:
        assert client.get("/api/v1/chat/credit").json() == {"code": 200, "msg": "success", "data": 18}
        submit(client, nVariants=2)
        assert client.get("/api/v1/chat/credit").json()["data"] == 6
        short = generate(client, nVariants=2)
    assert short["code"] == 402 and "credits" in short["msg"]


def test_unknown_routes_and_methods(emulator):
    server = emulator()
    with api(server) as client:
        assert client.get("/api/v1/nope").status_code == 404
        wrong = client.get(GENERATE)
    assert wrong.status_code == 405 and wrong.json()["code"] == 405


def test_failed_task_details(emulator):
    server = emulator()
    with api(server) as client:
        task_id = submit(client, prompt="a forbidden thing [fault:fail=400]")
        finished(server, task_id)
        data = record(client, task_id)["data"]
    assert data["status"] == "GENERATE_FAILED" and data["successFlag"] == 2
    assert data["errorCode"] == 400 and "content policies" in data["errorMessage"]
    assert data["response"] is None and data["completeTime"] is not None
