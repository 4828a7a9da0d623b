"""2. Downloader memory: SQS batches of 1 and of 10 ~4 MB images through downloader_handler.lambda_handler,
under moto, from a local image server, with tracemalloc. One image in memory per job at most: the peak of
a batch of 10 should stay near the peak of a batch of 1. The figure is the extra peak memory each added
image costs, (peak(10) - peak(1)) / 9, in each of RUNS runs.
"""

from __future__ import annotations

import gc
import io
import json
import os
import socket
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx

from tests.bench.common import (
    EXIT_ERROR,
    Budgets,
    LambdaContext,
    Row,
    add_code_paths,
    banner,
    local_environment,
    median,
    mib,
    print_table,
    spread,
    summary_rows,
    use_local_environment,
)

IMAGE_SIDE = 1160  # random RGB pixels barely compress: ~3.9 MiB of PNG
BATCHES = (1, 10)
RUNS = 3  # each batch size, alternated, after one warm-up
RATIO_BUDGET = 2.0
# moto keeps S3 objects under this size in memory; spool them to disk so the emulated S3's copies of
# the stored images are not counted as the function's memory.
MOTO_KEY_BUFFER_BYTES = 64 * 1024
SERVER_START_SECONDS = 30


def noise_png(side: int, seed: int) -> bytes:
    import random

    from PIL import Image

    pixels = random.Random(seed).randbytes(side * side * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def downloading_task(table: str, task_id: str, urls: list[str]) -> None:
    from image_pipeline.adapters.tasks_table import TasksTable
    from image_pipeline.task_records import utc_now
    from image_pipeline.tokens import hash_token

    store = TasksTable(table)
    upstream_task_id = f"up{task_id}"  # the upstream's id of the task: never ours
    recorded = store.create_task(
        task_id,
        owner="local",
        options={"prompt": "bench", "size": "1:1"},
        token_hash=hash_token(f"token-{task_id}"),
        now=utc_now(),
        next_check_at=utc_now(),
    )
    if not (
        recorded
        and store.confirm_submitted(task_id, upstream_task_id, utc_now(), utc_now())
        and store.start_downloading(task_id, upstream_task_id, urls, utc_now(), utc_now())
    ):
        raise RuntimeError("could not put the task in the downloading state")
    store.mark_jobs_enqueued(task_id, utc_now())


def sqs_event(task_id: str, urls: list[str]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"{task_id}-{index}",
                "receiptHandle": f"receipt-{task_id}-{index}",
                "body": json.dumps({"taskId": task_id, "index": index, "url": url}),
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1795294801000",
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": "1795294801005",
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:DownloadQueue",
                "awsRegion": "us-east-1",
            }
            for index, url in enumerate(urls)
        ]
    }


def run_batch(
    handler: Any, table: str, server: Any, image: bytes, size: int, *, traced: bool
) -> dict[str, float]:
    from image_pipeline.adapters.tasks_table import TasksTable

    from tests.http_fixtures import Reply

    task_id = uuid.uuid4().hex
    urls = [server.serve(f"/s/{task_id}_{index}.png", Reply(body=image)) for index in range(size)]
    downloading_task(table, task_id, urls)
    event = sqs_event(task_id, urls)
    gc.collect()
    if traced:
        tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0] if traced else 0
    started = time.perf_counter()
    response = handler(event, LambdaContext())
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] - before if traced else 0
    del event
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - before if traced else 0
    if response["batchItemFailures"]:
        raise RuntimeError(f"batch of {size}: failed messages {response['batchItemFailures']}")
    record = TasksTable(table).get_task(task_id)
    if record is None or record.status != "stored" or record.storedCount != size:
        raise RuntimeError(f"batch of {size}: task not stored: {record}")
    return {"peak": peak, "retained": retained, "seconds": elapsed}


