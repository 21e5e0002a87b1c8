"""The fault run (issue 12, "Must show"): three homes on one broker, and one fault after another.

For each fault: which tunnels work while it lasts (pinged both ways: from the home to the broker's tunnel
address, and from the VPS to the home's LAN address, which only the route through that tunnel reaches),
then the fault is removed and one `apply` runs, and which work after it.  The tests share one world, in
order (a fault's "after" is the next one's start), and the table is printed at the end (pytest -s) and
written to $SIXBROKER_GUEST_RESULTS/faults.txt when the guest gives one.

The homes are standalone routers configured from what `add` printed, as in test_broker.py.
"""

import json
import os

import pytest

import topo
from sixbroker.linux import apply_kernel, apply_nft, kernel_status, nft_table
from test_broker import HOMES, PREFIX, REPO, Server, _add_home, _rebuild_vps, lan_address, router_up, vps_devices

ROWS = []
X3 = "203.0.113.12"         # the VPS's address after its provider renumbered it


def working(tunnels):
    """The names of the tunnels that carry IPv6 both ways now."""
    out = []
    for name in sorted(tunnels):
        t = tunnels[name]
        ns = HOMES[name][0]
        if topo.ping(ns, t["server_address"]) and topo.ping("vps", lan_address(t)):
            out.append(name)
    return out


def _names(names):
    return " ".join(names) if names else "none"


def record(fault, during, after, note=""):
    ROWS.append((fault, _names(during), _names(after), note))


class World:
    """The three homes and the broker, shared by the tests below in order."""

    def __init__(self, tmp, capsys, path):
        self.tmp = tmp
        self.server = Server(path, capsys)
        self.tunnels = {}

    def add(self, name, crash=None):
        if crash:
            return self.server.process("add", name, "--remote", HOMES[name][1], crash=crash)
        body = self.server.json("add", name, "--remote", HOMES[name][1])
        self.tunnels[name] = body["tunnel"]
        router_up(self.tmp, name, body["router"])
        return body

    def apply(self):
        """One apply, as the systemd unit or a person runs it: its exit status and JSON."""
        rc, out, err = self.server.run("apply", "--json")
        return rc, json.loads(out)

    def reconfigure_routers(self):
        """What a person does after the broker's address changed: paste `config` into each router again."""
        for name in self.tunnels:
            router_up(self.tmp, name, self.server.json("config", name)["router"])


class _Buffers:
    """capsys for ServerCLI at module scope (pytest's capsys is per test, the world is per module).
    ServerCLI.run calls readouterr() before and after each command: the first call puts fresh buffers in
    place of sys.stdout and sys.stderr, the second reads them and puts back what was there (pytest's own
    capture, which it sets again at the start of every test phase, so a fixture cannot hold a patch)."""

    saved = None

    def readouterr(self):
        import io
        import sys
        if self.saved is None:
            self.saved = (sys.stdout, sys.stderr)
            sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
            return "", ""
        out = (sys.stdout.getvalue(), sys.stderr.getvalue())
        sys.stdout, sys.stderr = self.saved
        self.saved = None
        return out


@pytest.fixture(scope="module")
def w(world, broker_dbs, tmp_path_factory):
    from sixbroker.linuxrouter import router as standalone
    apply_kernel.remove_all("vps", scope="broker")
    # earlier modules' tables (theirs and the foreign ones they made) go, as conftest's `clean` does
    tables = ["delete " + t.strip() for t in topo.nft("vps", "list", "tables").stdout.splitlines() if t.strip()]
    if tables:
        topo.nft("vps", "-f", "-", stdin="\n".join(tables) + "\n")
    for name, (ns, address, gw, length) in HOMES.items():
        if gw:
            _add_home(ns, address, gw, length)
    tmp = tmp_path_factory.mktemp("faults")
    yield World(tmp, _Buffers(), broker_dbs.new(tmp))
    _print_table()
    for ns in ("home2", "home3"):
        topo.run(["ip", "netns", "del", ns], check=False)
    standalone.main(["down", "--netns", "home"])
    apply_kernel.remove_all("vps", scope="broker")
    apply_nft.remove(nft_table.TABLE, "vps")


def _print_table():
    if not ROWS:
        return
    head = ("fault", "tunnels working during it", "after one apply", "")
    widths = [max(len(r[i]) for r in ROWS + [head]) for i in range(3)]
    lines = ["%s  %s  %s  %s" % (r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]), r[3])
             for r in [head] + ROWS]
    text = "\n".join(ln.rstrip() for ln in lines) + "\n"
    import sys
    sys.__stdout__.write("\nfault run (issue 12): r1, r2, r3 are the three homes\n" + text)
    results = os.environ.get("SIXBROKER_GUEST_RESULTS")
    if results:
        with open(os.path.join(results, "faults.txt"), "w") as f:
            f.write(text)


