"""sixbroker.core.addr: parsing, RFC 5952 printing, prefixes, point-to-point peers, classification.

Runs under pytest and under MicroPython (tests/mprun.py), so every expected value is written out
here: no ipaddress to compare with (tests/core/cpython/test_addr_oracle.py does that on CPython).
"""
import pytest

from sixbroker.core.addr import (
    AddressError, Address, Network, Interface, parse_ipv4, parse_ipv6, format_ipv4, format_ipv6,
    peer_address, BAD_LENGTH, HOST_BITS, NO_LENGTH, NO_PEER, OUT_OF_RANGE, SYNTAX, WRONG_VERSION,
)


def _error(fn, *args, **kwargs):
    with pytest.raises(AddressError) as info:
        fn(*args, **kwargs)
    e = info.value
    text = str(e)
    # one line a router owner can read: never a Python repr of internals, never a traceback
    assert text and "\n" not in text and "Traceback" not in text, text
    assert e.code in ("BAD_ADDRESS", "BAD_PREFIX"), e.code
    assert isinstance(e, ValueError)
    return e


# ---- IPv4 text ------------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [
    ("0.0.0.0", 0),
    ("192.0.2.1", 0xC0000201),
    ("198.51.100.255", 0xC63364FF),
    ("203.0.113.10", 0xCB00710A),
    ("255.255.255.255", 0xFFFFFFFF),
    ("10.0.0.0", 0x0A000000),
    ("100.64.0.1", 0x64400001),
])
def test_parse_ipv4_accepts_dotted_quads(text, value):
    assert parse_ipv4(text) == value
    assert format_ipv4(value) == text


@pytest.mark.parametrize("text,words", [
    ("", "it is empty"),
    ("1.2.3", "it has 3 numbers"),
    ("1.2.3.4.5", "it has 5 numbers"),
    ("3221225985", "it has 1 number:"),
    ("1..2.3", "a number is missing"),
    (".1.2.3", "a number is missing"),
    ("1.2.3.", "a number is missing"),
    ("192.0.2.256", "'256' is more than 255"),
    ("192.0.2.1000", "'1000' is more than 255"),
    ("01.2.3.4", "'01' has a leading zero"),
    ("192.0.2.00", "'00' has a leading zero"),
    ("192.000.2.1", "'000' has a leading zero"),
    (" 192.0.2.1", "white space before or after it"),
    ("192.0.2.1\n", "white space before or after it"),
    ("192.0. 2.1", "white space inside it"),
    ("192.0.2.x", "'x' is not a decimal digit"),
    ("192.0.2.-1", "'-' is not a decimal digit"),
    ("192.0.2.+1", "'+' is not a decimal digit"),
    ("0x7f.0.0.1", "'x' is not a decimal digit"),
    ("example.com", "'e' is not a decimal digit"),
    ("192.0.2.1/24", "it has a prefix length ('/24')"),
    ("192.0.2.1:80", "it has a ':'"),
    ("2001:db8::1", "it is an IPv6 address"),
    ("\u0661.2.3.4", "is not a decimal digit"),  # Arabic-Indic one: str.isdigit() says yes
])
def test_parse_ipv4_rejects(text, words):
    e = _error(parse_ipv4, text)
    assert str(e).startswith("'") and " is not an IPv4 address: " in str(e), str(e)
    assert words in str(e), str(e)
    assert e.code == "BAD_ADDRESS"


def test_parse_ipv4_wrong_version_reason():
    assert _error(parse_ipv4, "2001:db8::1").reason == WRONG_VERSION
    assert _error(parse_ipv4, "192.0.2.300").reason == SYNTAX


@pytest.mark.parametrize("value", [-1, 1 << 32, "192.0.2.1", None, True, 1.0])
def test_format_ipv4_rejects_non_addresses(value):
    _error(format_ipv4, value)


@pytest.mark.parametrize("value", [None, 3221225985, b"192.0.2.1"])
def test_parse_rejects_non_text(value):
    assert "expected text" in str(_error(parse_ipv4, value))
    assert "expected text" in str(_error(parse_ipv6, value))


