"""`sixbroker server` end to end on the host: the real CLI, a real SQLite file, a fake applier.

The fake applier stands in for the kernel and nftables (tests/e2e/test_broker.py has the real ones): it
keeps the last state each got, so a test sees what the kernel would hold.  Every refused command is
checked for its code, its exit status and an unchanged database.
"""
import hashlib
import json
import os
import re
import sqlite3
import ssl
import subprocess
import sys
import threading

import pytest

from sixbroker.core import addr, options, plan
from sixbroker.broker import alloc, cli, db, hostfacts, reconcile, service
from sixbroker.core.errors import CODES
from server_cli import ServerCLI
import uci_edit as uci

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIX = "2001:db8:5b00::/56"
X = "203.0.113.10"          # the VPS
Y = "198.51.100.20"         # a home router
Y2 = "198.51.100.21"
Y3 = "198.51.100.22"


class FakeApplier:
    """The kernel and the firewall as the last state handed to each; optionally failing."""

    def __init__(self):
        self.kernel_state = None
        self.firewall_state = None
        self.calls = 0
        self.fail = None

    def kernel(self, state):
        self.calls += 1
        if self.fail:
            raise self.fail
        self.kernel_state = json.loads(json.dumps(state))
        return {"changed": len(state["plans"])}

    def firewall(self, state):
        self.firewall_state = [r for p in state["plans"] for r in p["firewall"]["rules"]]
        return {"rules": len(self.firewall_state)}

    def devices(self):
        return sorted(p["tunnel"]["device"] for p in self.kernel_state["plans"])


class Broker(ServerCLI):
    def __init__(self, path, capsys, applier):
        ServerCLI.__init__(self, path, capsys)
        self.applier = applier

    def fails(self, code, *args, status=1):
        """Run a command that must be refused with `code`; the database must not change."""
        before = self.dump()
        rc, out, err = self.run(*args)
        assert rc == status, (args, rc, out, err)
        assert "error " + code + ":" in err, err
        assert self.dump() == before
        rc, out, jerr = self.run(*(list(args) + ["--json"]))
        assert rc == status
        body = json.loads(out)
        assert body["error"]["code"] == code and body["error"]["message"]
        assert self.dump() == before
        return err

    @property
    def postgresql(self):
        return self.path.startswith("postgresql://")

    def dump(self):
        if self.postgresql:
            return pg_dump(self.path)
        if not os.path.exists(self.path):
            return None
        c = sqlite3.connect(self.path)
        try:
            return "\n".join(line for line in c.iterdump()
                             if not any(line.startswith('INSERT INTO "%s"' % t) for t in OBSERVED))
        except sqlite3.DatabaseError:
            with open(self.path, "rb") as f:
                return f.read()
        finally:
            c.close()

    def init(self, *extra):
        return self.ok("init", "--prefix", PREFIX, "--public-ipv4", X, *extra)


# what an apply records of itself, whatever the command then says (a refused `apply` applied the rest)
OBSERVED = ("apply_runs",)


def pg_dump(url):
    """Every table's columns and rows, sorted, and the schema version: what a refused command must leave as it was.
    From pg_catalog in two queries (information_schema's views took ~100 ms a dump, four dumps a refusal)."""
    import psycopg
    out = []
    with psycopg.connect(url) as c:
        columns = {}
        for table, column in c.execute(
                "SELECT c.relname, a.attname || ' ' || format_type(a.atttypid, a.atttypmod) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid"
                " WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped"
                " ORDER BY c.relname, a.attnum"):
            columns.setdefault(table, []).append(column)
        for t, cols in sorted(columns.items()):
            rows = [] if t in OBSERVED else sorted(repr(r) for r in c.execute('SELECT * FROM "%s"' % t))
            out.append("%s(%s)\n%s" % (t, ", ".join(cols), "\n".join(rows)))
    return "\n".join(out)


def _broker(db_target, capsys, monkeypatch):
    fake = FakeApplier()
    monkeypatch.setattr(reconcile, "APPLIER", fake)
    monkeypatch.delenv("SIXBROKER_DB", raising=False)
    monkeypatch.delenv(reconcile.CRASH_ENV, raising=False)
    # init and apply must never read the test machine's own interfaces
    monkeypatch.setattr(hostfacts, "detect", lambda uplink, netns: {})
    monkeypatch.setattr(hostfacts, "ipv4_on_host", lambda address, netns: True)
    return Broker(db_target, capsys, fake)


# For a test that takes db_target (through a fixture) but whose subject never reaches the database (a
# refusal before it is opened, a TLS handshake, the router end's own timers): SQLite alone, each use says why.
ONE_BACKEND = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture
def broker(db_target, capsys, monkeypatch):
    """The CLI on a fake applier, on SQLite and on PostgreSQL (db_target)."""
    return _broker(db_target, capsys, monkeypatch)


@pytest.fixture
def file_broker(tmp_path, capsys, monkeypatch):
    """broker on SQLite only: for what is about the database file itself (its mode, its bytes, its journal)."""
    return _broker(str(tmp_path / "state" / "broker.db"), capsys, monkeypatch)


def batch_to_network(script):
    """Run a `uci batch` script the way uci would, on an empty `network` package."""
    pkg = uci.parse("", "network")
    committed = False
    for args in uci.batch_commands(script):
        if args[0] == "commit":
            assert args[1:] == ["network"]
            committed = True
            continue
        assert args[0] in ("set", "add_list") and len(args) == 2, args
        key, eq, value = args[1].partition("=")
        assert eq, args
        parts = key.split(".")
        assert parts[0] == "network"
        if len(parts) == 2:
            sec = pkg.get(parts[1])
            if value == "":
                if sec is not None:
                    pkg.remove(sec)
            elif sec is None:
                pkg.add(value, parts[1])
        else:
            sec = pkg.get(parts[1])
            assert sec is not None, "option before its section: " + args[1]
            if args[0] == "set":
                sec.set(parts[2], value)
            else:
                sec.add_list(parts[2], value)
    assert committed
    return pkg


def heredoc_body(shell_text):
    lines = shell_text.split("\n")
    start = [i for i, ln in enumerate(lines) if ln.startswith("uci batch <<'")]
    assert len(start) == 1
    tag = lines[start[0]][len("uci batch <<'"):-1]
    end = lines.index(tag, start[0] + 1)
    return "\n".join(lines[start[0] + 1:end]) + "\n", lines[end + 1:]


# ---- init -----------------------------------------------------------------------------------------------------

def test_init_records_the_layout_and_applies_the_base(broker):
    body = broker.json("init", "--prefix", PREFIX, "--public-ipv4", X)
    s = body["server"]
    assert s["prefix"] == PREFIX and s["transfer_prefix"] == "2001:db8:5b00::/64"
    assert (s["public_ipv4"], s["local_ipv4"], s["uplink"], s["netns"]) == (X, X, None, None)
    assert s["reserved"] == [] and s["tunnels"] == 0
    # the transfer /64 is out of the routed pool: 255 /64s left of 256
    assert s["usage"]["routed_64s_total"] == 255 and s["usage"]["routed_64s_used"] == 0
    assert body["applied"] is True
    k = broker.applier.kernel_state
    assert k["plans"] == [] and k["device_prefix"] == "sbs-"
    assert k["sysctls"] == [["net.ipv6.conf.all.forwarding", "1"]]


def test_init_uplink_ra_is_kept_when_the_uplink_takes_ras(broker, monkeypatch):
    seen = []

    def detect(uplink, netns):
        seen.append((uplink, netns))
        return {"public_ipv4": X, "uplink_ra": True}

    monkeypatch.setattr(hostfacts, "detect", detect)
    s = broker.json("init", "--prefix", PREFIX, "--uplink", "eth0", "--netns", "vps")["server"]
    assert seen == [("eth0", "vps")]
    assert s["public_ipv4"] == X and s["uplink_accept_ra"] is True and s["netns"] == "vps"
    k = broker.applier.kernel_state
    assert k["netns"] == "vps"
    assert ["net.ipv6.conf.eth0.accept_ra", "2"] in k["sysctls"]
    # and every tunnel's plan says the same (plan.broker's uplink)
    broker.ok("add", "home", "--remote", Y)
    assert ["net.ipv6.conf.eth0.accept_ra", "2"] in broker.applier.kernel_state["plans"][0]["sysctls"]
    # told otherwise, it leaves the uplink alone
    s = broker.json("init", "--uplink-ra", "no")["server"]
    assert s["uplink_accept_ra"] is False and s["uplink"] == "eth0"
    assert broker.applier.kernel_state["sysctls"] == [["net.ipv6.conf.all.forwarding", "1"]]
    # '' clears the uplink and the namespace; the old namespace is emptied of ours
    seen = []
    kernel = broker.applier.kernel
    broker.applier.kernel = lambda state: seen.append((state["netns"], len(state["plans"]))) or kernel(state)
    s = broker.json("init", "--uplink", "", "--netns", "")["server"]
    assert (s["uplink"], s["netns"], s["uplink_accept_ra"]) == (None, None, False)
    assert seen == [("vps", 0), (None, 1)]
    assert broker.applier.kernel_state["netns"] is None


