"""What sam local does not do by itself, done on the running services: seed, relay a callback, drain SQS."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from contextlib import suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

from devstack.common.layer import import_layer
from devstack.common.sqs_event_source import delete_succeeded, receive_batch
from devstack.common.template import ROOT
from devstack.sam_local.defaults import REGION, SamLocalError, origin_of, with_origin
from devstack.sam_local.local_template import sam_environment
from devstack.sam_local.services import Services

# What events/*.json name: the example task and the callback capability POST /tasks would have minted.
EXAMPLE_TASK_ID = "5f0c2a4b9e8d7c6b5a4f3e2d1c0b9a88"  # ours: the callback events' URL, api_get_task's path
EXAMPLE_UPSTREAM_ID = "d231a99a9a9f1dd8f895be1b97be8065"  # the upstream's: the callback events' body
EXAMPLE_TOKEN = "example-callback-token-0123456789abcdefABCDEF_-xyz"  # noqa: S105 - in events/*.json


def _tasks_table(services: Services) -> Any:
    import_layer()
    from image_pipeline.adapters.tasks_table import TasksTable

    return TasksTable(services.resources["tasks_table"], dynamodb=services.aws().client("dynamodb"))


def seed(services: Services, *, clear: bool = False) -> None:
    """The example task and callback capability of events/*.json, as POST /tasks leaves them (or none)."""
    import_layer()
    from image_pipeline.task_records import utc_now
    from image_pipeline.tokens import hash_token

    store = _tasks_table(services)
    dynamodb = services.aws().client("dynamodb")
    dynamodb.delete_item(
        TableName=services.resources["tasks_table"], Key={"pk": {"S": f"task#{EXAMPLE_TASK_ID}"}}
    )
    if clear:
        return
    now = utc_now()
    store.create_task(
        EXAMPLE_TASK_ID,
        owner="local",  # the client of every request without an API key id (the events', start-api's)
        options={"prompt": "example", "size": "1:1"},
        token_hash=hash_token(EXAMPLE_TOKEN),
        now=now,
        next_check_at=now + timedelta(hours=2),
    )
    store.confirm_submitted(EXAMPLE_TASK_ID, EXAMPLE_UPSTREAM_ID, now, now + timedelta(minutes=30))


def upstream_id(services: Services, task_id: str, deadline: float) -> str:
    """The upstream's id of our task (what the emulator knows it by), once the table has it."""
    from devstack.common.task_lookup import wait_for_upstream_id

    found = wait_for_upstream_id(
        services.aws().client("dynamodb"),
        services.resources["tasks_table"],
        task_id,
        deadline=deadline,
        interval=0.3,
    )
    if found is None:
        raise SamLocalError(f"task {task_id} has no upstream id yet")
    return found


def relay(services: Services, task_id: str, api_url: str, *, timeout: float = 60.0) -> tuple[int, str]:
    """POST the emulator's callback for task_id (ours) to api_url (start-api), as the emulator would have."""
    import httpx

    deadline = time.monotonic() + timeout
    task_id = upstream_id(services, task_id, deadline)
    info = services.admin(f"tasks/{task_id}")
    while info is None or info.get("callbackBody") is None:
        if time.monotonic() > deadline:
            state = "unknown to the emulator" if info is None else f"still {info.get('status')}"
            raise SamLocalError(f"task {task_id} has no callback after {timeout:g}s ({state})")
        time.sleep(0.3)
        info = services.admin(f"tasks/{task_id}")
    callback_url = info["request"]["callBackUrl"]
    if not callback_url:
        raise SamLocalError(f"task {task_id} was submitted without a callBackUrl")
    target = with_origin(callback_url, origin_of(api_url))
    headers = {"Content-Type": "application/json", "User-Agent": "kie-4o-emulator/1 (relayed)"}
    if services.hmac_key:
        from devstack.emulator.callbacks import sign

        timestamp = str(int(time.time()))
        headers["X-Webhook-Timestamp"] = timestamp
        headers["X-Webhook-Signature"] = sign(services.hmac_key, task_id, timestamp)
    payload = json.dumps(info["callbackBody"], ensure_ascii=False).encode()
    response = httpx.post(target, content=payload, headers=headers, timeout=180)
    return response.status_code, response.text


def sam_invoke(
    sam: str,
    config_file: Path | str,
    function: str,
    event: Path | str,
    *,
    skip_pull: bool,
    timeout: float = 300,
) -> tuple[dict[str, Any] | None, subprocess.CompletedProcess[str]]:
    """`sam local invoke FUNCTION -e EVENT --config-file ...`; the function's answer (last stdout line)."""
    command = [sam, "local", "invoke", function, "-e", str(event), "--config-file", str(config_file)]
    if skip_pull:
        command.append("--skip-pull-image")
    done = subprocess.run(  # noqa: S603 - the SAM CLI
        command, capture_output=True, text=True, timeout=timeout, env=sam_environment(), cwd=ROOT, check=False
    )
    answer = None
    for line in reversed(done.stdout.strip().splitlines()):
        with suppress(ValueError):
            parsed = json.loads(line)
            if isinstance(parsed, dict):
                answer = parsed
                break
    return answer, done


def downloader_event(services: Services, *, wait_seconds: int = 5, max_messages: int = 10) -> dict[str, Any]:
    """One receive from the download queue, as the SQS event Lambda would hand the downloader."""
    return receive_batch(
        services.aws().client("sqs"),
        queue_url=services.download_queue_url_here,
        queue_arn=services.stack_resources().download_queue_arn,
        region=REGION,
        max_messages=max_messages,
        wait_seconds=wait_seconds,
    )


def drain(
    services: Services, sam: str, config_file: Path | str, *, skip_pull: bool, wait_seconds: int = 5
) -> tuple[dict[str, Any], dict[str, Any] | None, subprocess.CompletedProcess[str] | None]:
    """One batch: receive, `sam local invoke DownloaderFunction -e <event>`, delete what succeeded."""
    event = downloader_event(services, wait_seconds=wait_seconds)
    if not event["Records"]:
        return event, None, None
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="sqs-event-", delete=False) as handle:
        json.dump(event, handle, indent=2)
    try:
        answer, done = sam_invoke(sam, config_file, "DownloaderFunction", handle.name, skip_pull=skip_pull)
    finally:
        os.unlink(handle.name)
    delete_succeeded(services.aws().client("sqs"), services.download_queue_url_here, event["Records"], answer)
    return event, answer, done
