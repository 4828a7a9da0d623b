"""`make chaos`: N tasks through the local stack with faults injected at random, then a tally.

Faults: duplicate and concurrent callbacks, dropped callbacks (the reconciler must recover them),
failure codes, the single-image shape, expired result links (re-minted), image 5xx and stalls, HTML
instead of an image, bursts of SQS send errors, S3 put errors and DynamoDB throttling, and a downloader
that crashes after a batch, and an image host outage longer than the queue's own retries (the reconciler
must re-queue it). Most tasks ask for a webhook, to a receiver on loopback that answers 5xx, holds its
answer past the sender's timeout or trickles its body (chaos_receiver.py). Tasks come from three client
apps (their own API keys) and a fourth whose webhook endpoint hangs for the whole run; some of the 4o
tasks are Market (Nano Banana, Imagen 4 Fast) tasks instead, some edit a photo their client uploaded
(4o, Nano Banana Edit), and a few tasks are deleted by their client as soon as they end, while duplicate
download jobs may still run. Fails unless lost = 0, duplicates = 0, unowned = 0, paid twice = 0,
unfinished = 0, notify lost = 0, orphans = 0, wrong inputs = 0 and the neighbours' webhook delay p95 <
30 s: every task ends `stored` or `failed`, readable by its submitter (also when generate's answer timed
out), generated once per Idempotency-Key; every ended task of the three that asked for a webhook was
delivered as one verified event, within 30 s of its end for 95 % of them whatever the hanging client
does; a deleted task is gone (404) and no object version under images/ belongs to a deleted or unknown
task; every edit's upstream fetched exactly the bytes its client uploaded.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import random
import secrets
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx

from devstack.local.aws_faults import AwsFaults
from devstack.local.chaos_receiver import ChaosReceiver
from devstack.local.chaos_tally import HANGING_CLIENT, Tally, print_report, tally
from devstack.local.stack import LocalStack, StackConfig

# (scenario, weight, prompt marker, expected failure code or None)
SCENARIOS: list[tuple[str, int, str, int | str | None]] = [
    ("clean", 24, "", None),
    ("duplicate", 10, "[fault:duplicate=3]", None),
    ("concurrent", 10, "[fault:concurrent=5]", None),
    ("dropped", 10, "[fault:drop]", None),
    ("flux shape", 5, "[fault:shape=flux]", None),
    ("stale links", 8, "[fault:stale_links]", None),
    ("image 5xx", 8, "[fault:image_5xx=2]", None),
    ("host outage", 4, "[fault:image_5xx=7]", None),
    ("image stall", 5, "[fault:slow_first]", None),
    ("failed 400", 2, "[fault:fail=400]", 400),
    ("failed 451", 2, "[fault:fail=451]", 451),
    ("failed 500", 2, "[fault:fail=500]", 500),
    ("failed 501", 2, "[fault:fail=501]", 501),
    ("html image", 3, "[fault:html]", "download_rejected"),
    ("dropped + failed", 2, "[fault:drop,fail=500]", 500),
    # generate answers after the API's timeout (KIE_API_TIMEOUT_SECONDS below): 202 "submitting"
    ("submit timeout", 6, "[fault:submit_delay=4]", None),
    # The Market: one model of one image, one of four, a failure (its callback's code is 501), a drop
    ("market 1 image", 6, "", None),
    ("market 4 images", 4, "", None),
    ("market duplicate", 3, "[fault:duplicate=3]", None),
    ("market dropped", 3, "[fault:drop]", None),
    ("market failed", 2, "[fault:fail=500]", 501),
    # Edits of the client's own upload (POST /uploads, its presigned PUT): 4o, and a Market edit model;
    # the upstream must fetch exactly the uploaded bytes through the link the API presigned.
    ("edit upload", 5, "", None),
    ("market edit upload", 3, "", None),
]
MARKET_MODELS = {"market 4 images": "google/imagen4-fast", "market edit upload": "google/nano-banana-edit"}
# the other Market scenarios: nano-banana
CLIENTS = ("alice", "bob", "carol")
HANGING_SHARE = 0.1
DELETE_SHARE = 0.06  # of the neighbours' tasks expected to store: deleted by their client on its end
SUBMIT_ATTEMPTS = 40
WEBHOOK_SHARE = 0.9  # of the tasks ask for a webhook
WEBHOOK_TIMEOUT_SECONDS = 2
# The receiver fails one event at most 3 times (5xx or timeout): 8 attempts leave room for the
# notifier's own AWS faults (a throttled write after a 2xx brings the message back, same webhook-id).
WEBHOOK_MAX_ATTEMPTS = 8
RECEIVER_MAX_FAULTS = 3
# Once every task has ended, its webhooks settle within a few backoffs and a notify batch or two
# returning after its visibility timeout (35 s): past this, a `pending` one is not coming.
NOTIFY_SETTLE_SECONDS = 120


@dataclass(frozen=True)
class Upload:
    reference: str  # upload:<uploadId>
    sha256: str  # of the bytes its client PUT


@dataclass
class Planned:
    number: int
    scenario: str
    prompt: str
    variants: int
    expected_failure: int | str | None
    webhook: bool = False
    client: str = CLIENTS[0]
    model: str | None = None  # a Market model; None: gpt-4o-image
    delete: bool = False  # its client deletes it as soon as it ends
    upload: Upload | None = None  # the edit scenarios: the client's upload it edits
    idempotency_key: str = field(default_factory=lambda: str(uuid.uuid4()))
    task_id: str | None = None
    submit_error: str | None = None
    deleted: bool = False  # DELETE answered 204

    @property
    def images_expected(self) -> int:
        return 0 if self.expected_failure is not None else self.variants

    @property
    def webhook_path(self) -> str:
        return f"/hang/{self.number}" if self.client == HANGING_CLIENT else f"/hooks/{self.number}"

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": api_key(self.client)}

    def body(self, webhook_origin: str) -> dict[str, Any]:
        if self.model is not None:
            given: dict[str, Any] = {"prompt": self.prompt}
            if self.model == "google/imagen4-fast":
                given["num_images"] = self.variants
            if self.upload is not None:
                given["image_urls"] = [self.upload.reference]
            body: dict[str, Any] = {"model": self.model, "input": given}
        else:
            body = {"prompt": self.prompt, "size": "1:1", "nVariants": self.variants}
            if self.upload is not None:
                body["filesUrl"] = [self.upload.reference]
        if self.webhook:
            body["webhookUrl"] = webhook_origin + self.webhook_path
        return body


def api_key(client: str) -> str:
    return f"chaos-key-of-{client}"


def plan(count: int, seed: int) -> list[Planned]:
    chooser = random.Random(seed)
    asks = random.Random(seed + 1)  # its own stream: the scenarios stay those of the seed
    clients = random.Random(seed + 2)
    names = [name for name, *_ in SCENARIOS]
    weights = [weight for _, weight, *_ in SCENARIOS]
    planned = []
    for number in range(count):
        name = chooser.choices(names, weights)[0]
        _, _, marker, expected = next(s for s in SCENARIOS if s[0] == name)
        # The single-image shape is Flux's, which makes one image: a 4o task with it would list more
        # images in record-info than in its callback.
        variants = 1 if "shape=flux" in marker else chooser.choice([1, 2, 4])
        model = None
        if name.startswith("market"):
            model = MARKET_MODELS.get(name, "google/nano-banana")
            variants = 4 if model == "google/imagen4-fast" else 1
        prompt = f"chaos {number} {marker}".strip()
        task = Planned(number, name, prompt, variants, expected, asks.random() < WEBHOOK_SHARE, model=model)
        task.client = HANGING_CLIENT if clients.random() < HANGING_SHARE else CLIENTS[number % len(CLIENTS)]
        task.delete = task.client != HANGING_CLIENT and expected is None and clients.random() < DELETE_SHARE
        planned.append(task)
    return planned


def submit(api: httpx.Client, task: Planned, webhook_origin: str) -> None:
    """A well-behaved client: one Idempotency-Key, retried on 409/429/5xx after Retry-After."""
    body = task.body(webhook_origin)
    for _attempt in range(SUBMIT_ATTEMPTS):
        try:
            response = api.post(
                "/tasks", json=body, headers={**task.headers, "Idempotency-Key": task.idempotency_key}
            )
        except httpx.HTTPError as error:
            task.submit_error = str(error)
            time.sleep(1)
            continue
        if response.status_code == 202:
            task.task_id = response.json()["taskId"]
            task.submit_error = None
            return
        task.submit_error = f"{response.status_code} {response.text[:200]}"
        if response.status_code in (409, 429) or response.status_code >= 500:
            time.sleep(min(10.0, float(response.headers.get("Retry-After", "1"))))
            continue
        return


def upload_photos(api: httpx.Client, tasks: list[Planned], seed: int) -> None:
    """Each edit task's client uploads a photo for it (POST /uploads, retried on 429/5xx as any client
    would, then the presigned PUT with its signed headers). Every photo's bytes are its own (the task's
    number in a PNG text chunk), so an edit handed another task's or another client's upload shows."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    for task in tasks:
        if "upload" not in task.scenario:
            continue
        shade = random.Random(f"{seed}:{task.number}").randrange(256)
        tag = PngInfo()
        tag.add_text("chaos-task", f"{seed}:{task.number}")
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (shade, 255 - shade, 90)).save(buffer, "PNG", pnginfo=tag)
        task.upload = _upload(api, api_key(task.client), buffer.getvalue())


