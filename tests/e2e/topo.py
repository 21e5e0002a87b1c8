"""The seed's world in network namespaces, for the real-kernel suite (inside the QEMU guest).

    lanhost --(eth0 | lan0)-- home --(v-home | to-home)-- inet --(to-vps | v-vps)-- vps

inet is the IPv4 internet (it routes 198.51.100.0/24 and 203.0.113.0/24), vps is the broker's host (X,
and X2 for a tunnel that is not ours), home the standalone router (Y), lanhost a machine on its LAN.

Speed matters under TCG (each process ~70 ms): one `ip -batch` per namespace, `ip -n`, sockets opened in a
namespace from a thread of this process rather than helper processes.
"""

import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time

from sixbroker.linux import kernel, netns

X = "203.0.113.10"        # the VPS
X2 = "203.0.113.11"       # the VPS's second address: the far end of a tunnel that is not ours
Y = "198.51.100.20"       # the home router
THIRD = "203.0.113.1"     # a third host (the internet router itself)
TRANSFER = "2001:db8:5b10::a/127"
ROUTED = "2001:db8:5b11::/64"
VPS6 = "2001:db8:5b10::a"
HOME6 = "2001:db8:5b10::b"
LANHOST6 = "2001:db8:5b11::100"
NAMESPACES = ("inet", "vps", "home", "lanhost")


def run(argv, check=True, stdin=None, ns=None):
    """argv in namespace ns: the child inherits the namespace of the thread that forks it, which is
    much cheaper than `ip netns exec` (that also remounts /sys)."""
    with netns.InNetns(ns):
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(argv), p.returncode, p.stderr.strip()))
    return p


def ip(ns, *args, check=True):
    return run(["ip", "-n", ns] + list(args), check=check)


def batch(ns, lines):
    run(["ip", "-n", ns, "-batch", "-"], stdin="\n".join(lines) + "\n")


def nft(ns, *args, stdin=None, check=True):
    return run(["nft"] + list(args), stdin=stdin, check=check, ns=ns)


def sysctl(ns, key, value):
    with netns.InNetns(ns):
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)


def ping(ns, target, count=1, wait=2):
    """True when `target` answers (ICMPv6 echo)."""
    p = run(["ping", "-6", "-n", "-q", "-c", str(count), "-W", str(wait), target], check=False, ns=ns)
    return p.returncode == 0


def build():
    teardown()
    for ns in NAMESPACES:
        run(["ip", "netns", "add", ns])
    batch("inet", [
        "link add v-vps netns vps type veth peer name to-vps",
        "link add v-home netns home type veth peer name to-home",
        "addr add 203.0.113.1/24 dev to-vps",
        "addr add 198.51.100.1/24 dev to-home",
        "link set lo up", "link set to-vps up", "link set to-home up",
    ])
    sysctl("inet", "net.ipv4.ip_forward", "1")
    batch("vps", [
        "addr add %s/24 dev v-vps" % X, "addr add %s/24 dev v-vps" % X2,
        "link set lo up", "link set v-vps up", "route add default via 203.0.113.1",
    ])
    batch("home", [
        "link add lan0 type veth peer name eth0 netns lanhost",
        "addr add %s/24 dev v-home" % Y,
        "link set lo up", "link set v-home up", "link set lan0 up", "route add default via 198.51.100.1",
    ])
    # DAD would hold the LAN addresses tentative for a second or two; this is a cable, not a LAN
    sysctl("home", "net.ipv6.conf.lan0.accept_dad", "0")
    sysctl("lanhost", "net.ipv6.conf.eth0.accept_dad", "0")
    batch("lanhost", [
        "link set lo up", "link set eth0 up",
        "addr add %s/64 dev eth0" % LANHOST6, "route add default via 2001:db8:5b11::1",
    ])


