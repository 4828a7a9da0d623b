"""Builds the real adapters from settings, once per process: the handlers' only way to the outside.

The import rule: handlers -> wiring -> adapters; handlers -> logic -> models; adapters -> models
(import-linter's contracts in pyproject.toml hold it).

Each factory imports its adapter itself, so a function loads only the adapters it uses: the callback
never imports httpx, safe_fetch, Pillow or the webhook sender, the API never imports the fetcher
(tests/unit/test_wiring_imports.py holds each handler to its list).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from image_pipeline.adapters.secrets import SecretNotFound, resolve_secret

if TYPE_CHECKING:
    from image_pipeline.adapters.download_queue import DownloadQueue
    from image_pipeline.adapters.idempotency import IdempotencyClaims
    from image_pipeline.adapters.image_store import ImageStore
    from image_pipeline.adapters.input_store import InputStore
    from image_pipeline.adapters.notifications import EventBus, NotificationQueue
    from image_pipeline.adapters.stack_keys import StackKeys
    from image_pipeline.adapters.submit_guard import GenerateAdmission
    from image_pipeline.adapters.tasks_table import TasksTable
    from image_pipeline.adapters.upstream import UpstreamClient
    from image_pipeline.safe_fetch import FetchedImage, FetchPolicy
    from image_pipeline.settings import (
        ApiSettings,
        CallbackSettings,
        DownloaderSettings,
        NotifierSettings,
        UpstreamSettings,
    )
    from image_pipeline.upstream_replies import TaskDetails
    from image_pipeline.upstream_requests import FluxGenerateRequest, GenerateRequest
    from image_pipeline.webhooks.deliver import DeliveryResult

__all__ = [
    "check_webhook_url",
    "cursor_key",
    "download_queue",
    "event_bus",
    "fetch_policy",
    "generate_admission",
    "hmac_key",
    "idempotency_claims",
    "image_checker",
    "image_store",
    "input_store",
    "notification_queue",
    "notify_queue",
    "safe_fetch",
    "stack_keys",
    "tasks_table",
    "upstream_client",
    "webhook_secrets",
    "webhook_sender",
    "webhook_signer",
]


@cache
def tasks_table(table_name: str, ttl_days: int = 30) -> TasksTable:
    from image_pipeline.adapters.tasks_table import TasksTable

    return TasksTable(table_name, ttl_days=ttl_days)


@cache
def input_store(table_name: str, bucket: str, ttl_days: int = 30) -> InputStore:
    from image_pipeline.adapters.input_store import InputStore

    return InputStore(table_name, bucket, ttl_days=ttl_days)


def image_checker(max_pixels: int) -> Callable[[bytes, str], str | None]:
    """Why bytes are not a usable input image of the given type (magic bytes, decodable, at most
    max_pixels, the type they were uploaded as), or None."""

    def check(body: bytes, content_type: str) -> str | None:
        from image_pipeline.image_check import ImageCheckError, verify_image

        try:
            found = verify_image(body, max_pixels)[0]
        except ImageCheckError as problem:
            return str(problem)
        if found != content_type:
            return f"its bytes are {found}, not the {content_type} it was uploaded as"
        return None

    return check


@cache
def download_queue(queue_url: str) -> DownloadQueue:
    from image_pipeline.adapters.download_queue import DownloadQueue

    return DownloadQueue(queue_url)


@cache
def image_store(bucket: str) -> ImageStore:
    from image_pipeline.adapters.image_store import ImageStore

    return ImageStore(bucket)


@cache
def generate_admission(
    table_name: str, limit: int, window_seconds: float, client_share_percent: int, daily_images: int
) -> GenerateAdmission | None:
    """The guards on generate calls (0 turns a guard off), or None when both are off."""
    from image_pipeline.adapters.submit_guard import DailyImageQuota, GenerateAdmission, SubmitGuard

    guard = (
        SubmitGuard(
            table_name,
            limit=limit,
            window_seconds=window_seconds,
            client_share_percent=client_share_percent,
        )
        if limit
        else None
    )
    quota = DailyImageQuota(table_name, limit=daily_images) if daily_images else None
    return GenerateAdmission(guard, quota) if guard or quota else None


@cache
def idempotency_claims(table_name: str) -> IdempotencyClaims:
    from image_pipeline.adapters.idempotency import IdempotencyClaims

    return IdempotencyClaims(table_name)


@cache
def _upstream_for_key(base_url: str, api_key: str, timeout_seconds: float) -> UpstreamClient:
    from image_pipeline.adapters.upstream import UpstreamClient

    return UpstreamClient(base_url, api_key, timeout_seconds=timeout_seconds)


class OnDemandUpstream:
    """The upstream client, made (and its key read) by the first call that asks the upstream something.

    A sweep with nothing due and a download whose link is fresh never ask it, and making the client
    (httpx, a TLS context that loads the CA bundle, the key from SSM) would cost their cold start more
    CPU than a third of `import boto3`. The key is re-read through the parameter cache at every call,
    so a rotated key is picked up within minutes.
    """

    def __init__(self, settings: UpstreamSettings, timeout_seconds: float) -> None:
        self._settings = settings
        self._timeout_seconds = timeout_seconds

    def client(self) -> UpstreamClient:
        api_key = resolve_secret(self._settings.api_key, self._settings.api_key_parameter)
        return _upstream_for_key(self._settings.base_url, api_key, self._timeout_seconds)

    def generate(self, request: GenerateRequest) -> str:
        return self.client().generate(request)

    def generate_flux(self, request: FluxGenerateRequest) -> str:
        return self.client().generate_flux(request)

    def create_market_task(self, model: str, given: dict[str, Any], callback_url: str) -> str:
        return self.client().create_market_task(model, given, callback_url)

    # model None: the client's default (gpt-4o-image), not repeated here.
    def task_details(self, task_id: str, model: str | None = None) -> TaskDetails:
        if model is None:
            return self.client().task_details(task_id)
        return self.client().task_details(task_id, model)

    def download_url(self, task_id: str, url: str, model: str | None = None) -> str:
        if model is None:
            return self.client().download_url(task_id, url)
        return self.client().download_url(task_id, url, model)

    def credit(self) -> float:
        return self.client().credit()


def upstream_client(settings: UpstreamSettings, *, timeout_seconds: float | None = None) -> OnDemandUpstream:
    return OnDemandUpstream(settings, timeout_seconds or settings.timeout_seconds)


def hmac_key(settings: CallbackSettings) -> str:
    """The upstream's webhook signing key ("" when signing is off), re-read through the parameter cache."""
    return resolve_secret(settings.hmac_key, settings.hmac_key_parameter)


