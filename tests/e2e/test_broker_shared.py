"""The shared-device mode (issue 15) on a real kernel (the QEMU guest): one NBMA sit device for every
tunnel.  What one device per tunnel gave for free must hold: only each peer's protocol 41 gets in, a home
sends only from its own prefixes (the rest dropped and counted on its peer), homes reach the VPS and
each other, and a removed tunnel leaves no element, route or address behind.  And the move of live
tunnels between the modes, both ways, every home answering after each move.

The move uses homes that are cheap to have many of: one namespace `many` holding a sit device per home,
each from its own IPv4 address (what the broker sees is N peers, each with its own (local, remote) pair)
and its routed prefix's ::1 on that device; the VPS pings each home's ::1 from that tunnel's own server
address, so every answer crosses that tunnel's routes both ways.
"""

import json
import os
import socket
import struct
import threading
import time

import pytest

import topo
from sixbroker.broker import db, service
from sixbroker.linux import apply_kernel, apply_nft, nft_table
from test_broker import HOMES, PREFIX, Server, homes, lan_address, reachable, router_up, server, vps_devices  # noqa: F401
from test_broker import _full_apply_finds_nothing
from test_broker_firewall import _extra_sources, _ping_from

SHARED = service.SHARED_DEVICE
MANY = int(os.environ.get("SIXBROKER_E2E_MANY", "100"))


def _shared_routes():
    return topo.ip("vps", "-6", "route", "show", "proto", "91").stdout


def test_shared_homes_reach_each_other_only_from_their_own_prefixes(server, tmp_path):
    server.ok("init", "--prefix", PREFIX, "--public-ipv4", topo.X, "--netns", "vps", "--tunnel-mode", "shared")
    assert server.json("info")["server"]["tunnel_mode"] == "shared"
    t = {}
    for name in sorted(HOMES):
        body = server.json("add", name, "--remote", HOMES[name][1])
        t[name] = body["tunnel"]
        router_up(tmp_path, name, body["router"])
    assert vps_devices() == [SHARED]
    for name in sorted(HOMES):
        assert reachable(t[name]), name
    # home to home: forwarded by the VPS, in and out through the one device
    assert _ping_from("home", lan_address(t["r1"]), lan_address(t["r2"]))
    assert _ping_from("home3", lan_address(t["r3"]), lan_address(t["r1"]))

    # r1 sends from r2's prefix and from nobody's: dropped at the VPS, counted on r1's peer alone
    theirs = t["r2"]["routed"][0].split("/")[0] + "66"
    nobody = "2001:db8:5bff::66"
    with _extra_sources([theirs, nobody]):
        for a in (theirs, nobody):
            assert not _ping_from("home", a, lan_address(t["r2"]), count=3)
    shown = server.json("show", "r1")["tunnel"]
    assert shown["spoofed_dropped"]["packets"] == 6, shown
    assert server.json("show", "r2")["tunnel"]["spoofed_dropped"]["packets"] == 0
    assert reachable(t["r1"]) and reachable(t["r2"])

    # protocol 41 from a host that is no peer: dropped before the shared device ever sees it
    def dropped():
        return apply_nft.counters(netns="vps")["rules"][nft_table.LOCALS]["packets"]
    before_rx, before_drop = topo.rx_packets("vps", SHARED), dropped()
    inner = topo.echo6(lan_address(t["r1"]), t["r1"]["server_address"], kind=128)
    topo.send_6in4("inet", topo.THIRD, topo.X, inner)
    assert topo.eventually(dropped, before_drop + 1) == before_drop + 1
    assert topo.rx_packets("vps", SHARED) == before_rx

    # remove r2: no route, address, element or counter of it is left; the others still work
    body = server.json("remove", "r2")
    assert body["apply"].get("incremental") is True
    routes = _shared_routes()
    assert t["r2"]["routed"][0] not in routes and t["r2"]["router_address"] not in routes
    assert t["r1"]["routed"][0] in routes
    # the server's transfer addresses are local routes (sit.SharedSit), never addresses on the device
    # (iproute2 lists a local route only with `table all` or its type; its proto filter drops them)
    local = [line for line in topo.ip("vps", "-6", "route", "show", "table", "all").stdout.splitlines()
             if line.startswith("local ") and " proto 91 " in line]
    assert [line.split()[1] for line in local] == [t["r1"]["server_address"], t["r3"]["server_address"]]
    assert all(" dev %s proto 91 " % SHARED in line and " table " not in line for line in local), local
    assert "/127" not in topo.ip("vps", "-6", "addr", "show", "dev", SHARED).stdout
    table = topo.nft("vps", "list", "table", "inet", "sixbroker").stdout
    assert HOMES["r2"][1] not in table and HOMES["r1"][1] in table
    assert HOMES["r2"][1] not in apply_nft.spoofed(netns="vps", shared=True)
    assert reachable(t["r1"]) and reachable(t["r3"])
    _full_apply_finds_nothing(server)