def kill_all(ns):
    """Every process left in namespace ns, killed: a test that failed half-way leaves its pings, servers
    and daemons running there, and one of them holding a namespace keeps it (and each veth in it, with its
    peer in inet) alive after `ip netns del`, so that the next test finds its links, counters and packets."""
    if not os.path.exists("/run/netns/" + ns):
        return
    me = os.getpid()
    for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split():
        if int(pid) != me:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def drop_ns(ns):
    """Namespace ns gone, with whatever still runs in it; and inet's end of its cable (to-NS), which the
    kernel frees only a moment after a namespace's last process has died."""
    if os.path.exists("/run/netns/" + ns):
        kill_all(ns)
        run(["ip", "netns", "del", ns], check=False)
    if os.path.exists("/run/netns/inet") and "to-" + ns in link_names("inet"):
        ip("inet", "link", "del", "to-" + ns, check=False)


def teardown():
    for ns in NAMESPACES:
        drop_ns(ns)


def dumps(ns):
    """Everything a second apply must leave as it was, as text (nft with its counters)."""
    return {
        "link": ip(ns, "-d", "link").stdout,
        "addr": ip(ns, "addr").stdout,
        "route6": ip(ns, "-6", "route").stdout,
        "route4": ip(ns, "route").stdout,
        # the time left to a peer's last-packet element (nft_table.SEEN) moves by itself; the element stays
        "nft": re.sub(r" expires [0-9dhms]+", "", nft(ns, "list", "ruleset").stdout),
    }


def in_ns(ns, make):
    """make() called in namespace ns, from a thread that enters it (setns is per thread, and what the call
    opens, a socket, a netlink handle, stays in that namespace); its result, or its exception raised here."""
    out = {}

    def work():
        try:
            with netns.InNetns(ns):
                out["r"] = make()
        except Exception as e:  # handed to the caller
            out["e"] = e

    t = threading.Thread(target=work)
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out["r"]


def ns_socket(ns, family, kind, proto=0):
    """A socket in namespace ns."""
    return in_ns(ns, lambda: socket.socket(family, kind, proto))


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def echo6(src, dst, ident=0x5b, seq=1, kind=129):
    """An IPv6 ICMPv6 echo message as a 6in4 payload; by default a reply, which nobody answers."""
    s = socket.inet_pton(socket.AF_INET6, src)
    d = socket.inet_pton(socket.AF_INET6, dst)
    body = struct.pack("!BBHHH", kind, 0, 0, ident, seq) + b"sixbroker"
    pseudo = s + d + struct.pack("!IxxxB", len(body), 58)
    body = body[:2] + struct.pack("!H", _checksum(pseudo + body)) + body[4:]
    return struct.pack("!IHBB", 6 << 28, len(body), 58, 64) + s + d + body


def send_6in4(ns, src4, dst4, payload):
    """Protocol 41 from ns with any IPv4 source (IP_HDRINCL: the header is ours, spoofing included)."""
    s = ns_socket(ns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        total = 20 + len(payload)
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0x5b5b, 0, 64, 41, 0,
                          socket.inet_aton(src4), socket.inet_aton(dst4))
        hdr = hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:]
        s.sendto(hdr + payload, (dst4, 0))
    finally:
        s.close()


def eventually(fn, want, timeout=2.0):
    """fn() once it equals want (packets are counted in softirq, a moment after the send), else its
    last value."""
    end = time.time() + timeout
    while True:
        got = fn()
        if got == want or time.time() > end:
            return got
        time.sleep(0.05)


def doc_pair(i):
    """The i-th (local, remote) pair of documentation addresses for made-up tunnels: remotes from
    192.0.2.0/24 and 198.51.100.0/24 (500 of them), locals from 203.0.113.10 on (one per 500)."""
    remotes = [net + str(host) for net in ("192.0.2.", "198.51.100.") for host in range(2, 254)
               if net + str(host) not in (Y, "198.51.100.1")]
    remotes = remotes[:500]
    return "203.0.113.%d" % (10 + i // 500), remotes[i % 500]


def link_names(ns):
    k = kernel.Kernel(ns)
    try:
        return [li.name for li in k.links()]
    finally:
        k.close()


def rx_packets(ns, device):
    k = kernel.Kernel(ns)
    try:
        for li in k.links(stats=True):
            if li.name == device:
                return li.stats["rx_packets"]
    finally:
        k.close()
    raise AssertionError("no device %s in %s" % (device, ns))
