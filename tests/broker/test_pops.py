"""Points of presence on one real PostgreSQL database (tests/pgserver.py): two brokers, each its own prefix and
addresses, each applying only its own tunnels; move; concurrent adds; an update that reaches the wrong PoP;
the database going away and coming back.  Each PoP's kernel is a FakeApplier of its own here
(tests/e2e has the real kernel)."""

import base64
import hashlib
import os
import signal
import ssl
import subprocess
import sys
import threading
import time

import pytest

from sixbroker.broker import alloc, db, pops, reconcile, serve, service, tls, update
from sixbroker.broker.lock import Lock
from sixbroker.core import addr, joinline, options
from conftest import assert_usage_counted
from test_broker import REPO, Broker, FakeApplier, Y, Y2, Y3, _broker, batch_to_network, file_broker, heredoc_body  # noqa: F401 (file_broker: the fixture)

A = ("pa", "2001:db8:a00::/48", "203.0.113.10")
B = ("pb", "2001:db8:b00::/48", "203.0.113.20")


class PoP(Broker):
    """The CLI as one PoP runs it: SIXBROKER_POP set, its own applier (state: its own state directory,
    where its writer lock and certificate live, as on a host of its own)."""

    def __init__(self, url, capsys, monkeypatch, name, state=None):
        Broker.__init__(self, url, capsys, FakeApplier())
        self.name = name
        self.monkeypatch = monkeypatch
        self.state = state

    def run(self, *args):
        self.monkeypatch.setenv(db.ENV_POP, self.name)
        self.monkeypatch.setattr(reconcile, "APPLIER", self.applier)
        if self.state is not None:
            self.monkeypatch.setenv(db.ENV_STATE_DIR, self.state)
        return Broker.run(self, *args)

    def cert(self):
        """This PoP's certificate file (on SQLite: the one beside the file, which every PoP on it shares)."""
        if self.state is not None:
            self.monkeypatch.setenv(db.ENV_STATE_DIR, self.state)
        return tls.paths(db.local_path(self.path))[0]


