"""The real ddclient and inadyn (Debian's, installed by scripts/bootstrap) against `sixbroker server serve`.

Each client runs once in the foreground with the configuration files/broker/README.md documents, its
cache in tmp_path, against the service over HTTPS on loopback (the fake applier of test_broker.py stands
for the kernel; tests/e2e/test_update_clients.py checks the real one).  The address is given to the
client (ddclient's `usev4=ipv4`, inadyn's `checkip-command`): no client ever asks a service on the
Internet.  The service's certificate is made by tls.ensure for 127.0.0.1, since both clients check the
certificate's IP against the server they connect to, as they would against the VPS's public address.
"""
import os
import shutil
import subprocess

import pytest

from sixbroker.broker import reconcile, tls
from test_broker import Broker, FakeApplier, PREFIX, X
from test_update_service import Server, state

pytest.importorskip("uvicorn")

Y = "198.51.100.20"
Y2 = "198.51.100.77"
Y3 = "198.51.100.99"
Y4 = "198.51.100.111"


def loopback_cert(directory):
    """A self-signed certificate for 127.0.0.1, made as `init` makes the VPS's."""
    directory.mkdir()
    cert, key, _ = tls.ensure(str(directory / "x.db"), "127.0.0.1")
    return cert, key


@pytest.fixture
def served(tmp_path, capsys):
    applier = FakeApplier()
    reconcile.APPLIER = applier
    b = Broker(str(tmp_path / "state" / "broker.db"), capsys, applier)
    b.ok("init", "--prefix", PREFIX, "--public-ipv4", X)
    key = b.json("add", "home", "--remote", Y)["key"]
    cert, tkey = loopback_cert(tmp_path / "lo")
    srv = Server(b.path, cert=cert, key=tkey)
    yield b, srv, key, tmp_path
    srv.stop()
    reconcile.APPLIER = None


def remote(b):
    return b.json("show", "home")["tunnel"]["remote"]


def answers(srv):
    """The answer words in the service's log lines, in order."""
    return [ln.split(" answer=")[1].split()[0] for ln in srv.lines]


# ---------------------------------------------------------------- ddclient

def ddclient_conf(path, port, cert, password, address):
    """files/broker/README.md's ddclient.conf: the address given (usev4=ipv4), no web check."""
    text = ("ssl=yes\n"
            "ssl_ca_file=%s\n"
            "usev4=ipv4, ipv4=%s\n"
            "protocol=dyndns2\n"
            "server=127.0.0.1:%d\n"
            "login=home\n"
            "password='%s'\n"
            "home\n") % (cert, address, port, password)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)       # ddclient warns about a password file others can read


