"""`sixbroker server serve` over real HTTPS on loopback: a real SQLite file, the fake applier of
test_broker.py, uvicorn in a thread.  Every refused request is checked for its documented answer and for
a database and applier left exactly as they were.

The clients' side, read from their sources: ddclient's nic_dyndns2_update (ddclient/ddclient,
ddclient.in) sends `?system=dyndns&hostname=H&myip=` (myip empty when it has none), needs HTTP 200, and
reads the first body line as `STATUS [IP]`; inadyn's plugins/common.c (troglobit/inadyn) sends
`GET /nic/update?hostname=H&myip=A HTTP/1.0` and takes any body containing "good" or "nochg" as
success, "dnserr" or "911" as retry-later.  So every answer is HTTP 200 with one line.

The loopback source 127.0.0.1 is not public, so requests that must succeed carry a public myip.
"""
import base64
import http.client
import json
import os
import socket
import subprocess
import ssl
import threading
import time

import pytest

from sixbroker.broker import cli, db, reconcile, serve, tls
from test_broker import Broker, FakeApplier, PREFIX, X

uvicorn = pytest.importorskip("uvicorn")

Y = "198.51.100.20"
Y2 = "198.51.100.77"


class Server:
    def __init__(self, path, rate_source=serve.RATE_SOURCE, rate_tunnel=serve.RATE_TUNNEL, cert=None, key=None):
        self.lines = []
        self.service = serve.Service(path, rate_source, rate_tunnel, log=self.lines.append)
        if cert is None:
            cert, key = tls.paths(db.local_path(path))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.cert = cert
        self.server = serve.Server(serve.config(self.service, "127.0.0.1", self.port, cert, key, fd=None))
        self.sock = sock
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.02)
        self.ctx = ssl.create_default_context(cafile=cert)
        # the certificate names the VPS's public address (203.0.113.10), not loopback: its chain is checked
        self.ctx.check_hostname = False

    def stop(self):
        self.server.should_exit = True
        self.thread.join(5)
        self.sock.close()

    def get(self, target, user=None, password=None, headers=None):
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=10)
        h = dict(headers or {})
        if user is not None:
            h["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        c.request("GET", target, headers=h)
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        return r.status, body

    def raw(self, data, wait=1.0):
        """What comes back for raw bytes over TLS ('' when the server closed without an answer)."""
        s = self.ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.port), timeout=10),
                                 server_hostname="127.0.0.1")
        try:
            s.sendall(data)
            s.settimeout(wait + 5)
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out and len(out) > 200:
                    break
            return out.decode("latin-1")
        except (ConnectionError, ssl.SSLError):
            return ""
        finally:
            s.close()


@pytest.fixture
def setup(db_target, capsys):
    """A broker with one tunnel and one pending, on SQLite and on PostgreSQL (db_target), served."""
    applier = FakeApplier()
    reconcile.APPLIER = applier
    b = Broker(db_target, capsys, applier)
    b.ok("init", "--prefix", PREFIX, "--public-ipv4", X)
    body = b.json("add", "home", "--remote", Y)
    other = b.json("add", "away")           # pending: no remote yet
    srv = Server(b.path)
    yield b, srv, body["key"], other["key"]
    srv.stop()
    reconcile.APPLIER = None


def state(b):
    return b.dump(), json.dumps(b.applier.kernel_state, sort_keys=True)


