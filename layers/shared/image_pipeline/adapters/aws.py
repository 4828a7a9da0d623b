"""boto3 clients built once per process, pointed at AWS_ENDPOINT_URL when it is set (moto, locally), and
the base of the adapters that use them (AwsAdapter: botocore's errors do not leave an adapter)."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from image_pipeline.errors import AwsFault

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


# How many adapter methods deep this thread is: only the outermost translates, so an adapter method that
# calls another (its own or a base class's) still sees botocore's errors, conditional failures and all.
_adapter_depth: ContextVar[int] = ContextVar("aws_adapter_depth", default=0)


def aws_fault(error: ClientError | BotoCoreError) -> AwsFault:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return AwsFault(str(details.get("Code") or "ClientError"), str(details.get("Message") or error))
    return AwsFault(type(error).__name__, str(error))


@contextmanager
def _as_ours() -> Iterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError) as error:
        raise aws_fault(error) from error


def _translating(method: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isgeneratorfunction(method):  # its calls run as it is iterated, outside this frame

        @functools.wraps(method)
        def generator(*args: Any, **kwargs: Any) -> Any:
            with _as_ours():
                return (yield from method(*args, **kwargs))

        generator.__aws_faults_translated__ = True  # type: ignore[attr-defined]
        return generator

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        depth = _adapter_depth.get()
        token = _adapter_depth.set(depth + 1)
        try:
            if depth:
                return method(*args, **kwargs)
            with _as_ours():
                return method(*args, **kwargs)
        finally:
            _adapter_depth.reset(token)

    call.__aws_faults_translated__ = True  # type: ignore[attr-defined]
    return call


class AwsAdapter:
    """Base of every adapter that calls AWS: its public methods (and its constructor, which makes the
    client) raise AwsFault (image_pipeline.errors) where botocore raised ClientError or BotoCoreError,
    so no handler imports botocore (the import contracts in pyproject.toml hold them to it).

    Inside, an adapter catches botocore's errors as before (a failed condition is an answer, not a
    fault): only what leaves its outermost public method is translated. Subclasses get this by being
    subclasses, their own methods and their subclasses' alike.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, value in list(vars(cls).items()):
            public = not name.startswith("_") or name == "__init__"
            if public and inspect.isfunction(value) and not hasattr(value, "__aws_faults_translated__"):
                setattr(cls, name, _translating(value))