ALL = ["r1", "r2", "r3"]


def test_00_three_homes(w):
    w.server.json("init", "--prefix", PREFIX, "--uplink", "v-vps", "--netns", "vps")
    for name in ALL:
        w.add(name)
    got = working(w.tunnels)
    if got != ALL:
        for ns in ("vps", "home2"):
            for args in (["-d", "link"], ["addr"], ["-6", "route"], ["route"]):
                print(ns, args, topo.ip(ns, *args, check=False).stdout)
            print(ns, "nft", topo.nft(ns, "list", "ruleset", check=False).stdout)
    assert got == ALL


def test_foreign_sit_on_one_tunnels_pair_at_boot(w):
    _rebuild_vps()
    topo.batch("vps", ["tunnel add he-vps mode sit local %s remote %s ttl 64" % (topo.X, topo.Y),
                       "link set he-vps up"])
    rc, body = w.apply()
    during = working(w.tunnels)
    assert rc == 3 and [f["tunnel"] for f in body["failed"]] == ["r1"]
    topo.ip("vps", "link", "del", "he-vps")
    rc, body = w.apply()
    after = working(w.tunnels)
    record("foreign sit on r1's pair, at boot", during, after, "apply exit 3, r1 SIT_PAIR_IN_USE")
    assert during == ["r2", "r3"] and rc == 0 and after == ALL


def test_admin_route_with_one_tunnels_key_at_boot(w):
    _rebuild_vps()
    routed = w.tunnels["r2"]["routed"][0]
    topo.ip("vps", "-6", "route", "add", "unreachable", routed)
    rc, body = w.apply()
    during = working(w.tunnels)
    assert rc == 3 and [(f["tunnel"], f["code"]) for f in body["failed"]] == [("r2", "ROUTE_NOT_OURS")]
    topo.ip("vps", "-6", "route", "del", "unreachable", routed)
    rc, body = w.apply()
    after = working(w.tunnels)
    record("admin route with r2's key, at boot", during, after, "apply exit 3, r2 ROUTE_NOT_OURS")
    assert during == ["r1", "r3"] and rc == 0 and after == ALL


def test_admin_route_on_one_tunnels_prefix_while_running(w):
    # a more specific metric wins over ours: the kernel takes it, and it is not ours to remove
    routed = w.tunnels["r2"]["routed"][0]
    topo.ip("vps", "-6", "route", "add", "unreachable", routed, "metric", "1")
    rc, body = w.apply()
    during = working(w.tunnels)
    topo.ip("vps", "-6", "route", "del", "unreachable", routed, "metric", "1")
    rc, body = w.apply()
    after = working(w.tunnels)
    record("admin route on r2's prefix (metric 1), running", during, after, "not ours: apply leaves it")
    assert during == ["r1", "r3"] and rc == 0 and after == ALL


def test_nftables_flushed(w):
    topo.nft("vps", "flush", "ruleset")
    during = working(w.tunnels)
    rc, body = w.apply()
    after = working(w.tunnels)
    assert rc == 0 and body["apply"]["firewall"]["changed"] is True
    assert "peers6in4" in topo.nft("vps", "list", "table", "inet", "sixbroker").stdout
    record("nft flush ruleset", during, after, "our table gone until apply")
    assert after == ALL


DEBIAN_NFTABLES_CONF = """#!/usr/sbin/nft -f
flush ruleset
table inet filter {
	chain input { type filter hook input priority filter; }
	chain forward { type filter hook forward priority filter; }
	chain output { type filter hook output priority filter; }
}
"""


def _unit(key):
    """One setting of our systemd unit (files/broker/sixbroker.service), as systemd reads it."""
    with open(os.path.join(REPO, "files", "broker", "sixbroker.service")) as f:
        return [ln.split("=", 1)[1].strip() for ln in f if ln.startswith(key + "=")]


def test_nftables_reloaded(w):
    # what Debian's `systemctl reload nftables` runs: nft -f /etc/nftables.conf, which flushes the ruleset
    topo.nft("vps", "-f", "-", stdin=DEBIAN_NFTABLES_CONF)
    during = working(w.tunnels)
    gone = topo.nft("vps", "list", "table", "inet", "sixbroker", check=False).returncode != 0
    # systemd queues our unit's reload after nftables' (ReloadPropagatedFrom=), and our ExecReload= is the
    # apply that test_broker_firewall.py runs as systemd would; here the in-process apply stands for it
    assert _unit("ReloadPropagatedFrom") == ["nftables.service"]
    assert _unit("ExecReload")[0].split()[-3:] == ["server", "apply", "--if-initialised"]
    rc, body = w.apply()
    back = topo.nft("vps", "list", "table", "inet", "sixbroker", check=False).returncode == 0
    after = working(w.tunnels)
    topo.nft("vps", "delete", "table", "inet", "filter")
    record("nftables reloaded (Debian's nftables.conf)", during, after,
           "our table %s by the reload, back by the unit's propagated reload (apply): %s"
           % ("flushed" if gone else "kept", "yes" if back else "NO"))
    assert rc == 0 and after == ALL
    assert gone and back