# ---- moving live tunnels between the modes -----------------------------------------------------------

def _many_homes(n):
    """n homes in namespace `many`, 192.0.2.10 on, behind inet's 192.0.2.1."""
    topo.run(["ip", "netns", "add", "many"])
    topo.batch("inet", ["link add to-many type veth peer name v-many netns many",
                        "addr add 192.0.2.1/24 dev to-many", "link set to-many up"])
    lines = ["link set lo up", "link set v-many up"]
    lines += ["addr add 192.0.2.%d/24 dev v-many" % (10 + i) for i in range(n)]
    lines.append("route add default via 192.0.2.1")
    topo.batch("many", lines)
    return ["192.0.2.%d" % (10 + i) for i in range(n)]


def _homes_up(tunnels):
    lines = []
    for i, t in enumerate(tunnels):
        dev = "h%d" % i
        lines += ["tunnel add %s mode sit local %s remote %s ttl 64" % (dev, t["remote"], topo.X),
                  "link set %s up" % dev, "addr add %s/127 dev %s" % (t["router_address"], dev),
                  "addr add %s/64 dev %s" % (lan_address(t), dev)]
    topo.batch("many", lines)


IPV6_FREEBIND = 78         # linux/in6.h; Python's socket module names no constant for it


def _echo_socket(timeout):
    """A raw ICMPv6 socket in the VPS that may send from the server's transfer addresses: in shared mode
    they are local routes, not addresses, and only a free-bound socket may use one as its source."""
    s = topo.ns_socket("vps", socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
    s.settimeout(timeout)
    return s


def _echo_all(s, tunnels, seq=0):
    """An echo request to each home's ::1 from its tunnel's server address; {target bytes: name}."""
    by_target = {}
    for i, t in enumerate(tunnels):
        target = lan_address(t)
        by_target[socket.inet_pton(socket.AF_INET6, target)] = t["name"]
        msg = struct.pack("!BBHHH", 128, 0, 0, 0x5b, seq & 0xFFFF) + b"sixbroker"
        info = socket.inet_pton(socket.AF_INET6, t["server_address"]) + struct.pack("I", 0)
        try:
            s.sendmsg([msg], [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, info)], 0, (target, 0))
        except OSError:
            pass        # no route this moment (a move), or the send buffer full: no answer, as a loss
    return by_target


def _replies(s, by_target, until):
    """(name, time, sequence number) of the echo replies that come before `until`."""
    out = []
    while time.time() < until:
        try:
            data, src = s.recvfrom(2048)
        except socket.timeout:
            continue
        if data[:1] == b"\x81":
            name = by_target.get(socket.inet_pton(socket.AF_INET6, src[0]))
            if name:
                out.append((name, time.time(), struct.unpack("!H", data[6:8])[0]))
    return out


def answered(tunnels, timeout=3.0):
    """The names of the tunnels whose home's ::1 answered an echo from that tunnel's server address."""
    s = _echo_socket(0.05)
    try:
        by_target = _echo_all(s, tunnels)
        got = set()
        end = time.time() + timeout
        while time.time() < end and len(got) < len(tunnels):
            got.update(name for name, _, _ in _replies(s, by_target, min(end, time.time() + 0.2)))
        return got
    finally:
        s.close()


