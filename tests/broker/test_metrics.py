"""Tunnel health (`list`, `show`) and /metrics, on real counters: our nftables table in a throwaway namespace.

The broker runs with a real SQLite file or PostgreSQL database (db_target) and a half-real applier: the kernel part is the fake of
test_broker.py (the host has no sit), the firewall is our real table, loaded by apply_nft into the
namespace the broker is `init --netns`'d to, and protocol 41 sent with raw sockets from a namespace holding
the homes' addresses moves its counters (tests/e2e counts on real sit tunnels).  The metrics listener is
real uvicorn on loopback; `promtool` checks what it serves and a real Prometheus, started here in a
temporary directory on loopback, scrapes it."""

import http.client
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import threading
import time

import pytest

from sixbroker.broker import hostfacts, metrics, reconcile, serve
from sixbroker.linux import apply_nft, traffic
from test_broker import ONE_BACKEND, Broker, FakeApplier, PREFIX
from netns_world import X, Y, Y2, link, nets, send41, wait_for  # noqa: F401  (fixtures)

uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES = os.path.join(REPO, "files", "broker", "sixbroker.rules.yml")
INNER = b"\x60" + b"\0" * 39        # 40 bytes inside, 60 outside
ALIVE = 2                           # seconds: stands in for health.ALIVE_SECONDS (300)


class NftApplier(FakeApplier):
    """The fake kernel, the real firewall and its counters."""

    def firewall(self, state):
        FakeApplier.firewall(self, state)
        return {"changed": apply_nft.apply(state["plans"], netns=state["netns"]).changed}

    def traffic(self, netns):
        return traffic.read(netns)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Listener:
    """The metrics listener of a serve.Service, uvicorn in a thread as `serve --metrics-listen` runs it."""

    def __init__(self, service):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(serve.metrics_config(service, "127.0.0.1", self.port))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started)

    def get(self, target="/metrics"):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        c.request("GET", target)
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        return r.status, r.getheader("content-type"), body

    def stop(self):
        self.server.should_exit = True
        self.thread.join(5)
        self.sock.close()


def samples(text):
    """{(name, frozenset(labels)): value} of the exposition text."""
    from prometheus_client.parser import text_string_to_metric_families
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text, name, **labels):
    return samples(text).get((name, frozenset(labels.items())))


@pytest.fixture
def world(link, db_target, capsys, monkeypatch):
    """A broker with tunnels a (home Y), b (home Y2) and c (no home yet) whose table lives in link's vps,
    on SQLite and on PostgreSQL."""
    applier = NftApplier()
    monkeypatch.setattr(reconcile, "APPLIER", applier)
    monkeypatch.delenv("SIXBROKER_DB", raising=False)
    monkeypatch.setattr(hostfacts, "detect", lambda uplink, netns: {})
    monkeypatch.setattr(hostfacts, "ipv4_on_host", lambda address, netns: True)
    b = Broker(db_target, capsys, applier)
    b.ok("init", "--prefix", PREFIX, "--public-ipv4", X, "--netns", link["vps"])
    keys = {}
    for name, remote in (("a", Y), ("b", Y2), ("c", None)):
        keys[name] = b.json("add", name, *(["--remote", remote] if remote else []))["key"]
    lines = []
    service = serve.Service(b.path, log=lines.append)
    service.metrics = metrics.Metrics(b.path, lines.append, alive_seconds=ALIVE)
    listener = Listener(service)
    yield link, b, service, listener, keys, lines
    listener.stop()


def traffic_sent(n):
    """Known traffic: a sends 3 packets and gets 4, b sends 2 of 120 bytes outside."""
    for _ in range(3):
        send41(n, "homes", Y, X, INNER)
    for _ in range(2):
        send41(n, "homes", Y2, X, INNER + b"\0" * 60)
    for _ in range(4):
        send41(n, "vps", X, Y, INNER)
    assert wait_for(lambda: (lambda r: r.get(X + " . " + Y, {}).get("rx_packets") == 3
                             and r.get(X + " . " + Y2, {}).get("rx_packets") == 2)(traffic.read(n["vps"])))