# ---- IPv6 text ------------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [
    ("::", 0),
    ("::1", 1),
    ("1::", 1 << 112),
    ("2001:db8::1", 0x20010DB8000000000000000000000001),
    ("2001:DB8::1", 0x20010DB8000000000000000000000001),
    ("2001:0db8:0000:0000:0000:0000:0000:0001", 0x20010DB8000000000000000000000001),
    ("2001:db8:0:0:0:0:0:1", 0x20010DB8000000000000000000000001),
    ("2001:Db8:5B10::a", 0x20010DB85B100000000000000000000A),
    ("0:0:0:0:0:0:0:0", 0),
    ("1:2:3:4:5:6:7::", 0x00010002000300040005000600070000),
    ("::2:3:4:5:6:7:8", 0x00000002000300040005000600070008),
    ("1:2:3:4:5:6:7:8", 0x00010002000300040005000600070008),
    ("fe80::1", 0xFE800000000000000000000000000001),
    ("FFFF:ffff:FFFF:ffff:FFFF:ffff:FFFF:ffff", (1 << 128) - 1),
    ("::ffff:192.0.2.1", 0xFFFFC0000201),
    ("::FFFF:192.0.2.1", 0xFFFFC0000201),
    ("64:ff9b::192.0.2.1", 0x0064FF9B0000000000000000C0000201),
    ("::192.0.2.1", 0xC0000201),
    ("1:2:3:4:5:6:192.0.2.1", 0x000100020003000400050006C0000201),
    ("1::5:6:192.0.2.1", 0x00010000000000000005000600000000 | 0xC0000201),
    ("0001:0002:0003:0004:0005:0006:0007:0008", 0x00010002000300040005000600070008),
    ("2001:db8:0:1::", 0x20010DB8000000010000000000000000),
])
def test_parse_ipv6_accepts_every_text_form(text, value):
    assert parse_ipv6(text) == value


@pytest.mark.parametrize("text,words", [
    ("", "it is empty"),
    ("2001:db8::g", "'g' is not a hex digit"),
    ("2001:db8::-1", "'-' is not a hex digit"),
    ("2001:db8::12345", "'12345' has more than 4 hex digits"),
    ("02001:db8::1", "'02001' has more than 4 hex digits"),
    ("fe80::1%eth0", "it has a zone index ('%eth0')"),
    ("fe80::1%", "it has a zone index ('%')"),
    ("2001:db8::/32", "it has a prefix length ('/32')"),
    ("[2001:db8::1]", "remove the square brackets"),
    (" 2001:db8::1", "white space before or after it"),
    ("2001:db8:: 1", "white space inside it"),
    ("1:2:3:4:5:6:7", "it has 7 groups"),
    ("1:2:3:4:5:6:7:8:9", "it has 9 groups"),
    ("1:2:3:4:5:6:7:8::", "it has 8 groups and '::'"),
    ("::1:2:3:4:5:6:7:8", "it has 8 groups and '::'"),
    ("1:2:3:4:5:6:7:192.0.2.1", "it has 9 groups (its IPv4 part counts as 2)"),
    ("1:2:3:4:5:192.0.2.1", "it has 7 groups (its IPv4 part counts as 2)"),
    ("1:2:3:4:5:6::192.0.2.1", "it has 8 groups (its IPv4 part counts as 2) and '::'"),
    ("1::2::3", "it uses '::' more than once"),
    ("::1::", "it uses '::' more than once"),
    (":::", "it has ':::'"),
    ("1:::2", "it has ':::'"),
    (":1:2:3:4:5:6:7", "it starts with a single ':'"),
    (":1::2", "it starts with a single ':'"),
    ("1:2:3:4:5:6:7:", "it ends with a single ':'"),
    ("1::2:", "it ends with a single ':'"),
    ("192.0.2.1::", "an IPv4 part ('192.0.2.1') may only come last"),
    ("::192.0.2.1:1", "an IPv4 part ('192.0.2.1') may only come last"),
    ("::ffff:192.0.2.256", "its IPv4 part '192.0.2.256' is not valid: '256' is more than 255"),
    ("::ffff:192.0.2.01", "'01' has a leading zero"),
    ("::ffff:192.0.2", "its IPv4 part '192.0.2' is not valid: it has 3 numbers"),
    ("2001", "it has no ':'"),
    ("192.0.2.1", "it is an IPv4 address"),
    ("2001:db8::\u0661", "is not a hex digit"),
])
def test_parse_ipv6_rejects(text, words):
    e = _error(parse_ipv6, text)
    assert " is not an IPv6 address: " in str(e), str(e)
    assert words in str(e), str(e)


def test_parse_ipv6_message_names_input_and_bad_digit():
    # the brief's example, word for word where it matters
    assert str(_error(parse_ipv6, "2001:db8::g")) == "'2001:db8::g' is not an IPv6 address: 'g' is not a hex digit"


