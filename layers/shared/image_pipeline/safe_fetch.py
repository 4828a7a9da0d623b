"""Fetch an image from an attacker-controlled URL without becoming an SSRF proxy.

The image URLs arrive in public callbacks, so every one is hostile until checked:

* **Scheme, host and port**: ``https`` only, host on ``FetchPolicy.allowed_hosts`` (exact, or
  ``*.domain`` for subdomains), port 443 only (an explicit ``:443`` is the same URL), no ``user:pass@``
  part. The only exception are the exact ``trusted_origins`` (scheme, host, port) of a local
  emulator, which may use ``http``, another port and loopback.
* **Addresses**: the host is resolved once per fetch; every address returned (and any IP literal in
  the URL, in whatever numeric spelling: ``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``...) is
  checked, and a single private, loopback, link-local, CGNAT, reserved, multicast or unspecified
  address (including IPv6 forms that embed such an IPv4) refuses the fetch.
* **Pinning**: the request goes to the checked IP itself, with the original name kept for the
  ``Host`` header, TLS SNI and certificate verification, so a second DNS answer (DNS rebinding)
  is never consulted. The peer address of every new connection is compared with the checked one.
* **Redirects**: never followed by httpx; each ``Location`` is resolved against the current URL and
  goes through all of the checks above, at most ``max_redirects`` times.
* **Time and size**: one deadline for the whole fetch (DNS, every hop, headers and body). Each phase
  gets at most the remaining time and a watchdog shuts the socket down when the deadline passes,
  so a server trickling bytes cannot hold the function. Bodies over ``max_bytes`` are refused from
  ``Content-Length`` or while streaming.
* **Content**: the type comes from the magic bytes, then Pillow verifies the image with a pixel cap
  checked before decoding (:mod:`image_pipeline.image_check`).

Errors are :class:`FetchError` with a machine-readable ``reason`` and a ``retryable`` flag; their
message names the host and path but never the query string (presigned links carry signatures).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import ssl

from image_pipeline.image_check import ImageCheckError, sniff_image_type, verify_image

__all__ = [
    "FetchError",
    "FetchPolicy",
    "FetchedImage",
    "Resolver",
    "blocked_address_reason",
    "fetch_image",
    "parse_numeric_ipv4",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
"""``(host, port) -> IP address strings``. The default uses :func:`socket.getaddrinfo`."""

_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK_SIZE = 64 * 1024
_MAX_ADDRESS_ATTEMPTS = 4
_USER_AGENT = "image-pipeline-safe-fetch/1"
_HOSTNAME_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*")
_ROUGH_AUTHORITY_RE = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.\-]*:/*([^/?#\\]*)")

_RETRYABLE_BY_DEFAULT = {
    "scheme": False,
    "host_not_allowed": False,
    "port_not_allowed": False,
    "address_blocked": False,
    "dns": True,
    "too_many_redirects": False,
    "bad_redirect": False,
    "http_status": False,
    "too_large": False,
    "deadline": True,
    "network": True,
    "not_image": False,
    "truncated": True,
}

# IPv4 ranges that are never fetched, on top of what ipaddress flags (kept explicit so the
# behaviour does not depend on the Python version's idea of "private").
_BLOCKED_V4 = (
    (ipaddress.IPv4Network("0.0.0.0/8"), "this-network"),
    (ipaddress.IPv4Network("10.0.0.0/8"), "private"),
    (ipaddress.IPv4Network("100.64.0.0/10"), "carrier-grade NAT"),
    (ipaddress.IPv4Network("127.0.0.0/8"), "loopback"),
    (ipaddress.IPv4Network("169.254.0.0/16"), "link-local"),
    (ipaddress.IPv4Network("172.16.0.0/12"), "private"),
    (ipaddress.IPv4Network("192.0.0.0/24"), "IETF protocol assignments"),
    (ipaddress.IPv4Network("192.0.2.0/24"), "documentation"),
    (ipaddress.IPv4Network("192.88.99.0/24"), "6to4 relay anycast"),
    (ipaddress.IPv4Network("192.168.0.0/16"), "private"),
    (ipaddress.IPv4Network("198.18.0.0/15"), "benchmarking"),
    (ipaddress.IPv4Network("198.51.100.0/24"), "documentation"),
    (ipaddress.IPv4Network("203.0.113.0/24"), "documentation"),
    (ipaddress.IPv4Network("224.0.0.0/4"), "multicast"),
    (ipaddress.IPv4Network("240.0.0.0/4"), "reserved"),
)
_NAT64_WKP = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")


# --------------------------------------------------------------------------------------------- errors


class FetchError(Exception):
    """A fetch was refused or failed.

    ``reason`` is one of ``scheme``, ``host_not_allowed``, ``port_not_allowed``, ``address_blocked``, ``dns``,
    ``too_many_redirects``, ``bad_redirect``, ``http_status``, ``too_large``, ``deadline``,
    ``network``, ``not_image``, ``truncated``. ``retryable`` is True for transient failures
    (network, deadline, 5xx, 429, truncated, temporary DNS failures), False for policy violations.
    ``status_code`` is the upstream HTTP status for ``http_status``.
    """

    reason: str
    retryable: bool
    status_code: int | None

    def __init__(
        self, reason: str, message: str, *, retryable: bool | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = _RETRYABLE_BY_DEFAULT.get(reason, False) if retryable is None else retryable
        self.status_code = status_code

    @property
    def link_expired(self) -> bool:
        """True when the upstream said 403/404/410: a presigned link that expired, re-mint it."""
        return self.reason == "http_status" and self.status_code in (403, 404, 410)

    def __repr__(self) -> str:
        return (
            f"FetchError(reason={self.reason!r}, retryable={self.retryable}, "
            f"status_code={self.status_code!r}, message={str(self)!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:  # picklable despite the keyword-only arguments
        return (_rebuild_fetch_error, (self.reason, str(self), self.retryable, self.status_code))


def _rebuild_fetch_error(reason: str, message: str, retryable: bool, status_code: int | None) -> FetchError:
    return FetchError(reason, message, retryable=retryable, status_code=status_code)


# --------------------------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class FetchPolicy:
    """What :func:`fetch_image` may fetch, and how long and how much."""

    allowed_hosts: tuple[str, ...]
    trusted_origins: tuple[str, ...] = ()
    max_bytes: int = 30 * 1024 * 1024
    deadline_seconds: float = 60.0
    connect_timeout_seconds: float = 5.0
    max_redirects: int = 3
    max_pixels: int = 50_000_000
    _trusted: frozenset[tuple[str, str, int]] = field(
        init=False, repr=False, compare=False, default=frozenset()
    )

    def __post_init__(self) -> None:
        if isinstance(self.allowed_hosts, str) or isinstance(self.trusted_origins, str):
            raise TypeError("allowed_hosts and trusted_origins must be sequences of strings, not a string")
        hosts = tuple(_normalise_host_pattern(h) for h in self.allowed_hosts)
        object.__setattr__(self, "allowed_hosts", hosts)
        object.__setattr__(self, "trusted_origins", tuple(self.trusted_origins))
        object.__setattr__(
            self, "_trusted", frozenset(_parse_trusted_origin(o) for o in self.trusted_origins)
        )
        if self.max_bytes <= 0 or self.max_pixels <= 0:
            raise ValueError("max_bytes and max_pixels must be positive")
        if self.deadline_seconds <= 0 or self.connect_timeout_seconds <= 0:
            raise ValueError("deadline_seconds and connect_timeout_seconds must be positive")
        if self.max_redirects < 0:
            raise ValueError("max_redirects must not be negative")

    def host_allowed(self, host: str) -> bool:
        """Whether a normalised (lower-case, no trailing dot, IDNA) host is on the allow-list."""
        for pattern in self.allowed_hosts:
            if pattern.startswith("*."):
                suffix = pattern[1:]  # ".example.com": any depth of subdomain, never the apex itself
                if host.endswith(suffix) and len(host) > len(suffix):
                    return True
            elif host == pattern:
                return True
        return False

    def is_trusted_origin(self, scheme: str, host: str, port: int) -> bool:
        return (scheme, host, port) in self._trusted


def _normalise_host_pattern(pattern: str) -> str:
    """Lower-case, no trailing dot, IDNA (punycode) like URL hosts; ``*.domain`` or an exact host."""
    p = str(pattern).strip().lower().removesuffix(".")
    wildcard = p.startswith("*.")
    name = p[2:] if wildcard else p
    try:
        if not name.isascii():
            name = httpx.URL(f"https://{name}/").raw_host.decode("ascii")
        if not wildcard and ":" in name.strip("[]"):
            return str(ipaddress.IPv6Address(name.strip("[]")))
    except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
        raise ValueError(f"allowed host {pattern!r} is not a valid host name") from exc
    if not _HOSTNAME_RE.fullmatch(name) or (wildcard and "." not in name):
        raise ValueError(f"allowed host {pattern!r} must be a host name or '*.example.com'")
    return f"*.{name}" if wildcard else name


def _parse_trusted_origin(origin: str) -> tuple[str, str, int]:
    try:
        u = httpx.URL(origin)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ValueError(f"trusted origin {origin!r} is not a valid URL") from exc
    if u.scheme not in _DEFAULT_PORTS or not u.raw_host or u.userinfo or u.query or u.path not in ("", "/"):
        raise ValueError(f"trusted origin {origin!r} must be exactly scheme://host[:port]")
    host, _ip, _canonical = _normalise_host(u.raw_host.decode("ascii"))
    return u.scheme, host, u.port or _DEFAULT_PORTS[u.scheme]


# ------------------------------------------------------------------------------------------ addresses


def parse_numeric_ipv4(host: str) -> tuple[bool, ipaddress.IPv4Address | None]:
    """Interpret ``host`` the way URL parsers and ``inet_aton`` read numeric IPv4 hosts.

    Returns ``(is_numeric, address)``: ``is_numeric`` is True when the last label is a number
    (WHATWG "ends in a number"), in which case ``address`` is the normalised address, or ``None``
    when the numeric host is malformed. Accepts decimal, octal (leading 0) and hex (0x) parts and
    the 1-, 2- and 3-part short forms (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``).
    """
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    last = parts[-1]
    if not (last.isascii() and last.isdigit()) and not (
        last[:2].lower() == "0x" and all(c in "0123456789abcdefABCDEF" for c in last[2:])
    ):
        return False, None
    if len(parts) > 4:
        return True, None
    numbers: list[int] = []
    for part in parts:
        value = _parse_ipv4_number(part)
        if value is None:
            return True, None
        numbers.append(value)
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        return True, None
    value = numbers[-1]
    for i, n in enumerate(numbers[:-1]):
        value += n << (8 * (3 - i))
    return True, ipaddress.IPv4Address(value)


def _parse_ipv4_number(part: str) -> int | None:
    if not part or not part.isascii() or len(part) > 64:
        return None
    if part[:2].lower() == "0x":
        digits = part[2:]
        if not all(c in "0123456789abcdefABCDEF" for c in digits):
            return None
        return int(digits, 16) if digits else 0
    if len(part) > 1 and part[0] == "0":
        return int(part[1:], 8) if all(c in "01234567" for c in part[1:]) else None
    return int(part) if part.isdigit() else None


_BASIC_CHECKS = (("is_unspecified", "unspecified"), ("is_loopback", "loopback"))
# is_site_local exists on IPv6 only; getattr makes it False for IPv4.
_CLASS_CHECKS = (
    ("is_link_local", "link-local"),
    ("is_site_local", "site-local"),
    ("is_multicast", "multicast"),
    ("is_private", "private"),
    ("is_reserved", "reserved"),
)


def _first_property(ip: IPAddress, checks: tuple[tuple[str, str], ...]) -> str | None:
    return next((label for attribute, label in checks if getattr(ip, attribute, False)), None)


def _ipv6_embedding_reason(ip: ipaddress.IPv6Address) -> str | None:
    """Forms that carry (or tunnel to) an IPv4 address: judged by it, or refused outright."""
    if ip in _IPV4_COMPATIBLE:
        return "IPv4-compatible (deprecated)"
    if ip in _IPV4_TRANSLATED:
        return "IPv4-translated"
    if ip.sixtofour is not None:
        return "6to4"
    if ip.teredo is not None:
        return "Teredo"
    return None


def blocked_address_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` must never be fetched (e.g. ``"loopback"``), or ``None`` for a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            ip = ipaddress.IPv6Address(int(ip))
        mapped = ip.ipv4_mapped
        if mapped is not None:
            inner = blocked_address_reason(mapped)
            return f"IPv4-mapped {inner}" if inner else None
        if ip in _NAT64_WKP:
            inner = blocked_address_reason(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
            return f"NAT64 of {inner}" if inner else None
        special = _first_property(ip, _BASIC_CHECKS) or _ipv6_embedding_reason(ip)
    else:
        special = next((label for network, label in _BLOCKED_V4 if ip in network), None)
        special = special or _first_property(ip, _BASIC_CHECKS)
    if special:
        return special
    reason = _first_property(ip, _CLASS_CHECKS)
    if reason:
        return reason
    return None if ip.is_global else "not globally routable"


def _normalise_host(raw: str) -> tuple[str, IPAddress | None, bool]:
    """``(host, ip_or_None, canonical)`` for a raw URL host; raises ValueError when malformed."""
    host = raw.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise ValueError("empty host")
    if ":" in host:  # IPv6 literal (httpx strips the brackets)
        ip6 = ipaddress.IPv6Address(host.replace("%25", "%"))
        return str(ip6), ip6, True
    numeric, ip4 = parse_numeric_ipv4(host)
    if numeric:
        if ip4 is None:
            raise ValueError("malformed numeric host")
        return host, ip4, str(ip4) == host
    if len(host) > 253 or not _HOSTNAME_RE.fullmatch(host):
        raise ValueError("invalid host name")
    return host, None, True


def _default_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def _plain(ip: IPAddress) -> IPAddress:
    """Without IPv6 scope, and IPv4-mapped IPv6 as the IPv4 address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        return ipaddress.IPv6Address(int(ip))
    return ip


