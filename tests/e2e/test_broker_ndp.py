"""A VPS with one on-link /64 (issue 12, item 8), on a real kernel with a real ndppd.

The provider's router (`inet` here) has the VPS's /64 on-link on its interface and no route into it: it
reaches any address of the /64 only by neighbour discovery on that link, as many VPS plans do.  A host
beyond it (`far`) pings the home's tunnel address and a host on the home's LAN, numbered from its
routed /80.

    lanhost (P::100/80) -- home (Y; lan0 P::1/80) --6in4-- vps (X; v-vps 2001:db8:5b00::2/64)
                                                              |  on-link /64, no route
                                        far (2001:db8:ffff::2) -- inet (2001:db8:5b00::1/64 on to-vps)
"""

import os
import shutil
import signal
import time

import pytest

import topo
from sixbroker.linux import apply_kernel, apply_ndp, apply_nft, kernel, nft_table
from sixbroker.linuxrouter import router as standalone
from server_cli import ServerCLI
from test_broker import router_file

PREFIX = "2001:db8:5b00::/64"
VPS6 = "2001:db8:5b00::2"
GW6 = "2001:db8:5b00::1"
FAR6 = "2001:db8:ffff::2"
HOMES = {"r1": ("home", topo.Y), "r2": ("home2", "192.0.2.20")}


def _vps_ipv6():
    """The provider's /64 on the VPS's uplink: an address from it (its on-link route comes with it) and the
    default route via the provider's router."""
    topo.batch("vps", ["addr add %s/64 dev v-vps nodad" % VPS6, "route replace default via " + GW6])


@pytest.fixture
def onlink(clean):
    topo.run(["ip", "netns", "add", "far"])
    topo.batch("inet", ["addr add %s/64 dev to-vps nodad" % GW6,
                        "link add to-far type veth peer name v-far netns far",
                        "addr add 2001:db8:ffff::1/64 dev to-far nodad", "link set to-far up"])
    topo.sysctl("inet", "net.ipv6.conf.all.forwarding", "1")
    topo.batch("far", ["link set lo up", "addr add %s/64 dev v-far nodad" % FAR6, "link set v-far up",
                       "route add default via 2001:db8:ffff::1"])
    # a second home: 192.0.2.20 behind inet
    topo.run(["ip", "netns", "add", "home2"])
    topo.batch("inet", ["link add to-home2 type veth peer name v-home2 netns home2",
                        "addr add 192.0.2.1/25 dev to-home2", "link set to-home2 up"])
    topo.batch("home2", ["addr add 192.0.2.20/25 dev v-home2", "link set lo up", "link set v-home2 up",
                         "route add default via 192.0.2.1"])
    _vps_ipv6()
    yield
    apply_ndp.apply({"netns": "vps", "uplink": None})
    for ns in ("far", "home2"):
        topo.run(["ip", "netns", "del", ns], check=False)
    topo.ip("inet", "addr", "del", GW6 + "/64", "dev", "to-vps", check=False)
    topo.ip("vps", "-6", "route", "del", "default", "via", GW6, check=False)
    topo.ip("vps", "addr", "del", VPS6 + "/64", "dev", "v-vps", check=False)
    standalone.main(["down", "--netns", "home"])


@pytest.fixture
def server(onlink, broker_db, capsys):
    s = ServerCLI(broker_db, capsys)
    yield s
    apply_kernel.remove_all("vps", scope="broker")
    apply_nft.remove(nft_table.TABLE, "vps")


def reaches(target, tries=2):
    """far pings target: the provider's router must resolve it on the VPS's link first (a proxied
    answer comes after a random delay of up to proxy_delay, 0.8 s)."""
    return any(topo.ping("far", target, wait=3) for _ in range(tries))


def proxied():
    """{address: protocol} of the proxy entries on the VPS's uplink."""
    k = kernel.Kernel("vps")
    try:
        index = k.link("v-vps").index
        return dict((a, proto) for (i, a), proto in apply_ndp.proxies(k).items() if i == index)
    finally:
        k.close()


