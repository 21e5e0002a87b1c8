"""Issue 15: both tunnel modes side by side at N tunnels, as ratios to the raw commands for the same plans.

    .venv/bin/python tests/guest.py run --mem 3G --timeout 3000 -- \\
        .venv/bin/python bench/broker/bench_broker.py --scale --sizes 1,1000,10000      # make bench-scale

Root and a kernel with sit (the QEMU guest, with the memory 10,000 devices need: ~52 KB each).

The modes: "per-tunnel" is one sit device per tunnel (the seed's, PerTunnelSit); "shared" is one NBMA sit
device (`local` only) with each tunnel's routes `via ::a.b.c.d` (its peer as an IPv4-compatible next hop)
and `mtu` on the routes.  The raw baseline of each mode, in a namespace of its own in the same run:
- per-tunnel: to_commands() of the broker's plans through one `ip -batch`, and one `nft -f` of the table
  the broker itself loads (nft_table.ruleset), as bench/broker/vs_raw.py does;
- shared: the broker's own mapping (sit.SharedSit: the shared device, each tunnel's server transfer
  address as a local route and its routes `via ::PEER ... mtu lock M`) written out as `ip -batch` lines, and one `nft -f` of the
  broker's own shared table (nft_table.ruleset(shared=)); one tunnel's nft change is the element text
  nft_table.change_text gives, which is what a person would type (`add element`/`delete element`).
The broker: `sixbroker server` called in-process (cli.main: the lock, the database, the reconcile with the
real appliers, the JSON), in its own namespace, initialised with --tunnel-mode when the mode is not the
default.

Rows at N (the N tunnels installed, the Nth one is the one operated on; ratio = broker / raw):
- add: the marginal add, one more tunnel on top of N-1 installed (the Nth, removed just before).  Raw
  per-tunnel: its ip -batch lines + `nft add element` of its peer; raw shared: its route lines + its
  elements.  Broker: `sixbroker server add`.  The issue's target compares shared add at 10,000 with at 1.
- remove: the Nth tunnel.  Raw: `ip link del` / its `route del` lines, and its elements deleted.
- set --remote: the Nth tunnel's peer moves.  Raw: `ip tunnel change DEV remote NEW` / its routes replaced
  via the new peer, and its elements swapped.
- apply cold: all N from nothing (a reboot); raw: the one ip -batch + nft -f.
- apply no-op: `sixbroker server apply` with nothing to change, compared with the raw creation.
- kmem KB/tunnel: the kernel's memory (Slab + Percpu + VmallocUsed from /proc/meminfo, caches dropped
  before each reading) grown by creating the N, divided by N; broker against raw.
- pps: packets per second through one tunnel (the OLDEST, t0: sit hashes a peer by its first octet only
  and puts new tunnels at the head of the chain, so the first one installed is the whole walk back) with
  the N-1 others installed, as a ratio to the same tunnel alone (N = 1, the same mode) in a second
  namespace measured in alternate rounds, so load from other work on the machine falls on both alike
  (sit's hash chains are per namespace).  Measured on the raw namespaces (the same kernel objects the
  broker makes, and the broker's own nft table in per-tunnel mode).
  The peers are spread over one /8 (100.0.0.0/8, a multiplicative stride) as one ISP's homes would be.

The traffic: `ping -6 -f -l 32` from a home namespace (its own sit to the broker's address, sourcing from
its routed /64) to an address of the broker namespace, over a veth.  ping is C and keeps 32 echoes in
flight, so the rate is the kernel's per-packet path and not the sender: each echo is one 6in4 receive (the
sit lookup, the nft peer check), one local delivery and one reply routed back into the tunnel and
encapsulated (per-tunnel: the device's route; shared: the route via ::PEER and its NOARP neighbour).  The
home end has one tunnel at every N, so all that changes with N is the broker side.  A Python sender would
measure the interpreter (tens of microseconds a packet under TCG); pktgen cannot build protocol-41 payloads.
Rate = received / ping's own elapsed time (1000 echoes), the median of 9 short rounds on each side: the
machine's other load changes within seconds, and short alternating rounds share it out most evenly.

Bounding the per-tunnel mode: creating N sit devices is O(N^2) (each add walks every device; ~90 ms each
near 10,000 under TCG; in this shared machine's guest ip -batch of 1000 took 45 s, so 10,000 would take
over an hour, the broker's cold apply as long again).  Above --per-tunnel-max (default 1000) the per-tunnel
mode is not run at all, and the output says so; between --per-tunnel-broker-max and it only the raw side
(ip -batch installs the N, then the marginal ops, the memory and the packet rate).
"""

