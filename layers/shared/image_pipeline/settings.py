"""Settings parsed once per cold start from the environment; a bad value fails at start, not mid-request."""

from __future__ import annotations

import os
from functools import cache
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from image_pipeline.models_base import Model

DEFAULT_UPSTREAM = "https://api.kie.ai"
DEFAULT_RESULT_HOSTS = "tempfile.aiquickdraw.com,*.aiquickdraw.com"


class ConfigError(RuntimeError):
    pass


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


class AwsResources(Model):
    model_config = ConfigDict(frozen=True)  # hashable: settings key the per-process caches
    tasks_table: str = Field(alias="TASKS_TABLE", min_length=1)
    # Every writer of the table sets the records' TTL, so every function that writes reads it.
    record_ttl_days: int = Field(alias="RECORD_TTL_DAYS", default=30, ge=1)


class UpstreamSettings(Model):
    model_config = ConfigDict(frozen=True)
    base_url: str = Field(alias="KIE_API_BASE_URL", default=DEFAULT_UPSTREAM)
    # Deployed stacks name an SSM SecureString / Secrets Manager secret; the plain value is for local runs.
    api_key_parameter: str = Field(alias="KIE_API_KEY_PARAMETER", default="")
    api_key: str = Field(alias="KIE_API_KEY", default="", repr=False)
    timeout_seconds: float = Field(alias="KIE_API_TIMEOUT_SECONDS", default=10.0, gt=0, le=60)

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")


class ApiSettings(AwsResources, UpstreamSettings):
    images_bucket: str = Field(alias="IMAGES_BUCKET", min_length=1)
    public_base_url: str = Field(alias="PUBLIC_BASE_URL", default="")
    # The callback API's URL up to the callback path (template.yaml: CallbackApi's execute-api URL).
    callback_base_url: str = Field(alias="CALLBACK_BASE_URL", default="")
    callback_path: str = Field(alias="CALLBACK_PATH", default="/callbacks")
    presign_seconds: int = Field(alias="PRESIGNED_URL_SECONDS", default=900, ge=60, le=43200)
    progress_timeout_seconds: float = Field(alias="PROGRESS_TIMEOUT_SECONDS", default=2.0, gt=0)
    idempotency_table: str = Field(alias="IDEMPOTENCY_TABLE", default="")
    # The upstream allows 20 generate calls per 10 s per account; 0 turns the guard off.
    submit_rate_limit: int = Field(alias="SUBMIT_RATE_LIMIT", default=20, ge=0, le=1000)
    submit_rate_window_seconds: float = Field(alias="SUBMIT_RATE_WINDOW_SECONDS", default=10.0, gt=0)
    # When the reconciler first asks the upstream about a task whose callback has not come.
    reconcile_after_seconds: float = Field(alias="RECONCILE_AFTER_SECONDS", default=1800, ge=0)
    # Where a task that could not be written to DynamoDB is handed for recording later (the outbox).
    download_queue_url: str = Field(alias="DOWNLOAD_QUEUE_URL", default="")
    # Exact origins (scheme://host:port) a webhookUrl may use over plain http on loopback (local runs).
    webhook_trusted_origins: str = Field(alias="WEBHOOK_TRUSTED_ORIGINS", default="")

    @property
    def webhook_trusted_origin_list(self) -> tuple[str, ...]:
        return _split(self.webhook_trusted_origins)


class CallbackSettings(AwsResources):
    download_queue_url: str = Field(alias="DOWNLOAD_QUEUE_URL", min_length=1)
    hmac_key_parameter: str = Field(alias="KIE_WEBHOOK_HMAC_KEY_PARAMETER", default="")
    hmac_key: str = Field(alias="KIE_WEBHOOK_HMAC_KEY", default="", repr=False)
    hmac_window_seconds: int = Field(alias="WEBHOOK_TIMESTAMP_WINDOW_SECONDS", default=300, ge=1)
    max_body_bytes: int = Field(alias="CALLBACK_MAX_BODY_BYTES", default=64 * 1024, ge=1024)
    download_check_after_seconds: float = Field(alias="DOWNLOAD_CHECK_AFTER_SECONDS", default=600, ge=0)
    notification_queue_url: str = Field(alias="NOTIFICATION_QUEUE_URL", default="")


class DownloaderSettings(AwsResources, UpstreamSettings):
    images_bucket: str = Field(alias="IMAGES_BUCKET", min_length=1)
    download_queue_url: str = Field(alias="DOWNLOAD_QUEUE_URL", min_length=1)
    allowed_hosts: Annotated[str, Field(alias="DOWNLOAD_ALLOWED_HOSTS")] = DEFAULT_RESULT_HOSTS
    trusted_origins: Annotated[str, Field(alias="DOWNLOAD_TRUSTED_ORIGINS")] = ""
    max_image_bytes: int = Field(alias="DOWNLOAD_MAX_BYTES", default=30 * 1024 * 1024, ge=1024)
    deadline_seconds: float = Field(alias="DOWNLOAD_DEADLINE_SECONDS", default=60.0, gt=0)
    max_pixels: int = Field(alias="DOWNLOAD_MAX_PIXELS", default=50_000_000, ge=1)
    # A passing failure comes back after base, 2x base, 4x base ... seconds (capped at 15 minutes).
    retry_base_seconds: int = Field(alias="DOWNLOAD_RETRY_BASE_SECONDS", default=10, ge=0, le=900)
    notification_queue_url: str = Field(alias="NOTIFICATION_QUEUE_URL", default="")

    @property
    def allowed_host_list(self) -> tuple[str, ...]:
        return _split(self.allowed_hosts)

    @property
    def trusted_origin_list(self) -> tuple[str, ...]:
        return _split(self.trusted_origins)


