"""Per-tunnel traffic (linux/traffic.py) from our nftables table, on real packets in throwaway namespaces.

The host kernel has no sit, but the counters are the table's, keyed by `local . peer`: protocol 41 sent
with raw sockets between two namespaces moves them exactly as a tunnel's packets would.  Two tunnels
(peers Y and Y2) show that each counts its own and nobody else's, and that one going silent leaves the
other alive."""

import os
import time

import pytest

from sixbroker.linux import apply_nft, traffic
from netns_world import X, Y, Y2, link, nets, send41, vps, wait_for  # noqa: F401  (fixtures)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

STRANGER = "192.0.2.55"
INNER = b"\x60" + b"\0" * 39          # a 40-byte IPv6 header: the outer packet is 60 bytes


def test_counts_each_way_per_tunnel_and_the_last_packet(link):
    n = link
    a, b = vps(0, remote=Y), vps(1, remote=Y2)
    apply_nft.apply([a, b], netns=n["vps"])
    assert traffic.read(netns=n["vps"]) == {
        X + " . " + Y: {"rx_packets": 0, "rx_bytes": 0, "tx_packets": 0, "tx_bytes": 0, "idle_seconds": None},
        X + " . " + Y2: {"rx_packets": 0, "rx_bytes": 0, "tx_packets": 0, "tx_bytes": 0, "idle_seconds": None}}
    for _ in range(3):
        send41(n, "homes", Y, X, INNER)
    for _ in range(2):
        send41(n, "homes", Y2, X, INNER + b"\0" * 60)       # 120 bytes outer
    send41(n, "homes", STRANGER, X, INNER)                    # nobody's: dropped, counted for no tunnel
    for _ in range(4):
        send41(n, "vps", X, Y, INNER)

    def settled():
        r = traffic.read(netns=n["vps"])
        return r if r[X + " . " + Y]["rx_packets"] == 3 and r[X + " . " + Y2]["rx_packets"] == 2 else None
    r = wait_for(settled)
    ya, yb = r[X + " . " + Y], r[X + " . " + Y2]
    assert (ya["rx_packets"], ya["rx_bytes"], ya["tx_packets"], ya["tx_bytes"]) == (3, 180, 4, 240)
    assert (yb["rx_packets"], yb["rx_bytes"], yb["tx_packets"], yb["tx_bytes"]) == (2, 240, 0, 0)
    assert sorted(r) == [X + " . " + Y, X + " . " + Y2]
    assert 0 <= ya["idle_seconds"] <= 1 and 0 <= yb["idle_seconds"] <= 1
    assert traffic.alive(ya) and traffic.alive(yb)

    # Y falls silent, Y2 keeps talking: only Y turns not alive (a threshold of 2 s stands in for 300)
    time.sleep(3.1)
    send41(n, "homes", Y2, X, INNER)
    r = wait_for(lambda: (lambda r: r if r[X + " . " + Y2]["rx_packets"] == 3 else None)(traffic.read(netns=n["vps"])))
    assert r[X + " . " + Y]["idle_seconds"] >= 3 and r[X + " . " + Y2]["idle_seconds"] <= 1
    assert not traffic.alive(r[X + " . " + Y], 2) and traffic.alive(r[X + " . " + Y2], 2)
    assert r[X + " . " + Y]["rx_packets"] == 3          # silence moves nothing

    # an apply with nothing to change keeps every count and the last packet's time
    assert not apply_nft.apply([a, b], netns=n["vps"]).changed
    again = traffic.read(netns=n["vps"])
    assert again[X + " . " + Y]["rx_bytes"] == 180 and again[X + " . " + Y]["idle_seconds"] >= 3

    # removing tunnel b by its elements leaves a's counters and last packet alone, and b is gone
    assert apply_nft.change([b], [], a, netns=n["vps"]).changed
    after = traffic.read(netns=n["vps"])
    assert sorted(after) == [X + " . " + Y]
    assert Y2 not in n.nft("vps", "list", "table", "inet", "sixbroker").stdout     # its last packet too
    assert after[X + " . " + Y]["rx_packets"] == 3 and after[X + " . " + Y]["idle_seconds"] >= 3


def test_a_peer_never_heard_from_goes_as_cleanly(link):
    n = link
    a, b = vps(0, remote=Y), vps(1, remote=Y2)
    apply_nft.apply([a, b], netns=n["vps"])
    send41(n, "homes", Y, X, INNER)
    assert wait_for(lambda: traffic.read(netns=n["vps"])[X + " . " + Y]["rx_packets"] == 1)
    # b has no last-packet element: its removal is still one element change, not a reload (which would
    # zero a's counters)
    assert apply_nft.change([b], [], a, netns=n["vps"]).changed
    assert traffic.read(netns=n["vps"])[X + " . " + Y]["rx_packets"] == 1


def test_no_table_no_traffic(nets):
    n = nets("empty")
    assert traffic.read(netns=n["empty"]) == {}
    assert traffic.of_tunnel({}, X, None) is None and not traffic.alive(None)
