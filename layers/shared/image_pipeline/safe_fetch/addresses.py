"""IP addresses and host names: numeric IPv4 spellings, blocked ranges, normalisation, DNS."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
"""``(host, port) -> IP address strings``. The default uses :func:`socket.getaddrinfo`."""

HOSTNAME_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*")

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


def normalise_host(raw: str) -> tuple[str, IPAddress | None, bool]:
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
    if len(host) > 253 or not HOSTNAME_RE.fullmatch(host):
        raise ValueError("invalid host name")
    return host, None, True


def default_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def plain_address(ip: IPAddress) -> IPAddress:
    """Without IPv6 scope, and IPv4-mapped IPv6 as the IPv4 address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        return ipaddress.IPv6Address(int(ip))
    return ip


def same_endpoint(peer: tuple[str, int], expected: tuple[IPAddress, int]) -> bool:
    try:
        peer_ip = ipaddress.ip_address(peer[0].split("%", 1)[0])
    except ValueError:
        return False
    return plain_address(peer_ip) == plain_address(expected[0]) and peer[1] == expected[1]