@contextmanager
def moto_server_process() -> Iterator[str]:
    """moto_server in a process of its own on 127.0.0.1, so none of its allocations are traced here."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=local_environment(),
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def measure(server: Any, images: dict[str, bytes], *, in_process: bool) -> dict[int, list[dict[str, float]]]:
    import boto3
    from image_pipeline import wiring
    from image_pipeline.adapters import aws
    from image_pipeline.settings import reset_settings_cache
    from moto import mock_aws

    from devstack.common.aws_resources import create_stack_resources

    results: dict[int, list[dict[str, float]]] = {size: [] for size in BATCHES}
    with ExitStack() as stack:
        if in_process:
            stack.enter_context(mock_aws())
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = stack.enter_context(moto_server_process())
        resources = create_stack_resources(boto3.Session(region_name="us-east-1"), prefix="bench")
        os.environ.update(
            {
                "TASKS_TABLE": resources.tasks_table,
                "DOWNLOAD_QUEUE_URL": resources.download_queue_url,
                "IMAGES_BUCKET": resources.images_bucket,
                "KIE_API_BASE_URL": "https://api.kie.ai",  # never called: no link expires here
                "KIE_API_KEY": "upstream-bench-key",
                "KIE_API_KEY_PARAMETER": "",
                "DOWNLOAD_TRUSTED_ORIGINS": server.origin,
                "DOWNLOAD_DEADLINE_SECONDS": "30",
            }
        )
        reset_settings_cache()
        aws.reset_clients()
        wiring.reset()
        try:
            from downloader_handler import lambda_handler

            # Warm-up (untraced): clients, lazy imports (Pillow) and caches are built once per instance.
            run_batch(lambda_handler, resources.tasks_table, server, images["warm"], 1, traced=False)
            tracemalloc.start()
            try:
                for _run in range(RUNS):
                    for size in BATCHES:
                        results[size].append(
                            run_batch(
                                lambda_handler,
                                resources.tasks_table,
                                server,
                                images["big"],
                                size,
                                traced=True,
                            )
                        )
            finally:
                tracemalloc.stop()
        finally:
            os.environ.pop("AWS_ENDPOINT_URL", None)
            aws.reset_clients()
            wiring.reset()
    return results


def main() -> int:
    banner("2. Downloader memory: SQS batches of 1 and 10 images of ~4 MB, tracemalloc peak")
    use_local_environment()
    os.environ["MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"] = str(MOTO_KEY_BUFFER_BYTES)
    add_code_paths("downloader")
    modes = {"mock_aws, in process": True, "moto_server, own process": False}
    try:
        from devstack.common.moto_atomic import serialize_in_process_requests
        from tests.http_fixtures import image_server

        serialize_in_process_requests()
        images = {"big": noise_png(IMAGE_SIDE, seed=4), "warm": noise_png(64, seed=1)}
        with image_server() as server:
            results = {
                mode: measure(server, images, in_process=in_process) for mode, in_process in modes.items()
            }
    except Exception as error:  # report and fail the run, whatever broke
        print(f"ERROR: {type(error).__name__}: {error}")
        return EXIT_ERROR

    size_bytes = len(images["big"])
    rows = []
    for mode, by_size in results.items():
        for size, runs in by_size.items():
            peaks = [run["peak"] for run in runs]
            rows.append(
                (
                    mode if size == BATCHES[0] else "",
                    size,
                    spread(peaks, mib),
                    f"{median(peaks) / size_bytes:.1f}x",
                    spread([run["retained"] for run in runs], mib),
                    spread([run["seconds"] for run in runs], lambda seconds: f"{seconds:.2f}"),
                )
            )
    print_table(
        f"Peak traced memory per SQS batch (MiB, median of {RUNS} runs (min..max); each image:"
        f" {size_bytes / 1e6:.2f} MB PNG, {IMAGE_SIDE}x{IMAGE_SIDE} px)",
        ["AWS emulated by", "images", "peak MiB", "peak / image", "retained MiB", "s (traced)"],
        rows,
        notes=[
            "peak = tracemalloc peak during lambda_handler minus the traced memory just before it;"
            " retained = what is left after the batch and a gc.collect()",
            "mock_aws: moto runs inside the traced process; it keeps each PUT body in reference cycles"
            " (werkzeug request objects) until the cyclic GC runs, so earlier jobs' bodies can add to"
            " the peak",
            "moto_server: only the function (handler, botocore, httpx) and the image server thread"
            " are traced",
            "moto's S3 objects are spooled to disk"
            f" (MOTO_S3_DEFAULT_KEY_BUFFER_SIZE={MOTO_KEY_BUFFER_BYTES})",
            "tracemalloc sees Python allocations only (Pillow's verify reads headers and CRCs, no pixels)",
            f"one warm-up batch of a small image ran first in each mode, untraced; then {RUNS} runs of a batch"
            f" of {BATCHES[0]} and one of {BATCHES[-1]}",
        ],
    )
    budgets = Budgets()
    summary = []
    added = BATCHES[-1] - BATCHES[0]
    for mode, by_size in results.items():
        ones = [run["peak"] for run in by_size[BATCHES[0]]]
        manys = [run["peak"] for run in by_size[BATCHES[-1]]]
        per_image = [(many - one) / added for one, many in zip(ones, manys, strict=True)]
        ratios = [many / one for one, many in zip(ones, manys, strict=True)]
        budgets.check(
            f"peak({BATCHES[-1]}) / peak(1), {mode}",
            spread(ratios, lambda value: f"{value:.2f}"),
            f"< {RATIO_BUDGET:g}",
            median(ratios) < RATIO_BUDGET,
        )
        summary.append(
            Row(
                f"downloader extra peak memory per added image ({size_bytes / 2**20:.1f} MiB PNG;"
                f" batch of {BATCHES[-1]} vs 1), {mode.split(',')[0]}",
                f"batch of 1: {spread(ones, mib, ' MiB')}",
                f"{spread(per_image, lambda size: f'{size / 2**20:.2f}', ' MiB')} per image",
                spread(ratios, lambda value: f"{value:.2f}", "x"),
                f"< {RATIO_BUDGET:g}x (peak of {BATCHES[-1]} / peak of 1)",
                median(ratios) < RATIO_BUDGET,
            )
        )
    summary_rows(summary)
    return budgets.report()


if __name__ == "__main__":
    sys.exit(main())
