"""Targets: a URL checked against the policy before any connection, then its DNS answers."""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from image_pipeline.safe_fetch.addresses import (
    IPAddress,
    Resolver,
    blocked_address_reason,
    normalise_host,
    plain_address,
)
from image_pipeline.safe_fetch.errors import FetchError
from image_pipeline.safe_fetch.policy import DEFAULT_PORTS, FetchPolicy
from image_pipeline.safe_fetch.watchdog import IDLE_SECONDS

_ROUGH_AUTHORITY_RE = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.\-]*:/*([^/?#\\]*)")


@dataclass(frozen=True)
class Target:
    url: httpx.URL
    scheme: str
    host: str  # lower-case, IDNA, no trailing dot; IPv6 without brackets
    port: int  # effective port
    ip: IPAddress | None  # set when the URL host is an IP literal
    trusted: bool

    @property
    def host_header(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return h if self.port == DEFAULT_PORTS[self.scheme] else f"{h}:{self.port}"

    def describe(self) -> str:
        return describe_target(self.url)


def describe_target(url: httpx.URL) -> str:
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


def check_target(text: str, policy: FetchPolicy, *, invalid_reason: str, context: str) -> Target:
    """Parse ``text`` and apply scheme, userinfo, host and IP-literal rules (no DNS yet)."""
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError, UnicodeError) as exc:
        rough = _rough_host(text) if isinstance(text, str) else None
        if rough:
            with contextlib.suppress(ValueError):
                _host, ip, _canonical = normalise_host(rough)
                label = blocked_address_reason(ip) if ip is not None else None
                if label:
                    raise FetchError(
                        "address_blocked", f"{context}refusing host {rough[:100]!r}: address {ip} is {label}"
                    ) from exc
        where = f" (host {rough[:100]!r})" if rough else ""
        raise FetchError(invalid_reason, f"{context}not a valid URL{where}") from exc

    desc = describe_target(url)
    scheme = url.scheme
    if scheme not in DEFAULT_PORTS:
        raise FetchError("scheme", f"{context}refusing {desc}: scheme {scheme or '(none)'!r} is not allowed")
    if url.userinfo:
        raise FetchError("host_not_allowed", f"{context}refusing {desc}: credentials (user@) in the URL")
    try:
        host, ip, canonical = normalise_host(url.raw_host.decode("ascii"))
    except (ValueError, UnicodeError) as exc:
        raise FetchError(invalid_reason, f"{context}refusing {desc}: {exc}") from exc
    port = url.port if url.port is not None else DEFAULT_PORTS[scheme]
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
        if port != DEFAULT_PORTS["https"] and not policy.any_port:
            raise FetchError(
                "port_not_allowed",
                f"{context}refusing {desc}: port {port} is not allowed (allowed hosts: 443 only)",
            )
    return Target(url=url, scheme=scheme, host=host, port=port, ip=ip, trusted=trusted)


def resolve_checked(
    target: Target,
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
    for ip in map(plain_address, addresses):
        if ip not in plain:
            plain.append(ip)
    return sorted(plain, key=lambda ip: ip.version)  # stable: keeps resolver order within a family


def _call_resolver(resolver: Resolver, host: str, port: int, deadline: float) -> list[IPAddress]:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FetchError("deadline", f"deadline passed before resolving {host}")
    box = _LOOKUPS.submit(lambda: resolver(host, port))
    if not box.done.wait(remaining):
        raise FetchError("deadline", f"DNS lookup of {host} did not finish before the deadline")
    if box.error is not None:
        exc = box.error
        if isinstance(exc, FetchError):
            raise exc
        permanent = isinstance(exc, socket.gaierror) and exc.errno in _PERMANENT_GAI_ERRORS
        raise FetchError("dns", f"DNS lookup of {host} failed: {exc}", retryable=not permanent) from exc
    addresses: list[IPAddress] = []
    for raw in box.value or ():
        try:
            ip = ipaddress.ip_address(str(raw))
        except ValueError as exc:
            raise FetchError("dns", f"DNS lookup of {host} returned a non-address", retryable=False) from exc
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise FetchError("dns", f"DNS lookup of {host} returned no address", retryable=False)
    return addresses


class _Lookup:
    def __init__(self, call: Callable[[], list[str]]) -> None:
        self.call = call
        self.done = threading.Event()
        self.value: list[str] | None = None
        self.error: Exception | None = None


class _Lookups:
    """Resolver calls on daemon threads ("safe-fetch-dns") that the process's fetches reuse, so the
    deadline can cut a lookup short without a thread started per fetch. A lookup that hangs keeps its
    thread (the next one gets another); a thread ends after ``IDLE_SECONDS`` without work."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every lookup and thread (a forked child has no copy of the threads)."""
        self._condition = threading.Condition(threading.Lock())
        self._pending: collections.deque[_Lookup] = collections.deque()
        self._idle = 0  # threads waiting for a lookup

    def submit(self, call: Callable[[], list[str]]) -> _Lookup:
        lookup = _Lookup(call)
        with self._condition:
            self._pending.append(lookup)
            if self._idle >= len(self._pending):
                self._condition.notify()
            else:
                threading.Thread(target=self._work, name="safe-fetch-dns", daemon=True).start()
        return lookup

    def _work(self) -> None:
        while True:
            with self._condition:
                if not self._pending:
                    self._idle += 1
                    self._condition.wait(IDLE_SECONDS)
                    self._idle -= 1
                    if not self._pending:
                        return
                lookup = self._pending.popleft()
            try:
                lookup.value = lookup.call()
            except Exception as exc:  # reported in the calling thread
                lookup.error = exc
            lookup.done.set()


_LOOKUPS = _Lookups()
os.register_at_fork(after_in_child=_LOOKUPS.reset)

_PERMANENT_GAI_ERRORS = frozenset(
    e for e in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None)) if e is not None
)
