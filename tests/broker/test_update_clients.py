"""The real ddclient and inadyn (Debian's, installed by scripts/bootstrap) against `sixbroker server serve`.

Each client runs once (tests/dyndns_clients.py) against the service over HTTPS on loopback (the fake
applier of test_broker.py stands for the kernel; tests/e2e/test_update_clients.py checks the real one).
The service's certificate is made by tls.ensure for 127.0.0.1: both clients check the certificate's IP
against the server they connect to, as they would the VPS's public address.
"""
import shutil

import pytest

import dyndns_clients
from sixbroker.broker import reconcile, tls
from test_broker import ONE_BACKEND, Broker, FakeApplier, PREFIX, X
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
def served(db_target, tmp_path, capsys):
    """The service with one tunnel, on SQLite and on PostgreSQL (db_target)."""
    applier = FakeApplier()
    reconcile.APPLIER = applier
    b = Broker(db_target, capsys, applier)
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


def ddclient(tmp, srv, password, address, *extra):
    return dyndns_clients.ddclient(tmp, "127.0.0.1:%d" % srv.port, srv.cert, password, address, *extra)


def inadyn(tmp, srv, password, address, *extra):
    return dyndns_clients.inadyn(tmp, "127.0.0.1:%d" % srv.port, srv.cert, password, address, *extra)


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

    dyndns_clients.age_ddclient_cache(tmp)
    out = ddclient(tmp, srv, key, Y3)
    assert answers(srv)[-1] == "good", out
    assert remote(b) == Y3 and [p["tunnel"]["remote"] for p in b.applier.kernel_state["plans"]] == [Y3]

    before = state(b)
    dyndns_clients.age_ddclient_cache(tmp)
    out = ddclient(tmp, srv, "x" * 22, Y4)
    assert answers(srv)[-1] == "badauth", out
    assert "FAILED:   updating home: badauth" in out
    assert state(b) == before and remote(b) == Y3




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


# refused in the TLS handshake, before any request reaches the database: one backend says it all
@ONE_BACKEND
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
