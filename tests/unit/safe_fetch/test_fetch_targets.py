"""URLs refused before anything is sent: IP literals in any spelling, schemes, hosts, ports, DNS answers."""

from __future__ import annotations

import socket

import httpx
import pytest
from image_pipeline.safe_fetch import FetchError, FetchPolicy, fetch_image

from tests.unit.safe_fetch.peers import (
    FakeNet,
    LocalServer,
    fake_resolver,
    fill_ports,
    forbidden_resolver,
    local_policy,
)

pytestmark = pytest.mark.timeout(60)


# {c}: canary port, {t}: port of the trusted local origin (exactly http://127.0.0.1:{t} is trusted).
ATTACKS: list[tuple[str, str, str]] = [
    # IP literals (no DNS, no connection)
    ("loopback", "https://127.0.0.1:{c}/x.png", "address_blocked"),
    ("loopback-http", "http://127.0.0.1:{c}/x.png", "address_blocked"),
    ("loopback-other-127", "https://127.10.20.30:{c}/", "address_blocked"),
    ("private-10", "https://10.0.0.1:{c}/", "address_blocked"),
    ("private-172", "https://172.16.5.4:{c}/", "address_blocked"),
    ("private-192", "https://192.168.1.1:{c}/", "address_blocked"),
    ("metadata", "http://169.254.169.254:{c}/latest/meta-data/iam/", "address_blocked"),
    ("cgnat", "https://100.64.0.1:{c}/", "address_blocked"),
    ("unspecified", "http://0.0.0.0:{c}/", "address_blocked"),
    ("zero-short", "http://0:{c}/", "address_blocked"),
    ("broadcast", "https://255.255.255.255:{c}/", "address_blocked"),
    ("multicast", "https://224.0.0.1:{c}/", "address_blocked"),
    ("benchmark", "https://198.18.0.1:{c}/", "address_blocked"),
    ("decimal", "http://2130706433:{c}/", "address_blocked"),
    ("decimal-metadata", "http://2852039166:{c}/", "address_blocked"),
    ("octal", "http://0177.0.0.1:{c}/", "address_blocked"),
    ("octal-metadata", "http://0251.0376.0251.0376:{c}/", "address_blocked"),
    ("hex-dotted", "http://0x7f.0x0.0x0.0x1:{c}/", "address_blocked"),
    ("hex-single", "http://0x7f000001:{c}/", "address_blocked"),
    ("short-127.1", "http://127.1:{c}/", "address_blocked"),
    ("short-10.1", "https://10.1:{c}/", "address_blocked"),
    ("mixed-radix", "http://0x7f.1.0:{c}/", "address_blocked"),
    ("trailing-dot-ip", "https://127.0.0.1.:{c}/", "address_blocked"),
    ("v6-loopback", "https://[::1]:{c}/", "address_blocked"),
    ("v6-unspecified", "https://[::]:{c}/", "address_blocked"),
    ("v4-mapped", "https://[::ffff:127.0.0.1]:{c}/", "address_blocked"),
    ("v4-mapped-hex", "https://[::ffff:a9fe:a9fe]:{c}/", "address_blocked"),
    ("v4-compatible", "https://[::127.0.0.1]:{c}/", "address_blocked"),
    ("nat64", "https://[64:ff9b::7f00:1]:{c}/", "address_blocked"),
    ("6to4", "https://[2002:7f00:1::1]:{c}/", "address_blocked"),
    ("teredo", "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]:{c}/", "address_blocked"),
    ("v6-link-local-zone", "https://[fe80::1%25eth0]:{c}/", "address_blocked"),
    ("v6-ula", "https://[fd12:3456::1]:{c}/", "address_blocked"),
    ("v6-site-local", "https://[fec0::1]:{c}/", "address_blocked"),
    ("v6-multicast", "https://[ff02::1]:{c}/", "address_blocked"),
    ("public-ip-not-listed", "https://8.8.8.8/x.png", "host_not_allowed"),
    ("public-ip-non-canonical", "https://0x08080808/x.png", "host_not_allowed"),
    ("numeric-5-parts", "https://1.2.3.4.5/", "host_not_allowed"),
    ("percent-encoded-host", "https://%31%32%37.0.0.1:{c}/", "host_not_allowed"),
    # trusted origin must match exactly: scheme, host spelling and port
    ("trusted-port-other-scheme", "https://127.0.0.1:{t}/img.png", "address_blocked"),
    ("trusted-port-short-form", "http://127.1:{t}/img.png", "address_blocked"),
    ("trusted-port-decimal", "http://2130706433:{t}/img.png", "address_blocked"),
    ("trusted-port-mapped", "http://[::ffff:127.0.0.1]:{t}/img.png", "address_blocked"),
    ("trusted-localhost-name", "http://localhost:{t}/img.png", "host_not_allowed"),
    # scheme
    ("http-allowed-host", "http://img.allowed.test:{c}/x.png", "scheme"),
    ("ftp", "ftp://img.allowed.test/x.png", "scheme"),
    ("file", "file:///etc/passwd", "scheme"),
    ("gopher", "gopher://img.allowed.test:{c}/_x", "scheme"),
    ("no-scheme", "//img.allowed.test/x.png", "scheme"),
    ("data", "data:image/png;base64,iVBORw0KGgo=", "scheme"),
    # host allow-list and URL confusion
    ("not-on-list", "https://evil.test/x.png", "host_not_allowed"),
    ("apex-of-wildcard", "https://cdn.allowed.test.evil.test/x.png", "host_not_allowed"),
    ("suffix-without-dot", "https://evilallowed.test/x.png", "host_not_allowed"),
    ("localhost", "https://localhost:{c}/", "host_not_allowed"),
    ("userinfo-allowed-at-evil", "https://img.allowed.test@evil.test/x.png", "host_not_allowed"),
    ("userinfo-allowed-at-loopback", "https://img.allowed.test@127.0.0.1:{c}/", "host_not_allowed"),
    ("userinfo-on-allowed", "https://user:pw@img.allowed.test/x.png", "host_not_allowed"),
    ("backslash-userinfo", "https://evil.test\\@img.allowed.test/x.png", "host_not_allowed"),
    ("empty-host", "https:///x.png", "host_not_allowed"),
    # allowed hosts are fetched from port 443 only (an explicit :443 is the same URL)
    ("port-canary-on-allowed-host", "https://img.allowed.test:{c}/x.png", "port_not_allowed"),
    ("port-canary-on-wildcard-host", "https://x.cdn.allowed.test:{c}/x.png", "port_not_allowed"),
    ("port-canary-on-host-resolving-loopback", "https://loop.allowed.test:{c}/x.png", "port_not_allowed"),
    ("port-8443", "https://img.allowed.test:8443/x.png", "port_not_allowed"),
    ("port-80-with-https", "https://img.allowed.test:80/x.png", "port_not_allowed"),
    ("port-trusted-origin-port-on-allowed-host", "https://img.allowed.test:{t}/img.png", "port_not_allowed"),
    # names that resolve to blocked addresses (checked before any connection; port 443 of the
    # internal network is the canary, see FakeNet)
    ("dns-private", "https://internal.allowed.test/x.png", "address_blocked"),
    ("dns-metadata", "https://meta.allowed.test/x.png", "address_blocked"),
    ("dns-loopback", "https://loop.allowed.test/x.png", "address_blocked"),
    ("dns-one-of-many", "https://mixed.allowed.test/x.png", "address_blocked"),
    ("dns-unspecified", "https://zero.allowed.test/x.png", "address_blocked"),
    ("dns-v6-loopback", "https://v6loop.allowed.test/x.png", "address_blocked"),
    ("dns-v4-mapped", "https://mapped.allowed.test/x.png", "address_blocked"),
    ("dns-nat64", "https://nat64.allowed.test/x.png", "address_blocked"),
    ("dns-ula", "https://ula.allowed.test/x.png", "address_blocked"),
    ("dns-cgnat", "https://cgnat.allowed.test/x.png", "address_blocked"),
    ("dns-nxdomain", "https://nope.allowed.test/x.png", "dns"),
    ("dns-garbage", "https://garbage.allowed.test/x.png", "dns"),
    ("dns-empty", "https://empty.allowed.test/x.png", "dns"),
]

