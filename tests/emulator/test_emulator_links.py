"""Result images and links: real PNGs, stable hashes, presigned download links, expiry, retention."""

from __future__ import annotations

import hashlib
import io
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from emulator_helpers import api, finished, record, submit
from PIL import Image

DOWNLOAD = "/api/v1/gpt4o-image/download-url"


def _fetch(url: str) -> httpx.Response:
    return httpx.get(url, trust_env=False, timeout=10)


def _result_urls(client: httpx.Client, server, task_id: str) -> list[str]:
    finished(server, task_id)
    return record(client, task_id)["data"]["response"]["resultUrls"]


def test_result_images_are_pngs_of_the_requested_aspect_ratio(emulator):
    server = emulator()
    sizes = {"1:1": (1024, 1024), "3:2": (1536, 1024), "2:3": (1024, 1536)}
    with api(server) as client:
        tasks = {size: submit(client, size=size, prompt=f"a {size} harbour") for size in sizes}
        for size, task_id in tasks.items():
            [url] = _result_urls(client, server, task_id)
            reply = _fetch(url)
            assert reply.status_code == 200 and reply.headers["Content-Type"] == "image/png"
            image = Image.open(io.BytesIO(reply.content))
            image.load()
            assert image.format == "PNG" and image.size == sizes[size]


def test_image_hashes_are_stable_and_exposed_by_the_admin_endpoint(emulator):
    server = emulator()
    with api(server) as client:
        task_id = submit(client, nVariants=2, prompt="two owls")
        first, second = _result_urls(client, server, task_id)
        a1, a2, b = _fetch(first).content, _fetch(first).content, _fetch(second).content
        admin = client.get("/admin/images").json()
    digest = hashlib.sha256(a1).hexdigest()
    assert a1 == a2 and a1 != b  # deterministic per task and index, different per variant
    generated = {(g["taskId"], g["index"]): g for g in admin["generated"]}
    assert generated[(task_id, 0)]["sha256"] == digest and generated[(task_id, 0)]["url"] == first
    assert generated[(task_id, 1)]["sha256"] == hashlib.sha256(b).hexdigest()
    served = [s for s in admin["served"] if s["taskId"] == task_id]
    assert [s["sha256"] for s in served] == [digest, digest, hashlib.sha256(b).hexdigest()]
    assert all(s["complete"] and s["bytes"] == s["declaredLength"] for s in served)
    assert server.inspect_task(task_id)["images"][0]["sha256"] == digest


def test_a_serve_is_recorded_before_the_client_has_the_whole_body(emulator, monkeypatch):
    """However late the server's thread runs on after its last write (a loaded machine once showed 2 of
    3 serves to an admin request made right after the third GET), the client that has read the body
    finds its serve recorded."""
    from devstack.emulator import server as http_layer

    stream = http_layer._Handler._stream

    def descheduled_after_the_last_byte(self, *args, **kwargs):
        sent = stream(self, *args, **kwargs)
        time.sleep(0.3)
        return sent

    monkeypatch.setattr(http_layer._Handler, "_stream", descheduled_after_the_last_byte)
    server = emulator()
    with api(server) as client:
        task_id = submit(client, prompt="an owl")
        [url] = _result_urls(client, server, task_id)
        body = _fetch(url).content
        served = [s for s in client.get("/admin/images").json()["served"] if s["taskId"] == task_id]
    assert [(s["sha256"], s["bytes"], s["complete"]) for s in served] == [
        (hashlib.sha256(body).hexdigest(), len(body), True)
    ]


def test_unknown_files_are_404_like_a_bucket(emulator):
    server = emulator()
    reply = _fetch(f"{server.base_url}/s/{'a' * 32}_0_1700000000_1234.png")
    assert reply.status_code == 404 and b"NoSuchKey" in reply.content


def test_result_links_expire_after_their_ttl(emulator):
    server = emulator(result_ttl_seconds=0.3)
    with api(server) as client:
        [url] = _result_urls(client, server, submit(client))
        assert _fetch(url).status_code == 200
        time.sleep(0.35)
        expired = _fetch(url)
    assert expired.status_code == 403 and b"Request has expired" in expired.content


