"""The emulator's settings: one frozen dataclass, validated once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .faults import normalize_faults

FOURTEEN_DAYS = 14 * 24 * 3600.0
MAX_RETRIES = 10


@dataclass(frozen=True)
class EmulatorConfig:
    """How the emulated upstream behaves. Every duration is in seconds (floats allowed)."""

    port: int = 0
    """TCP port on ``host``; 0 picks a free one."""
    host: str = "127.0.0.1"
    """Address to bind: loopback by default; 0.0.0.0 only inside a container, whose network is its own."""
    api_key: str | None = None
    """The only accepted Bearer token; None accepts any non-empty token."""
    hmac_key: str | None = None
    """Webhook HMAC key; when set every callback carries X-Webhook-Timestamp / X-Webhook-Signature."""
    generation_seconds: float = 20.0
    callback_timeout_seconds: float = 15.0
    callback_retry_schedule: tuple[float, ...] = (60.0, 300.0, 900.0)
    """Delay before each retry after a failed delivery (one entry per retry)."""
    link_ttl_seconds: float = 1200.0
    """Lifetime of the presigned links minted by the download-url endpoints."""
    result_ttl_seconds: float | None = None
    """Lifetime of the result URLs themselves; None = retention_seconds (the real 14 days)."""
    origin_ttl_seconds: float = 600.0
    """Lifetime of a Flux Kontext task's ``originImageUrl`` after completion (the real 10 minutes)."""
    retention_seconds: float = FOURTEEN_DAYS
    generate_rate_limit: int = 20
    """New tasks (4o, Flux Kontext and Market together) per window per API key; 0 disables the limit."""
    generate_rate_window_seconds: float = 10.0
    record_info_rate_limit: int = 3
    """record-info queries per window per task; 0 disables the limit."""
    record_info_rate_window_seconds: float = 1.0
    market_record_info_rate_limit: int = 10
    """Market recordInfo queries per window per task (a third party's 10 per second); 0 disables it."""
    credits: float = 1_000_000.0
    credits_per_image: float = 6.0
    """Charged per 4o image, per Flux Kontext task and per Market image (the contract prices none);
    a failed Market task gives its credits back (the Market charges successes only)."""
    public_base_url: str | None = None
    """Base of the URLs the emulator hands out; None = its own http://127.0.0.1:<port>."""
    allow_external_callbacks: bool = False
    """Deliver callbacks to non-loopback hosts (off: such deliveries are recorded as blocked)."""
    allow_external_inputs: bool = False
    """Fetch input images (filesUrl, maskUrl, inputImage, a Market model's image fields) from non-loopback
    hosts (off: such an input is recorded as blocked, and the task fails as for an unreachable URL)."""
    input_timeout_seconds: float = 10.0
    """How long one input image's GET may take before it counts as unreachable."""
    faults: Mapping[str, Any] = field(default_factory=dict)
    """Run-wide faults at start, e.g. {"duplicate": 2} (see devstack.emulator.faults)."""
    max_tasks: int = 5000
    """Oldest tasks are forgotten beyond this many."""
    socket_timeout_seconds: float = 10.0
    """Idle timeout of an incoming connection."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} out of range")
        if not self.host or any(c.isspace() for c in self.host):
            raise ValueError(f"host {self.host!r} is not an address")
        schedule = tuple(float(s) for s in self.callback_retry_schedule)
        if len(schedule) > MAX_RETRIES or any(s < 0 for s in schedule):
            raise ValueError(f"callback_retry_schedule: at most {MAX_RETRIES} non-negative delays")
        object.__setattr__(self, "callback_retry_schedule", schedule)
        for name in (
            "generation_seconds",
            "callback_timeout_seconds",
            "link_ttl_seconds",
            "origin_ttl_seconds",
            "retention_seconds",
            "generate_rate_window_seconds",
            "record_info_rate_window_seconds",
            "socket_timeout_seconds",
            "input_timeout_seconds",
        ):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.callback_timeout_seconds <= 0:
            raise ValueError("callback_timeout_seconds must be > 0")
        if self.max_tasks < 1:
            raise ValueError("max_tasks must be >= 1")
        object.__setattr__(self, "faults", normalize_faults(self.faults))
        if self.public_base_url is not None:
            object.__setattr__(self, "public_base_url", self.public_base_url.rstrip("/"))

    @property
    def effective_result_ttl(self) -> float:
        return self.retention_seconds if self.result_ttl_seconds is None else self.result_ttl_seconds