def test_init_again_keeps_what_is_not_given(broker):
    broker.init("--transfer-prefix", "2001:db8:ffff::/120", "--reserve", "2001:db8:5b00:ff::/64")
    s = broker.json("init", "--uplink", "ens3", "--uplink-ra", "yes")["server"]
    assert s["prefix"] == PREFIX and s["transfer_prefix"] == "2001:db8:ffff::/120"
    assert s["reserved"] == ["2001:db8:5b00:ff::/64"] and s["uplink"] == "ens3"
    # the transfer prefix is outside the broker prefix: only the reserved /64 is out of the pool
    assert s["usage"]["routed_64s_total"] == 255
    t = broker.json("add", "home", "--remote", Y)["tunnel"]
    assert t["transfer"] == "2001:db8:ffff::2/127" and t["routed"] == ["2001:db8:5b00::/64"]


def test_init_refuses_to_move_prefixes_under_tunnels(broker):
    broker.init()
    broker.ok("add", "home", "--remote", Y)
    broker.fails("BROKER_PREFIX_IN_USE", "init", "--prefix", "2001:db8:6000::/56")
    broker.fails("BROKER_PREFIX_IN_USE", "init", "--transfer-prefix", "2001:db8:ffff::/64")
    broker.fails("BROKER_PREFIX_IN_USE", "init", "--reserve", "2001:db8:5b00:ff::/64")
    # other facts may change under tunnels; the same prefix given again is no change
    assert broker.json("init", "--prefix", PREFIX, "--public-ipv4", "203.0.113.11")["server"]["public_ipv4"] \
        == "203.0.113.11"
    assert broker.json("config", "home")["router"]["options"]["peeraddr"] == "203.0.113.11"
    broker.fails("REMOTE_IS_SERVER", "init", "--public-ipv4", Y)


@pytest.mark.parametrize("args,code", [
    (["--prefix", "2001:db8:5b00::/65"], "INVALID_PREFIX"),          # a /64 broker prefix is the finest
    (["--prefix", "2001:db8::/8"], "INVALID_PREFIX"),
    (["--prefix", "2001:db8:5b00::1/56"], "INVALID_PREFIX"),         # host bits
    (["--prefix", "2001:db8:5b00::"], "INVALID_PREFIX"),             # no length
    (["--prefix", "192.0.2.0/24"], "INVALID_PREFIX"),
    (["--prefix", "ff00::/56"], "INVALID_PREFIX"),
    (["--prefix", "fe80::/56"], "INVALID_PREFIX"),
    (["--prefix", "::ffff:0:0/96"], "INVALID_PREFIX"),
    (["--prefix", PREFIX, "--transfer-prefix", "2001:db8:ffff::/56"], "INVALID_TRANSFER_PREFIX"),
    (["--prefix", PREFIX, "--transfer-prefix", "2001:db8:ffff::/127"], "INVALID_TRANSFER_PREFIX"),
    (["--prefix", PREFIX, "--reserve", "2001:db8:6000::/64"], "INVALID_RESERVED_PREFIX"),   # outside
    (["--prefix", PREFIX, "--reserve", "2001:db8:5b00:1::/80"], "INVALID_RESERVED_PREFIX"),
    (["--prefix", PREFIX, "--reserve", "2001:db8:5b00::/60"], "INVALID_RESERVED_PREFIX"),   # holds the transfer /64
    (["--prefix", "2001:db8:5b00::/63", "--reserve", "2001:db8:5b00:1::/64"], "NO_ROUTED_SPACE"),
    (["--prefix", PREFIX, "--public-ipv4", "224.0.0.1"], "INVALID_PUBLIC_IPV4"),
    (["--prefix", PREFIX, "--public-ipv4", "2001:db8::1"], "INVALID_PUBLIC_IPV4"),
    (["--prefix", PREFIX, "--local-ipv4", "127.0.0.1"], "INVALID_LOCAL_IPV4"),
    (["--prefix", PREFIX, "--uplink", "eth/0"], "INVALID_UPLINK"),
    (["--prefix", PREFIX, "--netns", "../x"], "INVALID_NETNS"),
])
def test_init_refuses_bad_input(broker, args, code):
    if "--public-ipv4" not in args:
        args = args + ["--public-ipv4", X]
    broker.fails(code, "init", *args)
    assert not os.path.exists(broker.path) or broker.dump().count("INSERT INTO \"server\"") == 0


def test_a_refused_first_init_leaves_an_empty_postgresql_database_empty(pg_url, capsys, monkeypatch, tmp_path):
    """The broker fixture's PostgreSQL databases start with the schema (a copy of a template); an operator's
    starts empty: the first connect migrates it, and a refused first init takes all of that away again."""
    monkeypatch.setenv("SIXBROKER_STATE_DIR", str(tmp_path))
    broker = _broker(pg_url, capsys, monkeypatch)
    assert broker.dump() == ""
    broker.fails("INVALID_PREFIX", "init", "--prefix", "192.0.2.0/24", "--public-ipv4", X)
    broker.fails("INVALID_NETNS", "init", "--prefix", PREFIX, "--public-ipv4", X, "--netns", "../x")
    assert broker.dump() == ""
    broker.init()
    assert broker.json("info")["server"]["prefix"] == PREFIX


def test_init_needs_a_public_address(broker):
    broker.fails("PUBLIC_IPV4_UNKNOWN", "init", "--prefix", PREFIX)


def test_first_init_needs_a_prefix(broker):
    err = broker.fails("USAGE", "init", "--public-ipv4", X, status=2)
    assert "--prefix" in err


# ---- add, and the router's configuration ------------------------------------------------------------------

def _paste(out, tmp_path):
    """Run a printout as the router's shell would (dash, which OpenWrt's ash behaves like for this), with
    recorders for `uci` and `ifup`, and /etc/sixbroker under tmp_path: (what `uci batch` read, ifup's args)."""
    bindir, etc = tmp_path / "bin", tmp_path / "etc-sixbroker"
    bindir.mkdir()
    for tool in ("uci", "ifup"):
        (bindir / tool).write_text('#!/bin/sh\necho "$*" >>"%s/%s.args"\n[ "$1" != batch ] || cat >>"%s/batch"\n'
                                   % (tmp_path, tool, tmp_path))
        os.chmod(str(bindir / tool), 0o755)
    script = out.replace("/etc/sixbroker", str(etc))
    subprocess.run(["dash", "-e", "-c", script], check=True, env={"PATH": "%s:/usr/bin:/bin" % bindir})
    return (tmp_path / "batch").read_text(), (tmp_path / "ifup.args").read_text().split()


def test_add_allocates_applies_and_prints_a_paste_ready_router_config(broker, tmp_path):
    broker.init()
    body = broker.json("add", "home", "--remote", Y)
    out = body["router"]["shell"]
    assert broker.ok("config", "home") != out           # the key is shown only by `add` (and key --rotate)
    # the whole output pastes into a shell: comments, the broker's certificate, the batch, ifup
    batch, ifup = _paste(out, tmp_path)
    assert ifup == ["home"]
    script, after = heredoc_body(out)
    assert batch == script.replace("/etc/sixbroker", str(tmp_path / "etc-sixbroker")) and after == ["ifup home", ""]
    pem = (tmp_path / "etc-sixbroker" / "home.pem").read_bytes()
    assert hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.decode())).hexdigest() == \
        broker.json("info")["server"]["tls_fingerprint_sha256"]
    pkg = batch_to_network(script)
    sec = pkg.get("home")
    assert sec.type == "interface"
    config = dict(sec.options)
    # the updater's options, as the join line's: the key shown once, the URL, the certificate's file
    updater = {"tunnelid": "home", "updatekey": body["key"], "updateurl": "https://%s:8443/nic/update" % X,
               "updatecert": "/etc/sixbroker/home.pem"}
    assert config == dict({"proto": "sixbroker", "peeraddr": X, "ip6addr": "2001:db8:5b00::3/127",
                           "ip6gw": "2001:db8:5b00::2", "ip6prefix": ["2001:db8:5b00:1::/64"], "mtu": "1480"},
                          **updater)
    # `config` later prints the same section without them, and says why
    later = broker.json("config", "home")["router"]
    assert later["options"] == dict((k, v) for k, v in body["router"]["options"].items() if k not in updater)
    assert "key home --rotate" in later["shell"]
    # the router accepts it: the protocol's own validator, strict (no unknown option)
    o = options.validate(config, strict=True)
    assert str(o.peer) == X and str(o.ip6addr) == "2001:db8:5b00::3/127" and o.mtu == 1480
    # ... and the two ends mirror each other (tests/core/test_plan.py's seed check, on our output)
    home = plan.router(o, "home", o.peer, addr.Address.parse(Y), "sb-home")
    vps = broker.applier.kernel_state["plans"][0]
    assert (home["tunnel"]["local"], home["tunnel"]["remote"]) == (vps["tunnel"]["remote"], vps["tunnel"]["local"])
    assert home["routes"][0]["gateway"] == vps["addresses"][0]["address"]
    assert vps["routes"][0]["gateway"] == home["addresses"][0]["address"]
    assert [(p["prefix"], p["length"]) for p in home["prefixes"]] == \
        [(r["target"], r["length"]) for r in vps["routes"]]