def test_messages_escape_invisible_characters_and_cut_long_input():
    e = _error(parse_ipv6, "2001:db8::1\x00")
    assert "\\x00" in str(e) and "\x00" not in str(e)
    e = _error(parse_ipv6, "2001:db8::\u200b1")  # zero-width space pasted from a web page
    assert "\\u200b" in str(e)
    e = _error(parse_ipv4, "1" * 500)
    assert len(str(e)) < 250 and "..." in str(e)


# RFC 5952 sections 2, 4 and 5: every spelling on the left prints as the right.
@pytest.mark.parametrize("text,canonical", [
    ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),  # s.2: all eight spellings, one text
    ("2001:0db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
    ("2001:db8::1:0:0:1", "2001:db8::1:0:0:1"),
    ("2001:db8::0:1:0:0:1", "2001:db8::1:0:0:1"),
    ("2001:0db8::1:0:0:1", "2001:db8::1:0:0:1"),
    ("2001:db8:0:0:1::1", "2001:db8::1:0:0:1"),
    ("2001:db8:0000:0:1::1", "2001:db8::1:0:0:1"),
    ("2001:DB8:0:0:1::1", "2001:db8::1:0:0:1"),
    ("2001:0db8::0001", "2001:db8::1"),  # s.4.1 leading zeros
    ("2001:db8::0000:1", "2001:db8::1"),
    ("2001:db8:0:0:0:0:2:1", "2001:db8::2:1"),  # s.4.2.1 shorten as much as possible
    ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),  # s.4.2.2 never '::' for one group
    ("2001:db8::1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
    ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),  # s.4.2.3 the longest run
    ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),  # s.4.2.3 the first of equal runs
    ("2001:DB8::ABCD", "2001:db8::abcd"),  # s.4.3 lowercase
    ("0:0:0:0:0:0:0:0", "::"),
    ("0:0:0:0:0:0:0:1", "::1"),
    ("1:0:0:0:0:0:0:0", "1::"),
    ("1:0:0:0:0:0:0:1", "1::1"),
    ("0:1:0:1:0:1:0:1", "0:1:0:1:0:1:0:1"),
    ("1:0:1:0:1:0:1:0", "1:0:1:0:1:0:1:0"),
    ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
    ("1:0:0:0:2:0:0:3", "1::2:0:0:3"),
    ("0:0:1:0:0:0:0:0", "0:0:1::"),
    ("::ffff:c000:0201", "::ffff:192.0.2.1"),  # s.5 IPv4-mapped: dotted tail
    ("0:0:0:0:0:FFFF:198.51.100.7", "::ffff:198.51.100.7"),
    ("::ffff:0:0", "::ffff:0.0.0.0"),
    ("::fffe:c000:201", "::fffe:c000:201"),  # not mapped: hex
    ("::1:ffff:c000:201", "::1:ffff:c000:201"),
    ("::192.0.2.1", "::c000:201"),  # IPv4-compatible (deprecated): hex, as ip(8) shows routes
    ("64:ff9b::192.0.2.1", "64:ff9b::c000:201"),  # NAT64: hex, like CPython and iproute2
])
def test_format_ipv6_is_rfc5952_canonical(text, canonical):
    value = parse_ipv6(text)
    assert format_ipv6(value) == canonical
    assert parse_ipv6(canonical) == value


@pytest.mark.parametrize("value", [-1, 1 << 128, "::1", None, False])
def test_format_ipv6_rejects_non_addresses(value):
    _error(format_ipv6, value)


# ---- Address --------------------------------------------------------------------------------

@pytest.mark.parametrize("text,version,canonical", [
    ("192.0.2.1", 4, "192.0.2.1"),
    ("2001:DB8:0::1", 6, "2001:db8::1"),
    ("::ffff:192.0.2.1", 6, "::ffff:192.0.2.1"),
    ("::", 6, "::"),
])
def test_address_parse_guesses_the_family(text, version, canonical):
    a = Address.parse(text)
    assert a.version == version and str(a) == canonical
    assert Address.parse(text, version=version) == a
    assert repr(a) == "Address('" + canonical + "')"
    assert a.bits == (32 if version == 4 else 128)


@pytest.mark.parametrize("text,version,words", [
    ("192.0.2.1", 6, "'192.0.2.1' is not an IPv6 address: it is an IPv4 address"),
    ("2001:db8::1", 4, "'2001:db8::1' is not an IPv4 address: it is an IPv6 address"),
])
def test_address_parse_wrong_family(text, version, words):
    e = _error(Address.parse, text, version=version)
    assert str(e) == words and e.reason == WRONG_VERSION


