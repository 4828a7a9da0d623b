"""What the admin endpoints do: set run-wide faults, inspect tasks and images, reset everything."""

from __future__ import annotations

from typing import Any

from .faults import normalize_faults, parse_fault_spec
from .state import CoreState


class AdminMixin(CoreState):
    # ----------------------------------------------------------------- run-wide faults
    def set_faults(self, faults: dict[str, Any] | str, *, replace: bool = False) -> dict[str, Any]:
        """Merge (or replace) run-wide faults; a string is a marker body like ``"duplicate=3,drop"``."""
        parsed = parse_fault_spec(faults) if isinstance(faults, str) else normalize_faults(faults)
        with self._lock:
            if replace:
                self._run_faults = {}
            self._run_faults.update(parsed)
            return dict(self._run_faults)

    def clear_faults(self) -> dict[str, Any]:
        with self._lock:
            self._run_faults = {}
            return {}

    # ----------------------------------------------------------------- inspection
    def task_ids(self) -> list[str]:
        with self._lock:
            return list(self._tasks)

    def inspect(self, task_id: str) -> dict[str, Any] | None:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return None
            faults = self._faults_for(task)
            return {
                "taskId": task.task_id,
                "api": {"flux": "flux-kontext", "market": "market"}.get(task.api, "gpt4o-image"),
                "status": task.status,
                "successFlag": task.success_flag,
                "progress": task.progress(),
                "createdAt": task.created_at,
                "completedAt": task.completed_at,
                "generationSeconds": task.generation_seconds,
                "apiKey": task.api_key,
                "request": task.request.summary(),
                "paramJson": task.param_json,
                "faults": dict(task.faults),
                "effectiveFaults": faults.__dict__.copy(),
                "errorCode": task.error_code,
                "errorMessage": task.error_message,
                "resultUrls": [image.url for image in task.images if image.role == "result"],
                "images": [image.__dict__.copy() for image in task.images],
                "inputs": [dict(entry) for entry in task.inputs],
                "callbackBody": task.callback_body,
                "deliveries": [dict(entry) for entry in task.deliveries],
                "served": [dict(e) for e in self._served if e.get("taskId") == task.task_id],
            }

    def images(self) -> dict[str, Any]:
        with self._lock:
            generated = [
                {"taskId": task.task_id, **image.__dict__}
                for task in self._tasks.values()
                for image in task.images
            ]
            fetched = [
                {"taskId": task.task_id, **entry} for task in self._tasks.values() for entry in task.inputs
            ]
            return {"generated": generated, "served": [dict(e) for e in self._served], "fetched": fetched}

    def reset(self) -> None:
        """Forget every task, fault, link and counter (timers already queued find nothing)."""
        with self._lock:
            self._tasks.clear()
            self._run_faults = dict(self.config.faults)
            self._credits = float(self.config.credits)
            self._generate_hits.clear()
            self._served.clear()
            self._links.clear()
            self._image_gets.clear()
