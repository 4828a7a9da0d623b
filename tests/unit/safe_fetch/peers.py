"""The peers safe_fetch meets in its tests: test images, local HTTP(S) servers and FakeNet.

Everything runs on 127.0.0.1. Three kinds of peers:

* ``LocalServer``: real HTTP(S) servers on 127.0.0.1, port 0, in threads (tests/loopback_server.py;
  ``tls_material``: a fresh CA and a certificate for their https). The *canary* is one of them: no
  test may ever make a connection to it (checked after every test).
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
import io
import ipaddress
import socket
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from image_pipeline.safe_fetch import FetchPolicy, blocked_address_reason
from PIL import Image

from tests.loopback_server import Exchange, LoopbackServer

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

Route = Callable[[Exchange, "LocalServer", dict[str, list[str]]], None]


class LocalServer(LoopbackServer):
    """HTTP(S) server on 127.0.0.1:0 (tests/loopback_server.py); counts TCP connections, records
    requests, answers each path with its route."""

    def __init__(self, routes: dict[str, Route] | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = dict(routes or {})
        self.requests: list[tuple[str, dict[str, str]]] = []
        super().__init__(tls=tls, protocol="HTTP/1.1", methods=("GET",))

    def handle(self, h: Exchange) -> None:
        parts = urlsplit(h.path)
        with self.lock:
            self.requests.append((h.path, {k.lower(): v for k, v in h.headers.items()}))
        route = self.routes.get(parts.path)
        h.close_connection = True
        if route is None:
            h.respond(404, b"not found")
        else:
            route(h, self, parse_qs(parts.query))

    def hits(self, path: str) -> int:
        with self.lock:
            return sum(1 for p, _ in self.requests if urlsplit(p).path == path)


def serve(body: bytes, content_type: str = "image/png", **headers: str) -> Route:
    def route(h: Exchange, _srv: LocalServer, _q: dict[str, list[str]]) -> None:
        h.respond(200, body, {"Content-Type": content_type, **headers})

    return route


def status(code: int) -> Route:
    def route(h: Exchange, _srv: LocalServer, _q: dict[str, list[str]]) -> None:
        h.respond(code, b"nope", {"Content-Type": "text/plain"})

    return route


def redirect_to(location: str | None, code: int = 302) -> Route:
    def route(h: Exchange, _srv: LocalServer, _q: dict[str, list[str]]) -> None:
        h.respond(code, b"", {"Location": location} if location is not None else {})

    return route


def redirect_from_query(h: Exchange, _srv: LocalServer, q: dict[str, list[str]]) -> None:
    """/redirect?to=<location>: 302 to whatever the test asks (empty ``to``: no Location at all)."""
    location = q.get("to", [""])[0]
    h.respond(302, b"", {"Location": location} if location else {})


def trickle_body(h: Exchange, srv: LocalServer, _q: dict[str, list[str]]) -> None:
    body = PNG
    if not h.raw(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()):
        return
    for i in range(min(len(body), 200)):  # one byte every 50 ms, at most 10 s
        if srv.stop.wait(0.05) or not h.raw(body[i : i + 1]):
            return


def trickle_headers(h: Exchange, srv: LocalServer, _q: dict[str, list[str]]) -> None:
    head = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 400
    for i in range(len(head)):  # each byte comes well within any read timeout; only the deadline helps
        if srv.stop.wait(0.05) or not h.raw(head[i : i + 1]):
            return


def stall_after_headers(h: Exchange, srv: LocalServer, _q: dict[str, list[str]]) -> None:
    if h.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + PNG[:100]):
        srv.stop.wait(10)


def stall_before_response(_h: Exchange, srv: LocalServer, _q: dict[str, list[str]]) -> None:
    srv.stop.wait(10)


def oversized_with_length(h: Exchange, srv: LocalServer, _q: dict[str, list[str]]) -> None:
    if not h.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\nConnection: close\r\n\r\n"):
        return
    chunk = PNG + b"\x00" * (30_000 - len(PNG))
    for _ in range(10):
        if srv.stop.is_set() or not h.raw(chunk):
            return


def oversized_without_length(h: Exchange, srv: LocalServer, _q: dict[str, list[str]]) -> None:
    if not h.raw(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n" + PNG):
        return
    for _ in range(20):  # 600 KB, close-delimited
        if srv.stop.is_set() or not h.raw(b"\x00" * 30_000):
            return


def oversized_chunked(h: Exchange, srv: LocalServer, _q: dict[str, list[str]]) -> None:
    if not h.raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"):
        return
    data = PNG + b"\x00" * (30_000 - len(PNG))
    for _ in range(20):
        if srv.stop.is_set() or not h.raw(b"%x\r\n%s\r\n" % (len(data), data)):
            return
        data = b"\x00" * 30_000
    h.raw(b"0\r\n\r\n")


def truncated_with_length(h: Exchange, _srv: LocalServer, _q: dict[str, list[str]]) -> None:
    h.raw(f"HTTP/1.1 200 OK\r\nContent-Length: {len(PNG) + 500}\r\n\r\n".encode() + PNG[:-20])


def truncated_chunked(h: Exchange, _srv: LocalServer, _q: dict[str, list[str]]) -> None:
    h.raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s" % (len(PNG), PNG[:50]))


def truncated_close_delimited(h: Exchange, _srv: LocalServer, _q: dict[str, list[str]]) -> None:
    h.raw(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + PNG[: len(PNG) // 2])


def endless_html(h: Exchange, srv: LocalServer, _q: dict[str, list[str]]) -> None:
    if not h.raw(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n<html>"):
        return
    for _ in range(200):  # 6 MB if nobody hangs up: the fetcher must stop at the magic bytes
        if srv.stop.is_set() or not h.raw(b"<p>hello</p>" * 2_500):
            return


def standard_routes() -> dict[str, Route]:
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


# ----------------------------------------------------------------------------------------- TLS


def tls_material(names: list[str]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting a fresh CA) for a certificate valid for ``names``."""
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


# ----------------------------------------------------------------------------------------- policy and URLs


def local_policy(server: LocalServer, **overrides: Any) -> FetchPolicy:
    options: dict[str, Any] = {
        "allowed_hosts": ("allowed.test", "*.allowed.test"),
        "trusted_origins": (server.origin,),
        "deadline_seconds": 5.0,
    }
    options.update(overrides)
    return FetchPolicy(**options)


def fill_ports(template: str, canary: LocalServer, srv: LocalServer) -> str:
    """``{c}``: the canary's port, ``{t}``: the port of the trusted local origin (``srv``)."""
    return template.replace("{c}", str(canary.port)).replace("{t}", str(srv.port))
