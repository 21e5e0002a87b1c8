#!/usr/bin/env python3
"""What the host-firewall check (broker/hostfw.py) adds to `apply` and `info`, by the number of tunnels.

    .venv/bin/python bench/broker/bench_hostfw.py [--sizes 1,100,1000] [--rounds 5]

Root (a throwaway network namespace; the host's nftables will do, no sit needed).  The namespace holds
ufw's, Docker's and firewalld's rule shapes (tests/host_firewalls.py) and our own table for N tunnels.
Printed per N, as a ratio to the baseline measured in the same run, one `nft -j list ruleset` process
(what reading every table would cost; the check lists the chains, then the other tables alone): "check" the whole check (the read, the JSON, three probes per
tunnel through every other table's base chains), "walk" the probes alone on a ruleset already read.
"""

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, "src"), os.path.join(ROOT, "tests")]

from sixbroker.core import addr, plan

from sixbroker.linux import apply_nft  # noqa: E402
from sixbroker.linux.netns import InNetns  # noqa: E402
from sixbroker.broker import hostfw  # noqa: E402
import host_firewalls  # noqa: E402

NETNS = "sb-bench-hostfw"


def plans(n):
    transfer = addr.Network.parse("2001:db8:5b00::/64")
    out = []
    for i in range(n):
        out.append(plan.broker("t%d" % i, "sbs-t%d" % i, addr.Address.parse("203.0.113.10"),
                               addr.Address.parse(addr.format_ipv4(0x64400001 + i)), transfer.subnet(127, i + 1),
                               [addr.Network.parse("2001:db8:5b00:%x::/64" % (i + 1))]))
    return out


def best(fn, rounds):
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,100,1000")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    try:
        with InNetns(NETNS):
            for text in (host_firewalls.UFW, host_firewalls.DOCKER_28, host_firewalls.FIREWALLD):
                subprocess.run(["nft", "-f", "-"], input=text, text=True, check=True)
        print("%6s %10s %8s %8s" % ("N", "nft -j (s)", "check", "walk"))
        for n in [int(x) for x in args.sizes.split(",")]:
            ps = plans(n)
            apply_nft.apply(ps, netns=NETNS)

            def read():
                with InNetns(NETNS):
                    subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, check=True)
            base = best(read, args.rounds)
            whole = best(lambda: hostfw.check(ps, "eth0", netns=NETNS), args.rounds)
            rs = hostfw.read(NETNS)
            walk = best(lambda: hostfw.check(ps, "eth0", ruleset=rs), args.rounds)
            print("%6d %10.4f %7.1fx %7.1fx" % (n, base, whole / base, walk / base))
    finally:
        subprocess.run(["ip", "netns", "del", NETNS])


if __name__ == "__main__":
    main(sys.argv[1:])
