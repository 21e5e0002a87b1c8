"""The data plane on a real kernel: IPv6 from a LAN host to a host beyond the VPS, carried across an
IPv4-only internet as protocol 41, from a home with a public address and from one behind NAT; the MTU the
tunnel gives (a full-size packet crosses whole, a larger one gets Packet Too Big); TCP bulk both ways.

One world for the module (lab_world.py, namespaces `dp-*`): the VPS end is plan.broker for both tunnels
through the appliers (what the broker reconciles with), the homes run `sixbroker router` (standalone).
What crosses inet is counted by inet's own nft counters, not by anything of ours.
"""

import hashlib
import os
import socket
import threading
import time

import pytest

import lab_world
import topo
from lab_world import FAR6, FAR6_GW, HOME2_PRIVATE, NAT_PUBLIC, X, Y
from sixbroker.core import addr, plan
from sixbroker.linux import apply_kernel, apply_nft, kernel_status
from sixbroker.linuxrouter import router as standalone

W = lab_world.World("dp-")
# name: (router namespace, LAN host namespace, the home's address as the VPS sees it, transfer, routed)
TUNNELS = {
    "home": (W.home, W.lanhost, Y, "2001:db8:5b10::a/127", "2001:db8:5b11::/64"),
    "home2": (W.home2, W.lan2, NAT_PUBLIC, "2001:db8:5b10::c/127", "2001:db8:5b12::/64"),
}
MTU = plan.DEFAULT_MTU
PING_PAYLOAD = MTU - 40 - 8         # IPv6 header, ICMPv6 echo header: a packet of exactly MTU bytes
BULK = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    why = lab_world.sit_missing()
    if why:
        pytest.skip(why + ": run `make test-e2e`, which boots a kernel that has sit")
    t0 = time.time()
    W.build()
    plans = []
    for name, (_, _, remote, transfer, routed) in sorted(TUNNELS.items()):
        plans.append(plan.broker(name, "sbs-" + name, addr.Address.parse(X), addr.Address.parse(remote),
                                 addr.Network.parse(transfer), [addr.Network.parse(routed)], uplink="v-vps"))
    k = apply_kernel.apply(plans, netns=W.vps, scope="broker")
    apply_nft.apply(plans, netns=W.vps, exempt=k.foreign_tunnels)
    hosts = {}
    tmp = tmp_path_factory.mktemp("dataplane")
    for name, (ns, lan_ns, _, transfer, routed) in sorted(TUNNELS.items()):
        net = addr.Network.parse(transfer)
        path = str(tmp / name)
        with open(path, "w") as f:
            f.write(lab_world.router_config(name, {"peeraddr": X, "ip6addr": "%s/127" % net.host(1),
                                                   "ip6prefix": [routed]}, ["lan0"]))
        assert standalone.main(["up", "--config", path, "--netns", ns]) == 0
        hosts[name] = W.lan_host(lan_ns, routed)
    W.hosts = hosts
    W.setup_seconds = time.time() - t0
    yield W
    W.teardown()


def vps_device(name):
    [d] = [d for d in kernel_status.status(W.vps, scope="broker")["devices"] if d["device"] == "sbs-" + name]
    return d


def ping(ns, target, count=1, size=None, wait=2):
    argv = ["ping", "-6", "-n", "-c", str(count), "-i", "0.2", "-W", str(wait)]
    if size is not None:
        argv += ["-M", "do", "-s", str(size)]
    return topo.run(argv + [target], check=False, ns=ns)


def grew(before, after):
    return dict((k, after[k] - before[k]) for k in after)


def test_lan_host_reaches_the_far_host_through_the_tunnel(lab):
    c0, rx0 = lab.counters(), vps_device("home")["counters"]["rx_packets"]
    p = ping(lab.lanhost, FAR6, count=3)
    assert p.returncode == 0, p.stdout + p.stderr
    # and the far side in: ICMPv6 passes the home's forward policy
    p = ping(lab.far, lab.hosts["home"], count=2)
    assert p.returncode == 0, p.stdout + p.stderr
    d = grew(c0, lab.counters())
    # every echo crossed inet as protocol 41 between Y and X, both ways; nothing of it went via the NAT
    assert d["home_to_vps"] >= 5 and d["vps_to_home"] >= 5, d
    assert d["nat_to_vps"] == d["vps_to_nat"] == d["private_source"] == 0, d
    assert vps_device("home")["counters"]["rx_packets"] - rx0 >= 5


