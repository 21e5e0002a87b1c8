"""The allocator against a model, over random add/remove sequences (hypothesis, stateful).

The model is the definition written as plainly as possible: the next /127 is the lowest usable index no
tunnel has, the next routed prefix of length L the lowest L-aligned block that overlaps nothing taken,
found by trying every candidate.  After every step the database must hold exactly the model's state:
- never an overlap (routed prefixes, the transfer and reserved prefixes, pairwise), never one index twice;
- never a leak (removing a tunnel frees its /127 and prefix: the next add may get them again; removing
  all leaves only the fixed blocks);
- deterministic (replaying the same sequence on a fresh database gives the same allocations).
"""
import random

import pytest

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)

from sixbroker.core import addr
from sixbroker.broker import alloc, db, service
from sixbroker.core.errors import SixbrokerError
from conftest import assert_usage_counted

X = "203.0.113.10"


class Model:
    def __init__(self, layout, fixed):
        self.layout = layout
        self.fixed = list(fixed)            # [(start, stop)]
        self.tunnels = {}                   # name -> (index, start, stop)

    def taken(self):
        return self.fixed + [(s, e) for _, s, e in self.tunnels.values()]

    def next_index(self):
        used = set(i for i, _, _ in self.tunnels.values())
        for i in range(self.layout.transfer_lo, min(self.layout.transfer_hi, self.layout.transfer_lo + 10000)):
            if i not in used:
                return i
        return None

    def next_block(self, length):
        size = 1 << (self.layout.unit - length)
        taken = self.taken()
        c = 0
        while c + size <= self.layout.units:
            hit = [e for s, e in taken if not (c + size <= s or e <= c)]
            if not hit:
                return c
            # every aligned start below the end of what overlaps overlaps it too (the fixed blocks of a
            # /64 broker prefix are 2**32 units long: stepping one by one would never end)
            c = (max(hit) + size - 1) // size * size
        return None


LAYOUTS = st.sampled_from([
    # (prefix, transfer prefix or None for the default, reserved)
    ("2001:db8:5b00::/56", None, []),
    ("2001:db8:5b00::/58", "2001:db8:ffff::/124", []),
    ("2001:db8:5b00::/58", "2001:db8:5b00:20::/124", ["2001:db8:5b00:8::/61", "2001:db8:5b00:31::/64"]),
    ("2001:db8:5b00::/60", "2001:db8:ffff::/125", ["2001:db8:5b00:f::/64"]),
    # one /64 (an on-link VPS prefix): counted in /112s, the default cut (own /80, transfer /80) ...
    ("2001:db8:5b00::/64", None, []),
    # ... or a transfer prefix elsewhere and a reserved block longer than /64
    ("2001:db8:5b00::/64", "2001:db8:ffff::/124", ["2001:db8:5b00::/96"]),
])


