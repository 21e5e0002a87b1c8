"""Per-tunnel traffic and health on real sit tunnels (the QEMU guest), in both tunnel modes (a sit device
per tunnel; one shared device): `list --json` after known pings, held against the sit device's own
counters, and a home that falls silent while the other keeps talking.

The host suites (tests/linux/test_traffic_host.py, tests/broker/test_metrics.py) prove the counters on
raw protocol-41 packets; here the packets are a real tunnel's, from a real router."""

import json
import time

import pytest

import topo
from sixbroker.broker import service
from test_broker import HOMES, homes, router_up, server  # noqa: F401  (fixtures)

PREFIX = "2001:db8:5b00::/56"
PINGS = 5
SIZE = 100      # ICMPv6 payload: inner packet 40 + 8 + 100 = 148 bytes, outer 168


def device_counts(device):
    """(rx_packets, rx_bytes, tx_packets, tx_bytes) of the sit device: the kernel counts inner packets."""
    s = json.loads(topo.run(["ip", "-j", "-s", "link", "show", device], ns="vps").stdout)[0]["stats64"]
    return (s["rx"]["packets"], s["rx"]["bytes"], s["tx"]["packets"], s["tx"]["bytes"])


def tunnels(server):
    return dict((t["name"], t) for t in server.json("list")["tunnels"])


@pytest.mark.parametrize("mode", ["per-tunnel", "shared"])
def test_traffic_counts_real_tunnel_packets_and_a_silent_home_turns_idle(server, tmp_path, mode):
    server.json("init", "--prefix", PREFIX, "--uplink", "v-vps", "--netns", "vps", "--tunnel-mode", mode)
    # r2 is silent during the burst, so even the shared device's counters hold r1's packets alone
    device = "sbs-r1" if mode == "per-tunnel" else service.SHARED_DEVICE
    made = {}
    for name in ("r1", "r2"):
        body = server.json("add", name, "--remote", HOMES[name][1])
        made[name] = body["tunnel"]
        router_up(tmp_path, name, body["router"])
    # both homes talk once (the first packets may include the routers' own)
    for name in ("r1", "r2"):
        assert topo.ping(HOMES[name][0], made[name]["server_address"])
    before, dev_before = tunnels(server), device_counts(device)
    p = topo.run(["ping", "-6", "-n", "-q", "-c", str(PINGS), "-i", "0.2", "-s", str(SIZE),
                  made["r1"]["server_address"]], ns=HOMES["r1"][0])
    assert " 0% packet loss" in p.stdout, p.stdout
    after, dev_after = tunnels(server), device_counts(device)
    moved = dict((k, after["r1"]["traffic"][k] - before["r1"]["traffic"][k]) for k in after["r1"]["traffic"])
    # PINGS echo requests in, PINGS replies out, each 20 bytes of IPv4 outside the 148-byte IPv6 packet
    assert moved == {"rx_packets": PINGS, "rx_bytes": PINGS * 168, "tx_packets": PINGS, "tx_bytes": PINGS * 168}
    dev = [a - b for a, b in zip(dev_after, dev_before)]
    assert dev == [PINGS, PINGS * 148, PINGS, PINGS * 148]      # the sit device's inner view
    assert after["r2"]["traffic"] == before["r2"]["traffic"]    # the other tunnel's: untouched
    assert after["r1"]["health"]["alive"] and after["r2"]["health"]["alive"]

    # r2 falls silent while r1 keeps talking: r2's idle time grows, r1's stays near zero
    time.sleep(3)
    assert topo.ping(HOMES["r1"][0], made["r1"]["server_address"])
    later = tunnels(server)
    # r2's last packet came before the burst and the 3 s of silence, r1's after them (`list` itself takes
    # a second or two under TCG, so the difference, not r1's own figure)
    idle1, idle2 = later["r1"]["health"]["idle_seconds"], later["r2"]["health"]["idle_seconds"]
    assert idle2 >= 3 and idle2 - idle1 >= 3, (idle1, idle2)
    assert later["r1"]["traffic"]["rx_packets"] == after["r1"]["traffic"]["rx_packets"] + 1
    assert later["r2"]["traffic"] == after["r2"]["traffic"]
    shown = server.ok("show", "r2")
    assert "#   alive: last packet from the peer " in shown
