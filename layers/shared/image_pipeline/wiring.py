"""Builds the real adapters from settings, once per process: the handlers' only way to the outside.

The import rule: handlers -> wiring -> adapters; handlers -> logic -> models; adapters -> models.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from image_pipeline.adapters.download_queue import DownloadQueue
from image_pipeline.adapters.idempotency import run_once
from image_pipeline.adapters.image_store import ImageStore
from image_pipeline.adapters.notifications import EventBus, NotificationQueue
from image_pipeline.adapters.secrets import resolve_secret
from image_pipeline.adapters.submit_guard import SubmitGuard
from image_pipeline.adapters.tasks_table import TasksTable
from image_pipeline.adapters.upstream import UpstreamClient
from image_pipeline.safe_fetch import FetchedImage, FetchPolicy, fetch_image
from image_pipeline.settings import CallbackSettings, DownloaderSettings, NotifierSettings, UpstreamSettings
from image_pipeline.webhooks.deliver import DeliveryResult, deliver
from image_pipeline.webhooks.signing import parse_secrets, sign

__all__ = [
    "download_queue",
    "event_bus",
    "fetch_policy",
    "hmac_key",
    "image_store",
    "notices",
    "notification_queue",
    "run_once",
    "safe_fetch",
    "submit_guard",
    "tasks_table",
    "upstream_client",
    "webhook_secrets",
    "webhook_sender",
    "webhook_signer",
]


@cache
def tasks_table(table_name: str, ttl_days: int = 30) -> TasksTable:
    return TasksTable(table_name, ttl_days=ttl_days)


@cache
def download_queue(queue_url: str) -> DownloadQueue:
    return DownloadQueue(queue_url)


@cache
def image_store(bucket: str) -> ImageStore:
    return ImageStore(bucket)


@cache
def submit_guard(table_name: str, limit: int, window_seconds: float) -> SubmitGuard:
    return SubmitGuard(table_name, limit=limit, window_seconds=window_seconds)


@cache
def _upstream_for_key(base_url: str, api_key: str, timeout_seconds: float) -> UpstreamClient:
    return UpstreamClient(base_url, api_key, timeout_seconds=timeout_seconds)


def upstream_client(settings: UpstreamSettings, *, timeout_seconds: float | None = None) -> UpstreamClient:
    # The key is re-read through the parameter cache, so a rotated key is picked up within minutes.
    api_key = resolve_secret(settings.api_key, settings.api_key_parameter)
    return _upstream_for_key(settings.base_url, api_key, timeout_seconds or settings.timeout_seconds)


def hmac_key(settings: CallbackSettings) -> str:
    """The upstream's webhook signing key ("" when signing is off), re-read through the parameter cache."""
    return resolve_secret(settings.hmac_key, settings.hmac_key_parameter)


@cache
def fetch_policy(settings: DownloaderSettings) -> FetchPolicy:
    return FetchPolicy(
        allowed_hosts=settings.allowed_host_list,
        trusted_origins=settings.trusted_origin_list,
        max_bytes=settings.max_image_bytes,
        deadline_seconds=settings.deadline_seconds,
        max_pixels=settings.max_pixels,
    )


def safe_fetch(url: str, policy: FetchPolicy) -> FetchedImage:
    """The downloader's only way to fetch a URL (allow-list, address checks, caps)."""
    return fetch_image(url, policy)


@cache
def notification_queue(queue_url: str) -> NotificationQueue:
    return NotificationQueue(queue_url)


def notices(queue_url: str) -> NotificationQueue | None:
    """Where ended tasks are announced; None when this deployment has no notifier."""
    return notification_queue(queue_url) if queue_url else None


@cache
def event_bus(bus_name: str) -> EventBus:
    return EventBus(bus_name)


def webhook_secrets(settings: NotifierSettings, client_id: str | None) -> tuple[str, ...]:
    """The client's signing secrets (two while rotating); () when none is configured for it."""
    if settings.webhook_secret:
        return parse_secrets(settings.webhook_secret)
    if not settings.webhook_secret_parameter_prefix or not client_id:
        return ()
    name = f"{settings.webhook_secret_parameter_prefix.rstrip('/')}/{client_id}"
    try:
        return parse_secrets(resolve_secret("", name))
    except Exception:  # no parameter for this client yet, or not readable: it cannot be signed
        return ()


def webhook_sender(settings: NotifierSettings) -> Callable[[str, bytes, dict[str, str]], DeliveryResult]:
    def send(url: str, body: bytes, headers: dict[str, str]) -> DeliveryResult:
        return deliver(
            url,
            body,
            headers,
            trusted_origins=settings.webhook_trusted_origin_list,
            timeout_seconds=settings.webhook_timeout_seconds,
        )

    return send


webhook_signer = sign


def reset() -> None:
    from image_pipeline.adapters import idempotency

    idempotency.persistence.cache_clear()
    for factory in (
        tasks_table,
        download_queue,
        image_store,
        submit_guard,
        _upstream_for_key,
        fetch_policy,
        notification_queue,
        event_bus,
    ):
        factory.cache_clear()
