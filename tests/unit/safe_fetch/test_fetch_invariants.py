"""Invariants: only public or trusted endpoints are contacted, no thread outlives a fetch, errors pickle."""

from __future__ import annotations

import pickle
import threading
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from image_pipeline.safe_fetch import FetchError, FetchPolicy, fetch_image

from tests.unit.safe_fetch.peers import (
    PNG,
    PUBLIC_A,
    PUBLIC_B,
    FakeNet,
    LocalServer,
    fake_resolver,
    fill_ports,
    image_response,
    local_policy,
)

pytestmark = pytest.mark.timeout(60)


_HOST_PIECES = st.one_of(
    st.sampled_from(
        [
            "img.allowed.test",
            "a.allowed.test",
            "IMG.ALLOWED.TEST.",
            "internal.allowed.test",
            "mixed.allowed.test",
            "mapped.allowed.test",
            "evil.test",
            "localhost",
            "[::1]",
            "[::ffff:7f00:1]",
            "[64:ff9b::a00:1]",
            PUBLIC_A,
            "127.1",
            "0",
        ]
    ),
    st.integers(min_value=0, max_value=2**32 - 1).map(str),  # decimal IPv4
    st.integers(min_value=0, max_value=2**32 - 1).map(hex),  # hex IPv4
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda o: ".".join("0" + format(x, "o") for x in o)),
)


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    scheme=st.sampled_from(["https", "http", "HTTPS", "ftp", ""]),
    userinfo=st.sampled_from(["", "img.allowed.test@", "u:p@"]),
    host=_HOST_PIECES,
    port=st.sampled_from(["", ":443", ":8443", ":{c}", ":{t}"]),
    path=st.sampled_from(["/x.png", "/x.png?sig=1", "", "/%2e%2e/x"]),
)
def test_whatever_the_url_only_public_or_trusted_endpoints_are_contacted(
    scheme: str, userinfo: str, host: str, port: str, path: str, canary: LocalServer, srv: LocalServer
) -> None:
    url = fill_ports(
        f"{scheme}://{userinfo}{host}{port}{path}" if scheme else f"//{host}{port}{path}", canary, srv
    )
    net = FakeNet(fake_resolver, internal_ports={443: canary.port})
    for ip in (PUBLIC_A, PUBLIC_B):
        for p in (443, 8443, canary.port, srv.port):
            net.public[(ip, p)] = image_response(PNG)
    policy = FetchPolicy(("*.allowed.test", "img.allowed.test"), trusted_origins=(srv.origin,))
    with httpx.Client(transport=net, trust_env=False) as client:
        try:
            fetch_image(url, policy, resolver=fake_resolver, client=client)
        except FetchError as err:
            assert err.reason in {
                "scheme",
                "host_not_allowed",
                "port_not_allowed",
                "address_blocked",
                "dns",
                "http_status",
            }
    net.close()
    for seen in net.seen:
        assert (seen["ip"] in (PUBLIC_A, PUBLIC_B) and seen["port"] == 443) or (
            seen["ip"],
            seen["port"],
        ) == ("127.0.0.1", srv.port)
    assert canary.settled_connections() == 0


def test_no_threads_left_behind(srv: LocalServer) -> None:
    fetch_image(f"{srv.origin}/img.png", local_policy(srv))
    with pytest.raises(FetchError):
        fetch_image(f"{srv.origin}/stall-headers", local_policy(srv, deadline_seconds=0.3))
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(t.name.startswith("safe-fetch") for t in threading.enumerate()):
        time.sleep(0.01)
    assert [t.name for t in threading.enumerate() if t.name.startswith("safe-fetch")] == []


def test_fetch_error_survives_pickling() -> None:
    err = FetchError("http_status", "img.allowed.test answered HTTP 410", retryable=False, status_code=410)
    copy = pickle.loads(pickle.dumps(err))  # noqa: S301 - bytes we just made
    assert (copy.reason, copy.retryable, copy.status_code, str(copy)) == (
        "http_status",
        False,
        410,
        "img.allowed.test answered HTTP 410",
    )
    assert copy.link_expired
