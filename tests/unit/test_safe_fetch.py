"""safe_fetch: SSRF rules, pinning, redirects, deadline, size cap and content checks.

Everything runs on 127.0.0.1. Three kinds of peers:

* ``LocalServer``: real HTTP(S) servers on 127.0.0.1, port 0, in threads. The *canary* is one of
  them: no test may ever make a connection to it (checked after every test).
* ``FakeNet``: an httpx transport standing in for the internet. "Public" addresses (93.184.216.x)
  are answered in memory and never touched; any non-public address (loopback, 10/8, 169.254/16...)
  is treated as the internal network and forwarded to the real socket on 127.0.0.1 with the same
  port, so a request that slipped through would land on the canary. The internal network's port 443
  is the canary too (``internal_ports``), since https URLs on allowed hosts may only use port 443.
  A request whose host is still a *name* (not pinned) is resolved again through the test's
  resolver, as the OS would.
* trusted origins ``http://127.0.0.1:<port>``: the only way the fetcher itself may reach loopback.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import ipaddress
import pickle
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from image_pipeline.safe_fetch import (
    FetchedImage,
    FetchError,
    FetchPolicy,
    blocked_address_reason,
    fetch_image,
    parse_numeric_ipv4,
)
from PIL import Image

pytestmark = pytest.mark.timeout(60)

# ----------------------------------------------------------------------------------------- test images


def _encode(fmt: str, size: tuple[int, int] = (40, 30), mode: str = "RGB", **options: Any) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (10, 120, 200) if mode == "RGB" else 0).save(out, fmt, **options)
    return out.getvalue()


PNG = _encode("PNG")
JPEG = _encode("JPEG", quality=85)
WEBP = _encode("WEBP", quality=80)
BIG_DIM_PNG = _encode("PNG", size=(2_000, 2_000), mode="L")  # small file, 4 M pixels


def _bomb_png(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 256))
        + chunk(b"IEND", b"")
    )


BOMB_PNG = _bomb_png(100_000, 100_000)
HTML = b"<!doctype html><html><head><title>Login</title></head><body>" + b"x" * 4000 + b"</body></html>"

PUBLIC_A = "93.184.216.34"
PUBLIC_B = "93.184.216.35"
PUBLIC_DEAD = "93.184.216.99"  # FakeNet has no route: connect error
PUBLIC_V6 = "2606:4700::6810:85e5"

# ----------------------------------------------------------------------------------------- local servers

Route = Callable[["_Handler", "LocalServer", dict[str, list[str]]], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self.server.owner.handle(self)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def raw(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            return False
        return True

    def respond(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        head = [f"HTTP/1.1 {status} X", "Connection: close"]
        all_headers = {"Content-Length": str(len(body)), **(headers or {})}
        head += [f"{k}: {v}" for k, v in all_headers.items() if v is not None]
        self.raw(("\r\n".join(head) + "\r\n\r\n").encode() + body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: LocalServer

    def get_request(self) -> tuple[Any, Any]:
        # accept and count under the lock: see LocalServer.settled_connections
        with self.owner.lock:
            conn, addr = self.socket.accept()
            self.owner.connections += 1
        return conn, addr


class LocalServer:
    """HTTP server on 127.0.0.1:0; counts TCP connections and records requests."""

    def __init__(self, routes: dict[str, Route] | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = dict(routes or {})
        self.lock = threading.Lock()
        self.connections = 0
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.stop = threading.Event()
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = int(self.httpd.server_address[1])
        self.origin = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def handle(self, h: _Handler) -> None:
        parts = urlsplit(h.path)
        with self.lock:
            self.requests.append((h.path, {k.lower(): v for k, v in h.headers.items()}))
        route = self.routes.get(parts.path)
        h.close_connection = True
        if route is None:
            h.respond(404, b"not found")
        else:
            route(h, self, parse_qs(parts.query))

    def settled_connections(self) -> int:
        """Connections accepted so far plus any still waiting in the kernel's accept queue."""
        with self.lock:
            pending, _, _ = select.select([self.httpd.socket], [], [], 0)
            return self.connections + (1 if pending else 0)

    def hits(self, path: str) -> int:
        with self.lock:
            return sum(1 for p, _ in self.requests if urlsplit(p).path == path)

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


def serve(body: bytes, content_type: str = "image/png", **headers: str) -> Route:
    def route(h: _Handler, _srv: LocalServer, _q: dict[str, list[str]]) -> None:
        h.respond(200, body, {"Content-Type": content_type, **headers})

    return route


def status(code: int) -> Route:
    def route(h: _Handler, _srv: LocalServer, _q: dict[str, list[str]]) -> None:
        h.respond(code, b"nope", {"Content-Type": "text/plain"})

    return route


