"""The rpcd plugin luci.sixbroker as rpcd runs it: a process, under CPython and under MicroPython.

The kernel's side is real: a network namespace "router" whose tunnel device is a veth standing in for
the sit device (the host kernel cannot create sit; tests/e2e reads a real one in the QEMU guest), with
its addresses, routes and neighbours, and a namespace "broker" at the far end that answers.  Traffic
moves the counters; the broker's firewall and MTU break the tunnel on purpose for diagnose.  netifd's
side is tests/ubusd_fake.py answering `network.interface dump` on the real ubus wire.

rpcd's side of the contract (openwrt/rpcd plugin.c and exec.c): `list` with stdin on /dev/null prints
one JSON object; `call <method>` gets JSON on stdin and must print one JSON object, which is all rpcd
looks at (the exit code is ignored), errors included.
"""
import json
import os
import subprocess
import time

import pytest

from ubusd_fake import FakeUbusd
from sixbroker.openwrt import diagnose, rpcd
from sixbroker.core.errors import CODES

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PLUGIN = os.path.join(ROOT, "files", "usr", "libexec", "rpcd", "luci.sixbroker")
HARNESS = os.path.join(ROOT, "tests", "luci", "luci_harness.js")
PYTHONS = {"cpython": os.path.join(ROOT, ".venv", "bin", "python"),
           "micropython": os.path.join(ROOT, ".venv", "bin", "micropython")}
INTERPRETERS = sorted(PYTHONS)

PEER, LOCAL, BROKER_LAN = "203.0.113.10", "198.51.100.20", "198.51.100.1"
HERE6, GW6, PREFIX = "2001:db8:5b10::b", "2001:db8:5b10::a", "2001:db8:5b11::"
DEV = "sb-wan6"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


def sh(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=60)


