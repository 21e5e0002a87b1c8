"""sixbroker.core.addr against CPython's ipaddress as the oracle, with hypothesis (CPython only).

Both families: integers through format/parse, generated text forms, generated garbage (both must
accept and refuse the same strings), prefixes (containment, overlap, subnets, hosts, parsing) and
classification.  Where sixbroker.core.addr differs from ipaddress on purpose, the difference is listed
here with the reason, asserted to be a real difference, and left out of the comparison:

- IPv4-mapped addresses (::ffff:0:0/96) print with a dotted tail (RFC 5952 section 5); ipaddress
  3.11 prints hex (::ffff:c000:201).  Compared as "::ffff:" + the IPv4 text instead.
- Zone indexes ("fe80::1%eth0"): ipaddress accepts them, sixbroker refuses them.
- Netmask and hostmask lengths ("192.0.2.0/255.255.255.0"): ipaddress accepts them, sixbroker
  asks for the number.
- A bare address is a /32 or /128 network to ipaddress; sixbroker wants default_length= for that.
- is_private is RFC 1918 / fc00::/7 only (ipaddress: everything not globally reachable).
- is_global (sixbroker.broker.reach, the broker's question, compared here with the rest) follows
  today's IANA registries (GLOBAL_DIFFERENCES below lists where this Python's tables are older or
  decide "N/A" the other way).

The examples are counted: test_zz_enough_examples (last in the file) fails if a full run of the
file checked fewer than MIN_EXAMPLES.
"""
import ipaddress
import itertools

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sixbroker.broker import reach
from sixbroker.core.addr import (
    AddressError, Address, Network, Interface, parse_ipv4, parse_ipv6, format_ipv4, format_ipv6,
    HOST_BITS,
)

MIN_EXAMPLES = 10000
EXAMPLES = {}  # test name -> examples that ran to the end
PLANNED = {}  # test name -> max_examples


def budget(n):
    """hypothesis settings for a property test that passes the counter its name."""
    def deco(fn):
        PLANNED[fn.__name__] = n
        return settings(max_examples=n, deadline=None, database=None,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])(fn)
    return deco


def counted(name):
    EXAMPLES[name] = EXAMPLES.get(name, 0) + 1


BITS = {4: 32, 6: 128}
ORACLE_ADDRESS = {4: ipaddress.IPv4Address, 6: ipaddress.IPv6Address}
ORACLE_NETWORK = {4: ipaddress.IPv4Network, 6: ipaddress.IPv6Network}

# Blocks where the interesting rules live (registry blocks, their neighbours and supersets): a
# uniform 128-bit integer would almost never land in one.
INTERESTING = {
    4: ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "100.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "172.0.0.0/8", "192.0.0.0/24", "192.0.0.8/29", "192.0.0.168/29",
        "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "192.175.48.0/24", "192.0.0.0/8", "198.18.0.0/15", "198.0.0.0/8", "198.51.100.0/24",
        "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.0/24"],
    6: ["::/120", "::/96", "::ffff:0:0/96", "::1:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48",
        "100::/63", "2001::/16", "2001::/23", "2001::/32", "2001:1::/120", "2001:2::/48",
        "2001:3::/32", "2001:4:112::/48", "2001::/26", "2001:db8::/32", "2002::/16",
        "2620:4f:8000::/48", "3fff::/19", "5f00::/16", "fc00::/7", "fe80::/9", "fe00::/7", "ff00::/8"],
}


def _block_ints(version):
    nets = [ORACLE_NETWORK[version](t) for t in INTERESTING[version]]

    def inside(net):
        size = net.num_addresses
        base = int(net.network_address)
        return st.one_of(st.just(base), st.just(base + size - 1),
                         st.integers(0, size - 1).map(lambda h: base + h))
    return st.sampled_from(nets).flatmap(inside)


@st.composite
def _zero_heavy_v6(draw):
    # runs of zero groups are what RFC 5952 compression is about
    groups = draw(st.lists(st.one_of(st.just(0), st.just(0), st.just(1), st.just(0xFFFF),
                                     st.integers(0, 0xFFFF)), min_size=8, max_size=8))
    n = 0
    for g in groups:
        n = (n << 16) | g
    return n