def _same_endpoint(peer: tuple[str, int], expected: tuple[IPAddress, int]) -> bool:
    try:
        peer_ip = ipaddress.ip_address(peer[0].split("%", 1)[0])
    except ValueError:
        return False
    return _plain(peer_ip) == _plain(expected[0]) and peer[1] == expected[1]


# -------------------------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class _Target:
    url: httpx.URL
    scheme: str
    host: str  # lower-case, IDNA, no trailing dot; IPv6 without brackets
    port: int  # effective port
    ip: IPAddress | None  # set when the URL host is an IP literal
    trusted: bool

    @property
    def host_header(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return h if self.port == _DEFAULT_PORTS[self.scheme] else f"{h}:{self.port}"

    def describe(self) -> str:
        return _describe(self.url)


def _describe(url: httpx.URL) -> str:
    """``scheme://host[:port]/path`` for messages: never userinfo, query string or fragment."""
    host = url.raw_host.decode("ascii", "replace")
    if ":" in host:
        host = f"[{host}]"
    port = f":{url.port}" if url.port is not None else ""
    path = url.raw_path.split(b"?", 1)[0].decode("ascii", "replace")
    if len(path) > 100:
        path = path[:100] + "..."
    query = "?..." if url.query else ""
    return f"{url.scheme}://{host}{port}{path}{query}"


def _rough_host(text: str) -> str | None:
    """Best-effort host of a string httpx refused to parse, for classification only."""
    m = _ROUGH_AUTHORITY_RE.match(text)
    if not m:
        return None
    authority = m.group(1).rsplit("@", 1)[-1]
    if authority.startswith("["):
        return authority[1:].split("]", 1)[0] or None
    return authority.rsplit(":", 1)[0].lower() or None


def _check_target(text: str, policy: FetchPolicy, *, invalid_reason: str, context: str) -> _Target:
    """Parse ``text`` and apply scheme, userinfo, host and IP-literal rules (no DNS yet)."""
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError, UnicodeError) as exc:
        rough = _rough_host(text) if isinstance(text, str) else None
        if rough:
            with contextlib.suppress(ValueError):
                _host, ip, _canonical = _normalise_host(rough)
                label = blocked_address_reason(ip) if ip is not None else None
                if label:
                    raise FetchError(
                        "address_blocked", f"{context}refusing host {rough[:100]!r}: address {ip} is {label}"
                    ) from exc
        where = f" (host {rough[:100]!r})" if rough else ""
        raise FetchError(invalid_reason, f"{context}not a valid URL{where}") from exc

    desc = _describe(url)
    scheme = url.scheme
    if scheme not in _DEFAULT_PORTS:
        raise FetchError("scheme", f"{context}refusing {desc}: scheme {scheme or '(none)'!r} is not allowed")
    if url.userinfo:
        raise FetchError("host_not_allowed", f"{context}refusing {desc}: credentials (user@) in the URL")
    try:
        host, ip, canonical = _normalise_host(url.raw_host.decode("ascii"))
    except (ValueError, UnicodeError) as exc:
        raise FetchError(invalid_reason, f"{context}refusing {desc}: {exc}") from exc
    port = url.port if url.port is not None else _DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        raise FetchError(invalid_reason, f"{context}refusing {desc}: invalid port {port}")

    trusted = policy.is_trusted_origin(scheme, host, port)
    if not trusted:
        if ip is not None:
            label = blocked_address_reason(ip)
            if label:
                raise FetchError("address_blocked", f"{context}refusing {desc}: address {ip} is {label}")
            if not canonical:
                raise FetchError(
                    "host_not_allowed", f"{context}refusing {desc}: non-canonical numeric host (means {ip})"
                )
        if not policy.host_allowed(host):
            raise FetchError(
                "host_not_allowed", f"{context}refusing {desc}: host {host} is not on the allow-list"
            )
        if scheme != "https":
            raise FetchError("scheme", f"{context}refusing {desc}: only https is allowed")
        if port != _DEFAULT_PORTS["https"]:
            raise FetchError(
                "port_not_allowed",
                f"{context}refusing {desc}: port {port} is not allowed (allowed hosts: 443 only)",
            )
    return _Target(url=url, scheme=scheme, host=host, port=port, ip=ip, trusted=trusted)