class Allocator(RuleBasedStateMachine):
    @initialize(layout=LAYOUTS, lengths=st.lists(st.integers(56, 64), min_size=1, max_size=3, unique=True))
    def setup(self, layout, lengths):
        self.spec = layout
        prefix, transfer, reserved = layout
        self.conn = self._fresh()
        s = db.server(self.conn)
        self.layout = alloc.Layout.of(s)
        # lengths as offsets from the pool's unit: /56../64 of a /56, /104../112 of a /64 (blocks of 1 to
        # 256 units either way)
        self.lengths = [max(n + self.layout.unit - 64, self.layout.prefix.length + self.layout.fine)
                        for n in lengths]
        fixed = [(b["start"], b["stop"]) for b in db.blocks(self.conn)]
        self.model = Model(self.layout, fixed)
        self.history = []
        self.counter = 0

    @staticmethod
    def new_db():
        return db.connect(":memory:")

    def _fresh(self):
        prefix, transfer, reserved = self.spec
        conn = self.new_db()
        service.init(conn, prefix=prefix, transfer_prefix=transfer, reserve=reserved or None, public_ipv4=X)
        return conn

    @rule(pick=st.integers(0, 2), pending=st.booleans())
    def add(self, pick, pending):
        length = self.lengths[pick % len(self.lengths)]
        self.counter += 1
        name = "t%d" % self.counter
        # pending (no remote yet): the active count the triggers keep must leave it out
        remote = None if pending else "198.51.%d.%d" % (self.counter // 250, 1 + self.counter % 250)
        want_index = self.model.next_index()
        want_start = self.model.next_block(length)
        self.history.append(("add", name, remote, length))
        before = _rows(self.conn)
        try:
            t = service.add(self.conn, name, remote, length)
        except SixbrokerError as e:
            assert e.code == "POOL_EXHAUSTED", e.code
            assert want_index is None or want_start is None
            assert _rows(self.conn) == before
            return
        assert want_index is not None and want_start is not None
        net = addr.Network.parse(t["routed"][0])
        start = (net.value - self.layout.prefix.value) >> (128 - self.layout.unit)
        assert (start, net.length) == (want_start, length)
        assert t["transfer"] == str(self.layout.transfer_net(want_index))
        self.model.tunnels[name] = (want_index, start, start + (1 << (self.layout.unit - length)))

    @precondition(lambda self: self.model.tunnels)
    @rule(data=st.data())
    def remove(self, data):
        name = data.draw(st.sampled_from(sorted(self.model.tunnels)))
        self.history.append(("remove", name))
        service.remove(self.conn, name)
        del self.model.tunnels[name]

    @precondition(lambda self: self.model.tunnels)
    @rule(data=st.data())
    def give_a_remote(self, data):
        # what an update does to a pending tunnel (or a moved home to any): the remote changes, nothing else
        name = data.draw(st.sampled_from(sorted(self.model.tunnels)))
        self.counter += 1
        remote = "198.52.%d.%d" % (self.counter // 250, 1 + self.counter % 250)
        self.history.append(("update", name, remote))
        service.update(self.conn, name, remote)

    @invariant()
    def the_counts_are_the_rows(self):
        assert_usage_counted(self.conn)

    @invariant()
    def database_is_the_model(self):
        rows = db.tunnels(self.conn)
        got = {}
        for t in rows:
            assert len(t["blocks"]) == 1
            start, length = t["blocks"][0]
            got[t["name"]] = (t["transfer_index"], start, start + (1 << (self.layout.unit - length)))
        assert got == self.model.tunnels
        blocks = [(b["start"], b["stop"]) for b in db.blocks(self.conn)]
        assert sorted(blocks) == sorted(self.model.taken())

    @invariant()
    def nothing_overlaps(self):
        blocks = sorted((b["start"], b["stop"]) for b in db.blocks(self.conn))
        for (s1, e1), (s2, e2) in zip(blocks, blocks[1:]):
            assert e1 <= s2
        assert all(0 <= s < e <= self.layout.units for s, e in blocks)
        nets = [addr.Network.parse(p) for t in service.views(self.conn) for p in t["routed"]]
        transfers = [addr.Network.parse(t["transfer"]) for t in service.views(self.conn)]
        assert len(set(transfers)) == len(transfers)
        for n in nets:
            assert self.layout.prefix.contains(n) and not n.overlaps(self.layout.transfer)
        for tr in transfers:
            assert self.layout.transfer.contains(tr)
            # RFC 6164 5.1 / RFC 2526: neither the first /127 nor a reserved anycast address
            assert tr.value != self.layout.transfer.value

    def teardown(self):
        if not hasattr(self, "conn"):
            return
        # deterministic: the same sequence on a fresh database gives the same state
        again = self._fresh()
        for step in self.history:
            try:
                if step[0] == "add":
                    service.add(again, step[1], step[2], step[3])
                elif step[0] == "update":
                    service.update(again, step[1], step[2])
                else:
                    service.remove(again, step[1])
            except SixbrokerError as e:
                assert e.code == "POOL_EXHAUSTED"
        assert service.views(again) == service.views(self.conn) or _same_but_times(again, self.conn)
        # no leak: removing everything, in any order, frees everything
        names = sorted(self.model.tunnels)
        random.Random(len(names)).shuffle(names)
        for name in names:
            service.remove(self.conn, name)
        assert sorted((b["start"], b["stop"]) for b in db.blocks(self.conn)) == sorted(self.model.fixed)
        assert alloc.usage(self.conn, self.layout)["routed_64s_used"] == 0
        self.conn.close()
        again.close()


def _rows(conn):
    return ([tuple(r) for r in conn.execute("SELECT * FROM tunnels ORDER BY name")],
            [tuple(r) for r in conn.execute("SELECT * FROM blocks ORDER BY start")])


def _same_but_times(a, b):
    strip = lambda views: [dict((k, v) for k, v in t.items() if k not in ("created", "updated")) for t in views]
    return strip(service.views(a)) == strip(service.views(b))


Allocator.TestCase.settings = settings(max_examples=100, stateful_step_count=60, deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow])
TestAllocator = Allocator.TestCase


def test_the_allocator_on_postgresql(request):
    """The same machine on PostgreSQL: the allocator's queries in the other dialect (BIGINT /64 counts, the
    overlap trigger, the generated candidates), each example on new databases.  Fewer examples than
    SQLite's 150 (each costs two database copies); CI's derandomised profile draws the same ones."""
    from conftest import FreshDatabases
    dbs = FreshDatabases("postgresql", request.getfixturevalue("pg_server"), request.getfixturevalue("pg_template"))

    class OnPostgreSQL(Allocator):
        new_db = staticmethod(dbs.new)

        def teardown(self):
            try:
                Allocator.teardown(self)
            finally:
                dbs.close_all()
    run_state_machine_as_test(OnPostgreSQL, settings=settings(
        max_examples=6, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]))


