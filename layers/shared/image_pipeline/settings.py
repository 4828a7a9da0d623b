"""Settings parsed once per cold start from the environment; a bad value fails at start, not mid-request
(each handler calls `parse_at_cold_start` as its module loads).

Plain frozen classes, not pydantic models: importing pydantic costs a cold start ~60 ms, and six
flat classes of str, int and float need only the few checks below. Each field names its variable and
bounds with `setting(...)`; `from_environ` reads them all and reports every problem at once.

Nor dataclasses: @dataclass writes and exec()s an __init__, __repr__, __eq__, __hash__ and __setattr__
for each class. Nine frozen dataclasses of twelve fields took 7.6 ms (median of 7 runs, 7.3-8.1)
on a 2-core x86 build machine; running this whole module takes about 1 ms (cProfile, compiled).
`EnvSettings` implements them once, for all, from the fields it collects.
"""

# No `from __future__ import annotations`: from_environ reads each field's type (str, int, float).

import operator
import os
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, ClassVar, Self, dataclass_transform

DEFAULT_UPSTREAM = "https://api.kie.ai"
DEFAULT_RESULT_HOSTS = "tempfile.aiquickdraw.com,*.aiquickdraw.com"


class ConfigError(RuntimeError):
    pass


class _Required:
    """The default of a setting that has none."""

    def __repr__(self) -> str:
        return "<required>"


_REQUIRED: Any = _Required()


class _Setting:
    """A field of a settings class: its variable, default, bounds; its name and type once collected."""

    name: str
    type: Any

    def __init__(
        self,
        variable: str,
        default: Any,
        secret: bool,
        bounds: Mapping[str, float],
        check: Callable[[Any, Mapping[str, str]], str | None] | None = None,
    ) -> None:
        self.variable = variable
        self.default = default
        self.secret = secret  # left out of repr()
        self.bounds = bounds
        self.check = check


def setting(
    variable: str,
    *,
    default: Any = _REQUIRED,
    secret: bool = False,
    check: Callable[[Any, Mapping[str, str]], str | None] | None = None,
    **bounds: float,
) -> Any:
    """A field read from `variable`, required unless given a default; bounds: min_length, ge, gt, le.
    `check(value, environ)`: what else is wrong with a value read from the environment, or None."""
    if unknown := bounds.keys() - {"min_length", "ge", "gt", "le"}:
        raise TypeError(f"{variable}: unknown bounds {sorted(unknown)}")
    # Returns Any, as dataclasses.field() does, so that `x: int = setting(...)` type-checks.
    return _Setting(variable, default, secret, bounds, check)


# The white space a number may come inside (a quoting leftover): ASCII's only. str.strip() and int() take
# many more characters for white space: non-ASCII controls (NEL), no-break and other Unicode spaces,
# ASCII's separators \x1c-\x1f.
_ASCII_SPACE = " \t\n\r\v\f"


def _bare_number(text: str) -> str:
    """The text of a number without its surrounding ASCII white space: printable ASCII only inside, and
    "_" between digits only in a value with nothing around it (" 1_0 " is refused, as pydantic refused
    it for floats; "1_000" and " 1000 " are fine)."""
    number = text.strip(_ASCII_SPACE)
    if not all("!" <= char <= "~" for char in number) or ("_" in number and number != text):
        raise ValueError(text)
    return number


def _parse_int(text: str) -> int:
    # As pydantic did: surrounding white space, a sign, "_" between digits and a ".0" tail are fine;
    # "1e3", "0x10", "30.5" and non-ASCII digits (which int() alone would take) are not.
    number = _bare_number(text)
    whole, dot, fraction = number.partition(".")
    if dot and fraction and not fraction.strip("0"):
        number = whole
    return int(number)


def _parse_float(text: str) -> float:
    # As pydantic did: "10", "2.5", "1e3", "inf"; "_" only between characters, never doubled; ASCII only.
    number = _bare_number(text)
    if number.startswith("_") or number.endswith("_") or "__" in number:
        raise ValueError(text)
    return float(number.replace("_", ""))


