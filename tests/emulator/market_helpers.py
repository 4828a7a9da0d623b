"""Thin calls to the emulator's Market endpoints (``/api/v1/jobs/...``) for the emulator tests."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
from PIL import Image

CREATE_TASK = "/api/v1/jobs/createTask"
RECORD_INFO = "/api/v1/jobs/recordInfo"
COMMON_DOWNLOAD_URL = "/api/v1/common/download-url"
# Market recordInfo is rate-limited per task (10 per second); tests that poll switch it off.
NO_POLL_LIMIT = {"market_record_info_rate_limit": 0}


def create_task(
    client: httpx.Client, model: str, callback: str | None = None, **given: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "input": given}
    if callback:
        body["callBackUrl"] = callback
    return client.post(CREATE_TASK, json=body).json()


def submit_market(client: httpx.Client, model: str, callback: str | None = None, **given: Any) -> str:
    reply = create_task(client, model, callback, **given)
    assert reply["code"] == 200, reply
    return reply["data"]["taskId"]


def record_info(client: httpx.Client, task_id: str) -> dict[str, Any]:
    return client.get(RECORD_INFO, params={"taskId": task_id}).json()


def result_urls(details: dict[str, Any]) -> list[str]:
    return json.loads(details["resultJson"])["resultUrls"]


def image_of(client: httpx.Client, url: str) -> tuple[str, tuple[int, int], str]:
    """(PIL format, size, Content-Type) of the image at the URL."""
    reply = client.get(url)
    assert reply.status_code == 200, reply.text
    image = Image.open(io.BytesIO(reply.content))
    return image.format or "", image.size, reply.headers["content-type"]