def test_the_same_set_of_tunnels_gets_the_same_next_prefix_whatever_the_history(fresh_db):
    """Lowest free is a function of what is taken now: two histories that end with the same tunnels
    allocate the same next prefix."""
    def build(order, removed):
        conn = fresh_db()
        service.init(conn, prefix="2001:db8:5b00::/56", public_ipv4=X)
        for name, length in order:
            service.add(conn, name, "198.51.100.%d" % (1 + int(name[1:])), length)
        for name in removed:
            service.remove(conn, name)
        return conn

    a = build([("t1", 64), ("t2", 60), ("t3", 64), ("t4", 62)], ["t3"])
    b = build([("t1", 64), ("t3", 64), ("t2", 60), ("t4", 62)], ["t3"])
    taken_a = sorted((x["start"], x["stop"]) for x in db.blocks(a))
    taken_b = sorted((x["start"], x["stop"]) for x in db.blocks(b))
    # the transfer /64, t1, t4's /62, t2's /60 in both
    assert taken_a == taken_b == [(0, 1), (1, 2), (4, 8), (16, 32)]
    la = alloc.Layout.of(db.server(a))
    nexts = [alloc.next_block(a, la, n) for n in (64, 62, 60, 58)]
    assert nexts == [alloc.next_block(b, la, n) for n in (64, 62, 60, 58)]
    # t3's freed /64 is the lowest free again; then the first aligned gaps
    assert nexts == [2, 8, 32, 64]


# ---- a /64 broker prefix (issue 12 item 8: a VPS with one on-link /64) ------------------------------------

ONE64 = "2001:db8:5b00::/64"


def test_a_64_broker_prefix_keeps_the_servers_own_80_and_routes_80s(fresh_db):
    """Until issue 12 `init` refused a /64 outright (INVALID_PREFIX): nothing of it could be routed."""
    conn = fresh_db()
    service.init(conn, prefix=ONE64, public_ipv4=X)
    s = service.server_view(conn)
    assert s["transfer_prefix"] == "2001:db8:5b00:0:1::/80"
    # the first /80 holds the server's own addresses (and often the provider's gateway): never handed out
    assert s["reserved"] == ["2001:db8:5b00::/80"]
    assert s["routed_default_length"] == 80 and s["usage"]["unit"] == 112
    assert s["usage"]["routed_64s_total"] == 2 ** 48 - 2 * 2 ** 32
    t1 = service.add(conn, "r1", "198.51.100.20")
    t2 = service.add(conn, "r2", "198.51.100.21", "/96")
    t3 = service.add(conn, "r3", "198.51.100.22")
    assert (t1["transfer"], t1["server_address"], t1["router_address"]) == \
        ("2001:db8:5b00:0:1::2/127", "2001:db8:5b00:0:1::2", "2001:db8:5b00:0:1::3")
    assert t1["routed"] == ["2001:db8:5b00:0:2::/80"]
    # lowest free first, in /112s: the /96 after the first /80, the next /80 after the /96's /80
    assert t2["routed"] == ["2001:db8:5b00:0:3::/96"] and t3["routed"] == ["2001:db8:5b00:0:4::/80"]
    service.remove(conn, "r1")
    assert service.add(conn, "r4", "198.51.100.23")["routed"] == ["2001:db8:5b00:0:2::/80"]