def lan_up(tunnel, router_json):
    """The home's LAN as the printed LAN script sets it: the routed /80's ::1 on the router's LAN device,
    a host numbered from it (as odhcpd's DHCPv6 would) behind."""
    lan = [ln.split("'")[1] for ln in router_json["lan_uci_batch"].splitlines()
           if ln.startswith("add_list network.lan.ip6addr=")]
    assert lan == [tunnel["routed"][0].split("/")[0] + "1/80"]
    host = tunnel["routed"][0].split("/")[0] + "100"
    topo.ip("home", "addr", "add", lan[0], "dev", "lan0", "nodad")
    topo.ip("lanhost", "addr", "add", host + "/80", "dev", "eth0", "nodad")
    topo.ip("lanhost", "-6", "route", "replace", "default", "via", lan[0].split("/")[0])
    return host


def lan_down(tunnel):
    net = tunnel["routed"][0].split("/")[0]
    topo.ip("home", "addr", "del", net + "1/80", "dev", "lan0", check=False)
    topo.ip("lanhost", "addr", "del", net + "100/80", "dev", "eth0", check=False)
    topo.ip("lanhost", "-6", "route", "replace", "default", "via", "2001:db8:5b11::1")


def router_up(tmp_path, name, router_json):
    ns = HOMES[name][0]
    assert standalone.main(["up", "--config", router_file(tmp_path, name, router_json), "--netns", ns]) == 0


def _reboot():
    """The VPS restarts: its processes (our ndppd) and /run are gone, its namespace is new."""
    pid = apply_ndp.running("vps")
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
    for name in os.listdir(apply_ndp.RUN_DIR):
        path = os.path.join(apply_ndp.RUN_DIR, name)
        # all of /run goes, the plain-Linux routers' records and holds (directories) too
        shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
    topo.run(["ip", "netns", "del", "vps"])
    topo.run(["ip", "netns", "add", "vps"])
    topo.batch("inet", ["link add to-vps type veth peer name v-vps netns vps",
                        "addr add 203.0.113.1/24 dev to-vps", "addr add %s/64 dev to-vps nodad" % GW6,
                        "link set to-vps up"])
    topo.batch("vps", ["addr add %s/24 dev v-vps" % topo.X, "addr add %s/24 dev v-vps" % topo.X2,
                       "link set lo up", "link set v-vps up", "route add default via 203.0.113.1"])
    _vps_ipv6()


