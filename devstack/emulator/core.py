"""The emulated service itself, without HTTP: tasks, rate limits, links, callbacks, faults."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from .callbacks import CallbackDispatcher, Delivery, Scheduler
from .config import EmulatorConfig
from .faults import Faults, FaultSpecError, normalize_faults, parse_fault_spec, parse_prompt_markers
from .images import SIZES, padded_length, padded_png_chunks, render_png
from .validation import GenerateRequest, ValidationError, validate_generate

NAME_RE = re.compile(r"^(?P<task>[0-9a-f]{32})_(?P<index>\d+)_(?P<sec>\d+)_(?P<tag>\d{4})\.png$")
MAX_DELIVERY_RECORDS = 500
MAX_SERVED_RECORDS = 5000
MAX_LINKS = 20_000
MAX_RATE_KEYS = 10_000

SUBMIT_MESSAGES = {
    400: "Format Error: the request could not be parsed",
    401: "You do not have access permissions",
    402: "The current credits are insufficient. Please top up.",
    404: "Not Found",
    422: "Validation error",
    429: "The call frequency is too high. Please try again later.",
    455: "The service is currently unavailable due to system maintenance",
    500: "Server exception, please try again later or contact customer service",
    505: "The feature is currently disabled",
    550: "The connection was denied because the task queue is full",
}
FAIL_MESSAGES = {
    400: "Your content was flagged by OpenAI as violating content policies",
    451: "Failed to download the image from the provided filesUrl",
    500: "GPT 4O failed to edit the picture",
    501: "Image generation task failed",
}
HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>"
    b"<h1>Bad Gateway</h1><p>The CDN could not reach the origin (kie 4o emulator html fault).</p>"
    b"</body></html>"
)


def envelope(code: int, msg: str, data: Any = None) -> dict[str, Any]:
    return {"code": code, "msg": msg, "data": data}


@dataclass
class ApiReply:
    http_status: int
    body: dict[str, Any]
    delay_seconds: float = 0.0  # the HTTP layer waits this long before answering


@dataclass
class FileReply:
    """An answer at a result/download link, streamed by the HTTP layer."""

    status: int
    content_type: str
    chunks: Callable[[], Iterator[bytes]]
    length: int
    declared_length: int
    trickle_seconds: float = 0.0
    applied: tuple[str, ...] = ()
    task_id: str | None = None
    index: int | None = None


@dataclass
class ResultImage:
    index: int
    name: str
    url: str
    sha256: str
    bytes: int
    width: int
    height: int


@dataclass
class Task:
    task_id: str
    api_key: str
    request: GenerateRequest
    param_json: str
    faults: dict[str, Any]
    created_at: float
    created_mono: float
    generation_seconds: float
    status: str = "GENERATING"
    success_flag: int = 0
    completed_at: float | None = None
    error_code: int | None = None
    error_message: str | None = None
    final_progress: str | None = None
    images: list[ResultImage] = field(default_factory=list)
    callback_body: dict[str, Any] | None = None
    deliveries: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_DELIVERY_RECORDS))
    info_hits: deque[float] = field(default_factory=deque)


def _fmt_time(epoch: float | None, time_format: str) -> int | str | None:
    if epoch is None:
        return None
    if time_format == "string":
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))
    return int(epoch * 1000)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 4)


class EmulatorCore:
    """All state behind one lock; the HTTP layer only parses and streams."""

    def __init__(self, config: EmulatorConfig, base_url: Callable[[], str]) -> None:
        self.config = config
        self._base_url = base_url
        self._lock = threading.RLock()
        self._tasks: OrderedDict[str, Task] = OrderedDict()
        self._run_faults: dict[str, Any] = dict(config.faults)
        self._credits = float(config.credits)
        self._generate_hits: dict[str, deque[float]] = {}
        self._served: deque[dict[str, Any]] = deque(maxlen=MAX_SERVED_RECORDS)
        self._links: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._image_gets: dict[str, int] = {}
        self._link_counter = 0
        self._secret = os.urandom(32)
        self.stop_event = threading.Event()
        self.scheduler = Scheduler()
        self.dispatcher = CallbackDispatcher(
            self.scheduler,
            self._record_delivery,
            retry_schedule=config.callback_retry_schedule,
            timeout=config.callback_timeout_seconds,
            hmac_key=config.hmac_key,
            allow_external=config.allow_external_callbacks,
        )

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.scheduler.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.scheduler.stop()
        self.dispatcher.close()

    @property
    def public_base(self) -> str:
        return self.config.public_base_url or self._base_url()

    # ----------------------------------------------------------------- faults
    def run_faults(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._run_faults)

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

    def _faults_for(self, task: Task | None) -> Faults:
        with self._lock:
            return Faults.build(self._run_faults, task.faults if task else {})

    def _error(self, code: int, msg: str, faults: Faults, data: Any = None) -> ApiReply:
        status = 429 if code == 429 else (code if faults.mirror_http else 200)
        return ApiReply(status, envelope(code, msg, data))

    # ----------------------------------------------------------------- auth and limits
    def authorize(self, header: str | None) -> str | None:
        """The API key of a valid ``Authorization: Bearer`` header, else None."""
        scheme, _, token = (header or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        expected = self.config.api_key
        if expected is not None and not hmac.compare_digest(token.encode(), expected.encode()):
            return None
        return token

    def unauthorized(self) -> ApiReply:
        return self._error(401, SUBMIT_MESSAGES[401], self._faults_for(None))

    @staticmethod
    def _hit(window: deque[float], limit: int, seconds: float) -> bool:
        """Count a request in a sliding window; False when over the limit."""
        if limit <= 0:
            return True
        now = time.monotonic()
        while window and now - window[0] >= seconds:
            window.popleft()
        if len(window) >= limit:
            return False
        window.append(now)
        return True

    # ----------------------------------------------------------------- API: generate
    def generate(self, api_key: str, body: Any) -> ApiReply:
        run = self._faults_for(None)
        with self._lock:
            if len(self._generate_hits) > MAX_RATE_KEYS:
                self._generate_hits.clear()
            window = self._generate_hits.setdefault(api_key, deque())
            allowed = self._hit(
                window, self.config.generate_rate_limit, self.config.generate_rate_window_seconds
            )
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
        try:
            request = validate_generate(body)
        except ValidationError as exc:
            return self._error(422, str(exc), faults)
        cost = self.config.credits_per_image * request.n_variants
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
    def record_info(self, task_id: str | None) -> ApiReply:
        run = self._faults_for(None)
        if not task_id:
            return self._error(422, "taskId: This field is required", run)
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return self._error(422, "record is null", run)
            allowed = self._hit(
                task.info_hits,
                self.config.record_info_rate_limit,
                self.config.record_info_rate_window_seconds,
            )
        faults = self._faults_for(task)
        if not allowed:
            return self._error(429, SUBMIT_MESSAGES[429], faults)
        return ApiReply(200, envelope(200, "success", self._details(task, faults)))

    def _progress(self, task: Task) -> str:
        if task.final_progress is not None:
            return task.final_progress
        gen = task.generation_seconds
        elapsed = time.monotonic() - task.created_mono
        fraction = 0.99 if gen <= 0 else min(0.99, max(0.0, elapsed / gen))
        return f"{math.floor(fraction * 100) / 100:.2f}"

    def _details(self, task: Task, faults: Faults) -> dict[str, Any]:
        with self._lock:
            response = None
            if task.status == "SUCCESS":
                response = {faults.result_key: [image.url for image in task.images]}
            return {
                "taskId": task.task_id,
                "paramJson": task.param_json,
                "completeTime": _fmt_time(task.completed_at, faults.time_format),
                "response": response,
                "successFlag": task.success_flag,
                "status": task.status,
                "errorCode": task.error_code,
                "errorMessage": task.error_message,
                "createTime": _fmt_time(task.created_at, faults.time_format),
                "progress": self._progress(task),
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
        images: list[ResultImage] = []
        finished = time.time()
        if code is None:
            images = self._render_all(task, int(finished))
        with self._lock:
            if task.status != "GENERATING":
                return False
            task.completed_at = finished
            if code is None:
                task.status, task.success_flag = "SUCCESS", 1
                task.final_progress = "1.00"
                task.images = images
            else:
                task.status, task.success_flag = "GENERATE_FAILED", faults.fail_flag
                task.final_progress = self._progress(task)
                task.error_code = code
                task.error_message = message or FAIL_MESSAGES.get(code, "Generation failed")
            task.callback_body = self._callback_body(task, faults)
        if task.request.callback_url:
            self.dispatcher.deliver(
                Delivery(task.task_id, task.request.callback_url, task.callback_body, faults)
            )
        return True

    def _render_all(self, task: Task, unix_sec: int) -> list[ResultImage]:
        request = task.request
        width, height = SIZES[request.size]
        images = []
        for index in range(request.n_variants):
            data = render_png(task.task_id, index, request.prompt or "", request.size, request.n_variants)
            tag = int(hashlib.sha256(f"{task.task_id}/{index}".encode()).hexdigest(), 16) % 10_000
            name = f"{task.task_id}_{index}_{unix_sec}_{tag:04d}.png"
            images.append(
                ResultImage(
                    index=index,
                    name=name,
                    url=f"{self.public_base}/s/{name}",
                    sha256=hashlib.sha256(data).hexdigest(),
                    bytes=len(data),
                    width=width,
                    height=height,
                )
            )
        return images

    def _callback_body(self, task: Task, faults: Faults) -> dict[str, Any]:
        flux = faults.shape == "flux" or task.error_code == 501
        data: dict[str, Any] = {}
        if faults.task_key in ("taskId", "both"):
            data["taskId"] = task.task_id
        if faults.task_key in ("task_id", "both"):
            data["task_id"] = task.task_id
        if task.status == "SUCCESS":
            urls = [image.url for image in task.images]
            if flux:
                data["info"] = {"originImageUrl": urls[0], "resultImageUrl": urls[0]}
                return envelope(200, "BFL image generated successfully.", data)
            data["info"] = {"result_urls": urls}
            return envelope(200, "success", data)
        data["info"] = {"originImageUrl": "", "resultImageUrl": ""} if flux else None
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

    def _record_delivery(self, task_id: str, entry: dict[str, Any]) -> None:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is not None:
                task.deliveries.append(entry)

    # ----------------------------------------------------------------- API: download links
    def _task_for_url(self, url: Any) -> tuple[Task | None, ResultImage | None]:
        if not isinstance(url, str):
            return None, None
        match = NAME_RE.match(urlsplit(url).path.rsplit("/", 1)[-1])
        if not match:
            return None, None
        with self._lock:
            task = self._tasks.get(match["task"])
        if task is None:
            return None, None
        image = next((i for i in task.images if i.name == match.group(0)), None)
        return task, image

    def download_url(self, body: Any, *, generic: bool) -> ApiReply:
        run = self._faults_for(None)
        if not isinstance(body, dict):
            return self._error(400, "Format Error: the request body must be a JSON object", run)
        quick = not generic and "url" not in body and "imageUrl" in body
        url = body.get("imageUrl") if quick else body.get("url")
        if not url:
            return self._error(422, f"{'imageUrl' if quick else 'url'}: This field is required", run)
        task, image = self._task_for_url(url)
        if not generic and not quick:
            task_id = body.get("taskId")
            if not task_id:
                return self._error(422, "taskId: This field is required", run)
            with self._lock:
                task = self._tasks.get(str(task_id))
            if task is not None:
                image = next((i for i in task.images if i.url == url or url.endswith("/s/" + i.name)), None)
        if task is None:
            return self._error(422, "record is null", run)
        faults = self._faults_for(task)
        if time.time() - task.created_at > self.config.retention_seconds:
            return self._error(422, "Temporarily supports records within 14 days", faults)
        if task.status != "SUCCESS":
            return self._error(422, "record status is not success", faults)
        if not task.images:
            return self._error(422, "record result data is blank", faults)
        if image is None:
            return self._error(
                451, "Failed to fetch the image: the url is not a result of this record", faults
            )
        link = self.mint_link(image.name)
        form = faults.download_form
        if form == "auto":
            form = "quickstart" if quick else "reference"
        data: Any = {"downloadUrl": link} if form == "quickstart" and not generic else link
        return ApiReply(200, envelope(200, "success", data))

    def mint_link(self, name: str) -> str:
        """A presigned-style URL for a result file, valid ``link_ttl_seconds``."""
        now = time.time()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        ttl = self.config.link_ttl_seconds
        with self._lock:
            self._link_counter += 1
            message = f"{name}\n{amz_date}\n{self._link_counter}".encode()
            signature = hmac.new(self._secret, message, hashlib.sha256).hexdigest()
            self._links[signature] = (name, now + ttl)
            while len(self._links) > MAX_LINKS:
                self._links.popitem(last=False)
        credential = quote(f"EMULATORKEY/{amz_date[:8]}/us-east-1/s3/aws4_request", safe="")
        return (
            f"{self.public_base}/s/{name}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={credential}"
            f"&X-Amz-Date={amz_date}&X-Amz-Expires={math.ceil(ttl)}&X-Amz-SignedHeaders=host"
            f"&X-Amz-Signature={signature}"
        )

    # ----------------------------------------------------------------- API: credit
    def credit(self) -> ApiReply:
        with self._lock:
            return ApiReply(200, envelope(200, "success", _number(self._credits)))

    def set_credits(self, value: float) -> float:
        with self._lock:
            self._credits = float(value)
            return self._credits

    # ----------------------------------------------------------------- files
    def file(self, name: str, query: dict[str, str]) -> FileReply:
        """What a GET on ``/s/<name>`` answers (S3-style XML errors for missing/expired)."""
        match = NAME_RE.match(name)
        with self._lock:
            task = self._tasks.get(match["task"]) if match else None
        image = next((i for i in task.images if i.name == name), None) if task else None
        if task is None or image is None:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        faults = self._faults_for(task)
        now = time.time()
        if now - task.created_at > self.config.retention_seconds:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        if "X-Amz-Signature" in query:
            with self._lock:
                minted = self._links.get(query["X-Amz-Signature"])
            if minted is None or minted[0] != name:
                return _s3_error(
                    403, "SignatureDoesNotMatch", "The request signature we calculated does not match."
                )
            if faults.expired or now > minted[1]:
                return _s3_error(403, "AccessDenied", "Request has expired")
        elif (
            faults.expired
            or faults.stale_links
            or now > (task.completed_at or now) + self.config.effective_result_ttl
        ):
            return _s3_error(403, "AccessDenied", "Request has expired")
        with self._lock:
            earlier_gets = self._image_gets.get(name, 0)
            self._image_gets[name] = earlier_gets + 1
        if earlier_gets < faults.image_5xx:
            return _s3_error(503, "SlowDown", "Please reduce your request rate.")

        request = task.request
        applied: list[str] = []
        if faults.html:
            applied.append("html")
            body_length = len(HTML_PAGE)

            def chunks() -> Iterator[bytes]:
                yield HTML_PAGE
        else:
            png = render_png(
                task.task_id, image.index, request.prompt or "", request.size, request.n_variants
            )
            if faults.oversize:
                applied.append("oversize")
                body_length = padded_length(png, faults.oversize)

                def chunks() -> Iterator[bytes]:
                    yield from padded_png_chunks(png, faults.oversize)
            else:
                body_length = len(png)

                def chunks() -> Iterator[bytes]:
                    yield png

        declared = body_length
        sent = body_length
        if faults.truncate:
            applied.append("truncate")
            sent = body_length // 2
            declared = body_length
        trickle = faults.trickle
        if earlier_gets < faults.slow_first:
            trickle = SLOW_FIRST_TRICKLE_SECONDS
        if trickle:
            applied.append("trickle")
        return FileReply(
            status=200,
            content_type="image/png",
            chunks=chunks,
            length=sent,
            declared_length=declared,
            trickle_seconds=trickle,
            applied=tuple(applied),
            task_id=task.task_id,
            index=image.index,
        )

    def record_served(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._served.append(entry)

    # ----------------------------------------------------------------- inspection
    def task_ids(self) -> list[str]:
        with self._lock:
            return list(self._tasks)

    def inspect(self, task_id: str) -> dict[str, Any] | None:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return None
            faults = Faults.build(self._run_faults, task.faults)
            request = task.request
            return {
                "taskId": task.task_id,
                "status": task.status,
                "successFlag": task.success_flag,
                "progress": self._progress(task),
                "createdAt": task.created_at,
                "completedAt": task.completed_at,
                "generationSeconds": task.generation_seconds,
                "apiKey": task.api_key,
                "request": {
                    "size": request.size,
                    "prompt": request.prompt,
                    "filesUrl": list(request.files_url),
                    "maskUrl": request.mask_url,
                    "nVariants": request.n_variants,
                    "callBackUrl": request.callback_url,
                },
                "paramJson": task.param_json,
                "faults": dict(task.faults),
                "effectiveFaults": faults.__dict__.copy(),
                "errorCode": task.error_code,
                "errorMessage": task.error_message,
                "resultUrls": [image.url for image in task.images],
                "images": [image.__dict__.copy() for image in task.images],
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
            return {"generated": generated, "served": [dict(e) for e in self._served]}

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


SLOW_FIRST_TRICKLE_SECONDS = 30.0  # longer than any sane download deadline: the fetch times out


def _s3_error(status: int, code: str, message: str) -> FileReply:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
    ).encode()

    def chunks() -> Iterator[bytes]:
        yield body

    return FileReply(status, "application/xml", chunks, len(body), len(body), applied=(code,))
