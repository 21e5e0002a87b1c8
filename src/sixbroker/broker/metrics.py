"""The broker's Prometheus metrics (/metrics of `sixbroker server serve --metrics-listen`), with prometheus_client.

Read at each scrape, so they are never stale: the database (read-only, a lock waited for at most
DB_TIMEOUT seconds) and our nftables table (linux/traffic.py).  Counted by this process: the update
requests it answered and the applies they made.  A scrape never fails for the database or nft: what
could not be read is left out, and sixbroker_database_up / sixbroker_traffic_up say 0.

Per tunnel (label `tunnel`, its name; no address is exported):
  sixbroker_tunnel_receive_packets_total, _receive_bytes_total   protocol 41 from the peer (outer IPv4
  sixbroker_tunnel_transmit_packets_total, _transmit_bytes_total    packets: 20 bytes more than inner)
  sixbroker_tunnel_receive_idle_seconds    since the peer's last packet; +Inf when none (yet)
  sixbroker_tunnel_up                      1 when that is at most ALIVE_SECONDS (health.py)
  sixbroker_tunnel_last_update_timestamp_seconds{answer}   the last update request and its answer
Per broker:
  sixbroker_tunnels{state}                 applied, pending, failed, waiting (for a first update)
  sixbroker_pool_used{pool}, sixbroker_pool_size{pool}   pool "transfer" (/127s), "routed" (/64s, or the unit)
  sixbroker_apply_duration_seconds         applies made by update requests here (a histogram)
  sixbroker_last_apply_duration_seconds{command}, _timestamp_seconds{command}, _successful{command},
  sixbroker_last_apply_failed_tunnels{command}   the last apply each command made on this PoP, in any
                                           process (`sixbroker server apply`, add, ..., and `serve` for what
                                           its follower applied): read from the database (db.apply_runs)
  sixbroker_update_requests_total{answer}  every answer word
  sixbroker_update_refused_total{reason}   refused requests by REASONS
  sixbroker_database_up, sixbroker_traffic_up
"""

import sqlite3
import time

from sixbroker.broker import db, health, reconcile, service, update
from sixbroker.core.errors import SixbrokerError

DB_TIMEOUT = 2.0
ANSWERS = ("good", "nochg", "badauth", "nohost", "notfqdn", "badip", "abuse", "badagent", "911")
REFUSED = ("badauth", "nohost", "notfqdn", "badip", "abuse", "badagent")
# stable words for why a request was refused (update.Answer.reason); the codes of service.update's
# refusals (remote_in_use, ...) are added as they come
REASONS = ("no_auth", "bad_key", "rate_source", "rate_tunnel", "no_hostname", "wrong_hostname", "no_public_ipv4",
           "duplicate_parameter", "query_too_long", "body")
APPLY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STATES = ("applied", "pending", "failed", "waiting")


class Metrics:
    """The registry of one update service: its own counters and a collector of the rest."""

    def __init__(self, path, log=None, clock=time.time, alive_seconds=health.ALIVE_SECONDS, pop=None):
        try:
            from prometheus_client import CollectorRegistry, Counter, Histogram
        except ImportError:
            raise SixbrokerError("SERVE_NEEDS_EXTRA")
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("sixbroker_update_requests", "Update requests answered, by answer word",
                                ["answer"], registry=self.registry)
        self.refusals = Counter("sixbroker_update_refused", "Update requests refused, by reason", ["reason"],
                                registry=self.registry)
        self.applies = Histogram("sixbroker_apply_duration_seconds", "Time to bring the kernel and firewall in "
                                 "line after an update request moved a tunnel", buckets=APPLY_BUCKETS,
                                 registry=self.registry)
        for w in ANSWERS:
            self.requests.labels(answer=w)
        for r in REASONS:
            self.refusals.labels(reason=r)
        self.registry.register(_Collector(path, log or (lambda line: None), clock, alive_seconds, pop))

    def answered(self, a):
        """Count one answer (update.Answer)."""
        self.requests.labels(answer=a.word).inc()
        if a.word in REFUSED:
            self.refusals.labels(reason=a.reason or "other").inc()
        if a.apply_seconds is not None:
            self.applies.observe(a.apply_seconds)

    def refused(self, reason):
        """A request refused before it had an answer word (a body: 413)."""
        self.refusals.labels(reason=reason).inc()

    def text(self):
        """(body, content type) of a scrape."""
        import prometheus_client
        # our names are all of the classic character set, so the text is the 0.0.4 format that every
        # Prometheus reads (Debian 12's 2.42 among them); prometheus_client >= 0.22 labels it 1.0.0
        kind = getattr(prometheus_client, "CONTENT_TYPE_PLAIN_0_0_4", prometheus_client.CONTENT_TYPE_LATEST)
        return prometheus_client.generate_latest(self.registry), kind