import ipaddress
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from sixbroker.linux import nft_table, sysctl
from sixbroker.linux.sit import SHARED_MTU, SharedSit
from sixbroker.broker import db, service

import vs_raw
from vs_raw import BROKER_NS, LOCAL, PREFIX, RAW_NS, batch_lines, fresh_ns, ratio, run_in, sixbroker, timed

MODES = ("per-tunnel", "shared")
HOME_NS = "sb-home"
REF_NS = "sb-ref"                   # one tunnel alone: the N = 1 of the packet rate, measured alongside
REF_BROKER_NS = "sb-brk-ref"        # a two-tunnel broker: the base of the shared ops at N, measured alongside
HOME_REF = "sb-home-ref"
TARGET6 = "2001:db8:ffff::1"        # the broker namespace's address the home pings, the same in both modes
PINGS = 1000                        # echoes per run


def remote(i):
    """Tunnel i's peer: spread over 100.0.0.0/8 by a stride prime to 2^24 - 2 (distinct for every i here),
    so every octet after the first varies, as one ISP's customers' addresses do."""
    a = 0x64000000 + 1 + (i * 1657) % 0xFFFFFE
    return "%d.%d.%d.%d" % (a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255)


def moved(i):
    """Tunnel i's peer after `set --remote`: out of the same /8, and no tunnel's peer at these sizes."""
    return remote(i + 0x7FFFFF)


# ---- the raw shared mode -------------------------------------------------------------------------------
# The broker's own mapping (sit.SharedSit: which routes each plan puts on the shared device)
# written out as the iproute2 lines a person would type, as plan_commands.to_commands() does for one device
# per tunnel; the nftables side is the broker's own shared table and, for one tunnel, the element changes.

def _mapping():
    return SharedSit(service.SHARED_DEVICE)


def shared_device_lines(plans):
    q = _mapping().links(plans)[0].params
    return ["tunnel add %s mode sit local %s ttl %d" % (service.SHARED_DEVICE, q["local"], q["ttl"]),
            "link set %s mtu %d up" % (service.SHARED_DEVICE, SHARED_MTU)]


def shared_lines(plans, verb="add", via=None):
    """`ip -batch` lines of the tunnels' routes on the shared device (verb add, del or replace; via: the
    peer to route to instead of the plan's, as after `set --remote`, which changes no local route)."""
    m, lines = _mapping(), []
    for p in plans:
        if via:
            p = dict(p, tunnel=dict(p["tunnel"], remote=via))
        lines += ["route %s %s" % (verb, r.text()) for r in m.tunnel_routes(p) if not (via and r.local)]
    return lines


def shared_table(plans):
    return nft_table.ruleset(plans, shared=service.SHARED_DEVICE)


def shared_change(before, after, other):
    """The nft text of one tunnel's element changes (the broker's own, nft_table.change_text)."""
    text = nft_table.change_text(before, after, other, shared=service.SHARED_DEVICE)
    assert text is not None, "a one-tunnel change that is not elements alone"
    return text


# ---- measuring -----------------------------------------------------------------------------------------

def kmem_kb():
    """The kernel's own memory now (KB): Slab + Percpu + VmallocUsed, after dropping the caches so dentries
    and page cache do not count."""
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            info[k] = int(v.split()[0])
    return info["Slab"] + info.get("Percpu", 0) + info.get("VmallocUsed", 0)


def settle():
    """Wait until the kernel has finished tearing down deleted namespaces (cleanup_net runs after `ip netns
    del` returns): the memory reading must not see it."""
    last = kmem_kb()
    for _ in range(120):
        time.sleep(0.5)
        now = kmem_kb()
        if abs(now - last) < 256:
            return
        last = now


def installed(ns, mode):
    """How many tunnels the kernel holds in ns: sit devices of ours, or routes via an IPv4-compatible peer."""
    if mode == "per-tunnel":
        out = run_in(ns, ["ip", "-o", "link", "show", "type", "sit"]).stdout
        return sum(1 for ln in out.splitlines() if service.DEVICE_PREFIX in ln.split(":")[1])
    out = run_in(ns, ["ip", "-6", "route", "show"]).stdout
    return len({m.group(1) for m in re.finditer(r" via ::(\d+\.\d+\.\d+\.\d+) ", out)})


