"""bench/broker/scale.py's host parts at tiny N (the bench itself needs sit: make bench-scale): the peers it
spreads over one /8, the raw shared mode's route lines, and its nftables table on a real kernel, with real
protocol-41 packets: a peer's own prefix passes and is counted, another peer's prefix and a non-peer do not."""

import os
import socket
import struct
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "broker"))

import scale  # noqa: E402
from netns_world import nets  # noqa: E402,F401  (nets is a fixture)


@pytest.fixture(scope="module")
def plans():
    return scale.plans_of(tempfile.mkdtemp(prefix="sixbroker-scale-test-"), 3)


def test_peers_are_distinct_in_one_slash8_and_moved_ones_are_nobodys():
    peers = [scale.remote(i) for i in range(10000)]
    assert len(set(peers)) == 10000
    assert {p.split(".")[0] for p in peers} == {"100"}
    assert len({p.split(".")[1] for p in peers}) > 200          # spread, not one /16
    assert not {scale.moved(k) for k in range(10)} & set(peers)


def test_shared_lines_route_each_tunnel_via_its_peer(plans):
    lines = scale.shared_lines(plans[:1])
    assert lines == ["route add 2001:db8:5b00::2/127 via ::100.0.0.1 dev sbshared mtu 1480",
                     "route add 2001:db8:5b00:1::/64 via ::100.0.0.1 dev sbshared mtu 1480"]
    assert scale.shared_lines(plans[:1], "replace", via="100.1.2.3")[1].startswith(
        "route replace 2001:db8:5b00:1::/64 via ::100.1.2.3 ")
    assert scale.shared_lines(plans[:1], "del")[0] == "route del 2001:db8:5b00::2/127 dev sbshared"


def _six_in_four(src6):
    """An IPv6 header (no payload) from src6: what a sit tunnel puts after the IPv4 header."""
    return struct.pack("!IHBB", 6 << 28, 0, 59, 64) + socket.inet_pton(socket.AF_INET6, src6) + \
        socket.inet_pton(socket.AF_INET6, "2001:db8:ffff::1")


def _counters(n, name):
    import json
    out = json.loads(n.nft("brk", "-j", "list", "set", "inet", scale.RAW_TABLE, name).stdout)
    elems = [x["set"] for x in out["nftables"] if "set" in x][0].get("elem", [])
    return {str(e["elem"]["val"]): e["elem"]["counter"]["packets"] for e in elems}


def test_raw_shared_table_counts_a_peers_own_prefix_and_drops_the_rest(nets, plans):  # noqa: F811
    n = nets("brk", "home")
    n.veth("brk", "v-brk", "home", "v-home")
    n.ip("brk", "addr", "add", "203.0.113.10/24", "dev", "v-brk")
    n.ip("home", "addr", "add", "203.0.113.20/24", "dev", "v-home")
    for peer in (plans[0]["tunnel"]["remote"], plans[1]["tunnel"]["remote"], "100.99.0.1"):
        n.ip("home", "addr", "add", peer + "/32", "dev", "v-home")
        n.ip("brk", "route", "add", peer + "/32", "dev", "v-brk")
    n.nft("brk", "-f", "-", stdin=scale.raw_shared_table(plans[:2]))
    gone = plans[2]
    n.nft("brk", "-f", "-", stdin=scale.nft_elements("add", scale.shared_elements(gone)))
    n.nft("brk", "-f", "-", stdin=scale.nft_elements("delete", scale.shared_elements(gone)))
    assert gone["tunnel"]["remote"] not in _counters(n, "peers")

    def send(src4, src6, count=1):
        s = n.socket("home", socket.AF_INET, socket.SOCK_RAW, 41)
        try:
            s.bind((src4, 0))
            for _ in range(count):
                s.sendto(_six_in_four(src6), ("203.0.113.10", 0))
        finally:
            s.close()
    p0, p1 = plans[0]["tunnel"]["remote"], plans[1]["tunnel"]["remote"]
    send(p0, "2001:db8:5b00:1::5", 3)       # t0 from its own routed /64
    send(p0, "2001:db8:5b00:2::5", 2)       # t0 from t1's: dropped
    send(p0, "2001:db8:5b00::3")            # t0 from the transfer net
    send("100.99.0.1", "2001:db8:5b00:1::5")  # not a peer
    import time
    time.sleep(0.2)
    peers, bind = _counters(n, "peers"), _counters(n, "bind")
    assert peers == {p0: 6, p1: 0}, peers
    assert sorted(bind.values()) == [0, 3], bind
