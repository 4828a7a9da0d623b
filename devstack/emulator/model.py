"""What the emulated service holds and answers: tasks (4o, Flux Kontext, Market), images, replies."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .faults import Faults
from .images import render_flux, render_market, render_png
from .market_validation import MarketRequest
from .validation import FluxRequest, GenerateRequest

MAX_DELIVERY_RECORDS = 500

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
# Flux Kontext: its own callback messages and codes (a code outside FLUX_FAIL_CODES becomes 500)
FLUX_SUCCESS_MESSAGE = "BFL image generated successfully."
FLUX_FAIL_MESSAGES = {
    400: "Your prompt was flagged for violating content policy",
    500: "Internal error, please try again later",
    501: "Image generation task failed",
}
FLUX_FAIL_CODES = frozenset(FLUX_FAIL_MESSAGES)
# Where Flux differs from 4o by default: failed tasks report 3 (generation failed), times are ISO 8601.
FLUX_FAULT_DEFAULTS = {"fail_flag": 3, "time_format": "iso"}


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
    content_type: str = "image/png"
    role: str = "result"
    """"result", or "origin" for Flux Kontext's short-lived ``originImageUrl``."""
    ttl_seconds: float | None = None
    """How long the URL works after completion; None = the configured result TTL."""


@dataclass
class Task:
    task_id: str
    api_key: str
    request: GenerateRequest | FluxRequest | MarketRequest
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
    credits_charged: float = 0.0
    inputs: list[dict[str, Any]] = field(default_factory=list)
    """The input images as the emulator fetched them when the task completed (inputs.FetchedInput)."""

    def progress(self) -> str:
        """record-info's ``progress``: rises with the generation time, "1.00" once it succeeded."""
        if self.final_progress is not None:
            return self.final_progress
        gen = self.generation_seconds
        elapsed = time.monotonic() - self.created_mono
        fraction = 0.99 if gen <= 0 else min(0.99, max(0.0, elapsed / gen))
        return f"{math.floor(fraction * 100) / 100:.2f}"

    @property
    def is_flux(self) -> bool:
        return isinstance(self.request, FluxRequest)

    @property
    def api(self) -> str:
        """Which API the task belongs to: "4o", "flux" or "market" (each sees only its own)."""
        if isinstance(self.request, FluxRequest):
            return "flux"
        return "market" if isinstance(self.request, MarketRequest) else "4o"

    def input_urls(self) -> list[tuple[str, str]]:
        """(field, URL) of every input image the request names, in the request's order."""
        request = self.request
        if isinstance(request, MarketRequest):
            return list(request.image_fields)
        if isinstance(request, FluxRequest):
            return [("inputImage", request.input_image)] if request.input_image else []
        files = [(f"filesUrl[{index}]", url) for index, url in enumerate(request.files_url)]
        return files + ([("maskUrl", request.mask_url)] if request.mask_url else [])

    def input_byte_limits(self) -> dict[str, int]:
        """The largest file each input field takes where it is not the 4o one (a Market field's own)."""
        return dict(self.request.byte_limits) if isinstance(self.request, MarketRequest) else {}

    def render(self, index: int) -> bytes:
        """The bytes of result ``index`` (the same every time)."""
        request = self.request
        if isinstance(request, MarketRequest):
            return render_market(
                self.task_id,
                index,
                request.images,
                request.model,
                request.prompt,
                (request.width, request.height),
                request.output_format or "png",
            )
        if isinstance(request, FluxRequest):
            return render_flux(
                self.task_id,
                request.prompt,
                request.model,
                request.aspect_ratio,
                request.output_format,
                request.input_image,
            )
        return render_png(self.task_id, index, request.prompt or "", request.size, request.n_variants)


def fmt_time(epoch: float | None, time_format: str) -> int | str | None:
    if epoch is None:
        return None
    if time_format == "string":
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))
    if time_format == "iso":
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    return int(epoch * 1000)


def callback_ids(task_id: str, faults: Faults) -> dict[str, Any]:
    """The callback's ``data`` before ``info``: the task id under the key(s) ``task_key`` says."""
    data: dict[str, Any] = {}
    if faults.task_key in ("taskId", "both"):
        data["taskId"] = task_id
    if faults.task_key in ("task_id", "both"):
        data["task_id"] = task_id
    return data


def number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 4)