def drop_ns(*names):
    for ns in names:
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


def raw_build(mode, plans, ns=RAW_NS):
    """A fresh raw namespace holding the plans: (ip -batch s, nft -f s, kernel KB grown)."""
    fresh_ns(ns)
    sysctl.apply([["net.ipv6.conf.all.forwarding", "1"]], ns)
    if mode == "per-tunnel":
        lines, table = batch_lines(plans), nft_table.ruleset(plans)
    else:
        lines, table = shared_device_lines(plans) + shared_lines(plans), shared_table(plans)
    before = kmem_kb()
    ip_s, _ = timed(lambda: run_in(ns, ["ip", "-batch", "-"], "\n".join(lines) + "\n"))
    nft_s, _ = timed(lambda: run_in(ns, ["nft", "-f", "-"], table))
    grown = kmem_kb() - before
    assert installed(ns, mode) == len(plans), (mode, installed(ns, mode), len(plans))
    return ip_s, nft_s, grown


def raw_ops(mode, last, other, window):
    """([remove s], [add s], [set --remote s]) of the last tunnel in the raw namespace, window rounds."""
    ip_batch = ["ip", "-batch", "-"]
    if mode == "per-tunnel":
        dev = last["tunnel"]["device"]
        set_ref = [nft_table.FAMILY, nft_table.TABLE, nft_table.PEERS]
        add_lines = "\n".join(batch_lines([last])) + "\n"

        def remove():
            run_in(RAW_NS, ["ip", "link", "del", "dev", dev])
            run_in(RAW_NS, ["nft", "delete", "element"] + set_ref + [vs_raw.peer_element(last)])

        def add():
            run_in(RAW_NS, ip_batch, add_lines)
            run_in(RAW_NS, ["nft", "add", "element"] + set_ref + [vs_raw.peer_element(last)])

        def peer_at(peer):
            return vs_raw.peer_element(dict(last, tunnel=dict(last["tunnel"], remote=peer)))

        def set_remote(new, old=last["tunnel"]["remote"]):
            run_in(RAW_NS, ["ip", "tunnel", "change", dev, "remote", new])
            ref = " ".join(set_ref)
            run_in(RAW_NS, ["nft", "-f", "-"], "delete element %s %s\nadd element %s %s\n" % (
                ref, peer_at(old), ref, peer_at(new)))
    else:
        def at(peer):
            return dict(last, tunnel=dict(last["tunnel"], remote=peer))

        def remove():
            run_in(RAW_NS, ip_batch, "\n".join(shared_lines([last], "del")) + "\n")
            run_in(RAW_NS, ["nft", "-f", "-"], shared_change([last], [], other))

        def add():
            run_in(RAW_NS, ip_batch, "\n".join(shared_lines([last])) + "\n")
            run_in(RAW_NS, ["nft", "-f", "-"], shared_change([], [last], other))

        def set_remote(new, old=last["tunnel"]["remote"]):
            run_in(RAW_NS, ip_batch, "\n".join(shared_lines([last], "replace", via=new)) + "\n")
            run_in(RAW_NS, ["nft", "-f", "-"], shared_change([at(old)], [at(new)], other))

    removes, adds, sets = [], [], []
    for k in range(window):
        removes.append(timed(remove)[0])
        adds.append(timed(add)[0])
        new = moved(k)
        sets.append(timed(lambda: set_remote(new))[0])
        # back to the plan's peer, untimed, so the next round removes what the plan says
        set_remote(last["tunnel"]["remote"], new)
    return removes, adds, sets


