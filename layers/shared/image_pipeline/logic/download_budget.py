"""How the downloader spends an invocation's time, and when a passing failure comes back.

It never runs out its own timeout: a timed-out invocation reports nothing, so every message of the
batch would come back and count a failed receive. A record is started only with a fetch's worth of time
ahead of it (else it is handed back, image_pipeline.sqs_batch.hand_back); a fetch gets its policy's
deadline, or what is left of the invocation when that is less. `time_left` is what the handler's
InvocationClock reports: the invocation's remaining time less STORE_MARGIN_SECONDS.
"""

from __future__ import annotations

from image_pipeline.logic.downloads import RetryLater

# Kept back from every record's budget: storing the image (S3, two DynamoDB writes) after the fetch.
STORE_MARGIN_SECONDS = 5.0
# A record is started only with at least this much fetch time ahead of it.
MIN_FETCH_SECONDS = 5.0
# A fetch is not started with less than this (a record started in time may find less after a slow one).
MIN_FETCH_DEADLINE_SECONDS = 1.0
# Passing failures come back after base, 2x, 4x ... seconds (capped), instead of all at once.
BACKOFF_CAP_SECONDS = 900


def can_start(time_left: float) -> bool:
    """Whether a record may be started now; if not it goes back on the queue, untried."""
    return time_left >= MIN_FETCH_SECONDS


def fetch_deadline(policy_deadline_seconds: float, time_left: float) -> float:
    """Seconds the next fetch may take; RetryLater (the message comes back) when there is no time for one."""
    budget = min(policy_deadline_seconds, time_left)
    if budget < MIN_FETCH_DEADLINE_SECONDS:
        raise RetryLater("no time left in this invocation to fetch the image")
    return budget


def retry_delay(receive_count: int, base_seconds: int) -> int:
    """Seconds until a message that failed for a passing reason comes back, by how often it came."""
    return min(BACKOFF_CAP_SECONDS, base_seconds * 2 ** max(0, receive_count - 1))