@pytest.mark.parametrize("text,words", [
    ("", "'' is not an IP address: it is empty"),
    ("router", "'router' is not an IP address: expected an IPv4 address like"),
    ("1.2.3", "'1.2.3' is not an IPv4 address"),
    ("fe80::1%br-lan", "'fe80::1%br-lan' is not an IPv6 address: it has a zone index"),
])
def test_address_parse_without_version_names_the_likely_family(text, words):
    assert str(_error(Address.parse, text)).startswith(words)


def test_address_parse_rejects_unknown_version():
    _error(Address.parse, "192.0.2.1", version=5)
    _error(Address, 5, 1)
    _error(Address, True, 1)


@pytest.mark.parametrize("version,value", [(4, -1), (4, 1 << 32), (6, 1 << 128), (6, "1"), (4, None)])
def test_address_constructor_checks_value(version, value):
    _error(Address, version, value)


def test_address_equality_hash_and_order():
    a = Address.parse("2001:db8::1")
    b = Address(6, 0x20010DB8000000000000000000000001)
    c = Address.parse("2001:db8::2")
    v4 = Address.parse("192.0.2.1")
    assert a == b and not (a != b) and hash(a) == hash(b)
    assert a != c and not (a == c)
    assert a < c and c > a and a <= b and a >= b and not (c < a)
    assert len({a, b, c}) == 2
    # the same integer in the other family is another address
    assert Address(4, 1) != Address(6, 1)
    assert sorted([c, v4, a]) == [v4, a, c]
    assert a != "2001:db8::1" and not (a == Network.parse("2001:db8::1/128"))
    with pytest.raises(TypeError):
        a < "2001:db8::2"  # noqa: B015


# every property of each address; the ones not listed must be False
# (is_unspecified is value 0; is_documentation and is_global are the broker's: tests/broker/test_reach.py)
_PROPS = ("is_loopback", "is_multicast", "is_link_local", "is_private", "is_cgnat", "is_unicast")


@pytest.mark.parametrize("text,true_props", [
    ("0.0.0.0", ("is_unspecified",)),
    ("0.1.2.3", ("is_unicast",)),
    ("127.0.0.1", ("is_loopback", "is_unicast")),
    ("127.255.255.254", ("is_loopback", "is_unicast")),
    ("10.1.2.3", ("is_private", "is_unicast")),
    ("172.16.0.1", ("is_private", "is_unicast")),
    ("172.31.255.255", ("is_private", "is_unicast")),
    ("172.32.0.1", ("is_unicast",)),
    ("192.168.1.1", ("is_private", "is_unicast")),
    ("100.64.0.1", ("is_cgnat", "is_unicast")),
    ("100.127.255.255", ("is_cgnat", "is_unicast")),
    ("100.128.0.0", ("is_unicast",)),
    ("169.254.1.1", ("is_link_local", "is_unicast")),
    ("192.0.2.1", ("is_unicast",)),
    ("198.51.100.1", ("is_unicast",)),
    ("203.0.113.254", ("is_unicast",)),
    ("224.0.0.1", ("is_multicast",)),
    ("239.255.255.250", ("is_multicast",)),
    ("240.0.0.1", ()),
    ("255.255.255.255", ()),
    ("8.8.8.8", ("is_unicast",)),
    ("::", ("is_unspecified",)),
    ("::1", ("is_loopback", "is_unicast")),
    ("fe80::1", ("is_link_local", "is_unicast")),
    ("febf:ffff::1", ("is_link_local", "is_unicast")),
    ("fec0::1", ("is_unicast",)),
    ("fc00::1", ("is_private", "is_unicast")),
    ("fd12:3456:789a::1", ("is_private", "is_unicast")),
    ("2001:db8::1", ("is_unicast",)),
    ("3fff::1", ("is_unicast",)),
    ("3fff:fff::1", ("is_unicast",)),
    ("3fff:1000::1", ("is_unicast",)),
    ("ff02::1", ("is_multicast",)),
    ("ff0e::101", ("is_multicast",)),
    ("2a00:1450::1", ("is_unicast",)),
    ("::ffff:10.0.0.1", ("is_unicast",)),  # IPv6 rules only: a mapped RFC 1918 address is not fc00::/7
    ("::ffff:127.0.0.1", ("is_unicast",)),
])
def test_address_classification(text, true_props):
    a = Address.parse(text)
    for prop in _PROPS:
        assert getattr(a, prop) == (prop in true_props), text + " " + prop
    assert (a.value == 0) == ("is_unspecified" in true_props), text


