#!/usr/bin/env python3
"""How `sixbroker server` scales with the number of tunnels.

    .venv/bin/python bench/broker/bench_broker.py [--sizes 1000,5000,10000]          # database + allocator
    .venv/bin/python tests/guest.py run -- .venv/bin/python bench/broker/bench_broker.py --real --sizes 100,300
    .venv/bin/python tests/guest.py run --timeout 900 -- .venv/bin/python bench/broker/bench_broker.py --vs-raw

--scale (make bench-scale) is issue 15's: both tunnel modes (one sit per tunnel, one shared NBMA sit) side by
side at 1, 1000 and 10,000 tunnels, ops, kernel memory and packets per second, as ratios to the raw commands of
each mode (scale.py says how).

--vs-raw (make bench-broker-guest) is issue 5's comparison: add, remove and apply at 1, 100 and 1000 tunnels as
a ratio to the raw ip/nft commands for the same plans, in the same guest run (vs_raw.py says how).

Without --real the applier is a no-op that still receives the whole desired state (plans for every
tunnel), so the numbers are sixbroker's own cost: the transaction, the allocator's SQL, building the plans.
With --real (root, a kernel with sit: the QEMU guest) every add reconciles the real kernel and nftables
in a namespace, as `sixbroker server add` does.

Printed per size N (the mean over --window operations at that size): "db add" the database transaction
alone (allocation included); "add" and "remove" with the reconcile that follows each, as the CLI does;
"desired" building the plans of all N tunnels; "apply cold" a full apply onto nothing (a reboot; with
--real an empty namespace), "apply warm" the same again with nothing to do.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "src")
sys.path.insert(0, SRC)

from sixbroker.core import addr  # noqa: E402
from sixbroker.broker import db, reconcile, service  # noqa: E402

NETNS = "sb-bench"


class NoOp:
    def kernel(self, state):
        return {"plans": len(state["plans"])}

    def firewall(self, state):
        return {}


def remote(i):
    # distinct IPv4 peers out of 100.64.0.0/10 (4M of them; the bench never sends a packet), hence
    # allow_private: a real broker refuses CGNAT remotes
    return addr.format_ipv4(0x64400000 + 1 + i)


def fill(conn, start, stop):
    for i in range(start, stop):
        service.add(conn, "t%d" % i, remote(i), allow_private=True)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def window(conn, n, size, applier):
    """Mean seconds of one add, then of one remove, at n tunnels (each followed by a reconcile when an
    applier is given, as `sixbroker server add/remove` do)."""
    adds, removes = 0.0, 0.0
    for i in range(n, n + size):
        adds += timed(lambda: service.add(conn, "t%d" % i, remote(i), allow_private=True))[0]
        if applier is not None:
            adds += timed(lambda: reconcile.reconcile(conn, applier))[0]
    for i in range(n, n + size):
        removes += timed(lambda: service.remove(conn, "t%d" % i))[0]
        if applier is not None:
            removes += timed(lambda: reconcile.reconcile(conn, applier))[0]
    return adds / size, removes / size


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", help="tunnel counts (default 1000,5000,10000; with --vs-raw 1,100,1000)")
    ap.add_argument("--window", type=int, help="adds and removes timed at each size (default 50; --vs-raw 3)")
    ap.add_argument("--real", action="store_true", help="reconcile the real kernel and nftables (root, sit)")
    ap.add_argument("--vs-raw", action="store_true",
                    help="add/remove/apply as ratios to the raw ip -batch and nft commands (root, sit)")
    ap.add_argument("--scale", action="store_true",
                    help="both tunnel modes side by side, ratios to their raw commands (root, sit, memory; issue 15)")
    ap.add_argument("--modes", default="per-tunnel,shared", help="with --scale: the modes to measure")
    ap.add_argument("--per-tunnel-broker-max", type=int, default=1000,
                    help="with --scale: above this N the per-tunnel broker is not run (O(N^2) to build), raw only")
    ap.add_argument("--per-tunnel-max", type=int, default=1000,
                    help="with --scale: above this N the per-tunnel mode is not run at all")
    ap.add_argument("--neighbour", action="store_true",
                    help="with --vs-raw: the broker's commands with another nftables user changing its own table "
                    "before each, as ratios to the same without (issue 12)")
    args = ap.parse_args()
    if args.scale:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import scale
        sizes = [int(s) for s in (args.sizes or "1,1000,10000").split(",")]
        return scale.main(sizes, args.window or 3, SRC, args.modes.split(","), args.per_tunnel_broker_max,
                          args.per_tunnel_max)
    if args.vs_raw:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import vs_raw
        sizes = [int(s) for s in (args.sizes or "1,100,1000").split(",")]
        if args.neighbour:
            return vs_raw.neighbour_main(sizes, args.window or 3, SRC)
        return vs_raw.main(sizes, args.window or 3, SRC)
    sizes = [int(s) for s in (args.sizes or "1000,5000,10000").split(",")]
    args.window = args.window or 50

    tmp = tempfile.mkdtemp(prefix="sixbroker-bench-")
    path = os.path.join(tmp, "broker.db")
    conn = db.connect(path)
    netns = None
    if args.real:
        netns = NETNS
        subprocess.run(["ip", "netns", "del", netns], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "add", netns], check=True)
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", netns, "addr", "add", "203.0.113.10/24", "dev", "lo"], check=True)
        applier = reconcile.KernelAndNft()
    else:
        applier = NoOp()
    # a /40: 16M /64s, room for any size here
    service.init(conn, prefix="2001:db8:5b00::/40", public_ipv4="203.0.113.10", netns=netns)
    print("sixbroker server bench (%s applier), database %s" % ("real" if args.real else "no-op", path))
    print("%8s %10s %10s %10s %10s %12s %12s" % ("tunnels", "db add", "add", "remove", "desired",
                                                "apply cold", "apply warm"))
    print("%8s %10s %10s %10s %10s %12s %12s" % ("", "ms", "ms", "ms", "ms", "s", "s"))
    have = 0
    try:
        for n in sizes:
            # grow to n without reconciling each time: how we get there is not what is measured
            fill(conn, have, n)
            have = n
            db_add, _ = window(conn, n, args.window, None)
            desired = min(timed(lambda: reconcile.desired(conn))[0] for _ in range(3))
            if args.real:
                from sixbroker.linux import apply_kernel, apply_nft, nft_table
                apply_kernel.remove_all(netns, scope=reconcile.KernelAndNft.SCOPE)
                apply_nft.remove(nft_table.TABLE, netns)
            # cold: onto an empty namespace (a reboot); warm: nothing left to do
            cold, first = timed(lambda: reconcile.reconcile(conn, applier))
            warm, second = timed(lambda: reconcile.reconcile(conn, applier))
            if args.real:
                assert len(first["kernel"]["changes"]) >= n
                assert second["kernel"]["changes"] == [] and not second["firewall"]["changed"], second
            add, remove = window(conn, n, args.window, applier)
            print("%8d %10.2f %10.1f %10.1f %10.1f %12.2f %12.2f" % (
                n, db_add * 1000, add * 1000, remove * 1000, desired * 1000, cold, warm), flush=True)
    finally:
        conn.close()
        if args.real:
            subprocess.run(["ip", "netns", "del", netns])
        for name in os.listdir(tmp):
            os.unlink(os.path.join(tmp, name))
        os.rmdir(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
