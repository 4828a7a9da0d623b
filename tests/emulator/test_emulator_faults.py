"""Fault switches: the marker grammar, run-wide vs per-task, and what each switch does."""

from __future__ import annotations

import hashlib
import io
import re
import time

import httpx
import pytest
from emulator_helpers import api, finished, generate, record, submit
from PIL import Image, UnidentifiedImageError

from devstack.emulator import Faults, FaultSpecError, parse_fault_spec, parse_prompt_markers
from devstack.emulator.faults import OVERSIZE_DEFAULT_BYTES

GENERATE = "/api/v1/gpt4o-image/generate"


def _url(client, server, task_id) -> str:
    finished(server, task_id)
    return record(client, task_id)["data"]["response"]["resultUrls"][0]


# ---------------------------------------------------------------------------------------- grammar
def test_marker_grammar():
    prompt = "a fox [fault:duplicate=3, DROP] in snow [Fault:result-key=result_urls,fail=451] [fault:trickle]"
    assert parse_prompt_markers(prompt) == {
        "duplicate": 3,
        "drop": True,
        "result_key": "result_urls",
        "fail": 451,
        "trickle": 3.0,
    }
    assert parse_prompt_markers("no markers [fault] here") == {}
    assert parse_fault_spec("duplicate,concurrent=4,drop=false,submit,oversize=100") == {
        "duplicate": 2,
        "concurrent": 4,
        "drop": False,
        "submit": 500,
        "oversize": 100,
    }
    assert Faults.build({"duplicate": 2, "fail": 500}, {"duplicate": 1}) == Faults(duplicate=1, fail=500)


@pytest.mark.parametrize(
    "spec", ["bogus", "fail=404", "duplicate=0", "shape=square", "trickle=abc", "drop=maybe"]
)
def test_bad_fault_specs_are_rejected(spec):
    with pytest.raises(FaultSpecError):
        parse_fault_spec(spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("oversize=999999999", "fault oversize: must be between 0 and 67108864, got 999999999"),
        ("oversize=-1", "fault oversize: must be between 0 and 67108864, got -1"),
        ("image_5xx=1001", "fault image_5xx: must be between 0 and 1000, got 1001"),
        ("duplicate=0", "fault duplicate: must be between 1 and 10, got 0"),
    ],
)
def test_an_out_of_range_fault_value_is_refused_at_once_in_a_few_words(spec, message):
    # Given a value beyond a range of millions (oversize's is 64 MiB)
    started = time.monotonic()
    # When it is parsed
    with pytest.raises(FaultSpecError) as refused:
        parse_fault_spec(spec)
    # Then the refusal names the bounds, not every allowed value, and costs nothing
    assert str(refused.value) == message
    assert time.monotonic() - started < 0.5


def test_an_out_of_range_marker_in_a_prompt_is_a_short_422(emulator):
    server = emulator()
    with api(server) as client:
        reply = generate(client, prompt="x [fault:oversize=999999999]")
    assert reply["code"] == 422
    assert (
        reply["msg"] == "emulator fault marker: fault oversize: must be between 0 and 67108864, got 999999999"
    )


def test_an_unknown_marker_in_a_prompt_is_a_422(emulator):
    server = emulator()
    with api(server) as client:
        reply = generate(client, prompt="x [fault:duplcate=2]")
    assert reply["code"] == 422 and "duplcate" in reply["msg"]


# ---------------------------------------------------------------------------------------- run-wide
def test_run_wide_faults_through_the_admin_endpoint(emulator, receiver):
    hook = receiver()
    server = emulator()
    with api(server, None) as admin:
        assert admin.post("/admin/faults", json={"duplicate": 2}).json() == {"faults": {"duplicate": 2}}
        assert admin.post("/admin/faults", json={"spec": "task_key=task_id"}).json()["faults"] == {
            "duplicate": 2,
            "task_key": "task_id",
        }
        assert admin.post("/admin/faults", json={"fail": 404}).status_code == 400
        assert admin.get("/admin/faults").json()["faults"]["duplicate"] == 2
    with api(server) as client:
        run_wide = submit(client, callBackUrl=hook.url)
        overridden = submit(client, prompt="x [fault:duplicate=1]", callBackUrl=hook.url)
        hook.wait_for(3)
        assert server.wait_until_idle()  # no further copy to come
    counts = {
        t: sum(r["body"]["data"].get("task_id") == t for r in hook.requests) for t in (run_wide, overridden)
    }
    assert counts == {run_wide: 2, overridden: 1}  # the prompt marker wins over the run-wide value
    with api(server, None) as admin:
        assert admin.delete("/admin/faults").json() == {"faults": {}}
        assert admin.put("/admin/faults", json={"html": True}).json() == {"faults": {"html": True}}
        assert admin.post("/admin/faults/clear").json() == {"faults": {}}


def test_run_wide_faults_from_config_and_python(emulator):
    server = emulator(faults={"result_key": "result_urls"})
    with api(server) as client:
        task_id = submit(client)
        finished(server, task_id)
        assert set(record(client, task_id)["data"]["response"]) == {"result_urls"}
        server.set_faults("time_format=string")
        server.set_faults(result_key="resultUrls")
        data = record(client, task_id)["data"]
    assert set(data["response"]) == {"resultUrls"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", data["createTime"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", data["completeTime"])


