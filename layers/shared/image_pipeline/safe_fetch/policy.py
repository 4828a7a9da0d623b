"""FetchPolicy: the hosts and exact origins that may be fetched, and the time and size limits."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import httpx

from image_pipeline.safe_fetch.addresses import HOSTNAME_RE, normalise_host

DEFAULT_PORTS = {"http": 80, "https": 443}


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
    # Both off for downloads. Webhook receivers (image_pipeline.webhooks) are any public https host, on
    # port 443: set in code only, so no configured allow-list string can switch them on.
    any_host: bool = False
    any_port: bool = False
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
        if self.any_host:
            return True
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
    if not HOSTNAME_RE.fullmatch(name) or (wildcard and "." not in name):
        raise ValueError(f"allowed host {pattern!r} must be a host name or '*.example.com'")
    return f"*.{name}" if wildcard else name


def _parse_trusted_origin(origin: str) -> tuple[str, str, int]:
    try:
        u = httpx.URL(origin)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ValueError(f"trusted origin {origin!r} is not a valid URL") from exc
    if u.scheme not in DEFAULT_PORTS or not u.raw_host or u.userinfo or u.query or u.path not in ("", "/"):
        raise ValueError(f"trusted origin {origin!r} must be exactly scheme://host[:port]")
    host, _ip, _canonical = normalise_host(u.raw_host.decode("ascii"))
    return u.scheme, host, u.port or DEFAULT_PORTS[u.scheme]
