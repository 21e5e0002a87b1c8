"""sixbroker.broker.reach: which addresses are public (the IANA registries, the documentation blocks).

Moved here with the table from tests/core/test_addr.py; tests/core/cpython/test_addr_oracle.py compares
is_global with CPython's ipaddress.
"""
import pytest

from sixbroker.broker import reach
from sixbroker.core.addr import Address


# the addresses of tests/core/test_addr.py's classification table: is_global, is_documentation
@pytest.mark.parametrize("text,is_global,is_documentation", [
    ("0.0.0.0", False, False),
    ("0.1.2.3", False, False),
    ("127.0.0.1", False, False),
    ("127.255.255.254", False, False),
    ("10.1.2.3", False, False),
    ("172.16.0.1", False, False),
    ("172.31.255.255", False, False),
    ("172.32.0.1", True, False),
    ("192.168.1.1", False, False),
    ("100.64.0.1", False, False),
    ("100.127.255.255", False, False),
    ("100.128.0.0", True, False),
    ("169.254.1.1", False, False),
    ("192.0.2.1", False, True),
    ("198.51.100.1", False, True),
    ("203.0.113.254", False, True),
    ("224.0.0.1", True, False),
    ("239.255.255.250", True, False),
    ("240.0.0.1", False, False),
    ("255.255.255.255", False, False),
    ("8.8.8.8", True, False),
    ("::", False, False),
    ("::1", False, False),
    ("fe80::1", False, False),
    ("febf:ffff::1", False, False),
    ("fec0::1", True, False),
    ("fc00::1", False, False),
    ("fd12:3456:789a::1", False, False),
    ("2001:db8::1", False, True),
    ("3fff::1", False, True),
    ("3fff:fff::1", False, True),
    ("3fff:1000::1", True, False),
    ("ff02::1", True, False),
    ("ff0e::101", True, False),
    ("2a00:1450::1", True, False),
    ("::ffff:10.0.0.1", False, False),  # IPv6 rules only: a mapped RFC 1918 address is not fc00::/7
    ("::ffff:127.0.0.1", False, False),
])
def test_address_classification(text, is_global, is_documentation):
    a = Address.parse(text)
    assert reach.is_global(a) == is_global, text
    assert reach.is_documentation(a) == is_documentation, text


# the IANA registries' "Globally Reachable" column, including the exceptions inside blocks
@pytest.mark.parametrize("text,reachable", [
    ("0.255.255.255", False),
    ("192.0.0.8", False),
    ("192.0.0.9", True),  # PCP anycast inside the not-reachable 192.0.0.0/24
    ("192.0.0.10", True),  # TURN anycast
    ("192.0.0.11", False),
    ("192.0.0.170", False),
    ("192.31.196.1", True),
    ("192.52.193.1", True),
    ("192.88.99.1", False),  # deprecated 6to4 relay anycast: registry N/A
    ("192.175.48.1", True),
    ("198.18.0.1", False),
    ("198.19.255.255", False),
    ("198.20.0.0", True),
    ("64:ff9b::c000:201", True),
    ("64:ff9b:1::1", False),
    ("100::1", False),
    ("100:0:0:1::1", False),
    ("100:0:0:2::1", True),
    ("2001::1", False),  # Teredo: registry N/A
    ("2001:1::1", True),
    ("2001:1::2", True),
    ("2001:1::3", True),
    ("2001:1::4", False),
    ("2001:2::1", False),
    ("2001:3::1", True),
    ("2001:4:112::1", True),
    ("2001:4:113::1", False),
    ("2001:10::1", False),
    ("2001:20::1", True),
    ("2001:30::1", True),
    ("2001:40::1", False),
    ("2001:1ff::1", False),
    ("2001:200::1", True),
    ("2002:c000:201::1", False),  # 6to4: registry N/A
    ("2620:4f:8000::1", True),
    ("5f00::1", False),
    ("::ffff:8.8.8.8", False),  # IPv4-mapped never appears on the wire
])
def test_is_global_follows_the_iana_registries(text, reachable):
    assert reach.is_global(Address.parse(text)) == reachable


@pytest.mark.parametrize("text,public", [
    ("8.8.8.8", True), ("192.0.2.1", True), ("198.51.100.20", True), ("203.0.113.10", True),
    ("10.0.0.1", False), ("100.64.0.1", False), ("192.0.0.8", False), ("192.0.0.9", True),
    ("198.18.0.1", False), ("192.88.99.1", False), ("224.0.0.1", False), ("240.0.0.1", False),
    ("255.255.255.255", False), ("0.0.0.0", False), ("127.0.0.1", False),
])
def test_is_public_is_global_unicast_or_documentation(text, public):
    assert reach.is_public(Address.parse(text)) == public