# Each field type's parser, and what a value that does not parse should have been.
_PARSERS: dict[Any, tuple[Callable[[str], Any], str]] = {
    str: (str, "a string"),
    int: (_parse_int, "an integer"),
    float: (_parse_float, "a number"),
}
_COMPARISONS = (("ge", ">=", operator.ge), ("gt", ">", operator.gt), ("le", "<=", operator.le))


def _problem(value: Any, bounds: Mapping[str, Any]) -> str | None:
    """What is wrong with a parsed value, in plain words, or None."""
    if "min_length" in bounds and len(value) < bounds["min_length"]:
        return f"must be at least {bounds['min_length']} character(s) long, got {value!r}"
    # `not value >= bound` rather than `value < bound`: NaN fails every bound, as it did under pydantic.
    for name, symbol, holds in _COMPARISONS:
        if name in bounds and not holds(value, bounds[name]):
            return f"must be {symbol} {bounds[name]}, got {value}"
    return None


# For type checkers the subclasses stay the frozen keyword-only dataclasses they were: calls are
# checked against the fields, assigning to one is an error. (At run time this only marks the class.)
@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(setting,))
class EnvSettings:
    """The base of every settings class: its fields; how one is made, compared and read from an environment.

    Frozen (hence hashable: settings key the per-process caches in wiring) and keyword-only, as the
    dataclasses were, with their field order, defaults, equality, hash and repr (less the secrets). Not
    slotted: ApiSettings and others inherit from two settings classes, which slotted classes cannot share.
    """

    # The class's fields in dataclass order: inherited ones first, then its own (set by __init_subclass__).
    _settings: ClassVar[tuple[_Setting, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # As @dataclass collects them: every base's fields, from the farthest base in the MRO to the
        # nearest, then the class's own annotations; a field declared again keeps its first position.
        collected: dict[str, _Setting] = {}
        for base in reversed(cls.__mro__[1:]):
            collected.update((item.name, item) for item in getattr(base, "_settings", ()))
        for name, kind in cls.__annotations__.items():  # the class's own, {} if it declares none
            item = cls.__dict__.get(name)
            if not isinstance(item, _Setting):
                raise TypeError(f"{cls.__name__}.{name}: declare it with setting(...)")
            item.name, item.type = name, kind
            collected[name] = item
            # As @dataclass leaves it: the class attribute is the default, or absent if there is none.
            if item.default is _REQUIRED:
                delattr(cls, name)
            else:
                setattr(cls, name, item.default)
        cls._settings = tuple(collected.values())

    def __init__(self, **values: Any) -> None:
        name = type(self).__name__
        if unknown := sorted(values.keys() - {item.name for item in self._settings}):
            raise TypeError(f"{name}() got unexpected keyword argument(s): {', '.join(unknown)}")
        if missing := [
            f"{item.name} ({item.variable})"
            for item in self._settings
            if item.default is _REQUIRED and item.name not in values
        ]:
            raise TypeError(f"{name}() missing required argument(s): {', '.join(missing)}")
        # Into the instance's __dict__ directly: __setattr__ refuses every assignment.
        self.__dict__.update((item.name, values.get(item.name, item.default)) for item in self._settings)
        self.__post_init__()

    def __post_init__(self) -> None:
        """A subclass's last word on its values (set with object.__setattr__), as in a dataclass."""

    def __setattr__(self, name: str, value: Any) -> None:
        # Imported here: only a bug gets here, and the credit monitor's start imports no dataclasses.
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(self.__dict__[item.name] for item in self._settings)

    def __eq__(self, other: object) -> bool:
        # As a dataclass's: only an instance of the very same class can be equal.
        if isinstance(other, EnvSettings) and other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = (f"{item.name}={self.__dict__[item.name]!r}" for item in self._settings if not item.secret)
        return f"{type(self).__qualname__}({', '.join(shown)})"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Self:
        """Settings from `environ` (os.environ, or a dict in tests); ConfigError names every bad variable."""
        values: dict[str, Any] = {}
        problems: list[str] = []
        for item in cls._settings:
            variable = item.variable
            raw = environ.get(variable)
            if raw is None:
                if item.default is _REQUIRED:
                    problems.append(f"{variable}: is required")
                continue  # absent: the field's default
            parse, kind = _PARSERS[item.type]
            try:
                value = parse(raw)
            except ValueError:
                problems.append(f"{variable}: must be {kind}, got {raw!r}")
                continue
            if problem := _problem(value, item.bounds) or (item.check and item.check(value, environ)):
                problems.append(f"{variable}: {problem}")
            values[item.name] = value
        if problems:
            raise ConfigError(f"invalid {cls.__name__} environment: {'; '.join(problems)}")
        return cls(**values)

    @classmethod
    def variables(cls, *, required_only: bool = False) -> frozenset[str]:
        """The environment variables these settings read (only those without a default if required_only)."""
        return frozenset(
            item.variable for item in cls._settings if not required_only or item.default is _REQUIRED
        )


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


# A name sam local's Lambda containers reach another container of its network by (net-upstream).
_CONTAINER_NAME = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def _loopback_origins(value: str, environ: Mapping[str, str]) -> str | None:
    """What is wrong with a list of trusted origins: each must be exactly http(s)://host[:port] of a
    local stand-in on loopback (127.0.0.0/8, ::1, localhost). A trusted origin skips every address check
    (plain http, any port, whatever its name resolves to), so an origin elsewhere - the instance metadata
    address, the VPC - must never be one. Under sam local (SAM CLI sets AWS_SAM_LOCAL=true in the
    containers it runs) a container of its network may be named too, never an address."""
    origins = _split(value)
    if not origins:  # deployed stacks: nothing to parse, nothing imported
        return None
    import ipaddress
    from urllib.parse import urlsplit

    for origin in origins:
        try:
            parts = urlsplit(origin)
            parts.port  # noqa: B018 - raises for a port that is not one
        except ValueError:
            return f"{origin!r} is not exactly http(s)://host[:port]"
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.username is not None
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
        ):
            return f"{origin!r} is not exactly http(s)://host[:port]"
        host = parts.hostname  # lower case, without [ ]
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None:
            mapped = getattr(address, "ipv4_mapped", None)
            loopback = (mapped or address).is_loopback
        else:
            loopback = host == "localhost" or (
                environ.get("AWS_SAM_LOCAL") == "true" and host[0].isalpha() and set(host) <= _CONTAINER_NAME
            )
        if not loopback:
            return (
                f"{origin!r} is not on loopback: a trusted origin skips every address check, so only a "
                "local stand-in on 127.0.0.1, [::1] or localhost may be trusted"
            )
    return None


class AwsResources(EnvSettings):
    """The tasks table every function writes, and how long its records live."""

    tasks_table: str = setting("TASKS_TABLE", min_length=1)
    # Every writer of the table sets the records' TTL, so every function that writes reads it.
    record_ttl_days: int = setting("RECORD_TTL_DAYS", default=30, ge=1)


class UpstreamSettings(EnvSettings):
    """Where the 4o Image / Flux Kontext API is and how we authenticate to it."""

    base_url: str = setting("KIE_API_BASE_URL", default=DEFAULT_UPSTREAM)
    # Deployed stacks name an SSM SecureString / Secrets Manager secret; the plain value is for local runs.
    api_key_parameter: str = setting("KIE_API_KEY_PARAMETER", default="")
    api_key: str = setting("KIE_API_KEY", default="", secret=True)
    timeout_seconds: float = setting("KIE_API_TIMEOUT_SECONDS", default=10.0, gt=0, le=60)

    def __post_init__(self) -> None:
        # The client joins paths onto base_url with "/"; frozen, hence object.__setattr__.
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))