def test_behind_nat_the_vps_sees_the_nat_and_the_nat_forwards_protocol_41(lab):
    dev = vps_device("home2")
    assert (dev["remote"], dev["local"]) == (NAT_PUBLIC, X)
    [mine] = kernel_status.status(lab.home2, scope=standalone.SCOPE)["devices"]
    assert (mine["local"], mine["remote"]) == (HOME2_PRIVATE, X)
    # no NAT state for protocol 41 yet: the VPS speaks first, and only the NAT's forward can let it in
    _flush_conntrack(lab.nat)
    n0, c0 = lab.nat_counters(), lab.counters()
    p = ping(lab.far, lab.hosts["home2"], count=2)
    assert p.returncode == 0, p.stdout + p.stderr
    n1 = lab.nat_counters()
    assert (n1["dnat"] - n0["dnat"], n1["masquerade"] - n0["masquerade"]) == (1, 0)
    p = ping(lab.lan2, FAR6, count=3)
    assert p.returncode == 0, p.stdout + p.stderr
    d = grew(c0, lab.counters())
    assert d["nat_to_vps"] >= 5 and d["vps_to_nat"] >= 5, d
    # home2's private address never reached the internet, and the other home's tunnel saw none of it
    assert d["private_source"] == d["home_to_vps"] == d["vps_to_home"] == 0, d
    assert vps_device("home2")["counters"]["rx_packets"] - dev["counters"]["rx_packets"] >= 5


def _flush_conntrack(ns):
    from pyroute2 import Conntrack
    ct = topo.in_ns(ns, Conntrack)      # the netlink socket opens in ns and stays there
    try:
        ct.flush()
    finally:
        ct.close()


def test_a_full_size_packet_crosses_whole_and_a_larger_one_gets_packet_too_big(lab):
    c0 = lab.counters()
    p = ping(lab.lanhost, FAR6, size=PING_PAYLOAD)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "%d bytes from %s" % (PING_PAYLOAD + 8, FAR6) in p.stdout
    d = grew(c0, lab.counters())
    # the request and the reply, each a 1480-byte IPv6 packet in a 1500-byte IPv4 one, neither split
    assert d["full_size"] == 2 and d["home_to_vps"] == 1 and d["vps_to_home"] == 1, d
    # one byte more: the router in front of each tunnel end answers Packet Too Big with the tunnel's MTU
    for ns, target, router in ((lab.lanhost, FAR6, "2001:db8:5b11::1"), (lab.far, lab.hosts["home"], FAR6_GW)):
        p = ping(ns, target, size=PING_PAYLOAD + 1, wait=1)
        assert p.returncode != 0
        assert "From %s icmp_seq=1 Packet too big: mtu=%d" % (router, MTU) in p.stdout, p.stdout + p.stderr
    assert lab.counters()["fragments"] == 0


def _serve(ns, port):
    s = topo.ns_socket(ns, socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    s.listen(1)
    s.settimeout(30)
    return s


def _receive(sock, n, out):
    h, got, buf = hashlib.sha256(), 0, bytearray(1 << 18)
    view = memoryview(buf)
    while got < n:
        k = sock.recv_into(view)
        if not k:
            break
        h.update(view[:k])
        got += k
    out["bytes"], out["sha256"] = got, h.hexdigest()


def test_tcp_bulk_transfer_both_ways(lab, capsys):
    rx0 = vps_device("home")["counters"]
    data = os.urandom(BULK)
    listener = _serve(lab.far, 5001)
    client = topo.ns_socket(lab.lanhost, socket.AF_INET6, socket.SOCK_STREAM)
    try:
        client.settimeout(30)
        client.connect((FAR6, 5001))
        conn, _ = listener.accept()
        conn.settimeout(30)
        up, down = {}, {}
        t = threading.Thread(target=_receive, args=(conn, BULK, up))
        t.start()
        t0 = time.time()
        client.sendall(data)
        t.join()
        t1 = time.time()
        t = threading.Thread(target=_receive, args=(client, BULK, down))
        t.start()
        conn.sendall(data[::-1])
        t.join()
        t2 = time.time()
        # the segments fit the tunnel (the home clamps MSS to it): none was refused for its size
        mss = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
        conn.close()
    finally:
        client.close()
        listener.close()
    assert up == {"bytes": BULK, "sha256": hashlib.sha256(data).hexdigest()}
    assert down == {"bytes": BULK, "sha256": hashlib.sha256(data[::-1]).hexdigest()}
    assert mss <= MTU - 60
    rx1 = vps_device("home")["counters"]
    # it went through the tunnel: the VPS's sit device received the upload and sent the download
    assert rx1["rx_bytes"] - rx0["rx_bytes"] >= BULK and rx1["tx_bytes"] - rx0["tx_bytes"] >= BULK
    with capsys.disabled():
        print("\ne2e dataplane: %d MB up %.2f s, down %.2f s; world and tunnels up in %.1f s"
              % (BULK >> 20, t1 - t0, t2 - t1, lab.setup_seconds))
