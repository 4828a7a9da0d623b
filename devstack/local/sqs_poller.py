"""Lambda's SQS event source mapping, locally: long-poll the queue, invoke the downloader with a real
SQS batch event, delete what succeeded and leave the reported failures to the visibility timeout (and
so, after maxReceiveCount receives, to the dead-letter queue)."""

from __future__ import annotations

import random
import sys
import threading
from typing import Any

from devstack.common.sqs_event_source import delete_succeeded, receive_batch
from devstack.local.lambda_runtime import LambdaPool


class SqsPoller:
    def __init__(
        self,
        pool: LambdaPool,
        sqs: Any,
        *,
        function: str,
        queue_url: str,
        queue_arn: str,
        batch_size: int,
        region: str,
        pollers: int = 2,
        crash_probability: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.pool = pool
        self.sqs = sqs
        self.function = function
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.batch_size = min(10, batch_size)
        self.region = region
        # Chaos: the instance "dies" after doing the work but before reporting it, so the whole
        # batch comes back after the visibility timeout and is processed a second time.
        self.crash_probability = crash_probability
        self.crashes = 0
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"sqs-poller-{i}", daemon=True) for i in range(pollers)
        ]

    def start(self) -> SqsPoller:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once(wait_seconds=1)
            except Exception as error:  # keep polling, as the event source mapping does; say why
                sys.stderr.write(f"[sqs] poll failed: {type(error).__name__}: {error}\n")
                self._stop.wait(1)

    def poll_once(self, wait_seconds: int = 0) -> int:
        """One receive and one invoke; returns how many messages were handed to the function."""
        event = receive_batch(
            self.sqs,
            queue_url=self.queue_url,
            queue_arn=self.queue_arn,
            region=self.region,
            max_messages=self.batch_size,
            wait_seconds=wait_seconds,
        )
        received = event["Records"]
        if not received:
            return 0
        spec = self.pool.specs[self.function]
        result = self.pool.submit(self.function, event).result(timeout=spec.timeout_seconds + 30)
        if self.crash_probability and self._random.random() < self.crash_probability:
            self.crashes += 1
            sys.stderr.write(f"[sqs] chaos: {self.function} crashed after a batch of {len(received)}\n")
            return len(received)
        if "batchItemFailures" not in result:
            # The function crashed: like Lambda, every message of the batch comes back later.
            sys.stderr.write(f"[sqs] {self.function} failed the whole batch: {result}\n")
            return len(received)
        delete_succeeded(self.sqs, self.queue_url, received, result)
        return len(received)
