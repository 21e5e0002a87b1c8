"""The shared-device mode's mapping (sit.SharedSit) as data, and its nftables table on the host's real
nftables in throwaway namespaces: the text round trip, one-tunnel element changes, and the binding of
each peer to its inner sources on real packets (protocol 41 sent with raw sockets; the host has no sit,
but the check is on the outer packet at input, which any kernel runs).  The tunnels themselves on the
real kernel: tests/e2e/test_broker_shared.py."""

import socket
import struct
import time

import pytest

from sixbroker.core import addr, plan
from sixbroker.linux import apply_nft, nft_table, nft_token, sit
from netns_world import X, Y, nets  # noqa: F401  (nets is a fixture)
from test_nft_host import THIRD, received41, send41, wan  # noqa: F401  (wan is a fixture)

SHARED = "sbs-6in4"


def tunnel(i, remote, routed, mtu=1480):
    return plan.broker("t%d" % i, "sbs-t%d" % i, addr.Address.parse(X), addr.Address.parse(remote),
                       addr.Network.parse("2001:db8:5b00::%x/127" % (2 * i)),
                       [addr.Network.parse(r) for r in routed], mtu)


def test_one_device_for_all_routes_via_the_ipv4_compatible_peer_with_the_tunnels_mtu():
    m = sit.SharedSit(SHARED)
    plans = [tunnel(0, Y, ["2001:db8:5b01::/48"]), tunnel(1, THIRD, ["2001:db8:5b00:200::/56"], 1400)]
    (link,) = m.links(plans)
    assert (link.name, link.kind, link.mtu) == (SHARED, "sit", sit.SHARED_MTU)
    assert link.params == {"local": X, "remote": "0.0.0.0", "ttl": 64, "tos": 1, "link": None, "pmtudisc": 1}
    # no addresses: the server's transfer addresses are local routes (a device's address list costs
    # more with every address; routes do not)
    assert m.addresses(plans) == {} and m.tunnel_addresses(plans[0]) == []
    routes = [(r.text(), r.owner) for r in m.routes(plans)]
    assert routes == [
        ("2001:db8:5b01::/48 via ::198.51.100.20 dev sbs-6in4 metric 1024 mtu lock 1480", "sbs-t0"),
        ("2001:db8:5b00::1/128 via ::198.51.100.20 dev sbs-6in4 metric 1024 mtu lock 1480", "sbs-t0"),
        ("local 2001:db8:5b00::/128 dev sbs-6in4 table main metric 1024", "sbs-t0"),
        ("2001:db8:5b00:200::/56 via ::203.0.113.99 dev sbs-6in4 metric 1024 mtu lock 1400", "sbs-t1"),
        ("2001:db8:5b00::3/128 via ::203.0.113.99 dev sbs-6in4 metric 1024 mtu lock 1400", "sbs-t1"),
        ("local 2001:db8:5b00::2/128 dev sbs-6in4 table main metric 1024", "sbs-t1")]
    assert m.links([]) == [] and m.addresses([]) == {} and m.routes([]) == []
    # the per-tunnel mapping's routes carry no MTU (the device's is the tunnel's)
    assert all(r.mtu is None for r in sit.PerTunnelSit().routes(plans))


def test_one_device_cannot_have_two_local_addresses():
    a, b = tunnel(0, Y, ["2001:db8:5b01::/48"]), tunnel(1, THIRD, ["2001:db8:5b02::/48"])
    b["tunnel"]["local"] = "203.0.113.11"
    with pytest.raises(ValueError):
        sit.SharedSit(SHARED).links([a, b])


@pytest.mark.parametrize("prefix, want", [
    ("2001:db8:5b01::/48", {48: ["0x20010db85b01"]}),
    ("2001:db8:5b00:100::/56", {56: ["0x20010db85b0001"]}),
    ("2001:db8:5b00:110::/60", {64: ["0x20010db85b00%04x" % (0x110 + i) for i in range(16)]}),
    ("2001:db8:5b00:3::/64", {64: ["0x20010db85b000003"]}),
    ("2001:db8:5b00::6/127", {128: ["0x20010db85b0000000000000000000006", "0x20010db85b0000000000000000000007"]}),
    ("2001:db8:5b00:3:4000::/70", {72: ["0x20010db85b0000034%d" % i for i in range(4)]}),
])
def test_each_prefix_goes_into_the_class_of_its_length_rounded_up_to_a_byte(prefix, want):
    got = nft_table.source_classes(Y, [prefix])
    assert got == dict((n, [Y + " . " + v for v in vals]) for n, vals in want.items())


PLANS = [tunnel(0, Y, ["2001:db8:5b01::/48", "2001:db8:5b00:100::/56", "2001:db8:5b00:210::/60",
                       "2001:db8:5b00:3::/64"]),
         tunnel(1, THIRD, ["2001:db8:5b00:4::/64"])]