def test_add_hands_the_plan_to_the_appliers(broker):
    broker.init()
    broker.ok("add", "home", "--remote", Y, "--mtu", "1472", "--routed-prefix-length", "60")
    k = broker.applier.kernel_state
    expected = plan.broker("home", "sbs-home", addr.Address.parse(X), addr.Address.parse(Y),
                           addr.Network.parse("2001:db8:5b00::2/127"), [addr.Network.parse("2001:db8:5b00:10::/60")],
                           1472, 64, None)
    assert k["plans"] == [expected]
    assert broker.applier.firewall_state == expected["firewall"]["rules"]


def test_the_plans_kept_on_a_connection_follow_every_change_of_the_database(db_target):
    # service.plans() is kept for the database generation (an apply needs them twice): a change through
    # this connection, through another one, or of the server row gives new plans; nothing changed, the same
    conn = db.connect(db_target)
    other = db.connect(db_target)
    try:
        service.init(conn, prefix="2001:db8:5b00::/48", public_ipv4=X)
        service.add(conn, "home", Y)
        first = service.plans(conn)[1]
        assert service.plans(conn)[1] is first and [p["tunnel"]["remote"] for p in first] == [Y]
        service.update(conn, "home", mtu=1400)
        assert [p["tunnel"]["mtu"] for p in service.plans(conn)[1]] == [1400]
        service.add(other, "away", "198.51.100.77")
        assert [p["tunnel"]["device"] for p in service.plans(conn)[1]] == ["sbs-away", "sbs-home"]
        service.init(other, public_ipv4="192.0.2.200")
        assert set(p["tunnel"]["local"] for p in service.plans(conn)[1]) == {"192.0.2.200"}
        service.remove(other, "away")
        assert [p["tunnel"]["device"] for p in service.plans(conn)[1]] == ["sbs-home"]
    finally:
        other.close()
        conn.close()


def test_json_shapes(broker):
    broker.init()
    body = broker.json("add", "home", "--remote", Y)
    assert sorted(body) == ["applied", "apply", "join", "key", "router", "tunnel"]
    t = body["tunnel"]
    assert sorted(t) == ["created", "device", "local", "mtu", "name", "peeraddr", "pop", "remote", "routed",
                         "router_address", "server_address", "transfer", "transfer_length", "ttl", "updated"]
    assert (t["name"], t["device"], t["remote"], t["local"], t["mtu"], t["ttl"]) == \
        ("home", "sbs-home", Y, X, 1480, 64)
    assert (t["transfer"], t["server_address"], t["router_address"], t["routed"]) == \
        ("2001:db8:5b00::2/127", "2001:db8:5b00::2", "2001:db8:5b00::3", ["2001:db8:5b00:1::/64"])
    r = body["router"]
    assert sorted(r) == ["cert_file", "interface", "options", "package", "shell", "type", "uci_batch"]
    assert (r["interface"], r["package"], r["type"]) == ("home", "network", "interface")
    assert batch_to_network(r["uci_batch"]).get("home").get("ip6prefix") == r["options"]["ip6prefix"]
    assert body["apply"]["tunnels"] == 1 and body["applied"] is True

    # list and show say where the tunnel stands since the last apply
    # and the update service's view (tests/broker/test_update_service.py): no update yet, a key made
    # and its health (tests/broker/test_metrics.py): nothing without real counters, not "dead"
    seen = dict(t, state="applied", last_update=None, update_key=True, traffic=None, health=None)
    assert broker.json("show", "home") == {"tunnel": dict(seen, updates=[])}
    assert broker.json("list") == {"tunnels": [seen]}
    later = broker.json("config", "home")["router"]
    assert sorted(later) == ["interface", "options", "package", "shell", "type", "uci_batch"]
    assert r["cert_file"]["path"] == "/etc/sixbroker/home.pem" and r["cert_file"]["pem"] in r["shell"]
    # `config` without --json prints the same shell text as --json carries
    assert broker.ok("config", "home") == later["shell"]
    info = broker.json("info")["server"]
    assert info["tunnels"] == 1 and info["usage"]["routed_64s_used"] == 1
    applied = broker.json("apply")
    assert applied["applied"] is True and applied["apply"]["tunnels"] == 1


def test_text_list_and_show(broker):
    broker.init()
    assert broker.ok("list").split() == ["NAME", "DEVICE", "REMOTE", "TRANSFER", "ROUTED", "MTU", "STATE", "ALIVE",
                                         "IDLE", "UPDATE"]
    broker.ok("add", "b", "--remote", Y)
    broker.ok("add", "a", "--remote", Y2)
    rows = broker.ok("list").strip().split("\n")[1:]
    # the fake applier has no counters: alive and idle say nothing
    assert [r.split()[:3] + r.split()[-4:-1] for r in rows] == [["a", "sbs-a", Y2, "applied", "-", "-"],
                                                              ["b", "sbs-b", Y, "applied", "-", "-"]]
    assert "2001:db8:5b00:2::/64" in broker.ok("show", "a") and "#   state applied" in broker.ok("show", "a")


def test_lowest_free_first_and_freed_on_remove(broker):
    broker.init()
    got = [broker.json("add", "t%d" % i, "--remote", "198.51.100.%d" % (10 + i))["tunnel"] for i in range(4)]
    assert [t["transfer"] for t in got] == ["2001:db8:5b00::%x/127" % (2 * i) for i in range(1, 5)]
    assert [t["routed"] for t in got] == [["2001:db8:5b00:%x::/64" % i] for i in range(1, 5)]
    removed = broker.json("remove", "t1")["removed"]
    assert removed["routed"] == ["2001:db8:5b00:2::/64"]
    assert broker.applier.devices() == ["sbs-t0", "sbs-t2", "sbs-t3"]
    # the freed /127 and /64 are the lowest free again; a /60 skips past the /64s in its way
    again = broker.json("add", "n1", "--remote", "198.51.100.99")["tunnel"]
    assert (again["transfer"], again["routed"]) == ("2001:db8:5b00::4/127", ["2001:db8:5b00:2::/64"])
    big = broker.json("add", "big", "--remote", "198.51.100.98", "--routed-prefix-length", "/60")["tunnel"]
    assert big["routed"] == ["2001:db8:5b00:10::/60"]
    nxt = broker.json("add", "n2", "--remote", "198.51.100.97")["tunnel"]
    assert nxt["routed"] == ["2001:db8:5b00:5::/64"]


def test_set_changes_the_remote_and_mtu(broker):
    broker.init()
    broker.ok("add", "home", "--remote", Y)
    broker.ok("add", "away", "--remote", Y2)
    t = broker.json("set", "home", "--remote", Y3, "--mtu", "1400")["tunnel"]
    assert (t["remote"], t["mtu"], t["routed"]) == (Y3, 1400, ["2001:db8:5b00:1::/64"])
    p = [p for p in broker.applier.kernel_state["plans"] if p["tunnel"]["device"] == "sbs-home"][0]
    assert (p["tunnel"]["remote"], p["tunnel"]["mtu"]) == (Y3, 1400)
    assert {"src_ip": Y3} .items() <= [r for r in p["firewall"]["rules"] if r["chain"] == "input"][0].items()
    # the old remote is free again
    broker.ok("add", "third", "--remote", Y)
    broker.fails("REMOTE_IN_USE", "set", "home", "--remote", Y2)
    broker.fails("USAGE", "set", "home", status=2)
    broker.fails("TUNNEL_NOT_FOUND", "set", "nope", "--remote", "198.51.100.50")


# ---- refusals ---------------------------------------------------------------------------------------------

def test_nothing_works_before_init_and_nothing_is_created(broker):
    for args in (["add", "home", "--remote", Y], ["list"], ["show", "x"], ["remove", "x"], ["apply"],
                 ["config", "x"], ["set", "x", "--mtu", "1400"], ["info"]):
        broker.fails("BROKER_NOT_INITIALISED", *args)
    assert not os.path.exists(os.path.dirname(broker.path))
    # a database without a server row (init never finished) says the same
    db.connect(broker.path).close()
    broker.fails("BROKER_NOT_INITIALISED", "add", "home", "--remote", Y)
    broker.fails("BROKER_NOT_INITIALISED", "apply")
    broker.fails("BROKER_NOT_INITIALISED", "list")


