"""`sixbroker server` and the VPS around it, on a real kernel (the QEMU guest), issue 12:

- the VPS's own IPv4 address changes under the tunnels: `apply` follows an address it detected (every
  tunnel re-keyed, the homes work again once their peeraddr is the new one) and refuses loudly for one it
  was given;
- `init` without `--uplink` on a VPS that takes its IPv6 default route from router advertisements: the
  default route's device keeps accepting RAs (accept_ra=2) once forwarding is on.  Shown with real RAs
  sent from a router namespace, because the kernel's RA processing is what forwarding=1 switches off
  (a `proto ra` route added by hand would not show it).
"""

import json
import socket
import struct
import time

import pytest

import topo
from sixbroker.linux import apply_kernel, apply_nft, kernel_status, nft_table
from sixbroker.broker import hostfacts
from server_cli import ServerCLI
# the seed world's homes and a server on the `vps` namespace, as test_broker.py builds them
from test_broker import HOMES, PREFIX, homes, reachable, read_sysctl, router_up, server  # noqa: F401

NEW = "203.0.113.12"        # the VPS's address after its provider renumbered it
NEWER = "203.0.113.13"


def _renumber(*addresses):
    """The VPS uplink's IPv4 addresses replaced (X and X2 gone), the default route put back."""
    lines = ["addr flush dev v-vps scope global"]
    lines += ["addr add %s/24 dev v-vps" % a for a in addresses]
    lines += ["route replace default via 203.0.113.1"]
    topo.batch("vps", lines)


def _local_of_devices():
    return sorted(set(d["local"] for d in kernel_status.status("vps", scope="broker")["devices"]))


def test_apply_follows_a_detected_address_change_and_refuses_a_given_one(server, tmp_path):
    try:
        _address_change(server, tmp_path)
    finally:
        _renumber(topo.X, topo.X2)


def _address_change(server, tmp_path):
    s = server.json("init", "--prefix", PREFIX, "--uplink", "v-vps", "--netns", "vps")["server"]
    assert s["public_ipv4"] == topo.X
    tunnels = {}
    for name in ("r1", "r2"):
        body = server.json("add", name, "--remote", HOMES[name][1])
        tunnels[name] = body["tunnel"]
        router_up(tmp_path, name, body["router"])
    assert all(reachable(t) for t in tunnels.values())
    # the record of a broker in line: an apply now takes the nothing-to-do path
    assert server.json("apply")["apply"].get("unchanged") is True

    _renumber(NEW)
    assert not any(reachable(t) for t in tunnels.values())     # every tunnel dead, the defect's state
    rc, out, err = server.run("apply", "--json")
    assert rc == 0, (out, err)
    body = json.loads(out)
    assert body["applied"] is True and "unchanged" not in body["apply"]
    notice = body["notices"][0]
    assert notice["code"] == "LOCAL_IPV4_CHANGED" and NEW in notice["message"] and "peeraddr" in notice["message"]
    assert "notice LOCAL_IPV4_CHANGED" in err
    assert _local_of_devices() == [NEW]
    assert server.json("info")["server"]["ipv4_followed"] is True
    # a home still dialling the old address stays down; the one told the new peeraddr works again
    router = server.json("config", "r1")["router"]
    assert router["options"]["peeraddr"] == NEW
    router_up(tmp_path, "r1", router)
    assert reachable(tunnels["r1"])
    assert not topo.ping(HOMES["r2"][0], tunnels["r2"]["server_address"], wait=1)
    router_up(tmp_path, "r2", server.json("config", "r2")["router"])
    assert reachable(tunnels["r2"])
    assert server.json("apply")["apply"].get("unchanged") is True

    # pinned (given): a change is refused loudly, the tunnels stay on the address given
    server.ok("init", "--public-ipv4", NEW)
    assert server.json("info")["server"]["ipv4_followed"] is False
    _renumber(NEWER)
    rc, out, err = server.run("apply")
    assert rc == 1 and "error LOCAL_IPV4_GONE:" in err and NEW in err and "peeraddr" in err, err
    rc, out, err = server.run("apply", "--json")
    body = json.loads(out)
    assert rc == 1 and body["error"]["code"] == "LOCAL_IPV4_GONE" and body["applied"] is True
    assert _local_of_devices() == [NEW]
    # told, it re-keys; the homes follow once their peeraddr does
    server.ok("init", "--public-ipv4", NEWER)
    assert _local_of_devices() == [NEWER]
    for name in ("r1", "r2"):
        router_up(tmp_path, name, server.json("config", name)["router"])
    assert all(reachable(t) for t in tunnels.values())

    # the check's cost on the nothing-to-do path, as a ratio in this run (printed, never asserted)
    n = 5
    t0 = time.perf_counter()
    for _ in range(n):
        hostfacts.ipv4_on_host(NEWER, "vps")
    check = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n):
        assert server.json("apply")["apply"].get("unchanged") is True
    whole = time.perf_counter() - t0
    print("\nlocal-address check: %.1f ms of a %.1f ms no-op apply (%.1f%%)"
          % (check / n * 1000, whole / n * 1000, 100 * check / whole))


