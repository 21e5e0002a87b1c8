"""The router's device facts (src/sixbroker/openwrt/devfacts.py, the kernel's part of what LuCI's page and
`sixbroker status` show) read from a real sit device: the host tests use a veth in its place, only the
guest's kernel has sit."""

import json
import sys

import topo
from test_seed import both_up

READ = """
import json, sys
from sixbroker.openwrt import devfacts
print(json.dumps(devfacts.device_facts(sys.argv[1])))
"""


def facts(ns, device):
    # `ip netns exec` remounts /sys for the namespace, as the router's own /sys is
    p = topo.run(["ip", "netns", "exec", ns, sys.executable, "-c", READ, device])
    return json.loads(p.stdout)


def kernel(ns, device):
    link = json.loads(topo.ip(ns, "-j", "-s", "link", "show", "dev", device).stdout)[0]
    addrs = json.loads(topo.ip(ns, "-j", "-6", "addr", "show", "dev", device, "scope", "global").stdout)[0]
    # iproute2 leaves an empty object for each address its scope filter dropped
    return link, ["%s/%d" % (a["local"], a["prefixlen"]) for a in addrs["addr_info"] if "local" in a]


def test_status_of_a_real_sit_device(clean, tmp_path):
    both_up(tmp_path)
    assert topo.ping("lanhost", topo.VPS6, count=3)
    got = facts("home", "sb-wan6")
    link, addrs = kernel("home", "sb-wan6")
    assert link["link_type"] == "sit"
    assert got["ifindex"] == link["ifindex"] and got["mtu"] == link["mtu"] == 1480 and got["up"] is True
    assert ["%s/%d" % (a["address"], a["length"]) for a in got["addresses"] if a["scope"] == "global"] == addrs
    assert addrs == ["2001:db8:5b10::b/127"]
    stats = link["stats64"]
    # read a moment apart, so only growth is possible; each side saw the three echoes
    assert stats["rx"]["packets"] >= got["statistics"]["rx_packets"] >= 3
    assert stats["tx"]["packets"] >= got["statistics"]["tx_packets"] >= 3
    assert {"target": "::/0", "gateway": topo.VPS6, "metric": 1024, "source": None} in got["routes"]


def test_no_such_device_is_none_not_an_error(clean):
    assert facts("home", "sb-nothere") is None