@pytest.mark.parametrize("name", ["", "a-b", "1abc", "abcdefghijkl", "a.b", "a b", "héllo", "_a", "a/b",
                                  "lan;reboot"])
def test_bad_names(broker, name):
    broker.init()
    broker.fails("INVALID_NAME", "add", name, "--remote", Y)


def test_longest_name_fits_the_device(broker):
    broker.init()
    t = broker.json("add", "abcdefghijk", "--remote", Y)["tunnel"]
    assert t["device"] == "sbs-abcdefghijk" and len(t["device"]) == 15


@pytest.mark.parametrize("remote", ["300.1.1.1", "198.51.100", "224.0.0.1", "255.255.255.255", "0.0.0.0",
                                    "127.0.0.1", "169.254.1.1", "2001:db8::1", "host.example", "",
                                    "198.51.100.020", " 198.51.100.20"])
def test_bad_remotes(broker, remote):
    broker.init()
    broker.fails("INVALID_REMOTE", "add", "home", "--remote", remote)


def test_refusals_leave_the_database_alone(broker):
    broker.init("--local-ipv4", "192.0.2.10")
    broker.ok("add", "home", "--remote", Y)
    broker.fails("TUNNEL_EXISTS", "add", "home", "--remote", Y2)
    broker.fails("REMOTE_IN_USE", "add", "other", "--remote", Y)
    broker.fails("REMOTE_IS_SERVER", "add", "other", "--remote", X)
    broker.fails("REMOTE_IS_SERVER", "add", "other", "--remote", "192.0.2.10")
    for bad in ("48", "65", "abc", "-64", "64.0", ""):
        broker.fails("INVALID_PREFIX_LENGTH", "add", "other", "--remote", Y2, "--routed-prefix-length", bad)
    for bad in ("abc", "1480.5", "-1", "0x5c8"):
        broker.fails("INVALID_MTU", "add", "other", "--remote", Y2, "--mtu", bad)
    for bad in ("1279", "65516"):
        broker.fails("MTU_OUT_OF_RANGE", "add", "other", "--remote", Y2, "--mtu", bad)
    for cmd in (["show", "nope"], ["remove", "nope"], ["config", "nope"]):
        broker.fails("TUNNEL_NOT_FOUND", *cmd)


def test_pool_exhausted(broker):
    # a /62 broker prefix: the transfer /64 and three /64s to route
    broker.ok("init", "--prefix", "2001:db8:5b00::/62", "--public-ipv4", X)
    broker.fails("POOL_EXHAUSTED", "add", "big", "--remote", Y, "--routed-prefix-length", "62")
    broker.ok("add", "wide", "--remote", Y, "--routed-prefix-length", "63")
    broker.ok("add", "a", "--remote", Y2)
    broker.fails("POOL_EXHAUSTED", "add", "b", "--remote", Y3)
    broker.ok("remove", "a")
    assert broker.json("add", "b", "--remote", Y3)["tunnel"]["routed"] == ["2001:db8:5b00:1::/64"]


def test_transfer_pool_exhausted(broker):
    # a /124 transfer prefix: 8 /127s, the first never used
    broker.init("--transfer-prefix", "2001:db8:ffff::/124")
    for i in range(7):
        broker.ok("add", "t%d" % i, "--remote", "198.51.100.%d" % (1 + i))
    err = broker.fails("POOL_EXHAUSTED", "add", "t7", "--remote", "198.51.100.8")
    assert "transfer" in err


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["add"], ["key", "x"], ["show"], ["list", "extra"],
                                  ["init", "--uplink-ra", "maybe"]])
def test_usage_errors_exit_2(broker, args):
    broker.init()
    rc, out, err = broker.run(*args)
    assert rc == 2 and "error USAGE:" in err and out == ""


def test_help_exits_0(broker):
    rc, out, err = broker.run("--help")
    assert rc == 0 and "apply" in out and "init" in out
    rc, out, err = broker.run("add", "--help")
    assert rc == 0 and "--routed-prefix-length" in out


def test_the_top_level_command_dispatches_here(broker):
    from sixbroker import cli as top
    broker.init()
    broker.capsys.readouterr()
    assert top.main(["server", "list", "--db", broker.path]) == 0
    assert broker.capsys.readouterr().out.startswith("NAME")


def test_env_names_the_database(broker, monkeypatch):
    monkeypatch.setenv("SIXBROKER_DB", broker.path)
    broker.init()
    broker.capsys.readouterr()
    assert cli.main(["list", "--json"]) == 0
    assert json.loads(broker.capsys.readouterr().out) == {"tunnels": []}


def test_a_damaged_or_newer_database_is_an_error_not_a_traceback(file_broker):
    file_broker.init()
    c = sqlite3.connect(file_broker.path)
    c.execute("PRAGMA user_version = 99")
    c.commit()
    c.close()
    file_broker.fails("DB_TOO_NEW", "list")
    with open(file_broker.path, "wb") as f:
        f.write(b"this is not a database" * 100)
    file_broker.fails("DB_ERROR", "list")
    file_broker.fails("DB_ERROR", "add", "home", "--remote", Y)


def test_a_newer_or_unreachable_postgresql_database_is_an_error_not_a_traceback(pg_server, capsys, monkeypatch,
                                                                                tmp_path):
    monkeypatch.setenv("SIXBROKER_STATE_DIR", str(tmp_path))
    broker = _broker(pg_server.create_db(), capsys, monkeypatch)
    broker.init()
    broker.ok("add", "home", "--remote", Y)
    import psycopg
    with psycopg.connect(broker.path, autocommit=True) as c:
        c.execute("UPDATE schema_version SET version = 99")
    broker.fails("DB_TOO_NEW", "list")
    broker.fails("DB_TOO_NEW", "add", "other", "--remote", Y2)
    with psycopg.connect(broker.path, autocommit=True) as c:
        c.execute("UPDATE schema_version SET version = %s", (db.SCHEMA_VERSION,))
    # the server gone: every command says so by its code, and the applier is never called
    calls = broker.applier.calls
    pg_server.stop()
    try:
        for args in (["list"], ["add", "other", "--remote", Y2], ["apply"], ["remove", "home"]):
            rc, out, err = broker.run(*args)
            assert rc == 1 and "error DB_UNAVAILABLE:" in err, (args, err)
        assert broker.applier.calls == calls
    finally:
        pg_server.start()
    assert [t["name"] for t in broker.json("list")["tunnels"]] == ["home"]


