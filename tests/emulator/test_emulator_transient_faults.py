"""Transient faults for the chaos suite: they fail the first tries and then let the download through."""

from __future__ import annotations

import time

import httpx

from tests.emulator.emulator_helpers import api, finished, record, submit


def _result_url(client: httpx.Client, server: object, task_id: str) -> str:
    finished(server, task_id)  # type: ignore[arg-type]
    return str(record(client, task_id)["data"]["response"]["resultUrls"][0])


def test_stale_links_expire_the_result_url_but_not_a_fresh_link(emulator):
    server = emulator()
    with api(server) as client:
        task_id = submit(client, prompt="x [fault:stale_links]")
        url = _result_url(client, server, task_id)
        fresh = client.post("/api/v1/gpt4o-image/download-url", json={"taskId": task_id, "url": url}).json()[
            "data"
        ]
        stale, renewed = (httpx.get(u, trust_env=False, timeout=10) for u in (url, fresh))
    assert stale.status_code == 403 and b"Request has expired" in stale.content
    assert renewed.status_code == 200 and renewed.content.startswith(b"\x89PNG")


def test_image_5xx_fails_the_first_gets_only(emulator):
    server = emulator()
    with api(server) as client:
        task_id = submit(client, prompt="x [fault:image_5xx=2]")
        url = _result_url(client, server, task_id)
        statuses = [httpx.get(url, trust_env=False, timeout=10).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]


def test_slow_first_trickles_only_the_first_get(emulator):
    server = emulator()
    with api(server) as client:
        task_id = submit(client, prompt="x [fault:slow_first]")
        url = _result_url(client, server, task_id)
        started = time.monotonic()
        try:
            httpx.get(url, trust_env=False, timeout=httpx.Timeout(5, read=0.5))
            first_timed_out = False
        except httpx.TimeoutException:
            first_timed_out = True
        assert first_timed_out and time.monotonic() - started < 5
        second = httpx.get(url, trust_env=False, timeout=10)
    assert second.status_code == 200 and second.content.startswith(b"\x89PNG")