V4_INTS = st.one_of(st.integers(0, (1 << 32) - 1), _block_ints(4))
V6_INTS = st.one_of(st.integers(0, (1 << 128) - 1), _zero_heavy_v6(), _block_ints(6),
                    st.integers(0, (1 << 32) - 1).map(lambda v: 0xFFFF00000000 | v))
INTS = {4: V4_INTS, 6: V6_INTS}


def _expected_text(version, n):
    o = ORACLE_ADDRESS[version](n)
    if version == 6 and o.ipv4_mapped is not None:
        # deliberate: RFC 5952 section 5 (dotted tail); CPython 3.11 prints ::ffff:c000:201
        return "::ffff:" + str(o.ipv4_mapped)
    return str(o)


def _parse_or_none(fn, text):
    try:
        return fn(text)
    except AddressError as e:
        message = str(e)
        assert message and "\n" not in message and e.code in ("BAD_ADDRESS", "BAD_PREFIX"), message
        return None


def _oracle_or_none(cls, text):
    try:
        return int(cls(text))
    except ValueError:
        return None


def _agree(version, text):
    ours = _parse_or_none(parse_ipv4 if version == 4 else parse_ipv6, text)
    if version == 6 and "%" in text:
        assert ours is None, text  # deliberate: zone indexes refused
        return
    assert ours == _oracle_or_none(ORACLE_ADDRESS[version], text), text


# ---- integers through format and parse --------------------------------------------------------

@budget(1000)
@given(V4_INTS)
def test_ipv4_integer_round_trip(n):
    text = format_ipv4(n)
    assert text == str(ipaddress.IPv4Address(n))
    assert parse_ipv4(text) == n
    assert str(Address(4, n)) == text and Address.parse(text) == Address(4, n)
    counted("test_ipv4_integer_round_trip")


@budget(1300)
@given(V6_INTS)
def test_ipv6_integer_round_trip(n):
    text = format_ipv6(n)
    o = ipaddress.IPv6Address(n)
    assert text == _expected_text(6, n)
    assert parse_ipv6(text) == n and int(ipaddress.IPv6Address(text)) == n
    assert parse_ipv6(str(o)) == n  # CPython's hex form of a mapped address reads back too
    assert parse_ipv6(o.exploded) == n and parse_ipv6(o.exploded.upper()) == n
    assert Address.parse(text) == Address(6, n)
    counted("test_ipv6_integer_round_trip")


# ---- generated text forms ---------------------------------------------------------------------

@st.composite
def _v4_texts(draw):
    """Near-valid dotted quads: 3 to 5 numbers, some above 255, some with leading zeros."""
    parts = []
    for _ in range(draw(st.sampled_from([4, 4, 4, 4, 3, 5]))):
        v = draw(st.one_of(st.integers(0, 255), st.integers(0, 255), st.integers(0, 999),
                           st.sampled_from([0, 255, 256])))
        pad = draw(st.sampled_from([0] * 12 + [1, 2]))
        parts.append("0" * pad + str(v))
    return ".".join(parts)


@budget(1000)
@given(_v4_texts())
def test_ipv4_text_forms_agree(text):
    _agree(4, text)
    counted("test_ipv4_text_forms_agree")


