"""Throwaway network namespaces for the host suites that drive real nftables and netlink (tests/linux,
tests/broker/test_hostfw.py): the namespaces, a veth between two, nft and sysctls inside one, and the
broker plan those suites install."""

import socket
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
