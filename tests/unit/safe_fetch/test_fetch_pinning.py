"""Pinning: requests go to the checked address (DNS rebinding, Host header, SNI, certificates, proxies)."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Iterator

import httpx
import pytest
from image_pipeline.safe_fetch import FetchError, FetchPolicy, fetch_image

from tests.unit.safe_fetch.peers import (
    JPEG,
    PNG,
    PUBLIC_A,
    PUBLIC_B,
    PUBLIC_DEAD,
    FakeNet,
    LocalServer,
    fake_resolver,
    forbidden_resolver,
    image_response,
    local_policy,
    redirect_response,
    serve,
    tls_material,
)

pytestmark = pytest.mark.timeout(60)


class RebindingResolver:
    """Answers a public address the first time and 127.0.0.1 afterwards (classic DNS rebinding)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return [PUBLIC_A] if len(self.calls) == 1 else ["127.0.0.1"]


def test_rebinding_resolver_never_reaches_loopback(canary: LocalServer) -> None:
    rebinding = RebindingResolver()
    # The fake network resolves un-pinned names with the same resolver, like the OS would at connect time;
    # 127.0.0.1 port 443 is the canary there.
    net = FakeNet(rebinding, internal_ports={443: canary.port})
    net.public[(PUBLIC_A, 443)] = image_response(PNG)
    with httpx.Client(transport=net, trust_env=False) as client:
        image = fetch_image(
            "https://rebind.allowed.test/x.png",
            FetchPolicy(("rebind.allowed.test",)),
            resolver=rebinding,
            client=client,
        )
    net.close()
    assert image.sha256 == hashlib.sha256(PNG).hexdigest()
    assert rebinding.calls == ["rebind.allowed.test"]  # resolved once
    assert [s["ip"] for s in net.seen] == [PUBLIC_A]
    assert net.seen[0]["url_host"] == PUBLIC_A  # the request itself names the IP, not the host
    assert canary.settled_connections() == 0


def test_rebinding_across_a_redirect_is_checked(canary: LocalServer) -> None:
    rebinding = RebindingResolver()
    net = FakeNet(rebinding, internal_ports={443: canary.port})
    # first hop: a public answer; the redirect goes to the same host, then to another name
    net.public[(PUBLIC_A, 443)] = redirect_response("https://other.allowed.test/x.png")
    with httpx.Client(transport=net, trust_env=False) as client, pytest.raises(FetchError) as err:
        fetch_image(
            "https://rebind.allowed.test/x.png",
            FetchPolicy(("*.allowed.test",)),
            resolver=rebinding,
            client=client,
        )
    net.close()
    assert err.value.reason == "address_blocked"
    assert "127.0.0.1" in str(err.value)
    assert [s["ip"] for s in net.seen] == [PUBLIC_A]
    assert canary.settled_connections() == 0


def test_same_host_redirect_uses_the_first_answer(canary: LocalServer) -> None:
    rebinding = RebindingResolver()
    net = FakeNet(rebinding, internal_ports={443: canary.port})

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/start":
            return httpx.Response(302, headers={"Location": "/x.png"})
        return httpx.Response(200, content=JPEG)

    net.public[(PUBLIC_A, 443)] = handler
    with httpx.Client(transport=net, trust_env=False) as client:
        image = fetch_image(
            "https://rebind.allowed.test/start",
            FetchPolicy(("rebind.allowed.test",)),
            resolver=rebinding,
            client=client,
        )
    net.close()
    assert image.extension == "jpg"
    assert rebinding.calls == ["rebind.allowed.test"]
    assert [s["ip"] for s in net.seen] == [PUBLIC_A, PUBLIC_A]


def test_request_is_pinned_with_host_header_and_sni(net: FakeNet, net_client: httpx.Client) -> None:
    net.public[(PUBLIC_A, 443)] = image_response(PNG)
    policy = FetchPolicy(("img.allowed.test",))
    fetch_image("https://IMG.Allowed.Test./a.png", policy, resolver=fake_resolver, client=net_client)
    fetch_image("https://img.allowed.test:443/b.png", policy, resolver=fake_resolver, client=net_client)
    assert net.seen == [
        {
            "ip": PUBLIC_A,
            "port": 443,
            "url_host": PUBLIC_A,
            "host_header": "img.allowed.test",
            "sni": "img.allowed.test",
            "path": "/a.png",
        },
        {
            "ip": PUBLIC_A,
            "port": 443,
            "url_host": PUBLIC_A,
            "host_header": "img.allowed.test",
            "sni": "img.allowed.test",
            "path": "/b.png",
        },
    ]


def test_allowed_host_on_another_port_is_refused_before_dns(net: FakeNet, net_client: httpx.Client) -> None:
    """The host is allowed and the port would serve an image: still refused, with nothing resolved or sent."""
    net.public[(PUBLIC_A, 8443)] = image_response(PNG)
    with pytest.raises(FetchError) as err:
        fetch_image(
            "https://img.allowed.test:8443/b.png?X-Amz-Signature=SECRET-SIGNATURE",
            FetchPolicy(("img.allowed.test",)),
            resolver=forbidden_resolver,
            client=net_client,
        )
    assert (err.value.reason, err.value.retryable, err.value.status_code) == ("port_not_allowed", False, None)
    assert "port 8443" in str(err.value) and "img.allowed.test" in str(err.value)
    assert "SECRET-SIGNATURE" not in str(err.value)
    assert net.seen == []


