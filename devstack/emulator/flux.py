"""What makes a Flux Kontext task differ from a 4o one: its files, its record-info and its callback.

Flux Kontext (``/api/v1/flux/kontext/...``) shares everything else with 4o Image: the Bearer key, the
account's generate rate limit and credits, the task table, the scheduler, callback delivery (retries,
duplicates, signing) and the result-file faults. A Flux task makes one image, in ``outputFormat``
(JPEG by default) and in ``aspectRatio``, published at two URLs: ``resultImageUrl`` (kept like every
result) and ``originImageUrl`` (the same bytes, gone ``origin_ttl_seconds`` after completion).
"""

from __future__ import annotations

import hashlib
from typing import Any

from .faults import Faults
from .images import FLUX_SIZES
from .model import (
    FLUX_FAIL_CODES,
    FLUX_FAIL_MESSAGES,
    FLUX_SUCCESS_MESSAGE,
    ResultImage,
    Task,
    callback_ids,
    envelope,
    fmt_time,
)
from .validation import FluxRequest

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}
EXTENSIONS = {"jpeg": "jpg", "png": "png"}


def fail_code(code: int) -> int:
    """Flux reports 400, 500 or 501; any other failure (451 is 4o's) is an internal error."""
    return code if code in FLUX_FAIL_CODES else 500


def fail_message(code: int) -> str:
    return FLUX_FAIL_MESSAGES[fail_code(code)]


def failure_state(faults: Faults) -> tuple[str, int]:
    """(status, successFlag) of a failed task: 3 generation failed, or 2 creation failed."""
    return ("CREATE_TASK_FAILED", 2) if faults.fail_flag == 2 else ("GENERATE_FAILED", 3)


def results(
    task: Task, request: FluxRequest, base: str, unix_sec: int, origin_ttl: float
) -> list[ResultImage]:
    """The result image, then its short-lived origin twin (same bytes, another name)."""
    data = task.render(0)
    width, height = FLUX_SIZES[request.aspect_ratio]
    ext = EXTENSIONS[request.output_format]
    tag = int(hashlib.sha256(f"{task.task_id}/0".encode()).hexdigest(), 16) % 10_000
    common: dict[str, Any] = {
        "index": 0,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "width": width,
        "height": height,
        "content_type": CONTENT_TYPES[request.output_format],
    }
    images = []
    for role, middle, ttl in (("result", "0", None), ("origin", "origin", origin_ttl)):
        name = f"{task.task_id}_{middle}_{unix_sec}_{tag:04d}.{ext}"
        images.append(ResultImage(name=name, url=f"{base}/s/{name}", role=role, ttl_seconds=ttl, **common))
    return images


def _urls(task: Task) -> dict[str, str]:
    by_role = {image.role: image.url for image in task.images}
    return {"originImageUrl": by_role.get("origin", ""), "resultImageUrl": by_role.get("result", "")}


def details(task: Task, faults: Faults) -> dict[str, Any]:
    """record-info's ``data``, in the Flux reference's shape (no ``status`` or ``progress``)."""
    return {
        "taskId": task.task_id,
        "paramJson": task.param_json,
        "completeTime": fmt_time(task.completed_at, faults.time_format),
        "response": _urls(task) if task.status == "SUCCESS" else None,
        "successFlag": task.success_flag,
        "errorCode": task.error_code,
        "errorMessage": task.error_message or "",
        "createTime": fmt_time(task.created_at, faults.time_format),
    }


def callback_body(task: Task, faults: Faults) -> dict[str, Any]:
    """The single-image callback: both URLs on success, two empty strings on failure."""
    data = callback_ids(task.task_id, faults)
    if task.status == "SUCCESS":
        data["info"] = _urls(task)
        return envelope(200, FLUX_SUCCESS_MESSAGE, data)
    data["info"] = {"originImageUrl": "", "resultImageUrl": ""}
    code = task.error_code or 500
    return envelope(code, task.error_message or fail_message(code), data)
