"""Addresses: numeric IPv4 spellings read like inet_aton, and which addresses are blocked."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from image_pipeline.safe_fetch import blocked_address_reason, parse_numeric_ipv4

pytestmark = pytest.mark.timeout(60)


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
