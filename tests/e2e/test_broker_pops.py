"""Two points of presence on one PostgreSQL on a real kernel (the QEMU guest): PostgreSQL runs in the guest
from the host's binaries (tests/pgserver.py), `vps` is PoP pa and `vps2` PoP pb, each with its own prefix
and public address, each running `sixbroker server serve` as a process of its own (pb's in its namespace,
on its public address with the certificate its `init` made, as a VPS runs it).  Three homes: a home on
each PoP works; `move` takes one to the other PoP and it works again from the printed configuration, whose
updater (new key, pb's URL and certificate) pb accepts; the database stopped leaves both PoPs forwarding,
and an add made when it is back is applied; an update sent to the wrong PoP re-keys the tunnel on the
right one; 20 `add` processes at once across both PoPs never collide, each PoP's kernel and nftables
table end up holding exactly its own tunnels, and a home on each PoP pings through all the while.

    home  (Y)             --+                    +-- vps  (203.0.113.10): PoP pa, 2001:db8:a00::/48
    home2 (192.0.2.20/25) --+-- inet (router) ---+
    home3 (192.0.2.130/25)--+                    +-- vps2 (203.0.113.30): PoP pb, 2001:db8:b00::/48
"""

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import topo
from sixbroker import cli
from sixbroker.broker import db, service
from sixbroker.linux import apply_kernel, apply_nft, netns, nft_table
from sixbroker.linuxrouter import router, update
from test_broker import HOMES, REPO, Server, homes, router_file, router_up  # noqa: F401  (homes: the fixture)
from test_update_clients import _listening

X2 = "203.0.113.30"
POPS = {"pa": ("vps", "2001:db8:a00::/48", topo.X), "pb": ("vps2", "2001:db8:b00::/48", X2)}


def _add_vps2():
    """A second VPS behind the same internet router: a host route each way (its /32 is inside inet's /24
    towards vps, so the longer route wins)."""
    topo.drop_ns("vps2")        # what a failed test before may have left
    topo.run(["ip", "netns", "add", "vps2"])
    topo.batch("inet", ["link add to-vps2 type veth peer name v-vps2 netns vps2", "link set to-vps2 up",
                        "route add %s/32 dev to-vps2" % X2])
    topo.batch("vps2", ["addr add %s/32 dev v-vps2" % X2, "link set lo up", "link set v-vps2 up",
                        "route add 203.0.113.1/32 dev v-vps2", "route add default via 203.0.113.1"])