def test_names_are_listed_in_the_same_order_whatever_the_postgresql_databases_locale(pg_server, capsys,
                                                                                    monkeypatch, tmp_path):
    """An operator's database takes the locale it was created with; PostgreSQL's ORDER BY follows it (ICU
    en-US: "a_b" < "ab" < "B"), SQLite's is by code point.  `list` and the PoPs read the same on both."""
    monkeypatch.setenv("SIXBROKER_STATE_DIR", str(tmp_path))
    url = pg_server.create_db(options="LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
    try:
        broker = _broker(url, capsys, monkeypatch)
        broker.init()
        names = ["alpha", "B", "a_b", "Zed", "ab"]
        for i, name in enumerate(names):
            broker.ok("add", name, "--remote", "198.51.100.%d" % (30 + i))
        assert [t["name"] for t in broker.json("list")["tunnels"]] == sorted(names) == ["B", "Zed", "a_b", "ab", "alpha"]
        assert [ln.split()[0] for ln in broker.ok("list").strip().split("\n")[1:]] == sorted(names)
        broker.ok("init", "--pop", "Pb", "--prefix", "2001:db8:6b00::/56", "--public-ipv4", "203.0.113.11")
        broker.ok("init", "--pop", "p_a", "--prefix", "2001:db8:7b00::/56", "--public-ipv4", "203.0.113.12")
        conn = db.connect(url, create=False)
        try:
            assert db.pops(conn) == ["Pb", "main", "p_a"]
        finally:
            conn.close()
    finally:
        pg_server.drop_db(url)


# ---- applying ---------------------------------------------------------------------------------------------

def test_a_failed_apply_keeps_the_change_and_apply_repairs_it(broker):
    broker.init()
    broker.applier.fail = OSError(1, "Operation not permitted")
    rc, out, err = broker.run("add", "home", "--remote", Y)
    assert rc == 1 and "error APPLY_FAILED:" in err and "Operation not permitted" in err
    # the tunnel is saved and its configuration was printed: it can be pasted already
    assert "ifup home" in out
    assert [t["name"] for t in broker.json("list")["tunnels"]] == ["home"]
    rc, out, err = broker.run("apply", "--json")
    body = json.loads(out)
    assert rc == 1 and body["applied"] is False and body["error"]["code"] == "APPLY_FAILED"
    # an applier's own code comes through as the cause
    from sixbroker.core.errors import SixbrokerError
    broker.applier.fail = SixbrokerError("SIT_PAIR_IN_USE", "sbs-home")
    rc, out, err = broker.run("apply", "--json")
    assert rc == 1 and json.loads(out)["error"]["cause"] == "SIT_PAIR_IN_USE"
    broker.applier.fail = None
    assert "1 tunnel" in broker.ok("apply")
    assert broker.applier.devices() == ["sbs-home"]


def test_apply_from_the_database_alone(broker):
    broker.init()
    broker.ok("add", "home", "--remote", Y)
    broker.ok("add", "away", "--remote", Y2)
    broker.applier.kernel_state = None      # a reboot: the kernel forgot everything
    broker.ok("apply")
    assert broker.applier.devices() == ["sbs-away", "sbs-home"]


# ---- crashes and concurrency, in separate processes ---------------------------------------------------

RUNNER = r'''
import json, os, sys
sys.path.insert(0, os.path.join(sys.argv[1], "src"))
from sixbroker.broker import cli, reconcile, hostfacts

STATE = sys.argv[2]


class FileApplier:
    """The kernel and the firewall as files: what survives this process is what was applied."""

    def _write(self, key, value):
        try:
            with open(STATE) as f:
                data = json.load(f)
        except OSError:
            data = {}
        data[key] = value
        with open(STATE + ".tmp", "w") as f:
            json.dump(data, f)
        os.replace(STATE + ".tmp", STATE)

    def kernel(self, state):
        self._write("kernel", sorted(p["tunnel"]["device"] for p in state["plans"]))
        return {}

    def firewall(self, state):
        self._write("firewall", sorted(r["src_ip"] for p in state["plans"] for r in p["firewall"]["rules"]
                                       if r["chain"] == "input"))
        return {}


reconcile.APPLIER = FileApplier()
hostfacts.detect = lambda uplink, netns: {}
hostfacts.ipv4_on_host = lambda address, netns: True
sys.exit(cli.main(sys.argv[3:]))
'''


@pytest.fixture
def proc(tmp_path):
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    state = str(tmp_path / "kernel.json")
    path = str(tmp_path / "broker.db")

    def run(*args, crash=None):
        env = dict(os.environ)
        env.pop(reconcile.CRASH_ENV, None)
        if crash:
            env[reconcile.CRASH_ENV] = crash
        return subprocess.run([sys.executable, str(runner), REPO, state] + list(args) + ["--db", path],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True, timeout=60)

    def kernel():
        with open(state) as f:
            return json.load(f)

    run.kernel = kernel
    run.path = path
    return run


def test_a_crash_after_the_commit_is_repaired_by_apply(proc):
    assert proc("init", "--prefix", PREFIX, "--public-ipv4", X).returncode == 0
    assert proc("add", "home", "--remote", Y).returncode == 0
    r = proc("add", "away", "--remote", Y2, crash="commit")
    assert r.returncode == -9 and r.stdout == ""
    # committed, not applied
    assert json.loads(proc("list", "--json").stdout)["tunnels"][1]["name"] == "home"
    assert proc.kernel() == {"kernel": ["sbs-home"], "firewall": [Y]}
    assert proc("apply").returncode == 0
    assert proc.kernel() == {"kernel": ["sbs-away", "sbs-home"], "firewall": [Y, Y2]}

    r = proc("remove", "home", crash="commit")
    assert r.returncode == -9
    assert proc.kernel()["kernel"] == ["sbs-away", "sbs-home"]
    assert proc("apply").returncode == 0
    assert proc.kernel() == {"kernel": ["sbs-away"], "firewall": [Y2]}


def test_a_crash_between_kernel_and_firewall_is_repaired_by_apply(proc):
    assert proc("init", "--prefix", PREFIX, "--public-ipv4", X).returncode == 0
    r = proc("add", "home", "--remote", Y, crash="kernel")
    assert r.returncode == -9
    assert proc.kernel() == {"kernel": ["sbs-home"], "firewall": []}
    assert proc("apply").returncode == 0
    assert proc.kernel() == {"kernel": ["sbs-home"], "firewall": [Y]}


def test_concurrent_adds_never_share_a_prefix(proc):
    assert proc("init", "--prefix", PREFIX, "--public-ipv4", X).returncode == 0
    results = [None] * 8

    def one(i):
        results[i] = proc("add", "t%d" % i, "--remote", "198.51.100.%d" % (100 + i), "--json")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in results] == [0] * 8, [r.stderr for r in results]
    tunnels = [json.loads(r.stdout)["tunnel"] for r in results]
    assert sorted(t["routed"][0] for t in tunnels) == sorted("2001:db8:5b00:%x::/64" % i for i in range(1, 9))
    assert len({t["transfer"] for t in tunnels}) == 8
    # the last apply saw every tunnel
    assert proc.kernel()["kernel"] == sorted("sbs-t%d" % i for i in range(8))


# ---- the database guards itself ---------------------------------------------------------------------------

def test_the_database_refuses_overlapping_blocks_whatever_the_caller(db_target):
    conn = db.connect(db_target)
    service.init(conn, prefix=PREFIX, public_ipv4=X)
    with db.transaction(conn):
        alloc.take_block(conn, 16, 60, None, "reserved")
    for start, length in ((16, 64), (31, 64), (0, 56), (15, 62)):
        with pytest.raises(db.integrity_errors(conn)):
            with db.transaction(conn):
                alloc.take_block(conn, start, length, None, "reserved")
    with db.transaction(conn):
        alloc.take_block(conn, 32, 64, None, "reserved")


def test_codes_used_here_are_documented():
    src = ""
    for name in ("cli", "service", "alloc", "db", "pg", "reconcile", "hostfacts"):
        with open(os.path.join(REPO, "src", "sixbroker", "broker", name + ".py")) as f:
            src += f.read()
    import re
    used = set(re.findall(r'SixbrokerError\(\s*"([A-Z_]+)"', src))
    assert used and used <= set(CODES), used - set(CODES)


def test_the_systemd_unit_applies_at_boot_after_the_network_and_nftables():
    import configparser
    import shutil
    path = os.path.join(REPO, "files", "broker", "sixbroker.service")
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    with open(path) as f:
        unit.read_file(f)
    assert unit["Service"]["Type"] == "oneshot"
    assert unit["Service"]["ExecStart"].split()[1:4] == ["sixbroker", "server", "apply"]
    assert "network-online.target" in unit["Unit"]["Wants"]
    with open(path) as f:
        after = [ln.split("=", 1)[1].strip() for ln in f if ln.startswith("After=")]
    assert "network-online.target" in after and "nftables.service" in after
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the unit's syntax is not checked")
    p = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True)
    problems = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip() and "sixbroker.service" in ln]
    assert problems == [], problems


# ---- what init reads from the host (a network namespace on the host's own kernel) -----------------------

@pytest.fixture
def netns():
    name = "sbtest-hf-%d" % os.getpid()
    if os.geteuid() != 0 or subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode:
        pytest.skip("needs root and network namespaces")
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _ip(ns, *args):
    subprocess.run(["ip", "-n", ns] + list(args), check=True, capture_output=True)


def test_init_reads_the_public_address_and_the_uplinks_ra_state(netns):
    _ip(netns, "link", "add", "up0", "type", "veth", "peer", "name", "up1")
    _ip(netns, "link", "set", "up0", "up")
    # a fresh namespace: accept_ra 1, forwarding 0: the uplink takes RAs until forwarding goes on
    assert hostfacts.uplink_takes_ra("up0", netns) is True
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv6.conf.up0.forwarding=1"], check=True)
    assert hostfacts.uplink_takes_ra("up0", netns) is False
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv6.conf.up0.accept_ra=2"], check=True)
    assert hostfacts.uplink_takes_ra("up0", netns) is True
    assert hostfacts.uplink_takes_ra("nosuch0", netns) is None

    # only a private address: behind 1:1 NAT, the error says what to give
    _ip(netns, "addr", "add", "10.1.2.3/24", "dev", "up0")
    _ip(netns, "route", "add", "default", "via", "10.1.2.1")
    facts = hostfacts.detect(None, netns)
    e = facts["public_ipv4_error"]
    assert e.code == "PUBLIC_IPV4_UNKNOWN" and "--local-ipv4 10.1.2.3" in e.text and "public_ipv4" not in facts
    # a public one on the uplink is the answer, by the default route or by name
    _ip(netns, "addr", "add", X + "/24", "dev", "up0")
    assert hostfacts.detect(None, netns)["public_ipv4"] == X
    assert hostfacts.detect("up0", netns)["public_ipv4"] == X
    assert hostfacts.public_ipv4("nosuch0", netns) is None