# ---- Network --------------------------------------------------------------------------------

@pytest.mark.parametrize("text,canonical,first,last,size", [
    ("192.0.2.0/24", "192.0.2.0/24", 0xC0000200, 0xC00002FF, 256),
    ("192.0.2.128/25", "192.0.2.128/25", 0xC0000280, 0xC00002FF, 128),
    ("192.0.2.1/32", "192.0.2.1/32", 0xC0000201, 0xC0000201, 1),
    ("0.0.0.0/0", "0.0.0.0/0", 0, 0xFFFFFFFF, 1 << 32),
    ("2001:DB8:0::/32", "2001:db8::/32", 0x20010DB8 << 96, (0x20010DB8 << 96) | ((1 << 96) - 1), 1 << 96),
    ("2001:db8:5b00::/56", "2001:db8:5b00::/56", 0x20010DB85B00 << 80,
     (0x20010DB85B00 << 80) | ((1 << 72) - 1), 1 << 72),
    ("::/0", "::/0", 0, (1 << 128) - 1, 1 << 128),
    ("2001:db8::1/128", "2001:db8::1/128", (0x20010DB8 << 96) | 1, (0x20010DB8 << 96) | 1, 1),
    ("2001:db8::/064", "2001:db8::/64", 0x20010DB8 << 96, (0x20010DB8 << 96) | ((1 << 64) - 1), 1 << 64),
])
def test_network_parse(text, canonical, first, last, size):
    n = Network.parse(text)
    assert str(n) == canonical and repr(n) == "Network('" + canonical + "')"
    assert n.value == n.first == first and n.last == last and n.size == size
    assert n.address == Address(n.version, first)
    assert Network(n.version, first, n.length) == n and hash(Network.parse(canonical)) == hash(n)


@pytest.mark.parametrize("text,network", [
    ("2001:db8::1/64", "2001:db8::/64"),
    ("2001:db8:5b11:1::/56", "2001:db8:5b11::/56"),
    ("192.0.2.1/24", "192.0.2.0/24"),
    ("203.0.113.77/27", "203.0.113.64/27"),
    ("0.0.0.1/0", "0.0.0.0/0"),
])
def test_network_strict_names_the_network_meant(text, network):
    e = _error(Network.parse, text)
    assert e.code == "BAD_PREFIX" and e.reason == HOST_BITS and e.suggestion == network
    assert str(e).startswith("'" + text + "' has host bits set") and str(e).endswith("the network is " + network)
    assert str(Network.parse(text, strict=False)) == network


def test_network_constructor_refuses_host_bits():
    e = _error(Network, 6, (0x20010DB8 << 96) | 1, 64)
    assert e.reason == HOST_BITS and "the network is 2001:db8::/64" in str(e)
    _error(Network, 4, 0, 33)
    _error(Network, 4, 0, -1)
    _error(Network, 6, 0, True)


@pytest.mark.parametrize("text,default,expected", [
    ("2001:db8::", 64, "2001:db8::/64"),
    ("192.0.2.7", 32, "192.0.2.7/32"),
    ("2001:db8::/48", 64, "2001:db8::/48"),  # an explicit length wins
])
def test_network_default_length(text, default, expected):
    assert str(Network.parse(text, default_length=default)) == expected


@pytest.mark.parametrize("text,example", [("2001:db8::", "/64"), ("192.0.2.0", "/24")])
def test_network_bare_address_needs_a_length(text, example):
    e = _error(Network.parse, text)
    assert e.code == "BAD_PREFIX" and e.reason == NO_LENGTH
    assert str(e) == "'" + text + "' has no prefix length: add one, e.g. " + example


