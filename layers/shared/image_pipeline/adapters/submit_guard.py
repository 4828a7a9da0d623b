"""Guards on generate calls, checked before a task is recorded or the upstream is paid.

`SubmitGuard`: at most `limit` generate calls in any `window_seconds` across every concurrent API
instance (the upstream refuses, rather than queues, the 21st call in 10 s), and at most
`client_share_percent` of them from one client, so one client's burst always leaves its neighbours
room. `DailyImageQuota`: at most `limit` images a client may ask for in a UTC day.

Exact sliding window: `limit` slot items in the tasks table, each holding when it was last used. A
submit takes a slot whose last use is older than the window, with one conditional write; if none is
free, the caller gets how long until the oldest slot frees up. A client's share is a window of its
own (slots under its id): a submit takes one of its own slots, then an account-wide one; when the
account is full, the client's slot is handed back as it was.

Each API instance first tries the slot after the one it took last, the one it used longest ago, so a
burst from one instance takes one write per submit (a refused conditional write is billed too; random
probing cost about 3.5 writes a submit once the window was half full). Instances start at random
slots; when one finds its next slot taken by another, it probes the rest in random order.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from image_pipeline.adapters.aws import AwsAdapter, client
from image_pipeline.adapters.dynamo_items import is_condition_failure
from image_pipeline.errors import DailyImageLimitReached, GenerateShareExceeded, RateLimited

SLOT_PREFIX = "guard#generate#"
CLIENT_SLOT_PREFIX = "guard#generate#client#"
QUOTA_PREFIX = "quota#images#"


class SlotWindow(AwsAdapter):
    """`limit` slots under `prefix`: at most `limit` uses in any `window_seconds`."""

    def __init__(self, db: Any, table_name: str, prefix: str, limit: int, window_seconds: float) -> None:
        self._db = db
        self.table_name = table_name
        self.prefix = prefix
        self.limit = limit
        self.window_seconds = window_seconds
        self._next_slot = random.randrange(limit)  # spread concurrent instances over the slots

    def _key(self, slot: int) -> dict[str, Any]:
        return {"pk": {"S": f"{self.prefix}{slot}"}}

    def take(self, now: float) -> tuple[int, str | None] | None:
        """A free slot and its previous use (to hand it back), or None when all are in the window."""
        for slot in self._probe_order():
            try:
                written = self._db.update_item(
                    TableName=self.table_name,
                    Key=self._key(slot),
                    UpdateExpression="SET usedAt = :now, expiresAt = :expires",
                    ConditionExpression="attribute_not_exists(usedAt) OR usedAt <= :cutoff",
                    ExpressionAttributeValues={
                        ":now": {"N": repr(now)},
                        ":cutoff": {"N": repr(now - self.window_seconds)},
                        ":expires": {"N": str(int(now + 3600))},
                    },
                    ReturnValues="UPDATED_OLD",
                )
            except ClientError as error:
                if is_condition_failure(error):
                    continue
                raise
            self._next_slot = (slot + 1) % self.limit
            return slot, written.get("Attributes", {}).get("usedAt", {}).get("N")
        return None

    def give_back(self, slot: int, previous: str | None, now: float) -> None:
        """Undo a take whose generate call was never made (best effort: a slot lost ends with the window)."""
        update = "SET usedAt = :previous" if previous is not None else "REMOVE usedAt"
        values: dict[str, Any] = {":now": {"N": repr(now)}}
        if previous is not None:
            values[":previous"] = {"N": previous}
        with contextlib.suppress(ClientError):
            self._db.update_item(
                TableName=self.table_name,
                Key=self._key(slot),
                UpdateExpression=update,
                ConditionExpression="usedAt = :now",
                ExpressionAttributeValues=values,
            )

    def _probe_order(self) -> Iterator[int]:
        yield self._next_slot
        # Taken (by another instance): the others at random, not that instance's run one by one.
        others = [slot for slot in range(self.limit) if slot != self._next_slot]
        random.shuffle(others)
        yield from others

    def seconds_until_free(self, now: float) -> int:
        found = self._db.batch_get_item(
            RequestItems={
                self.table_name: {
                    "Keys": [self._key(slot) for slot in range(self.limit)],
                    "ConsistentRead": True,
                }
            }
        )
        used = [float(item["usedAt"]["N"]) for item in found["Responses"].get(self.table_name, [])]
        oldest = min(used, default=now - self.window_seconds)
        return max(1, math.ceil(oldest + self.window_seconds - now))


class SubmitGuard(AwsAdapter):
    def __init__(
        self,
        table_name: str,
        *,
        limit: int = 20,
        window_seconds: float = 10.0,
        client_share_percent: int = 100,
        dynamodb: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table_name = table_name
        self.limit = limit
        self.window_seconds = window_seconds
        self.client_share_percent = client_share_percent
        self.client_limit = max(1, limit * client_share_percent // 100)
        self._db = dynamodb or client("dynamodb")
        self._clock = clock
        self._account = SlotWindow(self._db, table_name, SLOT_PREFIX, limit, window_seconds)
        self._clients: dict[str, SlotWindow] = {}

    def _client_window(self, owner: str) -> SlotWindow | None:
        if self.client_limit >= self.limit:
            return None  # a share of the whole window: the account-wide slots alone decide
        if owner not in self._clients:
            prefix = f"{CLIENT_SLOT_PREFIX}{owner}#"
            self._clients[owner] = SlotWindow(
                self._db, self.table_name, prefix, self.client_limit, self.window_seconds
            )
        return self._clients[owner]

    def acquire(self, owner: str = "") -> None:
        now = self._clock()
        own = self._client_window(owner) if owner else None
        taken = own.take(now) if own is not None else None
        if own is not None and taken is None:
            raise GenerateShareExceeded(
                f"this client may make at most {self.client_limit} of the deployment's "
                f"{self.limit} generations in {self.window_seconds:g} s "
                f"(CLIENT_GENERATE_SHARE_PERCENT {self.client_share_percent}%)",
                own.seconds_until_free(now),
            )
        if self._account.take(now) is not None:
            return
        if own is not None and taken is not None:
            own.give_back(*taken, now)
        raise RateLimited(
            429,
            f"more than {self.limit} generations in {self.window_seconds:g} s across this deployment",
            self._account.seconds_until_free(now),
        )


class DailyImageQuota(AwsAdapter):
    """Images a client may ask for per UTC day: one counter item per client and day."""

    def __init__(
        self,
        table_name: str,
        *,
        limit: int,
        dynamodb: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table_name = table_name
        self.limit = limit
        self._db = dynamodb or client("dynamodb")
        self._clock = clock

    def _day(self, now: float) -> datetime:
        return datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    def _key(self, owner: str, day: str) -> dict[str, Any]:
        return {"pk": {"S": f"{QUOTA_PREFIX}{owner}#{day}"}}

    def spend(self, owner: str, images: int) -> str:
        """Count `images` against today's quota and return the day counted (YYYY-MM-DD), or refuse
        (DailyImageLimitReached) and count nothing."""
        now = self._clock()
        day = self._day(now)
        next_day = day + timedelta(days=1)
        try:
            if images > self.limit:
                raise self._over(images, 0, now, next_day)
            self._db.update_item(
                TableName=self.table_name,
                Key=self._key(owner, f"{day:%Y-%m-%d}"),
                UpdateExpression="ADD images :n SET expiresAt = :expires",
                ConditionExpression="attribute_not_exists(images) OR images <= :room",
                ExpressionAttributeValues={
                    ":n": {"N": str(images)},
                    ":room": {"N": str(self.limit - images)},
                    ":expires": {"N": str(int((next_day + timedelta(days=1)).timestamp()))},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            item: dict[str, Any] = error.response.get("Item", {})  # type: ignore[assignment]
            used = int(item.get("images", {}).get("N", self.limit))
            raise self._over(images, used, now, next_day) from None
        return f"{day:%Y-%m-%d}"

    def refund(self, owner: str, images: int, day: str) -> None:
        """Give back the images of a task the upstream refused to make, to the day they were counted."""
        self._db.update_item(
            TableName=self.table_name,
            Key=self._key(owner, day),
            UpdateExpression="ADD images :minus",
            ConditionExpression="attribute_exists(images)",
            ExpressionAttributeValues={":minus": {"N": str(-images)}},
        )

    def _over(self, images: int, used: int, now: float, next_day: datetime) -> DailyImageLimitReached:
        return DailyImageLimitReached(
            f"this client's daily limit is {self.limit} images a day (CLIENT_DAILY_IMAGES): {used} used "
            f"today and this task asks for {images}; the quota starts again at 00:00 UTC",
            max(1, math.ceil(next_day.timestamp() - now)),
        )


class GenerateAdmission(AwsAdapter):
    """Both guards in the order that wastes nothing: the day's images, then the client's share and
    the account's window; a refusal by the window hands the images back."""

    def __init__(self, guard: SubmitGuard | None, quota: DailyImageQuota | None) -> None:
        self.guard = guard
        self.quota = quota

    def admit(self, owner: str, images: int) -> Callable[[], None]:
        """Admit one generation of `images`, or raise RateLimited; returns how to give the images back
        if the upstream then refuses to make them."""
        quota = self.quota
        day = quota.spend(owner, images) if quota is not None else None
        try:
            if self.guard is not None:
                self.guard.acquire(owner)
        except RateLimited:
            if quota is not None and day is not None:
                quota.refund(owner, images, day)
            raise

        def give_back() -> None:
            if quota is not None and day is not None:
                quota.refund(owner, images, day)

        return give_back