def test_init_with_nat_says_what_to_give(broker, monkeypatch):
    from sixbroker.core.errors import SixbrokerError
    monkeypatch.setattr(hostfacts, "detect", lambda uplink, netns: {
        "public_ipv4_error": SixbrokerError("PUBLIC_IPV4_UNKNOWN", "the uplink has only 10.1.2.3"),
        "uplink_ra": False})
    err = broker.fails("PUBLIC_IPV4_UNKNOWN", "init", "--prefix", PREFIX, "--uplink", "eth0")
    assert "10.1.2.3" in err
    # given the addresses, the same host is fine
    s = broker.json("init", "--prefix", PREFIX, "--uplink", "eth0", "--public-ipv4", X, "--local-ipv4",
                    "10.1.2.3")["server"]
    assert (s["public_ipv4"], s["local_ipv4"]) == (X, "10.1.2.3")
    assert broker.applier.kernel_state["sysctls"] == [["net.ipv6.conf.all.forwarding", "1"]]
    broker.ok("add", "home", "--remote", Y)
    t = broker.applier.kernel_state["plans"][0]["tunnel"]
    assert (t["local"], t["remote"]) == ("10.1.2.3", Y)
    assert broker.json("config", "home")["router"]["options"]["peeraddr"] == X


def test_the_neighbour_table_grows_with_the_tunnels():
    server = {"uplink": None, "uplink_ra": 0}
    assert service.base_sysctls(server, service.NEIGH_FROM - 1) == [["net.ipv6.conf.all.forwarding", "1"]]
    for n, cap in ((service.NEIGH_FROM, 4096), (1000, 4096), (1536, 4096), (1537, 8192), (5000, 16384)):
        got = dict(service.base_sysctls(server, n)[1:])
        assert got == {"net.ipv6.neigh.default.gc_thresh1": str(cap // 4),
                       "net.ipv6.neigh.default.gc_thresh2": str(cap // 2),
                       "net.ipv6.neigh.default.gc_thresh3": str(cap)}
        # never below the kernel's defaults (128 / 512 / 1024), always room for twice the tunnels
        assert cap // 4 >= 128 and cap >= 2 * n + 1024
    # in a namespace the thresholds do not exist (the table is the host's): left alone
    assert service.base_sysctls({"uplink": None, "uplink_ra": 0, "netns": "vps"}, 5000) == \
        [["net.ipv6.conf.all.forwarding", "1"]]


# ---- issue 12: addresses that must be public, ASCII numbers, reads that never write ------------------------

NOT_PUBLIC = ["10.0.0.1", "192.168.1.1", "172.16.0.1", "100.64.0.1", "100.127.255.254", "0.1.2.3",
              "198.18.0.1", "192.0.0.1", "192.88.99.1"]


@pytest.mark.parametrize("remote", NOT_PUBLIC)
def test_a_private_or_cgnat_remote_is_refused_with_words(broker, remote):
    broker.init()
    err = broker.fails("REMOTE_NOT_PUBLIC", "add", "home", "--remote", remote)
    assert remote in err and "NAT's public address" in err
    broker.ok("add", "home", "--remote", Y)
    broker.fails("REMOTE_NOT_PUBLIC", "set", "home", "--remote", remote)
    # a router on a private network with the server (a VPN, a LAN) is said so explicitly
    assert broker.json("set", "home", "--remote", remote, "--allow-private")["tunnel"]["remote"] == remote
    assert broker.json("add", "lab", "--remote", "10.9.9.9", "--allow-private")["tunnel"]["remote"] == "10.9.9.9"


@pytest.mark.parametrize("public", NOT_PUBLIC)
def test_a_private_or_cgnat_public_address_is_refused_with_words(broker, public):
    err = broker.fails("PUBLIC_IPV4_NOT_PUBLIC", "init", "--prefix", PREFIX, "--public-ipv4", public)
    assert public in err and "--local-ipv4" in err
    assert not os.path.exists(os.path.dirname(broker.path))
    broker.init()
    broker.fails("PUBLIC_IPV4_NOT_PUBLIC", "init", "--public-ipv4", public)


def test_documentation_addresses_count_as_public_and_a_nat_local_may_be_private(broker):
    """The examples and tests use 192.0.2.0/24, 198.51.100.0/24 and 203.0.113.0/24 as public addresses."""
    for public in ("192.0.2.10", "198.51.100.10", "203.0.113.10", "8.8.4.4"):
        assert broker.json("init", "--prefix", PREFIX, "--public-ipv4", public)["server"]["public_ipv4"] == public
    for i, remote in enumerate(("192.0.2.20", "198.51.100.20", "203.0.113.20", "1.1.1.1")):
        broker.ok("add", "t%d" % i, "--remote", remote)
    # behind 1:1 NAT: the public one is the NAT's, the local one is this host's private address
    s = broker.json("init", "--public-ipv4", X, "--local-ipv4", "10.1.2.3")["server"]
    assert (s["public_ipv4"], s["local_ipv4"]) == (X, "10.1.2.3")


@pytest.mark.parametrize("bad", ["\u0661\u0664\u0660\u0660", "\uff11\uff14\uff10\uff10", "\u0967\u096a\u0966\u0966",
                                 "14\u00b900", "1400\n", " 1400", "1_400", "+1400"])
def test_mtu_takes_ascii_digits_only(broker, bad):
    broker.init()
    broker.fails("INVALID_MTU", "add", "home", "--remote", Y, "--mtu", bad)
    broker.ok("add", "home", "--remote", Y)
    broker.fails("INVALID_MTU", "set", "home", "--mtu", bad)


@pytest.mark.parametrize("bad", ["\u0666\u0664", "\uff16\uff14", "/\u0666\u0664", "\u096c\u096a", "6\u2074"])
def test_routed_prefix_length_takes_ascii_digits_only(broker, bad):
    broker.init()
    broker.fails("INVALID_PREFIX_LENGTH", "add", "home", "--remote", Y, "--routed-prefix-length", bad)


def _file_state(path):
    """Bytes and modification time of the database and whatever lies beside it."""
    d = os.path.dirname(path)
    out = {}
    for name in sorted(os.listdir(d)):
        p = os.path.join(d, name)
        with open(p, "rb") as f:
            out[name] = (f.read(), os.stat(p).st_mtime_ns)
    return out


READS = (["list"], ["show", "home"], ["config", "home"], ["info"])


def test_reads_of_an_empty_file_never_write(file_broker):
    os.makedirs(os.path.dirname(file_broker.path))
    open(file_broker.path, "wb").close()
    before = _file_state(file_broker.path)
    for args in READS + (["apply"], ["add", "home", "--remote", Y], ["remove", "home"]):
        file_broker.fails("BROKER_NOT_INITIALISED", *args)
    assert os.path.getsize(file_broker.path) == 0
    # the lock file is the writers' (add, apply); the empty database itself was not turned into one
    assert {k: v for k, v in _file_state(file_broker.path).items() if not k.endswith(".lock")} == before


def _downgrade(path, version):
    """The database as an older sixbroker wrote it (schema `version`), its rows kept."""
    c = sqlite3.connect(path, isolation_level=None)
    if version < 11:
        for (name,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'pop_usage%'"
                                 ).fetchall():
            c.execute("DROP TRIGGER " + name)
        c.execute("DROP TABLE IF EXISTS pop_usage")
    if version < 10:
        c.execute("DROP TABLE IF EXISTS apply_runs")
    if version < 9:
        c.execute("DROP TABLE IF EXISTS pop_certs")
    if version < 8 and "tunnel_mode" in [r[1] for r in c.execute("PRAGMA table_info(server)")]:
        c.execute("ALTER TABLE server DROP COLUMN tunnel_mode")
    if version < 6:
        c.execute("DROP TABLE IF EXISTS updates")
        c.execute("DROP TABLE IF EXISTS update_keys")
        if "update_url" in [r[1] for r in c.execute("PRAGMA table_info(server)")]:
            c.execute("ALTER TABLE server DROP COLUMN update_url")
    if version < 5:
        c.execute("DROP TABLE IF EXISTS faults")
    columns = [r[1] for r in c.execute("PRAGMA table_info(server)")]
    if version < 4 and "ipv4_detected" in columns:
        c.execute("ALTER TABLE server DROP COLUMN ipv4_detected")
    if version < 3 and "ndp_proxy" in columns:
        c.execute("ALTER TABLE server DROP COLUMN ndp_proxy")
    if version < 2:
        for (name,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name != "
                                 "'blocks_no_overlap'").fetchall():
            c.execute("DROP TRIGGER " + name)
        c.execute("DROP TABLE generation")
        c.execute("DROP TABLE applied")
    c.execute("PRAGMA user_version = %d" % version)
    c.execute("VACUUM")
    c.close()


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
def test_reads_of_an_older_database_never_migrate_it(file_broker, version):
    file_broker.init()
    file_broker.ok("add", "home", "--remote", Y)
    want = {args[0]: file_broker.ok(*args) for args in READS}
    _downgrade(file_broker.path, version)
    before = _file_state(file_broker.path)
    if version < 2:
        # schema 1 kept no record of what was applied: each tunnel's state reads "pending"
        want = {k: re.sub(r"  applied(  -  +-  +-)\n", r"  pending\1\n", v).replace("state applied\n", "state pending\n")
                for k, v in want.items()}
    for args in READS:
        assert file_broker.ok(*args) == want[args[0]], args
    assert _file_state(file_broker.path) == before
    c = sqlite3.connect(file_broker.path)
    assert c.execute("PRAGMA user_version").fetchone()[0] == version
    c.close()
    # a writer migrates, keeping the rows; an IPv4 address from before counts as given (pinned)
    file_broker.ok("apply")
    assert file_broker.json("info")["server"]["ipv4_followed"] is False
    assert [t["name"] for t in file_broker.json("list")["tunnels"]] == ["home"]


def test_the_database_is_private_and_so_is_a_directory_made_for_it(file_broker, tmp_path):
    old = os.umask(0o022)
    try:
        file_broker.init()
        d = os.path.dirname(file_broker.path)
        assert os.stat(d).st_mode & 0o777 == 0o700
        assert os.stat(file_broker.path).st_mode & 0o777 == 0o600
        assert os.stat(file_broker.path + ".lock").st_mode & 0o777 == 0o600
        # a directory that was there (the package's, the admin's) keeps its mode
        other = tmp_path / "shared"
        other.mkdir(mode=0o755)
        os.chmod(str(other), 0o755)
        Broker(str(other / "b.db"), file_broker.capsys, file_broker.applier).init()
        assert os.stat(str(other)).st_mode & 0o777 == 0o755
        assert os.stat(str(other / "b.db")).st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


@pytest.mark.parametrize("args,code", [
    (["--prefix", PREFIX, "--public-ipv4", "10.0.0.1"], "PUBLIC_IPV4_NOT_PUBLIC"),
    (["--prefix", "2001:db8::/8", "--public-ipv4", X], "INVALID_PREFIX"),
    (["--public-ipv4", X], "USAGE"),
    (["--prefix", PREFIX], "PUBLIC_IPV4_UNKNOWN"),
])
def test_a_refused_first_init_leaves_nothing_behind(broker, tmp_path, args, code):
    broker.fails(code, "init", *args, status=2 if code == "USAGE" else 1)
    assert not os.path.exists(os.path.dirname(broker.path))
    # in a directory that was there already: no database, no lock file, the directory stays
    other = tmp_path / "there"
    other.mkdir()
    b = Broker(str(other / "b.db"), broker.capsys, broker.applier)
    b.fails(code, "init", *args, status=2 if code == "USAGE" else 1)
    assert os.listdir(str(other)) == []


# ---- apply on a read-only file system (a read-only bind mount in a mount namespace) ----------------------

RECORDING = r'''
class RecordingApplier(FileApplier):
    """FileApplier with the record's proofs (reconcile.KernelAndNft's fingerprint and token methods) read
    back from the state file, so `apply` takes its nothing-to-do path when the file is as it left it."""

    def _read(self):
        try:
            with open(STATE) as f:
                return json.load(f)
        except OSError:
            return {}

    def kernel(self, state):
        FileApplier.kernel(self, state)
        self.fingerprint = self.kernel_fingerprint(state["netns"])
        return {"changes": [], "foreign_tunnels": []}

    def kernel_fingerprint(self, netns):
        return sum(ord(c) << (i % 64) for i, c in enumerate(json.dumps(self._read().get("kernel"))))

    def nft_token(self, netns, known=None):
        return json.dumps(self._read().get("firewall"))

    def nft_token_same(self, a, b):
        return a == b

    def sysctls(self, state):
        return []


if os.environ.get("SB_RECORDING"):
    reconcile.APPLIER = RecordingApplier()
'''


@pytest.fixture
def ro_proc(tmp_path):
    """proc's runner with the recording applier, the database in d/, which ro_proc.ro(...) runs with d/
    mounted read-only (`unshare -m`: the mount exists for that command only)."""
    if os.geteuid() != 0 or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("needs root and mount namespaces (unshare -m)")
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER.replace("\nreconcile.APPLIER = FileApplier()\n",
                                     "\nreconcile.APPLIER = FileApplier()\n" + RECORDING))
    state = str(tmp_path / "kernel.json")
    d = tmp_path / "d"
    d.mkdir()
    path = str(d / "broker.db")
    env = dict(os.environ, SB_RECORDING="1")
    env.pop(reconcile.CRASH_ENV, None)

    def argv(args):
        return [sys.executable, str(runner), REPO, state] + list(args) + ["--db", path]

    def rw(*args):
        return subprocess.run(argv(args), capture_output=True, text=True, env=env, timeout=60)

    def ro(*args):
        script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && shift && exec "$@"'
        return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(d)] + argv(args),
                              capture_output=True, text=True, env=env, timeout=60)

    rw.ro = ro
    rw.path = path
    rw.dir = str(d)
    return rw


