"""boto3 clients built once per process, pointed at AWS_ENDPOINT_URL when it is set (moto, locally)."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Standard retry mode backs off on throttling and 5xx; the adaptive limiter is not worth its state here.
_CONFIG = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=3, read_timeout=10)


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=_CONFIG)  # type: ignore[call-overload]


def reset_clients() -> None:
    """Tests switch moto accounts and regions between cases."""
    client.cache_clear()
