"""A task's life: generate, record-info while it runs, completion, and its callback (and redelivery).

Both APIs go through here: 4o Image (``gpt4o-image``) and Flux Kontext (``flux/kontext``); ``flux.py``
holds what differs for a Flux task. Each API sees only its own tasks ("record is null" otherwise).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import deque
from typing import Any

from . import flux as flux_task
from .account import hit
from .callbacks import Delivery
from .faults import Faults, FaultSpecError, parse_prompt_markers
from .images import SIZES
from .inputs import MAX_INPUT_BYTES, fetch_all
from .model import (
    FAIL_MESSAGES,
    SUBMIT_MESSAGES,
    ApiReply,
    ResultImage,
    Task,
    callback_ids,
    envelope,
    fmt_time,
)
from .state import CoreState
from .validation import (
    FluxRequest,
    GenerateRequest,
    SafetyToleranceError,
    ValidationError,
    validate_flux,
    validate_generate,
)

MAX_RATE_KEYS = 10_000


class TaskMixin(CoreState):
    # ----------------------------------------------------------------- API: generate
    def generate(self, api_key: str, body: Any) -> ApiReply:
        """``POST /api/v1/gpt4o-image/generate``."""
        return self._submit(api_key, body, flux=False)

    def flux_generate(self, api_key: str, body: Any) -> ApiReply:
        """``POST /api/v1/flux/kontext/generate``: the same account limits, one image per task."""
        return self._submit(api_key, body, flux=True)

    def _submit(self, api_key: str, body: Any, *, flux: bool) -> ApiReply:
        run = self._faults_for(None)
        with self._lock:
            if len(self._generate_hits) > MAX_RATE_KEYS:
                self._generate_hits.clear()
            window = self._generate_hits.setdefault(api_key, deque())
            allowed = hit(window, self.config.generate_rate_limit, self.config.generate_rate_window_seconds)
        if not allowed:
            return self._error(429, SUBMIT_MESSAGES[429], run)
        if not isinstance(body, dict):
            return self._error(400, "Format Error: the request body must be a JSON object", run)
        prompt = body.get("prompt") if isinstance(body.get("prompt"), str) else None
        try:
            task_faults = parse_prompt_markers(prompt)
        except FaultSpecError as exc:
            return self._error(422, f"emulator fault marker: {exc}", run)
        faults = Faults.build(self.run_faults(), task_faults)
        if faults.submit is not None:
            return self._error(faults.submit, SUBMIT_MESSAGES[faults.submit], faults)
        request: GenerateRequest | FluxRequest
        try:
            request = validate_flux(body) if flux else validate_generate(body)
        except SafetyToleranceError as exc:
            return self._error(faults.tolerance_error, str(exc), faults)
        except ValidationError as exc:
            return self._error(422, str(exc), faults)
        images = request.n_variants if isinstance(request, GenerateRequest) else 1
        cost = self.config.credits_per_image * images
        now, mono = time.time(), time.monotonic()
        gen = self.config.generation_seconds if faults.gen is None else faults.gen
        task = Task(
            task_id=uuid.uuid4().hex,
            api_key=api_key,
            request=request,
            param_json=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
            faults=task_faults,
            created_at=now,
            created_mono=mono,
            generation_seconds=gen,
        )
        with self._lock:
            if self._credits < cost:
                return self._error(402, SUBMIT_MESSAGES[402], faults)
            self._credits -= cost
            self._tasks[task.task_id] = task
            while len(self._tasks) > self.config.max_tasks:
                self._tasks.popitem(last=False)
        if not faults.stall:
            self.scheduler.call_at(mono + gen, lambda: self.complete(task.task_id))
        return ApiReply(
            200, envelope(200, "success", {"taskId": task.task_id}), delay_seconds=faults.submit_delay
        )

    # ----------------------------------------------------------------- API: record-info
    def record_info(self, task_id: str | None, *, flux: bool = False) -> ApiReply:
        """``GET .../record-info?taskId=`` of either API; a task of another API is not found."""
        run = self._faults_for(None)
        if not task_id:
            return self._error(422, "taskId: This field is required", run)
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.api != ("flux" if flux else "4o"):
                return self._error(422, "record is null", run)
            allowed = hit(
                task.info_hits,
                self.config.record_info_rate_limit,
                self.config.record_info_rate_window_seconds,
            )
        faults = self._faults_for(task)
        if not allowed:
            return self._error(429, SUBMIT_MESSAGES[429], faults)
        with self._lock:
            data = flux_task.details(task, faults) if flux else self._details(task, faults)
        return ApiReply(200, envelope(200, "success", data))

    def _details(self, task: Task, faults: Faults) -> dict[str, Any]:
        with self._lock:
            response = None
            if task.status == "SUCCESS":
                response = {faults.result_key: [image.url for image in task.images]}
            return {
                "taskId": task.task_id,
                "paramJson": task.param_json,
                "completeTime": fmt_time(task.completed_at, faults.time_format),
                "response": response,
                "successFlag": task.success_flag,
                "status": task.status,
                "errorCode": task.error_code,
                "errorMessage": task.error_message,
                "createTime": fmt_time(task.created_at, faults.time_format),
                "progress": task.progress(),
            }

    # ----------------------------------------------------------------- completion
    def complete(self, task_id: str, *, fail: int | None = None, message: str | None = None) -> bool:
        """Finish a task now (the timer calls this too); False if it is unknown or already finished."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.status != "GENERATING":
                return False
        faults = self._faults_for(task)
        code = fail if fail is not None else faults.fail
        if code is None:
            code, message = self._input_failure(task) or (None, message)
        request = task.request
        if code is not None and isinstance(request, FluxRequest):
            code = flux_task.fail_code(code)
        images: list[ResultImage] = []
        finished = time.time()
        if code is None and isinstance(request, FluxRequest):
            ttl = self.config.origin_ttl_seconds
            images = flux_task.results(task, request, self.public_base, int(finished), ttl)
        elif code is None and isinstance(request, GenerateRequest):
            images = self._render_all(task, request, int(finished))
        with self._lock:
            if task.status != "GENERATING":
                return False
            task.completed_at = finished
            if code is None:
                task.status, task.success_flag = "SUCCESS", 1
                task.final_progress = "1.00"
                task.images = images
            elif task.is_flux:
                task.status, task.success_flag = flux_task.failure_state(faults)
                task.final_progress = task.progress()
                task.error_code = code
                task.error_message = message or flux_task.fail_message(code)
            else:
                task.status, task.success_flag = "GENERATE_FAILED", faults.fail_flag
                task.final_progress = task.progress()
                task.error_code = code
                task.error_message = message or FAIL_MESSAGES.get(code, "Generation failed")
            body = flux_task.callback_body if task.is_flux else self._callback_body
            task.callback_body = body(task, faults)
        if task.request.callback_url:
            self.dispatcher.deliver(
                Delivery(task.task_id, task.request.callback_url, task.callback_body, faults)
            )
        return True

    def _input_failure(self, task: Task) -> tuple[int, str] | None:
        """Fetch the task's input images (recorded on the task) and say how a failure ends it: 4o 451
        (not downloaded, or not an image), 400 (over 25 MiB; a mask of another size than its single
        image); Flux Kontext and the Market 451, which they report as 500 (their codes have no 451)."""
        wanted = task.input_urls()
        if not wanted:
            return None
        fetched = fetch_all(
            wanted,
            allow_external=self.config.allow_external_inputs,
            timeout=self.config.input_timeout_seconds,
            byte_limits=task.input_byte_limits(),
        )
        with self._lock:
            task.inputs = [entry.to_dict() for entry in fetched]
        bad = next((entry for entry in fetched if not entry.ok), None)
        four_o = task.api == "4o"
        if bad is not None:
            if bad.oversize and four_o:
                return 400, f"{bad.field}: the input image is over {MAX_INPUT_BYTES} bytes"
            if four_o:
                return 451, f"{FAIL_MESSAGES[451]} ({bad.field}: {bad.error})"
            return 451, f"Failed to download the input image {bad.field}: {bad.error}"
        files = [entry for entry in fetched if entry.field.startswith("filesUrl[")]
        mask = next((entry for entry in fetched if entry.field == "maskUrl"), None)
        if four_o and mask is not None and len(files) == 1:
            image, shape = (files[0].width, files[0].height), (mask.width, mask.height)
            if image != shape:
                return 400, (
                    f"maskUrl: the mask is {shape[0]}x{shape[1]}, its image {image[0]}x{image[1]}: "
                    "a mask must have its image's size"
                )
        return None

    def _render_all(self, task: Task, request: GenerateRequest, unix_sec: int) -> list[ResultImage]:
        width, height = SIZES[request.size]
        return [
            self._result_image(task, index, unix_sec, "png", width, height)
            for index in range(request.n_variants)
        ]

    def _result_image(
        self,
        task: Task,
        index: int,
        unix_sec: int,
        extension: str,
        width: int,
        height: int,
        content_type: str = "image/png",
    ) -> ResultImage:
        """Image `index` of a task, drawn now, named as the platform names its files
        (``<taskId>_<index>_<unix seconds>_<4 digits>.<ext>``) under this emulator's /s/."""
        data = task.render(index)
        tag = int(hashlib.sha256(f"{task.task_id}/{index}".encode()).hexdigest(), 16) % 10_000
        name = f"{task.task_id}_{index}_{unix_sec}_{tag:04d}.{extension}"
        return ResultImage(
            index=index,
            name=name,
            url=f"{self.public_base}/s/{name}",
            sha256=hashlib.sha256(data).hexdigest(),
            bytes=len(data),
            width=width,
            height=height,
            content_type=content_type,
        )

    def _callback_body(self, task: Task, faults: Faults) -> dict[str, Any]:
        single = faults.shape == "flux" or task.error_code == 501
        data = callback_ids(task.task_id, faults)
        if task.status == "SUCCESS":
            urls = [image.url for image in task.images]
            if single:
                data["info"] = {"originImageUrl": urls[0], "resultImageUrl": urls[0]}
                return envelope(200, "BFL image generated successfully.", data)
            data["info"] = {"result_urls": urls}
            return envelope(200, "success", data)
        data["info"] = {"originImageUrl": "", "resultImageUrl": ""} if single else None
        return envelope(task.error_code or 500, task.error_message or "failed", data)

    def redeliver(self, task_id: str) -> bool:
        """Send the task's callback again now (with the normal retries); False if there is none."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.callback_body is None or not task.request.callback_url:
                return False
            body, url = task.callback_body, task.request.callback_url
        faults = self._faults_for(task)
        self.dispatcher.deliver(Delivery(task_id, url, body, faults, reason="redeliver"))
        return True
