"""`make chaos`: N tasks through the local stack with faults injected at random, then a tally.

Faults: duplicate and concurrent callbacks, dropped callbacks (the reconciler must recover them),
failure codes, the single-image shape, expired result links (re-minted), image 5xx and stalls,
HTML instead of an image, bursts of SQS send errors, S3 put errors and DynamoDB throttling, and a
downloader that crashes after a batch, and an image host outage longer than the queue's own retries
(the reconciler must re-queue it). Fails unless lost = 0, duplicates = 0 and unfinished = 0: every
task ends `stored` or `failed`.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx

from devstack.local.aws_faults import AwsFaults
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
    ("html image", 2, "[fault:html]", "download_rejected"),
    ("dropped + failed", 2, "[fault:drop,fail=500]", 500),
]
SUBMIT_ATTEMPTS = 40


@dataclass
class Planned:
    number: int
    scenario: str
    prompt: str
    variants: int
    expected_failure: int | str | None
    idempotency_key: str = field(default_factory=lambda: str(uuid.uuid4()))
    task_id: str | None = None
    submit_error: str | None = None

    @property
    def images_expected(self) -> int:
        return 0 if self.expected_failure is not None else self.variants


def plan(count: int, seed: int) -> list[Planned]:
    chooser = random.Random(seed)
    names = [name for name, *_ in SCENARIOS]
    weights = [weight for _, weight, *_ in SCENARIOS]
    planned = []
    for number in range(count):
        name = chooser.choices(names, weights)[0]
        _, _, marker, expected = next(s for s in SCENARIOS if s[0] == name)
        # The single-image shape is Flux's, which makes one image: a 4o task with it would list more
        # images in record-info than in its callback.
        variants = 1 if "shape=flux" in marker else chooser.choice([1, 2, 4])
        planned.append(Planned(number, name, f"chaos {number} {marker}".strip(), variants, expected))
    return planned


def submit(api: httpx.Client, task: Planned) -> None:
    """A well-behaved client: one Idempotency-Key, retried on 409/429/5xx after Retry-After."""
    body = {"prompt": task.prompt, "size": "1:1", "nVariants": task.variants}
    for _attempt in range(SUBMIT_ATTEMPTS):
        try:
            response = api.post("/tasks", json=body, headers={"Idempotency-Key": task.idempotency_key})
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
    unfinished: int = 0  # still submitted or downloading when the run settled
    failed_as_expected: int = 0
    problems: list[str] = field(default_factory=list)


def tally(stack: LocalStack, planned: list[Planned], api: httpx.Client) -> Tally:
    assert stack.resources is not None
    result = Tally(tasks=len(planned))
    s3 = boto3.client("s3", endpoint_url=stack.endpoint_url, region_name="us-east-1")
    upstream_tasks: Counter[str] = Counter()
    for task_id in stack.emulator.core.task_ids():
        prompt = (stack.emulator.inspect_task(task_id) or {}).get("request", {}).get("prompt", "")
        upstream_tasks[prompt] += 1
    for task in planned:
        result.images_expected += task.images_expected
        if upstream_tasks[task.prompt] > 1:
            result.duplicates += upstream_tasks[task.prompt] - 1
            result.problems.append(
                f"#{task.number} {task.scenario}: generated {upstream_tasks[task.prompt]} times"
            )
        if task.task_id is None:
            result.lost += 1
            result.problems.append(f"#{task.number} {task.scenario}: never submitted ({task.submit_error})")
            continue
        record = api.get(f"/tasks/{task.task_id}").json()
        if record.get("status") not in ("stored", "failed"):
            result.unfinished += 1
            result.problems.append(
                f"#{task.number} {task.scenario} {task.task_id}: still {record.get('status')}"
            )
            continue
        listed = stack.emulator.inspect_task(task.task_id)["images"]
        generated = {image["index"]: image["sha256"] for image in listed}
        objects = s3.list_objects_v2(Bucket=stack.resources.images_bucket, Prefix=f"images/{task.task_id}/")
        keys = [item["Key"] for item in objects.get("Contents", [])]
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
        if len(keys) > task.images_expected or len(record["images"]) > task.images_expected:
            result.duplicates += max(len(keys), len(record["images"])) - task.images_expected
            result.problems.append(
                f"#{task.number} {task.scenario}: {len(keys)} objects for {task.images_expected}"
            )
    return result


def chaos_config(seed: int) -> tuple[StackConfig, AwsFaults]:
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
            "DOWNLOAD_RETRY_BASE_SECONDS": "1",
            # The reconciler re-queues what the queue gave up on, and ends downloads past their bound.
            "DOWNLOAD_CHECK_AFTER_SECONDS": "20",
            "DOWNLOAD_GIVE_UP_SECONDS": "240",
            "POWERTOOLS_LOG_LEVEL": "CRITICAL",  # injected faults log by design; the tally is the output
        },
        access_log=False,
    )
    return config, faults


def run(count: int, seed: int, timeout: float, out: Any = sys.stdout) -> Tally:
    config, aws_faults = chaos_config(seed)
    planned = plan(count, seed)
    with LocalStack(config) as stack:
        assert stack.resources is not None
        # Time compressed: a crashed batch comes back after 35 s instead of the template's 360 s
        # (still longer than a batch can run here: 10 images x the 3 s download deadline).
        boto3.client("sqs", endpoint_url=stack.endpoint_url, region_name="us-east-1").set_queue_attributes(
            QueueUrl=stack.resources.download_queue_url, Attributes={"VisibilityTimeout": "35"}
        )
        started = time.monotonic()
        with httpx.Client(base_url=stack.api_url, timeout=30) as api:
            queue = list(planned)
            lock = threading.Lock()

            def worker() -> None:
                while True:
                    with lock:
                        if not queue:
                            return
                        task = queue.pop(0)
                    submit(api, task)

            threads = [threading.Thread(target=worker) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout)
            submitted_in = time.monotonic() - started
            deadline = started + timeout
            pending = [task for task in planned if task.task_id]
            while pending and time.monotonic() < deadline:
                pending = [
                    task
                    for task in pending
                    if api.get(f"/tasks/{task.task_id}").json()["status"] not in ("stored", "failed")
                ]
                time.sleep(1)
            time.sleep(2)  # let any (wrong) late duplicate land before counting
            result = tally(stack, planned, api)
        elapsed = time.monotonic() - started
        print_report(result, planned, aws_faults, stack, submitted_in, elapsed, out)
    return result


def print_report(
    result: Tally,
    planned: list[Planned],
    aws: AwsFaults,
    stack: LocalStack,
    submitted_in: float,
    elapsed: float,
    out: Any,
) -> None:
    scenarios = Counter(task.scenario for task in planned)
    print("\nchaos run", file=out)
    print(f"  {'scenario':<18}{'tasks':>6}", file=out)
    for name, count in sorted(scenarios.items(), key=lambda item: -item[1]):
        print(f"  {name:<18}{count:>6}", file=out)
    print(f"\n  injected AWS errors: {dict(aws.injected) or 'none'}", file=out)
    print(f"  downloader crashes after a batch: {stack.poller.crashes if stack.poller else 0}", file=out)
    print(f"  submitted in {submitted_in:.1f} s, settled in {elapsed:.1f} s\n", file=out)
    header = ("tasks", "images expected", "stored", "duplicates", "lost", "unfinished", "failed as expected")
    values = (
        result.tasks,
        result.images_expected,
        result.stored,
        result.duplicates,
        result.lost,
        result.unfinished,
        result.failed_as_expected,
    )
    print("  " + " | ".join(f"{name:>{len(name)}}" for name in header), file=out)
    print(
        "  " + " | ".join(f"{value:>{len(name)}}" for name, value in zip(header, values, strict=True)),
        file=out,
    )
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
    ok = result.lost == 0 and result.duplicates == 0 and result.unfinished == 0
    print(
        f"\n{'PASS' if ok else 'FAIL'}: lost = {result.lost}, duplicates = {result.duplicates}, "
        f"unfinished = {result.unfinished}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