@st.composite
def _v6_text_and_value(draw):
    """Any valid spelling of a generated address: case, zero padding within 4 digits, '::' over
    any run of zero groups (not only the longest), an IPv4 tail."""
    n = draw(V6_INTS)
    groups = [(n >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    dotted = draw(st.booleans())
    words = []
    for g in groups:
        h = "%x" % g
        h = "0" * draw(st.integers(0, 4 - len(h))) + h
        if draw(st.booleans()):
            h = h.upper()
        words.append(h)
    limit = 6 if dotted else 8
    runs = []
    i = 0
    while i < limit:
        if groups[i] == 0:
            for j in range(i + 1, limit + 1):
                if groups[j - 1] != 0:
                    break
                runs.append((i, j))
        i += 1
    run = draw(st.sampled_from(runs)) if runs and draw(st.integers(0, 3)) else None
    if dotted:
        words[6:] = ["%d.%d.%d.%d" % ((n >> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255)]
    if run is None:
        return ":".join(words), n
    i, j = run
    return ":".join(words[:i]) + "::" + ":".join(words[j:]), n


@budget(1500)
@given(_v6_text_and_value())
def test_ipv6_text_forms_parse(case):
    text, n = case
    assert int(ipaddress.IPv6Address(text)) == n, text  # the generator writes only valid text
    assert parse_ipv6(text) == n, text
    assert format_ipv6(parse_ipv6(text)) == _expected_text(6, n)
    counted("test_ipv6_text_forms_parse")


# ---- garbage: both refuse the same strings ----------------------------------------------------

V4_ALPHABET = "0123456789......:/ x-+"
V6_ALPHABET = "0123456789abcdefABCDEFg::::::......%/ []"


@st.composite
def _mutated(draw, valid, alphabet):
    """A valid text with one to three edits: the strings near the boundary of the grammar."""
    text = draw(valid)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "double", "swap"]))
        c = draw(st.sampled_from(alphabet))
        if op == "swap":
            # moves an IPv4 tail or a '::' to where it may not be
            groups = text.split(":")
            j = draw(st.integers(0, len(groups) - 1))
            groups[i % len(groups)], groups[j] = groups[j], groups[i % len(groups)]
            text = ":".join(groups)
        elif op == "insert":
            text = text[:i] + c + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + 1:]
        elif op == "replace":
            text = text[:i] + c + text[i + 1:]
        else:
            text = text[:i] + text[i:i + 2] + text[i:]
    return text


@budget(1000)
@given(st.one_of(st.text(V4_ALPHABET, max_size=20),
                 _mutated(V4_INTS.map(format_ipv4), V4_ALPHABET)))
def test_ipv4_garbage_agrees(text):
    _agree(4, text)
    counted("test_ipv4_garbage_agrees")


@budget(1300)
@given(st.one_of(st.text(V6_ALPHABET, max_size=45),
                 _mutated(_v6_text_and_value().map(lambda c: c[0]), V6_ALPHABET),
                 _mutated(V6_INTS.map(format_ipv6), V6_ALPHABET)))
def test_ipv6_garbage_agrees(text):
    _agree(6, text)
    counted("test_ipv6_garbage_agrees")


# ---- prefixes ---------------------------------------------------------------------------------

@st.composite
def _network(draw, version):
    bits = BITS[version]
    length = draw(st.one_of(st.integers(0, bits), st.sampled_from([bits, bits - 1, bits - 2, 0])))
    n = draw(INTS[version])
    return Network(version, n & (((1 << length) - 1) << (bits - length)), length)


@st.composite
def _related_pair(draw):
    """Two prefixes of one family, usually nested, neighbouring or equal, so that containment
    and overlap are true often enough to test."""
    version = draw(st.sampled_from([4, 6]))
    bits = BITS[version]
    a = draw(_network(version))
    how = draw(st.sampled_from(["inside", "around", "sibling", "same", "any"]))
    if how == "inside":
        length = draw(st.integers(a.length, bits))
        host = draw(st.integers(0, a.size - 1))
        b = Network(version, (a.value | host) & (((1 << length) - 1) << (bits - length)), length)
    elif how == "around":
        length = draw(st.integers(0, a.length))
        b = Network(version, a.value & (((1 << length) - 1) << (bits - length)), length)
    elif how == "sibling" and a.length:
        b = Network(version, a.value ^ (1 << (bits - a.length)), a.length)
    elif how == "same":
        b = Network(version, a.value, a.length)
    else:
        b = draw(_network(version))
    return (a, b) if draw(st.booleans()) else (b, a)


def _oracle_net(n):
    return ORACLE_NETWORK[n.version]((n.value, n.length))


@budget(1200)
@given(_related_pair(), st.integers(0, (1 << 128) - 1))
def test_containment_and_overlap_agree(pair, r):
    a, b = pair
    oa, ob = _oracle_net(a), _oracle_net(b)
    assert a.contains(b) == ob.subnet_of(oa)
    assert b.contains(a) == oa.subnet_of(ob)
    assert a.overlaps(b) == oa.overlaps(ob) == b.overlaps(a)
    assert (a == b) == (oa == ob) and (a < b) == (oa < ob)
    addr = Address(a.version, (b.value | (r & ((1 << (BITS[b.version] - b.length)) - 1))))
    assert a.contains(addr) == (ORACLE_ADDRESS[a.version](addr.value) in oa)
    assert (a.first, a.last, a.size) == (int(oa.network_address), int(oa.broadcast_address), oa.num_addresses)
    # other family: never contained, never overlapping (ipaddress raises TypeError instead)
    other = Network(10 - a.version, 0, 0)
    assert not a.contains(other) and not a.overlaps(other) and not other.contains(a)
    counted("test_containment_and_overlap_agree")


