"""`make chaos`: N tasks through the local stack with faults injected at random, then a tally.

Faults: duplicate and concurrent callbacks, dropped callbacks (the reconciler must recover them),
failure codes, the single-image shape, expired result links (re-minted), image 5xx and stalls,
HTML instead of an image, bursts of SQS send errors, S3 put errors and DynamoDB throttling, and a
downloader that crashes after a batch, and an image host outage longer than the queue's own retries
(the reconciler must re-queue it). Most tasks ask for a webhook, to a receiver on loopback that
answers 5xx, holds its answer past the sender's timeout or trickles its body (chaos_receiver.py).
Tasks come from three client apps (their own API keys) and a fourth whose webhook endpoint hangs for
the whole run; some of the 4o tasks are Market (Nano Banana, Imagen 4 Fast) tasks instead, and a few
tasks are deleted by their client as soon as they end, while duplicate download jobs may still run.
Fails unless lost = 0, duplicates = 0, unowned = 0, paid twice = 0, unfinished = 0, notify lost = 0,
orphans = 0 and the neighbours' webhook delay p95 < 30 s: every task ends `stored` or `failed`,
readable by its submitter (also when generate's answer timed out), generated once per Idempotency-Key;
every ended task of the three that asked for a webhook was delivered as one verified event, within
30 s of its end for 95 % of them whatever the hanging client does; a deleted task is gone (404) and
no object version under images/ belongs to a deleted or unknown task.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import math
import random
import secrets
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3
import httpx

from devstack.local.aws_faults import AwsFaults
from devstack.local.chaos_receiver import ChaosReceiver
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
]
MARKET_MODELS = {"market 4 images": "google/imagen4-fast"}  # the other Market scenarios: nano-banana
CLIENTS = ("alice", "bob", "carol")
HANGING_CLIENT = "hanger"  # its webhook endpoint hangs for the whole run
HANGING_SHARE = 0.1
DELETE_SHARE = 0.06  # of the neighbours' tasks expected to store: deleted by their client on its end
NEIGHBOUR_WEBHOOK_P95_SECONDS = 30.0
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
            body: dict[str, Any] = {"model": self.model, "input": given}
        else:
            body = {"prompt": self.prompt, "size": "1:1", "nVariants": self.variants}
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


@dataclass
class Tally:
    tasks: int = 0
    images_expected: int = 0
    stored: int = 0
    duplicates: int = 0
    lost: int = 0
    unowned: int = 0  # an ended task its submitter cannot read (GET is not 200)
    paid_twice: int = 0  # more than one upstream generation for one Idempotency-Key
    unfinished: int = 0  # still submitted or downloading when the run settled
    failed_as_expected: int = 0
    webhooks: int = 0  # ended tasks that asked for one
    notified: int = 0  # ... delivered as exactly one verified event (one webhook-id), accepted 2xx
    notify_lost: int = 0  # ... with no accepted verified delivery, or not `delivered` in GET
    deleted: int = 0  # deleted by their client on their end (then 404, and nothing of them in S3)
    orphans: int = 0  # object versions under images/ of a deleted or unknown task
    # seconds from a neighbour's task end to its webhook's first attempt (what the hanging client could
    # hold up), and to the delivery its receiver accepted (its own receiver's faults and retries too)
    neighbour_delays: list[float] = field(default_factory=list)
    accepted_delays: list[float] = field(default_factory=list)
    hanging_tasks: int = 0
    problems: list[str] = field(default_factory=list)

    def delay_percentile(self, fraction: float, *, accepted: bool = False) -> float | None:
        return percentile(self.accepted_delays if accepted else self.neighbour_delays, fraction)

    @property
    def passed(self) -> bool:
        return (
            self.lost,
            self.duplicates,
            self.unfinished,
            self.notify_lost,
            self.unowned,
            self.paid_twice,
            self.orphans,
        ) == (0, 0, 0, 0, 0, 0, 0) and (self.delay_percentile(0.95) or 0.0) < NEIGHBOUR_WEBHOOK_P95_SECONDS


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def tally_notification(result: Tally, task: Planned, record: dict[str, Any], receiver: ChaosReceiver) -> None:
    """An ended task that asked for a webhook: one logical event (deduped by webhook-id), verified
    with standardwebhooks on arrival, of the right type and task, accepted, and `delivered` in GET."""
    result.webhooks += 1
    where = f"#{task.number} {task.scenario} {task.task_id}"
    deliveries = receiver.at(task.webhook_path)
    kind = "task.stored" if record["status"] == "stored" else "task.failed"
    expected_id = f"msg_{task.task_id}_{record['status']}"
    ids = {delivery.webhook_id for delivery in deliveries}
    good = [
        delivery
        for delivery in deliveries
        if delivery.payload is not None
        and delivery.payload.get("type") == kind
        and delivery.payload.get("data", {}).get("taskId") == task.task_id
        and delivery.webhook_id == expected_id
    ]
    for delivery in deliveries:
        if delivery not in good:
            result.problems.append(f"{where}: bad delivery {delivery.webhook_id} {delivery.error or ''}")
    state = (record.get("notification") or {}).get("state")
    if len(ids) > 1:
        result.duplicates += len(ids) - 1
        result.problems.append(f"{where}: {len(ids)} webhook-ids {sorted(ids)}")
    elif not any(delivery.accepted for delivery in good) or state != "delivered":
        result.notify_lost += 1
        result.problems.append(
            f"{where}: notification {record.get('notification')}, {len(good)}/{len(deliveries)} verified"
        )
    else:
        result.notified += 1
        ended_at = iso_seconds(record["updatedAt"])
        result.neighbour_delays.append(max(0.0, min(delivery.at for delivery in good) - ended_at))
        result.accepted_delays.append(max(0.0, min(d.at for d in good if d.accepted) - ended_at))


def iso_seconds(moment: str) -> float:
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()


def tally(stack: LocalStack, planned: list[Planned], api: httpx.Client, receiver: ChaosReceiver) -> Tally:
    assert stack.resources is not None
    result = Tally(tasks=len(planned))
    s3 = boto3.client("s3", endpoint_url=stack.endpoint_url, region_name="us-east-1")
    upstream_tasks: Counter[str] = Counter()
    for task_id in stack.emulator.core.task_ids():
        request = (stack.emulator.inspect_task(task_id) or {}).get("request", {})
        prompt = request.get("prompt") or (request.get("input") or {}).get("prompt", "")
        upstream_tasks[prompt] += 1
    for task in planned:
        if not task.deleted:
            result.images_expected += task.images_expected
        if upstream_tasks[task.prompt] > 1:  # each task has its own prompt and its own key
            result.paid_twice += upstream_tasks[task.prompt] - 1
            result.problems.append(
                f"#{task.number} {task.scenario}: generated {upstream_tasks[task.prompt]} times"
            )
        if task.task_id is None:
            result.lost += 1
            result.problems.append(f"#{task.number} {task.scenario}: never submitted ({task.submit_error})")
            continue
        answer = api.get(f"/tasks/{task.task_id}", headers=task.headers)
        if task.deleted:
            result.deleted += 1
            if answer.status_code != 404:
                result.problems.append(
                    f"#{task.number} {task.scenario} {task.task_id}: deleted, GET {answer.status_code}"
                )
                result.lost += 1
            continue
        if answer.status_code != 200:
            result.unowned += 1
            result.problems.append(f"#{task.number} {task.scenario} {task.task_id}: GET {answer.status_code}")
            continue
        record = answer.json()
        if record.get("status") not in ("stored", "failed"):
            result.unfinished += 1
            result.problems.append(
                f"#{task.number} {task.scenario} {task.task_id}: still {record.get('status')}"
            )
            continue
        if task.client == HANGING_CLIENT:
            result.hanging_tasks += 1
        elif task.webhook:
            tally_notification(result, task, record, receiver)
        listed = stack.emulator.inspect_task(record.get("upstreamTaskId") or task.task_id)["images"]
        generated = {image["index"]: image["sha256"] for image in listed}
        copies = stored_copies(s3, stack.resources.images_bucket, task.task_id)
        if task.expected_failure is not None:
            error = record.get("error") or {}
            if record["status"] == "failed" and error.get("code") == task.expected_failure:
                result.failed_as_expected += 1
            else:
                result.lost += 1
                result.problems.append(
                    f"#{task.number} {task.scenario}: expected failure, got {record['status']}"
                )
            continue
        if record["status"] != "stored":
            result.lost += 1
            result.problems.append(
                f"#{task.number} {task.scenario} {task.task_id}: {record['status']} {record['error']}"
            )
            continue
        good = [
            image
            for image in record["images"]
            if image["sha256"] == generated.get(image["index"])
            and hashlib.sha256(
                s3.get_object(Bucket=stack.resources.images_bucket, Key=image["key"])["Body"].read()
            ).hexdigest()
            == image["sha256"]
        ]
        result.stored += len(good)
        if len(good) < task.images_expected:
            result.lost += task.images_expected - len(good)
            result.problems.append(
                f"#{task.number} {task.scenario}: {len(good)}/{task.images_expected} images intact"
            )
        if copies > task.images_expected or len(record["images"]) > task.images_expected:
            result.duplicates += max(copies, len(record["images"])) - task.images_expected
            result.problems.append(
                f"#{task.number} {task.scenario}: {copies} object versions for {task.images_expected}"
            )
    result.orphans = count_orphans(s3, stack.resources.images_bucket, planned, result)
    return result


def count_orphans(s3: Any, bucket: str, planned: list[Planned], result: Tally) -> int:
    """Object versions under images/ whose task is deleted, or no task of the run at all."""
    alive = {task.task_id for task in planned if task.task_id and not task.deleted}
    orphans = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix="images/"):
        for version in page.get("Versions", []):
            task_id = version["Key"].split("/")[1]
            if task_id not in alive:
                orphans += 1
                result.problems.append(f"orphan {version['Key']} version {version['VersionId']}")
    return orphans


def stored_copies(s3: Any, bucket: str, task_id: str) -> int:
    """Every version of every object under the task's prefix (the bucket is versioned, as deployed): an
    image written twice to its key is two copies, an overwrite a duplicate like a second key."""
    versions = s3.list_object_versions(Bucket=bucket, Prefix=f"images/{task_id}/").get("Versions", [])
    return len(versions)


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


def print_report(
    result: Tally,
    planned: list[Planned],
    aws: AwsFaults,
    stack: LocalStack,
    receiver: ChaosReceiver,
    timings: tuple[float, float, float],
    out: Any,
) -> None:
    scenarios = Counter(task.scenario for task in planned)
    print("\nchaos run", file=out)
    print(f"  {'scenario':<18}{'tasks':>6}", file=out)
    for name, count in sorted(scenarios.items(), key=lambda item: -item[1]):
        print(f"  {name:<18}{count:>6}", file=out)
    print(f"\n  injected AWS errors: {dict(aws.injected) or 'none'}", file=out)
    print(f"  downloader crashes after a batch: {stack.poller.crashes if stack.poller else 0}", file=out)
    events = len({delivery.webhook_id for delivery in receiver.deliveries})
    print(
        f"  webhook deliveries: {len(receiver.deliveries)} for {events} events, receiver answers "
        f"{dict(receiver.injected) or 'none'}",
        file=out,
    )
    submitted_in, settled_in, elapsed = timings
    print(
        f"  submitted in {submitted_in:.1f} s, tasks ended in {settled_in:.1f} s, "
        f"notifications settled in {elapsed:.1f} s\n",
        file=out,
    )
    columns = {
        "tasks": result.tasks,
        "images expected": result.images_expected,
        "stored": result.stored,
        "duplicates": result.duplicates,
        "lost": result.lost,
        "unowned": result.unowned,
        "paid twice": result.paid_twice,
        "unfinished": result.unfinished,
        "failed as expected": result.failed_as_expected,
        "webhooks": result.webhooks,
        "notified": result.notified,
        "notify lost": result.notify_lost,
        "deleted": result.deleted,
        "orphans": result.orphans,
    }
    print("  " + " | ".join(columns), file=out)
    print("  " + " | ".join(f"{value:>{len(name)}}" for name, value in columns.items()), file=out)
    for label, delays in (
        ("first attempt", result.neighbour_delays),
        ("accepted delivery", result.accepted_delays),
    ):
        if delays:
            print(
                f"  neighbours' webhook delay to the {label} after their task ended ({len(delays)} webhooks, "
                f"the hanging client's {result.hanging_tasks} tasks beside them): "
                f"p50 {percentile(delays, 0.5):.1f} s, p95 {percentile(delays, 0.95):.1f} s, "
                f"max {max(delays):.1f} s",
                file=out,
            )
    print(f"  target: first attempt p95 < {NEIGHBOUR_WEBHOOK_P95_SECONDS:g} s", file=out)
    for problem in result.problems[:30]:
        print(f"  ! {problem}", file=out)


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
        f"neighbours' webhook first attempt p95 = {result.delay_percentile(0.95) or 0.0:.1f} s"
    )
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