def _upload(api: httpx.Client, key: str, data: bytes) -> Upload:
    for _attempt in range(SUBMIT_ATTEMPTS):
        created = api.post(
            "/uploads", json={"contentType": "image/png", "bytes": len(data)}, headers={"x-api-key": key}
        )
        if created.status_code == 201:
            body = created.json()
            put = httpx.put(
                body["upload"]["url"], content=data, headers=body["upload"]["headers"], timeout=30
            )
            put.raise_for_status()
            return Upload(body["reference"], hashlib.sha256(data).hexdigest())
        if created.status_code not in (429,) and created.status_code < 500:
            raise RuntimeError(f"POST /uploads answered {created.status_code}: {created.text[:200]}")
        time.sleep(min(10.0, float(created.headers.get("Retry-After", "1"))))
    raise RuntimeError("POST /uploads kept failing")


def chaos_config(seed: int, webhook_origin: str, webhook_secret: str) -> tuple[StackConfig, AwsFaults]:
    faults = AwsFaults(probability=0.03, burst=5, seed=seed)
    config = StackConfig(
        api_port=0,
        generation_seconds=1.0,
        callback_retry_schedule=(1.0, 2.0, 4.0),
        workers=4,
        reconcile_interval_seconds=2.0,
        reconcile_after_seconds=8.0,
        aws_middleware=faults.wrap,
        poller_crash_probability=0.05,
        extra_environment={
            "DOWNLOAD_DEADLINE_SECONDS": "3",
            # Shorter than the "submit timeout" scenario's delay: its generate call gets no answer.
            "KIE_API_TIMEOUT_SECONDS": "3",
            "DOWNLOAD_RETRY_BASE_SECONDS": "1",
            # The reconciler re-queues what the queue gave up on, and ends downloads past their bound.
            "DOWNLOAD_CHECK_AFTER_SECONDS": "20",
            "DOWNLOAD_GIVE_UP_SECONDS": "240",
            "POWERTOOLS_LOG_LEVEL": "CRITICAL",  # injected faults log by design; the tally is the output
            "WEBHOOK_TRUSTED_ORIGINS": webhook_origin,
            "WEBHOOK_TIMEOUT_SECONDS": str(WEBHOOK_TIMEOUT_SECONDS),
            "WEBHOOK_RETRY_BASE_SECONDS": "1",  # 1, 2, 4 ... s between attempts
            "WEBHOOK_MAX_ATTEMPTS": str(WEBHOOK_MAX_ATTEMPTS),
        },
        access_log=False,
        webhook_secret=webhook_secret,
        api_keys={api_key(client): client for client in (*CLIENTS, HANGING_CLIENT)},
    )
    return config, faults