class ApiSettings(AwsResources, UpstreamSettings):
    """The client-facing API: submit, list, read and delete tasks."""

    images_bucket: str = setting("IMAGES_BUCKET", min_length=1)
    public_base_url: str = setting("PUBLIC_BASE_URL", default="")
    # The callback API's URL up to the callback path (template.yaml: CallbackApi's execute-api URL).
    callback_base_url: str = setting("CALLBACK_BASE_URL", default="")
    callback_path: str = setting("CALLBACK_PATH", default="/callbacks")
    presign_seconds: int = setting("PRESIGNED_URL_SECONDS", default=900, ge=60, le=43200)
    progress_timeout_seconds: float = setting("PROGRESS_TIMEOUT_SECONDS", default=2.0, gt=0)
    idempotency_table: str = setting("IDEMPOTENCY_TABLE", default="")
    # The upstream allows 20 generate calls per 10 s per account; 0 turns the guard off.
    submit_rate_limit: int = setting("SUBMIT_RATE_LIMIT", default=20, ge=0, le=1000)
    submit_rate_window_seconds: float = setting("SUBMIT_RATE_WINDOW_SECONDS", default=10.0, gt=0)
    # The most of that window one client may take, so a burst leaves its neighbours room.
    client_generate_share_percent: int = setting("CLIENT_GENERATE_SHARE_PERCENT", default=50, ge=1, le=100)
    # Images one client may ask for per UTC day (a task counts the images it asks for); 0: no limit.
    client_daily_images: int = setting("CLIENT_DAILY_IMAGES", default=2000, ge=0)
    # When the reconciler first asks the upstream about a task whose callback has not come.
    reconcile_after_seconds: float = setting("RECONCILE_AFTER_SECONDS", default=1800.0, ge=0)
    # How long a task whose generate call got no answer waits for its callback before it ends failed.
    submit_unconfirmed_after_seconds: float = setting(
        "SUBMIT_UNCONFIRMED_AFTER_SECONDS", default=7200.0, gt=0
    )
    # Where an upstream id that could not be written to DynamoDB is handed for writing later (the outbox).
    download_queue_url: str = setting("DOWNLOAD_QUEUE_URL", default="")
    # POST /uploads: the largest upload its presigned PUT allows, and how long that PUT works.
    upload_max_bytes: int = setting("UPLOAD_MAX_BYTES", default=30 * 1024 * 1024, ge=1, le=5 * 1024**3)
    upload_link_seconds: int = setting("UPLOAD_LINK_SECONDS", default=900, ge=60, le=43200)
    # Days an upload is known (its record's TTL): the bucket's lifecycle rule (UploadRetentionDays).
    upload_retention_days: int = setting("UPLOAD_RETENTION_DAYS", default=1, ge=1, le=3650)
    # How long the presigned GET of an input image (upload:, task:) handed to the upstream works.
    input_link_seconds: int = setting("INPUT_LINK_SECONDS", default=3600, ge=60, le=43200)
    # An upload's pixel cap when it is first used (a decompression bomb is refused before decoding).
    input_max_pixels: int = setting("INPUT_MAX_PIXELS", default=50_000_000, ge=1)
    # Exact origins (scheme://host:port) a webhookUrl may use over plain http on loopback (local runs).
    webhook_trusted_origins: str = setting("WEBHOOK_TRUSTED_ORIGINS", default="", check=_loopback_origins)
    # The key that signs list cursors, when one is given; else the stack makes its own and keeps it in
    # its tasks table (wiring.cursor_key). Read when a list first needs it, never at cold start.
    cursor_key: str = setting("CURSOR_KEY", default="", secret=True)

    @property
    def webhook_trusted_origin_list(self) -> tuple[str, ...]:
        return _split(self.webhook_trusted_origins)


