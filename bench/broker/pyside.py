#!/usr/bin/env python3
"""Issue 15: the Python side of `sixbroker server` by the number of tunnels, on the host (no sit needed).

    .venv/bin/python bench/broker/pyside.py [--sizes 1,1000,10000] [--modes per-tunnel,shared] [--profile]

Root (a throwaway network namespace with its own nftables).  The host kernel has no sit, so the kernel
applier (apply_kernel: netlink, measured in the guest by bench-scale) is replaced by one that touches nothing
and whose fingerprint never moves, so the incremental and "nothing to do" paths run as on a real broker;
everything else is real and runs as `sixbroker server` runs it (cli.main in-process: the lock, the SQLite
database, the plans, our nftables table loaded and changed by `nft`, the host-firewall check reading the
namespace's other tables, the JSON).  The namespace holds ufw's rule shapes (tests/host_firewalls.py), so
the host-firewall check has chains to walk, as on a VPS with a firewall; ufw's forward policy drop meets
every tunnel, the worst case for the check's report.

Printed per mode and N (N tunnels in the database, peers spread over one /8; the database's making is not
measured):
- apply: `sixbroker server apply` onto an empty namespace (cold), and again with nothing to change (no-op);
- add, remove, set --remote: one tunnel on top of the N (median of --window rounds);
each as a ratio to N = 1 of the same mode, and the applies' time per tunnel, also as a ratio to that at the
middle size (1000): linear work reads 1.00x there, work that grows faster than N more.
The targets (issue 15): apply per tunnel flat, one tunnel's change flat (<= 1.2x of N = 1 at 10,000).
--profile: the cProfile of each operation at the largest N, its top functions by own time.
"""

import argparse
import cProfile
import io
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, "src"), os.path.join(ROOT, "tests"), os.path.dirname(os.path.abspath(__file__))]

from sixbroker.core import addr  # noqa: E402
from sixbroker.linux import netns as netns_mod  # noqa: E402
from sixbroker.broker import cli, db, reconcile, service  # noqa: E402
import host_firewalls  # noqa: E402
import vs_raw  # noqa: E402
from vs_raw import LOCAL, PREFIX, sixbroker  # noqa: E402

NETNS = "sb-pyside"


class NoKernel(reconcile.KernelAndNft):
    """The real nftables, host-firewall check and sysctls; a kernel step that changes nothing and whose
    fingerprint never moves (the host has no sit): what is left is the Python around it."""

    def kernel(self, state):
        self.foreign = []
        self.fingerprint = 0
        return {"changes": ["%s" % p["tunnel"]["device"] for p in state["plans"]], "foreign_tunnels": [],
                "failed": {}}

    def kernel_change(self, state, devices):
        return {"changes": sorted(devices), "failed": {}}, 0

    def kernel_fingerprint(self, netns):
        return 0

    def migrate(self, state, old_mode, new_mode):
        return {}, {}


def remote(i):
    # peers spread over 100.0.0.0/8 (a multiplicative stride, as one ISP's homes); no packet is sent
    a = 0x64000000 + ((i * 2654435761 + 1) % 0xFFFFFE) + 1
    return addr.format_ipv4(a)


def fresh_ns():
    vs_raw.fresh_ns(NETNS)
    with netns_mod.InNetns(NETNS):
        subprocess.run(["nft", "-f", "-"], input=host_firewalls.UFW, text=True, check=True)


def seed(tmp, n, mode, seeded):
    """A database of n tunnels in this mode: made by `init` and n service.add()s (synchronous off: the
    making is not measured) once per n, then copied for the other mode with its tunnel_mode changed (nothing
    is applied yet, so no tunnel has to move)."""
    path = os.path.join(tmp, "%s-%d.db" % (mode, n))
    if n in seeded:
        shutil.copy(seeded[n], path)
        conn = db.connect(path)
        try:
            with db.transaction(conn):
                conn.execute("UPDATE server SET tunnel_mode = ?", (mode,))
        finally:
            conn.close()
        return path
    sixbroker(path, "init", "--prefix", PREFIX, "--public-ipv4", LOCAL, "--netns", NETNS, "--tunnel-mode", mode)
    conn = db.connect(path)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        for i in range(n):
            service.add(conn, "t%d" % i, remote(i), allow_private=True)
    finally:
        conn.close()
    seeded[n] = path
    return path


