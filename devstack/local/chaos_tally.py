"""`make chaos`'s tally: what every planned task became (read back through the API, its webhooks from the
receiver, its images from S3), counted against what its scenario expects, and the report."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import boto3
import httpx

from devstack.local.chaos_receiver import ChaosReceiver
from devstack.local.stack import LocalStack

if TYPE_CHECKING:
    from devstack.local.aws_faults import AwsFaults
    from devstack.local.chaos import Planned

HANGING_CLIENT = "hanger"  # its webhook endpoint hangs for the whole run
NEIGHBOUR_WEBHOOK_P95_SECONDS = 30.0


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
    edits_planned: int = 0  # submitted edits of an upload
    edits: int = 0  # ... whose upstream task's inputs were checked
    wrong_inputs: int = 0  # ... whose upstream did not fetch exactly its client's uploaded bytes
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
            self.wrong_inputs,
            self.edits_planned - self.edits,
        ) == (0, 0, 0, 0, 0, 0, 0, 0, 0) and (
            self.delay_percentile(0.95) or 0.0
        ) < NEIGHBOUR_WEBHOOK_P95_SECONDS


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


def check_inputs(result: Tally, task: Planned, fetched: list[list[str | None]]) -> None:
    """An edit of an upload: its upstream task (one: the tally counts a second as paid twice) fetched
    exactly the bytes its client uploaded for it, and nothing else."""
    assert task.upload is not None
    result.edits_planned += 1
    if not fetched:
        result.problems.append(f"#{task.number} {task.scenario}: no upstream task to check the inputs of")
        return
    result.edits += 1
    if any(inputs != [task.upload.sha256] for inputs in fetched):
        result.wrong_inputs += 1
        result.problems.append(f"#{task.number} {task.scenario}: the upstream fetched {fetched}")


def iso_seconds(moment: str) -> float:
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()


def tally(stack: LocalStack, planned: list[Planned], api: httpx.Client, receiver: ChaosReceiver) -> Tally:
    assert stack.resources is not None
    result = Tally(tasks=len(planned))
    s3 = boto3.client("s3", endpoint_url=stack.endpoint_url, region_name="us-east-1")
    upstream_tasks: Counter[str] = Counter()
    fetched_by_prompt: dict[str, list[list[str | None]]] = {}
    for task_id in stack.emulator.core.task_ids():
        upstream = stack.emulator.inspect_task(task_id) or {}
        request = upstream.get("request", {})
        prompt = request.get("prompt") or (request.get("input") or {}).get("prompt", "")
        upstream_tasks[prompt] += 1
        fetched_by_prompt.setdefault(prompt, []).append([i.get("sha256") for i in upstream.get("inputs", [])])
    for task in planned:
        if task.upload is not None and task.task_id is not None:  # deleted ones too: before the count
            check_inputs(result, task, fetched_by_prompt.get(task.prompt, []))
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
        "edits": result.edits,
        "wrong inputs": result.wrong_inputs,
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