def test_good_then_nochg_then_a_move_rekeys(setup):
    b, srv, key, _ = setup
    assert srv.get("/nic/update?hostname=home&myip=" + Y, "home", key) == (200, "nochg %s\n" % Y)
    assert srv.get("/nic/update?system=dyndns&hostname=home&myip=" + Y2, "home", key) == (200, "good %s\n" % Y2)
    assert b.json("show", "home")["tunnel"]["remote"] == Y2
    plans = b.applier.kernel_state["plans"]
    assert [p["tunnel"]["remote"] for p in plans] == [Y2]
    hist = b.json("show", "home")["tunnel"]["updates"]
    assert [(u["answer"], u["address"]) for u in hist] == [("good", Y2), ("nochg", Y)]
    assert srv.get("/nic/update?hostname=home&myip=" + Y2, "home", key)[1] == "nochg %s\n" % Y2
    assert srv.get("/nic/update?hostname=home&myip=" + Y2, "home", key)[1] == "nochg %s\n" % Y2
    hist = b.json("show", "home")["tunnel"]["updates"]
    assert hist[0]["count"] == 2 and len(hist) == 3          # a run of nochg is one row
    assert all(ln.startswith("sixbroker-serve: update src=127.0.0.1 tunnel=home answer=") for ln in srv.lines)


def test_a_pending_tunnel_gets_its_device_at_its_first_update(setup):
    b, srv, _, key2 = setup
    assert b.json("show", "away")["tunnel"]["state"] == "waiting"
    assert [p["tunnel"]["device"] for p in b.applier.kernel_state["plans"]] == ["sbs-home"]
    assert srv.get("/nic/update?hostname=away&myip=203.0.113.99", "away", key2)[1] == "good 203.0.113.99\n"
    assert sorted(p["tunnel"]["device"] for p in b.applier.kernel_state["plans"]) == ["sbs-away", "sbs-home"]


def test_rotate_makes_the_old_key_useless(setup):
    b, srv, key, _ = setup
    new = b.json("key", "home", "--rotate")["key"]
    assert srv.get("/nic/update?hostname=home&myip=" + Y, "home", key)[1] == "badauth\n"
    assert srv.get("/nic/update?hostname=home&myip=" + Y, "home", new)[1] == "nochg %s\n" % Y


def _hostile(key, key2):
    q = "/nic/update?hostname=home&myip=" + Y2
    return [
        ("no auth", dict(target=q), "badauth", 401),
        ("wrong key", dict(target=q, user="home", password="x" * 22), "badauth"),
        ("empty key", dict(target=q, user="home", password=""), "badauth"),
        ("key of another tunnel", dict(target=q, user="home", password=key2), "badauth"),
        ("another tunnel's name with this key", dict(target=q, user="away", password=key), "badauth"),
        ("unknown tunnel", dict(target=q, user="nobody", password=key), "badauth"),
        ("name with a suffix", dict(target=q, user="home ", password=key), "badauth"),
        # found by test_update_generated.py: PostgreSQL refuses a NUL in a text parameter (a 911, INTERNAL_ERROR)
        ("a NUL in the name", dict(target=q, user="ho\x00me", password=key), "badauth"),
        ("a name no tunnel can have", dict(target=q, user="h\u00f6me", password=key), "badauth"),
        ("key with a suffix", dict(target=q, user="home", password=key + "x"), "badauth"),
        ("key prefix", dict(target=q, user="home", password=key[:-1]), "badauth"),
        ("bearer auth", dict(target=q, headers={"Authorization": "Bearer " + key}), "badauth"),
        ("basic not base64", dict(target=q, headers={"Authorization": "Basic !!!"}), "badauth"),
        ("basic without colon", dict(target=q, headers={"Authorization": "Basic " + base64.b64encode(b"home").decode()}),
         "badauth"),
        ("basic not utf-8", dict(target=q, headers={"Authorization": "Basic " + base64.b64encode(b"home:\xff").decode()}),
         "badauth"),
        ("hostname of the other tunnel", dict(target="/nic/update?hostname=away&myip=" + Y2, user="home", password=key),
         "nohost"),
        ("two hostnames", dict(target="/nic/update?hostname=home,away&myip=" + Y2, user="home", password=key), "nohost"),
        ("no hostname", dict(target="/nic/update?myip=" + Y2, user="home", password=key), "notfqdn"),
        ("hostname twice", dict(target=q + "&hostname=home", user="home", password=key), "badagent"),
        # found by test_update_generated.py: the reason header " given twice" was a 500 from h11
        ("a nameless parameter twice", dict(target=q + "&=a&=b", user="home", password=key), "badagent"),
        ("private myip (source is loopback)", dict(target="/nic/update?hostname=home&myip=10.0.0.1", user="home",
                                                   password=key), "badip"),
        ("CGNAT myip", dict(target="/nic/update?hostname=home&myip=100.64.0.1", user="home", password=key), "badip"),
        ("loopback myip", dict(target="/nic/update?hostname=home&myip=127.0.0.1", user="home", password=key), "badip"),
        ("multicast myip", dict(target="/nic/update?hostname=home&myip=224.0.0.1", user="home", password=key), "badip"),
        ("IPv6 myip", dict(target="/nic/update?hostname=home&myip=2001:db8::1", user="home", password=key), "badip"),
        ("garbage myip", dict(target="/nic/update?hostname=home&myip=%00%ff", user="home", password=key), "badip"),
        ("the server's own address", dict(target="/nic/update?hostname=home&myip=" + X, user="home", password=key),
         "badip"),
        ("empty myip (ddclient with none)", dict(target="/nic/update?system=dyndns&hostname=home&myip=", user="home",
                                                 password=key), "badip"),
        ("huge query string", dict(target=q + "&x=" + "a" * 2000, user="home", password=key), "badagent"),
    ]