def timed(fn, profile=None):
    if profile is not None:
        profile.enable()
    t = time.perf_counter()
    out = fn()
    s = time.perf_counter() - t
    if profile is not None:
        profile.disable()
    return s, out


def measure(tmp, n, mode, window, seeds, profiles=None):
    """{op: seconds} at n tunnels in one mode, and the seconds its database took to make."""
    fresh_ns()
    t = time.perf_counter()
    path = seed(tmp, n, mode, seeds)
    seeded = time.perf_counter() - t
    prof = (lambda op: profiles.setdefault(op, cProfile.Profile())) if profiles is not None else (lambda op: None)
    out = {}
    out["apply"], first = timed(lambda: sixbroker(path, "apply"), prof("apply"))
    assert first["apply"]["firewall"]["changed"] and len(first["apply"]["kernel"]["changes"]) == n, first
    out["apply no-op"], second = timed(lambda: sixbroker(path, "apply"), prof("apply no-op"))
    assert second["apply"].get("unchanged"), second["apply"]
    name = "x%d" % n
    ops = {"add": [], "set --remote": [], "remove": []}
    for r in range(window):
        s, res = timed(lambda: sixbroker(path, "add", name, "--remote", remote(n + 2 * r), "--allow-private"),
                       prof("add"))
        assert res["apply"].get("incremental") or n == 0, res["apply"]
        ops["add"].append(s)
        s, res = timed(lambda: sixbroker(path, "set", name, "--remote", remote(n + 2 * r + 1), "--allow-private"),
                       prof("set --remote"))
        assert res["apply"].get("incremental"), res["apply"]
        ops["set --remote"].append(s)
        s, res = timed(lambda: sixbroker(path, "remove", name), prof("remove"))
        assert res["apply"].get("incremental") or n == 0, res["apply"]
        ops["remove"].append(s)
    for op, times in ops.items():
        out[op] = statistics.median(times)
    return out, seeded


SORT = os.environ.get("PYSIDE_SORT", "tottime")
OPS = ("apply", "apply no-op", "add", "remove", "set --remote")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,1000,10000")
    ap.add_argument("--modes", default="per-tunnel,shared")
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="cProfile of each operation at the largest N")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.stderr.write("needs root (a network namespace with its own nftables)\n")
        return 2
    sizes = [int(s) for s in args.sizes.split(",")]
    reconcile.APPLIER = NoKernel()
    tmp = tempfile.mkdtemp(prefix="sixbroker-pyside-")
    print("sixbroker server, the Python side (kernel applier left out; real SQLite, nft, host-firewall check)")
    print("ops: median of %d; ratios to N = %d of the same mode, in this run" % (args.window, sizes[0]))
    mid = sizes[1] if len(sizes) > 2 else sizes[-1]
    head = "%-10s %6s  %-13s %9s %10s %10s %12s" % ("mode", "N", "operation", "s", "vs N=%d" % sizes[0],
                                                   "ms/tunnel", "vs N=%d" % mid)
    seeds = {}
    try:
        for mode in args.modes.split(","):
            print()
            print(head)
            print("-" * len(head))
            base, middle = None, None
            for n in sizes:
                profiles = {} if args.profile and n == sizes[-1] else None
                got, seeded = measure(tmp, n, mode, args.window, seeds, profiles)
                base = base or got
                if n == mid:
                    middle = got
                for op in OPS:
                    per = vs_mid = ""
                    if op.startswith("apply") and n:
                        per = "%.3f" % (got[op] / n * 1000)
                        if middle is not None and n > 1:
                            vs_mid = "%.2fx" % ((got[op] / n) / (middle[op] / mid))
                    print("%-10s %6d  %-13s %9.3f %9.2fx %10s %12s" % (mode, n, op, got[op], got[op] / base[op],
                                                                     per, vs_mid), flush=True)
                print("%-10s %6s  (making the database: %.1f s, not counted)" % ("", "", seeded))
                if profiles:
                    for op in OPS:
                        s = io.StringIO()
                        pstats.Stats(profiles[op], stream=s).sort_stats(SORT).print_stats(12)
                        print("--- profile: %s %s at N = %d" % (mode, op, n))
                        print("\n".join(s.getvalue().splitlines()[:30]))
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
