"""The broker's firewall on a real kernel (the QEMU guest): the inner source check between homes, another
firewall's drop named by `apply` and `info` (and its documented fix making the tunnels work), and our
table put back after Debian's `nftables.service` reload wiped it.

Forwarding at the VPS is what these need, so the traffic goes from one home to another: r1's router
pings r2's LAN address, in through sbs-r1 and out through sbs-r2 (reachable() alone stays on the VPS:
its input and output, never its forward hook).
"""

import configparser
import json
import os
import subprocess
import sys

import pytest

import host_firewalls
import topo
from sixbroker.linux import apply_nft, nft_table
from test_broker import HOMES, PREFIX, homes, lan_address, reachable, router_up, server  # noqa: F401

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOBODY = "2001:db8:5bff::66"        # outside the broker's prefix: nobody's


def _two_homes(server, tmp_path):
    if server.mode == "shared":
        # these read what a device per tunnel gives (its own drop counter, its name in other tables' rules);
        # the shared device's source check and counters: test_broker_shared.py, test_broker_traffic.py
        pytest.skip("per-tunnel devices' counters and names")
    server.ok("init", "--prefix", PREFIX, "--public-ipv4", topo.X, "--netns", "vps")
    t = {}
    for name in ("r1", "r2"):
        body = server.json("add", name, "--remote", HOMES[name][1])
        t[name] = body["tunnel"]
        router_up(tmp_path, name, body["router"])
    return t


def _ping_from(ns, source, target, count=1):
    p = topo.run(["ping", "-6", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "2", "-I", source, target],
                 check=False, ns=ns)
    return p.returncode == 0


def _extra_sources(addresses):
    """Addresses on r1's LAN device to send from, removed again afterwards (lan0 outlives the tests)."""
    import contextlib

    @contextlib.contextmanager
    def held():
        for a in addresses:
            topo.ip("home", "addr", "add", a + "/128", "dev", "lan0", "nodad")
        try:
            yield
        finally:
            for a in addresses:
                topo.ip("home", "addr", "del", a + "/128", "dev", "lan0", check=False)
    return held()


def _home_to_home(t):
    """r1's LAN address to r2's LAN address and back: forwarded by the VPS both ways."""
    return _ping_from("home", lan_address(t["r1"]), lan_address(t["r2"]))


def test_a_home_forwards_only_its_own_sources_and_the_drops_are_counted_on_its_tunnel(server, tmp_path):
    t = _two_homes(server, tmp_path)
    assert _home_to_home(t)                                   # r1's own traffic passes, both ways
    theirs = t["r2"]["routed"][0].split("/")[0] + "66"        # in r2's routed prefix
    with _extra_sources([theirs, NOBODY]):
        _spoof_from_r1(server, t, theirs)


def _spoof_from_r1(server, t, theirs):
    # r2 counts what reaches it from those sources, before its own firewall sees them
    topo.nft("home2", "-f", "-", stdin="table inet probe {\n chain input {\n  type filter hook input priority -300;"
             " policy accept;\n  ip6 saddr { %s, %s } counter\n }\n}\n" % (theirs, NOBODY))
    for a in (theirs, NOBODY):
        assert not _ping_from("home", a, lan_address(t["r2"]), count=3)
    got = json.loads(topo.nft("home2", "-j", "list", "table", "inet", "probe").stdout)["nftables"]
    counted = [e["counter"]["packets"] for item in got if "rule" in item for e in item["rule"]["expr"]
               if "counter" in e]
    assert counted == [0], counted                            # nothing spoofed got through
    # r1's drops are on r1's tunnel, r2's count stays 0, and r2 works
    shown = server.json("show", "r1")["tunnel"]
    assert shown["spoofed_dropped"]["packets"] == 6, shown
    assert server.json("show", "r2")["tunnel"]["spoofed_dropped"]["packets"] == 0
    assert "dropped for an inner source not its own: 6 packets" in server.ok("show", "r1")
    assert reachable(t["r2"]) and _ping_from("home2", lan_address(t["r2"]), lan_address(t["r1"]))
    # the one-tunnel paths keep the check: r3 added by elements is guarded at once
    body = server.json("add", "r3", "--remote", HOMES["r3"][1])
    assert body["apply"].get("incremental") is True
    assert apply_nft.spoofed(netns="vps") == {"sbs-r1": {"packets": 6, "bytes": shown["spoofed_dropped"]["bytes"]},
                                              "sbs-r2": {"packets": 0, "bytes": 0},
                                              "sbs-r3": {"packets": 0, "bytes": 0}}