def submit_all(api: httpx.Client, planned: list[Planned], webhook_origin: str, timeout: float) -> None:
    queue = list(planned)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not queue:
                    return
                task = queue.pop(0)
            submit(api, task, webhook_origin)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)


def wait_until(api: httpx.Client, tasks: list[Planned], settled: Any, deadline: float) -> None:
    """Poll GET /tasks/{id} until `settled(record)` holds for every task, or the deadline."""
    while tasks and time.monotonic() < deadline:
        tasks = [
            task
            for task in tasks
            if not task.deleted
            and not settled(api.get(f"/tasks/{task.task_id}", headers=task.headers).json())
        ]
        if tasks:
            time.sleep(1)


def delete_on_end(api: httpx.Client, tasks: list[Planned], deadline: float) -> None:
    """Each client deletes its chosen tasks the moment they end (409 while running: tried again),
    while duplicate download jobs of theirs may still be in flight."""
    waiting = [task for task in tasks if task.delete and task.task_id]
    while waiting and time.monotonic() < deadline:
        for task in list(waiting):
            answer = api.delete(f"/tasks/{task.task_id}", headers=task.headers)
            if answer.status_code == 204:
                task.deleted = True
                waiting.remove(task)
            elif answer.status_code != 409:
                waiting.remove(task)  # the tally says what it answered
        time.sleep(0.2)


