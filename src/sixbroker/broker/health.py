"""Tunnel health: each tunnel's traffic and whether its peer is heard from, as `list`, `show` and /metrics see it.

A tunnel is alive when its peer sent protocol 41 within traffic.ALIVE_SECONDS (300 s): a home router
with an idle LAN may send nothing for minutes, so the sample alert (files/broker/sixbroker.rules.yml)
waits for ten.  The figures come from our nftables table through the applier (linux/traffic.py); a test's
fake applier has none, and then `traffic` and `health` say nothing (None) rather than "dead".
"""

import calendar
import time

from sixbroker.broker import db, reconcile
from sixbroker.core.errors import SixbrokerError
from sixbroker.linux import traffic as _traffic

ALIVE_SECONDS = _traffic.ALIVE_SECONDS


def reading(conn):
    """(read, None), or (None, why) when the table cannot be read (no real applier, nft failing)."""
    a = reconcile.applier()
    if not hasattr(a, "traffic"):
        return None, "no traffic counters (this applier has none)"
    try:
        return a.traffic(db.server(conn)["netns"]), None
    except SixbrokerError as e:
        return None, "%s: %s" % (e.code, e.text)


def stamp(seconds):
    """A Unix time in the database's form (db.now())."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def unix(text):
    """A db.now() stamp as Unix seconds."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def of(t, read, now, alive_seconds=_traffic.ALIVE_SECONDS):
    """(traffic, health) of one tunnel view: plain data, None without a reading."""
    if read is None:
        return None, None
    entry = _traffic.of_tunnel(read, t["local"], t["remote"])
    idle = entry["idle_seconds"] if entry else None
    counts = dict((f, entry[f]) for f in _traffic.FIELDS) if entry else None
    return counts, {"alive": _traffic.alive(entry, alive_seconds), "alive_seconds": alive_seconds,
                    "idle_seconds": idle, "last_packet": stamp(now - idle) if idle is not None else None}


def with_health(conn, tunnels, now=None):
    """Each view with t["traffic"] ({rx,tx}_{packets,bytes}: outer IPv4 packets, see linux/traffic.py) and
    t["health"] ({alive, alive_seconds, idle_seconds, last_packet}); both None when there is no reading."""
    read, _ = reading(conn)
    now = time.time() if now is None else now
    for t in tunnels:
        t["traffic"], t["health"] = of(t, read, now)
    return tunnels


def ago(seconds):
    """seconds as a person reads a time since: 45s, 12m, 3h, 2d."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return "%d%s" % (seconds // size, unit)
    return "%ds" % seconds
