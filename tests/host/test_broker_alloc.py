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

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sixbroker import addr
from sixbroker.broker import alloc, db, service
from sixbroker.errors import SixbrokerError

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
        size = 1 << (64 - length)
        taken = self.taken()
        for c in range(0, self.layout.units - size + 1, size):
            if all(c + size <= s or e <= c for s, e in taken):
                return c
        return None


LAYOUTS = st.sampled_from([
    # (prefix, transfer prefix or None for the default, reserved)
    ("2001:db8:5b00::/56", None, []),
    ("2001:db8:5b00::/58", "2001:db8:ffff::/124", []),
    ("2001:db8:5b00::/58", "2001:db8:5b00:20::/124", ["2001:db8:5b00:8::/61", "2001:db8:5b00:31::/64"]),
    ("2001:db8:5b00::/60", "2001:db8:ffff::/125", ["2001:db8:5b00:f::/64"]),
])


class Allocator(RuleBasedStateMachine):
    @initialize(layout=LAYOUTS, lengths=st.lists(st.integers(56, 64), min_size=1, max_size=3, unique=True))
    def setup(self, layout, lengths):
        self.spec = layout
        prefix, transfer, reserved = layout
        self.conn = self._fresh()
        s = db.server(self.conn)
        self.layout = alloc.Layout.of(s)
        self.lengths = [max(n, self.layout.prefix.length) for n in lengths]
        fixed = [(b["start"], b["stop"]) for b in db.blocks(self.conn)]
        self.model = Model(self.layout, fixed)
        self.history = []
        self.counter = 0

    def _fresh(self):
        prefix, transfer, reserved = self.spec
        conn = db.connect(":memory:")
        service.init(conn, prefix=prefix, transfer_prefix=transfer, reserve=reserved or None, public_ipv4=X)
        return conn

    @rule(pick=st.integers(0, 2))
    def add(self, pick):
        length = self.lengths[pick % len(self.lengths)]
        self.counter += 1
        name = "t%d" % self.counter
        remote = "198.51.%d.%d" % (self.counter // 250, 1 + self.counter % 250)
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
        start = (net.value - self.layout.prefix.value) >> 64
        assert (start, net.length) == (want_start, length)
        assert t["transfer"] == str(self.layout.transfer_net(want_index))
        self.model.tunnels[name] = (want_index, start, start + (1 << (64 - length)))

    @precondition(lambda self: self.model.tunnels)
    @rule(data=st.data())
    def remove(self, data):
        name = data.draw(st.sampled_from(sorted(self.model.tunnels)))
        self.history.append(("remove", name))
        service.remove(self.conn, name)
        del self.model.tunnels[name]

    @invariant()
    def database_is_the_model(self):
        rows = db.tunnels(self.conn)
        got = {}
        for t in rows:
            assert len(t["blocks"]) == 1
            start, length = t["blocks"][0]
            got[t["name"]] = (t["transfer_index"], start, start + (1 << (64 - length)))
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


Allocator.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow])
TestAllocator = Allocator.TestCase


def test_the_same_set_of_tunnels_gets_the_same_next_prefix_whatever_the_history():
    """Lowest free is a function of what is taken now: two histories that end with the same tunnels
    allocate the same next prefix."""
    def build(order, removed):
        conn = db.connect(":memory:")
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
