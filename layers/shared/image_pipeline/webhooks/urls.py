"""Which webhook URLs may be called: safe_fetch's address rules, for any public https host, on port 443.

Checked without DNS when a task is submitted (:func:`check_webhook_url`) and again, with DNS and
pinning, at every delivery (:func:`image_pipeline.webhooks.deliver`):

* ``https`` only, on any host, on port 443 only: every byte of the request goes inside TLS verified
  against the URL's host name, to an address checked to be public; and no client can use deliveries
  (and ``notification.lastError``) to learn which other ports of a public host answer.
* no ``user:pass@``; IP literals in any spelling (``2130706433``, ``0x7f000001``, ``[::ffff:127.0.0.1]``...)
  judged by safe_fetch: loopback, private, link-local (metadata), CGNAT, reserved, multicast refused;
* ``localhost``, ``*.localhost`` and single-label names (``https://metadata/``) refused at once, before
  DNS would send them to this machine or the local network;
* exactly the ``trusted_origins`` (scheme, host, port: e.g. ``http://127.0.0.1:8123``) of a local
  receiver may use plain http, loopback and their own port; nothing else on loopback.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import httpx

from image_pipeline.errors import WebhookUrlError
from image_pipeline.safe_fetch.errors import FetchError
from image_pipeline.safe_fetch.policy import FetchPolicy
from image_pipeline.safe_fetch.targets import Target, check_target, describe_target

MAX_URL_LENGTH = 2048
_LOCALHOST = "refusing {}: localhost names are loopback"
_PORT = "refusing {}: webhooks are delivered to port 443 only"


def check_webhook_url(url: str, trusted_origins: Sequence[str]) -> str:
    """The URL as it will be called, or :class:`WebhookUrlError` saying why it may not be. No DNS."""
    return str(check_webhook_target(url, webhook_policy(trusted_origins)).url)


def webhook_policy(trusted_origins: Sequence[str], timeout_seconds: float = 10.0) -> FetchPolicy:
    """The :class:`FetchPolicy` of webhook receivers: any host, https on 443, public addresses."""
    if isinstance(trusted_origins, str):
        raise TypeError("trusted_origins must be a sequence of origins, not a string")
    return _policy(tuple(trusted_origins), float(timeout_seconds))


@lru_cache(maxsize=32)
def _policy(trusted_origins: tuple[str, ...], timeout_seconds: float) -> FetchPolicy:
    return FetchPolicy(
        allowed_hosts=(),
        trusted_origins=trusted_origins,
        deadline_seconds=timeout_seconds,
        connect_timeout_seconds=min(5.0, timeout_seconds),
        max_redirects=0,
        any_host=True,
    )


def check_webhook_target(url: str, policy: FetchPolicy) -> Target:
    if not isinstance(url, str):
        raise WebhookUrlError("invalid", "the webhook URL must be a string")
    text = url.strip()
    if not text:
        raise WebhookUrlError("invalid", "the webhook URL is empty")
    if len(text) > MAX_URL_LENGTH:
        raise WebhookUrlError("invalid", f"the webhook URL is longer than {MAX_URL_LENGTH} characters")
    try:
        target = check_target(text, policy, invalid_reason="invalid", context="")
    except FetchError as exc:
        parsed = _parse(text)
        if parsed is None:
            raise WebhookUrlError(exc.reason, str(exc)) from None  # names the host only
        if exc.reason != "invalid" and _is_localhost(parsed.host):  # say the real problem first
            raise WebhookUrlError("address_blocked", _LOCALHOST.format(url_origin(parsed))) from None
        if exc.reason == "port_not_allowed":  # safe_fetch's message speaks of its download allow-list
            raise WebhookUrlError(exc.reason, _PORT.format(url_origin(parsed))) from None
        raise WebhookUrlError(exc.reason, without_path(str(exc), parsed)) from None
    if not target.trusted and target.ip is None:
        origin = url_origin(target.url)
        if _is_localhost(target.host):
            raise WebhookUrlError("address_blocked", _LOCALHOST.format(origin))
        if "." not in target.host:
            raise WebhookUrlError(
                "host_not_allowed", f"refusing {origin}: {target.host!r} is not a fully qualified host name"
            )
    return target


def _is_localhost(host: str) -> bool:
    name = host.lower().removesuffix(".")
    return name == "localhost" or name.endswith(".localhost")


def url_origin(url: httpx.URL) -> str:
    """``scheme://host[:port]`` as safe_fetch describes URLs, without path, query or credentials."""
    return describe_target(url.copy_with(raw_path=b"/"))[:-1]


def without_path(message: str, url: httpx.URL) -> str:
    """safe_fetch's message with its ``scheme://host[:port]/path?...`` cut to ``scheme://host[:port]``.

    Webhook URLs often carry a token in the path (``/hooks/T0/B0/secret``): errors never show it.
    """
    return message.replace(describe_target(url), url_origin(url))


def _parse(text: str) -> httpx.URL | None:
    try:
        return httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError, UnicodeError):
        return None
