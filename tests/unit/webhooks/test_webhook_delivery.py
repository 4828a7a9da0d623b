"""deliver: a real receiver on a trusted loopback origin, a canary nothing may reach, FakeNet for pinning."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from image_pipeline.webhooks import DeliveryResult, deliver, new_secret, sign
from standardwebhooks.webhooks import Webhook

from tests.unit.safe_fetch.peers import PUBLIC_A, PUBLIC_B, FakeNet
from tests.unit.webhooks.receiver import Receiver

pytestmark = pytest.mark.timeout(60)

SECRET = new_secret()
BODY = json.dumps(
    {"type": "task.stored", "timestamp": "2025-01-01T00:00:00Z", "data": {"taskId": "t-1"}}
).encode()


def signed(msg_id: str = "msg_delivery") -> dict[str, str]:
    return sign([SECRET], msg_id, int(time.time()), BODY)


def post(receiver: Receiver, path: str, timeout_seconds: float = 10.0) -> DeliveryResult:
    return deliver(
        f"{receiver.origin}{path}",
        BODY,
        signed(),
        trusted_origins=[receiver.origin],
        timeout_seconds=timeout_seconds,
    )


def forbidden_resolver(host: str, port: int) -> list[str]:
    raise AssertionError(f"no DNS lookup expected, got one for {host}")


# --------------------------------------------------------------------------- a real receiver (trusted origin)


def test_2xx_is_delivered_and_verifies(receiver: Receiver) -> None:
    # Given a receiver on the trusted local origin
    headers = signed("msg_ok")
    # When the event is delivered
    result = deliver(
        f"{receiver.origin}/ok?token=abc",
        BODY,
        headers,
        trusted_origins=[receiver.origin],
        resolver=forbidden_resolver,
    )
    # Then it is ok and the receiver got exactly one POST that standardwebhooks verifies
    assert result == DeliveryResult(status_code=200, error=None, ok=True)
    [got] = receiver.received
    assert (got.method, got.path, got.body) == ("POST", "/ok?token=abc", BODY)
    assert got.headers["content-type"] == "application/json"
    assert got.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert got.headers["webhook-id"] == "msg_ok"
    assert Webhook(SECRET).verify(got.body, got.headers) == json.loads(BODY)
    assert receiver.connections == 1


@pytest.mark.parametrize(("path", "code"), [("/accepted", 202), ("/no-content", 204)])
def test_every_2xx_is_ok(receiver: Receiver, path: str, code: int) -> None:
    assert post(receiver, path) == DeliveryResult(status_code=code, error=None, ok=True)


@pytest.mark.parametrize(("path", "code"), [("/fail", 500), ("/gone", 410), ("/missing", 404)])
def test_other_statuses_are_not_ok(receiver: Receiver, path: str, code: int) -> None:
    result = deliver(
        f"{receiver.origin}{path}?token=SECRET-QUERY",
        BODY,
        signed(),
        trusted_origins=[receiver.origin],
    )
    assert (result.ok, result.status_code) == (False, code)
    assert result.error == f"http_status: {receiver.origin} answered HTTP {code}"


def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    result = post(receiver, "/redirect")
    assert (result.ok, result.status_code) == (False, 302)
    assert result.error is not None and "redirects are not followed" in result.error
    assert receiver.hits("/redirect") == 1
    assert receiver.hits("/ok") == 0


def test_a_slow_answer_hits_the_timeout(receiver: Receiver) -> None:
    started = time.monotonic()
    result = post(receiver, "/slow", timeout_seconds=1.0)
    elapsed = time.monotonic() - started
    assert (result.ok, result.status_code) == (False, None)
    assert result.error is not None and result.error.startswith("deadline: "), result.error
    assert 0.9 <= elapsed < 3.0


@pytest.mark.parametrize("path", ["/endless", "/huge"])
def test_a_huge_answer_is_read_only_up_to_the_cap(receiver: Receiver, path: str) -> None:
    # Given a receiver that answers 200 and then a body without end (or of 1 GB)
    started = time.monotonic()
    result = post(receiver, path, timeout_seconds=5.0)
    # Then deliver reads its first 64 KiB, hangs up long before the deadline, and the 200 counts
    assert result == DeliveryResult(status_code=200, error=None, ok=True)
    assert time.monotonic() - started < 2.5
    if path == "/endless":
        for _ in range(100):  # the receiver notices the hang-up on its next write
            if "endless_hung_up" in receiver.notes:
                break
            time.sleep(0.05)
        assert receiver.notes["endless_hung_up"] is True


def test_the_status_decides_even_when_the_body_trickles(receiver: Receiver) -> None:
    # The receiver said 200 at once: a body slower than the deadline is cut off, the delivery stands
    started = time.monotonic()
    assert post(receiver, "/trickle", timeout_seconds=1.0) == DeliveryResult(200, None, True)
    assert time.monotonic() - started < 2.5


def test_nothing_listening_is_a_network_error(receiver: Receiver) -> None:
    port = receiver.port
    receiver.close()
    result = deliver(
        f"http://127.0.0.1:{port}/ok", BODY, signed(), trusted_origins=[f"http://127.0.0.1:{port}"]
    )
    assert (result.ok, result.status_code) == (False, None)
    assert result.error is not None and result.error.startswith("network: ")


# --------------------------------------------------------------------------- the canary: zero connections


@pytest.fixture
def trusted(receiver: Receiver) -> list[str]:
    return [receiver.origin]  # the receiver is listed; the canary (another port) is not


CANARY_URLS = [
    "http://127.0.0.1:{c}/hook",
    "https://127.0.0.1:{c}/hook",
    "http://2130706433:{c}/hook",
    "https://0x7f000001:{c}/hook",
    "https://017700000001:{c}/hook",
    "https://[::1]:{c}/hook",
    "https://[::ffff:127.0.0.1]:{c}/hook",
    "http://localhost:{c}/hook",
    "https://localhost:{c}/hook",
    "https://foo.localhost:{c}/hook",
]


@pytest.mark.parametrize("template", CANARY_URLS)
def test_unlisted_loopback_urls_never_reach_the_canary(
    template: str, canary: Receiver, trusted: list[str]
) -> None:
    url = template.replace("{c}", str(canary.port)) + "?token=SECRET-QUERY"
    result = deliver(url, BODY, signed(), trusted_origins=trusted, resolver=forbidden_resolver)
    assert (result.ok, result.status_code) == (False, None)
    assert result.error is not None and result.error.startswith("address_blocked: "), result.error
    assert "SECRET-QUERY" not in result.error
    assert canary.settled_connections() == 0  # checked again by the autouse fixture


@pytest.mark.parametrize(
    "answer", [["127.0.0.1"], ["::1"], [PUBLIC_A, "127.0.0.1"], ["::ffff:127.0.0.1"], ["0.0.0.0"]]
)
@pytest.mark.parametrize("scheme", ["https", "http"])
def test_a_name_resolving_to_loopback_never_reaches_the_canary(
    answer: list[str], scheme: str, canary: Receiver, trusted: list[str]
) -> None:
    # Given a public-looking name whose DNS answer includes loopback
    lookups: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return answer

    # (https on port 443, the only port a webhook may use: the canary's port is refused before DNS)
    port = "" if scheme == "https" else f":{canary.port}"
    url = f"{scheme}://hooks.example.test{port}/services/SECRET-PATH"
    # When it is delivered with the real HTTP client
    result = deliver(url, BODY, signed(), trusted_origins=trusted, resolver=resolver)
    # Then it is refused before any connection (http: even before the lookup)
    assert (result.ok, result.status_code) == (False, None)
    assert result.error is not None and "SECRET-PATH" not in result.error
    if scheme == "https":
        assert lookups == ["hooks.example.test"]
        assert result.error.startswith("address_blocked: "), result.error
        assert "hooks.example.test resolves to" in result.error
    else:
        assert lookups == []
        assert result.error.startswith("scheme: ")
    assert canary.settled_connections() == 0


def test_an_invalid_url_is_an_error_not_an_exception(trusted: list[str]) -> None:
    for url in ("", "not a url", "https://user:pw@hooks.example.test/", "https://intranet/hook"):
        result = deliver(url, BODY, signed(), trusted_origins=trusted, resolver=forbidden_resolver)
        assert not result.ok and result.status_code is None and result.error


# ------------------------------------------------------------ pinning (FakeNet: no real internet)


class Rebinding:
    """A public address the first time, loopback afterwards (DNS rebinding)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return [PUBLIC_A] if len(self.calls) == 1 else ["127.0.0.1"]


