"""Fault switches: what they are called, how they are written, how they combine.

A fault set is a plain ``dict`` of the keys that were explicitly set. Run-wide faults (config or
``/admin/faults``) are the bottom layer, a task's prompt markers the top one;
``Faults.build(run_wide, task)`` resolves both into typed values with defaults.

Prompt marker grammar (case-insensitive, anywhere in the prompt, several markers allowed)::

    marker := "[fault:" item ("," item)* "]"
    item   := key | key "=" value          # a bare key means true (or the key's default value)

See ``FAULT_KEYS`` for the keys and the package docstring for what each one does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

OVERSIZE_DEFAULT_BYTES = 26_214_400 + 1_048_576  # a bit over the documented 25 MiB limit
OVERSIZE_MAX_BYTES = 64 * 1_048_576
TRICKLE_DEFAULT_SECONDS = 3.0

_MARKER_RE = re.compile(r"\[fault:([^\]]*)\]", re.IGNORECASE)
_TRUE = {"1", "true", "yes", "on", ""}
_FALSE = {"0", "false", "no", "off"}


class FaultSpecError(ValueError):
    """A fault key or value that does not exist."""


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise FaultSpecError(f"expected a boolean, got {value!r}")


def _int_in(allowed: set[int] | range, default: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if value in ("", True) and default is not None:
            return default
        if isinstance(value, bool):
            raise FaultSpecError(f"expected an integer, got {value!r}")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise FaultSpecError(f"expected an integer, got {value!r}") from None
        if number in allowed:
            return number
        if isinstance(allowed, range):  # never list a range: oversize's has 64 Mi values
            raise FaultSpecError(f"must be between {allowed.start} and {allowed.stop - 1}, got {number}")
        raise FaultSpecError(f"{number} is not one of {sorted(allowed)}")

    return parse


def _float_in(low: float, high: float, default: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if value in ("", True):
            return default
        if isinstance(value, bool):
            raise FaultSpecError(f"expected a number, got {value!r}")
        try:
            number = float(str(value).strip())
        except ValueError:
            raise FaultSpecError(f"expected a number, got {value!r}") from None
        if not low <= number <= high:
            raise FaultSpecError(f"{number} is outside {low}..{high}")
        return number

    return parse


def _choice(*options: str, default: str | None = None) -> Callable[[Any], str]:
    lookup = {option.lower(): option for option in options}

    def parse(value: Any) -> str:
        if value in ("", True) and default is not None:
            return default
        text = str(value).strip().lower()
        if text not in lookup:
            raise FaultSpecError(f"{value!r} is not one of {list(options)}")
        return lookup[text]

    return parse


SUBMIT_CODES = {400, 401, 402, 404, 422, 429, 455, 500, 505, 550}
FAIL_CODES = {400, 451, 500, 501}

# key -> (parser, one-line description). The order is the documentation order.
FAULT_KEYS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "duplicate": (_int_in(range(1, 11), 2), "deliver the callback N times in a row (bare: 2)"),
    "concurrent": (_int_in(range(1, 9), 2), "send N copies of the callback at the same moment (bare: 2)"),
    "drop": (_as_bool, "never deliver the callback"),
    "fail": (
        _int_in(FAIL_CODES, 500),
        "the task fails with 400/451/500, or 501 (single-image shape); Flux: 400/500/501, else 500",
    ),
    "shape": (
        _choice("4o", "flux", default="flux"),
        "4o tasks' callback body shape: 4o list or flux single image (Flux tasks: always single)",
    ),
    "submit": (_int_in(SUBMIT_CODES, 500), "generate answers this error code instead of creating a task"),
    "trickle": (_float_in(0.0, 60.0, TRICKLE_DEFAULT_SECONDS), "image bodies dribble out over S seconds"),
    "truncate": (_as_bool, "image responses announce a Content-Length larger than what is sent"),
    "oversize": (
        _int_in(range(0, OVERSIZE_MAX_BYTES + 1), OVERSIZE_DEFAULT_BYTES),
        "image bodies padded (valid PNG) to N bytes (bare: 25 MiB + 1 MiB)",
    ),
    "html": (_as_bool, "image URLs answer 200 with an HTML page labelled image/png"),
    "expired": (_as_bool, "result and download links answer 403 Request has expired"),
    "stale_links": (
        _as_bool,
        "result URLs answer 403 Request has expired; freshly minted download links work",
    ),
    "image_5xx": (
        _int_in(range(0, 1001), 1),
        "the first N GETs of each image answer 503 SlowDown (bare: 1; 1000: an outage that never ends)",
    ),
    "slow_first": (_int_in(range(0, 11), 1), "the first N GETs of each image trickle for 30 s (bare: 1)"),
    "result_key": (_choice("resultUrls", "result_urls", default="result_urls"), "record-info URL list key"),
    "time_format": (
        _choice("ms", "string", "iso", default="string"),
        "createTime/completeTime: epoch ms (4o default), string, iso (Flux default)",
    ),
    "download_form": (
        _choice("auto", "reference", "quickstart", default="quickstart"),
        "download-url answer: data string (reference) or data.downloadUrl (quickstart)",
    ),
    "task_key": (_choice("taskId", "task_id", "both", default="task_id"), "callback data.taskId key"),
    "fail_flag": (
        _int_in({2, 3}, 3),
        "successFlag of failed tasks (4o default 2; Flux default 3, and 2 = CREATE_TASK_FAILED)",
    ),
    "stall": (_as_bool, "the task never finishes on its own (admin complete still works)"),
    "gen": (_float_in(0.0, 3600.0, 0.0), "this task's generation time in seconds"),
    "submit_delay": (
        _float_in(0.0, 120.0, 30.0),
        "generate creates the task but answers only after S seconds (the caller times out; bare: 30)",
    ),
    "mirror_http": (_as_bool, "error envelopes also use the code as HTTP status"),
    "tolerance_error": (
        _int_in({422, 500}, 500),
        "Flux generate's code for a safetyTolerance out of range (default 422; 500 per a quick start)",
    ),
    "market_fail_code": (
        _choice("501", "reason", default="reason"),
        "Market failure callbacks' code: always 501 (default), or the failCode itself (400/500/501)",
    ),
    "market_format": (
        _choice("png", "jpeg", "webp", default="webp"),
        "the format of a Market model's results when the model has no format field (default png)",
    ),
    "market_blank": (
        _choice("null", "empty", default="empty"),
        'Market recordInfo failCode/failMsg of a task that has not failed: null (default) or ""',
    ),
}

_ALIASES = {"resulturls": "result_key", "timeformat": "time_format", "taskkey": "task_key"}


def _canonical_key(raw: str) -> str:
    key = raw.strip().lower().replace("-", "_")
    key = _ALIASES.get(key.replace("_", ""), key)
    if key not in FAULT_KEYS:
        raise FaultSpecError(f"unknown fault {raw.strip()!r} (known: {', '.join(FAULT_KEYS)})")
    return key


def normalize_faults(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a ``{key: value}`` mapping (JSON or CLI values) into typed fault values."""
    result: dict[str, Any] = {}
    for raw_key, raw_value in mapping.items():
        key = _canonical_key(raw_key)
        parser = FAULT_KEYS[key][0]
        try:
            result[key] = parser(raw_value)
        except FaultSpecError as exc:
            raise FaultSpecError(f"fault {key}: {exc}") from None
    return result