def test_a_vps_with_one_onlink_64_reaches_its_homes_through_proxy_ndp(server, tmp_path):
    t0 = time.time()
    # auto: the uplink has the /64 on-link, so the broker answers neighbour solicitations for its tunnels
    body = server.json("init", "--prefix", PREFIX, "--uplink", "v-vps", "--public-ipv4", topo.X, "--netns", "vps")
    assert body["server"]["ndp_proxy"] is True and body["applied"] is True
    assert "ndp proxy       on" in server.ok("info")
    assert "no SLAAC" in server.ok("info")
    # nothing of ours on the link yet, and the provider's router reaches the VPS itself only
    assert proxied() == {} and apply_ndp.running("vps") is None
    assert reaches(VPS6)

    tunnels, routers = {}, {}
    for name in ("r1", "r2"):
        body = server.json("add", name, "--remote", HOMES[name][1])
        assert body["applied"] is True, body
        tunnels[name], routers[name] = body["tunnel"], body["router"]
    r1, r2 = tunnels["r1"], tunnels["r2"]
    assert r1["routed"] == ["2001:db8:5b00:0:2::/80"] and r1["transfer"] == "2001:db8:5b00:0:1::2/127"
    # the router is not handed the /80 as ip6prefix (netifd takes /1../64 only): its LAN gets an address
    assert "ip6prefix" not in routers["r1"]["uci_batch"] and "no SLAAC" in routers["r1"]["shell"]
    router_up(tmp_path, "r1", routers["r1"])
    router_up(tmp_path, "r2", routers["r2"])
    host = lan_up(r1, routers["r1"])
    try:
        # both ends of each /127 answered by the kernel, marked ours; the /80s by our ndppd
        want = dict((a, apply_kernel.RTPROT) for t in (r1, r2) for a in (t["server_address"], t["router_address"]))
        assert proxied() == want
        assert apply_ndp.running("vps") is not None
        with open(apply_ndp._paths("vps", apply_ndp.RUN_DIR)[0]) as f:
            conf = f.read()
        assert "rule 2001:db8:5b00:0:2::/80" in conf and "rule 2001:db8:5b00:0:3::/80" in conf
        # from beyond the provider's router: the home's tunnel end, the broker's end, a host on the LAN
        assert reaches(r1["router_address"]) and reaches(r1["server_address"]) and reaches(host)
        assert reaches(r2["router_address"])
        # the home's LAN host reaches far too (its replies leave the VPS by the provider's gateway)
        assert topo.ping("lanhost", FAR6, wait=3)
        setup = time.time() - t0

        # an apply with nothing to do leaves the answerers alone (no entry, no ndppd restart)
        pid = apply_ndp.running("vps")
        again = server.json("apply")["apply"]
        assert again["ndp"]["changes"] == [] and apply_ndp.running("vps") == pid

        # an admin's own proxy entry is theirs: kept through apply and off
        topo.ip("vps", "-6", "neigh", "add", "proxy", "2001:db8:5b00::99", "dev", "v-vps")
        # off: our entries and our ndppd go, the admin's stays; the provider's router cannot find the homes
        server.ok("init", "--ndp-proxy", "off")
        assert proxied() == {"2001:db8:5b00::99": 0} and apply_ndp.running("vps") is None
        topo.ip("inet", "-6", "neigh", "flush", "dev", "to-vps")
        assert not topo.ping("far", r1["router_address"], wait=2) and not topo.ping("far", host, wait=2)
        assert "ndp proxy       off" in server.ok("info")
        server.ok("init", "--ndp-proxy", "on")
        assert reaches(r1["router_address"]) and reaches(host)
        topo.ip("vps", "-6", "neigh", "del", "proxy", "2001:db8:5b00::99", "dev", "v-vps")

        # removing a tunnel removes its entries and its rule; the other keeps working
        body = server.json("remove", "r2")
        assert set(proxied()) == {r1["server_address"], r1["router_address"]}
        with open(apply_ndp._paths("vps", apply_ndp.RUN_DIR)[0]) as f:
            conf = f.read()
        assert "2001:db8:5b00:0:3::/80" not in conf and "2001:db8:5b00:0:2::/80" in conf
        assert any(c.startswith("ndppd start") for c in body["apply"]["ndp"]["changes"])
        assert reaches(r1["router_address"]) and reaches(host)

        # reboot: fresh namespace, no ndppd, empty /run; `apply` (the boot unit) restores the answers
        _reboot()
        assert proxied() == {} and apply_ndp.running("vps") is None
        t1 = time.time()
        server.ok("apply")
        restore = time.time() - t1
        assert set(proxied()) == {r1["server_address"], r1["router_address"]}
        assert apply_ndp.running("vps") is not None
        topo.ip("inet", "-6", "neigh", "flush", "dev", "to-vps")
        assert reaches(r1["router_address"]) and reaches(host)
    finally:
        lan_down(r1)
    print("\nbroker ndp e2e: init + 2 adds + routers + pings %.1f s; apply after reboot %.2f s" % (setup, restore))


def test_ndp_proxy_off_when_the_prefix_is_routed_and_refused_without_uplink(server):
    # the VPS's /64 is on-link, the broker's /56 elsewhere is routed to it: auto leaves proxying off
    body = server.json("init", "--prefix", "2001:db8:5c00::/56", "--uplink", "v-vps", "--public-ipv4", topo.X,
                       "--netns", "vps")
    assert body["server"]["ndp_proxy"] is False
    rc, out, err = server.run("init", "--ndp-proxy", "on", "--uplink", "")
    assert rc == 1 and "error NDP_PROXY_NEEDS_UPLINK" in err
    assert server.json("info")["server"]["ndp_proxy"] is False