def _resolve_checked(
    target: _Target,
    resolver: Resolver,
    cache_: dict[tuple[str, int], list[IPAddress]],
    deadline: float,
) -> list[IPAddress]:
    """Addresses to connect to, all of them checked; IPv4 first. Resolves each host once per fetch."""
    if target.ip is not None:
        addresses: list[IPAddress] = [target.ip]
    else:
        key = (target.host, target.port)
        if key not in cache_:
            cache_[key] = _call_resolver(resolver, target.host, target.port, deadline)
        addresses = cache_[key]
    if not target.trusted:
        for ip in addresses:
            label = blocked_address_reason(ip)
            if label:
                raise FetchError(
                    "address_blocked",
                    f"refusing {target.describe()}: {target.host} resolves to {ip} ({label})",
                )
    plain: list[IPAddress] = []
    for ip in map(_plain, addresses):
        if ip not in plain:
            plain.append(ip)
    return sorted(plain, key=lambda ip: ip.version)  # stable: keeps resolver order within a family


def _call_resolver(resolver: Resolver, host: str, port: int, deadline: float) -> list[IPAddress]:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FetchError("deadline", f"deadline passed before resolving {host}")
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = resolver(host, port)
        except Exception as exc:  # reported in the calling thread
            box["error"] = exc

    worker = threading.Thread(target=run, name="safe-fetch-dns", daemon=True)
    worker.start()
    worker.join(remaining)
    if worker.is_alive():
        raise FetchError("deadline", f"DNS lookup of {host} did not finish before the deadline")
    if "error" in box:
        exc = box["error"]
        if isinstance(exc, FetchError):
            raise exc
        permanent = isinstance(exc, socket.gaierror) and exc.errno in _PERMANENT_GAI_ERRORS
        raise FetchError("dns", f"DNS lookup of {host} failed: {exc}", retryable=not permanent) from exc
    addresses: list[IPAddress] = []
    for raw in box.get("value") or ():
        try:
            ip = ipaddress.ip_address(str(raw))
        except ValueError as exc:
            raise FetchError("dns", f"DNS lookup of {host} returned a non-address", retryable=False) from exc
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise FetchError("dns", f"DNS lookup of {host} returned no address", retryable=False)
    return addresses