def redirect_to(location: str | None, code: int = 302) -> Route:
    def route(h: _Handler, _srv: LocalServer, _q: dict[str, list[str]]) -> None:
        h.respond(code, b"", {"Location": location} if location is not None else {})

    return route


def redirect_from_query(h: _Handler, _srv: LocalServer, q: dict[str, list[str]]) -> None:
    """/redirect?to=<location>: 302 to whatever the test asks (empty ``to``: no Location at all)."""
    location = q.get("to", [""])[0]
    h.respond(302, b"", {"Location": location} if location else {})


def trickle_body(h: _Handler, srv: LocalServer, _q: dict[str, list[str]]) -> None:
    body = PNG
    if not h.raw(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()):
        return
    for i in range(min(len(body), 200)):  # one byte every 50 ms, at most 10 s
        if srv.stop.wait(0.05) or not h.raw(body[i : i + 1]):
            return


def trickle_headers(h: _Handler, srv: LocalServer, _q: dict[str, list[str]]) -> None:
    head = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 400
    for i in range(len(head)):  # each byte comes well within any read timeout; only the deadline helps
        if srv.stop.wait(0.05) or not h.raw(head[i : i + 1]):
            return


def stall_after_headers(h: _Handler, srv: LocalServer, _q: dict[str, list[str]]) -> None:
    if h.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + PNG[:100]):
        srv.stop.wait(10)


def stall_before_response(_h: _Handler, srv: LocalServer, _q: dict[str, list[str]]) -> None:
    srv.stop.wait(10)


def oversized_with_length(h: _Handler, srv: LocalServer, _q: dict[str, list[str]]) -> None:
    if not h.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\nConnection: close\r\n\r\n"):
        return
    chunk = PNG + b"\x00" * (30_000 - len(PNG))
    for _ in range(10):
        if srv.stop.is_set() or not h.raw(chunk):
            return