def test_apply_with_nothing_to_do_runs_on_a_read_only_file_system(ro_proc):
    assert ro_proc("init", "--prefix", PREFIX, "--public-ipv4", X).returncode == 0
    assert ro_proc("add", "home", "--remote", Y).returncode == 0
    r = ro_proc("apply")
    assert r.returncode == 0, r.stderr                  # the record of an apply in line with this database
    before = _file_state(ro_proc.path)
    r = ro_proc.ro("apply", "--json")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    body = json.loads(r.stdout)
    assert body["applied"] is True and body["apply"].get("unchanged") is True and "notices" not in body
    r = ro_proc.ro("list")
    assert r.returncode == 0 and "home" in r.stdout, r.stderr
    assert _file_state(ro_proc.path) == before
    # proof the mount was read-only: a change is refused, saying why
    r = ro_proc.ro("add", "away", "--remote", Y2)
    assert r.returncode == 1 and "error DB_READ_ONLY:" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert _file_state(ro_proc.path) == before


def test_apply_that_must_repair_on_a_read_only_file_system_says_it_cannot_record(ro_proc):
    assert ro_proc("init", "--prefix", PREFIX, "--public-ipv4", X).returncode == 0
    assert ro_proc("add", "home", "--remote", Y).returncode == 0
    os.unlink(os.path.join(os.path.dirname(ro_proc.dir), "kernel.json"))      # a reboot: the kernel forgot
    # and the record is of no use (as after an upgrade): this apply would write a new one
    conn = db.connect(ro_proc.path, create=False)
    db.forget_applied(conn)
    conn.close()
    before = _file_state(ro_proc.path)
    r = ro_proc.ro("apply", "--json")
    assert r.returncode == 0, r.stdout
    body = json.loads(r.stdout)
    assert body["applied"] is True and "unchanged" not in body["apply"]
    assert [n["code"] for n in body["notices"]] == ["DB_READ_ONLY"]
    assert "compares everything again" in body["notices"][0]["message"]
    assert "notice DB_READ_ONLY:" in r.stderr
    assert _file_state(ro_proc.path) == before
    # the kernel (the state file, outside the read-only mount) was repaired all the same
    with open(os.path.join(os.path.dirname(ro_proc.dir), "kernel.json")) as f:
        assert json.load(f)["kernel"] == ["sbs-home"]
    # with no lock file (a database copied onto read-only media), apply runs unlocked
    os.unlink(ro_proc.path + ".lock")
    assert ro_proc.ro("apply").returncode == 0


# ---- issue 12: the tunnels' local IPv4 address followed or refused; the detected uplink's RAs ---------------

def _host(monkeypatch, addresses, found=None):
    """The host as apply sees it: `addresses` on it; detect() finds `found` as its public address."""
    asked = []

    def on_host(address, netns):
        asked.append(address)
        return address in addresses

    monkeypatch.setattr(hostfacts, "ipv4_on_host", on_host)
    monkeypatch.setattr(hostfacts, "detect", lambda uplink, netns: {"public_ipv4": found} if found else {})
    return asked