def ended(record: dict[str, Any]) -> bool:
    return record.get("status") in ("stored", "failed")


def notification_settled(record: dict[str, Any]) -> bool:
    """Not ended (the tally says so), or its webhook `delivered` or `failed`: nothing more will come."""
    state = (record.get("notification") or {}).get("state")
    return not ended(record) or state in ("delivered", "failed")


def settle(stack: LocalStack, deadline: float) -> None:
    """Until the deadline: the upstream has no callback left to deliver and the stack's queues are empty
    (a batch that crashed comes back after its visibility timeout, and is handled before the count).
    The notification queue aside: the hanging client's messages wait out its breaker's rests there, and
    the neighbours' notifications have settled (delivered or failed) before this is called."""
    if stack.emulator is not None:
        stack.emulator.wait_until_idle(max(0.0, deadline - time.monotonic()))
    while stack.queued_messages(besides=("NotificationQueue",)) and time.monotonic() < deadline:
        time.sleep(0.5)


def run(count: int, seed: int, timeout: float, out: Any = sys.stdout) -> Tally:
    planned = plan(count, seed)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    # The receiver first: the stack must list its origin among the trusted loopback ones.
    with ChaosReceiver(secret, WEBHOOK_TIMEOUT_SECONDS, RECEIVER_MAX_FAULTS, seed) as receiver:
        config, aws_faults = chaos_config(seed, receiver.origin, secret)
        with LocalStack(config) as stack:
            assert stack.resources is not None and stack.webhook_secret == secret
            # Time compressed: a crashed batch comes back after 35 s instead of the template's 360 s
            # (still longer than a batch can run here: 10 images x the 3 s download deadline); a
            # notify batch the notifier failed (a throttled write), after 35 s instead of 180 s.
            sqs = boto3.client("sqs", endpoint_url=stack.endpoint_url, region_name="us-east-1")
            for queue_url in (
                stack.resources.download_queue_url,
                stack.resources.queues["NotificationQueue"].url,
            ):
                sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "35"})
            started = time.monotonic()
            deadline = started + timeout
            with httpx.Client(base_url=stack.api_url, timeout=30) as api:
                deleter = threading.Thread(target=lambda: delete_on_end(api, planned, deadline), daemon=True)
                upload_photos(api, planned, seed)
                submit_all(api, planned, receiver.origin, timeout)
                deleter.start()
                submitted_in = time.monotonic() - started
                submitted = [task for task in planned if task.task_id]
                wait_until(api, submitted, ended, deadline)
                deleter.join(max(0.0, deadline - time.monotonic()))
                settled_in = time.monotonic() - started
                asked = [task for task in submitted if task.webhook and task.client != HANGING_CLIENT]
                wait_until(
                    api, asked, notification_settled, min(deadline, time.monotonic() + NOTIFY_SETTLE_SECONDS)
                )
                settle(stack, deadline)  # any (wrong) late duplicate has landed before the count
                result = tally(stack, planned, api, receiver)
            elapsed = time.monotonic() - started
            print_report(
                result, planned, aws_faults, stack, receiver, (submitted_in, settled_in, elapsed), out
            )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds for the whole run (bounded)")
    arguments = parser.parse_args()
    result = run(arguments.tasks, arguments.seed, arguments.timeout)
    print(
        f"\n{'PASS' if result.passed else 'FAIL'}: lost = {result.lost}, duplicates = {result.duplicates}, "
        f"unowned = {result.unowned}, paid twice = {result.paid_twice}, "
        f"unfinished = {result.unfinished}, notify lost = {result.notify_lost}, orphans = {result.orphans}, "
        f"wrong inputs = {result.wrong_inputs}, "
        f"neighbours' webhook first attempt p95 = {result.delay_percentile(0.95) or 0.0:.1f} s"
    )
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
