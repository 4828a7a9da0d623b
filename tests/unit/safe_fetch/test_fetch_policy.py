"""FetchPolicy: validation and how allowed hosts are normalised (case, trailing dot, IDNA)."""

from __future__ import annotations

import httpx
import pytest
from image_pipeline.safe_fetch import FetchPolicy, fetch_image

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
