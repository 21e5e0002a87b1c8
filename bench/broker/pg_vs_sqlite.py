#!/usr/bin/env python3
"""The broker on PostgreSQL as ratios to SQLite: add, remove and apply at N = 1 and 1000 tunnels.

    .venv/bin/python bench/broker/pg_vs_sqlite.py [--sizes 1,1000] [--window 20]     (make bench-broker-pg)

Both in the same run: a SQLite file in a temporary directory, and a database of a throw-away PostgreSQL
(tests/pgserver.py: Debian's postgresql-15, initdb'd into a temporary directory, with fsync and
synchronous commits on, as SQLite's synchronous=FULL; over loopback: a database on another host adds its
round trips).  The applier is
a no-op that still receives every plan (bench_broker.py's NoOp), so the figures are the database's part:
"add" and "remove" are the transaction plus the reconcile the CLI runs after it, "apply" a full reconcile
at N tunnels.  Means over --window operations at each size.
"""

import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(ROOT, "src"), os.path.join(ROOT, "tests"), HERE]

import pgserver  # noqa: E402
from bench_broker import NoOp, fill, timed, window  # noqa: E402
from sixbroker.broker import db, reconcile, service  # noqa: E402

PREFIX = "2001:db8::/32"


def measure(target, sizes, size):
    conn = db.connect(target)
    service.init(conn, prefix=PREFIX, public_ipv4="203.0.113.10")
    out, n = {}, 0
    for want in sizes:
        fill(conn, n, want)
        n = want
        add, remove = window(conn, n, size, NoOp())
        apply = sum(timed(lambda: reconcile.reconcile(conn, NoOp()))[0] for _ in range(size)) / size
        out[want] = {"add": add, "remove": remove, "apply": apply}
    conn.close()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,1000")
    ap.add_argument("--window", type=int, default=20)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    why = pgserver.available()
    if why:
        sys.exit("bench: " + why)
    server = pgserver.Server(durable=True).start()
    try:
        with tempfile.TemporaryDirectory() as d:
            lite = measure(os.path.join(d, "broker.db"), sizes, args.window)
            pg = measure(server.create_db(), sizes, args.window)
    finally:
        server.destroy()
    print("%6s  %-7s %12s %12s %8s" % ("N", "", "SQLite ms", "PostgreSQL ms", "ratio"))
    for n in sizes:
        for what in ("add", "remove", "apply"):
            a, b = lite[n][what], pg[n][what]
            print("%6d  %-7s %12.2f %12.2f %8.2f" % (n, what, a * 1000, b * 1000, b / a))


if __name__ == "__main__":
    main()
