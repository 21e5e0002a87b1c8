"""Two points of presence on one PostgreSQL on a real kernel (the QEMU guest): PostgreSQL runs in the guest
from the host's binaries (tests/pgserver.py), `vps` is PoP pa and `vps2` PoP pb, each with its own prefix
and public address, each running `sixbroker server serve` as a process of its own.  Three homes: a home on
each PoP works; `move` takes one to the other PoP and it works again from the printed configuration; the
database stopped leaves both PoPs forwarding, and an add made when it is back is applied; an update sent
to the wrong PoP re-keys the tunnel on the right one.

    home  (Y)             --+                    +-- vps  (203.0.113.10): PoP pa, 2001:db8:a00::/48
    home2 (192.0.2.20/25) --+-- inet (router) ---+
    home3 (192.0.2.130/25)--+                    +-- vps2 (203.0.113.30): PoP pb, 2001:db8:b00::/48
"""

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import topo
from sixbroker.linux import apply_kernel, apply_nft, nft_table
from test_broker import HOMES, REPO, Server, homes, router_up  # noqa: F401  (homes: the fixture)

X2 = "203.0.113.30"
POPS = {"pa": ("vps", "2001:db8:a00::/48", topo.X), "pb": ("vps2", "2001:db8:b00::/48", X2)}


def _add_vps2():
    """A second VPS behind the same internet router: a host route each way (its /32 is inside inet's /24
    towards vps, so the longer route wins)."""
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

    def cmd(self, *args):
        entry = "import sys\nfrom sixbroker.cli import main\nsys.exit(main())"
        p = subprocess.run([sys.executable, "-c", entry, "server"] + list(args) + ["--db", self.path, "--json"],
                           capture_output=True, text=True, env=self.env(), timeout=300)
        assert "Traceback" not in p.stderr, p.stderr
        return p.returncode, json.loads(p.stdout) if p.stdout.strip() else None, p.stderr

    def ok(self, *args):
        rc, body, err = self.cmd(*args)
        assert rc == 0, (args, body, err)
        return body

    def serve(self, port):
        log = open(os.path.join(self.state, "serve.log"), "w")
        entry = "import sys\nfrom sixbroker.cli import main\nsys.exit(main())"
        self.proc = subprocess.Popen([sys.executable, "-c", entry, "server", "serve", "--plain-http", "--listen",
                                      "127.0.0.1:%d" % port, "--db", self.path], env=self.env(),
                                     stdout=log, stderr=subprocess.STDOUT)
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
    for ns in ("vps", "vps2"):
        apply_kernel.remove_all(ns, scope="broker")
        apply_nft.remove(nft_table.TABLE, ns)
    topo.run(["ip", "netns", "del", "vps2"], check=False)


def _update(port, name, key, myip):
    req = urllib.request.Request("http://127.0.0.1:%d/nic/update?hostname=%s&myip=%s" % (port, name, myip))
    req.add_header("Authorization", "Basic " + base64.b64encode(("%s:%s" % (name, key)).encode()).decode())
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read().decode().strip()


def test_two_pops_three_homes_move_database_gone_and_wrong_pop_update(two, pg, tmp_path):
    pa, pb = two["pa"], two["pb"]
    for name, (ns, prefix, ipv4) in POPS.items():
        body = two[name].ok("init", "--prefix", prefix, "--public-ipv4", ipv4, "--netns", ns)
        assert body["applied"] is True
    # every add from pa's host: pa's own are applied at once, pb's by pb's serve on the news
    r1 = pa.ok("add", "r1", "--remote", HOMES["r1"][1])
    r2 = pa.ok("add", "r2", "--remote", HOMES["r2"][1], "--pop", "pb")
    r3 = pa.ok("add", "r3", "--remote", HOMES["r3"][1])
    assert r2["applied_by"] == ["pb"] and devices("vps2") == []
    assert devices("vps") == ["sbs-r1", "sbs-r3"]
    pa.serve(_free_port())
    pb.serve(_free_port())
    assert _wait(lambda: devices("vps2") == ["sbs-r2"], 120), pb.log()
    t0 = time.time()
    for body in (r1, r2, r3):
        router_up(tmp_path, body["tunnel"]["name"], body["router"])
    assert r2["tunnel"]["peeraddr"] == X2 and r1["tunnel"]["peeraddr"] == topo.X
    for body in (r1, r2, r3):
        assert reachable(body["tunnel"]), body["tunnel"]["name"]

    # move r3 to pb: pa's kernel lets go at once (the move ran on pa), pb's follower takes it
    moved = pa.ok("move", "r3", "--pop", "pb")
    t3 = moved["tunnel"]
    assert t3["pop"] == "pb" and t3["peeraddr"] == X2 and t3["routed"][0].startswith("2001:db8:b00:")
    assert devices("vps") == ["sbs-r1"]
    assert _wait(lambda: devices("vps2") == ["sbs-r2", "sbs-r3"], 60), pb.log()
    router_up(tmp_path, "r3", moved["router"])        # the printed configuration, as the home would take it
    assert reachable(t3)
    assert reachable(r1["tunnel"]) and reachable(r2["tunnel"])

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
    print("\npops e2e: %.1f s up to the first pings; wrong-PoP update re-keyed after %.2f s"
          % (time.time() - t0, time.monotonic() - t1))
    assert remote_of("vps", "sbs-r2") is None
    assert reachable(r1["tunnel"]) and reachable(t3)
