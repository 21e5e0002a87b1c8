"""`sixbroker server` end to end on the host: the real CLI, a real SQLite file, a fake applier.

The fake applier stands in for the kernel and nftables (tests/e2e/test_broker.py has the real ones): it
keeps the last state each got, so a test sees what the kernel would hold.  Every refused command is
checked for its code, its exit status and an unchanged database.
"""
import json
import os
import sqlite3
import subprocess
import sys
import threading

import pytest

from sixbroker import addr, options, plan, uci
from sixbroker.broker import alloc, cli, db, hostfacts, reconcile, service
from sixbroker.errors import CODES
from server_cli import ServerCLI

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

    def dump(self):
        if not os.path.exists(self.path):
            return None
        c = sqlite3.connect(self.path)
        try:
            return "\n".join(c.iterdump())
        except sqlite3.DatabaseError:
            with open(self.path, "rb") as f:
                return f.read()
        finally:
            c.close()

    def init(self, *extra):
        return self.ok("init", "--prefix", PREFIX, "--public-ipv4", X, *extra)


@pytest.fixture
def broker(tmp_path, capsys, monkeypatch):
    fake = FakeApplier()
    monkeypatch.setattr(reconcile, "APPLIER", fake)
    monkeypatch.delenv("SIXBROKER_DB", raising=False)
    monkeypatch.delenv(reconcile.CRASH_ENV, raising=False)
    # init must never read the test machine's own interfaces
    monkeypatch.setattr(hostfacts, "detect", lambda uplink, netns: {})
    return Broker(str(tmp_path / "state" / "broker.db"), capsys, fake)


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
    (["--prefix", "2001:db8:5b00::/64"], "INVALID_PREFIX"),          # nothing left after the transfer /64
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


def test_init_needs_a_public_address(broker):
    broker.fails("PUBLIC_IPV4_UNKNOWN", "init", "--prefix", PREFIX)


def test_first_init_needs_a_prefix(broker):
    err = broker.fails("USAGE", "init", "--public-ipv4", X, status=2)
    assert "--prefix" in err


# ---- add, and the router's configuration ------------------------------------------------------------------

def test_add_allocates_applies_and_prints_a_paste_ready_router_config(broker):
    broker.init()
    out = broker.ok("add", "home", "--remote", Y)
    # the whole output pastes into a shell: the summary is comments, then the batch, then ifup
    assert all(ln.startswith("#") for ln in out.split("uci batch")[0].strip().split("\n"))
    script, after = heredoc_body(out)
    assert after == ["ifup home", ""]
    pkg = batch_to_network(script)
    sec = pkg.get("home")
    assert sec.type == "interface"
    config = dict(sec.options)
    assert config == {"proto": "sixbroker", "peeraddr": X, "ip6addr": "2001:db8:5b00::3/127",
                      "ip6gw": "2001:db8:5b00::2", "ip6prefix": ["2001:db8:5b00:1::/64"], "mtu": "1480"}
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


def test_json_shapes(broker):
    broker.init()
    body = broker.json("add", "home", "--remote", Y)
    assert sorted(body) == ["applied", "apply", "router", "tunnel"]
    t = body["tunnel"]
    assert sorted(t) == ["created", "device", "local", "mtu", "name", "peeraddr", "remote", "routed",
                         "router_address", "server_address", "transfer", "transfer_length", "ttl", "updated"]
    assert (t["name"], t["device"], t["remote"], t["local"], t["mtu"], t["ttl"]) == \
        ("home", "sbs-home", Y, X, 1480, 64)
    assert (t["transfer"], t["server_address"], t["router_address"], t["routed"]) == \
        ("2001:db8:5b00::2/127", "2001:db8:5b00::2", "2001:db8:5b00::3", ["2001:db8:5b00:1::/64"])
    r = body["router"]
    assert sorted(r) == ["interface", "options", "package", "shell", "type", "uci_batch"]
    assert (r["interface"], r["package"], r["type"]) == ("home", "network", "interface")
    assert batch_to_network(r["uci_batch"]).get("home").get("ip6prefix") == r["options"]["ip6prefix"]
    assert body["apply"]["tunnels"] == 1 and body["applied"] is True

    assert broker.json("show", "home") == {"tunnel": t}
    assert broker.json("list") == {"tunnels": [t]}
    assert broker.json("config", "home") == {"router": r}
    # `config` without --json prints the same shell text as `add` did
    assert broker.ok("config", "home") == r["shell"]
    info = broker.json("info")["server"]
    assert info["tunnels"] == 1 and info["usage"]["routed_64s_used"] == 1
    applied = broker.json("apply")
    assert applied["applied"] is True and applied["apply"]["tunnels"] == 1


def test_text_list_and_show(broker):
    broker.init()
    assert broker.ok("list").split() == ["NAME", "DEVICE", "REMOTE", "TRANSFER", "ROUTED", "MTU"]
    broker.ok("add", "b", "--remote", Y)
    broker.ok("add", "a", "--remote", Y2)
    rows = broker.ok("list").strip().split("\n")[1:]
    assert [r.split()[:3] for r in rows] == [["a", "sbs-a", Y2], ["b", "sbs-b", Y]]
    assert "2001:db8:5b00:2::/64" in broker.ok("show", "a")


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


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["add"], ["add", "x"], ["show"], ["list", "extra"],
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


def test_a_damaged_or_newer_database_is_an_error_not_a_traceback(broker):
    broker.init()
    c = sqlite3.connect(broker.path)
    c.execute("PRAGMA user_version = 99")
    c.commit()
    c.close()
    broker.fails("DB_TOO_NEW", "list")
    with open(broker.path, "wb") as f:
        f.write(b"this is not a database" * 100)
    broker.fails("DB_ERROR", "list")
    broker.fails("DB_ERROR", "add", "home", "--remote", Y)


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
    from sixbroker.errors import SixbrokerError
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

def test_the_database_refuses_overlapping_blocks_whatever_the_caller(tmp_path):
    conn = db.connect(str(tmp_path / "b.db"))
    service.init(conn, prefix=PREFIX, public_ipv4=X)
    with db.transaction(conn):
        alloc.take_block(conn, 16, 60, None, "reserved")
    for start, length in ((16, 64), (31, 64), (0, 56), (15, 62)):
        with pytest.raises(sqlite3.IntegrityError):
            with db.transaction(conn):
                alloc.take_block(conn, start, length, None, "reserved")
    with db.transaction(conn):
        alloc.take_block(conn, 32, 64, None, "reserved")


def test_codes_used_here_are_documented():
    src = ""
    for name in ("cli", "service", "alloc", "db", "reconcile", "hostfacts"):
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
    from sixbroker.errors import SixbrokerError
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
