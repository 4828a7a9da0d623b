"""What the emulated service holds and answers: tasks, result images, replies, the upstream's messages."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .validation import GenerateRequest

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

    def progress(self) -> str:
        """record-info's ``progress``: rises with the generation time, "1.00" once it succeeded."""
        if self.final_progress is not None:
            return self.final_progress
        gen = self.generation_seconds
        elapsed = time.monotonic() - self.created_mono
        fraction = 0.99 if gen <= 0 else min(0.99, max(0.0, elapsed / gen))
        return f"{math.floor(fraction * 100) / 100:.2f}"


def fmt_time(epoch: float | None, time_format: str) -> int | str | None:
    if epoch is None:
        return None
    if time_format == "string":
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))
    return int(epoch * 1000)


def number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 4)
