"""bench/broker/scale.py's host parts at tiny N (the bench itself needs sit: make bench-scale): the peers it
spreads over one /8, the raw shared mode's iproute2 lines, and its one-tunnel nft changes on a real
nftables (a throwaway namespace): adding a tunnel and removing it again leaves the table as it was."""

import os
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "broker"))

import scale  # noqa: E402
from sixbroker.linux import nft_table  # noqa: E402
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


def test_shared_lines_put_a_tunnel_on_the_shared_device_via_its_peer(plans):
    dev = scale.service.SHARED_DEVICE
    # the server's end as a local route in the main table, as sit.SharedSit puts it
    assert scale.shared_lines(plans[:1]) == [
        "route add 2001:db8:5b00:1::/64 via ::100.0.0.1 dev %s metric 1024 mtu lock 1480" % dev,
        "route add 2001:db8:5b00::3/128 via ::100.0.0.1 dev %s metric 1024 mtu lock 1480" % dev,
        "route add local 2001:db8:5b00::2/128 dev %s table main metric 1024" % dev]
    # a new peer replaces the routes via it and leaves the local route be
    assert scale.shared_lines(plans[:1], "replace", via="100.1.2.3") == [
        "route replace 2001:db8:5b00:1::/64 via ::100.1.2.3 dev %s metric 1024 mtu lock 1480" % dev,
        "route replace 2001:db8:5b00::3/128 via ::100.1.2.3 dev %s metric 1024 mtu lock 1480" % dev]
    assert scale.shared_lines(plans[:1], "del")[2] == "route del local 2001:db8:5b00::2/128 dev %s table main metric 1024" % dev


def test_one_tunnels_nft_change_added_and_removed_leaves_the_table_as_it_was(nets, plans):  # noqa: F811
    n = nets("brk")
    n.nft("brk", "-f", "-", stdin=scale.shared_table(plans[:2]))

    def table():
        return n.nft("brk", "list", "table", nft_table.FAMILY, nft_table.TABLE).stdout
    before = table()
    n.nft("brk", "-f", "-", stdin=scale.shared_change([], [plans[2]], plans[0]))
    added = table()
    assert added != before and plans[2]["tunnel"]["remote"] in added
    n.nft("brk", "-f", "-", stdin=scale.shared_change([plans[2]], [], plans[0]))
    assert table() == before