def test_apply_follows_an_ipv4_address_it_detected(broker, monkeypatch):
    _host(monkeypatch, [X], X)
    s = broker.json("init", "--prefix", PREFIX)["server"]
    assert s["public_ipv4"] == X and s["ipv4_followed"] is True
    broker.ok("add", "home", "--remote", Y)
    broker.ok("add", "away", "--remote", Y2)
    asked = _host(monkeypatch, ["203.0.113.50"], "203.0.113.50")
    rc, out, err = broker.run("apply")
    assert rc == 0 and asked == [X]
    assert "notice LOCAL_IPV4_CHANGED:" in err and "from %s to 203.0.113.50" % X in err
    assert "peeraddr" in err and "host name" in err
    # every tunnel re-keyed, and the routers are told the new address
    assert [p["tunnel"]["local"] for p in broker.applier.kernel_state["plans"]] == ["203.0.113.50"] * 2
    assert broker.json("config", "home")["router"]["options"]["peeraddr"] == "203.0.113.50"
    # the next apply finds it on the host: nothing to say
    rc, out, err = broker.run("apply")
    assert rc == 0 and err == ""
    _host(monkeypatch, ["203.0.113.51"], "203.0.113.51")
    body = json.loads(broker.run("apply", "--json")[1])
    assert body["notices"][0]["code"] == "LOCAL_IPV4_CHANGED" and body["applied"] is True


def test_apply_refuses_loudly_when_a_given_address_is_gone(broker, monkeypatch):
    broker.init()
    broker.ok("add", "home", "--remote", Y)
    asked = _host(monkeypatch, ["203.0.113.50"], "203.0.113.50")
    err = broker.fails("LOCAL_IPV4_GONE", "apply")
    assert X in err and "--public-ipv4" in err and "peeraddr" in err and "host name" in err
    assert asked and set(asked) == {X}
    # everything else was applied all the same; the JSON says the same
    assert broker.applier.devices() == ["sbs-home"]
    body = json.loads(broker.run("apply", "--json")[1])
    assert body["applied"] is True and body["error"]["code"] == "LOCAL_IPV4_GONE"
    # told the new address, the broker uses it; `auto` from then on follows the host
    s = broker.json("init", "--public-ipv4", "auto")["server"]
    assert s["public_ipv4"] == "203.0.113.50" and s["ipv4_followed"] is True
    assert broker.run("apply")[0] == 0


def test_apply_refuses_when_a_detected_address_has_nothing_public_to_follow(broker, monkeypatch):
    _host(monkeypatch, [X], X)
    broker.init("--public-ipv4", "auto")
    _host(monkeypatch, [], None)
    err = broker.fails("LOCAL_IPV4_GONE", "apply")
    assert "no public IPv4 address was found" in err
    # init with nothing to detect says so too
    broker.fails("PUBLIC_IPV4_UNKNOWN", "init", "--public-ipv4", "auto")
    # the new address is a tunnel's remote: refused, not taken
    _host(monkeypatch, [X], X)
    broker.ok("init", "--public-ipv4", "auto")
    broker.ok("add", "home", "--remote", Y)
    _host(monkeypatch, [Y], Y)
    assert "tunnel home" in broker.fails("LOCAL_IPV4_GONE", "apply")


def test_behind_nat_apply_checks_the_local_address(broker, monkeypatch):
    asked = _host(monkeypatch, ["10.1.2.3"])
    broker.init("--local-ipv4", "10.1.2.3")
    broker.ok("add", "home", "--remote", Y)
    assert broker.run("apply")[0] == 0 and asked[-1] == "10.1.2.3"
    assert broker.json("info")["server"]["ipv4_followed"] is False
    _host(monkeypatch, ["10.1.2.4"])
    assert "10.1.2.3" in broker.fails("LOCAL_IPV4_GONE", "apply")


def test_init_behind_nat_without_the_local_address_says_what_to_add(broker, monkeypatch):
    _host(monkeypatch, ["10.1.2.3"])
    rc, out, err = broker.run("init", "--prefix", PREFIX, "--public-ipv4", X)
    assert rc == 0 and "notice LOCAL_IPV4_NOT_ON_HOST:" in err and "--local-ipv4" in err
    body = broker.json("init", "--local-ipv4", "10.1.2.3")
    assert "notices" not in body and body["server"]["local_ipv4"] == "10.1.2.3"


def test_init_without_an_uplink_keeps_ras_on_the_default_routes_device(broker, monkeypatch):
    found = {"public_ipv4": X, "uplink": "ens3", "uplink_ra": True}
    seen = []
    monkeypatch.setattr(hostfacts, "detect", lambda uplink, netns: seen.append(uplink) or dict(found))
    s = broker.json("init", "--prefix", PREFIX, "--public-ipv4", X)["server"]
    assert seen == [None] and (s["uplink"], s["uplink_accept_ra"]) == ("ens3", True)
    assert ["net.ipv6.conf.ens3.accept_ra", "2"] in broker.applier.kernel_state["sysctls"]


@pytest.mark.parametrize("args,uplink", [(["--uplink-ra", "no"], None), (["--uplink", ""], None),
                                         (["--uplink", "eth1"], "eth1")])
def test_init_looks_for_the_uplink_only_when_not_told(broker, monkeypatch, args, uplink):
    monkeypatch.setattr(hostfacts, "detect", lambda u, netns: {"uplink": "ens3", "uplink_ra": True} if u is None
                        else {"uplink_ra": False})
    s = broker.json("init", "--prefix", PREFIX, "--public-ipv4", X, *args)["server"]
    assert s["uplink"] == uplink and s["uplink_accept_ra"] is False
    # a later init without --uplink keeps what was said, '' included
    assert broker.json("init")["server"]["uplink"] == uplink


def test_init_leaves_a_default_routes_device_alone_when_it_takes_no_ras(broker, monkeypatch):
    monkeypatch.setattr(hostfacts, "detect", lambda u, netns: {"uplink": "ens3", "uplink_ra": False})
    s = broker.json("init", "--prefix", PREFIX, "--public-ipv4", X)["server"]
    assert (s["uplink"], s["uplink_accept_ra"]) == (None, False)


# ---- a writer that holds none of our locks (another PoP's host) commits while we apply ---------------------

class ProvingApplier(FakeApplier):
    """FakeApplier with the record's proofs (reconcile.KernelAndNft's incremental methods): a fingerprint and
    a token of what it holds, so `apply` with nothing to do takes its shortcut, and add/remove/set apply
    their one tunnel.  meanwhile(): run once inside the next kernel step, as a commit by another host lands."""

    def __init__(self):
        FakeApplier.__init__(self)
        self.held = set()
        self.meanwhile = None
        self.fingerprint = 0

    def _fp(self):
        return sum(int(hashlib.sha256(d.encode()).hexdigest()[:16], 16) for d in self.held)

    def _during(self):
        hook, self.meanwhile = self.meanwhile, None
        if hook:
            hook()

    def kernel(self, state):
        FakeApplier.kernel(self, state)
        self._during()
        self.held = set(p["tunnel"]["device"] for p in state["plans"])
        self.fingerprint = self._fp()
        return {"changes": [], "foreign_tunnels": [], "failed": {}}

    def kernel_change(self, state, devices):
        before = self._fp()
        self._during()
        self.held -= set(devices)
        self.held |= set(p["tunnel"]["device"] for p in state["plans"])
        return {"changes": [], "failed": {}}, self._fp() - before

    def kernel_fingerprint(self, netns):
        return self._fp()

    def firewall_text(self, before, after, other, shared=None):
        return "" if other else None

    def firewall_change(self, netns, before, after, other, shared=None):
        return {"changed": True}

    def nft_token(self, netns, known=None):
        return "table"

    def nft_token_same(self, a, b):
        return a == b

    def nft_token_after(self, netns, before):
        return before

    def sysctls(self, state):
        return []


@pytest.mark.parametrize("step", ["apply", "add"])
def test_a_commit_by_another_host_during_an_apply_is_applied_by_the_next_one(broker, monkeypatch, step):
    """The two-PoP e2e failed once this way: pa's serve reconciled while pb's host committed a tunnel for pa,
    and recorded the generation it read afterwards as applied; every later apply then took its shortcut past
    that tunnel.  The record now names the generation the apply started from (a full one) or its own commit
    moved to (add/remove/set), so the change that landed meanwhile is applied by the next apply."""
    a = ProvingApplier()
    monkeypatch.setattr(reconcile, "APPLIER", a)
    broker.init()
    broker.ok("add", "home", "--remote", Y)

    def other_host():
        conn = db.connect(broker.path, create=False)
        try:
            service.add(conn, "away", Y2)
        finally:
            conn.close()
    a.meanwhile = other_host
    if step == "apply":
        a.held = set()      # a reboot: the full apply, not its shortcut
        broker.ok("apply")
    else:
        broker.ok("add", "third", "--remote", Y3)
    assert a.meanwhile is None and "sbs-away" not in a.held     # committed after this apply read what to do
    conn = db.connect(broker.path, create=False)
    try:
        assert db.applied(conn)["generation"] < db.generation(conn)
    finally:
        conn.close()
    body = json.loads(broker.ok("apply", "--json"))
    assert not body["apply"].get("unchanged"), body
    assert "sbs-away" in a.held
    # and now the record holds: nothing to do
    assert json.loads(broker.ok("apply", "--json"))["apply"].get("unchanged") is True