def oversized_without_length(h: _Handler, srv: LocalServer, _q: dict[str, list[str]]) -> None:
    if not h.raw(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n" + PNG):
        return
    for _ in range(20):  # 600 KB, close-delimited
        if srv.stop.is_set() or not h.raw(b"\x00" * 30_000):
            return


def oversized_chunked(h: _Handler, srv: LocalServer, _q: dict[str, list[str]]) -> None:
    if not h.raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"):
        return
    data = PNG + b"\x00" * (30_000 - len(PNG))
    for _ in range(20):
        if srv.stop.is_set() or not h.raw(b"%x\r\n%s\r\n" % (len(data), data)):
            return
        data = b"\x00" * 30_000
    h.raw(b"0\r\n\r\n")


def truncated_with_length(h: _Handler, _srv: LocalServer, _q: dict[str, list[str]]) -> None:
    h.raw(f"HTTP/1.1 200 OK\r\nContent-Length: {len(PNG) + 500}\r\n\r\n".encode() + PNG[:-20])


def truncated_chunked(h: _Handler, _srv: LocalServer, _q: dict[str, list[str]]) -> None:
    h.raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s" % (len(PNG), PNG[:50]))


def truncated_close_delimited(h: _Handler, _srv: LocalServer, _q: dict[str, list[str]]) -> None:
    h.raw(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + PNG[: len(PNG) // 2])


def endless_html(h: _Handler, srv: LocalServer, _q: dict[str, list[str]]) -> None:
    if not h.raw(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n<html>"):
        return
    for _ in range(200):  # 6 MB if nobody hangs up: the fetcher must stop at the magic bytes
        if srv.stop.is_set() or not h.raw(b"<p>hello</p>" * 2_500):
            return


def _routes() -> dict[str, Route]:
    return {
        "/img.png": serve(PNG, "application/octet-stream"),
        "/img.jpg": serve(JPEG, "image/png"),  # lying Content-Type: the magic bytes win
        "/img.webp": serve(WEBP, "text/plain"),
        "/redirect": redirect_from_query,
        "/hop": redirect_to("/img.png?sig=second-hop-secret", 301),
        "/loop": redirect_to("/loop"),
        "/trickle-body": trickle_body,
        "/trickle-headers": trickle_headers,
        "/stall-body": stall_after_headers,
        "/stall-headers": stall_before_response,
        "/big-length": oversized_with_length,
        "/big-no-length": oversized_without_length,
        "/big-chunked": oversized_chunked,
        "/truncated-length": truncated_with_length,
        "/truncated-chunked": truncated_chunked,
        "/truncated-close": truncated_close_delimited,
        "/html": serve(HTML, "image/png"),
        "/endless-html": endless_html,
        "/empty": serve(b"", "image/png"),
        "/corrupt": serve(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, "image/png"),
        "/bomb": serve(BOMB_PNG),
        "/big-dimensions": serve(BIG_DIM_PNG),
        "/gzip": serve(PNG, "image/png", **{"Content-Encoding": "gzip"}),
        "/403": status(403),
        "/404": status(404),
        "/410": status(410),
        "/429": status(429),
        "/500": status(500),
        "/503": status(503),
    }


# ----------------------------------------------------------------------------------------- fake network

FAKE_DNS: dict[str, list[str]] = {
    "img.allowed.test": [PUBLIC_A],
    "a.allowed.test": [PUBLIC_A],
    "b.allowed.test": [PUBLIC_B],
    "x.cdn.allowed.test": [PUBLIC_B],
    "internal.allowed.test": ["10.0.0.5"],
    "meta.allowed.test": ["169.254.169.254"],
    "mixed.allowed.test": [PUBLIC_A, "127.0.0.1"],
    "loop.allowed.test": ["127.0.0.1"],
    "zero.allowed.test": ["0.0.0.0"],
    "v6loop.allowed.test": ["::1"],
    "mapped.allowed.test": ["::ffff:169.254.169.254"],
    "nat64.allowed.test": ["64:ff9b::a9fe:a9fe"],
    "ula.allowed.test": ["fd00::1"],
    "cgnat.allowed.test": ["100.64.1.2"],
    "dual.allowed.test": [PUBLIC_V6, PUBLIC_A],
    "flaky.allowed.test": [PUBLIC_DEAD, PUBLIC_B],
    "garbage.allowed.test": ["not-an-ip"],
    "empty.allowed.test": [],
}


def fake_resolver(host: str, port: int) -> list[str]:
    if host not in FAKE_DNS:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return list(FAKE_DNS[host])


def forbidden_resolver(host: str, port: int) -> list[str]:
    raise AssertionError(f"no DNS lookup expected, got one for {host}")


class FakeNet(httpx.BaseTransport):
    """The 'internet' for tests; see the module docstring."""

    def __init__(
        self, dns: Callable[[str, int], list[str]], internal_ports: dict[int, int] | None = None
    ) -> None:
        self.dns = dns
        self.internal_ports = dict(internal_ports or {})  # internal port -> port on 127.0.0.1
        self.public: dict[tuple[str, int], Callable[[httpx.Request], httpx.Response]] = {}
        self.seen: list[dict[str, Any]] = []
        self._loopback: httpx.HTTPTransport | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url_host = request.url.host
        port = request.url.port or {"http": 80, "https": 443}[request.url.scheme]
        try:
            ip = ipaddress.ip_address(url_host.split("%")[0])
        except ValueError:  # a name reached the network: resolve it again, like a real socket would
            ip = ipaddress.ip_address(self.dns(url_host, port)[0])
        self.seen.append(
            {
                "ip": str(ip),
                "port": port,
                "url_host": url_host,
                "host_header": request.headers.get("host"),
                "sni": request.extensions.get("sni_hostname"),
                "path": request.url.raw_path.decode(),
            }
        )
        if str(ip) in (PUBLIC_A, PUBLIC_B, PUBLIC_V6) and (str(ip), port) in self.public:
            return self.public[(str(ip), port)](request)
        if blocked_address_reason(ip) is not None:  # "internal network": the canary lives there
            forwarded = httpx.Request(
                "GET",
                request.url.copy_with(
                    scheme="http", host="127.0.0.1", port=self.internal_ports.get(port, port)
                ),
                headers=request.headers,
                extensions={"timeout": request.extensions.get("timeout", {})},
            )
            if self._loopback is None:
                self._loopback = httpx.HTTPTransport(verify=False)
            return self._loopback.handle_request(forwarded)
        raise httpx.ConnectError(f"fake network: no route to {ip}", request=request)

    def close(self) -> None:
        if self._loopback is not None:
            self._loopback.close()


def image_response(body: bytes = PNG, **headers: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(200, content=body, headers={"Content-Type": "image/png", **headers})


def redirect_response(location: str, code: int = 302) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(code, headers={"Location": location})


# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def canary() -> Iterator[LocalServer]:
    server = LocalServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def srv() -> Iterator[LocalServer]:
    server = LocalServer(_routes())
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _no_canary_traffic(canary: LocalServer) -> Iterator[None]:
    before = canary.settled_connections()
    yield
    assert canary.settled_connections() == before, "a connection reached the canary on 127.0.0.1"
    assert canary.requests == []


@pytest.fixture
def net(canary: LocalServer) -> Iterator[FakeNet]:
    fake = FakeNet(fake_resolver, internal_ports={443: canary.port})
    yield fake
    fake.close()


@pytest.fixture
def net_client(net: FakeNet) -> Iterator[httpx.Client]:
    with httpx.Client(transport=net, trust_env=False) as client:
        yield client


def local_policy(server: LocalServer, **overrides: Any) -> FetchPolicy:
    options: dict[str, Any] = {
        "allowed_hosts": ("allowed.test", "*.allowed.test"),
        "trusted_origins": (server.origin,),
        "deadline_seconds": 5.0,
    }
    options.update(overrides)
    return FetchPolicy(**options)


# ================================================================================= attack table (no I/O)

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


def _fill(template: str, canary: LocalServer, srv: LocalServer) -> str:
    return template.replace("{c}", str(canary.port)).replace("{t}", str(srv.port))


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
    url = _fill(template, canary, srv) + "?X-Amz-Signature=SECRET-SIGNATURE"
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
    url = _fill(template, canary, srv)
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


# ================================================================================= redirects

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
    target = _fill(location, canary, srv)
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


# ================================================================================= pinning / rebinding


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


def _tls_material(names: list[str]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting a fresh CA) for a certificate valid for ``names``."""
    crypto = pytest.importorskip("cryptography")
    del crypto
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "safe-fetch test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cadata=ca_cert.public_bytes(serialization.Encoding.PEM).decode())
    return server_ctx, client_ctx


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[LocalServer, ssl.SSLContext, list[str]]]:
    server_ctx, client_ctx = _tls_material(["img.allowed.test"])
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


# ================================================================================= content and limits


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


# ================================================================================= policy and helpers


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


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("0", "0.0.0.0"),
        ("0x", "0.0.0.0"),
        ("1.2.3.4.", "1.2.3.4"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("1.2.3.4.5", None),
        ("256.1.1.1", None),
        ("1.2.3.256", None),
        ("08.1.1.1", None),
        ("1.2.3.4294967296", None),
        ("0x1g", "not-numeric"),
        ("example.com", "not-numeric"),
        ("cafe.bad", "not-numeric"),
        ("1.2.3.com", "not-numeric"),
    ],
)
def test_parse_numeric_ipv4(host: str, expected: str | None) -> None:
    numeric, ip = parse_numeric_ipv4(host)
    if expected == "not-numeric":
        assert (numeric, ip) == (False, None)
    else:
        assert numeric
        assert (str(ip) if ip else None) == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    value=st.integers(min_value=0, max_value=2**32 - 1),
    parts=st.integers(min_value=1, max_value=4),
    radixes=st.lists(st.sampled_from(["dec", "oct", "hex"]), min_size=4, max_size=4),
)
def test_numeric_forms_agree_with_inet_aton(value: int, parts: int, radixes: list[str]) -> None:
    octets = list(value.to_bytes(4, "big"))
    numbers = [*octets[: parts - 1], int.from_bytes(bytes(octets[parts - 1 :]), "big")]
    spelled = []
    for n, radix in zip(numbers, radixes, strict=False):
        spelled.append({"dec": str(n), "oct": "0" + format(n, "o"), "hex": hex(n)}[radix])
    host = ".".join(spelled)
    numeric, ip = parse_numeric_ipv4(host)
    assert numeric
    assert ip == ipaddress.IPv4Address(value)
    assert ip == ipaddress.IPv4Address(socket.inet_aton(host))  # what the C library would connect to


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("127.0.0.1", True),
        ("10.255.0.1", True),
        ("172.31.255.255", True),
        ("192.168.0.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("100.127.255.254", True),
        ("0.0.0.0", True),
        ("0.1.2.3", True),
        ("192.0.0.170", True),
        ("192.0.2.1", True),
        ("198.51.100.1", True),
        ("203.0.113.1", True),
        ("224.0.0.251", True),
        ("239.255.255.250", True),
        ("240.0.0.1", True),
        ("255.255.255.255", True),
        ("::", True),
        ("::1", True),
        ("::ffff:10.0.0.1", True),
        ("::ffff:0:a00:1", True),
        ("::10.0.0.1", True),
        ("64:ff9b::a00:1", True),
        ("64:ff9b:1::1", True),
        ("2002:a00:1::1", True),
        ("2001::1", True),
        ("2001:db8::1", True),
        ("fc00::1", True),
        ("fe80::1", True),
        ("fe80::1%eth0", True),
        ("fec0::1", True),
        ("ff0e::1", True),
        ("100::1", True),
        ("8.8.8.8", False),
        ("93.184.216.34", False),
        ("100.128.0.1", False),
        ("::ffff:8.8.8.8", False),
        ("64:ff9b::808:808", False),
        ("2606:4700::1111", False),
    ],
)
def test_blocked_address_reason(address: str, blocked: bool) -> None:
    assert (blocked_address_reason(ipaddress.ip_address(address)) is not None) is blocked


# ================================================================================= invariants


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
    url = _fill(
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
