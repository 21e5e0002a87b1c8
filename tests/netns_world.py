"""Throwaway network namespaces for the host suites that drive real nftables and netlink (tests/linux,
tests/broker/test_hostfw.py): the namespaces, a veth between two, nft and sysctls inside one, and the
broker plan those suites install."""

import socket
import struct
import subprocess
import uuid

import pytest

from sixbroker.core import addr, plan
from sixbroker.linux.netns import InNetns

X = "203.0.113.10"     # the VPS
Y = "198.51.100.20"    # the home router


def run(argv, ns=None, stdin=None, check=True):
    with InNetns(ns):
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError("%s: %s" % (" ".join(argv), p.stderr))
    return p


class Namespaces:
    def __init__(self, *names):
        tag = uuid.uuid4().hex[:6]
        self.names = dict((n, "sbt-%s-%s" % (n, tag)) for n in names)
        for ns in self.names.values():
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def __getitem__(self, name):
        return self.names[name]

    def ip(self, name, *args):
        return run(["ip", "-n", self[name]] + list(args))

    def veth(self, a, a_dev, b, b_dev):
        run(["ip", "-n", self[a], "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", self[b]])
        self.ip(a, "link", "set", a_dev, "up")
        self.ip(b, "link", "set", b_dev, "up")

    def sysctl(self, name, key, value):
        with InNetns(self[name]):
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(value)

    def socket(self, name, *args):
        with InNetns(self[name]):
            return socket.socket(*args)

    def nft(self, name, *args, stdin=None):
        return run(["nft"] + list(args), ns=self[name], stdin=stdin)

    def close(self):
        for ns in self.names.values():
            run(["ip", "netns", "del", ns], check=False)


@pytest.fixture
def nets(request):
    made = []

    def make(*names):
        n = Namespaces(*names)
        made.append(n)
        return n
    yield make
    for n in made:
        n.close()


def vps(i=0, remote=Y, device=None):
    net = addr.Network.parse("2001:db8:6000::/48")
    return plan.broker("t%d" % i, device or "sbs-t%d" % i, addr.Address.parse(X), addr.Address.parse(remote),
                       net.subnet(127, i), [addr.Network.parse("2001:db8:7%03x::/48" % (i % 4096))])


def _checksum(data):
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def send41(n, ns, src, dst, payload=b"\x60" + b"\0" * 39):
    s = n.socket(ns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, 41, 0, socket.inet_aton(src),
                      socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:]
    s.sendto(hdr + payload, (dst, 0))
    s.close()


Y2 = "198.51.100.21"   # a second home router


@pytest.fixture
def link(nets):
    """vps (X) and, one veth away, a namespace that holds two home routers' addresses (Y, Y2)."""
    n = nets("vps", "homes")
    n.veth("vps", "eth0", "homes", "eth0")
    n.ip("vps", "addr", "add", X + "/32", "dev", "eth0")
    n.ip("vps", "route", "add", "default", "dev", "eth0")
    for a in (Y, Y2):
        n.ip("homes", "addr", "add", a + "/32", "dev", "eth0")
    n.ip("homes", "route", "add", "default", "dev", "eth0")
    return n


def wait_for(check, timeout=5.0):
    """check()'s value once it is true (packets cross a veth in a softirq, not at once); the last one else."""
    import time
    end = time.monotonic() + timeout
    while True:
        v = check()
        if v or time.monotonic() > end:
            return v
        time.sleep(0.02)
