"""`sixbroker server` on a real kernel (the QEMU guest): three home routers configured from exactly what
`add` printed, one removed, a reboot (a fresh `vps` namespace) restored by `apply`, crashes repaired by
`apply`, and the kernel and nftables state compared as `ip`/`nft` dumps.

The homes run `sixbroker router` (standalone) in their own namespaces; their configuration is the printed
`uci batch` script run through tests/uci_edit.py and written as the standalone router's file.

    home  (Y, lan0 -> lanhost) --+
    home2 (192.0.2.20/25)     ---+-- inet -- vps (X): `sixbroker server --netns vps`
    home3 (192.0.2.130/25)    ---+
"""

import json
import os
import subprocess
import sys
import time

import pytest

import topo
from sixbroker.linux import apply_kernel, apply_nft, kernel_status, netns, nft_table, sysctl
from sixbroker.linuxrouter import router as standalone
from sixbroker.broker import db, reconcile, service
from server_cli import ServerCLI
import uci_edit as uci

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIX = "2001:db8:5b00::/56"
HOMES = {
    # name: (namespace, its IPv4 address, inet's address on that link, prefix length)
    "r1": ("home", topo.Y, None, None),
    "r2": ("home2", "192.0.2.20", "192.0.2.1", 25),
    "r3": ("home3", "192.0.2.130", "192.0.2.129", 25),
}


def _add_home(ns, address, gw, length):
    topo.drop_ns(ns)            # what a failed test before may have left
    topo.run(["ip", "netns", "add", ns])
    topo.batch("inet", ["link add to-%s type veth peer name v-%s netns %s" % (ns, ns, ns),
                        "addr add %s/%d dev to-%s" % (gw, length, ns), "link set to-%s up" % ns])
    # a LAN that is a veth pair inside the router: its end holds the routed prefix's ::1
    topo.batch(ns, ["addr add %s/%d dev v-%s" % (address, length, ns), "link set lo up", "link set v-%s up" % ns,
                    "route add default via " + gw, "link add lan0 type veth peer name lanpeer",
                    "link set lan0 up", "link set lanpeer up"])
    topo.sysctl(ns, "net.ipv6.conf.lan0.accept_dad", "0")


def _rebuild_vps():
    """A reboot of the VPS: its namespace and everything in it gone, the network set up again as at boot."""
    topo.run(["ip", "netns", "del", "vps"])
    topo.run(["ip", "netns", "add", "vps"])
    topo.batch("inet", ["link add to-vps type veth peer name v-vps netns vps",
                        "addr add 203.0.113.1/24 dev to-vps", "link set to-vps up"])
    topo.batch("vps", ["addr add %s/24 dev v-vps" % topo.X, "addr add %s/24 dev v-vps" % topo.X2,
                       "link set lo up", "link set v-vps up", "route add default via 203.0.113.1"])


@pytest.fixture
def homes(clean):
    for name, (ns, address, gw, length) in HOMES.items():
        if gw:
            _add_home(ns, address, gw, length)
    yield
    for ns in ("home2", "home3"):
        topo.drop_ns(ns)
    standalone.main(["down", "--netns", "home"])


# the core tests run in both tunnel modes (issue 15); the others in the default one
MODES = pytest.mark.parametrize("server", ["per-tunnel", "shared"], indirect=True)


APPLYING = ("init", "add", "remove", "set", "apply", "move")