@pytest.mark.parametrize("text,kwargs,reason,words", [
    ("192.0.2.0/33", {}, BAD_LENGTH, "'/33' is too long: an IPv4 prefix length is at most 32"),
    ("2001:db8::/129", {}, BAD_LENGTH, "'/129' is too long"),
    ("2001:db8::/0000000000000000000000000000129", {}, BAD_LENGTH, "is too long"),
    ("2001:db8::/" + "9" * 5000, {}, BAD_LENGTH, "is too long: an IPv6 prefix length is at most 128"),
    ("2001:db8::/", {}, BAD_LENGTH, "there is no length after the '/'"),
    ("2001:db8::/-1", {}, BAD_LENGTH, "'-1' is not a prefix length"),
    ("2001:db8::/+64", {}, BAD_LENGTH, "'+64' is not a prefix length"),
    ("2001:db8::/ 64", {}, SYNTAX, "white space inside it"),
    ("2001:db8::/64/64", {}, BAD_LENGTH, "more than one '/'"),
    ("192.0.2.0/255.255.255.0", {}, BAD_LENGTH, "give the length as a number (/24), not as a netmask"),
    ("192.0.2.0/0.0.0.255", {}, BAD_LENGTH, "'0.0.0.255' is not a prefix length"),
    ("2001:db8::g/64", {}, SYNTAX, "'2001:db8::g/64' is not an IPv6 prefix: 'g' is not a hex digit"),
    ("192.0.2/24", {}, SYNTAX, "'192.0.2/24' is not an IPv4 prefix: it has 3 numbers"),
    ("fe80::%eth0/64", {}, SYNTAX, "zone index"),
    ("2001:db8::/64", {"version": 4}, WRONG_VERSION, "is not an IPv4 prefix: it is an IPv6 address"),
    ("192.0.2.0", {"default_length": 64}, BAD_LENGTH, "64 is not an IPv4 prefix length"),
    ("", {}, SYNTAX, "'' is not an IP prefix: it is empty"),
    (None, {}, SYNTAX, "None is not an IP prefix: expected text, got NoneType"),
])
def test_network_parse_rejects(text, kwargs, reason, words):
    e = _error(Network.parse, text, **kwargs)
    assert e.reason == reason, (e.reason, str(e))
    assert words in str(e), str(e)


@pytest.mark.parametrize("outer,inner,inside", [
    ("2001:db8::/32", "2001:db8::/32", True),
    ("2001:db8::/32", "2001:db8:5b11::/64", True),
    ("2001:db8::/32", "2001:db8:ffff:ffff::/64", True),
    ("2001:db8::/32", "2001:db9::/64", False),
    ("2001:db8::/32", "2001:db8::/31", False),
    ("2001:db8:5b11::/64", "2001:db8::/32", False),
    ("::/0", "2001:db8::/32", True),
    ("192.0.2.0/24", "192.0.2.128/25", True),
    ("192.0.2.0/25", "192.0.2.128/25", False),
    ("0.0.0.0/0", "203.0.113.0/24", True),
    ("0.0.0.0/0", "::/0", False),  # other family
    ("::/0", "0.0.0.0/0", False),
])
def test_network_contains_network(outer, inner, inside):
    o, i = Network.parse(outer), Network.parse(inner)
    assert o.contains(i) == inside and (i in o) == inside


@pytest.mark.parametrize("net,addr,inside", [
    ("2001:db8:5b10::/127", "2001:db8:5b10::", True),
    ("2001:db8:5b10::/127", "2001:db8:5b10::1", True),
    ("2001:db8:5b10::/127", "2001:db8:5b10::2", False),
    ("192.0.2.0/24", "192.0.2.255", True),
    ("192.0.2.0/24", "192.0.3.0", False),
    ("::/0", "192.0.2.1", False),
    ("0.0.0.0/0", "::ffff:192.0.2.1", False),
])
def test_network_contains_address(net, addr, inside):
    n, a = Network.parse(net), Address.parse(addr)
    assert n.contains(a) == inside and (a in n) == inside


def test_network_contains_refuses_interfaces():
    with pytest.raises(TypeError):
        Network.parse("2001:db8::/32").contains(Interface.parse("2001:db8::1/64"))


@pytest.mark.parametrize("a,b,overlap", [
    ("2001:db8::/32", "2001:db8:5b11::/64", True),
    ("2001:db8:5b11::/64", "2001:db8::/32", True),
    ("2001:db8:5b11::/64", "2001:db8:5b12::/64", False),
    ("2001:db8:5b10::/127", "2001:db8:5b10::/126", True),
    ("2001:db8:5b10::2/127", "2001:db8:5b10::/127", False),
    ("192.0.2.0/25", "192.0.2.128/25", False),
    ("192.0.2.0/23", "192.0.3.0/24", True),
    ("::/0", "0.0.0.0/0", False),
])
def test_network_overlaps(a, b, overlap):
    assert Network.parse(a).overlaps(Network.parse(b)) == overlap
    assert Network.parse(b).overlaps(Network.parse(a)) == overlap


