"""The plain-Linux router's updater (linuxrouter/update.py, follow.py) against the real `sixbroker server serve`.

The service runs in-process (uvicorn in a thread, the broker's SQLite or PostgreSQL, the fake applier of test_broker.py
standing for the kernel) on a socket bound in a `vps` namespace at X:port, with the certificate `init` made
for X; the router end runs in a `home` namespace reaching it over a veth, or through a `nat` namespace that
masquerades (nftables) to a public address, as a home behind a NAT box does.  Every answer is read back
from the broker's database (`show`) and the updater's record as `sixbroker router status` reads it.
The real kernel's side (the sit device moving, IPv6 through it) is tests/e2e/test_router_follow.py.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

import dyndns_server
from netns_world import Namespaces, run
from sixbroker.broker import db, reconcile, serve, tls
from sixbroker.core import updaterecord
from sixbroker.linux.netns import InNetns
from sixbroker.linuxrouter import follow, router, update
from test_broker import ONE_BACKEND, Broker, FakeApplier, PREFIX, X
from test_broker_unit import _clean_and_a_typo_caught, _environment_file, unit

uvicorn = pytest.importorskip("uvicorn")

Y = "198.51.100.20"         # the home's first address
Y2 = "198.51.100.21"        # the home's address after a change
PUB = "192.0.2.40"          # the NAT box's public address
PORT = 8443


class World:
    """vps (X) -- home (Y) and vps -- nat (PUB) -- home2 (10.9.0.2, private)."""

    def __init__(self):
        self.ns = Namespaces("vps", "home", "nat", "home2")
        self.ns.veth("vps", "v-home", "home", "wan")
        self.ns.veth("vps", "v-nat", "nat", "out")
        self.ns.veth("nat", "in", "home2", "wan")
        self.ns.ip("vps", "addr", "add", X + "/24", "dev", "v-home")
        self.ns.ip("vps", "route", "add", Y + "/32", "dev", "v-home")
        self.ns.ip("vps", "route", "add", Y2 + "/32", "dev", "v-home")
        self.ns.ip("vps", "addr", "add", "192.0.2.1/24", "dev", "v-nat")
        self.ns.ip("home", "addr", "add", Y + "/32", "dev", "wan")
        self.ns.ip("home", "route", "add", X + "/32", "dev", "wan")
        self.ns.ip("nat", "addr", "add", PUB + "/24", "dev", "out")
        self.ns.ip("nat", "addr", "add", "10.9.0.1/24", "dev", "in")
        self.ns.ip("nat", "route", "add", "default", "via", "192.0.2.1")
        self.ns.sysctl("nat", "net.ipv4.ip_forward", "1")
        self.ns.nft("nat", "-f", "-", stdin="table ip nat {\n chain post {\n  type nat hook postrouting priority 100;\n"
                    "  oifname \"out\" masquerade\n }\n}\n")
        self.ns.ip("home2", "addr", "add", "10.9.0.2/24", "dev", "wan")
        self.ns.ip("home2", "route", "add", "default", "via", "10.9.0.1")


class Service:
    """`sixbroker server serve` in this process, listening in the vps namespace on X:PORT."""

    def __init__(self, path, vps):
        self.lines = []
        self.service = serve.Service(path, log=self.lines.append)
        cert, key = tls.paths(db.local_path(path))
        with InNetns(vps):
            self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((X, PORT))
        self.server = serve.Server(serve.config(self.service, X, PORT, cert, key, fd=None))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        for _ in range(250):
            if self.server.started:
                break
            time.sleep(0.02)
        self.cert = cert

    def answers(self):
        return [ln.split(" answer=")[1].split()[0] for ln in self.lines]

    def stop(self):
        self.server.should_exit = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def served(db_target, tmp_path, capsys, monkeypatch):
    """The service with one tunnel in the vps namespace, on SQLite and on PostgreSQL (db_target)."""
    world = World()
    applier = FakeApplier()
    reconcile.APPLIER = applier
    b = Broker(db_target, capsys, applier)
    b.ok("init", "--prefix", PREFIX, "--public-ipv4", X)
    key = b.json("add", "home", "--remote", Y)["key"]
    srv = Service(b.path, world.ns["vps"])
    monkeypatch.setattr(update, "RUN_DIR", str(tmp_path / "run"))
    yield b, srv, key, tmp_path, world.ns
    srv.stop()
    reconcile.APPLIER = None
    world.ns.close()


def config(tmp, key, cert, interval=60, extra=""):
    path = tmp / "router"
    path.write_text("config tunnel 'wan6'\n\toption peeraddr '%s'\n\toption ip6addr '2001:db8:5b10::b/127'\n"
                    "\toption tunnelid 'home'\n\toption updatekey '%s'\n\toption updatecert '%s'\n"
                    "\toption updateinterval '%d'\n%s" % (X, key, cert, interval, extra))
    return str(path)


def remote(b):
    return b.json("show", "home")["tunnel"]["remote"]


def once(path, ns):
    [(name, rec)] = follow.once(path, ns)
    assert name == "wan6"
    return rec


def test_good_nochg_and_a_wrong_key_changes_nothing(served):
    b, srv, key, tmp, ns = served
    path = config(tmp, key, srv.cert)
    # the home's address is public: sent as myip, and the broker moves the tunnel there
    rec = once(path, ns["home"])
    assert (rec["word"], rec["address"], rec["kind"], rec["fails"], rec["status"]) == ("nochg", Y, "ok", 0, 0)
    run(["ip", "-n", ns["home"], "addr", "add", Y2 + "/32", "dev", "wan"])
    run(["ip", "-n", ns["home"], "route", "replace", X + "/32", "dev", "wan", "src", Y2])
    rec = once(path, ns["home"])
    assert (rec["word"], rec["address"], rec["next"] - rec["time"]) == ("good", Y2, 60)
    assert remote(b) == Y2 and [p["tunnel"]["remote"] for p in b.applier.kernel_state["plans"]] == [Y2]
    assert srv.answers() == ["nochg", "good"]
    # the record as status shows it, key-free
    shown = update.records(ns["home"])["wan6"]
    assert (shown["word"], shown["address"], shown["url"]) == ("good", Y2, "https://%s:8443/nic/update" % X)
    assert key not in open(update.record_path("wan6", ns["home"])).read()

    before = b.dump(), json.dumps(b.applier.kernel_state, sort_keys=True)
    rec = once(config(tmp, "x" * 22, srv.cert), ns["home"])
    assert (rec["word"], rec["kind"], rec["fails"], rec["next"] - rec["time"]) == ("badauth", "config", 1, 3600)
    assert srv.answers()[-1] == "badauth"
    assert (b.dump(), json.dumps(b.applier.kernel_state, sort_keys=True)) == before


def test_behind_nat_no_myip_and_the_broker_takes_the_source(served):
    b, srv, key, tmp, ns = served
    rec = once(config(tmp, key, srv.cert), ns["home2"])
    assert (rec["word"], rec["address"]) == ("good", PUB)
    assert remote(b) == PUB
    # the request itself carried no myip: the service logged the NAT box as the source
    assert "src=%s tunnel=home answer=good" % PUB in srv.lines[-1]


@ONE_BACKEND  # refused in the TLS handshake: no request reaches the database
def test_a_certificate_that_is_not_the_brokers_is_refused_before_any_request(served):
    b, srv, key, tmp, ns = served
    other, _ = dyndns_server.make_cert(tmp, X)      # right name, wrong issuer
    before = b.dump()
    rec = once(config(tmp, key, other), ns["home"])
    assert (rec["word"], rec["kind"], rec["status"]) == ("badcert", "config", 5)
    assert srv.lines == [] and b.dump() == before
    # no updatecert: the system's CAs, which do not know a self-signed broker either
    rec = once(_without_cert(tmp, key), ns["home"])
    assert rec["word"] == "badcert" and srv.lines == []
    # a missing file is the same refusal, with nothing sent
    rec = once(config(tmp, key, str(tmp / "nowhere.pem")), ns["home"])
    assert rec["word"] == "badcert" and srv.lines == [] and b.dump() == before


def _without_cert(tmp, key):
    path = tmp / "router-nocert"
    path.write_text("config tunnel 'wan6'\n\toption peeraddr '%s'\n\toption ip6addr '2001:db8:5b10::b/127'\n"
                    "\toption tunnelid 'home'\n\toption updatekey '%s'\n" % (X, key))
    return str(path)


@ONE_BACKEND  # nothing answers: the router's backoff alone
def test_unreachable_is_backoff_and_bounded(served):
    b, srv, key, tmp, ns = served
    path = config(tmp, key, srv.cert, extra="\toption updateurl 'https://%s:9/nic/update'\n" % X)
    t0 = time.monotonic()
    [(_, rec)] = follow.once(path, ns["home"], timeout=2)
    assert time.monotonic() - t0 < 5
    assert (rec["word"], rec["kind"], rec["fails"], rec["next"] - rec["time"]) == ("unreachable", "later", 1, 30)
    [(_, rec)] = follow.once(path, ns["home"], timeout=2)
    assert (rec["fails"], rec["next"] - rec["time"]) == (2, 60)        # doubling, capped by the interval


@ONE_BACKEND  # the router's timer; the broker's nochg is the same on both (test_update_service)
def test_the_loop_sends_when_due_and_not_before(served):
    b, srv, key, tmp, ns = served
    now = [1000.0]
    loop = follow.Loop(config(tmp, key, srv.cert), ns["home"], clock=lambda: now[0])
    assert [r["word"] for _, r in loop.step()] == ["nochg"]
    assert loop.step() == []                    # not due: nothing sent, nothing asked of the broker
    now[0] += 59
    assert loop.step() == []
    now[0] += 1
    assert [r["word"] for _, r in loop.step()] == ["nochg"]
    assert srv.answers() == ["nochg", "nochg"]


@ONE_BACKEND  # the router's own hold; the broker answers nochg on both (test_update_service)
def test_the_loop_leaves_tunnels_a_person_took_down(served, capsys):
    b, srv, key, tmp, ns = served
    now = [1000.0]
    loop = follow.Loop(config(tmp, key, srv.cert), ns["home"], clock=lambda: now[0])
    assert [r["word"] for _, r in loop.step()] == ["nochg"]
    router.down(ns["home"])                 # the real `down`: our (empty) kernel scope and nft table
    assert router.held_down(ns["home"]) and not router.held_down(None)
    now[0] += 3600
    assert loop.step() == [] and loop.step() == []      # held: nothing set up, nothing sent
    assert srv.answers() == ["nochg"]
    assert capsys.readouterr().out.count("held down") == 1
    os.remove(os.path.join(update.record_dir(ns["home"]), "down"))   # what `up` does first
    assert [r["word"] for _, r in loop.step()] == ["nochg"]         # told again at once


@ONE_BACKEND  # the router's command line; the broker answers nochg on both (test_update_service)
def test_update_once_from_the_command_line(served, capsys):
    b, srv, key, tmp, ns = served
    from sixbroker import cli
    path = config(tmp, key, srv.cert)
    capsys.readouterr()
    assert cli.main(["router", "update", "--config", path, "--netns", ns["home"]]) == 0
    assert capsys.readouterr().out == "sixbroker router: wan6: update: nochg %s (ok, next in 60 s)\n" % Y
    # a file without an updater is a refusal with a code
    nokey = tmp / "plain"
    nokey.write_text("config tunnel 'wan6'\n\toption peeraddr '%s'\n\toption ip6addr '2001:db8:5b10::b/127'\n" % X)
    assert cli.main(["router", "update", "--config", str(nokey), "--netns", ns["home"]]) == 1
    assert capsys.readouterr().err.startswith("sixbroker router: NO_UPDATER: ")
    assert cli.main(["router", "update", "--bogus"]) == 2


@ONE_BACKEND  # the router's record of a nochg; the broker's side as above
def test_status_shows_the_last_update(served, capsys):
    b, srv, key, tmp, ns = served
    once(config(tmp, key, srv.cert), ns["home"])
    st = router.status(ns["home"])
    assert st["updates"]["wan6"]["word"] == "nochg"
    capsys.readouterr()
    router._print_status(st)
    out = capsys.readouterr().out
    assert "wan6: update " in out and "nochg %s (The broker already had this address)" % Y in out
    assert updaterecord.read(update.record_path("wan6", ns["home"]))["address"] == Y


# ---- the systemd unit ---------------------------------------------------------------------------------

UNIT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    "files", "linuxrouter", "sixbroker-router-update.service")


def test_systemd_reads_the_router_update_unit_without_a_complaint(tmp_path):
    _clean_and_a_typo_caught(UNIT, "RestartSec=", "RestartSek=", tmp_path)


@ONE_BACKEND  # the router's unit; the broker's side as above
@pytest.mark.skipif(not os.path.exists(os.path.join(os.path.dirname(sys.executable), "sixbroker")),
                    reason="the console script is not installed in this environment (make bootstrap)")
def test_the_units_command_runs_the_loop_with_the_environment_files_arguments(served):
    b, srv, key, tmp, ns = served
    env_file = tmp / "sixbroker-router"
    env_file.write_text("SIXBROKER_ROUTER_ARGS=--config %s --netns %s\n" % (config(tmp, key, srv.cert), ns["home"]))
    argv = []
    for word in unit(UNIT)["Service"]["ExecStart"].split():
        # systemd's $VAR expansion: the value split at white space, one argument per word
        argv += _environment_file(str(env_file))["SIXBROKER_ROUTER_ARGS"].split() if word == "$SIXBROKER_ROUTER_ARGS" else [word]
    env = {"PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin", "LANG": "C.UTF-8"}
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        first = p.stdout.readline()
    finally:
        p.terminate()
        p.wait(10)
        shutil.rmtree(os.path.join("/run/sixbroker", "router@" + ns["home"]), ignore_errors=True)
    # the default record directory: the process runs with the real RUN_DIR, as systemd would run it
    assert first.startswith("sixbroker router: wan6: update: nochg %s (ok, next in 60 s) [" % Y)
    assert srv.answers() == ["nochg"]