@pytest.mark.parametrize("length", ["64", "63", "113", "128", "/56"])
def test_a_64_broker_prefix_refuses_routed_lengths_it_cannot_hold(fresh_db, length):
    conn = fresh_db()
    service.init(conn, prefix=ONE64, public_ipv4=X)
    before = _rows(conn)
    with pytest.raises(SixbrokerError) as e:
        service.add(conn, "r1", "198.51.100.20", length)
    assert e.value.code == "INVALID_PREFIX_LENGTH"
    assert _rows(conn) == before


def test_a_64_broker_prefix_with_the_transfer_prefix_in_its_first_80_reserves_nothing_by_itself(fresh_db):
    conn = fresh_db()
    service.init(conn, prefix=ONE64, transfer_prefix="2001:db8:5b00::/80", public_ipv4=X)
    s = service.server_view(conn)
    assert s["reserved"] == [] and s["transfer_prefix"] == "2001:db8:5b00::/80"
    assert service.add(conn, "r1", "198.51.100.20")["routed"] == ["2001:db8:5b00:0:1::/80"]


def test_a_reserved_prefix_longer_than_64_is_refused_outside_a_64_broker_prefix(fresh_db):
    conn = fresh_db()
    with pytest.raises(SixbrokerError) as e:
        service.init(conn, prefix="2001:db8:5b00::/56", reserve=["2001:db8:5b00:5::/80"], public_ipv4=X)
    assert e.value.code == "INVALID_RESERVED_PREFIX" and db.server_or_none(conn) is None


def _onlink(answer):
    seen = []

    def onlink(net, uplink, netns):
        seen.append((str(net), uplink, netns))
        return answer
    return onlink, seen


def test_ndp_proxy_mode_auto_on_off_and_kept(fresh_db):
    conn = fresh_db()
    # auto on a first init: what the uplink's routes say (an on-link /64 there)
    onlink, seen = _onlink(True)
    service.init(conn, prefix=ONE64, public_ipv4=X, uplink="eth0", onlink=onlink)
    assert seen == [(ONE64, "eth0", None)] and service.server_view(conn)["ndp_proxy"] is True
    # not given again: kept, not detected again
    onlink, seen = _onlink(False)
    service.init(conn, public_ipv4=X, onlink=onlink)
    assert seen == [] and service.server_view(conn)["ndp_proxy"] is True
    service.init(conn, ndp_proxy="off", onlink=onlink)
    assert service.server_view(conn)["ndp_proxy"] is False
    service.init(conn, ndp_proxy="auto", onlink=onlink)
    assert seen and service.server_view(conn)["ndp_proxy"] is False
    service.init(conn, ndp_proxy="on", onlink=onlink)
    assert service.server_view(conn)["ndp_proxy"] is True


def test_ndp_proxy_on_needs_an_uplink_and_a_refusal_changes_nothing(fresh_db):
    conn = fresh_db()
    with pytest.raises(SixbrokerError) as e:
        service.init(conn, prefix=ONE64, public_ipv4=X, ndp_proxy="on")
    assert e.value.code == "NDP_PROXY_NEEDS_UPLINK" and db.server_or_none(conn) is None
    # auto without an uplink has nothing to answer on: off, no question asked
    onlink, seen = _onlink(True)
    service.init(conn, prefix=ONE64, public_ipv4=X, onlink=onlink)
    assert seen == [] and service.server_view(conn)["ndp_proxy"] is False