class Server(ServerCLI):
    # the tunnel mode every `init` asks for (None: the default).  `make test-e2e-shared` sets
    # SIXBROKER_E2E_TUNNEL_MODE=shared: the whole broker suite again on the shared device (issue 15)
    mode = os.environ.get("SIXBROKER_E2E_TUNNEL_MODE") or None

    def _with_mode(self, args):
        if args and args[0] == "init" and self.mode and "--tunnel-mode" not in args:
            return tuple(args) + ("--tunnel-mode", self.mode)
        return args

    def run(self, *args):
        rc, out, err = ServerCLI.run(self, *self._with_mode(args))
        if rc == 0 and args and args[0] in APPLYING:
            self.check_record()
        return rc, out, err

    def check_record(self):
        """What the last apply recorded as the kernel's state is what a dump shows now: the no-op apply's
        shortcut trusts it (a full apply computes it from the routes it sent, a one-tunnel change from
        the sum before and its own routes; apply_kernel).  Wrong, every later apply would do all the work."""
        conn = db.connect(self.path)
        try:
            rec = reconcile._recorded(conn, db.generation(conn))
            netns = db.server(conn)["netns"]
        finally:
            conn.close()
        if rec is not None:
            now = reconcile._fp_text(reconcile.applier().kernel_fingerprint(netns))
            assert rec["kernel"] == now, "the recorded kernel state is not the kernel's"

    def devices(self, *names):
        """What vps_devices() shows when the tunnels named are in the kernel: a device each, or the one."""
        if self.mode == "shared":
            return [service.SHARED_DEVICE] if names else []
        return sorted(service.device_of(n) for n in names)

    def process(self, *args, crash=None):
        """The command in a process of its own (so it can be killed)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.path.join(REPO, "src")
        env.pop(reconcile.CRASH_ENV, None)
        if crash:
            env[reconcile.CRASH_ENV] = crash
        # the console script's entry point, as pip would write it
        entry = "import sys\nfrom sixbroker.cli import main\nsys.exit(main())"
        return subprocess.run([sys.executable, "-c", entry, "server"] + list(self._with_mode(args)) + ["--db", self.path],
                              capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def server(homes, broker_db, capsys, request):
    s = Server(broker_db, capsys)
    s.mode = getattr(request, "param", None) or Server.mode
    yield s
    apply_kernel.remove_all("vps", scope="broker")
    apply_nft.remove(nft_table.TABLE, "vps")


def router_file(tmp_path, name, router_json):
    """The standalone router's configuration from what `add` printed: the uci batch, read as uci would."""
    pkg = uci.parse("", "network")
    for args in uci.batch_commands(router_json["uci_batch"]):
        if args[0] == "commit":
            continue
        key, _, value = args[1].partition("=")
        parts = key.split(".")
        sec = pkg.get(parts[1])
        if len(parts) == 2:
            if value == "":
                if sec is not None:
                    pkg.remove(sec)
            else:
                pkg.add(value, parts[1])
        elif args[0] == "set":
            sec.set(parts[2], value)
        else:
            sec.add_list(parts[2], value)
    printed = pkg.get(name)
    out = uci.parse("", "router")
    sec = out.add("tunnel", name)
    for opt, value in printed.options:
        sec.set(opt, value)
    sec.set("lan", ["lan0"])
    path = str(tmp_path / ("router-" + name))
    with open(path, "w") as f:
        f.write(out.dumps())
    return path


def router_up(tmp_path, name, router_json):
    ns = HOMES[name][0]
    assert standalone.main(["up", "--config", router_file(tmp_path, name, router_json), "--netns", ns]) == 0


def vps_devices():
    return sorted(d["device"] for d in kernel_status.status("vps", scope="broker")["devices"])


def lan_address(tunnel):
    return tunnel["routed"][0].split("/")[0] + "1"


def reachable(tunnel):
    """Both ways over the tunnel: the home pings the broker's end, the VPS pings the home's LAN address
    (which only the route to the routed prefix through this tunnel reaches)."""
    ns = HOMES[tunnel["name"]][0]
    return topo.ping(ns, tunnel["server_address"]) and topo.ping("vps", lan_address(tunnel))


def read_sysctl(ns, key):
    with netns.InNetns(ns):
        with open("/proc/sys/" + key.replace(".", "/")) as f:
            return f.read().strip()


