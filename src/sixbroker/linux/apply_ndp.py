"""Proxy NDP on the broker's uplink, for a VPS whose provider treats its one /64 as on-link.

Such a provider's router does not route the /64 to the VPS: it sends a neighbour solicitation on the
link for every address it wants to reach, and nothing but an address on the uplink itself is answered
by Linux (ndisc_recv_ns looks the target up on the receiving device only).  Two answerers, by what the
broker knows of the addresses:

- the tunnels' own addresses (both ends of each transfer /127, 2 per tunnel): the kernel's per-address
  proxy (`net.ipv6.conf.<uplink>.proxy_ndp=1` and one NTF_PROXY neighbour entry per address, what
  `ip -6 neigh add proxy ADDR dev UPLINK` makes).  No daemon: the answers survive anything but a reboot,
  which `apply` repairs;
- a routed prefix (a /80 for a home's LAN): its hosts number themselves (DHCPv6 picks from up to 2**48
  interface identifiers), so no list of entries can cover it.  ndppd, one `static` rule per prefix,
  answers every solicitation for an address inside.

State in (plain data, service.ndp_state):
    {"netns", "uplink": name or None (None: proxy nothing), "addresses": [text], "prefixes": ["p/len"]}

Ownership, which survives a restart:
- a proxy entry is ours when it carries our protocol number (NDA_PROTOCOL, `proto 91` in `ip -6 neigh
  show proxy`; the guest's 6.1 kernel stores and dumps it for proxy entries).  An equal entry without it is the
  admin's: it satisfies the state and is never removed;
- the ndppd is ours when the pid in our pid file runs ndppd with our configuration file, in the broker's
  namespace.  Its file names the uplink's index too, so a re-created uplink restarts it (ndppd binds to
  the index it found at start).
Sysctls are set, never reverted (sysctl.py).
"""

import os
import shutil
import signal
import socket
import struct
import subprocess
import time

from sixbroker.linux import apply_kernel, sysctl
from sixbroker.linux.kernel import Changes, Kernel, canon6
from sixbroker.linux.netns import InNetns, netns_path
from sixbroker.linux import netlink as nl
from sixbroker.core.errors import SixbrokerError

RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
NDA_DST, NDA_PROTOCOL = 1, 12
NTF_PROXY = 0x08
NUD_PERMANENT = 0x80
RTPROT = apply_kernel.RTPROT
RUN_DIR = "/run/sixbroker"
NDPPD = "ndppd"
WAIT = 10.0             # seconds for ndppd to write its pid file or to exit (TCG guests are slow)


def _ndmsg(index, flags=NTF_PROXY, state=0):
    return struct.pack("BBHiHBB", socket.AF_INET6, 0, 0, index, state, flags, 0)


def _entry(add, index, address):
    body = _ndmsg(index, NTF_PROXY, NUD_PERMANENT if add else 0)
    body += nl.attr(NDA_DST, socket.inet_pton(socket.AF_INET6, address))
    if add:
        return RTM_NEWNEIGH, nl.NLM_F_CREATE | nl.NLM_F_REPLACE, body + nl.attr(NDA_PROTOCOL, bytes([RTPROT]))
    return RTM_DELNEIGH, 0, body


def proxies(k):
    """{(device index, address): protocol} of the namespace's IPv6 proxy entries (k: a kernel.Kernel)."""
    out = {}
    for buf, start, end in k.dump("neighbour dump", RTM_GETNEIGH, _ndmsg(0)):
        family, _, _, index, _, flags, _ = struct.unpack_from("BBHiHBB", buf, start)
        a = nl.attrs(buf, start + 12, end)
        if family == socket.AF_INET6 and flags & NTF_PROXY and NDA_DST in a:
            proto = a[NDA_PROTOCOL][0] if NDA_PROTOCOL in a else 0
            out[(index, socket.inet_ntop(socket.AF_INET6, a[NDA_DST][:16]))] = proto
    return out


def apply(state, run_dir=RUN_DIR):
    """Make the namespace answer for exactly state's addresses and prefixes, of what is ours; a kernel.Changes
    whose changes name each entry added or removed, each sysctl written, each ndppd (re)start or stop."""
    result = Changes()
    netns = state.get("netns")
    uplink = state.get("uplink")
    k = Kernel(netns, result)
    try:
        index = 0
        if uplink:
            li = k.link(uplink)
            if li is None:
                raise SixbrokerError("NDP_UPLINK_MISSING", uplink)
            index = li.index
        want = set((index, canon6(a)) for a in state.get("addresses") or ()) if uplink else set()
        have = proxies(k)
        name_of = None
        for key in sorted(kk for kk, proto in have.items() if proto == RTPROT and kk not in want):
            if name_of is None:
                name_of = dict((li.index, li.name) for li in k.links())
            k.queue("neigh del proxy %s dev %s" % (key[1], name_of.get(key[0], key[0])), _entry(False, *key))
        for key in sorted(want - set(have)):
            k.queue("neigh add proxy %s dev %s" % (key[1], uplink), _entry(True, *key))
        k.flush()
    finally:
        k.close()
    if uplink and want:
        sysctl.apply([["net.ipv6.conf.%s.proxy_ndp" % uplink, "1"]], netns, result)
    prefixes = list(state.get("prefixes") or ()) if uplink else []
    _ndppd(netns, run_dir, _ndppd_conf(uplink, index, prefixes) if prefixes else None, result)
    return result