@pytest.mark.parametrize("net,new_length,index,expected", [
    ("2001:db8:5b00::/56", 64, 0, "2001:db8:5b00::/64"),
    ("2001:db8:5b00::/56", 64, 17, "2001:db8:5b00:11::/64"),
    ("2001:db8:5b00::/56", 64, 255, "2001:db8:5b00:ff::/64"),
    ("2001:db8:5b00::/56", 64, -1, "2001:db8:5b00:ff::/64"),
    ("2001:db8:5b00::/56", 56, 0, "2001:db8:5b00::/56"),
    ("2001:db8:5b10::/64", 127, 0, "2001:db8:5b10::/127"),
    ("2001:db8:5b10::/64", 127, 5, "2001:db8:5b10::a/127"),
    ("2001:db8:5b10::/64", 127, (1 << 63) - 1, "2001:db8:5b10:0:ffff:ffff:ffff:fffe/127"),
    ("2001:db8::/32", 48, 0x5b00, "2001:db8:5b00::/48"),
    ("192.0.2.0/24", 26, 3, "192.0.2.192/26"),
    ("192.0.2.0/24", 31, 1, "192.0.2.2/31"),
    ("192.0.2.0/24", 32, 255, "192.0.2.255/32"),
    ("0.0.0.0/0", 8, 203, "203.0.0.0/8"),
])
def test_network_subnet(net, new_length, index, expected):
    n = Network.parse(net)
    s = n.subnet(new_length, index)
    assert str(s) == expected and n.contains(s)


@pytest.mark.parametrize("net,new_length,count", [
    ("2001:db8:5b00::/56", 64, 256),
    ("2001:db8::/32", 64, 1 << 32),
    ("2001:db8::/32", 32, 1),
    ("::/0", 128, 1 << 128),
    ("192.0.2.0/24", 30, 64),
])
def test_network_subnet_count(net, new_length, count):
    assert Network.parse(net).subnet_count(new_length) == count


@pytest.mark.parametrize("net,new_length,index,reason", [
    ("2001:db8:5b00::/56", 64, 256, OUT_OF_RANGE),
    ("2001:db8:5b00::/56", 64, -257, OUT_OF_RANGE),
    ("2001:db8:5b00::/56", 64, "1", OUT_OF_RANGE),
    ("2001:db8:5b00::/56", 48, 0, BAD_LENGTH),  # bigger than the network
    ("2001:db8:5b00::/56", 129, 0, BAD_LENGTH),
    ("192.0.2.0/24", 33, 0, BAD_LENGTH),
])
def test_network_subnet_out_of_range(net, new_length, index, reason):
    e = _error(Network.parse(net).subnet, new_length, index)
    assert e.code == "BAD_PREFIX" and e.reason == reason
    assert net in str(e)


def test_network_subnet_message():
    e = _error(Network.parse("2001:db8:5b00::/56").subnet, 64, 256)
    assert str(e) == "2001:db8:5b00::/56 has 256 /64 subnets: index 256 is out of range"


@pytest.mark.parametrize("net,i,expected", [
    ("2001:db8:5b10::/127", 0, "2001:db8:5b10::"),
    ("2001:db8:5b10::/127", 1, "2001:db8:5b10::1"),
    ("2001:db8:5b10::/127", -1, "2001:db8:5b10::1"),
    ("2001:db8:5b10::/127", -2, "2001:db8:5b10::"),
    ("2001:db8:5b11::/64", 1, "2001:db8:5b11::1"),
    ("2001:db8:5b11::/64", -1, "2001:db8:5b11:0:ffff:ffff:ffff:ffff"),
    ("192.0.2.0/24", 254, "192.0.2.254"),
    ("192.0.2.0/24", -1, "192.0.2.255"),
])
def test_network_host(net, i, expected):
    assert Network.parse(net).host(i) == Address.parse(expected)


@pytest.mark.parametrize("net,i", [
    ("2001:db8:5b10::/127", 2), ("2001:db8:5b10::/127", -3), ("192.0.2.0/24", 256),
    ("192.0.2.1/32", 1), ("192.0.2.0/24", 1.0),
])
def test_network_host_out_of_range(net, i):
    e = _error(Network.parse(net).host, i)
    assert e.reason == OUT_OF_RANGE and "out of range" in str(e)


def test_network_equality_and_order():
    a, b = Network.parse("2001:db8::/32"), Network.parse("2001:db8::/48")
    assert a != b and a < b and sorted([b, a]) == [a, b]
    assert Network.parse("192.0.2.0/24") < a  # IPv4 sorts first
    assert len({a, Network.parse("2001:0DB8::/32"), b}) == 2
    assert a != Address.parse("2001:db8::")


# ---- Interface ------------------------------------------------------------------------------

