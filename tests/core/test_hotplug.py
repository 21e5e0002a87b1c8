"""Which tunnels the hotplug script restarts after a WAN address change: the stale ones only."""
from sixbroker import hotplug


def iface(name, proto="static", up=True, ipv4=None, dev=None, sb=None):
    st = {"interface": name, "proto": proto, "up": up, "l3_device": dev or name}
    if ipv4:
        st["ipv4-address"] = [{"address": ipv4, "mask": 24}]
    if sb:
        st["data"] = {"sixbroker": sb}
    return st


def tunnel(name, local_from, local, tunlink=None, up=True):
    sb = {"local": local, "remote": "203.0.113.10", "local_from": local_from}
    if tunlink:
        sb["tunlink"] = tunlink
    return iface(name, "sixbroker", up, sb=sb, dev="sb-" + name)


def test_tunlink_address_changed():
    dump = {"interface": [iface("wan", ipv4="198.51.100.30", dev="eth1"),
                          tunnel("wan6", "tunlink", "198.51.100.20", "wan")]}
    assert hotplug.stale(dump) == ["wan6"]


def test_unchanged_address_restarts_nothing():
    dump = {"interface": [iface("wan", ipv4="198.51.100.20", dev="eth1"),
                          tunnel("wan6", "tunlink", "198.51.100.20", "wan")]}
    assert hotplug.stale(dump) == []


def test_pinned_local_is_never_restarted():
    dump = {"interface": [iface("wan", ipv4="198.51.100.30", dev="eth1"),
                          tunnel("wan6", "option", "192.168.1.2")]}
    assert hotplug.stale(dump) == []


def test_down_tunnel_is_left_to_netifd():
    dump = {"interface": [iface("wan", ipv4="198.51.100.30", dev="eth1"),
                          tunnel("wan6", "tunlink", "198.51.100.20", "wan", up=False)]}
    assert hotplug.stale(dump) == []


def test_route_derived_local_follows_the_device_of_the_route():
    dump = {"interface": [iface("wan", ipv4="198.51.100.30", dev="eth1"),
                          iface("lte", ipv4="192.0.2.7", dev="wwan0"),
                          tunnel("a", "route", "198.51.100.20"),
                          tunnel("b", "route", "192.0.2.7")]}
    assert hotplug.stale(dump, route_device=lambda peer: "eth1") == ["a", "b"]
    assert hotplug.stale(dump, route_device=lambda peer: "wwan0") == ["a"]


def test_only_sixbroker_interfaces_are_considered():
    dump = {"interface": [iface("wan", ipv4="198.51.100.30", dev="eth1"),
                          iface("vpn", "wireguard", sb=None)]}
    assert hotplug.stale(dump) == []