def ddclient(tmp, srv, password, address, *extra):
    conf = str(tmp / "ddclient.conf")
    ddclient_conf(conf, srv.port, srv.cert, password, address)
    p = subprocess.run(["ddclient", "-daemon=0", "-foreground", "-verbose", "-file", conf,
                        "-cache", str(tmp / "ddclient.cache")] + list(extra),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    return p.stdout + p.stderr


def _age_cache(path, seconds):
    """ddclient skips a changed address within min-interval (30 s) of its last update: move that update
    back in time, as the minutes between two real address changes would."""
    lines = []
    for ln in open(path).read().splitlines():
        if not ln.startswith("#") and "mtime=" in ln:
            fields = ln.split(",")
            fields = [("mtime=%d" % (int(f[6:]) - seconds)) if f.startswith("mtime=") else f for f in fields]
            ln = ",".join(fields)
        lines.append(ln)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


@pytest.mark.skipif(not shutil.which("ddclient"), reason="ddclient not installed (scripts/bootstrap)")
def test_ddclient_good_nochg_move_and_a_wrong_key(served):
    b, srv, key, tmp = served
    out = ddclient(tmp, srv, key, Y2)
    assert answers(srv) == ["good"], out
    assert "SUCCESS:  updating home: good: IP address set to %s" % Y2 in out
    assert remote(b) == Y2 and [p["tunnel"]["remote"] for p in b.applier.kernel_state["plans"]] == [Y2]

    # the same address: ddclient sends nothing by itself (its cache has it); forced, the service says nochg
    out = ddclient(tmp, srv, key, Y2)
    assert answers(srv) == ["good"], out
    out = ddclient(tmp, srv, key, Y2, "-force")
    assert answers(srv) == ["good", "nochg"], out
    assert "updating home: nochg" in out

    _age_cache(str(tmp / "ddclient.cache"), 600)
    out = ddclient(tmp, srv, key, Y3)
    assert answers(srv)[-1] == "good", out
    assert remote(b) == Y3 and [p["tunnel"]["remote"] for p in b.applier.kernel_state["plans"]] == [Y3]

    before = state(b)
    _age_cache(str(tmp / "ddclient.cache"), 600)
    out = ddclient(tmp, srv, "x" * 22, Y4)
    assert answers(srv)[-1] == "badauth", out
    assert "FAILED:   updating home: badauth" in out
    assert state(b) == before and remote(b) == Y3




# ---------------------------------------------------------------- inadyn

def inadyn_conf(tmp, port, cert, password, address):
    """files/broker/README.md's inadyn.conf, the address printed by a checkip-command script."""
    script = tmp / "my-public-ipv4"
    script.write_text("#!/bin/sh\necho %s\n" % address)
    script.chmod(0o755)
    path = tmp / "inadyn.conf"
    path.write_text(
        "ca-trust-file = %s\n"
        "custom sixbroker {\n"
        "    ssl            = true\n"
        "    ddns-server    = 127.0.0.1:%d\n"
        "    ddns-path      = \"/nic/update?hostname=%%h&myip=%%i\"\n"
        "    username       = home\n"
        "    password       = %s\n"
        "    hostname       = home\n"
        "    checkip-command = \"%s\"\n"
        "}\n" % (cert, port, password, script))
    path.chmod(0o600)
    return str(path)


def inadyn(tmp, srv, password, address, *extra):
    conf = inadyn_conf(tmp, srv.port, srv.cert, password, address)
    cache = tmp / "inadyn-cache"
    if not cache.exists():
        # with no cache file inadyn seeds it with a DNS lookup of the hostname (troglobit/inadyn
        # src/cache.c, read_one -> nslookup): an empty one keeps the test off the resolver
        cache.mkdir()
        (cache / "home.cache").write_text("")
    p = subprocess.run(["inadyn", "--once", "--foreground", "--no-pidfile", "-l", "debug", "-f", conf,
                        "--cache-dir", str(cache)] + list(extra),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    return p.stdout + p.stderr


@pytest.mark.skipif(not shutil.which("inadyn"), reason="inadyn not installed (scripts/bootstrap)")
def test_inadyn_good_nochg_move_and_a_wrong_key(served):
    b, srv, key, tmp = served
    out = inadyn(tmp, srv, key, Y2)
    assert answers(srv) == ["good"], out
    assert remote(b) == Y2 and [p["tunnel"]["remote"] for p in b.applier.kernel_state["plans"]] == [Y2]

    out = inadyn(tmp, srv, key, Y2)
    assert answers(srv) == ["good"], out         # its cache has the address: nothing sent
    out = inadyn(tmp, srv, key, Y2, "--force")
    assert answers(srv) == ["good", "nochg"], out

    out = inadyn(tmp, srv, key, Y3)
    assert answers(srv)[-1] == "good", out
    assert remote(b) == Y3 and [p["tunnel"]["remote"] for p in b.applier.kernel_state["plans"]] == [Y3]

    before = state(b)
    out = inadyn(tmp, srv, "x" * 22, Y4)
    assert answers(srv)[-1] == "badauth", out
    assert state(b) == before and remote(b) == Y3


@pytest.mark.parametrize("client", ["ddclient", "inadyn"])
def test_a_client_refuses_a_certificate_it_was_not_given(served, tmp_path, client):
    """The CA option of the documented configuration is what the client checks the update's TLS against."""
    if not shutil.which(client):
        pytest.skip("%s not installed (scripts/bootstrap)" % client)
    b, srv, key, tmp = served
    other, _ = loopback_cert(tmp_path / "other")
    srv.cert = other        # the client trusts another self-signed certificate for the same address
    out = {"ddclient": ddclient, "inadyn": inadyn}[client](tmp, srv, key, Y2)
    assert srv.lines == [] and remote(b) == Y, out