class Lab:
    """router <-> broker: "wan"/"uplink" carries IPv4, "sb-wan6"/"sbs-home" stands in for the tunnel."""

    def __init__(self):
        n = os.getpid() % 100000
        self.r, self.b = "sbr%d" % n, "sbb%d" % n
        self.ubusd = None

    def ip(self, ns, *args):
        return sh("ip", "-n", ns, *args)

    def json(self, *args):
        return json.loads(self.ip(self.r, "-j", *args).stdout)

    def up(self):
        for ns in (self.r, self.b):
            sh("ip", "netns", "del", ns, check=False)
            sh("ip", "netns", "add", ns)
        r, b = self.r, self.b
        self.ip(r, "link", "add", "wan", "type", "veth", "peer", "name", "uplink", "netns", b)
        self.ip(r, "link", "add", DEV, "type", "veth", "peer", "name", "sbs-home", "netns", b)
        self.ip(r, "link", "add", "br-lan", "type", "veth", "peer", "name", "br-lan-p")
        # no link-local addresses, no DAD, fixed neighbours: no packet moves that the test did not send
        for ns, devs in ((r, ("wan", DEV, "br-lan", "br-lan-p")), (b, ("uplink", "sbs-home"))):
            for d in devs:
                self.ip(ns, "link", "set", d, "addrgenmode", "none")
            self.ip(ns, "link", "set", "lo", "up")
        self.ip(r, "link", "set", DEV, "mtu", "1480")
        self.ip(b, "link", "set", "sbs-home", "mtu", "1480")
        for d in ("wan", DEV, "br-lan", "br-lan-p"):
            self.ip(r, "link", "set", d, "up")
        for d in ("uplink", "sbs-home"):
            self.ip(b, "link", "set", d, "up")
        self.ip(r, "addr", "add", LOCAL + "/24", "dev", "wan")
        self.ip(b, "addr", "add", BROKER_LAN + "/24", "dev", "uplink")
        self.ip(b, "addr", "add", PEER + "/32", "dev", "lo")
        self.ip(r, "route", "add", "default", "via", BROKER_LAN, "dev", "wan")
        self.ip(r, "addr", "add", HERE6 + "/127", "dev", DEV, "nodad")
        self.ip(b, "addr", "add", GW6 + "/127", "dev", "sbs-home", "nodad")
        self.ip(r, "addr", "add", PREFIX + "1/64", "dev", "br-lan", "nodad")
        self.ip(r, "-6", "route", "add", "default", "via", GW6, "dev", DEV)
        self.ip(b, "-6", "route", "add", PREFIX + "/64", "via", HERE6)
        mac_r = self.json("link", "show", DEV)[0]["address"]
        mac_b = json.loads(self.ip(b, "-j", "link", "show", "sbs-home").stdout)[0]["address"]
        self.ip(r, "-6", "neigh", "replace", GW6, "lladdr", mac_b, "nud", "permanent", "dev", DEV)
        self.ip(b, "-6", "neigh", "replace", HERE6, "lladdr", mac_r, "nud", "permanent", "dev", "sbs-home")
        # some traffic through the "tunnel", so the counters are not zero
        sh("ip", "netns", "exec", r, "ping", "-c", "5", "-i", "0.05", "-q", "-s", "1000", GW6)
        self.settle()
        self.dump = self.netifd_dump()
        self.ubusd = FakeUbusd(objects={"network.interface": {"dump": lambda call: self.dump}}).start()
        return self

    def settle(self):
        """Wait for the multicast reports that follow `ip addr add` to stop moving the counters."""
        last, since = None, time.monotonic()
        deadline = since + 10
        while time.monotonic() < deadline:
            now = self.stats()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since > 1.2:
                return
            time.sleep(0.1)

    def stats(self):
        st = self.json("-s", "link", "show", DEV)[0]["stats64"]
        return {"rx_bytes": st["rx"]["bytes"], "rx_packets": st["rx"]["packets"],
                "tx_bytes": st["tx"]["bytes"], "tx_packets": st["tx"]["packets"]}

    def netifd_dump(self):
        """What netifd would answer for this router (netifd ubus.c netifd_dump_status)."""
        return {"interface": [
            {"interface": "wan", "up": True, "pending": False, "available": True, "autostart": True,
             "dynamic": False, "uptime": 500, "l3_device": "wan", "proto": "dhcp", "device": "wan",
             "ipv4-address": [{"address": LOCAL, "mask": 24}], "ipv6-address": [], "ipv6-prefix": [],
             "route": [{"target": "0.0.0.0", "mask": 0, "nexthop": BROKER_LAN, "source": "0.0.0.0/0"}],
             "data": {}},
            {"interface": "lan", "up": True, "pending": False, "available": True, "autostart": True,
             "dynamic": False, "uptime": 500, "l3_device": "br-lan", "proto": "static", "device": "br-lan",
             "ipv6-prefix-assignment": [{"address": PREFIX, "mask": 64,
                                         "local-address": {"address": PREFIX + "1", "mask": 64}}],
             "data": {}},
            {"interface": "wan6", "up": True, "pending": False, "available": True, "autostart": True,
             "dynamic": False, "uptime": 42, "l3_device": DEV, "proto": "sixbroker", "metric": 0,
             "ipv4-address": [], "ipv6-address": [{"address": HERE6, "mask": 127}],
             "ipv6-prefix": [{"address": PREFIX, "mask": 64, "class": "wan6",
                              "assigned": {"lan": {"address": PREFIX, "mask": 64}}}],
             "route": [{"target": "::", "mask": 0, "nexthop": GW6, "metric": 0, "source": "::/0"}],
             "data": {"zone": "wan", "sixbroker": {"local": LOCAL, "remote": PEER, "local_from": "tunlink",
                                                   "tunlink": "wan"}}},
        ]}

    def env(self, interp, ubus=True):
        env = dict(os.environ, SIXBROKER_LIB=os.path.join(ROOT, "src"), SIXBROKER_PYTHON=PYTHONS[interp])
        env["SIXBROKER_UBUS_SOCKET"] = self.ubusd.socket_path if ubus else "/nonexistent/ubus.sock"
        return env

    def plugin(self, interp, *argv, stdin="{}", ubus=True):
        """The plugin as rpcd starts it, in the router's namespace; busybox sh stands in for ash."""
        p = subprocess.run(["ip", "netns", "exec", self.r, "busybox", "sh", PLUGIN] + list(argv),
                           input=stdin, capture_output=True, text=True, timeout=120, env=self.env(interp, ubus))
        return p

    def call(self, interp, method, args=None, **kw):
        p = self.plugin(interp, "call", method, stdin=json.dumps(args or {}), **kw)
        assert p.stderr == "", p.stderr
        # rpcd reads exactly one JSON value from stdout, and it must be an object
        return p.returncode, json.loads(p.stdout)

    def down(self):
        if self.ubusd:
            assert self.ubusd.errors == []
            self.ubusd.stop()
        for ns in (self.r, self.b):
            sh("ip", "netns", "del", ns, check=False)