def test_redirect_to_allowed_host_on_another_port_is_refused(net: FakeNet, net_client: httpx.Client) -> None:
    net.public[(PUBLIC_A, 443)] = redirect_response("https://b.allowed.test:8443/y.png?sig=abc")
    net.public[(PUBLIC_B, 8443)] = image_response(PNG)
    with pytest.raises(FetchError) as err:
        fetch_image(
            "https://a.allowed.test/x.png",
            FetchPolicy(("a.allowed.test", "b.allowed.test")),
            resolver=fake_resolver,
            client=net_client,
        )
    assert (err.value.reason, err.value.retryable) == ("port_not_allowed", False)
    assert str(err.value).startswith("redirect from https://a.allowed.test/x.png")
    assert [(s["ip"], s["port"]) for s in net.seen] == [(PUBLIC_A, 443)]


def test_ipv4_preferred_then_next_address_on_connect_error(net: FakeNet, net_client: httpx.Client) -> None:
    net.public[(PUBLIC_A, 443)] = image_response(PNG)
    net.public[(PUBLIC_B, 443)] = image_response(JPEG)
    policy = FetchPolicy(("*.allowed.test",))
    assert (
        fetch_image(
            "https://dual.allowed.test/x", policy, resolver=fake_resolver, client=net_client
        ).extension
        == "png"
    )
    assert (
        fetch_image(
            "https://flaky.allowed.test/x", policy, resolver=fake_resolver, client=net_client
        ).extension
        == "jpg"
    )
    assert [s["ip"] for s in net.seen] == [PUBLIC_A, PUBLIC_DEAD, PUBLIC_B]


def test_wildcard_hosts(net: FakeNet, net_client: httpx.Client) -> None:
    net.public[(PUBLIC_B, 443)] = image_response(PNG)
    policy = FetchPolicy(("*.cdn.allowed.test",))
    assert fetch_image("https://x.cdn.allowed.test/i.png", policy, resolver=fake_resolver, client=net_client)
    for url in ("https://cdn.allowed.test/i.png", "https://xcdn.allowed.test/i.png"):
        with pytest.raises(FetchError) as err:
            fetch_image(url, policy, resolver=fake_resolver, client=net_client)
        assert err.value.reason == "host_not_allowed"


def test_connection_to_another_endpoint_is_refused(srv: LocalServer) -> None:
    """An injected client that goes through a proxy would bypass the pinning: refused before sending."""
    proxy = LocalServer()
    try:
        with httpx.Client(proxy=proxy.origin, trust_env=False) as client, pytest.raises(FetchError) as err:
            fetch_image(f"{srv.origin}/img.png", local_policy(srv), client=client)
        assert err.value.reason == "address_blocked"
        assert proxy.requests == []  # the connection was shut down before the request was written
    finally:
        proxy.close()


# ----------------------------------------------------------------------------------------- TLS pinning


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[LocalServer, ssl.SSLContext, list[str]]]:
    pytest.importorskip("cryptography")
    server_ctx, client_ctx = tls_material(["img.allowed.test"])
    sni_seen: list[str] = []
    server_ctx.sni_callback = lambda _sock, name, _ctx: sni_seen.append(str(name))
    server = LocalServer({"/img.png": serve(PNG)}, tls=server_ctx)
    yield server, client_ctx, sni_seen
    server.close()


def _tls_policy(server: LocalServer) -> FetchPolicy:
    # The emulator-style exception: this exact https origin may be on loopback.
    return FetchPolicy(("img.allowed.test",), trusted_origins=(f"https://img.allowed.test:{server.port}",))


def test_tls_connects_to_the_ip_but_verifies_the_name(
    tls_server: tuple[LocalServer, ssl.SSLContext, list[str]],
) -> None:
    server, client_ctx, sni_seen = tls_server
    resolved: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"]

    sni_seen.clear()
    with httpx.Client(verify=client_ctx, trust_env=False) as client:
        image = fetch_image(
            f"https://img.allowed.test:{server.port}/img.png?sig=x",
            _tls_policy(server),
            resolver=resolver,
            client=client,
        )
    assert image.sha256 == hashlib.sha256(PNG).hexdigest()
    assert image.final_url == f"https://img.allowed.test:{server.port}/img.png"
    assert resolved == ["img.allowed.test"]
    assert sni_seen == ["img.allowed.test"]
    assert server.requests[-1][1]["host"] == f"img.allowed.test:{server.port}"


def test_tls_certificate_for_another_name_is_refused(
    tls_server: tuple[LocalServer, ssl.SSLContext, list[str]],
) -> None:
    server, client_ctx, _ = tls_server
    policy = FetchPolicy(
        ("other.allowed.test",), trusted_origins=(f"https://other.allowed.test:{server.port}",)
    )
    before = len(server.requests)
    with httpx.Client(verify=client_ctx, trust_env=False) as client, pytest.raises(FetchError) as err:
        fetch_image(
            f"https://other.allowed.test:{server.port}/img.png",
            policy,
            resolver=lambda host, port: ["127.0.0.1"],
            client=client,
        )
    assert err.value.reason == "network"
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value) or "certificate" in str(err.value).lower()
    assert len(server.requests) == before


def test_default_client_verifies_certificates(
    tls_server: tuple[LocalServer, ssl.SSLContext, list[str]],
) -> None:
    server, _, _ = tls_server
    with pytest.raises(FetchError) as err:
        fetch_image(
            f"https://img.allowed.test:{server.port}/img.png",
            _tls_policy(server),
            resolver=lambda host, port: ["127.0.0.1"],
        )
    assert (err.value.reason, err.value.retryable) == ("network", True)
