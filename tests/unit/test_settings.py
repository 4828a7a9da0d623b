"""The functions' settings: read from the environment with pydantic's lax parsing, without pydantic."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from typing import Annotated, Any

import pytest
from image_pipeline.settings import (
    DEFAULT_RESULT_HOSTS,
    DEFAULT_UPSTREAM,
    SETTINGS_BY_SERVICE,
    ApiSettings,
    CallbackSettings,
    ConfigError,
    CreditMonitorSettings,
    DownloaderSettings,
    NotifierSettings,
    ReconcilerSettings,
    UpstreamSettings,
    api_settings,
    reset_settings_cache,
    setting_variables,
)
from pydantic import Field, TypeAdapter, ValidationError

from tests.conftest import ROOT

CALLBACK = {"TASKS_TABLE": "tasks", "DOWNLOAD_QUEUE_URL": "https://queue.example/q"}
# What every function's settings require.
REQUIRED = {**CALLBACK, "IMAGES_BUCKET": "images", "NOTIFICATION_QUEUE_URL": "https://queue.example/n"}


def test_a_missing_required_variable_is_named() -> None:
    with pytest.raises(ConfigError) as raised:
        CallbackSettings.from_environ({})
    assert str(raised.value) == (
        "invalid CallbackSettings environment: TASKS_TABLE: is required; DOWNLOAD_QUEUE_URL: is required"
    )


def test_an_empty_required_string_is_named() -> None:
    with pytest.raises(ConfigError) as raised:
        CallbackSettings.from_environ({**CALLBACK, "DOWNLOAD_QUEUE_URL": ""})
    assert str(raised.value).endswith("DOWNLOAD_QUEUE_URL: must be at least 1 character(s) long, got ''")


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("WEBHOOK_TIMESTAMP_WINDOW_SECONDS", "abc", "must be an integer, got 'abc'"),
        ("WEBHOOK_TIMESTAMP_WINDOW_SECONDS", "30.5", "must be an integer, got '30.5'"),
        ("WEBHOOK_TIMESTAMP_WINDOW_SECONDS", "", "must be an integer, got ''"),
        ("WEBHOOK_TIMESTAMP_WINDOW_SECONDS", "٣٠", "must be an integer, got '٣٠'"),  # int() alone takes it
        ("DOWNLOAD_CHECK_AFTER_SECONDS", "ten", "must be a number, got 'ten'"),
        ("DOWNLOAD_CHECK_AFTER_SECONDS", "1__0", "must be a number, got '1__0'"),
    ],
)
def test_a_value_that_is_not_a_number_is_named(variable: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        CallbackSettings.from_environ({**CALLBACK, variable: value})
    assert str(raised.value) == f"invalid CallbackSettings environment: {variable}: {problem}"


@pytest.mark.parametrize(
    "value",
    [
        " 1_0 ",  # "_" between digits, or white space around them, but not both (pydantic: floats)
        "\t1_000",
        "\x8530",  # NEL, a non-ASCII control character: not white space to a setting
        "30\x85",
        "\xa030",  # no-break space
        "30\u2028",  # line separator
        "\x1c30",  # ASCII's file separator: str.strip() and int() take it for white space
        "3\x000",
    ],
)
@pytest.mark.parametrize(
    ("variable", "kind"),
    [("WEBHOOK_TIMESTAMP_WINDOW_SECONDS", "an integer"), ("DOWNLOAD_CHECK_AFTER_SECONDS", "a number")],
)
def test_only_ascii_white_space_around_a_number_and_no_digit_separator_inside_it(
    variable: str, kind: str, value: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        CallbackSettings.from_environ({**CALLBACK, variable: value})
    assert (
        str(raised.value)
        == f"invalid CallbackSettings environment: {variable}: must be {kind}, got {value!r}"
    )


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("RECORD_TTL_DAYS", "0", "must be >= 1, got 0"),
        ("CALLBACK_MAX_BODY_BYTES", "1023", "must be >= 1024, got 1023"),
        ("DOWNLOAD_CHECK_AFTER_SECONDS", "-0.5", "must be >= 0, got -0.5"),
        ("DOWNLOAD_CHECK_AFTER_SECONDS", "nan", "must be >= 0, got nan"),  # NaN fails every bound
    ],
)
def test_a_value_out_of_bounds_is_named(variable: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        CallbackSettings.from_environ({**CALLBACK, variable: value})
    assert str(raised.value) == f"invalid CallbackSettings environment: {variable}: {problem}"


def test_every_problem_is_reported_at_once() -> None:
    environ = {
        "KIE_API_TIMEOUT_SECONDS": "0",
        "RECONCILE_MAX_TASKS": "x",
        "RECONCILE_QUERIES_PER_SECOND": "51",
    }
    with pytest.raises(ConfigError) as raised:
        ReconcilerSettings.from_environ(environ)
    assert str(raised.value) == (
        "invalid ReconcilerSettings environment: KIE_API_TIMEOUT_SECONDS: must be > 0, got 0.0; "
        "TASKS_TABLE: is required; DOWNLOAD_QUEUE_URL: is required; "
        "RECONCILE_QUERIES_PER_SECOND: must be <= 50, got 51.0; "
        "RECONCILE_MAX_TASKS: must be an integer, got 'x'"
    )


def pydantic_lax(kind: Any, text: str) -> Any:
    """What pydantic's lax parsing makes of an environment value for a field of type `kind` (with the
    same bounds as ours), or None when it refuses it. The settings were pydantic models once: they must
    still take exactly what pydantic took, and turn each value into the same number."""
    try:
        return TypeAdapter(kind).validate_python(text)
    except ValidationError:
        return None


def ours_or_none(variable: str, value: str, field: str) -> Any:
    try:
        return getattr(CallbackSettings.from_environ({**CALLBACK, variable: value}), field)
    except ConfigError:
        return None


@pytest.mark.parametrize(
    "value",
    [
        *("30", " 30 ", "+30", "030", "1_000", "30.0", "30.00", "\t30\n", "1" * 30),
        *("abc", "30.5", "", "٣٠", "1e3", "0x10", "1__0", "_30", "30_", "3 0", "0", "-1", "30.", ".0"),
    ],
)
def test_integers_parse_as_pydantic_parses_them(value: str) -> None:
    # WEBHOOK_TIMESTAMP_WINDOW_SECONDS: int, ge=1
    expected = pydantic_lax(Annotated[int, Field(ge=1)], value)
    parsed = ours_or_none("WEBHOOK_TIMESTAMP_WINDOW_SECONDS", value, "hmac_window_seconds")
    assert (parsed, type(parsed)) == (expected, type(expected))


@pytest.mark.parametrize(
    "value",
    [
        *("10", "2.5", " 2.5 ", ".5", "1e1", "1_0", "inf", "+1.5", "1E-3", "0", "-0", "Infinity", "1_0.5"),
        *("ten", "1__0", "_1", "1_", "", "nan", "-0.5", "-inf", "٣", "0x10", "1e", "1,5", "1_.5"),
    ],
)
def test_numbers_parse_as_pydantic_parses_them(value: str) -> None:
    # DOWNLOAD_CHECK_AFTER_SECONDS: float, ge=0 (NaN fails the bound under both)
    expected = pydantic_lax(Annotated[float, Field(ge=0)], value)
    parsed = ours_or_none("DOWNLOAD_CHECK_AFTER_SECONDS", value, "download_check_after_seconds")
    assert (parsed, type(parsed)) == (expected, type(expected))


def test_the_defaults() -> None:
    upstream = UpstreamSettings.from_environ({})
    assert upstream == UpstreamSettings()
    assert (upstream.base_url, upstream.api_key, upstream.api_key_parameter) == (DEFAULT_UPSTREAM, "", "")
    assert upstream.timeout_seconds == 10.0
    downloader = DownloaderSettings.from_environ(REQUIRED)
    assert downloader.allowed_host_list == ("tempfile.aiquickdraw.com", "*.aiquickdraw.com")
    assert downloader.allowed_hosts == DEFAULT_RESULT_HOSTS and downloader.trusted_origin_list == ()
    assert downloader.record_ttl_days == 30 and downloader.retry_base_seconds == 10
    assert downloader.max_image_bytes == 30 * 1024 * 1024
    reconciler = ReconcilerSettings.from_environ(REQUIRED)
    assert reconciler.reconcile_after_seconds == 1800 and reconciler.download_give_up_seconds == 6 * 3600
    notifier = NotifierSettings.from_environ(REQUIRED)
    assert notifier.presign_seconds == 900 and notifier.webhook_max_attempts == 12
    assert notifier.webhook_trusted_origin_list == ()


def test_lists_split_on_commas() -> None:
    origins = " http://127.0.0.1:9 , ,http://localhost:8 "
    api = ApiSettings.from_environ({**REQUIRED, "WEBHOOK_TRUSTED_ORIGINS": origins})
    assert api.webhook_trusted_origin_list == ("http://127.0.0.1:9", "http://localhost:8")


TRUSTED_ORIGINS = [
    (ApiSettings, "WEBHOOK_TRUSTED_ORIGINS"),
    (NotifierSettings, "WEBHOOK_TRUSTED_ORIGINS"),
    (DownloaderSettings, "DOWNLOAD_TRUSTED_ORIGINS"),
]


@pytest.mark.parametrize(("settings", "variable"), TRUSTED_ORIGINS)
@pytest.mark.parametrize(
    "origins",
    [
        "http://127.0.0.1:8123",
        "https://127.0.0.2:4443, http://localhost:9",
        "http://[::1]:3000",
        "http://LocalHost:80",
    ],
)
def test_trusted_origins_on_loopback_are_taken(settings: Any, variable: str, origins: str) -> None:
    assert settings.from_environ({**REQUIRED, variable: origins})


@pytest.mark.parametrize(("settings", "variable"), TRUSTED_ORIGINS)
@pytest.mark.parametrize(
    ("origin", "why"),
    [
        ("http://169.254.169.254", "not on loopback"),  # the instance metadata address
        ("http://[fd00:ec2::254]:80", "not on loopback"),  # and its IPv6 twin
        ("http://[::ffff:169.254.169.254]:80", "not on loopback"),
        ("http://10.0.0.5:8080", "not on loopback"),
        ("https://hooks.example.com", "not on loopback"),
        ("http://metadata:80", "not on loopback"),  # a name: whatever it resolves to is trusted
        ("http://2130706433:80", "not on loopback"),  # 127.0.0.1 in a spelling only some parsers read
        ("http://127.0.0.1.nip.io:80", "not on loopback"),
        ("ftp://127.0.0.1:21", "not exactly http(s)://host[:port]"),
        ("http://127.0.0.1:8123/hooks", "not exactly http(s)://host[:port]"),
        ("http://user@127.0.0.1:8123", "not exactly http(s)://host[:port]"),
        ("http://127.0.0.1:99999", "not exactly http(s)://host[:port]"),
    ],
)
def test_a_trusted_origin_off_loopback_is_refused_at_cold_start_naming_it(
    settings: Any, variable: str, origin: str, why: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        settings.from_environ({**REQUIRED, variable: f"http://127.0.0.1:9,{origin}"})
    message = str(raised.value)
    assert f"{variable}: {origin!r} is {why}" in message, message
    if why == "not on loopback":
        assert "only a local stand-in on 127.0.0.1, [::1] or localhost may be trusted" in message


def test_under_sam_local_a_container_of_its_network_may_be_trusted_but_never_an_address() -> None:
    """sam local's Lambda containers reach the upstream emulator by its container name (net-upstream);
    SAM CLI sets AWS_SAM_LOCAL=true in every container it runs, and nothing else does."""
    environ = {**REQUIRED, "DOWNLOAD_TRUSTED_ORIGINS": "http://net-upstream:8080"}
    with pytest.raises(ConfigError, match="is not on loopback"):
        DownloaderSettings.from_environ(environ)
    assert DownloaderSettings.from_environ({**environ, "AWS_SAM_LOCAL": "true"}).trusted_origin_list == (
        "http://net-upstream:8080",
    )
    for address in ("http://169.254.169.254", "http://0xa9fea9fe:80", "http://10.0.0.5:80"):
        with pytest.raises(ConfigError, match="is not on loopback"):
            DownloaderSettings.from_environ(
                {**REQUIRED, "AWS_SAM_LOCAL": "true", "DOWNLOAD_TRUSTED_ORIGINS": address}
            )


def test_the_upstream_url_loses_its_trailing_slashes() -> None:
    assert UpstreamSettings.from_environ({"KIE_API_BASE_URL": "https://up.example/v1//"}).base_url == (
        "https://up.example/v1"
    )
    assert UpstreamSettings(base_url="https://up.example/").base_url == "https://up.example"


def test_secrets_stay_out_of_repr() -> None:
    secrets = {"KIE_API_KEY": "s-upstream", "KIE_WEBHOOK_HMAC_KEY": "s-hmac", "WEBHOOK_SECRET": "s-webhook"}
    for settings in SETTINGS_BY_SERVICE.values():
        shown = repr(settings.from_environ({**REQUIRED, **secrets}))
        assert shown.startswith(settings.__name__ + "(") and "_seconds=" in shown
        assert not [secret for secret in secrets.values() if secret in shown]


def test_settings_are_hashable_and_immutable() -> None:
    first = UpstreamSettings.from_environ({"KIE_API_KEY": "k"})
    same = UpstreamSettings(api_key="k")
    assert first == same and hash(first) == hash(same)
    assert first != UpstreamSettings(api_key="other")
    assert len({first, same}) == 1  # they key functools.cache caches in wiring
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.api_key = "changed"  # type: ignore[misc]


def test_settings_cannot_be_changed_at_all() -> None:
    settings = CallbackSettings.from_environ(CALLBACK)
    for change in (
        lambda: setattr(settings, "hmac_window_seconds", 1),
        lambda: setattr(settings, "not_a_field", 1),
        lambda: delattr(settings, "tasks_table"),
    ):
        with pytest.raises(dataclasses.FrozenInstanceError):
            change()
    assert settings == CallbackSettings.from_environ(CALLBACK)


def test_settings_are_equal_only_to_settings_of_their_own_class() -> None:
    upstream = UpstreamSettings(api_key="k")
    # The same fields and values, another class (as dataclasses compare).
    assert upstream != CreditMonitorSettings(api_key="k") and upstream != object()
    assert hash(upstream) == hash(UpstreamSettings.from_environ({"KIE_API_KEY": "k"}))


def test_an_unknown_constructor_argument_is_a_type_error_naming_it() -> None:
    with pytest.raises(
        TypeError, match=r"UpstreamSettings\(\) got unexpected keyword argument\(s\): bogus, zeta"
    ):
        UpstreamSettings(bogus=1, zeta=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="positional"):
        UpstreamSettings("https://up.example")  # type: ignore[call-arg]


def test_a_missing_constructor_argument_is_a_type_error_naming_it_and_its_variable() -> None:
    with pytest.raises(TypeError) as raised:
        ApiSettings()  # type: ignore[call-arg]
    assert str(raised.value) == (
        "ApiSettings() missing required argument(s): tasks_table (TASKS_TABLE), images_bucket (IMAGES_BUCKET)"
    )


def test_fields_keep_the_dataclass_order_inherited_ones_first() -> None:
    # ApiSettings(AwsResources, UpstreamSettings): the farthest base's fields first, then its own.
    shown = repr(ApiSettings(tasks_table="t", images_bucket="b"))
    assert shown.startswith(
        "ApiSettings(base_url='https://api.kie.ai', api_key_parameter='', timeout_seconds=10.0, "
        "tasks_table='t', record_ttl_days=30, images_bucket='b', public_base_url='', "
    )
    assert shown.endswith("webhook_trusted_origins='')")  # cursor_key, a secret, is not shown


def test_the_getters_read_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKS_TABLE", "t")
    monkeypatch.setenv("IMAGES_BUCKET", "b")
    reset_settings_cache()
    try:
        first = api_settings()
        monkeypatch.setenv("IMAGES_BUCKET", "other")
        assert api_settings() is first
        reset_settings_cache()
        assert api_settings().images_bucket == "other"
        monkeypatch.setenv("PRESIGNED_URL_SECONDS", "59")
        reset_settings_cache()
        with pytest.raises(ConfigError, match="PRESIGNED_URL_SECONDS: must be >= 60, got 59"):
            api_settings()
    finally:
        reset_settings_cache()


def test_the_variables_read() -> None:
    assert CallbackSettings.variables(required_only=True) == {"TASKS_TABLE", "DOWNLOAD_QUEUE_URL"}
    assert {"KIE_API_KEY", "DOWNLOAD_RETRY_BASE_SECONDS", "WEBHOOK_MAX_ATTEMPTS"} <= setting_variables()
    assert setting_variables() == frozenset().union(*(s.variables() for s in SETTINGS_BY_SERVICE.values()))


def test_importing_the_settings_does_not_load_pydantic() -> None:
    code = (
        f"import sys; sys.path[:0] = [{str(ROOT / 'layers' / 'shared')!r}]\n"
        "import image_pipeline.settings\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'pydantic_core')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == ["[]"]


def test_importing_the_settings_does_not_load_dataclasses() -> None:
    # @dataclass generates code for each class, ~8 ms of every cold start; EnvSettings does without it.
    code = (
        f"import sys; sys.path[:0] = [{str(ROOT / 'layers' / 'shared')!r}]\n"
        "import image_pipeline.settings\n"
        "print('dataclasses' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == ["False"]


def test_settings_that_bound_each_other_are_checked_together_at_cold_start() -> None:
    # A give-up shorter than the first download check could never be honoured: the first check comes
    # after DOWNLOAD_CHECK_AFTER_SECONDS, so the task would end later than the operator asked.
    with pytest.raises(ConfigError) as refused:
        ReconcilerSettings.from_environ(
            {**REQUIRED, "DOWNLOAD_CHECK_AFTER_SECONDS": "600", "DOWNLOAD_GIVE_UP_SECONDS": "300"}
        )
    message = str(refused.value)
    assert "DOWNLOAD_GIVE_UP_SECONDS (300)" in message and "DOWNLOAD_CHECK_AFTER_SECONDS (600)" in message
    bounded = ReconcilerSettings.from_environ(
        {**REQUIRED, "DOWNLOAD_CHECK_AFTER_SECONDS": "600", "DOWNLOAD_GIVE_UP_SECONDS": "600"}
    )
    assert bounded.download_give_up_seconds == 600


def test_a_submit_the_upstream_never_confirms_ends_after_two_hours_unless_told_otherwise() -> None:
    assert ReconcilerSettings.from_environ(REQUIRED).submit_unconfirmed_after_seconds == 7200
    assert ApiSettings.from_environ({**REQUIRED}).submit_unconfirmed_after_seconds == 7200
    with pytest.raises(ConfigError, match="SUBMIT_UNCONFIRMED_AFTER_SECONDS: must be > 0"):
        ReconcilerSettings.from_environ({**REQUIRED, "SUBMIT_UNCONFIRMED_AFTER_SECONDS": "0"})


HANDLERS = {
    "api_handler": "functions/api",
    "callback_handler": "functions/callback",
    "downloader_handler": "functions/downloader",
    "notifier_handler": "functions/notifier",
    "reconciler_handler": "functions/reconciler",
    "credit_handler": "functions/credit_monitor",
}


@pytest.mark.parametrize("handler", sorted(HANDLERS))
def test_in_the_lambda_runtime_a_bad_setting_fails_the_handlers_import(handler: str) -> None:
    """The init phase fails, naming the variable, before any event is taken."""
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "shared"), str(ROOT / HANDLERS[handler])]),
        "AWS_LAMBDA_FUNCTION_NAME": handler,
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_METRICS_NAMESPACE": "test",
        # a value no function accepts (the credit monitor has no variable without a default)
        "KIE_API_TIMEOUT_SECONDS": "soon",
    }
    done = subprocess.run(
        [sys.executable, "-c", f"import {handler}"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "ConfigError" in done.stderr, done.stderr[-2000:]
    # Without the Lambda runtime's variable (tests, tools), importing parses nothing
    del environment["AWS_LAMBDA_FUNCTION_NAME"]
    done = subprocess.run(
        [sys.executable, "-c", f"import {handler}"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
