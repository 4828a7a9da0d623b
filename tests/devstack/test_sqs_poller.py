"""The local SQS event source: a batch is invoked as soon as it arrives, even while an earlier batch of
the same queue is still running (Lambda invokes up to five batches at once), and what the function
reports failed is left on the queue."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import boto3
import pytest

from devstack.common.moto_server import LocalMotoServer
from devstack.local.sqs_poller import SqsPoller


class _Spec:
    timeout_seconds = 5


class FakePool:
    """Stands in for LambdaPool: each invocation runs on a thread until the test releases it."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.specs = {"Fn": _Spec()}
        self.started: list[tuple[float, list[str]]] = []
        self.release = threading.Event()
        self.fail = fail or set()
        self._lock = threading.Lock()

    def submit(self, _logical_id: str, event: dict[str, Any]) -> Future[dict[str, Any]]:
        bodies = [record["body"] for record in event["Records"]]
        with self._lock:
            self.started.append((time.monotonic(), bodies))
        future: Future[dict[str, Any]] = Future()

        def run() -> None:
            self.release.wait(10)
            failures = [
                {"itemIdentifier": record["messageId"]}
                for record in event["Records"]
                if record["body"] in self.fail
            ]
            future.set_result({"batchItemFailures": failures})

        threading.Thread(target=run, daemon=True).start()
        return future


class WatchedSemaphore:
    """The poller's free-invoker semaphore, counting the acquires that found no invoker free (the
    receiver held back instead of receiving)."""

    def __init__(self, value: int) -> None:
        self._semaphore = threading.Semaphore(value)
        self.held_back = 0

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        if self._semaphore.acquire(blocking=False):
            return True
        self.held_back += 1
        return blocking and self._semaphore.acquire(timeout=timeout)

    def release(self) -> None:
        self._semaphore.release()


@pytest.fixture
def sqs() -> Iterator[tuple[Any, str, str]]:
    server = LocalMotoServer().start()
    try:
        client = boto3.client("sqs", endpoint_url=server.endpoint_url, region_name="us-east-1")
        url = client.create_queue(QueueName="jobs", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
        arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        yield client, url, arn
    finally:
        server.stop()


def _wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _visible_and_in_flight(client: Any, url: str) -> tuple[int, int]:
    attributes = client.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_a_batch_is_invoked_while_an_earlier_one_still_runs(sqs: tuple[Any, str, str]) -> None:
    client, url, arn = sqs
    pool = FakePool()
    poller = SqsPoller(
        pool,  # type: ignore[arg-type]
        client,
        function="Fn",
        queue_url=url,
        queue_arn=arn,
        batch_size=10,
        region="us-east-1",
    ).start()
    try:
        bodies = ["first", "second", "third"]
        for count, body in enumerate(bodies, start=1):
            client.send_message(QueueUrl=url, MessageBody=body)
            # invoked while every earlier batch is still held: not when an earlier batch ends
            _wait_for(lambda count=count: len(pool.started) == count)
        assert [batch for _at, batch in pool.started] == [[body] for body in bodies]
        assert _visible_and_in_flight(client, url) == (0, 3)
        pool.release.set()
        _wait_for(lambda: _visible_and_in_flight(client, url) == (0, 0))
    finally:
        pool.release.set()
        poller.stop()


def test_reported_failures_stay_on_the_queue_and_concurrency_is_bounded(sqs: tuple[Any, str, str]) -> None:
    client, url, arn = sqs
    pool = FakePool(fail={"bad"})
    poller = SqsPoller(
        pool,  # type: ignore[arg-type]
        client,
        function="Fn",
        queue_url=url,
        queue_arn=arn,
        batch_size=1,
        region="us-east-1",
        concurrency=2,
    )
    free = poller._free = WatchedSemaphore(2)  # type: ignore[assignment]
    poller.start()
    try:
        for body in ("bad", "good-1", "good-2"):
            client.send_message(QueueUrl=url, MessageBody=body)
        _wait_for(lambda: len(pool.started) == 2)
        # Two invokers busy: the receiver waits for one instead of receiving the third message. Once it
        # has been held back twice, it has been round its loop (where it would have received) since.
        _wait_for(lambda: free.held_back >= 2)
        assert len(pool.started) == 2
        assert _visible_and_in_flight(client, url) == (1, 2)
        pool.release.set()
        _wait_for(lambda: len(pool.started) == 3)
        # the failed message waits out its visibility timeout; the others are deleted
        _wait_for(lambda: _visible_and_in_flight(client, url) == (0, 1))
    finally:
        pool.release.set()
        poller.stop()
