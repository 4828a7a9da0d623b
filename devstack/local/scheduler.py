"""EventBridge schedules, locally: invoke each function that has a Schedule event every interval."""

from __future__ import annotations

import sys
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from devstack.common.template import resources_of_type
from devstack.local.lambda_runtime import LambdaPool


def scheduled_functions() -> list[str]:
    return [
        name
        for name, function in resources_of_type("AWS::Serverless::Function").items()
        if any(event["Type"] in ("Schedule", "ScheduleV2") for event in function.get("Events", {}).values())
    ]


def scheduled_event(function: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [f"arn:aws:events:us-east-1:123456789012:rule/local-{function}"],
        "detail": {},
    }


class Scheduler:
    def __init__(self, pool: LambdaPool, interval_seconds: float) -> None:
        self.pool = pool
        self.interval_seconds = interval_seconds
        self.functions = scheduled_functions()
        self.last_results: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)

    def start(self) -> Scheduler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def run_once(self) -> dict[str, dict[str, Any]]:
        for function in self.functions:
            result = self.pool.invoke(function, scheduled_event(function))
            self.last_results[function] = result
            if "errorType" in result:
                sys.stderr.write(f"[schedule] {function} failed: {result}\n")
        return self.last_results

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            try:
                self.run_once()
            except Exception as error:  # keep the schedule going, as EventBridge does; say why
                sys.stderr.write(f"[schedule] invoke failed: {type(error).__name__}: {error}\n")