def test_no_credentials_get_the_basic_challenge_and_then_an_answer(setup):
    # the router's uclient-fetch (uclient-http.c uclient_http_headers_complete) and wget send the key only
    # after a 401 with WWW-Authenticate: Basic; the same request with credentials then gets its answer
    b, srv, key, _ = setup
    before = state(b)
    c = http.client.HTTPSConnection("127.0.0.1", srv.port, context=srv.ctx, timeout=10)
    c.request("GET", "/nic/update?hostname=home&myip=" + Y)
    r = c.getresponse()
    assert (r.status, r.getheader("www-authenticate"), r.read()) == (401, 'Basic realm="sixbroker"', b"badauth\n")
    c.close()
    assert state(b) == before
    assert srv.get("/nic/update?hostname=home&myip=" + Y, "home", key) == (200, "nochg %s\n" % Y)
    # a wrong key is no request for credentials: 200 badauth, which ddclient and inadyn read as such
    assert srv.get("/nic/update?hostname=home&myip=" + Y, "home", "x" * 22) == (200, "badauth\n")


def test_hostile_requests_are_answered_and_change_nothing(setup):
    b, srv, key, key2 = setup
    # the limits have their own tests below: here every request reaches the rules
    srv.service.sources.burst = srv.service.tunnels.burst = 0
    before = state(b)
    cases = _hostile(key, key2)
    for why, req, word, *status_of in cases:
        status, body = srv.get(req["target"], req.get("user"), req.get("password"), req.get("headers"))
        assert (status, body.split(" ")[0].strip()) == ((status_of or [200])[0], word), why
        assert state(b) == before, why
    # and the malformed ones, below HTTP's request level
    raw = [
        ("huge header", b"GET /nic/update?hostname=home HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", "HTTP/1.1 4"),
        # h11's limit is on what stays incomplete between reads: arriving whole in one read (TLS records
        # decide) it passes h11 and the query limit answers badagent; else 400
        ("huge request line", b"GET /nic/update?" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 4"),
        ("garbage", b"\x16\x03\x01 nonsense\r\n\r\n", "HTTP/1.1 400"),
        ("a body", b"GET /nic/update?hostname=home HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", "HTTP/1.1 413"),
        ("POST", b"POST /nic/update?hostname=home HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405"),
        ("another path", b"GET /etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 404"),
    ]
    for why, data, head in raw:
        got = srv.raw(data)
        assert got.startswith(head) or (head == "HTTP/1.1 4" and (got == "" or (
            got.startswith("HTTP/1.1 200") and got.endswith("\r\n\r\nbadagent\n")))), (why, got[:80])
        assert state(b) == before, why
    assert len(cases) + len(raw) >= 30
    assert "Traceback" not in "\n".join(srv.lines)


def test_a_911_is_retried_by_the_same_request_not_answered_nochg(setup):
    b, srv, key, _ = setup
    b.applier.fail = RuntimeError("the kernel says no")
    ask = "/nic/update?hostname=home&myip=" + Y2
    assert srv.get(ask, "home", key) == (200, "911\n")
    assert b.json("show", "home")["tunnel"]["remote"] == Y2           # saved, not applied
    assert [p["tunnel"]["remote"] for p in b.applier.kernel_state["plans"]] == [Y]
    assert srv.get(ask, "home", key) == (200, "911\n")                # not nochg: the kernel still lacks it
    b.applier.fail = None
    assert srv.get(ask, "home", key) == (200, "good %s\n" % Y2)       # the same request, now applied
    assert [p["tunnel"]["remote"] for p in b.applier.kernel_state["plans"]] == [Y2]
    calls = b.applier.calls
    assert srv.get(ask, "home", key) == (200, "nochg %s\n" % Y2)
    assert b.applier.calls == calls                                     # nochg touches no applier
    hist = b.json("show", "home")["tunnel"]["updates"]
    assert [(u["answer"], u["count"]) for u in hist] == [("nochg", 1), ("good", 1), ("911", 2)]


def test_an_idle_or_trickling_connection_is_dropped(setup):
    b, srv, key, _ = setup
    before = state(b)
    # a TCP connection that never sends a ClientHello (asyncio alone would keep it 60 s), waited out
    # alongside an idle one that did finish its handshake
    bare = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    t_bare = time.monotonic()
    s = srv.ctx.wrap_socket(socket.create_connection(("127.0.0.1", srv.port), timeout=30), server_hostname="127.0.0.1")
    t0 = time.monotonic()
    s.settimeout(30)
    assert s.recv(10) == b""                            # closed by the server, not by our timeout
    idle = time.monotonic() - t0
    s.close()
    assert idle < serve.REQUEST_SECONDS + 2
    try:
        assert bare.recv(10) == b""
    except ConnectionResetError:
        pass
    assert time.monotonic() - t_bare < serve.REQUEST_SECONDS + 2
    bare.close()
    s = srv.ctx.wrap_socket(socket.create_connection(("127.0.0.1", srv.port), timeout=30), server_hostname="127.0.0.1")
    t0 = time.monotonic()
    closed = False
    for ch in b"GET /nic/update?hostname=home HTTP/1.1\r\nHost: x\r\n":
        try:
            s.sendall(bytes([ch]))
        except (ConnectionError, ssl.SSLError):
            closed = True
            break
        time.sleep(0.5)
        if time.monotonic() - t0 > serve.REQUEST_SECONDS + 3:
            break
    if not closed:
        s.settimeout(5)
        try:
            closed = s.recv(10) == b""
        except (ConnectionError, ssl.SSLError):
            closed = True
    s.close()
    assert closed and time.monotonic() - t0 < serve.REQUEST_SECONDS + 4
    assert state(b) == before


def test_a_burst_from_one_source_is_abuse_after_its_share(setup):
    b, srv, key, _ = setup
    before = state(b)
    words = {}
    c = http.client.HTTPSConnection("127.0.0.1", srv.port, context=srv.ctx, timeout=10)
    t0 = time.monotonic()
    sent = 200          # ten bursts' worth: enough to see the refill never lets a guesser through
    for i in range(sent):
        auth = base64.b64encode(("home:wrong-%d" % i).encode()).decode()
        c.request("GET", "/nic/update?hostname=home&myip=" + Y2, headers={"Authorization": "Basic " + auth})
        body = c.getresponse().read().decode().strip()
        words[body] = words.get(body, 0) + 1
    c.close()
    burst, per = serve.RATE_SOURCE
    refilled = int((time.monotonic() - t0) / per) + 1
    assert words.get("badauth", 0) <= burst + refilled and words["abuse"] >= sent - burst - refilled, words
    assert set(words) == {"badauth", "abuse"}
    assert state(b) == before
    # and the tunnel's own router, from elsewhere, is not locked out by it (per-source, not per-tunnel)
    assert srv.service.sources.allow("198.51.100.1")


def test_the_tunnel_limit_holds_for_a_right_key(setup):
    b, srv, key, _ = setup
    srv.service.sources.burst = 0          # only the tunnel's limit
    words = [srv.get("/nic/update?hostname=home&myip=" + Y, "home", key)[1].split()[0] for _ in range(30)]
    n = serve.RATE_TUNNEL[0]
    assert words[:n] == ["nochg"] * n and set(words[n + 2:]) == {"abuse"}, words


def test_the_openapi_schema_names_the_route(setup):
    b, srv, key, _ = setup
    status, body = srv.get("/openapi.json")
    assert status == 200 and "/nic/update" in json.loads(body)["paths"]


def test_plain_http_only_on_loopback(tmp_path):
    from sixbroker.core.errors import SixbrokerError
    with pytest.raises(SixbrokerError) as e:
        serve.config(serve.Service(str(tmp_path / "x.db")), "0.0.0.0", 8080, plain=True)
    assert e.value.code == "SERVE_PLAIN_NOT_LOOPBACK"
    with pytest.raises(SixbrokerError) as e:
        serve.config(serve.Service(str(tmp_path / "x.db")), "0.0.0.0", 8080, cert=str(tmp_path / "none.pem"),
                     key=str(tmp_path / "none.key"))
    assert e.value.code == "TLS_CERT_MISSING"


def test_a_renumbered_vps_gets_a_certificate_for_its_new_address(setup, tmp_path):
    b, srv, key, _ = setup
    cert, k = tls.paths(db.local_path(b.path))
    fp = tls.fingerprint(cert)
    b.ok("init", "--prefix", PREFIX, "--public-ipv4", X)                # the same address: kept
    assert tls.fingerprint(cert) == fp
    rc, out, err = b.run("init", "--prefix", PREFIX, "--public-ipv4", "203.0.113.77", "--json")
    assert rc == 0 and "TLS_CERT_REMADE" in [n["code"] for n in json.loads(out)["notices"]]
    assert "notice TLS_CERT_REMADE" in err
    assert tls.addresses(cert) == ["203.0.113.77"] and tls.fingerprint(cert) != fp
    assert os.stat(k).st_mode & 0o777 == 0o600
    assert b.json("info")["server"]["tls_fingerprint_sha256"] == tls.fingerprint(cert)
    # a certificate a CA signed, put there by its owner, is never replaced
    ca_key, ca = str(tmp_path / "ca.key"), str(tmp_path / "ca.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", ca_key, "-out", ca, "-subj", "/CN=test CA", "-days", "2"], check=True, capture_output=True)
    csr = str(tmp_path / "leaf.csr")
    subprocess.run(["openssl", "req", "-new", "-key", k, "-out", csr, "-subj", "/CN=broker.example"], check=True,
                   capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out",
                    cert, "-days", "2"], check=True, capture_output=True)
    signed = tls.fingerprint(cert)
    assert "TLS_CERT_REMADE" not in b.run("init", "--prefix", PREFIX, "--public-ipv4", "203.0.113.78")[2]
    assert tls.fingerprint(cert) == signed


def test_init_makes_a_private_key_and_info_prints_the_fingerprint(setup):
    b, srv, key, _ = setup
    cert, k = tls.paths(db.local_path(b.path))
    assert os.stat(k).st_mode & 0o777 == 0o600
    if not b.postgresql:
        assert os.stat(b.path).st_mode & 0o777 == 0o600
    fp = b.json("info")["server"]["tls_fingerprint_sha256"]
    assert fp == tls.fingerprint(cert) and len(fp) == 64
    assert "SHA-256 " + fp in b.ok("info")