def test_the_ndp_state_names_both_ends_of_each_transfer_127_and_every_routed_prefix(fresh_db):
    conn = fresh_db()
    service.init(conn, prefix=ONE64, public_ipv4=X, uplink="eth0", netns="vps", ndp_proxy="on")
    assert service.ndp_state(conn) == {"netns": "vps", "uplink": "eth0", "addresses": [], "prefixes": []}
    service.add(conn, "r1", "198.51.100.20")
    service.add(conn, "r2", "198.51.100.21", 96)
    assert service.ndp_state(conn) == {
        "netns": "vps", "uplink": "eth0",
        "addresses": ["2001:db8:5b00:0:1::2", "2001:db8:5b00:0:1::3", "2001:db8:5b00:0:1::4",
                      "2001:db8:5b00:0:1::5"],
        "prefixes": ["2001:db8:5b00:0:2::/80", "2001:db8:5b00:0:3::/96"]}
    service.init(conn, ndp_proxy="off")
    assert service.ndp_state(conn) == {"netns": "vps", "uplink": None, "addresses": [], "prefixes": []}


# ---- the same through the command line (a fake applier: tests/broker/test_broker.py) --------------------------

from test_broker import broker  # noqa: E402,F401  (the fixture)


def _heredocs(shell_text):
    """[body] of each `uci batch <<'TAG'` in the printed shell text, in order."""
    lines, out, i = shell_text.split("\n"), [], 0
    while i < len(lines):
        if lines[i].startswith("uci batch <<'"):
            tag = lines[i][len("uci batch <<'"):-1]
            end = lines.index(tag, i + 1)
            out.append(lines[i + 1:end])
            i = end
        i += 1
    return out


def test_cli_a_64_broker_prints_the_trade_off_and_a_router_config_netifd_takes(broker):
    import uci_edit as uci
    from sixbroker.core import options
    out = broker.ok("init", "--prefix", ONE64, "--public-ipv4", X)
    assert "no SLAAC" in out and "DHCPv6" in out and "routed /112s" in out and "ndp proxy       off" in out
    out = broker.ok("add", "home", "--remote", "198.51.100.20")
    assert "no SLAAC" in out
    tunnel, lan = _heredocs(out)
    # netifd refuses an ip6prefix longer than /64 (proto.c parse_prefix_option), and the whole update
    # with it: the tunnel's section has none
    config = {}
    for args in uci.batch_commands("\n".join(tunnel) + "\n"):
        key, _, value = args[1].partition("=")
        if args[0] in ("set", "add_list") and key.count(".") == 2:
            config.setdefault(key.split(".")[2], [] if args[0] == "add_list" else value)
            if args[0] == "add_list":
                config[key.split(".")[2]].append(value)
    assert "ip6prefix" not in config and config["ip6addr"] == "2001:db8:5b00:0:1::3/127"
    assert options.validate(config, strict=True).ip6prefix == []
    # the LAN: the /80's ::1 as a plain address, stateful DHCPv6 with the managed flag
    assert lan == ["del_list network.lan.ip6addr='2001:db8:5b00:0:2::1/80'",
                   "add_list network.lan.ip6addr='2001:db8:5b00:0:2::1/80'",
                   "set dhcp.lan.dhcpv6='server'", "del_list dhcp.lan.ra_flags='managed-config'",
                   "add_list dhcp.lan.ra_flags='managed-config'", "commit network", "commit dhcp"]
    body = broker.json("config", "home")["router"]
    assert body["lan_uci_batch"] == "\n".join(lan) + "\n" and body["options"]["ip6prefix"] == []


def test_cli_ndp_proxy_on_needs_an_uplink(broker):
    broker.fails("NDP_PROXY_NEEDS_UPLINK", "init", "--prefix", ONE64, "--public-ipv4", X, "--ndp-proxy", "on")
    broker.ok("init", "--prefix", ONE64, "--public-ipv4", X, "--uplink", "eth0", "--ndp-proxy", "on")
    assert broker.json("info")["server"]["ndp_proxy"] is True
    assert "ndp proxy       on" in broker.ok("info")
    broker.fails("USAGE", "init", "--ndp-proxy", "maybe", status=2)
