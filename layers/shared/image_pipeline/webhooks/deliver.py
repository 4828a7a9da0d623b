"""deliver: one signed POST to a webhook receiver through safe_fetch's pinned connection.

The URL is checked again (it was accepted at submit time, but rules and DNS change), the host is
resolved and every address checked, the connection goes to the checked address (name kept for
Host, SNI and the certificate), redirects are not followed, one deadline covers DNS, connect,
upload, answer and body, and at most ``max_response_bytes`` of the answer are read.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from image_pipeline.safe_fetch.addresses import Resolver, default_resolver
from image_pipeline.safe_fetch.errors import FetchError
from image_pipeline.safe_fetch.fetch import new_client, send_pinned
from image_pipeline.safe_fetch.targets import Target, resolve_checked
from image_pipeline.safe_fetch.watchdog import Watchdog
from image_pipeline.webhooks.urls import (
    WebhookUrlError,
    check_webhook_target,
    url_origin,
    webhook_policy,
    without_path,
)

_USER_AGENT = "image-pipeline-webhooks/1"
_CHUNK_SIZE = 16 * 1024


@dataclass(frozen=True)
class DeliveryResult:
    """What became of one attempt. ``ok`` only for a 2xx answer; ``error`` says why not (no secrets)."""

    status_code: int | None
    error: str | None
    ok: bool


def deliver(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    trusted_origins: Sequence[str],
    timeout_seconds: float = 10.0,
    max_response_bytes: int = 64 * 1024,
    resolver: Resolver | None = None,
    client: httpx.Client | None = None,
) -> DeliveryResult:
    """POST ``body`` with ``headers`` (the signature's, plus ``Content-Type: application/json`` unless
    given) to ``url``. Never raises for what the URL, the network or the receiver do.

    ``resolver`` replaces DNS (tests, local stack). ``client`` replaces the HTTP client; it must not use
    a proxy (connections to anything but the checked address are refused) and is not closed here.
    """
    if timeout_seconds <= 0 or max_response_bytes < 0:
        raise ValueError("timeout_seconds must be positive and max_response_bytes not negative")
    deadline = time.monotonic() + timeout_seconds
    policy = webhook_policy(trusted_origins, timeout_seconds)
    try:
        target = check_webhook_target(url, policy)
    except WebhookUrlError as exc:
        return DeliveryResult(status_code=None, error=f"{exc.reason}: {exc}", ok=False)
    request_headers = {"Content-Type": "application/json", "Accept": "*/*", "User-Agent": _USER_AGENT}
    request_headers.update(headers)
    http = client if client is not None else new_client()
    watchdog = Watchdog(deadline)
    try:
        addresses = resolve_checked(target, resolver or default_resolver, {}, deadline)
        response = send_pinned(
            http,
            target,
            addresses,
            policy,
            deadline,
            watchdog,
            method="POST",
            content=bytes(body),
            extra_headers=request_headers,
        )
        try:
            status = response.status_code
            _read_capped(response, max_response_bytes, deadline)
        finally:
            with contextlib.suppress(httpx.HTTPError, OSError):
                response.close()
            watchdog.release()
    except FetchError as exc:
        return DeliveryResult(status_code=None, error=f"{exc.reason}: {_message(exc, target)}", ok=False)
    finally:
        watchdog.close()
        if client is None:
            http.close()
    return _result(status, target)


def _read_capped(response: httpx.Response, limit: int, deadline: float) -> None:
    """Read at most ``limit`` bytes of the answer, undecoded, then hang up. The status already decided
    the outcome, so a body that is cut short, trickles past the deadline or never ends changes nothing."""
    if limit <= 0 or response.is_stream_consumed:  # nothing to read, or an in-memory answer (tests)
        return
    received = 0
    with contextlib.suppress(httpx.HTTPError, OSError):
        for chunk in response.iter_raw(min(_CHUNK_SIZE, limit)):
            received += len(chunk)
            if received >= limit or time.monotonic() >= deadline:
                break


def _result(status: int, target: Target) -> DeliveryResult:
    if 200 <= status < 300:
        return DeliveryResult(status_code=status, error=None, ok=True)
    if 300 <= status < 400:
        error = f"http_status: {url_origin(target.url)} answered HTTP {status} (redirects are not followed)"
    else:
        error = f"http_status: {url_origin(target.url)} answered HTTP {status}"
    return DeliveryResult(status_code=status, error=error, ok=False)


def _message(exc: FetchError, target: Target) -> str:
    return without_path(str(exc), target.url)