@pytest.fixture
def two(pg_url, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv(db.ENV_STATE_DIR, str(tmp_path))
    _broker(pg_url, capsys, monkeypatch)        # host facts and the environment as every broker test has them
    out = []
    for name, prefix, ipv4 in (A, B):
        p = PoP(pg_url, capsys, monkeypatch, name)
        p.ok("init", "--prefix", prefix, "--public-ipv4", ipv4)
        out.append(p)
    return out


def test_each_pop_has_its_prefix_and_applies_only_its_tunnels(two):
    a, b = two
    ta = a.json("add", "home1", "--remote", Y)["tunnel"]
    tb = a.json("add", "home2", "--remote", Y2, "--pop", "pb")
    assert ta["pop"] == "pa" and ta["peeraddr"] == A[2] and ta["routed"][0].startswith("2001:db8:a00:")
    assert tb["tunnel"]["pop"] == "pb" and tb["tunnel"]["peeraddr"] == B[2]
    assert tb["tunnel"]["routed"][0].startswith("2001:db8:b00:") and tb["applied_by"] == ["pb"]
    # the first of each PoP's pool: allocation is per PoP
    assert tb["tunnel"]["transfer"] == ta["transfer"].replace("a00", "b00")
    # placed from pa, so pa's kernel did not get it; pb's apply does
    assert a.applier.devices() == ["sbs-home1"]
    b.ok("apply")
    assert b.applier.devices() == ["sbs-home2"]
    a.ok("apply")
    assert a.applier.devices() == ["sbs-home1"]
    assert [t["name"] for t in a.json("list")["tunnels"]] == ["home1"]
    assert [t["name"] for t in b.json("list")["tunnels"]] == ["home2"]
    assert a.json("info")["server"]["prefix"] == A[1] and b.json("info")["server"]["prefix"] == B[1]
    # names are one namespace across PoPs; addresses and devices are per PoP
    a.fails("TUNNEL_EXISTS", "add", "home2", "--remote", Y3)
    assert b.json("add", "other", "--remote", Y)["tunnel"]["pop"] == "pb"
    a.fails("POP_NOT_FOUND", "add", "x", "--remote", Y3, "--pop", "nowhere")
    a.fails("INVALID_POP", "add", "x", "--remote", Y3, "--pop", "no way")


def test_move_rehomes_with_new_addresses_and_a_new_router_config(two):
    a, b = two
    before = a.json("add", "home", "--remote", Y, "--routed-prefix-length", "56")["tunnel"]
    out = a.ok("move", "home", "--pop", "pb")
    t = b.json("show", "home")["tunnel"]
    assert t["pop"] == "pb" and t["peeraddr"] == B[2] and t["remote"] == Y
    assert addr.Network.parse(t["routed"][0]).length == 56 and t["routed"][0].startswith("2001:db8:b00:")
    assert t["transfer"] != before["transfer"]
    # the router's configuration, printed: the new PoP's address and the new prefixes
    assert "peeraddr='%s'" % B[2] in out or "peeraddr=%s" % B[2] in out, out
    assert t["router_address"] in out and t["routed"][0] in out
    # pa's kernel lost it at once (the move ran as pa), pb's gets it from its apply
    assert a.applier.devices() == []
    b.ok("apply")
    assert b.applier.devices() == ["sbs-home"]
    # pa's prefix is free again: the next tunnel there gets what home had
    assert a.json("add", "next", "--remote", Y2, "--routed-prefix-length", "56")["tunnel"]["routed"] == before["routed"]
    b.fails("TUNNEL_ALREADY_ON_POP", "move", "home", "--pop", "pb")
    b.fails("POP_NOT_FOUND", "move", "home", "--pop", "pz")
    # a remote that pa already has refuses the move back, and changes nothing
    a.ok("set", "next", "--remote", Y)
    b.fails("REMOTE_IN_USE", "move", "home", "--pop", "pa")
    # the counts of both PoPs followed the tunnel over, and the refusal moved none
    conn = db.connect(a.path, create=False)
    try:
        assert db.usage(conn, "pa")[:2] == (1, 1) and db.usage(conn, "pb")[:2] == (1, 1)
        assert_usage_counted(conn)
    finally:
        conn.close()


def test_twenty_concurrent_adds_across_two_pops_never_collide(two, pg_url):
    """Twenty writers at once, each its own connection (as twenty `add` processes would be), ten per PoP."""
    errors, barrier = [], threading.Barrier(20)

    def add(i):
        pop = ("pa", "pb")[i % 2]
        conn = db.connect(pg_url, create=False, pop=pop)
        try:
            barrier.wait()
            service.add(conn, "t%d" % i, "198.51.100.%d" % (100 + i // 2), routed_length=60 if i % 3 else 64)
        except Exception as e:
            errors.append(e)
        finally:
            conn.close()
    threads = [threading.Thread(target=add, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for pop, prefix in (("pa", A[1]), ("pb", B[1])):
        conn = db.connect(pg_url, create=False, pop=pop)
        try:
            views = service.views(conn)
            blocks = sorted((b["start"], b["stop"]) for b in db.blocks(conn))
            layout = alloc.Layout.of(db.server(conn))
        finally:
            conn.close()
        assert len(views) == 10
        assert len(set(v["transfer"] for v in views)) == 10
        routed = [addr.Network.parse(r) for v in views for r in v["routed"]]
        assert all(addr.Network.parse(prefix).contains(n) for n in routed)
        assert not any(x.overlaps(y) for i, x in enumerate(routed) for y in routed[i + 1:])
        assert all(s1 <= s0 or e0 <= s1 for (s0, e0), (s1, e1) in zip(blocks, blocks[1:]))
        # and lowest free first still holds: no gap below the highest /127 handed out
        idx = sorted((addr.Network.parse(v["transfer"]).address.value - layout.transfer.address.value) >> 1
                     for v in views)
        assert idx == list(range(1, 11))


def _follow(url, pop, applier, log):
    def again():
        conn = db.connect(url, create=False, pop=pop)
        try:
            reconcile.reconcile(conn, using=applier)
        finally:
            conn.close()
    return pops.Follower(url, pop, again, log.append, retry=0.3).start()


def _wait(cond, seconds=15):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_an_update_to_the_wrong_pop_is_applied_by_the_right_one_within_seconds(two, pg_url):
    a, b = two
    key = a.json("add", "home", "--remote", Y, "--pop", "pb")["key"]
    b_kernel, log = FakeApplier(), []
    follower = _follow(pg_url, "pb", b_kernel, log)
    try:
        assert _wait(lambda: follower.reconciled >= 1)
        assert [p["tunnel"]["remote"] for p in b_kernel.kernel_state["plans"]] == [Y]
        # the router's update reaches pa (its old address, a DNS name that points at the other PoP)
        conn = db.connect(pg_url, create=False, pop="pa")
        try:
            t0 = time.monotonic()
            answer = update.handle(conn, Lock(db.local_path(pg_url)), ("home", key), "home", Y3, Y3)
        finally:
            conn.close()
        assert (answer.word, answer.address) == ("good", Y3)
        assert _wait(lambda: [p["tunnel"]["remote"] for p in (b_kernel.kernel_state or {}).get("plans", [])] == [Y3])
        took = time.monotonic() - t0
        assert took < 10, took       # pushed, not polled: well within the follower's own timeouts
        assert a.applier.kernel_state is None or a.applier.devices() == []
    finally:
        follower.stop()


def _basic(user, key):
    import base64
    return "Basic " + base64.b64encode(("%s:%s" % (user, key)).encode()).decode()


def test_a_pop_without_its_database_keeps_what_it_applied_and_catches_up(two, pg_url, pg_server):
    a, b = two
    key = a.json("add", "home", "--remote", Y, "--pop", "pb")["key"]
    lines = []
    served = serve.Service(pg_url, log=lines.append, pop="pb")
    b_kernel, log = FakeApplier(), []
    follower = _follow(pg_url, "pb", b_kernel, log)
    try:
        assert _wait(lambda: follower.reconciled >= 1)
        applied, calls = b_kernel.kernel_state, b_kernel.calls
        pg_server.stop()
        assert _wait(lambda: any("unreachable" in line or "lost" in line for line in log))
        time.sleep(1)
        # nothing was torn down or re-applied while the database was away
        assert b_kernel.calls == calls and b_kernel.kernel_state == applied
        rc, out, err = b.run("apply")
        assert rc == 1 and "DB_UNAVAILABLE" in err and b_kernel.calls == calls
        # the update service answers 911 meanwhile, and works again once the database is back
        assert served.answer(Y3, _basic("home", key), [("hostname", "home"), ("myip", Y3)]).word == "911"
        assert "DB_UNAVAILABLE" in lines[-1]
        pg_server.start()
        assert _wait(lambda: follower.reconciled >= 2, 30)
        assert any("database back" in line for line in log)
        # an add made now, from the other PoP, is applied by pb on the news
        a.ok("add", "later", "--remote", Y2, "--pop", "pb")
        assert _wait(lambda: sorted(p["tunnel"]["device"] for p in b_kernel.kernel_state["plans"])
                     == ["sbs-home", "sbs-later"])
        b.monkeypatch.setattr(reconcile, "APPLIER", b.applier)      # pb's kernel, for pb's own serve
        assert served.answer(Y3, _basic("home", key), [("hostname", "home"), ("myip", Y3)]).word == "good"
    finally:
        follower.stop()


def test_a_postgresql_database_from_before_pops_migrates_to_the_pop_main(pg_url, monkeypatch):
    """Schema 6 on PostgreSQL with the rows a broker wrote, then today's connect: every row is main's, the
    applied record and the generation kept, and main allocates on from where it was."""
    monkeypatch.setattr(db, "SCHEMA_VERSION", 6)
    conn = db.connect(pg_url)
    stamp = db.now()
    with db.transaction(conn):
        conn.execute("INSERT INTO server (id, prefix, transfer_prefix, public_ipv4, local_ipv4, created, updated)"
                     " VALUES (1, '2001:db8:5b00::/56', '2001:db8:5b00::/64', ?, ?, ?, ?)", (A[2], A[2], stamp, stamp))
        conn.execute("INSERT INTO blocks (start, stop, length, tunnel, kind) VALUES (0, 1, 64, NULL, 'transfer')")
        conn.execute("INSERT INTO tunnels (name, device, remote, transfer_index, mtu, ttl, created, updated)"
                     " VALUES ('home', 'sbs-home', ?, 1, 1480, 64, ?, ?)", (Y, stamp, stamp))
        conn.execute("INSERT INTO blocks (start, stop, length, tunnel, kind) VALUES (1, 2, 64, 'home', 'routed')")
    generation = db.generation(conn)
    with db.transaction(conn):
        conn.execute("INSERT INTO applied (id, generation, version, kernel, nft, foreign_tunnels, at)"
                     " VALUES (1, ?, 'v', 'k', 'n', '', ?)", (generation, stamp))
    conn.close()
    monkeypatch.undo()
    conn = db.connect(pg_url, create=False)
    try:
        assert db._version(conn) == db.SCHEMA_VERSION and conn.pop == "main"
        assert db.generation(conn) == generation and db.applied(conn)["kernel"] == "k"
        assert [t["routed"] for t in service.views(conn)] == [["2001:db8:5b00:1::/64"]]
        assert service.add(conn, "next", Y2)["routed"] == ["2001:db8:5b00:2::/64"]
        for t in ("server", "tunnels", "blocks", "applied"):
            assert set(r[0] for r in conn.execute("SELECT pop FROM %s" % t)) == {"main"}, t
    finally:
        conn.close()


def test_apply_if_initialised_on_an_empty_postgresql_database(pg_url, capsys, monkeypatch, tmp_path):
    """The boot-time apply of a PoP whose database is still empty is no error, as with no SQLite file."""
    monkeypatch.setenv(db.ENV_STATE_DIR, str(tmp_path))
    b = _broker(pg_url, capsys, monkeypatch)
    assert "nothing to apply" in b.ok("apply", "--if-initialised")
    b.fails("BROKER_NOT_INITIALISED", "apply")
    b.init()
    b.fails("BROKER_NOT_INITIALISED", "apply", "--pop", "elsewhere")


# ---- every PoP's updater printed by any PoP (move, add --pop, key --rotate) ---------------------------------

@pytest.fixture
def pair(db_target, capsys, monkeypatch, tmp_path):
    """Two PoPs on db_target.  On PostgreSQL each has a state directory, so a certificate, of its own, as
    two hosts have; a SQLite file is one host's: its PoPs share the certificate beside it."""
    _broker(db_target, capsys, monkeypatch)
    out = []
    for name, prefix, ipv4 in (A, B):
        state = None
        if db_target.startswith("postgresql"):
            state = str(tmp_path / name)
            os.makedirs(state, mode=0o700)
        p = PoP(db_target, capsys, monkeypatch, name, state)
        p.ok("init", "--prefix", prefix, "--public-ipv4", ipv4)
        out.append(p)
    return out


def _der(pem):
    return ssl.PEM_cert_to_DER_cert(pem)


def _updater(body, pop):
    """The updater the printout gives the router, checked against the join line and the router's validator."""
    opts = body["router"]["options"]
    fields = joinline.decode(body["join"])
    assert opts["updatekey"] == body["key"] == fields["key"] and opts["updateurl"] == fields["url"]
    o = options.validate(opts, strict=True)
    assert str(o.peer) == pop[2] and o.update["key"] == body["key"]
    return opts, fields


def test_move_prints_the_new_pops_whole_updater_with_a_new_key(pair, monkeypatch):
    a, b = pair
    first = a.json("add", "home", "--remote", Y)
    # moved from pa's host: pb's URL and pb's certificate (published by pb's init), a new key
    body = a.json("move", "home", "--pop", "pb")
    assert body["key"] != first["key"]
    opts, fields = _updater(body, B)
    assert opts["updateurl"] == "https://%s:8443/nic/update" % B[2] and opts["updatecert"] == "/etc/sixbroker/home.pem"
    assert body["router"]["cert_file"]["path"] == "/etc/sixbroker/home.pem"
    with open(b.cert()) as f:
        pb_der = _der(f.read())
    assert _der(body["router"]["cert_file"]["pem"]) == pb_der
    assert fields["fp"] == hashlib.sha256(pb_der).hexdigest() and base64.b64decode(fields["cert"]) == pb_der
    if b.postgresql:
        with open(a.cert()) as f:
            assert _der(f.read()) != pb_der         # two hosts, two certificates: the right one was printed
    # the old key is refused at once; the new one is pb's tunnel's, wherever the request lands
    served = serve.Service(b.path, log=[].append, pop="pb")
    monkeypatch.setattr(reconcile, "APPLIER", b.applier)
    query = [("hostname", "home"), ("myip", Y3)]
    assert served.answer(Y3, _basic("home", first["key"]), query).word == "badauth"
    assert served.answer(Y3, _basic("home", body["key"]), query).word == "good"
    assert [p["tunnel"]["remote"] for p in b.applier.kernel_state["plans"]] == [Y3]

    # and back, as text: the paste-ready section with pa's certificate's here-document and the key
    out = b.ok("move", "home", "--pop", "pa")
    script, after = heredoc_body(out)
    config = dict(batch_to_network(script).get("home").options)
    assert config["updateurl"] == "https://%s:8443/nic/update" % A[2] and config["peeraddr"] == A[2]
    assert "/etc/sixbroker/home.pem' <<'EOF'\n-----BEGIN CERTIFICATE-----" in out and "no updater" not in out
    key = [line for line in out.splitlines() if line.startswith("# update key")][0].rsplit(" ", 1)[1]
    assert config["updatekey"] == key != body["key"]
    assert update.authenticate(db.connect(b.path, create=False), "home", body["key"]) is None


def test_add_for_another_pop_prints_that_pops_url_and_an_unpublished_certificate_is_said(pair):
    a, b = pair
    body = a.json("add", "far", "--remote", Y, "--pop", "pb")
    opts, fields = _updater(body, B)
    assert opts["updateurl"] == "https://%s:8443/nic/update" % B[2] and "notices" not in body
    # pb's certificate unknown (a database from before pb published it): the section is still whole
    # but for the certificate, and the command says so
    conn = db.connect(a.path, create=False)
    with db.transaction(conn):
        conn.execute("DELETE FROM pop_certs WHERE pop = 'pb'")
    conn.close()
    body = a.json("key", "far", "--rotate")
    assert [n["code"] for n in body["notices"]] == ["POP_CERT_UNKNOWN"]
    assert "updatecert" not in body["router"]["options"] and "cert_file" not in body["router"]
    assert body["router"]["options"]["updateurl"] == "https://%s:8443/nic/update" % B[2]
    # pb's next init publishes it again (so does its serve: test_serve_publishes_its_certificate)
    b.ok("init")
    assert "notices" not in a.json("key", "far", "--rotate")
    # pb behind a reverse proxy with a CA's certificate: its URL, and no certificate to carry
    b.ok("init", "--update-url", "https://pb.example.net/nic/update")
    body = a.json("key", "far", "--rotate")
    assert body["router"]["options"]["updateurl"] == "https://pb.example.net/nic/update"
    assert "updatecert" not in body["router"]["options"] and "notices" not in body


def test_a_pop_that_remakes_its_certificate_publishes_the_new_one(pair):
    """pb's VPS renumbered: its init remakes the certificate for the new address (TLS_CERT_REMADE), and
    what pa prints for pb's tunnels from then on carries the new one."""
    a, b = pair
    a.json("add", "far", "--remote", Y, "--pop", "pb")
    before = joinline.decode(a.json("key", "far", "--rotate")["join"])["fp"]
    rc, out, err = b.run("init", "--public-ipv4", "203.0.113.21")
    assert rc == 0 and "notice TLS_CERT_REMADE" in err, err
    body = a.json("key", "far", "--rotate")
    fields = joinline.decode(body["join"])
    with open(b.cert()) as f:
        now = _der(f.read())
    assert fields["fp"] == hashlib.sha256(now).hexdigest() != before
    assert fields["url"] == "https://203.0.113.21:8443/nic/update" and body["tunnel"]["peeraddr"] == "203.0.113.21"


def test_serve_publishes_its_certificate(file_broker, tmp_path):
    """`serve` publishes the certificate it has when it starts (a database from before schema 9, a file put
    there by hand): a process of its own, as the unit runs it (on SQLite: its PostgreSQL follower would
    reconcile this host's own kernel)."""
    b = file_broker
    b.init()
    conn = db.connect(b.path, create=False)
    with db.transaction(conn):
        conn.execute("DELETE FROM pop_certs")
    conn.close()
    port = serve_port()
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "src"))
    entry = "import sys\nfrom sixbroker.cli import main\nsys.exit(main())"
    p = subprocess.Popen([sys.executable, "-c", entry, "server", "serve", "--db", b.path, "--plain-http",
                          "--listen", "127.0.0.1:%d" % port], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    try:
        def published():
            c = db.connect_readonly(b.path)
            try:
                return db.pop_cert(c, "main")
            finally:
                c.close()
        assert _wait(lambda: published() is not None, 60)
        with open(tls.paths(b.path)[0]) as f:
            assert published()["fp"] == hashlib.sha256(_der(f.read())).hexdigest()
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert "published the certificate of PoP main" in err and "Traceback" not in err, err


def serve_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_each_pop_exports_its_own_last_applies(two, pg_url):
    """The record of the last applies is per PoP, on PostgreSQL as on SQLite (test_metrics.py): pb's
    failing apply is not pa's, and the follower's applies are `serve`'s."""
    pytest.importorskip("prometheus_client")
    from sixbroker.broker import metrics
    from test_metrics import value
    a, b = two
    a.ok("add", "home", "--remote", Y)
    a.ok("add", "far", "--remote", Y2, "--pop", "pb")
    b.applier.fail = RuntimeError("netlink said no")
    rc, out, err = b.run("apply")
    assert rc == 1 and "APPLY_FAILED" in err
    b.applier.fail = None
    pa = metrics.Metrics(pg_url, pop="pa").text()[0].decode()
    pb = metrics.Metrics(pg_url, pop="pb").text()[0].decode()
    assert value(pa, "sixbroker_last_apply_successful", command="add") == 1
    assert value(pa, "sixbroker_last_apply_successful", command="apply") is None
    assert value(pb, "sixbroker_last_apply_successful", command="apply") == 0
    assert value(pb, "sixbroker_last_apply_successful", command="add") is None     # placed by pa, applied by nobody yet
    # serve's own follower (serve.follower), on pb's kernel
    b.monkeypatch.setattr(reconcile, "APPLIER", b.applier)
    follower = serve.follower(serve.Service(pg_url, log=[].append, pop="pb"))
    try:
        assert _wait(lambda: value(metrics.Metrics(pg_url, pop="pb").text()[0].decode(),
                                   "sixbroker_last_apply_successful", command="serve") == 1)
    finally:
        follower.stop()
    assert value(metrics.Metrics(pg_url, pop="pa").text()[0].decode(), "sixbroker_last_apply_successful",
                 command="serve") is None