@budget(900)
@given(st.sampled_from([4, 6]).flatmap(_network), st.data())
def test_subnets_and_hosts_agree(net, data):
    on = _oracle_net(net)
    bits = BITS[net.version]
    new_length = data.draw(st.one_of(st.integers(net.length, min(bits, net.length + 8)),
                                     st.integers(net.length, bits)))
    count = net.subnet_count(new_length)
    assert count == on.num_addresses // (1 << (bits - new_length))
    if count <= 256:
        subnets = list(on.subnets(new_prefix=new_length))
        assert count == len(subnets)
        index = data.draw(st.integers(-count, count - 1))
        assert _oracle_net(net.subnet(new_length, index)) == subnets[index]
    else:
        index = data.draw(st.integers(0, 63))
        assert _oracle_net(net.subnet(new_length, index)) == next(
            itertools.islice(on.subnets(new_prefix=new_length), index, None))
        last = _oracle_net(net.subnet(new_length, -1))
        assert last.subnet_of(on) and last.broadcast_address == on.broadcast_address
        assert last.prefixlen == new_length
    for bad in (count, -count - 1):
        with pytest.raises(AddressError):
            net.subnet(new_length, bad)
    i = data.draw(st.one_of(st.integers(-net.size, net.size - 1), st.sampled_from([0, -1])))
    assert net.host(i).value == int(on[i])
    for bad in (net.size, -net.size - 1):
        with pytest.raises(AddressError):
            net.host(bad)
        with pytest.raises(IndexError):
            on[bad]
    counted("test_subnets_and_hosts_agree")


@st.composite
def _prefix_text(draw):
    version = draw(st.sampled_from([4, 6]))
    bits = BITS[version]
    n = draw(INTS[version])
    length = draw(st.one_of(st.integers(0, bits), st.integers(0, bits + 3)))
    text = format_ipv4(n) if version == 4 else draw(_v6_text_and_value())[0]
    form = draw(st.sampled_from(["plain", "plain", "plain", "zero", "empty", "bare"]))
    if form == "zero":
        return version, "%s/0%d" % (text, length)  # ipaddress reads "/024" as 24, and so do we
    if form == "empty":
        return version, text + "/"
    if form == "bare":
        return version, text
    return version, "%s/%d" % (text, length)


def _net_or_none(fn):
    try:
        return fn()
    except ValueError:
        return None


@budget(1200)
@given(_prefix_text(), st.booleans())
def test_prefix_parsing_agrees(case, strict):
    version, text = case
    bits = BITS[version]
    bare = "/" not in text
    ours = _net_or_none(lambda: Network.parse(text, strict=strict, default_length=bits if bare else None))
    theirs = _net_or_none(lambda: ipaddress.ip_network(text, strict=strict))
    assert (ours is None) == (theirs is None), text
    if ours is not None:
        assert _oracle_net(ours) == theirs
        assert str(ours) == _expected_text(version, int(theirs.network_address)) + "/%d" % theirs.prefixlen
    elif strict and _net_or_none(lambda: ipaddress.ip_network(text, strict=False)) is not None:
        with pytest.raises(AddressError) as info:
            Network.parse(text, strict=True, default_length=bits if bare else None)
        assert info.value.reason == HOST_BITS
        loose = ipaddress.ip_network(text, strict=False)
        assert Network.parse(info.value.suggestion) == Network(version, int(loose.network_address),
                                                                loose.prefixlen)
    if bare:
        with pytest.raises(AddressError):
            Network.parse(text)  # deliberate: ipaddress makes it a /32 or /128
    iface = _net_or_none(lambda: Interface.parse(text, default_length=bits if bare else None))
    oiface = _net_or_none(lambda: ipaddress.ip_interface(text))
    assert (iface is None) == (oiface is None), text
    if iface is not None:
        assert iface.value == int(oiface.ip) and _oracle_net(iface.network) == oiface.network
    counted("test_prefix_parsing_agrees")


# ---- classification ---------------------------------------------------------------------------