_PERMANENT_GAI_ERRORS = frozenset(
    e for e in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None)) if e is not None
)


# ------------------------------------------------------------------------------------------- watchdog


class _Watchdog:
    """Enforces the total deadline on real sockets and checks who each connection went to.

    httpcore reports every new TCP connection through the ``trace`` request extension; we keep a
    duplicate of its socket so that, when the deadline passes, ``shutdown()`` wakes up a read that
    is blocked in another phase (TLS handshake, a header trickle, a stalled body). The peer
    address of each connection is compared with the address we checked and pinned.
    """

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer: threading.Timer | None = None
        self._closed = False
        self.fired = False
        self.expected: tuple[IPAddress, int] | None = None  # (address, port) the next connection must reach
        self.peer_mismatch: str | None = None
        self.peers: list[tuple[str, int]] = []

    def trace(self, name: str, info: dict[str, Any]) -> None:
        if name != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(sock, socket.socket):
            return
        try:
            peer_addr = sock.getpeername()
            peer = (str(peer_addr[0]), int(peer_addr[1]))
            dup = sock.dup()
        except (OSError, IndexError, TypeError, ValueError):
            self.peer_mismatch = "an unknown peer"
            _shutdown(sock)
            return
        with self._lock:
            self.peers.append(peer)
            same = self.expected is None or _same_endpoint(peer, self.expected)
            if not same:
                self.peer_mismatch = f"{peer[0]} port {peer[1]}"
            if self._closed:
                dup.close()
                return
            self._sockets.append(dup)
            if self._timer is None and not self.fired:
                self._timer = threading.Timer(max(0.0, self._deadline - time.monotonic()), self._fire)
                self._timer.name = "safe-fetch-deadline"
                self._timer.daemon = True
                self._timer.start()
            kill = self.fired or not same
        if kill:
            _shutdown(dup)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sockets = list(self._sockets)
        for s in sockets:
            _shutdown(s)

    def release(self) -> None:
        """Drop the sockets of the finished hop (its connection was closed: ``Connection: close``)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            s.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
            sockets, self._sockets = self._sockets, []
        if timer is not None:
            timer.cancel()
        for s in sockets:
            s.close()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


# ---------------------------------------------------------------------------------------------- fetch


@dataclass(frozen=True)
class FetchedImage:
    body: bytes = field(repr=False)
    content_type: str  # from the magic bytes: image/png, image/jpeg, image/webp
    extension: str  # png | jpg | webp
    sha256: str  # hex
    width: int
    height: int
    final_url: str  # after redirects, without query string or fragment

    @property
    def size(self) -> int:
        return len(self.body)


@cache
def _ssl_context() -> ssl.SSLContext:
    # Built once per process (loading the CA bundle is the slow part), shared by every fetch.
    return httpx.create_ssl_context()


def _new_client() -> httpx.Client:
    # trust_env=False: no proxy from the environment (the request must go to the pinned address);
    # no keep-alive: a connection verified for one host name is never reused for another.
    return httpx.Client(
        verify=_ssl_context(),
        trust_env=False,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=_MAX_ADDRESS_ATTEMPTS, max_keepalive_connections=0),
    )


def fetch_image(
    url: str,
    policy: FetchPolicy,
    *,
    resolver: Resolver | None = None,
    client: httpx.Client | None = None,
) -> FetchedImage:
    """Download and verify one image under ``policy``; raise :class:`FetchError` otherwise.

    ``resolver`` replaces DNS (tests, emulator). ``client`` replaces the HTTP client; it must not use
    a proxy (connections to anything but the checked address are refused) and is not closed here.
    """
    deadline = time.monotonic() + policy.deadline_seconds
    resolve = resolver if resolver is not None else _default_resolver
    text = url.strip() if isinstance(url, str) else url
    target = _check_target(text, policy, invalid_reason="host_not_allowed", context="")
    http = client if client is not None else _new_client()
    watchdog = _Watchdog(deadline)
    dns_cache: dict[tuple[str, int], list[IPAddress]] = {}
    try:
        for hop in range(policy.max_redirects + 1):
            if time.monotonic() >= deadline:
                raise FetchError("deadline", f"deadline passed before fetching {target.describe()}")
            addresses = _resolve_checked(target, resolve, dns_cache, deadline)
            response = _send_pinned(http, target, addresses, policy, deadline, watchdog)
            try:
                if response.status_code in _REDIRECT_STATUSES:
                    target = _next_hop(target, response, hop, policy)
                    continue
                if response.status_code != 200:
                    status = response.status_code
                    raise FetchError(
                        "http_status",
                        f"{target.describe()} answered HTTP {status}",
                        retryable=status >= 500 or status == 429,
                        status_code=status,
                    )
                body = _read_body(response, target, policy, deadline, watchdog)
            finally:
                with contextlib.suppress(httpx.HTTPError, OSError):
                    response.close()
                watchdog.release()
            return _finish(body, target, policy)
        raise FetchError(
            "too_many_redirects", f"more than {policy.max_redirects} redirects"
        )  # pragma: no cover
    finally:
        watchdog.close()
        if client is None:
            http.close()


def _next_hop(target: _Target, response: httpx.Response, hop: int, policy: FetchPolicy) -> _Target:
    if hop >= policy.max_redirects:
        raise FetchError(
            "too_many_redirects",
            f"{target.describe()} redirects again after {policy.max_redirects} redirects",
        )
    location = response.headers.get("location", "").strip()
    context = f"redirect from {target.describe()}: "
    if not location:
        raise FetchError("bad_redirect", f"{context}HTTP {response.status_code} without a Location header")
    try:
        next_url = target.url.join(location)
    except (httpx.InvalidURL, TypeError, ValueError, UnicodeError) as exc:
        raise FetchError("bad_redirect", f"{context}unusable Location header") from exc
    return _check_target(str(next_url), policy, invalid_reason="bad_redirect", context=context)


def _send_pinned(
    http: httpx.Client,
    target: _Target,
    addresses: list[IPAddress],
    policy: FetchPolicy,
    deadline: float,
    watchdog: _Watchdog,
) -> httpx.Response:
    """GET ``target`` by connecting to one of the checked ``addresses`` (next one on connect failure)."""
    headers = {
        "Host": target.host_header,
        "Accept": "image/png, image/jpeg, image/webp",
        "Accept-Encoding": "identity",
        "Connection": "close",  # every hop opens its own connection, which the watchdog then covers
        "User-Agent": _USER_AGENT,
    }
    extensions: dict[str, Any] = {"trace": watchdog.trace}
    if target.scheme == "https" and target.ip is None:
        extensions["sni_hostname"] = target.host  # SNI + certificate check on the name, not the IP
    last_error: httpx.TransportError | None = None
    for ip in addresses[:_MAX_ADDRESS_ATTEMPTS]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        timeout = httpx.Timeout(
            connect=min(policy.connect_timeout_seconds, remaining),
            read=remaining,
            write=remaining,
            pool=remaining,
        )
        watchdog.expected = (ip, target.port)
        request = http.build_request(
            "GET", target.url.copy_with(host=str(ip)), headers=headers, extensions=extensions, timeout=timeout
        )
        try:
            return http.send(request, stream=True, follow_redirects=False)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            if watchdog.fired or watchdog.peer_mismatch:
                raise _transport_error(exc, target, deadline, watchdog) from exc
            last_error = exc
        except httpx.TransportError as exc:
            raise _transport_error(exc, target, deadline, watchdog) from exc
    if last_error is None:
        raise FetchError("deadline", f"deadline passed before connecting to {target.describe()}")
    raise _transport_error(last_error, target, deadline, watchdog) from last_error


def _transport_error(exc: Exception, target: _Target, deadline: float, watchdog: _Watchdog) -> FetchError:
    desc = target.describe()
    if watchdog.peer_mismatch:
        return FetchError(
            "address_blocked",
            f"{desc}: the connection went to {watchdog.peer_mismatch}, not to the checked address "
            f"{watchdog.expected[0] if watchdog.expected else '?'} (proxy or resolver bypass)",
        )
    if watchdog.fired or time.monotonic() >= deadline - 0.05:
        return FetchError("deadline", f"{desc}: the total deadline passed ({type(exc).__name__})")
    if isinstance(exc, httpx.RemoteProtocolError) and (
        "complete message body" in str(exc) or "incomplete chunked read" in str(exc)
    ):
        return FetchError("truncated", f"{desc}: connection closed before the whole body arrived")
    if isinstance(exc, httpx.RemoteProtocolError) and "location header" in str(exc).lower():
        # httpx parses Location of every 3xx (to offer response.next_request) even when not following
        return FetchError("bad_redirect", f"redirect from {desc}: unusable Location header")
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    return FetchError("network", f"{desc}: connection {kind} ({type(exc).__name__}: {_short(exc)})")


def _short(exc: Exception) -> str:
    text = str(exc).split("?", 1)[0]
    return text if len(text) <= 200 else text[:200] + "..."


def _read_body(
    response: httpx.Response, target: _Target, policy: FetchPolicy, deadline: float, watchdog: _Watchdog
) -> bytes:
    desc = target.describe()
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise FetchError(
            "not_image", f"{desc}: body is sent with Content-Encoding {encoding!r}; only identity"
        )
    expected: int | None = None
    if "content-length" in response.headers:
        try:
            expected = int(response.headers["content-length"].strip())
        except ValueError as exc:
            raise FetchError("network", f"{desc}: invalid Content-Length header") from exc
        if expected > policy.max_bytes:
            raise FetchError(
                "too_large",
                f"{desc}: Content-Length {expected} is over the limit of {policy.max_bytes} bytes",
            )
    body = bytearray()
    sniffed = False
    try:
        for chunk in response.iter_bytes(_CHUNK_SIZE):  # identity only (checked above): raw bytes
            body += chunk
            if len(body) > policy.max_bytes:
                raise FetchError("too_large", f"{desc}: body is over the limit of {policy.max_bytes} bytes")
            if time.monotonic() >= deadline:
                raise FetchError("deadline", f"{desc}: the total deadline passed while reading the body")
            if not sniffed and len(body) >= 16:
                if sniff_image_type(bytes(body[:16])) is None:
                    raise FetchError("not_image", f"{desc}: content is not a PNG, JPEG or WebP image")
                sniffed = True
    except httpx.TransportError as exc:
        raise _transport_error(exc, target, deadline, watchdog) from exc
    if watchdog.fired:
        raise FetchError("deadline", f"{desc}: the total deadline passed while reading the body")
    if expected is not None and len(body) != expected:
        raise FetchError("truncated", f"{desc}: got {len(body)} of {expected} bytes")
    return bytes(body)


def _finish(body: bytes, target: _Target, policy: FetchPolicy) -> FetchedImage:
    desc = target.describe()
    try:
        content_type, extension, width, height = verify_image(body, policy.max_pixels)
    except ImageCheckError as exc:
        reason = {"too_many_pixels": "too_large", "truncated": "truncated"}.get(exc.reason, "not_image")
        raise FetchError(reason, f"{desc}: {exc}") from exc
    return FetchedImage(
        body=body,
        content_type=content_type,
        extension=extension,
        sha256=hashlib.sha256(body).hexdigest(),
        width=width,
        height=height,
        final_url=str(target.url.copy_with(query=None, fragment=None)),
    )