def _renumber(addresses):
    """The uplink's IPv4 addresses replaced (the provider renumbered the VPS), as the host's network
    configuration would: addresses first, then the default route again."""
    topo.ip("vps", "addr", "flush", "dev", "v-vps", "scope", "global")
    topo.batch("vps", ["addr add %s/24 dev v-vps" % a for a in addresses] + ["route replace default via 203.0.113.1"])


def test_uplink_address_changed(w):
    _renumber([X3])
    during = working(w.tunnels)
    rc, body = w.apply()
    # the routers' peeraddr is the user's next step: paste `config` again
    w.reconfigure_routers()
    after = working(w.tunnels)
    record("uplink IPv4 changed (X -> X3), routers re-pasted", during, after,
           "apply exit %d; local now %s" % (rc, ",".join(sorted(set(d["local"] for d in kernel_status.status(
               "vps", scope="broker")["devices"])))))
    try:
        assert after == ALL
    finally:
        # back to X for the faults that follow, whatever happened
        _renumber([topo.X, topo.X2])
        w.apply()
        w.reconfigure_routers()
        assert working(w.tunnels) == ALL


def test_uplink_down_and_up(w):
    topo.ip("vps", "link", "set", "v-vps", "down")
    during = working(w.tunnels)
    topo.ip("vps", "link", "set", "v-vps", "up")
    # the IPv4 default route went with the link; the host's network configuration puts it back
    topo.ip("vps", "route", "replace", "default", "via", "203.0.113.1")
    without_apply = working(w.tunnels)
    rc, body = w.apply()
    after = working(w.tunnels)
    record("uplink down, then up", during, after, "without apply: %s" % _names(without_apply))
    assert rc == 0 and after == ALL


def _crash(w, fault, argv, expect_after):
    p = w.server.process(*argv, crash=fault.split("@")[1])
    assert p.returncode == -9, (p.returncode, p.stdout, p.stderr)
    during = working(w.tunnels)
    rc, body = w.apply()
    after = working(w.tunnels)
    record("kill -9: " + fault, during, after)
    assert rc == 0 and after == expect_after, (during, after, body)
    return during


def test_kill_9_at_each_step(w):
    # remove r3, killed after the commit: the kernel still has it, apply finishes the removal
    _crash(w, "remove@commit", ["remove", "r3"], ["r1", "r2"])
    assert vps_devices() == w.server.devices("r1", "r2")
    r3 = w.tunnels.pop("r3")
    # add r3 again, killed after the commit: the database has it, the kernel not yet
    w.tunnels["r3"] = r3
    _crash(w, "add@commit", ["add", "r3", "--remote", HOMES["r3"][1]], ALL)
    # killed after the kernel step, before the firewall: the device is gone, the table still lets r3 in
    _crash(w, "remove@kernel", ["remove", "r3"], ["r1", "r2"])
    w.tunnels.pop("r3")
    # and made, before the firewall lets its peer in
    w.tunnels["r3"] = r3
    _crash(w, "add@kernel", ["add", "r3", "--remote", HOMES["r3"][1]], ALL)
    # the same prefix and /127 came back (lowest free first): the router's configuration still holds
    assert w.server.json("show", "r3")["tunnel"]["routed"] == r3["routed"]
    _crash(w, "set@commit", ["set", "r2", "--mtu", "1400"], ALL)
    _crash(w, "set@kernel", ["set", "r2", "--mtu", "1480"], ALL)
    # an apply with work to do (a device deleted by hand: in the shared mode, every tunnel's), killed between
    # the kernel and the firewall
    topo.ip("vps", "link", "del", w.server.devices("r1")[0])
    topo.nft("vps", "delete", "element", "inet", "sixbroker", "peers6in4", "{ %s . %s }" % (topo.X, topo.Y))
    _crash(w, "apply@kernel", ["apply"], ALL)


def test_reboot(w):
    _rebuild_vps()
    during = working(w.tunnels)
    rc, body = w.apply()
    after = working(w.tunnels)
    record("reboot (fresh namespace), then apply", during, after)
    assert rc == 0 and after == ALL
