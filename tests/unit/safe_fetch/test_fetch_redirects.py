"""Redirects: each Location goes through every check again, at most max_redirects times."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest
from image_pipeline.safe_fetch import FetchError, FetchPolicy, fetch_image

from tests.unit.safe_fetch.peers import (
    PUBLIC_A,
    PUBLIC_B,
    WEBP,
    FakeNet,
    LocalServer,
    fake_resolver,
    fill_ports,
    image_response,
    local_policy,
    redirect_response,
)

pytestmark = pytest.mark.timeout(60)


REDIRECT_ATTACKS: list[tuple[str, str, str]] = [
    ("to-loopback-canary", "http://127.0.0.1:{c}/", "address_blocked"),
    ("to-metadata", "http://169.254.169.254:{c}/latest/meta-data/", "address_blocked"),
    ("to-decimal-loopback", "http://2130706433:{c}/", "address_blocked"),
    ("to-v6-loopback", "http://[::1]:{c}/", "address_blocked"),
    ("to-name-resolving-private", "https://internal.allowed.test/x.png", "address_blocked"),
    ("to-name-resolving-loopback", "https://loop.allowed.test/x.png", "address_blocked"),
    ("to-trusted-host-other-port", "http://127.0.0.1:{c}/img.png", "address_blocked"),
    ("to-not-allowed-host", "https://evil.test/x.png", "host_not_allowed"),
    ("to-scheme-relative-evil", "//evil.test/x.png", "host_not_allowed"),
    ("to-userinfo", "https://img.allowed.test@127.0.0.1:{c}/", "host_not_allowed"),
    ("downgrade-to-http", "http://img.allowed.test:{c}/x.png", "scheme"),
    ("to-allowed-host-other-port", "https://img.allowed.test:{c}/x.png", "port_not_allowed"),
    ("to-allowed-host-8443", "https://img.allowed.test:8443/x.png", "port_not_allowed"),
    ("to-file", "file:///etc/passwd", "scheme"),
    ("to-gopher", "gopher://127.0.0.1:{c}/_SET", "scheme"),
    ("no-location", "", "bad_redirect"),
    ("broken-location", "http://[::1", "bad_redirect"),
]


@pytest.mark.parametrize(
    ("name", "location", "reason"), REDIRECT_ATTACKS, ids=[row[0] for row in REDIRECT_ATTACKS]
)
def test_redirect_attacks_blocked(
    name: str,
    location: str,
    reason: str,
    canary: LocalServer,
    srv: LocalServer,
    net: FakeNet,
    net_client: httpx.Client,
) -> None:
    target = fill_ports(location, canary, srv)
    before = srv.hits("/redirect")
    url = f"{srv.origin}/redirect?to={quote(target, safe='')}"
    with pytest.raises(FetchError) as err:
        fetch_image(url, local_policy(srv), resolver=fake_resolver, client=net_client)
    assert err.value.reason == reason, str(err.value)
    assert not err.value.retryable
    assert srv.hits("/redirect") == before + 1
    assert [s["ip"] for s in net.seen] == ["127.0.0.1"]  # only the trusted redirector itself
    assert canary.settled_connections() == 0


def test_redirect_loop_stops_at_the_hop_limit(srv: LocalServer) -> None:
    before = srv.hits("/loop")
    with pytest.raises(FetchError) as err:
        fetch_image(f"{srv.origin}/loop", local_policy(srv, max_redirects=3))
    assert err.value.reason == "too_many_redirects"
    assert not err.value.retryable
    assert srv.hits("/loop") == before + 4  # the first request and 3 redirects


def test_no_redirects_allowed(srv: LocalServer) -> None:
    with pytest.raises(FetchError) as err:
        fetch_image(f"{srv.origin}/hop", local_policy(srv, max_redirects=0))
    assert err.value.reason == "too_many_redirects"


def test_redirect_from_public_host_to_metadata(net: FakeNet, net_client: httpx.Client) -> None:
    net.public[(PUBLIC_A, 443)] = redirect_response("http://169.254.169.254/latest/meta-data/")
    with pytest.raises(FetchError) as err:
        fetch_image(
            "https://img.allowed.test/x.png",
            FetchPolicy(("img.allowed.test",)),
            resolver=fake_resolver,
            client=net_client,
        )
    assert err.value.reason == "address_blocked"
    assert [s["ip"] for s in net.seen] == [PUBLIC_A]


def test_redirect_within_allowed_hosts_is_followed(net: FakeNet, net_client: httpx.Client) -> None:
    net.public[(PUBLIC_A, 443)] = redirect_response("https://b.allowed.test/final/y.webp?sig=abc", 307)
    net.public[(PUBLIC_B, 443)] = image_response(WEBP, **{"Content-Type": "image/png"})
    image = fetch_image(
        "https://a.allowed.test/start?token=1",
        FetchPolicy(("a.allowed.test", "b.allowed.test")),
        resolver=fake_resolver,
        client=net_client,
    )
    assert (image.content_type, image.extension) == ("image/webp", "webp")
    assert image.final_url == "https://b.allowed.test/final/y.webp"
    assert [(s["ip"], s["host_header"], s["sni"]) for s in net.seen] == [
        (PUBLIC_A, "a.allowed.test", "a.allowed.test"),
        (PUBLIC_B, "b.allowed.test", "b.allowed.test"),
    ]


def test_relative_redirect_on_trusted_origin(srv: LocalServer) -> None:
    image = fetch_image(f"{srv.origin}/hop?sig=first-secret", local_policy(srv))
    assert image.content_type == "image/png"
    assert image.final_url == f"{srv.origin}/img.png"