@MODES
def test_three_routers_remove_one_reboot_and_restore(server, tmp_path):
    t0 = time.time()
    # the public address is read from the uplink (v-vps holds X first, then X2)
    s = server.json("init", "--prefix", PREFIX, "--uplink", "v-vps", "--uplink-ra", "yes", "--netns", "vps")
    assert s["server"]["public_ipv4"] == topo.X and s["applied"] is True
    assert read_sysctl("vps", "net.ipv6.conf.all.forwarding") == "1"
    assert read_sysctl("vps", "net.ipv6.conf.v-vps.accept_ra") == "2"

    tunnels = {}
    for name, (ns, address, gw, length) in sorted(HOMES.items()):
        body = server.json("add", name, "--remote", address)
        assert body["applied"] is True
        tunnels[name] = body["tunnel"]
        router_up(tmp_path, name, body["router"])
    assert [t["routed"] for _, t in sorted(tunnels.items())] == [["2001:db8:5b00:%d::/64" % i] for i in (1, 2, 3)]
    assert vps_devices() == server.devices("r1", "r2", "r3")
    for t in tunnels.values():
        assert reachable(t), t["name"]
    # the seed's LAN host behind r1 reaches the VPS through it
    setup = time.time() - t0

    # an apply with nothing to do changes nothing, in the kernel or in nftables (counters included)
    before = topo.dumps("vps")
    again = server.json("apply")["apply"]
    assert again["kernel"]["changes"] == [] and again["firewall"]["changed"] is False
    assert topo.dumps("vps") == before

    # remove r2: its device, routes and firewall element go; the others keep working
    server.ok("remove", "r2")
    assert vps_devices() == server.devices("r1", "r3")
    assert not topo.ping("home2", tunnels["r2"]["server_address"], wait=1)
    ruleset = topo.nft("vps", "list", "table", "inet", "sixbroker").stdout
    assert "192.0.2.20" not in ruleset and "192.0.2.130" in ruleset and topo.Y in ruleset
    assert reachable(tunnels["r1"]) and reachable(tunnels["r3"])

    # reboot: a fresh namespace knows nothing; `apply` (what the systemd unit runs) restores it all
    _rebuild_vps()
    assert vps_devices() == []
    assert read_sysctl("vps", "net.ipv6.conf.all.forwarding") == "0"
    t1 = time.time()
    server.ok("apply")
    restore = time.time() - t1
    assert vps_devices() == server.devices("r1", "r3")
    assert read_sysctl("vps", "net.ipv6.conf.all.forwarding") == "1"
    assert read_sysctl("vps", "net.ipv6.conf.v-vps.accept_ra") == "2"
    assert reachable(tunnels["r1"]) and reachable(tunnels["r3"])
    # a host on r1's LAN, numbered from r1's routed prefix, reaches the VPS through both
    lan = tunnels["r1"]["routed"][0].split("/")[0] + "100"
    topo.ip("lanhost", "addr", "add", lan + "/64", "dev", "eth0")
    topo.ip("lanhost", "-6", "route", "replace", "default", "via", lan_address(tunnels["r1"]))
    try:
        assert topo.ping("lanhost", tunnels["r1"]["server_address"])
        assert topo.ping("vps", lan)
    finally:
        topo.ip("lanhost", "addr", "del", lan + "/64", "dev", "eth0")
        topo.ip("lanhost", "-6", "route", "replace", "default", "via", "2001:db8:5b11::1")
    # r2's freed prefix and /127 go to the next tunnel
    body = server.json("add", "r2", "--remote", HOMES["r2"][1])
    assert (body["tunnel"]["routed"], body["tunnel"]["transfer"]) == (tunnels["r2"]["routed"], tunnels["r2"]["transfer"])
    assert reachable(body["tunnel"])
    print("\nbroker e2e (%s): init + 3 adds + 3 routers up + 6 pings %.1f s; apply after reboot (2 tunnels) %.2f s"
          % (server.mode or "default mode", setup, restore))


