"""The netifd handler against real sit devices (only the guest's kernel has sit): whose sit a device name
is, and the MTU the two ends agree on behind a PPPoE-sized link.

netifd, ubusd and fw4 do not run here: the shim runs as netifd runs it (tests/handler_shim.py), netifd's
answers come from tests/ubusd_fake.py, and where netifd would create the sit from the handler's update,
`ip` creates it from the same fields (proto-shell.c proto_shell_update_link -> system_add_ip_tunnel:
mode, local, remote, ttl, DF on by default; then the mtu and the addresses).
"""
import os
import sys

import pytest

import handler_shim
import lab_world
import topo
from sixbroker.core import addr, plan
from sixbroker.linux import apply_kernel
from sixbroker.broker import routerconf

VPS, INET, HOME = "hs-vps", "hs-inet", "hs-home"
X = "203.0.113.10"          # the VPS
Y = "198.51.100.20"         # the home router, behind a 1492-byte (PPPoE-sized) access link
PPPOE_MTU = 1492
TRANSFER = "2001:db8:5b10::a/127"
HOME6, VPS6 = "2001:db8:5b10::b", "2001:db8:5b10::a"
WAN = {"interface": "wan", "up": True, "proto": "pppoe", "l3_device": "h-wan", "device": "h-wan",
       "ipv4-address": [{"address": Y, "mask": 24}]}


@pytest.fixture(scope="module")
def world():
    why = lab_world.sit_missing()
    if why:
        pytest.skip(why + ": run `make test-e2e`, which boots a kernel that has sit")
    for ns in (VPS, INET, HOME):
        topo.run(["ip", "netns", "del", ns], check=False)
        topo.run(["ip", "netns", "add", ns])
    topo.ip(INET, "link", "add", "i-vps", "type", "veth", "peer", "v-up", "netns", VPS)
    topo.ip(INET, "link", "add", "i-home", "mtu", str(PPPOE_MTU), "type", "veth", "peer", "h-wan", "netns", HOME)
    topo.ip(HOME, "link", "set", "h-wan", "mtu", str(PPPOE_MTU))
    topo.batch(INET, ["addr add 203.0.113.1/24 dev i-vps", "addr add 198.51.100.1/24 dev i-home",
                      "link set i-vps up", "link set i-home up", "link set lo up"])
    topo.batch(VPS, ["addr add %s/24 dev v-up" % X, "link set v-up up", "link set lo up",
                     "route add default via 203.0.113.1"])
    topo.batch(HOME, ["addr add %s/24 dev h-wan" % Y, "link set h-wan up", "link set lo up",
                      "route add default via 198.51.100.1"])
    topo.sysctl(INET, "net.ipv4.ip_forward", "1")
    # the VPS end as the broker makes it: plan.broker with the broker's MTU (1480), through the applier
    vps = plan.broker("home", "sbs-home", addr.Address.parse(X), addr.Address.parse(Y),
                      addr.Network.parse(TRANSFER), [], uplink="v-up")
    apply_kernel.apply([vps], netns=VPS, scope="broker")
    yield
    for ns in (VPS, INET, HOME):
        topo.run(["ip", "netns", "del", ns], check=False)


# the PyPI "micropython" is a CPython program hosting MicroPython: its start says nothing of a router's
INTERPRETERS = {"cpython": sys.executable,
                "micropython": os.path.join(os.path.dirname(sys.executable), "micropython")}


def setup(config, tmp_path, iface="wan6", others=(), model=None, interp="cpython"):
    return handler_shim.run(INTERPRETERS[interp], HOME, config, [WAN] + list(others), model, iface,
                            run_dir=str(tmp_path / "run"))


def make_sit(ns, update):
    """What netifd does with the handler's update: the sit device, its MTU and addresses, up."""
    t = update["tunnel"]
    topo.ip(ns, "tunnel", "add", update["ifname"], "mode", t["mode"], "local", t["local"], "remote", t["remote"],
            "ttl", str(t["ttl"]))
    topo.ip(ns, "link", "set", update["ifname"], "mtu", str(t["mtu"]), "up")
    for a in update["ip6addr"]:
        topo.ip(ns, "addr", "add", a["ipaddr"] + "/" + a["mask"], "dev", update["ifname"], "nodad")


def drop_sit(ns, name):
    topo.ip(ns, "link", "del", name, check=False)


SEED = {"peeraddr": X, "ip6addr": HOME6 + "/127", "tunlink": "wan"}


@pytest.mark.parametrize("interp", sorted(INTERPRETERS))
def test_a_sit_of_another_interface_is_refused(world, tmp_path, interp):
    # issue 11 item 9: any existing sit counted as ours, so a second interface took over the first's
    topo.ip(HOME, "tunnel", "add", "sb-wan6", "mode", "sit", "local", Y, "remote", "192.0.2.99", "ttl", "64")
    try:
        owner = {"interface": "wan6", "up": True, "proto": "sixbroker", "l3_device": "sb-wan6"}
        proc, sent = setup(dict(SEED, device="sb-wan6"), tmp_path, iface="wan6b", others=[owner], interp=interp)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert sent[0]["error"] == ["DEVICE_IN_USE", "device", "sb-wan6 is the tunnel of interface wan6"]
        assert sent[1] == {"action": 4, "interface": "wan6b"}
        # the same sit with no interface claiming it is a leftover of ours: netifd replaces it
        proc, sent = setup(SEED, tmp_path, interp=interp)
        assert proc.returncode == 0, proc.stderr
        assert sent[1]["action"] == 0 and sent[1]["ifname"] == "sb-wan6"
    finally:
        drop_sit(HOME, "sb-wan6")


def test_printed_config_behind_pppoe_and_the_vps_learns_the_path_mtu(world, tmp_path):
    # issue 11 item 8: the config `server add` prints (mtu '1480') on a router whose WAN has MTU 1492
    view = {"name": "wan6", "peeraddr": X, "router_address": HOME6, "transfer_length": 127, "server_address": VPS6,
            "routed": [], "mtu": plan.DEFAULT_MTU}
    printed = dict(routerconf.options(view))
    del printed["proto"]
    proc, sent = setup(dict(printed, tunlink="wan"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    update = sent[1]
    assert update["tunnel"]["mtu"] == PPPOE_MTU - 20 == 1472
    make_sit(HOME, update)
    try:
        assert topo.ping(HOME, VPS6, count=2)
        # the home sends 1472-byte IPv6 packets: 1492 outside, they fit its link
        p = ping(HOME, VPS6, 1472 - 48)
        assert p.returncode == 0, p.stdout + p.stderr
        # the VPS's sit is 1480: its first 1480-byte packet meets the 1492 link with DF set, the ISP's
        # router answers "fragmentation needed", and from then on the VPS's kernel uses 1472 towards Y
        ping(VPS, HOME6, 1480 - 48, count=2)
        route = topo.ip(VPS, "route", "get", Y).stdout
        assert "mtu %d" % PPPOE_MTU in route, route
        p = ping(VPS, HOME6, 1480 - 48)
        assert p.returncode != 0 and "1472" in p.stdout + p.stderr, p.stdout + p.stderr
        p = ping(VPS, HOME6, 1472 - 48)
        assert p.returncode == 0, p.stdout + p.stderr
        assert topo.ip(VPS, "-d", "link", "show", "sbs-home").stdout.count("mtu 1480") == 1
    finally:
        drop_sit(HOME, "sb-wan6")


def ping(ns, target, size, count=1):
    return topo.run(["ping", "-6", "-n", "-c", str(count), "-i", "0.3", "-W", "2", "-M", "do", "-s", str(size),
                     target], check=False, ns=ns)
