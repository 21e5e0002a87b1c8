"""sixbroker/linux/netlink.py and apply_kernel's reader against the host's real kernel, in a throwaway
namespace.  The host cannot make sit devices (tests/e2e does, in the guest); everything else the broker
sends (link settings, IPv6 addresses and routes, deletes, batches with a refusal in the middle) works on a
veth just the same, and `ip` tells what the kernel holds."""

import errno
import os
import subprocess
import uuid

import pytest

from sixbroker.linux import netns, netlink as nl
from sixbroker.linux.kernel import Kernel
from sixbroker.core.errors import SixbrokerError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


def ip(ns, *args):
    return subprocess.run(["ip", "-n", ns] + list(args), check=True, capture_output=True, text=True).stdout


@pytest.fixture
def ns():
    name = "sbt-nl-" + uuid.uuid4().hex[:6]
    subprocess.run(["ip", "netns", "add", name], check=True)
    ip(name, "link", "add", "va", "type", "veth", "peer", "name", "vb")
    yield name
    subprocess.run(["ip", "netns", "del", name], check=True)


def kernel(ns):
    return Kernel(ns)


def test_a_batch_sets_links_addresses_and_routes_in_order(ns):
    k = kernel(ns)
    try:
        va = k.link("va")
        assert va is not None and va.up is False and k.link("nope") is None
        k.queue("va", nl.link_set(va.index, alias="sixbroker:test", mtu=1400, up=True))
        k.queue("addr", nl.addr6(True, va.index, "2001:db8::1", 127))
        k.queue("lan addr", nl.addr6(True, va.index, "2001:db8:1::1", 64, metric=297))
        # via the far /127 address: needs the link up and its address, queued before it
        k.queue("route", nl.route6("add", va.index, "2001:db8:5b00::", 56, gateway="2001:db8::", proto=91))
        k.queue("default", nl.route6("add", va.index, "::", 0, gateway="2001:db8::", metric=2048, proto=91))
        k.flush()
        assert k.result.changes == ["va", "addr", "lan addr", "route", "default"]
        va = k.link("va")
        assert (va.alias, va.mtu, va.up) == ("sixbroker:test", 1400, True)
        addrs = sorted((a.address, a.length, a.metric) for a in k.addrs6(va.index) if not a.kernel_made)
        assert addrs == [("2001:db8:1::1", 64, 297), ("2001:db8::1", 127, 0)]
        routes = sorted((r.dst, r.dst_len, r.gateway, r.metric) for r in k.routes6(91, va.index))
        assert routes == [("2001:db8:5b00::", 56, "2001:db8::", 1024), ("::", 0, "2001:db8::", 2048)]
    finally:
        k.close()
    text = ip(ns, "-6", "route", "show", "proto", "91")
    assert "2001:db8:5b00::/56 via 2001:db8:: dev va" in text and "default via 2001:db8:: dev va" in text


def test_a_refusal_in_a_batch_is_the_first_error_and_the_rest_still_happen(ns):
    k = kernel(ns)
    try:
        va = k.link("va")
        k.queue("up", nl.link_set(va.index, up=True))
        k.queue("addr", nl.addr6(True, va.index, "2001:db8::1", 64))
        k.queue("again", nl.addr6(True, va.index, "2001:db8::1", 64), {errno.EEXIST: SixbrokerError("ROUTE_NOT_OURS", "x")})
        k.queue("other", nl.addr6(True, va.index, "2001:db8::2", 64))
        with pytest.raises(SixbrokerError) as e:
            k.flush()
        assert e.value.code == "ROUTE_NOT_OURS"
        # acked ones are counted, the refused one is not; the kernel went on after it, as one by one
        assert k.result.changes == ["up", "addr", "other"]
        have = sorted(a.address for a in k.addrs6(va.index) if not a.kernel_made)
        assert have == ["2001:db8::1", "2001:db8::2"]
        # an unmapped refusal is NETLINK_FAIL with the errno's words and what was asked
        k.queue("del missing", nl.addr6(False, va.index, "2001:db8::9", 64))
        with pytest.raises(SixbrokerError) as e:
            k.flush()
        assert e.value.code == "NETLINK_FAIL" and "del missing" in e.value.text
    finally:
        k.close()


def test_batches_longer_than_one_send(ns):
    k = kernel(ns)
    try:
        va = k.link("va")
        k.queue("up", nl.link_set(va.index, up=True))
        n = nl.BATCH * 3 + 7
        for i in range(n):
            k.queue("a%d" % i, nl.addr6(True, va.index, "2001:db8::%x" % (i + 1), 128))
        k.flush()
        assert len(k.result.changes) == n + 1
        assert len([a for a in k.addrs6(va.index) if not a.kernel_made]) == n
        # deleting the link takes its addresses along
        k.queue("del", nl.link_del(va.index))
        k.flush()
        assert k.link("va") is None and k.link("vb") is None     # a veth pair goes together
    finally:
        k.close()


def test_filtered_dumps_hold_one_device_and_the_full_ones_all(ns):
    ip(ns, "link", "set", "va", "up")
    ip(ns, "link", "set", "vb", "up")
    ip(ns, "addr", "add", "2001:db8::a/64", "dev", "va")
    ip(ns, "addr", "add", "2001:db8::b/64", "dev", "vb")
    ip(ns, "-6", "route", "add", "2001:db8:a::/48", "dev", "va", "proto", "91")
    ip(ns, "-6", "route", "add", "2001:db8:b::/48", "dev", "vb", "proto", "91")
    k = kernel(ns)
    try:
        va, vb = k.link("va"), k.link("vb")
        assert [a.address for a in k.addrs6(va.index) if not a.kernel_made] == ["2001:db8::a"]
        assert sorted(a.address for a in k.addrs6() if not a.kernel_made) == ["2001:db8::a", "2001:db8::b"]
        assert [r.dst for r in k.routes6(91, vb.index)] == ["2001:db8:b::"]
        assert sorted(r.dst for r in k.routes6(91)) == ["2001:db8:a::", "2001:db8:b::"]
        # counters decoded only when asked for
        assert all(li.stats is None for li in k.links())
        assert all(li.stats is not None for li in k.links(stats=True))
    finally:
        k.close()


def test_the_nftables_generation_is_per_namespace(ns):
    with netns.InNetns(ns):
        s = nl.Socket(nl.NETLINK_NETFILTER)
    try:
        g = nl.nft_generation(s)
        subprocess.run(["ip", "netns", "exec", ns, "nft", "add", "table", "inet", "t"], check=True)
        assert nl.nft_generation(s) == g + 1
    finally:
        s.close()