def test_crashes_are_repaired_by_apply(server, tmp_path):
    if server.mode == "shared":
        pytest.skip("reads the per-tunnel device's own remote; the shared mode's kill -9 repair is "
                    "test_broker_faults.test_kill_9_at_each_step")
    server.ok("init", "--prefix", PREFIX, "--public-ipv4", topo.X, "--netns", "vps")
    body = server.json("add", "r1", "--remote", topo.Y)
    router_up(tmp_path, "r1", body["router"])
    assert reachable(body["tunnel"])

    # killed right after the commit: the database has r3, the kernel does not
    p = server.process("add", "r3", "--remote", HOMES["r3"][1], crash="commit")
    assert p.returncode == -9 and p.stdout == ""
    assert vps_devices() == ["sbs-r1"]
    listed = server.json("list")["tunnels"]
    assert [t["name"] for t in listed] == ["r1", "r3"]
    r3 = listed[1]
    assert server.process("apply").returncode == 0
    assert vps_devices() == ["sbs-r1", "sbs-r3"]
    router_up(tmp_path, "r3", server.json("config", "r3")["router"])
    assert reachable(r3)

    # killed between the kernel and the firewall: the device is there, the peer not yet let in by our table
    p = server.process("set", "r3", "--remote", "192.0.2.131", crash="kernel")
    assert p.returncode == -9
    status = [d for d in kernel_status.status("vps", scope="broker")["devices"] if d["device"] == "sbs-r3"][0]
    assert status["remote"] == "192.0.2.131"
    assert "192.0.2.131" not in topo.nft("vps", "list", "table", "inet", "sixbroker").stdout
    assert server.process("apply").returncode == 0
    assert "192.0.2.131" in topo.nft("vps", "list", "table", "inet", "sixbroker").stdout
    # back to the real address, in-process this time
    server.ok("set", "r3", "--remote", HOMES["r3"][1])
    assert reachable(r3)

    # killed after a remove's commit: the device outlives the row until apply
    p = server.process("remove", "r1", crash="commit")
    assert p.returncode == -9
    assert vps_devices() == ["sbs-r1", "sbs-r3"]
    assert server.process("apply").returncode == 0
    assert vps_devices() == ["sbs-r3"]
    assert topo.nft("vps", "list", "table", "inet", "sixbroker").stdout.count(topo.Y) == 0


def test_a_foreign_device_in_the_way_is_an_apply_error_and_the_row_stays(server, tmp_path):
    server.ok("init", "--prefix", PREFIX, "--public-ipv4", topo.X, "--netns", "vps")
    # someone else's sit from X to Y: ours would be the same (local, remote) pair
    topo.batch("vps", ["tunnel add he-vps mode sit local %s remote %s ttl 64" % (topo.X, topo.Y),
                       "link set he-vps up"])
    try:
        rc, out, err = server.run("add", "r1", "--remote", topo.Y)
        assert rc == 3 and "error TUNNELS_FAILED: " in err and "r1 (sbs-r1): SIT_PAIR_IN_USE: " in err, err
        assert "ifup r1" in out
        assert [t["name"] for t in server.json("list")["tunnels"]] == ["r1"]
        assert topo.ip("vps", "-d", "link", "show", "he-vps").returncode == 0
    finally:
        topo.ip("vps", "link", "del", "he-vps", check=False)
    # with the obstacle gone, apply finishes the job
    server.ok("apply")
    assert vps_devices() == server.devices("r1")


def test_a_big_broker_sizes_the_neighbour_table(world):
    """The thresholds exist in the initial namespace only (the guest's own here, so writing them is safe)."""
    from sixbroker.broker import service
    keys = ["net.ipv6.neigh.default.gc_thresh%d" % i for i in (1, 2, 3)]
    old = [read_sysctl(None, k) for k in keys]
    want = service.base_sysctls({"uplink": None, "uplink_ra": 0, "netns": None}, 1000)
    try:
        result = sysctl.apply(want, None)
        assert [read_sysctl(None, k) for k in keys] == ["1024", "2048", "4096"]
        assert len(result.changes) >= 3
    finally:
        sysctl.apply([[k, v] for k, v in zip(keys, old)], None)


def _forget_record(path):
    """Drop the `applied` record, so the next apply compares everything (the full reconcile)."""
    conn = db.connect(path, create=False)
    try:
        db.forget_applied(conn)
    finally:
        conn.close()


def _full_apply_finds_nothing(server):
    _forget_record(server.path)
    report = server.json("apply")["apply"]
    assert "unchanged" not in report
    assert report["kernel"]["changes"] == [] and report["firewall"]["changed"] is False, report