@pytest.mark.parametrize("text,address,length,network", [
    ("2001:db8:5b10::b/127", "2001:db8:5b10::b", 127, "2001:db8:5b10::a/127"),
    ("2001:DB8:5B10:0::A/127", "2001:db8:5b10::a", 127, "2001:db8:5b10::a/127"),
    ("2001:db8:5b11::1/64", "2001:db8:5b11::1", 64, "2001:db8:5b11::/64"),
    ("192.0.2.1/24", "192.0.2.1", 24, "192.0.2.0/24"),
    ("192.0.2.0/24", "192.0.2.0", 24, "192.0.2.0/24"),
])
def test_interface_parse_allows_host_bits(text, address, length, network):
    i = Interface.parse(text)
    assert i.address == Address.parse(address) and i.length == length
    assert i.network == Network.parse(network)
    assert str(i) == address + "/%d" % length and repr(i) == "Interface('" + str(i) + "')"
    assert i == Interface.parse(str(i)) and hash(i) == hash(Interface.parse(str(i)))


def test_interface_needs_a_length():
    e = _error(Interface.parse, "2001:db8:5b10::b")
    assert e.reason == NO_LENGTH and "e.g. /64" in str(e)
    assert str(Interface.parse("2001:db8:5b10::b", default_length=127)) == "2001:db8:5b10::b/127"
    e = _error(Interface.parse, "2001:db8:5b10::b/129")
    assert e.reason == BAD_LENGTH and str(e) == ("'2001:db8:5b10::b/129' is not an IPv6 address with"
                                                 " a length: '/129' is too long: an IPv6 prefix length"
                                                 " is at most 128")
    assert _error(Interface.parse, "192.0.2.1/24", version=6).reason == WRONG_VERSION


def test_interface_is_not_an_address():
    i = Interface.parse("2001:db8::1/64")
    assert i != Address.parse("2001:db8::1") and i != Network.parse("2001:db8::/64")
    assert Interface.parse("2001:db8::1/64") != Interface.parse("2001:db8::1/128")


# ---- point-to-point peers -------------------------------------------------------------------

@pytest.mark.parametrize("text,length,peer", [
    ("2001:db8:5b10::a", 127, "2001:db8:5b10::b"),  # the design's seed link
    ("2001:db8:5b10::b", 127, "2001:db8:5b10::a"),
    ("2001:db8:5b10::", 127, "2001:db8:5b10::1"),  # RFC 6164: both addresses of a /127 are usable
    ("2001:db8:5b10::1", 126, "2001:db8:5b10::2"),
    ("2001:db8:5b10::2", 126, "2001:db8:5b10::1"),
    ("2001:db8:5b10::5", 126, "2001:db8:5b10::6"),
    ("192.0.2.0", 31, "192.0.2.1"),  # RFC 3021
    ("192.0.2.1", 31, "192.0.2.0"),
    ("192.0.2.5", 30, "192.0.2.6"),
    ("192.0.2.6", 30, "192.0.2.5"),
])
def test_peer_address(text, length, peer):
    a = Address.parse(text)
    assert peer_address(a, length) == Address.parse(peer)
    assert peer_address(peer_address(a, length), length) == a
    assert Interface.parse(text + "/%d" % length).peer() == Address.parse(peer)


@pytest.mark.parametrize("text,length,code,words", [
    ("2001:db8:5b10::", 126, "BAD_ADDRESS", "the subnet-router anycast address of the /126, whose two"
                                            " ends are 2001:db8:5b10::1 and 2001:db8:5b10::2"),
    ("2001:db8:5b10::3", 126, "BAD_ADDRESS", "the last address of the /126"),
    ("192.0.2.4", 30, "BAD_ADDRESS", "the network address of the /30, whose two ends are 192.0.2.5 and 192.0.2.6"),
    ("192.0.2.7", 30, "BAD_ADDRESS", "the broadcast address of the /30"),
    ("2001:db8:5b10::1", 64, "BAD_PREFIX", "only in a /127 or /126"),
    ("2001:db8:5b10::1", 128, "BAD_PREFIX", "only in a /127 or /126"),
    ("192.0.2.1", 24, "BAD_PREFIX", "only in a /31 or /30"),
    ("192.0.2.1", 32, "BAD_PREFIX", "only in a /31 or /30"),
])
def test_peer_address_refuses(text, length, code, words):
    e = _error(peer_address, Address.parse(text), length)
    assert e.code == code and e.reason == NO_PEER and words in str(e), str(e)


def test_peer_address_checks_its_arguments():
    _error(peer_address, Address.parse("2001:db8::1"), 129)
    with pytest.raises(TypeError):
        peer_address("2001:db8::1", 127)