# ---- RAs on the uplink that init found by itself ---------------------------------------------------------

VPS_NS = "ravps"
ROUTER_NS = "rartr"


@pytest.fixture
def ra_world(world, broker_db, capsys):
    for ns in (VPS_NS, ROUTER_NS):
        topo.run(["ip", "netns", "del", ns], check=False)
        topo.run(["ip", "netns", "add", ns])
    topo.ip(ROUTER_NS, "link", "add", "up-r", "type", "veth", "peer", "name", "up0", "netns", VPS_NS)
    # the links are cables: no duplicate address detection holding the link-local addresses back
    topo.sysctl(ROUTER_NS, "net.ipv6.conf.up-r.accept_dad", "0")
    topo.sysctl(VPS_NS, "net.ipv6.conf.up0.accept_dad", "0")
    topo.batch(ROUTER_NS, ["link set lo up", "link set up-r up"])
    topo.batch(VPS_NS, ["link set lo up", "addr add %s/24 dev up0" % topo.X, "link set up0 up"])
    # an RA counts only once both ends have their link-local address (carrier first, then addrconf)
    for ns, dev in ((ROUTER_NS, "up-r"), (VPS_NS, "up0")):
        assert topo.eventually(lambda: _link_local_ready(ns, dev), True, timeout=5.0), (ns, dev)
    try:
        yield ServerCLI(broker_db, capsys)
    finally:
        apply_kernel.remove_all(VPS_NS, scope="broker")
        apply_nft.remove(nft_table.TABLE, VPS_NS)
        for ns in (VPS_NS, ROUTER_NS):
            topo.run(["ip", "netns", "del", ns], check=False)


def _link_local_ready(ns, dev):
    out = topo.ip(ns, "-6", "addr", "show", "dev", dev, "scope", "link").stdout
    return "fe80::" in out and "tentative" not in out


def _send_ra(lifetime=1800):
    """One router advertisement from the router's link-local address to all nodes, hop limit 255 (the
    kernel drops an RA with any other, RFC 4861 6.1.2): a default router for `lifetime` seconds."""
    index = topo.in_ns(ROUTER_NS, lambda: socket.if_nametoindex("up-r"))
    s = topo.ns_socket(ROUTER_NS, socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    try:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        # type 134, code 0, checksum (the kernel fills it in for ICMPv6 raw sockets), cur hop limit 64,
        # no flags, router lifetime, reachable time and retrans timer unspecified
        s.sendto(struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, lifetime, 0, 0), ("ff02::1", 0, 0, index))
    finally:
        s.close()


def _ra_default_route():
    return [ln for ln in topo.ip(VPS_NS, "-6", "route", "show", "default").stdout.splitlines() if "proto ra" in ln]