def broker_run(mode, tmp, n, window, ref=False):
    """The broker in its own namespace with n tunnels: (plans, cold s, no-op s, kernel KB grown, [remove s],
    [add s], [set s], ref).  With ref, a second broker holding two tunnels (the same mode) in a namespace
    of its own takes the same remove/add/set of its second in alternate rounds (ABBA), so the load from
    other work on the machine falls on both alike: ref is its ([remove s], [add s], [set s]).  Two, not
    one: the add at N = 1 also makes the shared device and loads the whole table, which flatters every
    larger N; the second tunnel's add is the first that is only a tunnel's routes and elements."""
    fresh_ns(BROKER_NS)
    path = tempfile.mkstemp(suffix=".db", prefix="broker-%s-%d-" % (mode, n), dir=tmp)[1]
    os.unlink(path)
    init = ["--tunnel-mode", mode] if mode != "per-tunnel" else []
    plans = vs_raw.seed(path, n, remote, init)
    before = kmem_kb()
    cold, _ = timed(lambda: sixbroker(path, "apply"))
    grown = kmem_kb() - before
    assert installed(BROKER_NS, mode) >= n, (mode, installed(BROKER_NS, mode), n)
    warm, second = timed(lambda: sixbroker(path, "apply"))
    assert not second["apply"]["kernel"]["changes"], second
    sides = [(path, n, ([], [], []))]
    if ref:
        fresh_ns(REF_BROKER_NS)
        ref_path = path[:-3] + "-ref.db"
        vs_raw.seed(ref_path, 2, remote, init, ns=REF_BROKER_NS)
        sixbroker(ref_path, "apply")
        sides.append((ref_path, 2, ([], [], [])))
    for k in range(window):
        for side_path, side_n, (removes, adds, sets) in (sides if k % 2 == 0 else sides[::-1]):
            name, peer = "t%d" % (side_n - 1), remote(side_n - 1)
            removes.append(timed(lambda: sixbroker(side_path, "remove", name))[0])
            adds.append(timed(lambda: sixbroker(side_path, "add", name, "--remote", peer, "--allow-private"))[0])
            new = moved(k)
            sets.append(timed(lambda: sixbroker(side_path, "set", name, "--remote", new, "--allow-private"))[0])
            sixbroker(side_path, "set", name, "--remote", peer, "--allow-private")
    assert installed(BROKER_NS, mode) >= n, (mode, installed(BROKER_NS, mode), n)
    removes, adds, sets = sides[0][2]
    return plans, cold, warm, grown, removes, adds, sets, (sides[1][2] if ref else None)


def plans_of(tmp, n):
    """The plans of n tunnels (the broker's own, from a database nobody applies)."""
    path = tempfile.mkstemp(suffix=".db", prefix="plans-%d-" % n, dir=tmp)[1]
    os.unlink(path)
    conn = db.connect(path)
    try:
        service.init(conn, prefix=PREFIX, public_ipv4=LOCAL, netns=None)
        for i in range(n):
            service.add(conn, "t%d" % i, remote(i), allow_private=True)
        return service.plans(conn)[1]
    finally:
        conn.close()


def home_of(ns, home, plan):
    """A home namespace `home` behind plan's tunnel to ns, over a veth; returns its source address (in its
    routed /64, as a LAN host behind the home would send from)."""
    t = plan["tunnel"]
    home_src = plan["routes"][0]["target"] + "1"
    drop_ns(home)
    subprocess.run(["ip", "netns", "add", home], check=True)
    run_in(ns, ["ip", "link", "add", "v-brk", "type", "veth", "peer", "name", "v-home", "netns", home])
    run_in(ns, ["ip", "-batch", "-"], "\n".join([
        "link set v-brk up", "route add %s/32 dev v-brk" % t["remote"],
        "addr add %s/128 dev lo" % TARGET6]) + "\n")
    run_in(home, ["ip", "-batch", "-"], "\n".join([
        "link set lo up", "link set v-home up", "addr add %s/32 dev v-home" % t["remote"],
        "route add %s/32 dev v-home" % t["local"],
        "tunnel add h6 mode sit local %s remote %s ttl 64" % (t["remote"], t["local"]),
        "link set h6 mtu %d up" % t["mtu"], "addr add %s/64 dev h6" % home_src,
        "route add ::/0 dev h6"]) + "\n")
    return home_src


def flood(home, home_src):
    """(echoes per second, lost) of one ping flood from home."""
    out = run_in(home, ["ping", "-6", "-q", "-f", "-l", "32", "-c", str(PINGS), "-w", "60",
                        "-I", home_src, TARGET6]).stdout
    m = re.search(r"(\d+) packets transmitted, (\d+) received.*time (\d+)ms", out)
    sent, got, ms = int(m.group(1)), int(m.group(2)), int(m.group(3))
    return got / (ms / 1000.0), sent - got