def test_list_and_show_say_which_tunnels_are_alive(world):
    n, b, service, listener, keys, lines = world
    traffic_sent(n)
    tunnels = dict((t["name"], t) for t in b.json("list")["tunnels"])
    assert tunnels["a"]["traffic"] == {"rx_packets": 3, "rx_bytes": 180, "tx_packets": 4, "tx_bytes": 240}
    assert tunnels["b"]["traffic"] == {"rx_packets": 2, "rx_bytes": 240, "tx_packets": 0, "tx_bytes": 0}
    for name in ("a", "b"):
        h = tunnels[name]["health"]
        assert h["alive"] is True and h["alive_seconds"] == traffic.ALIVE_SECONDS and 0 <= h["idle_seconds"] <= 1
        assert abs(time.mktime(time.strptime(h["last_packet"], "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(time.gmtime())) <= 2
    # no home yet: no counters of its own, and not alive
    assert tunnels["c"]["traffic"] is None
    assert tunnels["c"]["health"]["alive"] is False and tunnels["c"]["health"]["idle_seconds"] is None
    rows = dict((r.split()[0], r.split()) for r in b.ok("list").strip().split("\n")[1:])
    assert rows["a"][7:9] == ["yes", "0s"] or rows["a"][7:9] == ["yes", "1s"]
    assert rows["c"][7:9] == ["no", "never"]
    shown = b.json("show", "a")["tunnel"]
    assert shown["health"]["alive"] and shown["traffic"] == tunnels["a"]["traffic"]
    text = b.ok("show", "b")
    assert "#   alive: last packet from the peer " in text
    assert "received 2 packets (240 bytes), sent 0 packets (0 bytes), outer IPv4" in text
    assert "not alive: no packet from the peer yet" in b.ok("show", "c")


def test_promtool_accepts_the_metrics_and_prometheus_scrapes_them(world, tmp_path):
    n, b, service, listener, keys, lines = world
    traffic_sent(n)
    # an update that moves nothing, one with a wrong key, one refused for its address
    assert service.answer("192.0.2.1", _basic("a", keys["a"]), [("hostname", "a"), ("myip", Y)]).word == "nochg"
    assert service.answer("192.0.2.1", _basic("a", "wrong"), [("hostname", "a")]).word == "badauth"
    assert service.answer("10.9.9.9", _basic("b", keys["b"]), [("hostname", "b"), ("myip", "10.0.0.1")]).word == "badip"
    status, kind, body = listener.get()
    assert status == 200 and kind.startswith("text/plain; version=0.0.4")
    p = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout + p.stderr == "", p.stdout + p.stderr
    assert value(body, "sixbroker_update_requests_total", answer="nochg") == 1
    assert value(body, "sixbroker_update_refused_total", reason="bad_key") == 1
    assert value(body, "sixbroker_update_refused_total", reason="no_public_ipv4") == 1
    assert value(body, "sixbroker_tunnels", state="applied") == 2 and value(body, "sixbroker_tunnels", state="waiting") == 1
    assert value(body, "sixbroker_pool_used", pool="transfer") == 3
    assert value(body, "sixbroker_pool_used", pool="routed") == 3
    assert value(body, "sixbroker_tunnel_last_update_timestamp_seconds", tunnel="a", answer="nochg") > time.time() - 60
    assert value(body, "sixbroker_database_up") == 1 and value(body, "sixbroker_traffic_up") == 1
    # no address leaves through the metrics: tunnels are named, never located
    assert Y not in body and Y2 not in body and X not in body

    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [%s]\n"
                   "scrape_configs:\n  - job_name: sixbroker\n    static_configs:\n      - targets: ['127.0.0.1:%d']\n"
                   % (json.dumps(RULES), listener.port))
    prom = subprocess.Popen(["prometheus", "--config.file=%s" % cfg, "--storage.tsdb.path=%s" % (tmp_path / "tsdb"),
                             "--web.listen-address=127.0.0.1:%d" % port, "--log.level=warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(tmp_path))
    try:
        def query(q):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                c.request("GET", "/api/v1/query?query=" + q)
                resp = c.getresponse()
                if resp.status != 200:          # 503 while it starts
                    return None
                r = json.loads(resp.read())
            except OSError:
                return None
            finally:
                c.close()
            return dict((s["metric"].get("tunnel"), float(s["value"][1])) for s in r["data"]["result"])

        def series(q, want, between=lambda: None):
            """Wait for Prometheus to hold want (it scrapes every second)."""
            end = time.monotonic() + 60
            while True:
                got = query(q)
                if got == want or time.monotonic() > end:
                    break
                between()
                time.sleep(0.3)
            assert got == want, (q, got, prom.poll())
        series("sixbroker_tunnel_receive_packets_total", {"a": 3, "b": 2})
        series("sixbroker_tunnel_receive_bytes_total", {"a": 180, "b": 240})
        series("sixbroker_tunnel_transmit_packets_total", {"a": 4, "b": 0})
        series("sixbroker_tunnel_transmit_bytes_total", {"a": 240, "b": 0})
        series('sixbroker_update_refused_total{reason="bad_key"}', {None: 1})
        # Y falls silent and Y2 keeps talking: Prometheus sees a go down, b stay up
        sent = []

        def talk():
            send41(n, "homes", Y2, X, INNER)
            sent.append(1)
        series("sixbroker_tunnel_up", {"a": 0, "b": 1}, between=talk)
        assert sent
        series("sixbroker_tunnel_receive_packets_total", {"a": 3, "b": 2 + len(sent)})
        idle = query("sixbroker_tunnel_receive_idle_seconds")
        assert idle["a"] > ALIVE and idle["b"] <= ALIVE
        # the sample rules loaded and evaluate
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/api/v1/rules")
        groups = json.loads(c.getresponse().read())["data"]["groups"]
        c.close()
        assert [(r["name"], r["health"]) for g in groups for r in g["rules"]] == [
            ("SixbrokerTunnelSilent", "ok"), ("SixbrokerPoolAlmostFull", "ok"), ("SixbrokerDatabaseDown", "ok")]
    finally:
        prom.terminate()
        prom.wait(10)


def test_a_scrape_without_the_database_answers_cleanly(world, request):
    n, b, service, listener, keys, lines = world
    traffic_sent(n)
    if b.postgresql:
        # no lock to wait on (PostgreSQL's readers never wait for a writer); gone is the server stopped
        pg_server = request.getfixturevalue("pg_server")
        pg_server.stop()
        try:
            status, _, body = listener.get()
        finally:
            pg_server.start()
        assert status == 200 and value(body, "sixbroker_database_up") == 0 and "Traceback" not in body
        assert "sixbroker_tunnel_" not in body
        assert any("the database could not be read" in ln and "cannot be reached" in ln for ln in lines), lines
    else:
        _scrape_a_locked_then_missing_file(b, listener, lines)
    # back: everything again, the counters where they were
    status, _, body = listener.get()
    assert value(body, "sixbroker_database_up") == 1
    assert value(body, "sixbroker_tunnel_receive_packets_total", tunnel="a") == 3
    # and the counters' table gone (the firewall flushed by someone): traffic_up 0, the rest still there
    subprocess.run(["ip", "netns", "exec", n["vps"], "nft", "delete", "table", "inet", "sixbroker"], check=True)
    status, _, body = listener.get()
    assert status == 200 and value(body, "sixbroker_database_up") == 1
    assert value(body, "sixbroker_tunnel_receive_packets_total", tunnel="a") == 0
    assert value(body, "sixbroker_tunnel_up", tunnel="a") == 0
    assert value(body, "sixbroker_tunnels", state="applied") == 2


def _scrape_a_locked_then_missing_file(b, listener, lines):
    """SQLite's two ways of being away: locked by a writer, and the file gone (put back afterwards)."""
    # locked: a writer holds it; the scrape waits metrics.DB_TIMEOUT, not the CLI's 30 s
    hold = sqlite3.connect(b.path, isolation_level=None)
    hold.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        status, _, body = listener.get()
        took = time.monotonic() - started
    finally:
        hold.rollback()
        hold.close()
    assert status == 200 and "Traceback" not in body
    assert value(body, "sixbroker_database_up") == 0 and "sixbroker_tunnel_" not in body
    assert took < 25, took       # not the CLI's 30 s lock wait (a bound, not a timing to meet)
    # gone
    os.rename(b.path, b.path + ".away")
    status, _, body = listener.get()
    assert status == 200 and value(body, "sixbroker_database_up") == 0 and "Traceback" not in body
    assert any("the database could not be read" in ln and "BROKER_NOT_INITIALISED" not in ln or "no database" in ln
               for ln in lines)
    os.rename(b.path + ".away", b.path)


def _promtool_ok(body):
    p = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout + p.stderr == "", p.stdout + p.stderr


def test_the_last_apply_of_each_command_is_exported_whatever_process_made_it(world):
    """`sixbroker server apply` (and add, set, ...) run outside `serve`: each command's last apply on this
    PoP is read from the database at the scrape, with its duration, end time and outcome."""
    n, b, service, listener, keys, lines = world
    kernel = b.applier.kernel
    slow = []

    def kernel_taking_time(state):
        time.sleep(0.3)             # a kernel that takes its time: the duration is measured, not made up
        out = kernel(state)
        if slow:
            out["failed"] = {"sbs-a": ["DEVICE_NOT_OURS", "sbs-a exists and is not ours"]}
        return out
    b.applier.kernel = kernel_taking_time
    t0 = time.time()
    b.ok("apply")
    status, kind, body = listener.get()
    _promtool_ok(body)
    assert value(body, "sixbroker_last_apply_successful", command="apply") == 1
    assert value(body, "sixbroker_last_apply_failed_tunnels", command="apply") == 0
    assert 0.3 <= value(body, "sixbroker_last_apply_duration_seconds", command="apply") < 60
    assert int(t0) <= value(body, "sixbroker_last_apply_timestamp_seconds", command="apply") <= time.time() + 1
    # the world's own commands left theirs: init, and add (before the slow kernel)
    assert value(body, "sixbroker_last_apply_successful", command="add") == 1
    assert value(body, "sixbroker_last_apply_duration_seconds", command="add") < 0.3
    assert value(body, "sixbroker_last_apply_successful", command="init") == 1
    # one tunnel refused by the kernel: apply exits 3, and its gauges say so; add's stay as they were
    slow.append(1)
    rc, out, err = b.run("apply")
    assert rc == 3 and "TUNNELS_FAILED" in err, err
    status, kind, body = listener.get()
    _promtool_ok(body)
    assert value(body, "sixbroker_last_apply_successful", command="apply") == 0
    assert value(body, "sixbroker_last_apply_failed_tunnels", command="apply") == 1
    assert value(body, "sixbroker_last_apply_successful", command="add") == 1
    # the kernel step failing outright (APPLY_FAILED): nothing applied, set's record says 0
    b.applier.fail = RuntimeError("netlink said no")
    rc, out, err = b.run("set", "b", "--mtu", "1400")
    assert rc == 1 and "APPLY_FAILED" in err, err
    status, kind, body = listener.get()
    assert value(body, "sixbroker_last_apply_successful", command="set") == 0
    assert value(body, "sixbroker_last_apply_failed_tunnels", command="set") == 0
    b.applier.fail = None
    slow.clear()
    b.ok("apply")
    status, kind, body = listener.get()
    assert value(body, "sixbroker_last_apply_successful", command="apply") == 1
    assert value(body, "sixbroker_last_apply_successful", command="set") == 0      # set's last one did fail


# refused before any database is opened: one backend says it all
@ONE_BACKEND
def test_metrics_never_on_the_public_port(world, tmp_path):
    n, b, service, listener, keys, lines = world
    app = serve.app(service)
    assert not [r for r in app.routes if getattr(r, "path", None) == "/metrics"]
    for bad in ("203.0.113.10:9468", "0.0.0.0:9468", "[::]:9468", "[2001:db8::1]:9468"):
        rc, out, err = b.run("serve", "--plain-http", "--listen", "127.0.0.1:%d" % free_port(), "--metrics-listen", bad)
        assert rc == 1 and "error METRICS_LISTEN_PUBLIC:" in err, (bad, err)
    for good in ("127.0.0.1:9468", "10.1.2.3:9468", "[fd00::1]:9468", "100.64.0.1:9468"):
        assert serve.check_metrics_listen(good)[1] == 9468


def test_the_sample_rules_alert_as_documented(tmp_path):
    p = subprocess.run(["promtool", "check", "rules", RULES], capture_output=True, text=True)
    assert p.returncode == 0 and "SUCCESS: 3 rules found" in p.stdout, p.stdout + p.stderr
    case = tmp_path / "rules_test.yml"
    case.write_text(RULE_TESTS.replace("@RULES@", json.dumps(RULES)))
    p = subprocess.run(["promtool", "test", "rules", str(case)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


RULE_TESTS = """
rule_files: [@RULES@]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'sixbroker_tunnel_receive_idle_seconds{instance="vps", tunnel="quiet"}'
        values: '0+60x20'
      - series: 'sixbroker_tunnel_receive_idle_seconds{instance="vps", tunnel="busy"}'
        values: '5x20'
      - series: 'sixbroker_pool_used{instance="vps", pool="routed"}'
        values: '230+1x40'
      - series: 'sixbroker_pool_size{instance="vps", pool="routed"}'
        values: '256x40'
    alert_rule_test:
      - eval_time: 9m
        alertname: SixbrokerTunnelSilent
        exp_alerts: []
      - eval_time: 11m
        alertname: SixbrokerTunnelSilent
        exp_alerts:
          - exp_labels: {severity: warning, instance: vps, tunnel: quiet}
            exp_annotations:
              summary: "tunnel quiet on vps: no packet from its home for 10 minutes"
      - eval_time: 10m
        alertname: SixbrokerPoolAlmostFull
        exp_alerts: []
      - eval_time: 20m
        alertname: SixbrokerPoolAlmostFull
        exp_alerts:
          - exp_labels: {severity: warning, instance: vps, pool: routed}
            exp_annotations:
              summary: "vps: the routed pool is 97.66% used"
"""


def _basic(user, password):
    import base64
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def test_serve_runs_the_metrics_listener_beside_the_update_port(world):
    """`sixbroker server serve --metrics-listen` as the unit runs it: its own process, stopped by SIGTERM."""
    import signal
    import sys
    n, b, service, listener, keys, lines = world
    traffic_sent(n)
    public, private = free_port(), free_port()
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "src"))
    entry = "import sys\nfrom sixbroker.cli import main\nsys.exit(main())"
    p = subprocess.Popen([sys.executable, "-c", entry, "server", "serve", "--db", b.path, "--plain-http",
                          "--listen", "127.0.0.1:%d" % public, "--metrics-listen", "127.0.0.1:%d" % private],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        def get(port, target):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            try:
                c.request("GET", target)
                r = c.getresponse()
                return r.status, r.read().decode()
            except OSError:
                return None, ""
            finally:
                c.close()
        assert wait_for(lambda: get(private, "/metrics")[0] == 200 and get(public, "/nic/update")[0] == 401, 30)
        status, body = get(private, "/metrics")
        # the real applier of this process reads the same table: the counters of traffic_sent()
        assert value(body, "sixbroker_tunnel_receive_bytes_total", tunnel="a") == 180
        assert value(body, "sixbroker_tunnel_transmit_packets_total", tunnel="a") == 4
        assert get(public, "/metrics")[0] == 404
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught (systemd counts that as clean);
    # the metrics thread holds nothing up
    assert p.returncode in (0, -signal.SIGTERM) and "Traceback" not in err, err
    assert "metrics on http://127.0.0.1:%d/metrics" % private in err