@MODES
def test_one_tunnel_changes_touch_that_tunnel_only_and_leave_what_a_full_apply_would(server, tmp_path):
    server.ok("init", "--prefix", PREFIX, "--public-ipv4", topo.X, "--netns", "vps")
    first = server.json("add", "r1", "--remote", topo.Y)
    # the first tunnel brings the table's rules: a full reconcile
    assert "incremental" not in first["apply"]
    router_up(tmp_path, "r1", first["router"])
    tunnels = {"r1": first["tunnel"]}
    for name in ("r2", "r3"):
        body = server.json("add", name, "--remote", HOMES[name][1])
        report = body["apply"]
        assert report.get("incremental") is True, report
        dev = "sbs-" + name
        # every netlink change names the new device; nothing else in the namespace was touched
        assert report["kernel"]["changes"] and all(dev in c for c in report["kernel"]["changes"]), report
        assert report["firewall"]["changed"] is True
        tunnels[name] = body["tunnel"]
        router_up(tmp_path, name, body["router"])
    for t in tunnels.values():
        assert reachable(t), t["name"]
    # what the one-tunnel changes left is exactly what the whole database wants
    _full_apply_finds_nothing(server)

    # a re-key (new remote) and an MTU change, one tunnel each
    body = server.json("set", "r3", "--remote", "192.0.2.131")
    assert body["apply"].get("incremental") is True
    assert "192.0.2.131" in topo.nft("vps", "list", "table", "inet", "sixbroker").stdout
    body = server.json("set", "r3", "--remote", HOMES["r3"][1], "--mtu", "1400")
    assert body["apply"].get("incremental") is True
    _full_apply_finds_nothing(server)
    assert reachable(tunnels["r3"])

    # remove: the tunnel's device and elements go, the others stay and still work
    body = server.json("remove", "r2")
    assert body["apply"].get("incremental") is True
    assert vps_devices() == server.devices("r1", "r3")
    table = topo.nft("vps", "list", "table", "inet", "sixbroker").stdout
    assert "sbs-r2" not in table and HOMES["r2"][1] not in table
    _full_apply_finds_nothing(server)
    assert reachable(tunnels["r1"]) and reachable(tunnels["r3"])

    # apply with nothing to do: the record and one dump prove it, no plan is built
    report = server.json("apply")["apply"]
    assert report.get("unchanged") is True and report["kernel"]["changes"] == []

    # drift the record cannot miss: each makes apply compare in full and repair
    if server.mode == "shared":
        _shared_drift(server, tunnels)
    else:
        topo.ip("vps", "link", "del", "sbs-r3")
        report = server.json("apply")["apply"]
        assert "unchanged" not in report and "link add sbs-r3" in report["kernel"]["changes"]
        assert reachable(tunnels["r3"])
        topo.ip("vps", "link", "set", "sbs-r1", "mtu", "1300")
        report = server.json("apply")["apply"]
        assert "unchanged" not in report and "link set sbs-r1 mtu 1480" in report["kernel"]["changes"]
    topo.nft("vps", "delete", "element", "inet", "sixbroker", "peers6in4", "{ %s . %s }" % (topo.X, topo.Y))
    report = server.json("apply")["apply"]
    assert "unchanged" not in report and report["firewall"]["changed"] is True
    assert server.json("apply")["apply"].get("unchanged") is True
    # another table loaded meanwhile: our table's digest proves ours is as it was (issue 12, defect 6)
    topo.nft("vps", "add", "table", "inet", "someone_else")
    report = server.json("apply")["apply"]
    assert report.get("unchanged") is True and report["firewall"]["changed"] is False
    assert reachable(tunnels["r1"])

    # an add after someone deleted our table: the element change fails, the whole table is loaded
    topo.nft("vps", "delete", "table", "inet", "sixbroker")
    body = server.json("add", "r2", "--remote", HOMES["r2"][1])
    assert "incremental" not in body["apply"] and body["apply"]["firewall"]["changed"] is True
    _full_apply_finds_nothing(server)


