"""An account-wide guard on generate calls: at most `limit` in any `window_seconds`, across every
concurrent API instance. The upstream refuses (rather than queues) the 21st call in 10 s.

Exact sliding window: `limit` slot items in the tasks table, each holding when it was last used. A
submit takes a slot whose last use is older than the window, with one conditional write; if none is
free, the caller gets how long until the oldest slot frees up.

Each API instance first tries the slot after the one it took last, the one it used longest ago, so a
burst from one instance takes one write per submit (a refused conditional write is billed too; random
probing cost about 3.5 writes a submit once the window was half full). Instances start at random
slots; when one finds its next slot taken by another, it probes the rest in random order.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

from botocore.exceptions import ClientError

from image_pipeline.adapters.aws import AwsAdapter, client
from image_pipeline.errors import RateLimited

SLOT_PREFIX = "guard#generate#"


class SubmitGuard(AwsAdapter):
    def __init__(
        self,
        table_name: str,
        *,
        limit: int = 20,
        window_seconds: float = 10.0,
        dynamodb: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table_name = table_name
        self.limit = limit
        self.window_seconds = window_seconds
        self._db = dynamodb or client("dynamodb")
        self._clock = clock
        self._next_slot = random.randrange(limit)  # spread concurrent instances over the slots

    def _key(self, slot: int) -> dict[str, Any]:
        return {"pk": {"S": f"{SLOT_PREFIX}{slot}"}}

    def acquire(self) -> None:
        now = self._clock()
        for slot in self._probe_order():
            try:
                self._db.update_item(
                    TableName=self.table_name,
                    Key=self._key(slot),
                    UpdateExpression="SET usedAt = :now, expiresAt = :expires",
                    ConditionExpression="attribute_not_exists(usedAt) OR usedAt <= :cutoff",
                    ExpressionAttributeValues={
                        ":now": {"N": repr(now)},
                        ":cutoff": {"N": repr(now - self.window_seconds)},
                        ":expires": {"N": str(int(now + 3600))},
                    },
                )
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    continue
                raise
            self._next_slot = (slot + 1) % self.limit
            return
        raise RateLimited(
            429,
            f"more than {self.limit} generations in {self.window_seconds:g} s across this deployment",
            self._seconds_until_free(now),
        )

    def _probe_order(self) -> Iterator[int]:
        yield self._next_slot
        # Taken (by another instance): the others at random, not that instance's run one by one.
        others = [slot for slot in range(self.limit) if slot != self._next_slot]
        random.shuffle(others)
        yield from others

    def _seconds_until_free(self, now: float) -> int:
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
