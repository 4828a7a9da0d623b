"""boto3 clients built once per process, pointed at AWS_ENDPOINT_URL when it is set (moto, locally)."""

from __future__ import annotations

import os
from functools import cache
from typing import Any, Literal

import boto3
from botocore.config import Config

# Standard retry mode backs off on throttling and 5xx; the adaptive limiter is not worth its state here.
_CONFIG = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=3, read_timeout=10)


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=_CONFIG)  # type: ignore[call-overload]


def _endpoint_configured(service_env_name: str) -> bool:
    """Whether boto3 will use an endpoint from the environment (``AWS_ENDPOINT_URL[_S3]``) for the service."""
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").strip().lower() == "true":
        return False
    return bool(os.environ.get(f"AWS_ENDPOINT_URL_{service_env_name}") or os.environ.get("AWS_ENDPOINT_URL"))


@cache
def s3_presigner() -> Any:
    """The S3 client that signs download links: SigV4, on the bucket's regional virtual host.

    Left to itself botocore presigns with SigV2 (refused by regions opened since 2014) on the legacy
    global host (``<bucket>.s3.amazonaws.com``, redirected or refused outside us-east-1). With an
    endpoint from the environment (moto, locally) the links name that endpoint, path style: a bucket
    in front of its host name would not resolve.
    """
    addressing: Literal["auto", "virtual"] = "auto" if _endpoint_configured("S3") else "virtual"
    config = _CONFIG.merge(
        Config(
            signature_version="s3v4",
            s3={"addressing_style": addressing, "us_east_1_regional_endpoint": "regional"},
        )
    )
    return boto3.client("s3", config=config)


def reset_clients() -> None:
    """Tests switch moto accounts and regions between cases."""
    client.cache_clear()
    s3_presigner.cache_clear()