def _shared_drift(server, tunnels):
    """The shared device's drift: one tunnel's route deleted by hand, an MTU changed by hand, the device
    itself deleted; each repaired by the next apply."""
    dev = service.SHARED_DEVICE
    routed = tunnels["r3"]["routed"][0]
    topo.ip("vps", "-6", "route", "del", routed)
    report = server.json("apply")["apply"]
    assert "unchanged" not in report and any(c.startswith("route add " + routed) for c in report["kernel"]["changes"])
    assert reachable(tunnels["r3"])
    topo.ip("vps", "-6", "route", "change", routed, "via", "::" + HOMES["r3"][1], "dev", dev, "proto", "91", "mtu", "1300")
    report = server.json("apply")["apply"]
    assert "unchanged" not in report and any(c.startswith("route replace " + routed) for c in report["kernel"]["changes"])
    topo.ip("vps", "link", "set", dev, "mtu", "1300")
    report = server.json("apply")["apply"]
    assert "unchanged" not in report and "link set %s mtu 65515" % dev in report["kernel"]["changes"]
    topo.ip("vps", "link", "del", dev)
    report = server.json("apply")["apply"]
    assert "link add " + dev in report["kernel"]["changes"]
    for t in tunnels.values():
        if t["name"] != "r2":
            assert reachable(t), t["name"]


def _failed(body):
    return [(f["tunnel"], f["code"]) for f in body.get("failed", [])]


def _states(server):
    return dict((t["name"], (t["state"], (t.get("error") or {}).get("code"))) for t in server.json("list")["tunnels"])


def _peers_in_table():
    text = topo.nft("vps", "list", "set", "inet", "sixbroker", "peers6in4", check=False).stdout
    return sorted(address for ns, address, gw, length in HOMES.values() if address in text)


@MODES
def test_one_tunnel_that_cannot_be_applied_never_breaks_the_others(server, tmp_path):
    """Issue 12, defect 1, as reported: a sit device that is not ours holds r1's (local, remote) pair when
    the VPS boots; `apply` must bring up r2 and r3 in full, load the firewall, name r1's failure, and
    every later apply, set and remove must work (no DEVICE_NOT_OURS on an innocent device)."""
    server.ok("init", "--prefix", PREFIX, "--public-ipv4", topo.X, "--netns", "vps")
    tunnels = {}
    for name, (ns, address, gw, length) in sorted(HOMES.items()):
        body = server.json("add", name, "--remote", address)
        tunnels[name] = body["tunnel"]
        router_up(tmp_path, name, body["router"])
    for t in tunnels.values():
        assert reachable(t), t["name"]

    # a reboot, and the admin's own sit from X to Y comes up before the broker's unit runs
    _rebuild_vps()
    topo.batch("vps", ["tunnel add he-vps mode sit local %s remote %s ttl 64" % (topo.X, topo.Y),
                       "link set he-vps up"])
    rc, out, err = server.run("apply", "--json")
    body = json.loads(out)
    assert rc == 3, (rc, out, err)
    assert body["applied"] is False and _failed(body) == [("r1", "SIT_PAIR_IN_USE")]
    assert body["error"]["code"] == "TUNNELS_FAILED" and "r1 (sbs-r1)" in body["error"]["message"]
    # everything else is applied: r2 and r3 work both ways, and the firewall is loaded
    assert vps_devices() == server.devices("r2", "r3")
    assert reachable(tunnels["r2"]) and reachable(tunnels["r3"])
    assert _peers_in_table() == sorted([topo.Y, HOMES["r2"][1], HOMES["r3"][1]])
    assert _states(server) == {"r1": ("failed", "SIT_PAIR_IN_USE"), "r2": ("applied", None),
                               "r3": ("applied", None)}
    rc, out, err = server.run("apply")
    assert rc == 3 and "except 1 of 3 tunnels: r1 (SIT_PAIR_IN_USE)" in out
    assert "error TUNNELS_FAILED: " in err and "r1 (sbs-r1): SIT_PAIR_IN_USE: " in err
    assert "DEVICE_NOT_OURS" not in err
    # the failing tunnel can still be changed: the change is saved, it still fails for the same reason
    rc, out, err = server.run("set", "r1", "--mtu", "1400", "--json")
    assert rc == 3 and _failed(json.loads(out)) == [("r1", "SIT_PAIR_IN_USE")], (out, err)
    assert reachable(tunnels["r2"]) and reachable(tunnels["r3"])

    # the obstacle gone, one apply brings r1 back
    topo.ip("vps", "link", "del", "he-vps")
    body = server.json("apply")
    assert body["applied"] is True and body.get("failed", []) == []
    assert vps_devices() == server.devices("r1", "r2", "r3")
    for t in tunnels.values():
        assert reachable(t), t["name"]
    assert _states(server) == {"r1": ("applied", None), "r2": ("applied", None), "r3": ("applied", None)}

    # an admin's route with r2's key (destination, no source, metric 1024), then a reboot
    _rebuild_vps()
    r2_routed = tunnels["r2"]["routed"][0]
    topo.ip("vps", "-6", "route", "add", "unreachable", r2_routed)
    try:
        rc, out, err = server.run("apply", "--json")
        body = json.loads(out)
        assert rc == 3 and _failed(body) == [("r2", "ROUTE_NOT_OURS")], (out, err)
        assert reachable(tunnels["r1"]) and reachable(tunnels["r3"])
        # remove always works: what is ours goes with the row, the admin's route stays
        body = server.json("remove", "r2")
        assert body["applied"] is True and body.get("failed", []) == []
        assert vps_devices() == server.devices("r1", "r3") and "r2" not in _states(server)
        assert "unreachable " + r2_routed in topo.ip("vps", "-6", "route", "show", r2_routed).stdout
        assert reachable(tunnels["r1"]) and reachable(tunnels["r3"])
        # a full compare finds nothing left to do
        _full_apply_finds_nothing(server)
    finally:
        # the suite's namespaces outlive the test: the admin's route must not meet the next one
        topo.ip("vps", "-6", "route", "del", "unreachable", r2_routed, check=False)