def parse_fault_spec(spec: str) -> dict[str, Any]:
    """Parse ``"duplicate=3,drop"`` (the inside of a marker) into typed fault values."""
    pairs: dict[str, Any] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        pairs[key] = value.strip() if sep else ""
    return normalize_faults(pairs)


def parse_prompt_markers(prompt: str | None) -> dict[str, Any]:
    """Every ``[fault:...]`` marker in the prompt, merged left to right."""
    result: dict[str, Any] = {}
    for match in _MARKER_RE.finditer(prompt or ""):
        result.update(parse_fault_spec(match.group(1)))
    return result


@dataclass(frozen=True)
class Faults:
    """Resolved fault values (defaults = a healthy upstream)."""

    duplicate: int = 1
    concurrent: int = 1
    drop: bool = False
    fail: int | None = None
    shape: str = "4o"
    submit: int | None = None
    trickle: float = 0.0
    truncate: bool = False
    oversize: int = 0
    html: bool = False
    expired: bool = False
    stale_links: bool = False
    image_5xx: int = 0
    slow_first: int = 0
    result_key: str = "resultUrls"
    time_format: str = "ms"
    download_form: str = "auto"
    task_key: str = "taskId"
    fail_flag: int = 2
    stall: bool = False
    gen: float | None = None
    submit_delay: float = 0.0
    mirror_http: bool = False
    tolerance_error: int = 422
    market_fail_code: str = "501"
    market_format: str = "png"
    market_blank: str = "null"

    @classmethod
    def build(cls, *layers: Mapping[str, Any]) -> Faults:
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update(layer)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in merged.items() if k in known})