# ---------------------------------------------------------------------------------------- submit
@pytest.mark.parametrize("code", [400, 401, 402, 404, 422, 455, 500, 505, 550])
def test_submit_errors_arrive_in_the_body_code(emulator, code):
    server = emulator()
    with api(server) as client:
        reply = client.post(GENERATE, json={"size": "1:1", "prompt": f"x [fault:submit={code}]"})
    assert reply.status_code == 200 and reply.json()["code"] == code and reply.json()["msg"]
    assert reply.json()["data"] is None and server.core.task_ids() == []


def test_submit_429_is_also_http_429_and_mirror_http_mirrors_the_rest(emulator):
    server = emulator()
    with api(server) as client:
        limited = client.post(GENERATE, json={"size": "1:1", "prompt": "x [fault:submit=429]"})
        server.set_faults(mirror_http=True)
        maintenance = client.post(GENERATE, json={"size": "1:1", "prompt": "x [fault:submit=455]"})
        invalid = client.post(GENERATE, json={"size": "9:9", "prompt": "x"})
    assert limited.status_code == 429 and limited.json()["code"] == 429
    assert maintenance.status_code == 455 and maintenance.json()["code"] == 455
    assert invalid.status_code == 422


def test_fail_flag_3_and_per_task_generation_time(emulator):
    server = emulator(generation_seconds=30)
    with api(server) as client:
        task_id = submit(client, prompt="x [fault:fail=451,fail_flag=3,gen=0.1]")
        finished(server, task_id)
        data = record(client, task_id)["data"]
    assert data["successFlag"] == 3 and data["status"] == "GENERATE_FAILED" and data["errorCode"] == 451


def test_stall_keeps_a_task_generating(emulator):
    server = emulator(generation_seconds=0.05)
    with api(server) as client:
        task_id = submit(client, prompt="x [fault:stall]")
        time.sleep(0.1)  # past the generation time: the progress has reached its cap
        assert server.wait_until_idle()  # and no completion is due
        data = record(client, task_id)["data"]
    assert data["status"] == "GENERATING" and data["progress"] == "0.99"


def test_download_form_switch(emulator):
    server = emulator()
    with api(server) as client:
        task_id = submit(client)
        url = _url(client, server, task_id)
        server.set_faults(download_form="quickstart")
        quick = client.post("/api/v1/gpt4o-image/download-url", json={"taskId": task_id, "url": url}).json()
        server.set_faults(download_form="reference")
        reference = client.post("/api/v1/gpt4o-image/download-url", json={"imageUrl": url}).json()
    assert set(quick["data"]) == {"downloadUrl"}
    assert isinstance(reference["data"], str)


# ---------------------------------------------------------------------------------------- images
def test_trickle_serves_the_image_slowly_but_whole(emulator):
    server = emulator()
    with api(server) as client:
        task_id = submit(client, prompt="x [fault:trickle=0.6]")
        url = _url(client, server, task_id)
        started = time.monotonic()
        body = httpx.get(url, trust_env=False, timeout=10).content
        took = time.monotonic() - started
    assert 0.5 <= took < 3
    assert hashlib.sha256(body).hexdigest() == server.inspect_task(task_id)["images"][0]["sha256"]


def test_truncate_announces_more_than_it_sends(emulator):
    server = emulator()
    with api(server) as client:
        task_id = submit(client, prompt="x [fault:truncate]")
        url = _url(client, server, task_id)
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(url, trust_env=False, timeout=10)
    [served] = server.inspect_task(task_id)["served"]
    assert not served["complete"] and served["bytes"] * 2 <= served["declaredLength"]


def test_oversize_serves_a_valid_png_beyond_the_limit(emulator):
    server = emulator()
    with api(server) as client:
        task_id = submit(client, prompt="x [fault:oversize]")
        url = _url(client, server, task_id)
        head = httpx.head(url, trust_env=False, timeout=10)
        body = httpx.get(url, trust_env=False, timeout=30).content
    assert int(head.headers["Content-Length"]) == len(body) == OVERSIZE_DEFAULT_BYTES > 26_214_400
    image = Image.open(io.BytesIO(body))
    image.load()
    assert image.size == (1024, 1024)
    [served] = server.inspect_task(task_id)["served"]
    assert served["sha256"] == hashlib.sha256(body).hexdigest() and served["faults"] == ["oversize"]


def test_html_fault_serves_a_page_labelled_as_png(emulator):
    server = emulator()
    with api(server) as client:
        url = _url(client, server, submit(client, prompt="x [fault:html]"))
        reply = httpx.get(url, trust_env=False, timeout=10)
    assert reply.status_code == 200 and reply.headers["Content-Type"] == "image/png"
    assert reply.content.startswith(b"<!DOCTYPE html>")
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(reply.content))


def test_expired_fault_makes_every_link_answer_403(emulator):
    server = emulator()
    with api(server) as client:
        task_id = submit(client, prompt="x [fault:expired]")
        url = _url(client, server, task_id)
        link = client.post("/api/v1/gpt4o-image/download-url", json={"taskId": task_id, "url": url}).json()
        replies = [httpx.get(u, trust_env=False, timeout=10) for u in (url, link["data"])]
    assert [r.status_code for r in replies] == [403, 403]
    assert all(b"Request has expired" in r.content for r in replies)