class CallbackSettings(AwsResources):
    """The callback receiver: authenticate, deduplicate, enqueue the downloads."""

    download_queue_url: str = setting("DOWNLOAD_QUEUE_URL", min_length=1)
    hmac_key_parameter: str = setting("KIE_WEBHOOK_HMAC_KEY_PARAMETER", default="")
    hmac_key: str = setting("KIE_WEBHOOK_HMAC_KEY", default="", secret=True)
    hmac_window_seconds: int = setting("WEBHOOK_TIMESTAMP_WINDOW_SECONDS", default=300, ge=1)
    max_body_bytes: int = setting("CALLBACK_MAX_BODY_BYTES", default=64 * 1024, ge=1024)
    download_check_after_seconds: float = setting("DOWNLOAD_CHECK_AFTER_SECONDS", default=600.0, ge=0)
    notification_queue_url: str = setting("NOTIFICATION_QUEUE_URL", default="")


class DownloaderSettings(AwsResources, UpstreamSettings):
    """The downloader: fetch each image safely and store it in S3."""

    images_bucket: str = setting("IMAGES_BUCKET", min_length=1)
    download_queue_url: str = setting("DOWNLOAD_QUEUE_URL", min_length=1)
    allowed_hosts: str = setting("DOWNLOAD_ALLOWED_HOSTS", default=DEFAULT_RESULT_HOSTS)
    # Exact origins (scheme://host:port) of a local stand-in of the upstream, on loopback (local runs).
    trusted_origins: str = setting("DOWNLOAD_TRUSTED_ORIGINS", default="", check=_loopback_origins)
    max_image_bytes: int = setting("DOWNLOAD_MAX_BYTES", default=30 * 1024 * 1024, ge=1024)
    deadline_seconds: float = setting("DOWNLOAD_DEADLINE_SECONDS", default=60.0, gt=0)
    max_pixels: int = setting("DOWNLOAD_MAX_PIXELS", default=50_000_000, ge=1)
    # A passing failure comes back after base, 2x base, 4x base ... seconds (capped at 15 minutes).
    retry_base_seconds: int = setting("DOWNLOAD_RETRY_BASE_SECONDS", default=10, ge=0, le=900)
    notification_queue_url: str = setting("NOTIFICATION_QUEUE_URL", default="")

    @property
    def allowed_host_list(self) -> tuple[str, ...]:
        return _split(self.allowed_hosts)

    @property
    def trusted_origin_list(self) -> tuple[str, ...]:
        return _split(self.trusted_origins)


