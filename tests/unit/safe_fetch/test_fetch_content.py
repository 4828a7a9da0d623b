"""Content and limits: image types, deadlines, size cap, truncation, HTTP status and error messages."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

import httpx
import pytest
from image_pipeline.safe_fetch import FetchedImage, FetchError, FetchPolicy, fetch_image

from tests.unit.safe_fetch.peers import (
    JPEG,
    PNG,
    PUBLIC_A,
    WEBP,
    FakeNet,
    LocalServer,
    fake_resolver,
    image_response,
    local_policy,
)

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("path", "body", "content_type", "extension"),
    [
        ("/img.png", PNG, "image/png", "png"),
        ("/img.jpg", JPEG, "image/jpeg", "jpg"),
        ("/img.webp", WEBP, "image/webp", "webp"),
    ],
    ids=["png", "jpeg", "webp"],
)
def test_happy_path_default_client(
    srv: LocalServer, path: str, body: bytes, content_type: str, extension: str
) -> None:
    image = fetch_image(f"{srv.origin}{path}?X-Amz-Signature=abc#frag", local_policy(srv))
    assert isinstance(image, FetchedImage)
    assert (image.content_type, image.extension) == (content_type, extension)
    assert image.body == body
    assert image.sha256 == hashlib.sha256(body).hexdigest()
    assert (image.width, image.height) == (40, 30)
    assert image.final_url == f"{srv.origin}{path}"
    assert "abc" not in repr(image)
    headers = srv.requests[-1][1]
    assert headers["accept-encoding"] == "identity"
    assert headers["host"] == f"127.0.0.1:{srv.port}"


CONTENT_ATTACKS: list[tuple[str, str, dict[str, Any], str, bool]] = [
    # (id, path, policy overrides, reason, retryable)
    ("trickle-body", "/trickle-body", {"deadline_seconds": 0.6}, "deadline", True),
    ("trickle-headers", "/trickle-headers", {"deadline_seconds": 0.6}, "deadline", True),
    ("stall-after-headers", "/stall-body", {"deadline_seconds": 0.6}, "deadline", True),
    ("stall-before-response", "/stall-headers", {"deadline_seconds": 0.6}, "deadline", True),
    ("oversized-content-length", "/big-length", {"max_bytes": 100_000}, "too_large", False),
    ("oversized-no-length", "/big-no-length", {"max_bytes": 100_000}, "too_large", False),
    ("oversized-chunked", "/big-chunked", {"max_bytes": 100_000}, "too_large", False),
    ("html-as-png", "/html", {}, "not_image", False),
    ("endless-html", "/endless-html", {}, "not_image", False),
    ("empty-body", "/empty", {}, "not_image", False),
    ("corrupt-png", "/corrupt", {}, "not_image", False),
    ("gzip-encoded", "/gzip", {}, "not_image", False),
    ("decompression-bomb", "/bomb", {}, "too_large", False),
    ("dimensions-over-cap", "/big-dimensions", {"max_pixels": 1_000_000}, "too_large", False),
    ("truncated-content-length", "/truncated-length", {}, "truncated", True),
    ("truncated-chunked", "/truncated-chunked", {}, "truncated", True),
    ("truncated-close-delimited", "/truncated-close", {}, "truncated", True),
    ("status-403", "/403", {}, "http_status", False),
    ("status-404", "/404", {}, "http_status", False),
    ("status-410", "/410", {}, "http_status", False),
    ("status-429", "/429", {}, "http_status", True),
    ("status-500", "/500", {}, "http_status", True),
    ("status-503", "/503", {}, "http_status", True),
]


@pytest.mark.parametrize(
    ("name", "path", "overrides", "reason", "retryable"),
    CONTENT_ATTACKS,
    ids=[row[0] for row in CONTENT_ATTACKS],
)
def test_content_attacks(
    name: str,
    path: str,
    overrides: dict[str, Any],
    reason: str,
    retryable: bool,
    srv: LocalServer,
    canary: LocalServer,
) -> None:
    policy = local_policy(srv, **overrides)
    started = time.monotonic()
    with pytest.raises(FetchError) as err:
        fetch_image(f"{srv.origin}{path}?sig=SECRET-SIGNATURE", policy)
    elapsed = time.monotonic() - started
    assert err.value.reason == reason, str(err.value)
    assert err.value.retryable is retryable
    assert "SECRET-SIGNATURE" not in str(err.value)
    assert "127.0.0.1" in str(err.value)
    assert elapsed < policy.deadline_seconds + 0.5  # nothing outlives the total deadline
    if reason == "http_status":
        assert err.value.status_code == int(path[1:])
        assert err.value.link_expired is (err.value.status_code in (403, 404, 410))
    else:
        assert err.value.status_code is None
    assert canary.settled_connections() == 0


def test_deadline_covers_redirects_and_dns(srv: LocalServer) -> None:
    release = threading.Event()

    def slow_resolver(host: str, port: int) -> list[str]:
        release.wait(5)
        return [PUBLIC_A]

    started = time.monotonic()
    try:
        with pytest.raises(FetchError) as err:
            fetch_image(
                "https://img.allowed.test/x.png",
                FetchPolicy(("img.allowed.test",), deadline_seconds=0.3),
                resolver=slow_resolver,
            )
    finally:
        release.set()
    assert (err.value.reason, err.value.retryable) == ("deadline", True)
    assert time.monotonic() - started < 1.0


def test_deadline_checked_between_hops(net: FakeNet, net_client: httpx.Client) -> None:
    def slow_redirect(request: httpx.Request) -> httpx.Response:
        time.sleep(0.3)
        return httpx.Response(302, headers={"Location": "/again"})

    net.public[(PUBLIC_A, 443)] = slow_redirect
    with pytest.raises(FetchError) as err:
        fetch_image(
            "https://img.allowed.test/x.png",
            FetchPolicy(("img.allowed.test",), deadline_seconds=0.5, max_redirects=10),
            resolver=fake_resolver,
            client=net_client,
        )
    assert err.value.reason == "deadline"
    assert len(net.seen) == 2


def test_mock_transport_oversize_and_truncation(net: FakeNet, net_client: httpx.Client) -> None:
    policy = FetchPolicy(("img.allowed.test",), max_bytes=len(PNG) - 1)
    net.public[(PUBLIC_A, 443)] = image_response(PNG)
    with pytest.raises(FetchError) as err:
        fetch_image("https://img.allowed.test/x.png", policy, resolver=fake_resolver, client=net_client)
    assert err.value.reason == "too_large"

    def lying_length(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"Content-Length": str(len(PNG) + 10)}, stream=httpx.ByteStream(PNG)
        )

    net.public[(PUBLIC_A, 443)] = lying_length
    with pytest.raises(FetchError) as err:
        fetch_image(
            "https://img.allowed.test/x.png",
            FetchPolicy(("img.allowed.test",)),
            resolver=fake_resolver,
            client=net_client,
        )
    assert (err.value.reason, err.value.retryable) == ("truncated", True)


def test_error_message_names_host_not_query(srv: LocalServer) -> None:
    with pytest.raises(FetchError) as err:
        fetch_image(f"{srv.origin}/404?X-Amz-Credential=AKIA123&X-Amz-Signature=deadbeef", local_policy(srv))
    message = str(err.value)
    assert f"127.0.0.1:{srv.port}/404" in message
    assert "AKIA123" not in message and "deadbeef" not in message
    assert "404" in message
