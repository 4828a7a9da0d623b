"""The Market (``/api/v1/jobs/createTask``, ``/api/v1/jobs/recordInfo``): a task's life and its callback.

A Market task shares with 4o and Flux Kontext the Bearer key, the account's window of new tasks (20 per
10 s, the three APIs together), the credits, the task table, the scheduler, callback delivery (retries,
duplicates, drops, signing) and the result-file faults. What differs is here:

- every error is HTTP 200 with the code in the body, 429 included (``mirror_http`` mirrors them all);
- states run waiting -> queuing -> generating over the generation time, then success or fail;
- ``param`` is the request as a JSON string whose ``input`` is a JSON string again; ``resultJson`` is
  ``""`` until success, then ``{"resultUrls": [...]}`` as a string;
- failures carry ``failCode`` as a numeric string and ``failMsg``; the callback's ``code`` is 501
  (``market_fail_code=reason``: the failCode itself) and its ``msg`` is generic;
- a task makes ``images`` results (``num_images`` for the models that take one) in the model's canvas
  and format (``market_format`` for the models that have no format field), and a failed task gives
  its credits back.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from dataclasses import replace
from typing import Any

from .account import hit
from .callbacks import Delivery
from .faults import Faults, FaultSpecError, parse_prompt_markers
from .market_validation import MarketRequest, validate_market
from .model import SUBMIT_MESSAGES, ApiReply, ResultImage, Task, callback_ids, envelope, number
from .tasks import MAX_RATE_KEYS, TaskMixin
from .validation import ValidationError

SUCCESS_MESSAGE = "Playground task completed successfully."
FAILURE_MESSAGE = "Playground task failed."
FAIL_MESSAGES = {
    400: "The request was refused: the prompt or an input image breaks the content policy",
    500: "Internal server error",
    501: "Image generation failed",
}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
# The share of the generation time a task spends waiting, then queuing, before it is generating.
WAITING_UNTIL, QUEUING_UNTIL = 0.15, 0.30


def fail_code(code: int) -> int:
    """The Market reports 400, 500 or 501; any other failure (451 is 4o's) is an internal error."""
    return code if code in FAIL_MESSAGES else 500


def state(task: Task) -> str:
    """recordInfo's ``state``: waiting, queuing, generating, then success or fail."""
    if task.status == "SUCCESS":
        return "success"
    if task.status == "FAILED":
        return "fail"
    gen = task.generation_seconds
    fraction = 1.0 if gen <= 0 else (time.monotonic() - task.created_mono) / gen
    return "waiting" if fraction < WAITING_UNTIL else "queuing" if fraction < QUEUING_UNTIL else "generating"


def _ms(epoch: float | None) -> int | None:
    return None if epoch is None else int(epoch * 1000)


def _result_json(task: Task) -> str:
    return json.dumps({"resultUrls": [image.url for image in task.images]}, separators=(",", ":"))


class MarketMixin(TaskMixin):
    # ----------------------------------------------------------------- API: createTask
    def market_create_task(self, api_key: str, body: Any) -> ApiReply:
        """``POST /api/v1/jobs/createTask``: ``data`` is ``{"taskId", "recordId"}``, or an error code."""
        run = self._faults_for(None)
        with self._lock:
            if len(self._generate_hits) > MAX_RATE_KEYS:
                self._generate_hits.clear()
            window = self._generate_hits.setdefault(api_key, deque())
            allowed = hit(window, self.config.generate_rate_limit, self.config.generate_rate_window_seconds)
        if not allowed:
            return self._market_error(429, SUBMIT_MESSAGES[429], run)
        given = body.get("input") if isinstance(body, dict) else None
        prompt = given.get("prompt") if isinstance(given, dict) else None
        try:
            task_faults = parse_prompt_markers(prompt if isinstance(prompt, str) else None)
        except FaultSpecError as exc:
            return self._market_error(422, f"emulator fault marker: {exc}", run)
        faults = Faults.build(self.run_faults(), task_faults)
        if faults.submit is not None:
            return self._market_error(faults.submit, SUBMIT_MESSAGES[faults.submit], faults)
        try:
            request = validate_market(body)
        except ValidationError as exc:
            return self._market_error(422, str(exc), faults)
        if request.output_format is None:  # the model decides: PNG, unless market_format says otherwise
            request = replace(request, output_format=faults.market_format)
        cost = self.config.credits_per_image * request.images
        now, mono = time.time(), time.monotonic()
        task = Task(
            task_id=uuid.uuid4().hex,
            api_key=api_key,
            request=request,
            param_json=request.param_json(),
            faults=task_faults,
            created_at=now,
            created_mono=mono,
            generation_seconds=self.config.generation_seconds if faults.gen is None else faults.gen,
            credits_charged=cost,
        )
        with self._lock:
            if self._credits < cost:
                return self._market_error(402, SUBMIT_MESSAGES[402], faults)
            self._credits -= cost
            self._tasks[task.task_id] = task
            while len(self._tasks) > self.config.max_tasks:
                self._tasks.popitem(last=False)
        if not faults.stall:
            self.scheduler.call_at(mono + task.generation_seconds, lambda: self.complete(task.task_id))
        data = {"taskId": task.task_id, "recordId": task.task_id}
        return ApiReply(200, envelope(200, "success", data), delay_seconds=faults.submit_delay)

    def _market_error(self, code: int, msg: str, faults: Faults) -> ApiReply:
        """Market errors arrive as HTTP 200, 429 included; ``mirror_http`` sends the code as the status."""
        return ApiReply(code if faults.mirror_http else 200, envelope(code, msg))

    # ----------------------------------------------------------------- API: recordInfo
    def market_record_info(self, task_id: str | None) -> ApiReply:
        """``GET /api/v1/jobs/recordInfo?taskId=``: only Market tasks; others are "recordInfo is null"."""
        run = self._faults_for(None)
        if not task_id:
            return self._market_error(400, "taskId parameter is required", run)
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.api != "market":
                return self._market_error(422, "recordInfo is null", run)
            allowed = hit(
                task.info_hits,
                self.config.market_record_info_rate_limit,
                self.config.record_info_rate_window_seconds,
            )
        faults = self._faults_for(task)
        if not allowed:
            return self._market_error(429, SUBMIT_MESSAGES[429], faults)
        with self._lock:
            data = self._market_details(task, faults)
        return ApiReply(200, envelope(200, "success", data))

    def _market_details(self, task: Task, faults: Faults) -> dict[str, Any]:
        """recordInfo's ``data`` as live answers had it: no ``updateTime``, failCode/failMsg null (or "")."""
        request = task.request
        assert isinstance(request, MarketRequest)
        failed = task.status == "FAILED"
        blank = None if faults.market_blank == "null" else ""
        return {
            "taskId": task.task_id,
            "model": request.model,
            "state": state(task),
            "param": task.param_json,
            "resultJson": _result_json(task) if task.status == "SUCCESS" else "",
            "failCode": str(task.error_code) if failed else blank,
            "failMsg": task.error_message if failed else blank,
            "costTime": self._cost_seconds(task),
            "completeTime": _ms(task.completed_at),
            "createTime": _ms(task.created_at),
        }

    @staticmethod
    def _cost_seconds(task: Task) -> int | None:
        """Seconds, as live answers and the 2026 callback schemas give it (one page says milliseconds)."""
        return None if task.completed_at is None else int(task.completed_at - task.created_at)

    # ----------------------------------------------------------------- completion
    def complete(self, task_id: str, *, fail: int | None = None, message: str | None = None) -> bool:
        """Finish a task now (timer or admin); False if it is unknown or already finished."""
        with self._lock:
            task = self._tasks.get(task_id)
        if task is None or not isinstance(task.request, MarketRequest):
            return super().complete(task_id, fail=fail, message=message)
        if task.status != "GENERATING":
            return False
        faults = self._faults_for(task)
        code = fail if fail is not None else faults.fail
        if code is None:
            code, message = self._input_failure(task) or (None, message)
        finished = time.time()
        images = self._market_results(task, task.request, int(finished)) if code is None else []
        with self._lock:
            if task.status != "GENERATING":
                return False
            task.completed_at = finished
            if code is None:
                task.status, task.success_flag, task.images = "SUCCESS", 1, images
            else:
                task.status = "FAILED"
                task.error_code = fail_code(code)
                task.error_message = message or FAIL_MESSAGES[task.error_code]
                self._credits += task.credits_charged  # the Market charges successful tasks only
            task.final_progress = "1.00"
            task.callback_body = self._market_callback_body(task, faults)
        if task.request.callback_url:
            self.dispatcher.deliver(
                Delivery(task.task_id, task.request.callback_url, task.callback_body, faults)
            )
        return True

    def _market_results(self, task: Task, request: MarketRequest, unix_sec: int) -> list[ResultImage]:
        fmt = request.output_format or "png"
        return [
            self._result_image(
                task, index, unix_sec, EXTENSIONS[fmt], request.width, request.height, CONTENT_TYPES[fmt]
            )
            for index in range(request.images)
        ]

    def _market_callback_body(self, task: Task, faults: Faults) -> dict[str, Any]:
        """The recordInfo-shaped callback of the 2026 schemas: no ``info``; resultJson only on success,
        failCode/failMsg only on failure; ``updateTime`` equal to ``completeTime``."""
        request = task.request
        assert isinstance(request, MarketRequest)
        data = callback_ids(task.task_id, faults)
        data.update(model=request.model, state=state(task), param=task.param_json)
        succeeded = task.status == "SUCCESS"
        if succeeded:
            data["resultJson"] = _result_json(task)
        else:
            data.update(failCode=str(task.error_code), failMsg=task.error_message)
        data.update(
            costTime=self._cost_seconds(task),
            completeTime=_ms(task.completed_at),
            createTime=_ms(task.created_at),
            updateTime=_ms(task.completed_at),
            creditsConsumed=number(task.credits_charged) if succeeded else 0,
        )
        if succeeded:
            return envelope(200, SUCCESS_MESSAGE, data)
        code = task.error_code if faults.market_fail_code == "reason" and task.error_code else 501
        return envelope(code, FAILURE_MESSAGE, data)