class ReconcilerSettings(AwsResources, UpstreamSettings):
    """The reconciler: finish what callbacks missed, end every task within its bound."""

    download_queue_url: str = setting("DOWNLOAD_QUEUE_URL", min_length=1)
    # Past the upstream's last callback retry (1 + 5 + 15 minutes after a first try) a callback is unlikely.
    reconcile_after_seconds: float = setting("RECONCILE_AFTER_SECONDS", default=1800.0, ge=0)
    # A task the upstream never confirmed (no generate reply, no callback) ends failed this long after submit.
    submit_unconfirmed_after_seconds: float = setting(
        "SUBMIT_UNCONFIRMED_AFTER_SECONDS", default=7200.0, gt=0
    )
    queries_per_second: float = setting("RECONCILE_QUERIES_PER_SECOND", default=5.0, gt=0, le=50)
    max_tasks: int = setting("RECONCILE_MAX_TASKS", default=500, ge=1)
    # A downloading task is first re-checked this long after its callback, then at doubling intervals.
    download_check_after_seconds: float = setting("DOWNLOAD_CHECK_AFTER_SECONDS", default=600.0, ge=0)
    # Past this, counted from the first callback, images still missing end the task failed.
    download_give_up_seconds: float = setting("DOWNLOAD_GIVE_UP_SECONDS", default=6 * 3600.0, gt=0)
    notification_queue_url: str = setting("NOTIFICATION_QUEUE_URL", default="")

    def __post_init__(self) -> None:
        super().__post_init__()
        # Settings that bound each other: the first download check must come before the give-up.
        if self.download_give_up_seconds < self.download_check_after_seconds:
            raise ConfigError(
                "invalid ReconcilerSettings environment: DOWNLOAD_GIVE_UP_SECONDS "
                f"({self.download_give_up_seconds:g}) must be at least DOWNLOAD_CHECK_AFTER_SECONDS "
                f"({self.download_check_after_seconds:g}): the first check of a download comes after "
                "DOWNLOAD_CHECK_AFTER_SECONDS, so a shorter give-up could never be honoured"
            )


