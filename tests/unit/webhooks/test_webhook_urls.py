"""check_webhook_url: what a client may submit as webhookUrl, decided without DNS or any traffic."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from image_pipeline.webhooks import WebhookUrlError, check_webhook_url

TRUSTED = ("http://127.0.0.1:8123",)


@pytest.fixture(autouse=True)
def _no_dns_no_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The validator alone decides: any DNS lookup or connection attempt fails the test."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("check_webhook_url must not resolve names or open connections")

    monkeypatch.setattr(socket, "getaddrinfo", forbidden)
    monkeypatch.setattr(socket, "gethostbyname", forbidden)
    monkeypatch.setattr(socket.socket, "connect", forbidden)
    monkeypatch.setattr(socket.socket, "connect_ex", forbidden)
    yield


REFUSED: list[tuple[str, str, str]] = [
    # loopback, in every spelling
    ("loopback", "https://127.0.0.1/hook", "address_blocked"),
    ("loopback-other", "https://127.8.9.10/hook", "address_blocked"),
    ("decimal", "https://2130706433/hook", "address_blocked"),
    ("hex", "https://0x7f000001/hook", "address_blocked"),
    ("octal", "https://017700000001/hook", "address_blocked"),
    ("octal-dotted", "https://0177.0.0.1/hook", "address_blocked"),
    ("short", "https://127.1/hook", "address_blocked"),
    ("v6-loopback", "https://[::1]/hook", "address_blocked"),
    ("v4-mapped", "https://[::ffff:127.0.0.1]/hook", "address_blocked"),
    ("nat64", "https://[64:ff9b::7f00:1]/hook", "address_blocked"),
    ("6to4", "https://[2002:7f00:1::1]/hook", "address_blocked"),
    ("localhost", "https://localhost/hook", "address_blocked"),
    ("localhost-dot", "https://LOCALHOST./hook", "address_blocked"),
    ("sub-localhost", "https://foo.localhost/hook", "address_blocked"),
    # the trusted origin only exactly: scheme, host spelling and port
    ("trusted-other-port", "http://127.0.0.1:8124/hook", "address_blocked"),
    ("trusted-https", "https://127.0.0.1:8123/hook", "address_blocked"),
    ("trusted-decimal", "http://2130706433:8123/hook", "address_blocked"),
    ("trusted-v6", "http://[::1]:8123/hook", "address_blocked"),
    ("trusted-localhost", "http://localhost:8123/hook", "address_blocked"),
    # private, link-local and the metadata service, CGNAT, other non-public ranges
    ("private-10", "https://10.0.0.1/hook", "address_blocked"),
    ("private-172", "https://172.16.0.1/hook", "address_blocked"),
    ("private-192", "https://192.168.1.10/hook", "address_blocked"),
    ("metadata", "https://169.254.169.254/latest/meta-data/", "address_blocked"),
    ("metadata-decimal", "https://2852039166/latest/meta-data/", "address_blocked"),
    ("metadata-v6", "https://[fd00:ec2::254]/latest/meta-data/", "address_blocked"),
    ("metadata-mapped", "https://[::ffff:a9fe:a9fe]/", "address_blocked"),
    ("link-local", "https://169.254.1.1/hook", "address_blocked"),
    ("cgnat", "https://100.64.0.1/hook", "address_blocked"),
    ("unspecified", "https://0.0.0.0/hook", "address_blocked"),
    ("multicast", "https://224.0.0.1/hook", "address_blocked"),
    ("reserved", "https://240.0.0.1/hook", "address_blocked"),
    ("v6-link-local", "https://[fe80::1]/hook", "address_blocked"),
    ("v6-ula", "https://[fd12:3456::1]/hook", "address_blocked"),
    # scheme, credentials, names
    ("http-public", "http://hooks.example.com/hook", "scheme"),
    ("ftp", "ftp://hooks.example.com/hook", "scheme"),
    ("no-scheme", "hooks.example.com/hook", "scheme"),
    ("userinfo", "https://user:pw@hooks.example.com/hook", "host_not_allowed"),
    ("userinfo-confusion", "https://hooks.example.com@127.0.0.1/hook", "host_not_allowed"),
    ("single-label", "https://metadata/computeMetadata/v1/", "host_not_allowed"),
    ("public-ip-non-canonical", "https://0x08080808/hook", "host_not_allowed"),
    # https on port 443 only: a webhook must not probe the ports of public hosts
    ("https-other-port", "https://hooks.example.com:8443/hook", "port_not_allowed"),
    ("https-port-80", "https://hooks.example.com:80/hook", "port_not_allowed"),
    ("public-ip-ssh", "https://93.184.216.34:22/hook", "port_not_allowed"),
    ("not-a-url", "https://exa mple.com/hook", "invalid"),
    ("too-long", "https://hooks.example.com/" + "a" * 2100, "invalid"),
]


@pytest.mark.parametrize(("name", "url", "reason"), REFUSED, ids=[row[0] for row in REFUSED])
def test_unsafe_urls_are_refused(name: str, url: str, reason: str) -> None:
    with pytest.raises(WebhookUrlError) as err:
        check_webhook_url(url + "?token=SECRET-QUERY", TRUSTED)
    assert err.value.reason == reason, str(err.value)
    assert isinstance(err.value, ValueError)  # the API turns it into a 422 naming webhookUrl
    message = str(err.value)
    assert "SECRET-QUERY" not in message and "pw" not in message
    assert len(message) < 200


@pytest.mark.parametrize("url", ["", "   ", None, b"https://hooks.example.com/"])
def test_empty_or_not_a_string(url: object) -> None:
    with pytest.raises(WebhookUrlError) as err:
        check_webhook_url(url, TRUSTED)  # type: ignore[arg-type]
    assert err.value.reason == "invalid"


def test_messages_name_the_origin_not_the_path() -> None:
    with pytest.raises(WebhookUrlError) as err:
        check_webhook_url("https://10.0.0.7:8443/services/T0/B0/SECRET-PATH?x=1", TRUSTED)
    assert str(err.value) == "refusing https://10.0.0.7:8443: address 10.0.0.7 is private"


def test_a_port_other_than_443_is_named_without_the_path() -> None:
    with pytest.raises(WebhookUrlError) as err:
        check_webhook_url("https://hooks.example.com:8443/services/SECRET-PATH", TRUSTED)
    assert (
        str(err.value) == "refusing https://hooks.example.com:8443: webhooks are delivered to port 443 only"
    )


ACCEPTED: list[tuple[str, str]] = [
    ("https://hooks.example.com/hook", "https://hooks.example.com/hook"),
    ("  https://Hooks.Example.COM./a/b?token=x  ", "https://hooks.example.com./a/b?token=x"),
    ("https://hooks.example.com:443/hook", "https://hooks.example.com/hook"),
    ("https://bücher.example/hook", "https://xn--bcher-kva.example/hook"),
    ("https://93.184.216.34/hook", "https://93.184.216.34/hook"),  # a public IP literal
    ("http://127.0.0.1:8123/hook", "http://127.0.0.1:8123/hook"),  # exactly the trusted origin
    ("http://127.0.0.1:8123", "http://127.0.0.1:8123"),
]


@pytest.mark.parametrize(("url", "checked"), ACCEPTED)
def test_safe_urls_are_accepted(url: str, checked: str) -> None:
    assert check_webhook_url(url, TRUSTED) == checked


def test_without_trusted_origins_loopback_is_refused() -> None:
    with pytest.raises(WebhookUrlError, match="loopback"):
        check_webhook_url("http://127.0.0.1:8123/hook", ())


def test_a_listed_localhost_origin_is_trusted_exactly() -> None:
    assert (
        check_webhook_url("http://localhost:9000/h", ["http://localhost:9000"]) == "http://localhost:9000/h"
    )
    with pytest.raises(WebhookUrlError):
        check_webhook_url("http://localhost:9001/h", ["http://localhost:9000"])


def test_bad_configuration_is_not_a_url_error() -> None:
    with pytest.raises(TypeError):
        check_webhook_url("https://hooks.example.com/", "http://127.0.0.1:8123")
    with pytest.raises(ValueError, match="trusted origin") as err:
        check_webhook_url("https://hooks.example.com/", ["http://127.0.0.1:8123/path"])
    assert not isinstance(err.value, WebhookUrlError)