class _Collector:
    """What is read at each scrape: the database and the traffic counters."""

    def __init__(self, path, log, clock, alive_seconds, pop=None):
        self.path = path
        self.pop = pop          # this broker's PoP: its tunnels, its kernel
        self.log = log
        self.clock = clock
        self.alive_seconds = alive_seconds

    def describe(self):
        return []       # read at scrape time only: nothing to check at registration

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        g = dict((name, GaugeMetricFamily(name, text, labels=labels)) for name, text, labels in (
            ("sixbroker_database_up", "1 when this scrape read the broker database", None),
            ("sixbroker_traffic_up", "1 when this scrape read the traffic counters (our nftables table)", None),
            ("sixbroker_tunnels", "Tunnels, by where each stands since the last apply", ["state"]),
            ("sixbroker_pool_used", "Prefixes handed out, by pool (transfer: /127s; routed: /64s or the unit)", ["pool"]),
            ("sixbroker_pool_size", "Prefixes a pool holds", ["pool"]),
            ("sixbroker_tunnel_up", "1 when the tunnel's peer sent protocol 41 within %d s" % self.alive_seconds,
             ["tunnel"]),
            ("sixbroker_tunnel_receive_idle_seconds", "Seconds since the peer's last protocol-41 packet (+Inf: none "
             "since the firewall table was loaded, or within 30 days)", ["tunnel"]),
            ("sixbroker_tunnel_last_update_timestamp_seconds", "When the tunnel's last update request came, labelled "
             "with its answer", ["tunnel", "answer"]),
            ("sixbroker_last_apply_duration_seconds", "How long the last apply of each command on this PoP took "
             "(`sixbroker server apply`, add, ...; serve: its follower's)", ["command"]),
            ("sixbroker_last_apply_timestamp_seconds", "When the last apply of each command on this PoP ended",
             ["command"]),
            ("sixbroker_last_apply_successful", "1 when the last apply of each command brought every tunnel in line",
             ["command"]),
            ("sixbroker_last_apply_failed_tunnels", "Tunnels the last apply of each command could not bring in line",
             ["command"]),
        ))
        c = dict((name, CounterMetricFamily(name, text, labels=["tunnel"])) for name, text in (
            ("sixbroker_tunnel_receive_packets", "Protocol-41 packets from the peer (outer IPv4)"),
            ("sixbroker_tunnel_receive_bytes", "Bytes of protocol-41 packets from the peer (outer IPv4: 20 more per "
             "packet than the IPv6 inside)"),
            ("sixbroker_tunnel_transmit_packets", "Protocol-41 packets to the peer (outer IPv4)"),
            ("sixbroker_tunnel_transmit_bytes", "Bytes of protocol-41 packets to the peer (outer IPv4)"),
        ))
        try:
            self._read(g, c)
            g["sixbroker_database_up"].add_metric([], 1)
        except (SixbrokerError, sqlite3.Error) as e:
            self.log("%s metrics: the database could not be read: %s" % (
                "sixbroker-serve:", getattr(e, "text", None) or e))
            g["sixbroker_database_up"].add_metric([], 0)
            g["sixbroker_traffic_up"].add_metric([], 0)
            yield g["sixbroker_database_up"]
            yield g["sixbroker_traffic_up"]
            return
        for family in list(g.values()) + list(c.values()):
            yield family

    def _read(self, g, c):
        conn = db.connect_readonly(self.path, self.pop, timeout=DB_TIMEOUT)
        try:
            tunnels = update.with_updates(conn, service.with_state(conn, service.views(conn)), 1)
            usage = service.server_view(conn)["usage"]
            read, why = health.reading(conn)
            runs = db.apply_runs(conn)
        finally:
            conn.close()
        for r in runs:
            label = [r["command"]]
            g["sixbroker_last_apply_duration_seconds"].add_metric(label, r["seconds"])
            g["sixbroker_last_apply_timestamp_seconds"].add_metric(label, health.unix(r["at"]))
            g["sixbroker_last_apply_successful"].add_metric(label, 1 if r["result"] == "ok" else 0)
            g["sixbroker_last_apply_failed_tunnels"].add_metric(label, r["failed"])
        if why is not None:
            self.log("sixbroker-serve: metrics: no traffic counters: " + why)
        g["sixbroker_traffic_up"].add_metric([], 0 if read is None else 1)
        states = dict((s, 0) for s in STATES)
        for t in tunnels:
            states[t["state"]] = states.get(t["state"], 0) + 1
        for s, n in sorted(states.items()):
            g["sixbroker_tunnels"].add_metric([s], n)
        for pool, used, size in (("transfer", usage["transfer_used"], usage["transfer_total"]),
                                 ("routed", usage["routed_64s_used"], usage["routed_64s_total"])):
            g["sixbroker_pool_used"].add_metric([pool], used)
            g["sixbroker_pool_size"].add_metric([pool], size)
        now = self.clock()
        for t in tunnels:
            name = [t["name"]]
            u = t["last_update"]
            if u is not None:
                g["sixbroker_tunnel_last_update_timestamp_seconds"].add_metric(name + [u["answer"]], health.unix(u["last"]))
            counts, h = health.of(t, read, now, self.alive_seconds)
            if h is None or t["remote"] is None:
                continue
            g["sixbroker_tunnel_up"].add_metric(name, 1 if h["alive"] else 0)
            idle = h["idle_seconds"]
            g["sixbroker_tunnel_receive_idle_seconds"].add_metric(name, float("inf") if idle is None else idle)
            counts = counts or dict.fromkeys(("rx_packets", "rx_bytes", "tx_packets", "tx_bytes"), 0)
            for family, key in (("receive_packets", "rx_packets"), ("receive_bytes", "rx_bytes"),
                                ("transmit_packets", "tx_packets"), ("transmit_bytes", "tx_bytes")):
                c["sixbroker_tunnel_" + family].add_metric(name, counts[key])


def timed_reconcile(conn, command, change=None):
    """reconcile.reconcile (or reconcile_change), with its duration and outcome recorded for /metrics
    (db.record_apply_run; exported as sixbroker_last_apply_*): the report, or the exception it raised."""
    started = time.monotonic()
    try:
        report = reconcile.reconcile(conn) if change is None else reconcile.reconcile_change(conn, change)
    except Exception as e:
        try:
            db.record_apply_run(conn, command, time.monotonic() - started, "error",
                                code=getattr(e, "code", None) or "INTERNAL_ERROR")
        except Exception:
            pass        # the apply's own error is the one to tell
        raise
    failed = len(report.get("failed") or [])
    db.record_apply_run(conn, command, time.monotonic() - started, "failed" if failed else "ok", failed)
    return report