class PoP(Server):
    """`sixbroker server` as one PoP's host runs it: its SIXBROKER_POP, its own state directory."""

    def __init__(self, url, capsys, name, state):
        Server.__init__(self, url, capsys)
        self.name, self.state = name, state

    def env(self):
        env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "src"), SIXBROKER_POP=self.name,
                   SIXBROKER_STATE_DIR=self.state)
        return env

    def argv(self, *args, db=None, out=("--json",)):
        entry = "import sys\nfrom sixbroker.cli import main\nsys.exit(main())"
        return [sys.executable, "-c", entry, "server"] + list(args) + ["--db", db or self.path] + list(out)

    def cmd(self, *args):
        """(exit status, JSON, stderr) of `sixbroker server ARGS --json` run by this PoP's host: in a process
        of its own, forked (_fork_cli), not a new interpreter's ~10 s start under TCG each."""
        out = os.path.join(self.state, "cmd.out")
        pid = _fork_cli(self, args, out)
        rc = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        with open(out) as f, open(out + ".err") as e:
            body, err = f.read(), e.read()
        assert "Traceback" not in err, err
        return rc, json.loads(body) if body.strip() else None, err

    def ok(self, *args):
        rc, body, err = self.cmd(*args)
        assert rc == 0, (args, body, err)
        return body

    def serve(self, port):
        """Plain HTTP on loopback (behind a reverse proxy, as it were)."""
        log = open(os.path.join(self.state, "serve.log"), "w")
        self.proc = subprocess.Popen(self.argv("serve", "--plain-http", "--listen", "127.0.0.1:%d" % port, out=()),
                                     env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        self.port = port
        return self

    def serve_public(self, ns, address, port, url):
        """HTTPS on the PoP's public address in its namespace, with its own certificate; url: the database as
        reached from there (PostgreSQL's unix socket: its TCP port is on the root namespace's loopback)."""
        log = open(os.path.join(self.state, "serve.log"), "w")
        with netns.InNetns(ns):
            self.proc = subprocess.Popen(self.argv("serve", "--listen", "%s:%d" % (address, port), db=url, out=()),
                                         env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        self.port = port
        return self

    def log(self):
        with open(os.path.join(self.state, "serve.log")) as f:
            return f.read()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(cond, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.2)
    return cond()


def devices(ns):
    p = topo.run(["ip", "-j", "link", "show"], ns=ns)
    return sorted(l["ifname"] for l in json.loads(p.stdout) if l["ifname"].startswith("sbs-"))


def remote_of(ns, device):
    p = topo.run(["ip", "-d", "-j", "link", "show", "dev", device], ns=ns, check=False)
    if p.returncode:
        return None
    return json.loads(p.stdout)[0].get("linkinfo", {}).get("info_data", {}).get("remote")


def reachable(t):
    ns, vps = HOMES[t["name"]][0], POPS[t["pop"]][0]
    return topo.ping(ns, t["server_address"]) and topo.ping(vps, t["routed"][0].split("/")[0] + "1")


@pytest.fixture
def pg():
    import pgserver
    why = pgserver.available()
    if why:
        pytest.skip(why)
    server = pgserver.Server().start(timeout=240)
    yield server
    server.destroy()


@pytest.fixture
def two(homes, pg, tmp_path, capsys):  # noqa: F811
    _add_vps2()
    url = pg.create_db()
    out = {}
    for name in POPS:
        state = str(tmp_path / name)
        os.makedirs(state)
        out[name] = PoP(url, capsys, name, state)
    yield out
    for p in out.values():
        if getattr(p, "proc", None) is not None:
            p.proc.terminate()
            p.proc.wait(30)
    if os.path.exists("/etc/sixbroker/r3.pem"):         # the guest's own overlay: what the home wrote
        os.unlink("/etc/sixbroker/r3.pem")
    for ns in ("vps", "vps2"):
        apply_kernel.remove_all(ns, scope="broker")
        apply_nft.remove(nft_table.TABLE, ns)
    topo.drop_ns("vps2")


def _update(port, name, key, myip):
    req = urllib.request.Request("http://127.0.0.1:%d/nic/update?hostname=%s&myip=%s" % (port, name, myip))
    req.add_header("Authorization", "Basic " + base64.b64encode(("%s:%s" % (name, key)).encode()).decode())
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read().decode().strip()


def _socket_url(pg, url):
    """The same database through PostgreSQL's unix socket, which every network namespace reaches."""
    import pgserver
    return "postgresql://%s@/%s?host=%s&port=%d" % (pgserver.USER, url.rsplit("/", 1)[1], pg.dir, pg.port)


def _take_section(tmp_path, name, body):
    """What the home does with the section `add`/`move` printed: the certificate's here-document, then the
    section (router_file reads the `uci batch`), then `sixbroker router up`, which sends the first update.
    The router's config, and its record of that update."""
    cert = body["router"]["cert_file"]
    os.makedirs(os.path.dirname(cert["path"]), exist_ok=True)
    with open(cert["path"], "w") as f:
        f.write(cert["pem"])
    path = router_file(tmp_path, name, body["router"])
    ns = HOMES[name][0]
    assert router.main(["up", "--config", path, "--netns", ns]) == 0
    return path, update.records(ns)[name]


def _send(config, ns, key=None, myip=None):
    """One update with the router's own client and its printed updater (url, certificate; key unless given)."""
    (_, o, _), = router.read_config(config)
    u = dict(o.update, key=key or o.update["key"])
    body, status, errors = update.fetch(u, myip, timeout=60, netns=ns)
    return body.strip() or "status %d: %s" % (status, errors)


def _peers(ns, local):
    """The peers in a PoP's nftables table (the `local . peer` elements of its protocol-41 accept set)."""
    text = topo.nft(ns, "list", "set", "inet", "sixbroker", "peers6in4").stdout
    return sorted(set(re.findall(r"\b\d+\.\d+\.\d+\.\d+\b", text)) - {local})


def _routed(ns):
    """The routed prefixes the PoP's kernel sends into a tunnel device of ours: {prefix: device}."""
    routes = json.loads(topo.run(["ip", "-6", "-j", "route", "show"], ns=ns).stdout)
    return dict((r["dst"] if "/" in r["dst"] else r["dst"] + "/128", r["dev"]) for r in routes
                if r.get("dev", "").startswith("sbs-") and r.get("gateway"))


def _ping_while(ns, target):
    """A ping every 0.2 s from ns until stopped: stop() -> (sent, answered)."""
    with netns.InNetns(ns):
        p = subprocess.Popen(["ping", "-6", "-n", "-q", "-i", "0.2", target], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)

    def stop():
        p.send_signal(signal.SIGINT)
        out = p.communicate(timeout=30)[0]
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        assert m, out
        return int(m.group(1)), int(m.group(2))
    return stop


def _fork_cli(pop, args, out):
    """`sixbroker server ARGS --json` as PoP pop's host runs it, in a process of its own forked from this one,
    its stdout to out: its own database connection, writer lock and kernel work, as one started from a
    shell has, without an interpreter's start and imports each (~10 s under TCG) - the writers' concurrency
    is the point, and forked they overlap far more.  The pid."""
    pid = os.fork()
    if pid == 0:
        rc = 70
        try:
            os.environ.update(pop.env())
            sys.stdout = open(out, "w")
            sys.stderr = open(out + ".err", "w")
            rc = cli.main(pop.argv(*args)[3:])
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(rc)
    return pid


def test_two_pops_three_homes_move_database_gone_and_wrong_pop_update(two, pg, tmp_path):
    pa, pb = two["pa"], two["pb"]
    # what a command imports as it goes, imported once here: each forked command (PoP.cmd) has it
    import psycopg  # noqa: F401
    from sixbroker.linux import nft_token, sit, sysctl  # noqa: F401
    for name, (ns, prefix, ipv4) in POPS.items():
        body = two[name].ok("init", "--prefix", prefix, "--public-ipv4", ipv4, "--netns", ns)
        assert body["applied"] is True
    # every add from pa's host: pa's own are applied at once, pb's by pb's serve on the news
    r1 = pa.ok("add", "r1", "--remote", HOMES["r1"][1])
    r2 = pa.ok("add", "r2", "--remote", HOMES["r2"][1], "--pop", "pb")
    r3 = pa.ok("add", "r3", "--remote", HOMES["r3"][1])
    assert r2["applied_by"] == ["pb"] and devices("vps2") == []
    assert devices("vps") == ["sbs-r1", "sbs-r3"]
    # placed from pa, r2 is given pb's updater: pb's URL and the certificate pb's init made and published
    assert r2["router"]["options"]["updateurl"] == "https://%s:8443/nic/update" % X2
    with open(os.path.join(pb.state, "tls-cert.pem")) as f:
        assert r2["router"]["cert_file"]["pem"].split() == f.read().split()
    pa.serve(_free_port())
    pb.serve_public("vps2", X2, 8443, _socket_url(pg, pb.path))
    # bounds, not timings: the interpreter's start and FastAPI's imports under TCG on a loaded machine
    assert _wait(lambda: devices("vps2") == ["sbs-r2"], 300), pb.log()
    assert _wait(lambda: _listening("home3", X2, 8443), 300), pb.log()
    t0 = time.time()
    for body in (r1, r2, r3):
        router_up(tmp_path, body["tunnel"]["name"], body["router"])
    assert r2["tunnel"]["peeraddr"] == X2 and r1["tunnel"]["peeraddr"] == topo.X
    for body in (r1, r2, r3):
        assert reachable(body["tunnel"]), body["tunnel"]["name"]

    # move r3 to pb: pa's kernel lets go at once (the move ran on pa), pb's follower takes it
    t_move = time.time()
    moved = pa.ok("move", "r3", "--pop", "pb")
    t3 = moved["tunnel"]
    assert t3["pop"] == "pb" and t3["peeraddr"] == X2 and t3["routed"][0].startswith("2001:db8:b00:")
    assert devices("vps") == ["sbs-r1"]
    assert _wait(lambda: devices("vps2") == ["sbs-r2", "sbs-r3"], 60), pb.log()
    # the printed section, as the home takes it: pb's certificate and URL, a new key; its first update
    # reaches pb over TLS, checked against that certificate, and is accepted
    assert moved["key"] != r3["key"] and moved["router"]["options"]["updatekey"] == moved["key"]
    config, rec = _take_section(tmp_path, "r3", moved)
    assert rec["word"] in ("nochg", "good") and rec["url"] == "https://%s:8443/nic/update" % X2, rec
    assert reachable(t3)
    assert reachable(r1["tunnel"]) and reachable(r2["tunnel"])
    # the old key is dead; the new one moves the tunnel, applied by pb itself, and back
    assert _send(config, "home3", key=r3["key"], myip="192.0.2.131") == "badauth"
    assert _send(config, "home3", myip="192.0.2.131") == "good 192.0.2.131"
    assert remote_of("vps2", "sbs-r3") == "192.0.2.131"
    assert _send(config, "home3", myip=HOMES["r3"][1]) == "good " + HOMES["r3"][1]
    assert reachable(t3)

    t_move = time.time() - t_move

    # the database gone: both PoPs keep forwarding with what they applied
    pg.stop()
    assert _wait(lambda: "keeps what was last applied" in pb.log(), 60), pb.log()
    rc, body, err = pa.cmd("add", "r9", "--remote", "192.0.2.99")
    assert rc == 1 and body["error"]["code"] == "DB_UNAVAILABLE"
    assert devices("vps") == ["sbs-r1"] and devices("vps2") == ["sbs-r2", "sbs-r3"]
    assert reachable(r1["tunnel"]) and reachable(r2["tunnel"]) and reachable(t3)
    pg.start(timeout=240)
    assert _wait(lambda: "database back" in pb.log(), 60), pb.log()
    late = pa.ok("add", "r4", "--remote", "192.0.2.40", "--pop", "pb")
    assert late["tunnel"]["pop"] == "pb"
    assert _wait(lambda: devices("vps2") == ["sbs-r2", "sbs-r3", "sbs-r4"], 60), pb.log()

    # an update for r2 (pb's) sent to pa's serve: saved there, re-keyed by pb
    answer = _update(pa.port, "r2", r2["key"], "192.0.2.21")
    assert answer == "good 192.0.2.21"
    t1 = time.monotonic()
    assert _wait(lambda: remote_of("vps2", "sbs-r2") == "192.0.2.21", 60), pb.log()
    print("\npops e2e: %.1f s up to the first pings; move and its updater %.1f s; wrong-PoP update re-keyed after %.2f s"
          % (time.time() - t0, t_move, time.monotonic() - t1))
    assert remote_of("vps", "sbs-r2") is None
    assert reachable(r1["tunnel"]) and reachable(t3)

    # 20 `add` processes at once, from both PoPs' hosts, for both PoPs (a quarter each way), while a home
    # on each PoP pings through its tunnel
    pings = [_ping_while("home", r1["tunnel"]["server_address"]), _ping_while("home3", t3["server_address"])]
    t2 = time.monotonic()
    procs = []
    for i in range(20):
        by, to = ("pa", "pb")[i % 2], ("pa", "pb")[(i // 2) % 2]
        out = str(tmp_path / ("add-c%d" % i))
        procs.append((to, out, _fork_cli(two[by], ("add", "c%d" % i, "--remote", "198.51.100.%d" % (100 + i),
                                                   "--pop", to), out)))
    added = {"pa": [], "pb": []}
    for to, out, pid in procs:
        rc = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        with open(out) as f, open(out + ".err") as e:
            body, err = f.read(), e.read()
        assert rc == 0 and "Traceback" not in err, (body, err)
        added[to].append(json.loads(body)["tunnel"])
    took = time.monotonic() - t2
    views = {}
    for name in POPS:
        # read here, not by `list` processes: an interpreter's start under TCG is ~10 s; the same views
        conn = db.connect_readonly(pa.path, name)
        try:
            views[name] = service.views(conn)
        finally:
            conn.close()
    everything = [t for v in views.values() for t in v]
    assert sorted(t["name"] for t in everything) == sorted(["r1", "r2", "r3", "r4"] + ["c%d" % i for i in range(20)])
    for name, (ns, prefix, ipv4) in POPS.items():
        mine = views[name]
        assert len(mine) == {"pa": 1, "pb": 3}[name] + 10 and all(t["pop"] == name for t in mine)
        for key in ("transfer", "device", "remote"):
            assert len(set(t[key] for t in mine)) == len(mine), key
        assert sorted(t["name"] for t in added[name]) == sorted(t["name"] for t in mine if t["name"].startswith("c"))
    routed = sorted(r for t in everything for r in t["routed"])
    assert len(set(routed)) == len(routed) == len(everything)
    # each PoP's kernel and table: exactly its own tunnels (those added from the other host by its follower)
    for name, (ns, prefix, ipv4) in POPS.items():
        mine = views[name]
        assert _wait(lambda: devices(ns) == sorted(t["device"] for t in mine), 120), (
                devices(ns), sorted(t["device"] for t in mine), two[name].log())
        assert _wait(lambda: _peers(ns, ipv4) == sorted(t["remote"] for t in mine), 60), two[name].log()
        assert _routed(ns) == dict((r, t["device"]) for t in mine for r in t["routed"])
    sent = [stop() for stop in pings]
    print("pops e2e: 20 concurrent adds in %.1f s; pings sent/answered meanwhile %s" % (took, sent))
    for n, answered in sent:
        assert n >= 5 and answered == n, sent
    assert reachable(r1["tunnel"]) and reachable(t3)