class ReconcilerSettings(AwsResources, UpstreamSettings):
    download_queue_url: str = Field(alias="DOWNLOAD_QUEUE_URL", min_length=1)
    # Past the upstream's last callback retry (1 + 5 + 15 minutes after a first try) a callback is unlikely.
    reconcile_after_seconds: float = Field(alias="RECONCILE_AFTER_SECONDS", default=1800, ge=0)
    queries_per_second: float = Field(alias="RECONCILE_QUERIES_PER_SECOND", default=5, gt=0, le=50)
    max_tasks: int = Field(alias="RECONCILE_MAX_TASKS", default=500, ge=1)
    # A downloading task is first re-checked this long after its callback, then at doubling intervals.
    download_check_after_seconds: float = Field(alias="DOWNLOAD_CHECK_AFTER_SECONDS", default=600, ge=0)
    # Past this, counted from the first callback, images still missing end the task failed.
    download_give_up_seconds: float = Field(alias="DOWNLOAD_GIVE_UP_SECONDS", default=6 * 3600, gt=0)
    notification_queue_url: str = Field(alias="NOTIFICATION_QUEUE_URL", default="")


def _load[SettingsT: BaseModel](model: type[SettingsT]) -> SettingsT:
    try:
        return model.model_validate(dict(os.environ))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors(include_url=False)
        )
        raise ConfigError(f"invalid {model.__name__} environment: {problems}") from None


@cache
def api_settings() -> ApiSettings:
    return _load(ApiSettings)


@cache
def callback_settings() -> CallbackSettings:
    return _load(CallbackSettings)


@cache
def downloader_settings() -> DownloaderSettings:
    return _load(DownloaderSettings)


@cache
def reconciler_settings() -> ReconcilerSettings:
    return _load(ReconcilerSettings)


def reset_settings_cache() -> None:
    """Tests change the environment between cases."""
    for getter in (
        api_settings,
        callback_settings,
        downloader_settings,
        reconciler_settings,
        credit_monitor_settings,
        notifier_settings,
    ):
        getter.cache_clear()


class CreditMonitorSettings(UpstreamSettings):
    """The hourly read of the upstream credit balance: the upstream only (the threshold is the alarm's)."""


@cache
def credit_monitor_settings() -> CreditMonitorSettings:
    return _load(CreditMonitorSettings)


class NotifierSettings(AwsResources):
    """Telling client apps that their tasks ended: the event bus and their signed webhooks."""

    images_bucket: str = Field(alias="IMAGES_BUCKET", min_length=1)
    notification_queue_url: str = Field(alias="NOTIFICATION_QUEUE_URL", min_length=1)
    event_bus_name: str = Field(alias="EVENT_BUS_NAME", default="")
    presign_seconds: int = Field(alias="PRESIGNED_URL_SECONDS", default=900, ge=60, le=43200)
    # Each client's signing secrets live in SSM SecureString "<prefix>/<client>" ("whsec_new whsec_old"
    # while rotating); the plain value is for local runs, where it signs for every client.
    webhook_secret_parameter_prefix: str = Field(alias="WEBHOOK_SECRET_PARAMETER_PREFIX", default="")
    webhook_secret: str = Field(alias="WEBHOOK_SECRET", default="", repr=False)
    webhook_trusted_origins: str = Field(alias="WEBHOOK_TRUSTED_ORIGINS", default="")
    webhook_timeout_seconds: float = Field(alias="WEBHOOK_TIMEOUT_SECONDS", default=10.0, gt=0, le=30)
    # Attempt n waits base x 2^(n-1) seconds (capped at 12 h); 12 attempts from 60 s is about a day.
    webhook_retry_base_seconds: int = Field(alias="WEBHOOK_RETRY_BASE_SECONDS", default=60, ge=0, le=3600)
    webhook_max_attempts: int = Field(alias="WEBHOOK_MAX_ATTEMPTS", default=12, ge=1, le=50)

    @property
    def webhook_trusted_origin_list(self) -> tuple[str, ...]:
        return _split(self.webhook_trusted_origins)


@cache
def notifier_settings() -> NotifierSettings:
    return _load(NotifierSettings)


# Each function's settings model, by the POWERTOOLS_SERVICE_NAME its template entry declares:
# tests/sam/test_settings_match_template.py holds template.yaml and these models to each other.
SETTINGS_BY_SERVICE: dict[str, type[BaseModel]] = {
    "api": ApiSettings,
    "callback": CallbackSettings,
    "downloader": DownloaderSettings,
    "reconciler": ReconcilerSettings,
    "credit-monitor": CreditMonitorSettings,
    "notifier": NotifierSettings,
}


def setting_variables() -> frozenset[str]:
    """Every environment variable some function's settings read."""
    return frozenset(
        str(field.alias)
        for model in SETTINGS_BY_SERVICE.values()
        for field in model.model_fields.values()
        if field.alias
    )