@pytest.fixture
def rebinding_net(canary: Receiver) -> Iterator[tuple[Rebinding, FakeNet, list[httpx.Request]]]:
    rebinding = Rebinding()
    net = FakeNet(rebinding, internal_ports={443: canary.port, 8443: canary.port})
    seen: list[httpx.Request] = []

    def receive(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(204)

    net.public[(PUBLIC_A, 443)] = receive
    net.public[(PUBLIC_A, 8443)] = receive
    yield rebinding, net, seen
    net.close()


def test_the_post_goes_to_the_checked_address(
    rebinding_net: tuple[Rebinding, FakeNet, list[httpx.Request]],
) -> None:
    rebinding, net, seen = rebinding_net
    headers = {**signed("msg_pinned"), "Host": "evil.test", "Connection": "keep-alive"}
    with httpx.Client(transport=net, trust_env=False) as client:
        result = deliver(
            "https://hooks.example.test/hook",
            BODY,
            headers,
            trusted_origins=(),
            resolver=rebinding,
            client=client,
        )
    assert result == DeliveryResult(status_code=204, error=None, ok=True)
    assert rebinding.calls == ["hooks.example.test"]  # resolved once
    [hop] = net.seen
    assert (hop["ip"], hop["url_host"], hop["port"]) == (PUBLIC_A, PUBLIC_A, 443)
    assert hop["host_header"] == "hooks.example.test"  # the caller cannot override Host
    assert hop["sni"] == "hooks.example.test"  # certificate checked against the name
    [request] = seen
    assert request.method == "POST" and request.content == BODY
    assert request.headers["connection"] == "close"
    Webhook(SECRET).verify(request.content, dict(request.headers))


def test_a_port_other_than_443_is_never_looked_up_or_called(
    rebinding_net: tuple[Rebinding, FakeNet, list[httpx.Request]],
) -> None:
    """Else a client could learn which ports of a public host answer from notification.lastError."""
    rebinding, net, seen = rebinding_net
    with httpx.Client(transport=net, trust_env=False) as client:
        result = deliver(
            "https://hooks.example.test:8443/hook",
            BODY,
            signed(),
            trusted_origins=(),
            resolver=rebinding,
            client=client,
        )
    assert (result.ok, result.status_code) == (False, None)
    assert result.error == (
        "port_not_allowed: refusing https://hooks.example.test:8443: webhooks are delivered to port 443 only"
    )
    assert rebinding.calls == [] and net.seen == [] and seen == []


def test_a_dead_address_falls_through_to_the_next_checked_one(canary: Receiver) -> None:
    net = FakeNet(lambda host, port: ["93.184.216.99", PUBLIC_B])
    net.public[(PUBLIC_B, 443)] = lambda request: httpx.Response(200)
    with httpx.Client(transport=net, trust_env=False) as client:
        result = deliver(
            "https://hooks.example.test/hook",
            BODY,
            signed(),
            trusted_origins=(),
            resolver=lambda host, port: ["93.184.216.99", PUBLIC_B],
            client=client,
        )
    net.close()
    assert result.ok
    assert [s["ip"] for s in net.seen] == ["93.184.216.99", PUBLIC_B]


def test_dns_failure_is_an_error(trusted: list[str]) -> None:
    def nxdomain(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    result = deliver(
        "https://nope.example.test/h", BODY, signed(), trusted_origins=trusted, resolver=nxdomain
    )
    assert (result.ok, result.status_code) == (False, None)
    assert result.error is not None and result.error.startswith("dns: ")