def packet_rate(mode, plans, rounds=9):
    """(median pps through plans[0]'s tunnel in RAW_NS with all the plans installed, median pps through the
    same tunnel in a namespace holding it alone, lost).  The two are measured in alternate rounds, so load
    from elsewhere on the machine falls on both alike; sit's tables are per namespace, so the lone one is
    a true N = 1."""
    raw_build(mode, plans[:1], REF_NS)
    homes = [(HOME_NS, home_of(RAW_NS, HOME_NS, plans[0])), (HOME_REF, home_of(REF_NS, HOME_REF, plans[0]))]
    rates, loss = ([], []), 0
    try:
        for i in range(rounds):
            # ABBA: whichever goes first in a round is not always the same one
            for k, (home, src) in (enumerate(homes) if i % 2 == 0 else reversed(list(enumerate(homes)))):
                pps, lost = flood(home, src)
                rates[k].append(pps)
                loss += lost
    finally:
        drop_ns(HOME_NS, HOME_REF, REF_NS)
    return statistics.median(rates[0]), statistics.median(rates[1]), loss


def shared_broker_available(tmp):
    """Whether this checkout's `sixbroker server init` knows --tunnel-mode (issue 15's shared mode)."""
    import contextlib
    import io
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            sixbroker(os.path.join(tmp, "probe.db"), "init", "--prefix", PREFIX, "--public-ipv4", LOCAL,
                      "--tunnel-mode", "shared")
    except (SystemExit, RuntimeError):
        return False
    return True


# ---- the table -----------------------------------------------------------------------------------------

def fmt(x, unit):
    if x is None:
        return "-"
    return ("%.1f" % x) if unit == "KB" else ("%.0f" % x if unit == "pps" else "%.3f" % x)


def main(sizes, window, src, modes=MODES, per_tunnel_broker_max=1000, per_tunnel_max=1000):
    if os.geteuid() != 0:
        sys.stderr.write("--scale needs root and a kernel with sit (run it in the guest: make bench-scale)\n")
        return 2
    tmp = tempfile.mkdtemp(prefix="sixbroker-scale-")
    vs_raw.raise_neigh_thresholds()
    with_shared = shared_broker_available(tmp)
    with open("/proc/meminfo") as f:
        memtotal = f.readline().split()[1]
    print("issue 15: per-tunnel vs shared sit, ratios to the raw commands for the same plans, one run (%s, "
          "MemTotal %s kB, %d CPUs)" % ("QEMU guest" if os.environ.get("SIXBROKER_GUEST") == "1" else "this host",
                                        memtotal, os.cpu_count()))
    print("ops: median of %d, the Nth tunnel on top of N-1 installed; kmem: Slab+Percpu+VmallocUsed grown per "
          "tunnel; pps: ping -f -l 32 through the oldest tunnel, peers over 100.0.0.0/8" % window)
    if not with_shared:
        print("shared broker: not in this checkout (no `init --tunnel-mode`); shared rows are the raw commands only")
    print("per-tunnel bounded (creating N devices is O(N^2)): broker to N <= %d, raw to N <= %d" % (
        per_tunnel_broker_max, per_tunnel_max))
    print()
    head = "%6s  %-10s  %-13s %10s %10s %8s" % ("N", "mode", "operation", "raw", "broker", "ratio")
    print(head)
    print("-" * len(head))
    results = {}
    try:
        # a round nobody sees: the first run of ip, nft and the CLI's paths read them in over 9p and load
        # the nft modules of each mode's table
        warm = plans_of(tmp, 2)
        for mode in modes:
            raw_build(mode, warm)
            drop_ns(RAW_NS)
            if mode == "per-tunnel" or with_shared:
                broker_run(mode, tmp, 1, 1)
                drop_ns(BROKER_NS)
        for n in sizes:
            plans = plans_of(tmp, n + 1)
            # one more, never installed: the tunnel that "stays" when the raw shared side works out one
            # tunnel's element changes (nft_table.change_text needs one; at N = 1 there is no other)
            plans, phantom = plans[:n], plans[n]
            for mode in modes:
                if mode == "per-tunnel" and n > per_tunnel_max:
                    print("%6d  %-10s  not run: above --per-tunnel-max %d (building N sit devices is O(N^2))" % (
                        n, mode, per_tunnel_max), flush=True)
                    continue
                t0 = time.perf_counter()
                settle()
                ip_s, nft_s, raw_kb = raw_build(mode, plans)
                # the packets first, onto the namespace as built (the ops below churn its last tunnel)
                pps, pps_alone, loss = packet_rate(mode, plans)
                r_rm, r_add, r_set = raw_ops(mode, plans[-1], phantom, window)
                drop_ns(RAW_NS)
                b = None
                if (mode == "per-tunnel" and n <= per_tunnel_broker_max) or (mode == "shared" and with_shared):
                    settle()
                    b = broker_run(mode, tmp, n, window, ref=mode == "shared" and n > 2)
                    drop_ns(BROKER_NS, REF_BROKER_NS)
                create = ip_s + nft_s
                rows = [
                    ("add", statistics.median(r_add), b and statistics.median(b[5]), "s"),
                    ("remove", statistics.median(r_rm), b and statistics.median(b[4]), "s"),
                    ("set --remote", statistics.median(r_set), b and statistics.median(b[6]), "s"),
                    ("apply cold", create, b and b[1], "s"),
                    ("apply no-op", create, b and b[2], "s"),
                    ("kmem/tunnel", raw_kb / n, b and b[3] / n, "KB"),
                ]
                for op, raw, brk, unit in rows:
                    # (a kernel reading that did not move at N = 1 has no ratio)
                    r = "%7.2fx" % ratio(brk, raw) if brk is not None and raw > 0 else "%8s" % "-"
                    print("%6d  %-10s  %-13s %10s %10s %s" % (n, mode, op + (" KB" if unit == "KB" else " s"),
                                                              fmt(raw, unit), fmt(brk, unit), r))
                    results[(n, mode, op)] = (raw, brk)
                print("%6d  %-10s  %-13s %10s %10s %7.2fx  (vs %.0f pps through it alone, alternate rounds; "
                      "%d lost)" % (n, mode, "pps", fmt(pps, "pps"), "", ratio(pps, pps_alone), pps_alone, loss))
                results[(n, mode, "pps")] = ratio(pps, pps_alone)
                if b and b[7]:
                    # the "at N against at 1", from rounds that alternated with a two-tunnel broker
                    ref_removes, ref_adds, ref_sets = b[7]
                    for op, mine, twos in (("add", b[5], ref_adds), ("remove", b[4], ref_removes),
                                           ("set --remote", b[6], ref_sets)):
                        r = statistics.median(mine) / statistics.median(twos)
                        print("%6d  %-10s  %-13s %10s %10s %7.2fx  (broker at N / broker at 2: %.3f s vs %.3f s, "
                              "alternate rounds)" % (n, mode, op + " vs 2", "", "", r, statistics.median(mine),
                                                     statistics.median(twos)))
                        results[(n, mode, op + " vs 2")] = r
                print("%6s  %-10s  (raw apply: ip -batch %.2f s + nft -f %.2f s%s; this row took %.0f s)" % (
                    "", "", ip_s, nft_s, "" if b else "; broker not run", time.perf_counter() - t0), flush=True)
    finally:
        drop_ns(RAW_NS, BROKER_NS, HOME_NS, HOME_REF, REF_NS, REF_BROKER_NS)
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    targets(sizes, results)
    return 0