def test_the_shared_table_loads_as_written_and_its_rules_stay_few(nets):
    n = nets("vps")
    assert apply_nft.apply(PLANS, netns=n["vps"], shared=SHARED).changed is True
    assert apply_nft.apply(PLANS, netns=n["vps"], shared=SHARED).changed is False
    text = apply_nft.loaded(netns=n["vps"])
    assert "sbs-t0" not in text and '"sbs-6in4"' in text
    assert "jump sources6in4" in text and "sources6in4_48" in text and "sources6in4_128" in text
    # a thousand tunnels of one length: the same rules, more elements
    many = [tunnel(i, "192.0.2.%d" % (i % 250 + 1) if i < 250 else "198.51.100.%d" % (i % 250 + 1),
                   ["2001:db8:6%03x::/48" % i]) for i in range(500)]

    def rules(plans):
        return [ln for ln in nft_table.ruleset(plans, shared=SHARED).splitlines()
                if ln.startswith("\t\t") and not ln.startswith("\t\t\t") and "elements" not in ln]
    assert rules(many) == rules(many[:2])
    assert apply_nft.apply(many, netns=n["vps"], shared=SHARED).changed is True
    assert apply_nft.apply(many, netns=n["vps"], shared=SHARED).changed is False


def test_one_tunnels_change_is_its_elements_and_moves_the_digest_by_them(nets):
    n = nets("vps")
    ns = n["vps"]
    base = PLANS + [tunnel(2, "192.0.2.7", ["2001:db8:5b00:5::/64"])]
    apply_nft.apply(base, netns=ns, shared=SHARED)
    new = tunnel(3, "192.0.2.8", ["2001:db8:5b00:6::/64"])
    moved = tunnel(2, "192.0.2.9", ["2001:db8:5b00:5::/64"])
    for before, after, want in (([], [new], base + [new]), ([base[2]], [moved], PLANS + [moved, new]),
                                ([new], [], PLANS + [moved])):
        token = nft_token.token(ns)
        r = apply_nft.change(before, after, base[0], netns=ns, shared=SHARED)
        assert r is not None and r.changed and r.delta is not None
        assert nft_token.token_after(token, r, ns) == nft_token.token(ns)
        # the elements made exactly the table the whole plans make
        assert apply_nft.apply(want, netns=ns, shared=SHARED).changed is False
    # a tunnel with a length no other has brings a rule: only the whole table can
    odd = tunnel(4, "192.0.2.10", ["2001:db8:5b00:700::/56"])
    assert nft_table.change_text([], [odd], base[2], shared=SHARED) is None


def _inner(src, dst="2001:db8:5b00::"):
    return struct.pack("!IHBB", 6 << 28, 0, 59, 64) + socket.inet_pton(socket.AF_INET6, src) + \
        socket.inet_pton(socket.AF_INET6, dst)


def _settle(sock, timeout=0.6):
    got, end = [], time.time() + timeout
    while time.time() < end:
        got += received41(sock)
        time.sleep(0.02)
    return got


def test_a_peer_gets_in_only_from_its_own_prefixes_and_the_rest_is_counted_on_it(wan):
    n, listener = wan
    apply_nft.apply(PLANS, netns=n["vps"], shared=SHARED)
    own = ["2001:db8:5b01::", "2001:db8:5b01:ffff:ffff:ffff:ffff:ffff",      # the /48's first and last
           "2001:db8:5b00:100::1", "2001:db8:5b00:1ff::9",                    # the /56
           "2001:db8:5b00:210::", "2001:db8:5b00:21f:ffff::1",                 # the /60
           "2001:db8:5b00:3::5", "2001:db8:5b00::1", "2001:db8:5b00::"]        # the /64, the /127
    others = ["2001:db8:5b02::", "2001:db8:5b00:ff:ffff::1",                 # next to the /48, below the /56
              "2001:db8:5b00:20f::1", "2001:db8:5b00:220::",                   # either side of the /60
              "2001:db8:5b00:4::1",                                             # THIRD's /64
              "2001:db8:5b00::2", "fe80::1", "::"]                             # THIRD's /127, link-local, none
    for src in own:
        send41(n, "peer", Y, X, _inner(src))
    assert _settle(listener) == [Y] * len(own)
    for src in others:
        send41(n, "peer", Y, X, _inner(src))
    send41(n, "peer", Y, X, b"\x60" + b"\0" * 10)                         # too short for an inner source
    assert _settle(listener) == []
    assert apply_nft.spoofed(netns=n["vps"], shared=True)[Y]["packets"] == len(others) + 1
    # the other peer: its own /64 passes, the first peer's prefix does not, and is counted on it
    send41(n, "third", THIRD, X, _inner("2001:db8:5b00:4::1"))
    send41(n, "third", THIRD, X, _inner("2001:db8:5b01::1"))
    assert _settle(listener) == [THIRD]
    counts = apply_nft.spoofed(netns=n["vps"], shared=True)
    assert (counts[Y]["packets"], counts[THIRD]["packets"]) == (len(others) + 1, 1)
    assert apply_nft.counters(netns=n["vps"])["peers"][X + " . " + Y]["packets"] == len(own) + len(others) + 1