def test_another_tables_drop_is_named_by_apply_and_info_and_the_documented_fix_works(server, tmp_path):
    t = _two_homes(server, tmp_path)
    assert _home_to_home(t)
    # Docker 28 with ip6tables: `ip6 filter FORWARD` policy drop; our accept cannot help
    topo.nft("vps", "-f", "-", stdin=host_firewalls.DOCKER_28)
    assert not _home_to_home(t)
    rc, out, err = server.run("apply")
    assert rc == 0 and "kernel and firewall are in line" in out
    warnings = [ln for ln in err.splitlines() if "warning HOST_FIREWALL_DROPS" in ln]
    assert len(warnings) == 2, err
    assert "ip6 filter FORWARD (policy drop) drops forwarding from the tunnels (2 tunnels: sbs-r1, sbs-r2)" in err
    assert "DOCKER-USER -i sbs-+" in err
    found = server.json("info")["server"]["host_firewall"]
    assert sorted((f["table"], f["chain"], f["kind"], f["owner"]) for f in found) == [
        ("ip6 filter", "FORWARD", "from", "docker"), ("ip6 filter", "FORWARD", "to", "docker")]
    body = server.json("apply")
    assert body["applied"] is True and len(body["host_firewall"]) == 2
    # the fix the warning gives (ip6tables -I DOCKER-USER -i/-o sbs-+ -j ACCEPT, as iptables-nft writes it)
    topo.nft("vps", "insert", "rule", "ip6", "filter", "DOCKER-USER", "oifname", '"sbs-*"', "counter", "accept")
    topo.nft("vps", "insert", "rule", "ip6", "filter", "DOCKER-USER", "iifname", '"sbs-*"', "counter", "accept")
    assert _home_to_home(t)
    rc, out, err = server.run("apply")
    assert rc == 0 and err == ""
    assert server.json("info")["server"]["host_firewall"] == []

    # an input chain that lets in ssh only: protocol 41 never arrives, every tunnel is dead
    topo.nft("vps", "-f", "-", stdin=host_firewalls.SSH_ONLY)
    assert not topo.ping("home", t["r1"]["server_address"], wait=1)
    found = server.json("apply")["host_firewall"]
    assert [(f["table"], f["chain"], f["rule"], f["kind"], f["tunnels"]) for f in found] == [
        ("inet filter", "input", "policy drop", "in", ["sbs-r1", "sbs-r2"])]
    topo.nft("vps", "delete", "table", "inet", "filter")
    assert reachable(t["r1"])


def _unit_setting(key):
    u = configparser.ConfigParser(strict=False, interpolation=None)
    u.optionxform = str
    u.read(os.path.join(REPO, "files", "broker", "sixbroker.service"))
    return u["Service"].get(key)


def _unit_command(key):
    return _unit_setting(key).split()


def test_a_reload_of_nftables_wipes_our_table_and_the_units_reload_brings_it_back(server, tmp_path):
    t = _two_homes(server, tmp_path)
    want = apply_nft.loaded(netns="vps")
    assert want is not None and _home_to_home(t)
    # Debian's nftables.service reload, as systemd runs it: its ExecReload= (`nft -f /etc/nftables.conf`,
    # whose first line is `flush ruleset`), here in the VPS's namespace
    nft_unit = configparser.ConfigParser(strict=False, interpolation=None)
    nft_unit.read("/lib/systemd/system/nftables.service")
    reload = nft_unit["Service"]["ExecReload"].split()
    with open(reload[-1]) as f:
        assert "flush ruleset" in f.read()
    topo.run(reload, ns="vps")
    assert apply_nft.loaded(netns="vps") is None
    # our unit's ExecReload= (ReloadPropagatedFrom=nftables.service queues it), as systemd runs it: the
    # environment from the unit's EnvironmentFile= (the guest's /etc is a throwaway overlay; the database
    # is not at the default path here), sixbroker on PATH
    assert os.environ.get("SIXBROKER_GUEST") == "1"
    env = {"PATH": os.path.dirname(sys.executable) + ":/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    env_file = _unit_setting("EnvironmentFile")
    if env_file:
        env_file = env_file.lstrip("-")
        os.makedirs(os.path.dirname(env_file), exist_ok=True)
        with open(env_file, "w") as f:
            f.write("# written by the test\nSIXBROKER_DB=%s\n" % server.path)
            if os.environ.get("SIXBROKER_STATE_DIR"):      # a PostgreSQL broker's host-local files
                f.write("SIXBROKER_STATE_DIR=%s\n" % os.environ["SIXBROKER_STATE_DIR"])
        with open(env_file) as f:
            env.update(ln.strip().split("=", 1) for ln in f if "=" in ln and not ln.startswith("#"))
    p = subprocess.run(_unit_command("ExecReload"), capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert nft_table.normalise(apply_nft.loaded(netns="vps")) == nft_table.normalise(want)
    assert _home_to_home(t)
    # and the spoof check is back with it
    with _extra_sources([NOBODY]):
        assert not _ping_from("home", NOBODY, lan_address(t["r2"]))
    assert apply_nft.spoofed(netns="vps")["sbs-r1"]["packets"] == 1
