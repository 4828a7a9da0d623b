"""FetchPolicy: validation and how allowed hosts are normalised (case, trailing dot, IDNA)."""

from __future__ import annotations

import httpx
import pytest
from image_pipeline.safe_fetch import FetchError, FetchPolicy, fetch_image

from tests.unit.safe_fetch.peers import FAKE_DNS, PNG, PUBLIC_A, FakeNet, fake_resolver, image_response

pytestmark = pytest.mark.timeout(60)


def test_policy_validation() -> None:
    with pytest.raises(TypeError):
        FetchPolicy("img.allowed.test")  # type: ignore[arg-type]
    for bad in ("*", "*.com", "a/b", "user@host"):
        with pytest.raises(ValueError, match="allowed host"):
            FetchPolicy((bad,))
    with pytest.raises(ValueError, match="trusted origin"):
        FetchPolicy(("a.test",), trusted_origins=("http://127.0.0.1:8123/path",))
    with pytest.raises(ValueError):
        FetchPolicy(("a.test",), max_bytes=0)
    policy = FetchPolicy(("IMG.Allowed.Test.", "*.CDN.test"))
    assert policy.allowed_hosts == ("img.allowed.test", "*.cdn.test")
    assert policy.host_allowed("img.allowed.test")
    assert policy.host_allowed("a.b.cdn.test")
    assert not policy.host_allowed("cdn.test")


def test_internationalised_allowed_host(net: FakeNet, net_client: httpx.Client) -> None:
    FAKE_DNS["xn--bcher-kva.allowed.test"] = [PUBLIC_A]
    try:
        net.public[(PUBLIC_A, 443)] = image_response(PNG)
        policy = FetchPolicy(("bücher.allowed.test",))
        assert policy.allowed_hosts == ("xn--bcher-kva.allowed.test",)
        image = fetch_image(
            " https://BÜCHER.allowed.test/i.png ", policy, resolver=fake_resolver, client=net_client
        )
        assert image.final_url == "https://xn--bcher-kva.allowed.test/i.png"
        assert net.seen[0]["host_header"] == net.seen[0]["sni"] == "xn--bcher-kva.allowed.test"
    finally:
        del FAKE_DNS["xn--bcher-kva.allowed.test"]


def test_any_host_and_any_port_are_set_in_code_only(net: FakeNet, net_client: httpx.Client) -> None:
    # "*" stays refused as an allow-list entry (a configured list cannot open every host) ...
    with pytest.raises(ValueError, match="allowed host"):
        FetchPolicy(("*",))
    # ... while any_host / any_port (webhook receivers) allow any name on any https port
    policy = FetchPolicy((), any_host=True, any_port=True)
    assert policy.host_allowed("anything.example") and not FetchPolicy(()).host_allowed("anything.example")
    net.public[(PUBLIC_A, 8443)] = image_response(PNG)
    image = fetch_image(
        "https://img.allowed.test:8443/i.png", policy, resolver=fake_resolver, client=net_client
    )
    assert image.final_url == "https://img.allowed.test:8443/i.png"
    assert net.seen[0]["ip"] == PUBLIC_A and net.seen[0]["host_header"] == "img.allowed.test:8443"
    # the address rules still apply: names resolving to blocked addresses, IP literals, and http
    for url, reason in [
        ("https://loop.allowed.test:8443/i.png", "address_blocked"),
        ("https://2130706433:8443/i.png", "address_blocked"),
        ("https://[::ffff:169.254.169.254]/i.png", "address_blocked"),
        ("http://img.allowed.test/i.png", "scheme"),
    ]:
        with pytest.raises(FetchError) as err:
            fetch_image(url, policy, resolver=fake_resolver, client=net_client)
        assert err.value.reason == reason, url
    assert len(net.seen) == 1