# Rows that need no DNS at all: also run with the real default client and a resolver that fails.
NO_DNS_ATTACKS = [row for row in ATTACKS if not row[0].startswith("dns-")]


@pytest.mark.parametrize(("name", "template", "reason"), ATTACKS, ids=[row[0] for row in ATTACKS])
def test_attack_urls_blocked(
    name: str,
    template: str,
    reason: str,
    canary: LocalServer,
    srv: LocalServer,
    net: FakeNet,
    net_client: httpx.Client,
) -> None:
    url = fill_ports(template, canary, srv) + "?X-Amz-Signature=SECRET-SIGNATURE"
    before = len(srv.requests)
    with pytest.raises(FetchError) as err:
        fetch_image(url, local_policy(srv), resolver=fake_resolver, client=net_client)
    assert err.value.reason == reason, str(err.value)
    assert err.value.retryable is False
    assert err.value.status_code is None
    assert "SECRET-SIGNATURE" not in str(err.value)
    assert net.seen == []  # nothing was sent anywhere, not even to a "public" address
    assert len(srv.requests) == before
    assert canary.settled_connections() == 0


@pytest.mark.parametrize(
    ("name", "template", "reason"), NO_DNS_ATTACKS, ids=[row[0] for row in NO_DNS_ATTACKS]
)
def test_attack_urls_blocked_with_default_client(
    name: str, template: str, reason: str, canary: LocalServer, srv: LocalServer
) -> None:
    url = fill_ports(template, canary, srv)
    before = len(srv.requests)
    with pytest.raises(FetchError) as err:
        fetch_image(url, local_policy(srv), resolver=forbidden_resolver)
    assert err.value.reason == reason, str(err.value)
    assert len(srv.requests) == before
    assert canary.settled_connections() == 0


def test_dns_temporary_failure_is_retryable() -> None:
    def flaky(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    with pytest.raises(FetchError) as err:
        fetch_image("https://img.allowed.test/x.png", FetchPolicy(("img.allowed.test",)), resolver=flaky)
    assert (err.value.reason, err.value.retryable) == ("dns", True)