def targets(sizes, results):
    """Issue 15's targets for the shared mode, from what this run measured."""
    lo, hi = min(sizes), max(sizes)
    if lo != 1 or hi == 1:
        print("targets: need N=1 and a larger N in --sizes")
        return
    for side, k in (("raw", 0), ("broker", 1)):
        a1, ah = results.get((1, "shared", "add"), (None, None))[k], results.get((hi, "shared", "add"), (None, None))[k]
        if a1 and ah:
            r = ah / a1
            print("shared %-6s marginal add at %d / at 1: %.2fx (target <= 1.2x: %s)" % (
                side, hi, r, "met" if r <= 1.2 else "NOT met"))
        if side == "broker" and results.get((hi, "shared", "add vs 2")):
            r = results[(hi, "shared", "add vs 2")]
            print("shared broker marginal add at %d / at 2 (the first add without the device's making), alternate "
                  "rounds: %.2fx (target <= 1.2x: %s)" % (hi, r, "met" if r <= 1.2 else "NOT met"))
        cold = results.get((hi, "shared", "apply cold"), (None, None))[k]
        if cold:
            print("shared %-6s cold apply of %d: %.1f s (target < 60 s: %s)" % (side, hi, cold,
                                                                                "met" if cold < 60 else "NOT met"))
    for mode in MODES:
        r = results.get((hi, mode, "pps"))
        if r:
            print("%-10s pps at %d / at 1: %.2fx%s" % (mode, hi, r, (" (target >= 0.9x: %s)" % (
                "met" if r >= 0.9 else "NOT met")) if mode == "shared" else ""))