class Prober(threading.Thread):
    """Echo requests to every home, round after round, while a move runs (each numbered by its round):
    per tunnel, the rounds it alone lost, unanswered in a round that nine in ten of the others answered
    (a round most lost is the guest stalling, the prober or the network, not the move of one tunnel)."""

    def __init__(self, tunnels):
        threading.Thread.__init__(self)
        self.elapsed = 0.0
        self.tunnels = tunnels
        self.done = threading.Event()
        self.names = [t["name"] for t in tunnels]
        self.rounds = 0
        self.answers = {}           # round -> names that answered it

    def lost_alone(self):
        """({name: rounds it lost while nine in ten of the others answered}, rounds most lost)."""
        lost = dict((name, 0) for name in self.names)
        stalled = 0
        for r in range(1, self.rounds + 1):
            got = self.answers.get(r, set())
            if len(got) < 0.9 * len(lost):
                stalled += 1
                continue
            for name in lost:
                if name not in got:
                    lost[name] += 1
        return lost, stalled

    def run(self):
        s = _echo_socket(0.01)
        start = time.time()
        try:
            while not self.done.is_set():
                self.rounds += 1
                by_target = _echo_all(s, self.tunnels, self.rounds)
                for name, at, seq in _replies(s, by_target, time.time() + 0.05):
                    self.answers.setdefault(seq, set()).add(name)
            for name, at, seq in _replies(s, by_target, time.time() + 1.0):
                self.answers.setdefault(seq, set()).add(name)
        finally:
            self.elapsed = time.time() - start
            s.close()


@pytest.fixture
def many_server(clean, broker_db, capsys):
    s = Server(broker_db, capsys)
    yield s
    apply_kernel.remove_all("vps", scope="broker")
    apply_nft.remove(nft_table.TABLE, "vps")
    topo.run(["ip", "netns", "del", "many"], check=False)


def test_live_tunnels_move_between_the_modes_both_ways(many_server):
    server = many_server
    remotes = _many_homes(MANY)
    server.ok("init", "--prefix", PREFIX, "--public-ipv4", topo.X, "--netns", "vps", "--tunnel-mode", "per-tunnel")
    conn = db.connect(server.path, create=False)
    try:
        for i, remote in enumerate(remotes):
            service.add(conn, "m%d" % i, remote)
    finally:
        conn.close()
    t0 = time.time()
    server.ok("apply")
    cold = time.time() - t0
    tunnels = server.json("list")["tunnels"]
    names = set(t["name"] for t in tunnels)
    _homes_up(tunnels)
    assert answered(tunnels) == names

    times, lines = {}, []
    for mode, devices in (("shared", [SHARED]), ("per-tunnel", sorted(service.device_of(n) for n in names))):
        probe = Prober(tunnels)
        probe.start()
        time.sleep(1.0)
        t0 = time.time()
        # in a process of its own: the prober's thread must not wait for this one's Python
        p = server.process("apply", "--tunnel-mode", mode, "--json")
        times[mode] = time.time() - t0
        assert p.returncode == 0, (p.stdout, p.stderr)
        body = json.loads(p.stdout)
        time.sleep(1.0)
        probe.done.set()
        probe.join()
        assert body["applied"] is True and body["tunnel_mode"] == mode
        assert sorted(body["moved"]) == sorted(names), body.get("moved")
        assert vps_devices() == devices
        assert server.json("info")["server"]["tunnel_mode"] == mode
        assert answered(tunnels) == names, mode
        _full_apply_finds_nothing(server)
        switch = sorted(body["moved"].values())
        alone, stalled = probe.lost_alone()
        lines.append("shared e2e: %d live tunnels to %s in %.2f s; switch per tunnel median %.1f ms, max %.1f ms; "
                     "echo rounds to every home during the move: %d of %.0f ms, %d lost by most (the guest "
                     "stalling), most lost by one tunnel alone %d, tunnels that lost any alone %d"
                     % (MANY, mode, times[mode], 1000 * switch[len(switch) // 2], 1000 * switch[-1], probe.rounds,
                        1000 * probe.elapsed / max(probe.rounds, 1), stalled, max(alone.values()),
                        sum(1 for v in alone.values() if v)))
    # the text form names every tunnel's switch
    rc, out, err = server.run("apply", "--tunnel-mode", "shared")
    assert rc == 0 and out.startswith("moved %d tunnels to shared mode: " % MANY), (out, err)
    assert "  m0 " in out and answered(tunnels) == names
    lines.append("shared e2e: cold apply of %d per-tunnel tunnels %.2f s" % (MANY, cold))
    print("\n".join(lines))
