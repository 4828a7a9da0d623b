"""What each command runs with: the transport and clock given to main, and the API client its options name."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from imagegen.api import (
    DEFAULT_API_URL,
    ImageApiClient,
    RetryNotice,
    normalize_base_url,
)
from imagegen.cli.output import UsageError, short_url

ENV_API_URL = "IMAGEGEN_API_URL"
ENV_API_KEY = "IMAGEGEN_API_KEY"


@dataclass
class Runtime:
    """What :func:`main` can be handed by tests: an httpx transport and the clock."""

    transport: httpx.BaseTransport | None
    sleep: Callable[[float], None]
    monotonic: Callable[[], float]


def open_client(args: argparse.Namespace, runtime: Runtime, notify: Callable[[str], None]) -> ImageApiClient:
    api_url = getattr(args, "api_url", None) or os.environ.get(ENV_API_URL) or DEFAULT_API_URL
    api_key = getattr(args, "api_key", None) or os.environ.get(ENV_API_KEY) or None
    try:
        base_url = normalize_base_url(api_url)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    args.resolved_api_url, args.resolved_api_key = base_url, api_key

    def on_retry(notice: RetryNotice) -> None:
        notify(
            f"warning: {notice.reason} on {notice.method} {short_url(notice.url)}; retrying in "
            f"{notice.delay:g}s (attempt {notice.attempt + 1} of {notice.max_attempts})"
        )

    return ImageApiClient(
        base_url, api_key, transport=runtime.transport, sleep=runtime.sleep, on_retry=on_retry
    )