MIN_CURSOR_KEY_CHARS = 32


@cache
def stack_keys(table_name: str) -> StackKeys:
    from image_pipeline.adapters.stack_keys import StackKeys

    return StackKeys(table_name)


def cursor_key(settings: ApiSettings) -> bytes:
    """The key that signs list cursors: the stack's own (made by the first list that needs it, kept in
    the tasks table, re-read within minutes so a rotated one is picked up), or CURSOR_KEY when given."""
    if not settings.cursor_key:
        return stack_keys(settings.tasks_table).key("list-cursors").encode()
    from image_pipeline.settings import ConfigError

    if len(settings.cursor_key) < MIN_CURSOR_KEY_CHARS:  # too short to keep a forger guessing
        raise ConfigError(
            f"the list cursors' signing key CURSOR_KEY must be at least {MIN_CURSOR_KEY_CHARS} characters, "
            f"got {len(settings.cursor_key)}"
        )
    return settings.cursor_key.encode()


@cache
def fetch_policy(settings: DownloaderSettings) -> FetchPolicy:
    from image_pipeline.safe_fetch import FetchPolicy

    return FetchPolicy(
        allowed_hosts=settings.allowed_host_list,
        trusted_origins=settings.trusted_origin_list,
        max_bytes=settings.max_image_bytes,
        deadline_seconds=settings.deadline_seconds,
        max_pixels=settings.max_pixels,
    )


def safe_fetch(url: str, policy: FetchPolicy) -> FetchedImage:
    """The downloader's only way to fetch a URL (allow-list, address checks, caps)."""
    from image_pipeline.safe_fetch import fetch_image

    return fetch_image(url, policy)


@cache
def notification_queue(queue_url: str) -> NotificationQueue:
    from image_pipeline.adapters.notifications import NotificationQueue

    return NotificationQueue(queue_url)


def notify_queue(queue_url: str) -> NotificationQueue | None:
    """Where ended tasks are announced; None when this deployment has no notifier."""
    return notification_queue(queue_url) if queue_url else None


@cache
def event_bus(bus_name: str) -> EventBus:
    from image_pipeline.adapters.notifications import EventBus

    return EventBus(bus_name)


def webhook_secrets(settings: NotifierSettings, client_id: str | None) -> tuple[str, ...]:
    """The client's signing secrets (two while rotating); () when none is configured for it."""
    from image_pipeline.webhooks.signing import parse_secrets

    if settings.webhook_secret:
        return parse_secrets(settings.webhook_secret)
    if not settings.webhook_secret_parameter_prefix or not client_id:
        return ()
    name = f"{settings.webhook_secret_parameter_prefix.rstrip('/')}/{client_id}"
    try:
        return parse_secrets(resolve_secret("", name))
    except (SecretNotFound, ValueError):  # no parameter for this client yet, or not whsec_ values
        return ()  # a passing SSM fault propagates: the notify message is retried, not given up


def webhook_sender(settings: NotifierSettings) -> Callable[[str, bytes, dict[str, str]], DeliveryResult]:
    from image_pipeline.webhooks.deliver import deliver

    def send(url: str, body: bytes, headers: dict[str, str]) -> DeliveryResult:
        return deliver(
            url,
            body,
            headers,
            trusted_origins=settings.webhook_trusted_origin_list,
            timeout_seconds=settings.webhook_timeout_seconds,
        )

    return send


def webhook_signer(secrets: Sequence[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers for `body` (image_pipeline.webhooks.signing.sign)."""
    from image_pipeline.webhooks.signing import sign

    return sign(secrets, message_id, timestamp, body)


def check_webhook_url(url: str, trusted_origins: tuple[str, ...]) -> str:
    """A submitted webhookUrl, checked without DNS (WebhookUrlError when it must not be called)."""
    from image_pipeline.webhooks.urls import check_webhook_url as check

    return check(url, trusted_origins)


def reset() -> None:
    for factory in (
        tasks_table,
        input_store,
        stack_keys,
        idempotency_claims,
        download_queue,
        image_store,
        generate_admission,
        _upstream_for_key,
        fetch_policy,
        notification_queue,
        event_bus,
    ):
        factory.cache_clear()