def test_download_url_mints_a_presigned_link_that_expires(emulator):
    server = emulator(link_ttl_seconds=0.4)
    with api(server) as client:
        task_id = submit(client)
        [url] = _result_urls(client, server, task_id)
        reply = client.post(DOWNLOAD, json={"taskId": task_id, "url": url}).json()
        link = reply["data"]
        assert reply["code"] == 200 and isinstance(link, str)
        query = parse_qs(urlsplit(link).query)
        assert query["X-Amz-Expires"] == ["1"] and query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        assert len(query["X-Amz-Date"][0]) == 16 and len(query["X-Amz-Signature"][0]) == 64
        assert urlsplit(link).path == urlsplit(url).path
        fresh = _fetch(link)
        assert fresh.status_code == 200 and fresh.content == _fetch(url).content
        tampered = _fetch(link[:-4] + "0000")
        time.sleep(0.45)
        expired = _fetch(link)
    assert tampered.status_code == 403 and b"SignatureDoesNotMatch" in tampered.content
    assert expired.status_code == 403 and b"Request has expired" in expired.content
    assert _fetch(url).status_code == 200  # the result URL itself lives on


def test_default_presigned_links_say_twenty_minutes(emulator):
    server = emulator()
    with api(server) as client:
        task_id = submit(client)
        [url] = _result_urls(client, server, task_id)
        link = client.post(DOWNLOAD, json={"taskId": task_id, "url": url}).json()["data"]
    assert parse_qs(urlsplit(link).query)["X-Amz-Expires"] == ["1200"]


def test_quick_start_download_form_and_the_common_endpoint(emulator):
    server = emulator()
    with api(server) as client:
        task_id = submit(client)
        [url] = _result_urls(client, server, task_id)
        quick = client.post(DOWNLOAD, json={"imageUrl": url}).json()
        common = client.post("/api/v1/common/download-url", json={"url": url}).json()
    assert quick["code"] == 200 and "X-Amz-Signature=" in quick["data"]["downloadUrl"]
    assert common["code"] == 200 and "X-Amz-Signature=" in common["data"]
    assert _fetch(quick["data"]["downloadUrl"]).status_code == 200


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("x [fault:stall]", "record status is not success"),
        ("x [fault:fail=500]", "record status is not success"),
    ],
)
def test_download_url_for_unfinished_or_failed_records(emulator, prompt, message):
    server = emulator()
    with api(server) as client:
        task_id = submit(client, prompt=prompt)
        assert server.wait_until_idle()  # the failure has happened; the stall has nothing due
        url = f"{server.base_url}/s/{task_id}_0_1700000000_0000.png"
        reply = client.post(DOWNLOAD, json={"taskId": task_id, "url": url}).json()
    assert reply == {"code": 422, "msg": message, "data": None}


def test_download_url_errors(emulator):
    server = emulator()
    with api(server) as client:
        task_id = submit(client)
        [url] = _result_urls(client, server, task_id)
        unknown = client.post(DOWNLOAD, json={"taskId": "f" * 32, "url": url}).json()
        missing = client.post(DOWNLOAD, json={"url": url}).json()
        foreign = client.post(DOWNLOAD, json={"taskId": task_id, "url": "https://e.com/other.png"}).json()
        common = client.post("/api/v1/common/download-url", json={"url": "https://e.com/x.png"}).json()
    assert unknown["code"] == 422 and unknown["msg"] == "record is null"
    assert missing["code"] == 422 and "taskId" in missing["msg"]
    assert foreign["code"] == 451
    assert common["code"] == 422 and common["msg"] == "record is null"


def test_records_past_retention_are_refused_and_their_files_gone(emulator):
    server = emulator(retention_seconds=0.5)
    with api(server) as client:
        task_id = submit(client)
        [url] = _result_urls(client, server, task_id)
        time.sleep(0.55)
        reply = client.post(DOWNLOAD, json={"taskId": task_id, "url": url}).json()
        common = client.post("/api/v1/common/download-url", json={"url": url}).json()
    assert reply == {"code": 422, "msg": "Temporarily supports records within 14 days", "data": None}
    assert common["msg"] == "Temporarily supports records within 14 days"
    assert _fetch(url).status_code == 404