def onlink(net, uplink, netns=None):
    """True when the kernel has part of `net` (addr.Network) on-link on the uplink: a route of the main
    table out of it with no gateway (what an address from the provider's /64 brings), so the provider
    resolves those addresses by neighbour discovery.  None when the uplink cannot be read."""
    from sixbroker.core import addr
    try:
        k = Kernel(netns)
    except SixbrokerError:
        return None
    try:
        li = k.link(uplink)
        if li is None:
            return None
        for r in k.routes6(oif=li.index):
            if r.dst_len and r.gateway is None and r.proto != RTPROT:
                if addr.Network(6, addr.parse_ipv6(r.dst), r.dst_len).overlaps(net):
                    return True
        return False
    except SixbrokerError:
        return None
    finally:
        k.close()


# ---- ndppd -----------------------------------------------------------------------------------------

def _ndppd_conf(uplink, index, prefixes):
    lines = ["# written by sixbroker (`sixbroker server apply` rewrites it): proxy NDP for the routed prefixes",
             "# uplink %s, index %d" % (uplink, index),
             "proxy %s {" % uplink,
             "    router yes"]
    for p in prefixes:
        # static: the prefix is routed into a tunnel, where no neighbour discovery can confirm a host
        lines += ["    rule %s {" % p, "        static", "    }"]
    return "\n".join(lines + ["}", ""])


def _paths(netns, run_dir):
    base = os.path.join(run_dir, "ndppd-" + (netns or "main"))
    return base + ".conf", base + ".pid"


def _ns_inode(netns):
    path = "/proc/self/ns/net" if netns is None else netns_path(netns)
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def running(netns, run_dir=RUN_DIR):
    """The pid of our ndppd for this namespace, or None."""
    pid, here = _ours(netns, run_dir)
    return pid if here else None


def _ours(netns, run_dir):
    """(pid, in this namespace) of the ndppd our pid file names, or (None, False)."""
    conf, pidfile = _paths(netns, run_dir)
    try:
        with open(pidfile) as f:
            pid = int(f.read().split()[0])
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
        ns = os.stat("/proc/%d/ns/net" % pid).st_ino
    except (OSError, ValueError, IndexError):
        return None, False
    if not argv or os.path.basename(argv[0]) != NDPPD.encode() or conf.encode() not in argv:
        return None, False      # the pid was reused by something else: not ours to signal
    return pid, ns == _ns_inode(netns)


def _gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _stop(pid):
    os.kill(pid, signal.SIGTERM)
    end = time.time() + WAIT
    while not _gone(pid):
        if time.time() > end:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)


def _ndppd(netns, run_dir, text, result):
    conf, pidfile = _paths(netns, run_dir)
    pid, here = _ours(netns, run_dir)
    if pid is not None:
        try:
            with open(conf) as f:
                current = f.read()
        except OSError:
            current = None
        if here and current == text:
            return
        # a changed file, or ours left answering in a namespace that was replaced
        _stop(pid)
        result.add("ndppd stop %d" % pid)
    if text is None:
        for path in (conf, pidfile):
            try:
                os.unlink(path)
            except OSError:
                pass
        return
    exe = shutil.which(NDPPD, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if exe is None:
        raise SixbrokerError("NDPPD_MISSING")
    os.makedirs(run_dir, mode=0o755, exist_ok=True)
    tmp = conf + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, conf)
    try:
        os.unlink(pidfile)
    except OSError:
        pass
    # -d: ndppd forks and its parent exits at once; the daemon writes the pid file a moment later
    with InNetns(netns):
        p = subprocess.run([exe, "-d", "-c", conf, "-p", pidfile], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
    end = time.time() + WAIT
    while p.returncode == 0 and running(netns, run_dir) is None and time.time() < end:
        time.sleep(0.05)
    pid = running(netns, run_dir)
    if pid is None:
        words = " ".join(line.strip() for line in (p.stdout + p.stderr).splitlines() if "(error)" in line)
        raise SixbrokerError("NDPPD_FAIL", words or "exit status %d" % p.returncode)
    result.add("ndppd start %d (%s)" % (pid, conf))