def _ra_taken():
    """True when a fresh RA gives the VPS its default route again (after the old one was deleted)."""
    while topo.ip(VPS_NS, "-6", "route", "del", "default", check=False).returncode == 0:
        pass
    assert _ra_default_route() == []
    _send_ra()
    return topo.eventually(lambda: bool(_ra_default_route()), True, timeout=3.0)


@pytest.mark.parametrize("given", [[], ["--uplink", "up0"]], ids=["found", "given"])
def test_init_keeps_the_ra_default_route(ra_world, given):
    server = ra_world
    # the VPS as its provider set it up: forwarding off, accept_ra 1, its default route from RAs
    assert read_sysctl(VPS_NS, "net.ipv6.conf.up0.accept_ra") == "1"
    assert _ra_taken() is True
    s = server.json("init", "--prefix", PREFIX, "--public-ipv4", topo.X, "--netns", VPS_NS, *given)["server"]
    assert read_sysctl(VPS_NS, "net.ipv6.conf.all.forwarding") == "1"
    # switching forwarding on kept the route (the kernel drops RA default routes then, unless accept_ra=2)
    assert _ra_default_route()
    # the next RA (the one that renews the route before its lifetime runs out) is still taken
    assert _ra_taken() is True
    assert read_sysctl(VPS_NS, "net.ipv6.conf.up0.accept_ra") == "2"
    assert (s["uplink"], s["uplink_accept_ra"]) == ("up0", True)

    # what the defect left: forwarding on, accept_ra 1, and the kernel ignores the RA
    topo.sysctl(VPS_NS, "net.ipv6.conf.up0.accept_ra", "1")
    assert _ra_taken() is False
    # `apply` (the boot unit) puts accept_ra=2 back, and RAs are taken again
    assert server.json("apply")["applied"] is True
    assert read_sysctl(VPS_NS, "net.ipv6.conf.up0.accept_ra") == "2"
    assert _ra_taken() is True


def test_default_route_device6_prefers_the_kernels_ra_route(ra_world):
    _send_ra()
    assert topo.eventually(lambda: bool(_ra_default_route()), True, timeout=3.0)
    assert hostfacts.default_route_device6(VPS_NS) == ("up0", True)
    # no IPv4 default route here: the public address is not guessed
    assert hostfacts.detect(None, VPS_NS) == {"uplink": "up0", "uplink_ra": True}


def test_init_repairs_a_vps_that_an_older_init_cut(ra_world):
    """What init did before: forwarding on with accept_ra 1, and the kernel dropped the RA default route
    at that moment (rt6_purge_dflt_routers) and ignores every RA since.  An `init` now finds the uplink
    by the IPv4 default route and gives it accept_ra=2; the next RA brings the route back."""
    server = ra_world
    topo.ip(VPS_NS, "route", "add", "default", "via", "203.0.113.1")
    assert _ra_taken() is True
    topo.sysctl(VPS_NS, "net.ipv6.conf.all.forwarding", "1")
    assert _ra_default_route() == []
    assert _ra_taken() is False
    s = server.json("init", "--prefix", PREFIX, "--public-ipv4", topo.X, "--netns", VPS_NS)["server"]
    assert (s["uplink"], s["uplink_accept_ra"]) == ("up0", True)
    assert read_sysctl(VPS_NS, "net.ipv6.conf.up0.accept_ra") == "2"
    assert _ra_taken() is True
    # a device whose IPv6 default route is static (no RA) is left alone
    topo.ip(VPS_NS, "-6", "route", "replace", "default", "via", "fe80::1", "dev", "up0", "proto", "static")
    topo.sysctl(VPS_NS, "net.ipv6.conf.up0.accept_ra", "1")
    assert _ra_default_route() == []
    assert hostfacts.detect(None, VPS_NS) == {"uplink": "up0", "uplink_ra": False, "public_ipv4": topo.X}