@pytest.fixture
def lab():
    lab = Lab().up()
    try:
        yield lab
    finally:
        lab.down()


@pytest.mark.parametrize("interp", INTERPRETERS)
def test_list_is_the_method_map_with_stdin_closed(interp):
    # rpcd runs `list` with stdin and stderr on /dev/null and registers what it prints
    env = dict(os.environ, SIXBROKER_LIB=os.path.join(ROOT, "src"), SIXBROKER_PYTHON=PYTHONS[interp])
    p = subprocess.run(["busybox", "sh", PLUGIN, "list"], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=30, env=env)
    assert p.returncode == 0 and json.loads(p.stdout) == {"status": {"interface": "str"},
                                                         "diagnose": {"interface": "str"}}
    # the Python answers the same when run without the shell's shortcut
    p = subprocess.run([PYTHONS[interp], os.path.join(ROOT, "src", "sixbroker", "run.py"), "rpcd", "list"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and json.loads(p.stdout) == rpcd.METHODS


@pytest.mark.parametrize("interp", INTERPRETERS)
def test_status_reads_the_namespace(lab, interp):
    before = lab.stats()
    addrs = [(a["local"], a["prefixlen"]) for a in lab.json("-6", "addr", "show", "dev", DEV)[0]["addr_info"]]
    routes = dict((r["dst"], r) for r in lab.json("-6", "route", "show", "dev", DEV))
    rc, out = lab.call(interp, "status", {"ubus_rpc_session": "00000000000000000000000000000000"})
    assert rc == 0, out
    (t,) = out["tunnels"]
    k = t["kernel"]
    # the kernel's numbers, as `ip -s link` reads them over netlink, before the plugin's own echo
    assert dict((n, k["statistics"][n]) for n in before) == before
    assert before["rx_packets"] >= 5 and before["tx_bytes"] > 5000
    assert k["mtu"] == lab.json("link", "show", DEV)[0]["mtu"] == 1480
    assert k["up"] is True and k["operstate"] == lab.json("link", "show", DEV)[0]["operstate"].lower()
    assert [(a["address"], a["length"]) for a in k["addresses"]] == addrs == [(HERE6, 127)]
    kernel_routes = dict((r["target"], r) for r in k["routes"])
    assert kernel_routes["::/0"]["gateway"] == routes["default"]["gateway"] == GW6
    assert kernel_routes["::/0"]["metric"] == routes["default"]["metric"]
    assert kernel_routes[GW6 + "/127"]["gateway"] is None and GW6 + "/127" in routes
    # netifd's part, through the fake ubusd
    assert (t["interface"], t["up"], t["uptime"], t["device"]) == ("wan6", True, 42, DEV)
    assert (t["local"], t["remote"], t["tunlink"], t["gateway"]) == (LOCAL, PEER, "wan", GW6)
    assert t["addresses"] == [HERE6 + "/127"]
    assert t["prefixes"][0]["prefix"] == PREFIX + "/64"
    assert t["prefixes"][0]["assigned"] == [{"interface": "lan", "prefix": PREFIX + "/64"}]
    assert abs(t["since"] - (time.time() - 42)) < 30
    # the round trip crossed the stand-in tunnel: its one echo is on the counters now
    assert t["rtt_error"] is None and 0 < t["rtt_ms"] < 1000
    after = lab.stats()
    assert after["tx_packets"] >= before["tx_packets"] + 1 and after["rx_packets"] >= before["rx_packets"] + 1
    assert [(c.object, c.method, c.data) for c in lab.ubusd.calls] == [("network.interface", "dump", {})]


@pytest.mark.parametrize("interp", INTERPRETERS)
def test_status_of_one_interface_and_of_none(lab, interp):
    rc, out = lab.call(interp, "status", {"interface": "wan6"})
    assert rc == 0 and [t["interface"] for t in out["tunnels"]] == ["wan6"]
    rc, out = lab.call(interp, "status", {"interface": "lan"})
    assert rc == 0 and out == {"tunnels": []}


@pytest.mark.parametrize("interp", INTERPRETERS)
def test_errors_are_json_objects(lab, interp):
    p = lab.plugin(interp, "call", "reboot", stdin="{}")
    assert p.returncode == 1 and json.loads(p.stdout) == {"error": "Method not found", "code": "USAGE"}
    p = lab.plugin(interp, "call", "status", stdin="[1, 2")
    assert p.returncode == 1 and json.loads(p.stdout)["code"] == "USAGE"
    p = lab.plugin(interp, "call", "diagnose", stdin='{"interface": 5}')
    assert p.returncode == 1 and json.loads(p.stdout) == {
        "error": "Invalid argument 'interface': text expected", "code": "USAGE"}
    rc, out = lab.call(interp, "status", ubus=False)
    assert rc == 1 and out["code"] == "UBUS_FAIL" and out["error"].startswith(CODES["UBUS_FAIL"])


@pytest.mark.parametrize("interp", INTERPRETERS)
def test_diagnose_a_working_tunnel(lab, interp):
    rc, d = lab.call(interp, "diagnose", {"interface": "wan6"})
    assert rc == 0 and d["ok"] and d["summary"] == "The tunnel works", d
    assert [(c["name"], c["status"]) for c in d["checks"]] == [
        ("interface", "ok"), ("netifd", "ok"), ("device", "ok"), ("ipv4_route", "ok"), ("ipv4_ping", "ok"),
        ("proto41", "ok"), ("ipv6_ping", "ok"), ("mtu", "ok"), ("default_route", "ok"), ("lan_prefix", "ok")]
    texts = dict((c["name"], c["text"]) for c in d["checks"])
    assert texts["ipv4_route"] == "via wan from " + LOCAL
    assert texts["mtu"] == "1480-byte packets pass"
    assert texts["default_route"] == "default via %s dev %s" % (GW6, DEV)


def nft(lab, ns, rules):
    sh("ip", "netns", "exec", ns, "nft", rules)


BREAKAGES = {
    # the broker takes nothing from the tunnel in: requests leave, nothing comes back
    "proto41": lambda lab: nft(lab, lab.b, 'add table netdev t; add chain netdev t in '
                                           '{ type filter hook ingress device "sbs-home" priority 0; }; '
                                           'add rule netdev t in drop'),
    # a link on the way carries less than the tunnel MTU
    "mtu": lambda lab: lab.ip(lab.b, "link", "set", "sbs-home", "mtu", "1400"),
    # the broker drops pings to its IPv4 address (common, and no fault)
    "ipv4_ping": lambda lab: nft(lab, lab.b, 'add table ip t; add chain ip t in '
                                             '{ type filter hook input priority 0; }; '
                                             'add rule ip t in icmp type echo-request drop'),
    "ipv4_route": lambda lab: lab.ip(lab.r, "route", "del", "default"),
    "default_route": lambda lab: lab.ip(lab.r, "-6", "route", "del", "default"),
}


@pytest.mark.parametrize("interp", INTERPRETERS)
@pytest.mark.parametrize("broken", sorted(BREAKAGES))
def test_diagnose_names_what_broke(lab, interp, broken):
    BREAKAGES[broken](lab)
    lab.settle()
    rc, d = lab.call(interp, "diagnose", {"interface": "wan6"})
    status = dict((c["name"], c["status"]) for c in d["checks"])
    texts = dict((c["name"], c["text"]) for c in d["checks"])
    if broken == "ipv4_ping":
        assert rc == 0 and d["ok"] and status["ipv4_ping"] == "warn" and status["proto41"] == "ok"
        return
    assert rc == 0 and not d["ok"] and d["failed"] == broken, d
    assert d["summary"].startswith("Failed: " + diagnose.TITLES[broken] + ": " + texts[broken])
    if broken == "proto41":
        assert status["ipv4_ping"] == "ok" and status["ipv6_ping"] == "fail" and status["mtu"] == "skip"
        assert "3 echo requests went into the tunnel to %s, but nothing came back" % PEER in texts["proto41"]
    if broken == "mtu":
        # a veth passes 4 bytes over its MTU (a VLAN tag's room, net/core/dev.c is_skb_forwardable)
        assert texts["mtu"] == ("1480-byte packets are lost while 1404-byte ones pass: set option mtu 1404 "
                                "on this interface (and the same on the broker's end)")
    if broken == "ipv4_route":
        assert texts["ipv4_route"] == ("no IPv4 route to the broker %s: the WAN is down or has no default route"
                                       % PEER)


@pytest.mark.parametrize("interp", INTERPRETERS)
def test_diagnose_a_tunnel_netifd_could_not_set_up(lab, interp):
    wan6 = lab.dump["interface"][2]
    for k in ("uptime", "l3_device", "ipv6-address", "ipv6-prefix", "route"):
        wan6.pop(k)
    wan6.update(up=False, data={}, errors=[{"subsystem": "sixbroker", "code": "MISSING_PEER_ADDRESS",
                                           "data": ["INVALID_TTL"]}])
    rc, d = lab.call(interp, "diagnose", {"interface": "wan6"})
    assert d["failed"] == "netifd" and d["summary"] == (
        "Failed: netifd brought the interface up: " + CODES["MISSING_PEER_ADDRESS"] + " (MISSING_PEER_ADDRESS); "
        + CODES["INVALID_TTL"] + " (INVALID_TTL)")
    rc, out = lab.call(interp, "status")
    assert out["tunnels"][0]["kernel"] is None
    messages = out["tunnels"][0]["errors"][0]["messages"]
    assert [m["code"] for m in messages] == ["MISSING_PEER_ADDRESS", "INVALID_TTL"]


@pytest.mark.parametrize("interp", INTERPRETERS)
def test_status_of_a_down_tunnel_says_what_is_configured(lab, interp):
    wan6 = lab.dump["interface"][2]
    for k in ("uptime", "l3_device", "ipv6-address", "ipv6-prefix", "route"):
        wan6.pop(k)
    wan6.update(up=False, data={})
    # rpcd's own `uci get` (rpcd uci.c rpc_uci_get -> rpc_uci_dump_section): the section's options in
    # "values", lists as arrays; a section that does not exist: UBUS_STATUS_NOT_FOUND
    sections = {"wan6": {".anonymous": False, ".type": "interface", ".name": "wan6", "proto": "sixbroker",
                         "peeraddr": PEER, "ip6addr": "2001:db8:5b10::b/127", "ip6prefix": ["2001:db8:5b11::/64"]}}

    def get(call):
        if call.data.get("config") != "network" or call.data.get("section") not in sections:
            return 4
        return {"values": sections[call.data["section"]]}

    lab.ubusd.add_object("uci", {"get": get})
    rc, out = lab.call(interp, "status")
    assert rc == 0 and out["tunnels"][0]["config"] == {
        "peeraddr": PEER, "ipaddr": None, "ip6addr": "2001:db8:5b10::b/127", "ip6gw": "2001:db8:5b10::a",
        "ip6gw_derived": True, "ip6prefix": ["2001:db8:5b11::/64"], "tunlink": None, "mtu": None,
        "device": "sb-wan6"}
    assert [c.data for c in lab.ubusd.calls_to("uci", "get")] == [{"config": "network", "section": "wan6"}]
    # no such section (or no rpcd): the status still answers, without a configuration
    sections.clear()
    rc, out = lab.call(interp, "status")
    assert rc == 0 and out["tunnels"][0]["config"] is None and out["tunnels"][0]["interface"] == "wan6"


LAUNCHER = os.path.join(ROOT, "files", "usr", "bin", "sixbroker")


@pytest.mark.parametrize("interp", INTERPRETERS)
def test_sixbroker_status_for_a_terminal(lab, interp):
    # the router's own launcher, as a user types it
    env = lab.env(interp)
    env.update(SIXBROKER_PYTHON=PYTHONS[interp], SIXBROKER_LIB=os.path.join(ROOT, "src"))
    before = lab.stats()
    p = subprocess.run(["ip", "netns", "exec", lab.r, "busybox", "sh", LAUNCHER, "status"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("wan6: up since ") and lines[0].endswith(" (42s)")
    assert "  device   sb-wan6, mtu 1480, up" in lines
    assert "  IPv4     %s -> %s over wan" % (LOCAL, PEER) in lines
    assert "  tunnel   %s/127, broker %s" % (HERE6, GW6) in lines
    assert "  prefix   %s/64 -> lan %s/64" % (PREFIX, PREFIX) in lines
    assert "  traffic  rx %s (%d packets), tx %s (%d packets)" % (
        human(before["rx_bytes"]), before["rx_packets"], human(before["tx_bytes"]), before["tx_packets"]) in lines
    assert any(line.startswith("  rtt      ") and line.endswith(" ms") for line in lines)
    p = subprocess.run(["ip", "netns", "exec", lab.r, "busybox", "sh", LAUNCHER, "status",
                        "--diagnose", "wan6"], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0 and p.stdout.splitlines()[0] == "wan6: The tunnel works"
    p = subprocess.run(["ip", "netns", "exec", lab.r, "busybox", "sh", LAUNCHER, "status",
                        "--json", "--no-rtt", "wan6"], capture_output=True, text=True, timeout=60, env=env)
    assert json.loads(p.stdout)["tunnels"][0]["rtt_ms"] is None


def human(n):
    from sixbroker.openwrt import humanize
    return humanize.human_bytes(n)


def test_luci_view_shows_what_the_plugin_says(lab):
    """The status view, run by node against LuCI stand-ins, on the plugin's real answers."""
    _, status_out = lab.call("micropython", "status")
    lab.dump = lab.netifd_dump()
    BREAKAGES["proto41"](lab)
    lab.settle()
    _, diag = lab.call("micropython", "diagnose", {"interface": "wan6"})
    p = subprocess.run(["node", HARNESS, "view"], input=json.dumps({"status": status_out, "diagnose": diag}),
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    v = json.loads(p.stdout)
    t = status_out["tunnels"][0]
    st = t["kernel"]["statistics"]
    shown = v["before"]
    for expect in ("wan6 (sb-wan6)", "%s \u2192 %s (over wan)" % (LOCAL, PEER), HERE6 + "/127", GW6,
                   "%s/64 \u2192 lan %s/64" % (PREFIX, PREFIX), "sb-wan6, MTU 1480",
                   "(%d packets)" % st["rx_packets"], "(%d packets)" % st["tx_packets"],
                   "%.1f ms" % t["rtt_ms"], "(42s)"):
        assert expect in shown, (expect, shown)
    assert v["buttons"] == ["Diagnose"] and v["polls"] == [5]
    assert v["calls"][:3] == [{"object": "luci.sixbroker", "method": "status", "args": []},
                              {"object": "session", "method": "access", "args": ["ubus", "luci.sixbroker", "diagnose"]},
                              {"object": "luci.sixbroker", "method": "diagnose", "args": ["wan6"]}]
    after = v["after"]
    assert diag["summary"] in after and "Broker answers protocol 41" in after
    for c in diag["checks"]:
        assert c["text"] in after