class CreditMonitorSettings(UpstreamSettings):
    """The hourly read of the upstream credit balance: the upstream only (the threshold is the alarm's)."""


class NotifierSettings(AwsResources):
    """Telling client apps that their tasks ended: the event bus and their signed webhooks."""

    images_bucket: str = setting("IMAGES_BUCKET", min_length=1)
    notification_queue_url: str = setting("NOTIFICATION_QUEUE_URL", min_length=1)
    event_bus_name: str = setting("EVENT_BUS_NAME", default="")
    presign_seconds: int = setting("PRESIGNED_URL_SECONDS", default=900, ge=60, le=43200)
    # Each client's signing secrets live in SSM SecureString "<prefix>/<client>" ("whsec_new whsec_old"
    # while rotating); the plain value is for local runs, where it signs for every client.
    webhook_secret_parameter_prefix: str = setting("WEBHOOK_SECRET_PARAMETER_PREFIX", default="")
    webhook_secret: str = setting("WEBHOOK_SECRET", default="", secret=True)
    webhook_trusted_origins: str = setting("WEBHOOK_TRUSTED_ORIGINS", default="", check=_loopback_origins)
    # An attempt starts only with its whole timeout left in the invocation: at most 20 s of the 30 s
    # NotifierFunction has (tests/unit/test_notifier.py holds the template to it).
    webhook_timeout_seconds: float = setting("WEBHOOK_TIMEOUT_SECONDS", default=10.0, gt=0, le=20)
    # Attempt n waits base x 2^(n-1) seconds (capped at 12 h); 12 attempts from 60 s is about a day.
    webhook_retry_base_seconds: int = setting("WEBHOOK_RETRY_BASE_SECONDS", default=60, ge=0, le=3600)
    webhook_max_attempts: int = setting("WEBHOOK_MAX_ATTEMPTS", default=12, ge=1, le=50)

    @property
    def webhook_trusted_origin_list(self) -> tuple[str, ...]:
        return _split(self.webhook_trusted_origins)


@cache
def api_settings() -> ApiSettings:
    return ApiSettings.from_environ(os.environ)


@cache
def callback_settings() -> CallbackSettings:
    return CallbackSettings.from_environ(os.environ)


@cache
def downloader_settings() -> DownloaderSettings:
    return DownloaderSettings.from_environ(os.environ)


@cache
def reconciler_settings() -> ReconcilerSettings:
    return ReconcilerSettings.from_environ(os.environ)


@cache
def credit_monitor_settings() -> CreditMonitorSettings:
    return CreditMonitorSettings.from_environ(os.environ)


@cache
def notifier_settings() -> NotifierSettings:
    return NotifierSettings.from_environ(os.environ)


def parse_at_cold_start(settings: Callable[[], EnvSettings]) -> None:
    """In the Lambda runtime (AWS_LAMBDA_FUNCTION_NAME is set), parse the function's settings while
    its module loads: a bad value fails the init phase, every problem named, before any event is
    taken. Tests and tools that import a handler without a function's environment skip it."""
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        settings()


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


# Each function's settings class, by the POWERTOOLS_SERVICE_NAME its template entry declares:
# tests/sam/test_settings_match_template.py holds template.yaml and these classes to each other.
SETTINGS_BY_SERVICE: dict[str, type[EnvSettings]] = {
    "api": ApiSettings,
    "callback": CallbackSettings,
    "downloader": DownloaderSettings,
    "reconciler": ReconcilerSettings,
    "credit-monitor": CreditMonitorSettings,
    "notifier": NotifierSettings,
}


def setting_variables() -> frozenset[str]:
    """Every environment variable some function's settings read."""
    return frozenset(name for settings in SETTINGS_BY_SERVICE.values() for name in settings.variables())
