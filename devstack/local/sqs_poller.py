"""Lambda's SQS event source mapping, locally: long-poll the queue, invoke the function with a real
SQS batch event, delete what succeeded and leave the reported failures to the visibility timeout (and
so, after maxReceiveCount receives, to the dead-letter queue).

As the event source mapping does, batches are invoked concurrently (Lambda starts with five at once)
and a batch is invoked as soon as it is received: the receiver goes back to the queue while earlier
batches are still running, so a message that arrives is picked up at once, not when the previous
invocation has ended. The receiver only receives while an invoker is free, so no message is taken
off the queue (its visibility timeout running) without being invoked straight away.
"""

from __future__ import annotations

import random
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from devstack.common.sqs_event_source import delete_succeeded, receive_batch
from devstack.local.lambda_runtime import LambdaPool

# Lambda's event source mapping for a standard queue starts with five concurrent batches.
CONCURRENT_BATCHES = 5
# Each receive long-polls this long; also how long stop() may wait for the receiver.
WAIT_SECONDS = 1


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
        concurrency: int = CONCURRENT_BATCHES,
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
        self._random_lock = threading.Lock()
        self._stop = threading.Event()
        self._free = threading.Semaphore(concurrency)
        self._invokers = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"sqs-{function}")
        self._running: set[Future[None]] = set()
        self._running_lock = threading.Lock()
        self._receiver = threading.Thread(target=self._run, name=f"sqs-poller-{function}", daemon=True)

    def start(self) -> SqsPoller:
        self._receiver.start()
        return self

    def request_stop(self) -> None:
        """Stop receiving (stop() then waits): a stack stops all its pollers at once."""
        self._stop.set()

    def stop(self) -> None:
        """Stop receiving and give the batches already received up to 10 s to end (and be deleted)."""
        self._stop.set()
        if self._receiver.is_alive():
            self._receiver.join(timeout=10)
        with self._running_lock:
            running = set(self._running)
        wait(running, timeout=10)
        self._invokers.shutdown(wait=False)

    def _run(self) -> None:
        while not self._stop.is_set():
            # Receive only when an invoker is free: what is received is invoked at once.
            if not self._free.acquire(timeout=WAIT_SECONDS):
                continue
            try:
                event = self._receive(wait_seconds=WAIT_SECONDS)
            except Exception as error:  # keep polling, as the event source mapping does; say why
                self._free.release()
                sys.stderr.write(f"[sqs] poll failed: {type(error).__name__}: {error}\n")
                self._stop.wait(1)
                continue
            if not event["Records"]:
                self._free.release()
                continue
            future = self._invokers.submit(self._invoke_and_release, event)
            with self._running_lock:
                self._running.add(future)
            future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._running_lock:
            self._running.discard(future)

    def _invoke_and_release(self, event: dict[str, Any]) -> None:
        try:
            self._invoke(event)
        except Exception as error:  # the batch returns after its visibility timeout; say why
            sys.stderr.write(f"[sqs] {self.function} batch not completed: {type(error).__name__}: {error}\n")
        finally:
            self._free.release()

    def poll_once(self, wait_seconds: int = 0) -> int:
        """One receive and one invoke; returns how many messages were handed to the function."""
        event = self._receive(wait_seconds)
        if event["Records"]:
            self._invoke(event)
        return len(event["Records"])

    def _receive(self, wait_seconds: int) -> dict[str, Any]:
        return receive_batch(
            self.sqs,
            queue_url=self.queue_url,
            queue_arn=self.queue_arn,
            region=self.region,
            max_messages=self.batch_size,
            wait_seconds=wait_seconds,
        )

    def _invoke(self, event: dict[str, Any]) -> None:
        """Invoke the function with one received batch, then delete what it did not report failed."""
        received = event["Records"]
        spec = self.pool.specs[self.function]
        result = self.pool.submit(self.function, event).result(timeout=spec.timeout_seconds + 30)
        if self.crash_probability:
            with self._random_lock:
                crashed = self._random.random() < self.crash_probability
                self.crashes += crashed
            if crashed:
                sys.stderr.write(f"[sqs] chaos: {self.function} crashed after a batch of {len(received)}\n")
                return
        if "batchItemFailures" not in result:
            # The function crashed: like Lambda, every message of the batch comes back later.
            sys.stderr.write(f"[sqs] {self.function} failed the whole batch: {result}\n")
            return
        delete_succeeded(self.sqs, self.queue_url, received, result)