def _neighbour(i):
    """What fail2ban does all day: its own table, a ban added (one nftables transaction each)."""
    topo.nft("vps", "-f", "-", stdin="table inet f2b {\n set ban { type ipv4_addr; }\n"
             " chain input { type filter hook input priority -1; ip saddr @ban drop; }\n}\n"
             "add element inet f2b ban { 192.0.2.%d }\n" % (200 + i))


def test_a_neighbour_changing_its_own_table_keeps_the_fast_paths(server, tmp_path):
    """Issue 12, defect 6: with another nftables user changing its table before every command, add,
    remove and set stay one-tunnel changes and an apply with nothing to do stays `unchanged`; a change
    to our own table still makes apply compare in full and repair it."""
    server.ok("init", "--prefix", PREFIX, "--public-ipv4", topo.X, "--netns", "vps")
    first = server.json("add", "r1", "--remote", topo.Y)
    router_up(tmp_path, "r1", first["router"])
    i = 0
    for name in ("r2", "r3"):
        i += 1
        _neighbour(i)
        body = server.json("add", name, "--remote", HOMES[name][1])
        assert body["apply"].get("incremental") is True, (name, body["apply"])
        router_up(tmp_path, name, body["router"])
    for cmd in (["apply"], ["set", "r3", "--mtu", "1400"], ["apply"], ["remove", "r2"], ["apply"],
                ["add", "r2", "--remote", HOMES["r2"][1]], ["apply"]):
        i += 1
        _neighbour(i)
        report = server.json(*cmd)["apply"]
        key = "unchanged" if cmd == ["apply"] else "incremental"
        assert report.get(key) is True, (cmd, report)
    assert reachable(first["tunnel"]) and reachable(server.json("show", "r2")["tunnel"])
    # our own table changed: the full path, which puts it back
    topo.nft("vps", "delete", "element", "inet", "sixbroker", "peers6in4", "{ %s . %s }" % (topo.X, topo.Y))
    report = server.json("apply")["apply"]
    assert "unchanged" not in report and report["firewall"]["changed"] is True
    assert reachable(first["tunnel"])
    _neighbour(i + 1)
    assert server.json("apply")["apply"].get("unchanged") is True
    _full_apply_finds_nothing(server)