# Where is_global deliberately differs from this Python's ipaddress, and why.  The comparison
# leaves these out; test_global_differences_are_real proves each one is a real difference.
GLOBAL_DIFFERENCES = [
    # (block, an address in it where the two disagree, ours, reason)
    ("192.88.99.0/24", "192.88.99.1", False, "deprecated 6to4 relay anycast: registry N/A, taken as not reachable"),
    ("::ffff:0:0/96", "::ffff:8.8.8.8", False, "registry: IPv4-mapped is not globally reachable; "
                                               "ipaddress uses the IPv4 address's answer"),
    ("100:0:0:1::/64", "100:0:0:1::1", False, "dummy prefix, RFC 9780 (2025): newer than this ipaddress"),
    ("2001:1::3/128", "2001:1::3", True, "DNS-SD SRP anycast, RFC 9665: newer than this ipaddress"),
    ("3fff::/20", "3fff::1", False, "documentation, RFC 9637: newer than this ipaddress"),
    ("5f00::/16", "5f00::1", False, "SRv6 SIDs, RFC 9602: newer than this ipaddress"),
]
_DIFFERENT = [(ipaddress.ip_network(b), ours) for b, _, ours, _ in GLOBAL_DIFFERENCES]
RFC1918 = [ipaddress.IPv4Network(t) for t in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
ULA = ipaddress.IPv6Network("fc00::/7")
DOC_3FFF = ipaddress.IPv6Network("3fff::/20")  # documentation since 2024, global to this ipaddress


def test_global_differences_are_real():
    for block, sample, ours, reason in GLOBAL_DIFFERENCES:
        o = ipaddress.ip_address(sample)
        assert o in ipaddress.ip_network(block)
        assert reach.is_global(Address.parse(sample)) == ours, reason
        assert o.is_global != ours, "no longer a difference, remove it: " + block


@budget(900)
@given(V4_INTS)
def test_ipv4_classification_agrees(n):
    a, o = Address(4, n), ipaddress.IPv4Address(n)
    assert (a.value == 0) == o.is_unspecified
    assert a.is_loopback == o.is_loopback
    assert a.is_multicast == o.is_multicast
    assert a.is_link_local == o.is_link_local
    assert a.is_reserved == o.is_reserved
    # ipaddress's is_reserved is 240.0.0.0/4, which holds the limited broadcast
    assert a.is_unicast == (not (o.is_unspecified or o.is_multicast or o.is_reserved))
    # ipaddress: is_private and is_global are both False for 100.64.0.0/10 and nowhere else
    assert a.is_cgnat == (not o.is_private and not o.is_global)
    assert a.is_private == any(o in net for net in RFC1918)
    if a.is_private or reach.is_documentation(a):
        assert o.is_private and not o.is_global
    if not any(o in block for block, _ in _DIFFERENT):
        assert reach.is_global(a) == o.is_global
    counted("test_ipv4_classification_agrees")


@budget(1200)
@given(V6_INTS)
def test_ipv6_classification_agrees(n):
    a, o = Address(6, n), ipaddress.IPv6Address(n)
    assert (a.value == 0) == o.is_unspecified
    assert a.is_loopback == o.is_loopback
    assert a.is_multicast == o.is_multicast
    assert a.is_link_local == o.is_link_local
    assert a.is_unicast == (not (o.is_unspecified or o.is_multicast))
    assert not a.is_cgnat and not a.is_reserved
    assert a.is_private == (o in ULA)
    if a.is_private or (reach.is_documentation(a) and o not in DOC_3FFF):
        assert o.is_private and not o.is_global
    if not any(o in block for block, _ in _DIFFERENT if block.version == 6):
        assert reach.is_global(a) == o.is_global
    counted("test_ipv6_classification_agrees")


# ---- the count --------------------------------------------------------------------------------

def test_zz_enough_examples():
    """Last in the file: the property tests above checked at least MIN_EXAMPLES cases."""
    missing = sorted(set(PLANNED) - set(EXAMPLES))
    if missing:
        pytest.skip("only part of the file ran (not run: " + ", ".join(missing) + ")")
    total = sum(EXAMPLES.values())
    print("hypothesis examples checked:", total, dict(sorted(EXAMPLES.items())))
    assert total >= MIN_EXAMPLES, EXAMPLES
