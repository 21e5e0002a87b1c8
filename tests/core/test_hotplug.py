"""Which tunnels the hotplug script restarts after a WAN address change: the stale ones only."""
from sixbroker.openwrt import hotplug


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


def test_a_wan_without_its_address_for_a_moment_restarts_nothing():
    # a renewal in the same subnet: with promote_secondaries off the kernel drops the new address with
    # the old one, and the WAN has none for a while; the next event, with the new address, restarts
    dump = {"interface": [iface("wan", dev="eth1"), tunnel("wan6", "tunlink", "198.51.100.20", "wan")]}
    assert hotplug.stale(dump) == []
    dump["interface"][0]["ipv4-address"] = []
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


# ---------------------------------------------------------------------------------------------------
# the record a setup leaves for the hotplug script (which reads it with the shell's `read`)

from sixbroker.openwrt import netifd  # noqa: E402

TMP = "/tmp/sixbroker-core-test-hotplug"


class RunDir:
    """SIXBROKER_RUN_DIR pointed at a fresh directory for the block, then put back."""

    def __enter__(self):
        import os
        self._set(TMP)
        try:
            os.mkdir(TMP)
        except OSError:
            pass
        self._clear()
        return TMP

    def __exit__(self, *exc):
        import os
        self._clear()
        os.rmdir(TMP)
        self._set("")

    @staticmethod
    def _set(value):
        import os
        try:
            os.environ["SIXBROKER_RUN_DIR"] = value     # CPython's getenv reads os.environ
        except AttributeError:
            os.putenv("SIXBROKER_RUN_DIR", value)       # MicroPython has no os.environ

    @staticmethod
    def _clear():
        import os
        for name in os.listdir(TMP):
            os.remove(TMP + "/" + name)

    @staticmethod
    def files():
        import os
        out = {}
        for name in os.listdir(TMP):
            with open(TMP + "/" + name) as f:
                out[name] = f.read()
        return out


class Bus:
    def __init__(self, wan):
        self.wan = wan

    def call(self, path, method, data):
        if path == "network.interface.wan":
            return self.wan
        return None

    def close(self):
        pass


SEED = {"peeraddr": "203.0.113.10", "ip6addr": "2001:db8:5b10::b/127", "tunlink": "wan"}
WAN = {"up": True, "l3_device": "sbtest-nodev", "ipv4-address": [{"address": "198.51.100.20", "mask": 24}]}


def test_setup_records_the_interface_followed_and_the_local_address():
    with RunDir():
        assert netifd.setup("wan6", SEED, Bus(WAN)) == 0
        assert RunDir.files() == {"wan6.follows": "wan 198.51.100.20\n"}
        # the next setup (after a teardown, or a restart by hotplug) replaces it whole
        assert netifd.setup("wan6", SEED, Bus(dict(WAN, **{"ipv4-address": [{"address": "198.51.100.30"}]}))) == 0
        assert RunDir.files() == {"wan6.follows": "wan 198.51.100.30\n"}


def test_a_pinned_local_address_leaves_no_record():
    c = dict(SEED)
    c["ipaddr"] = "192.0.2.99"
    with RunDir():
        assert netifd.setup("wan6", c, Bus(WAN)) == 0
        assert RunDir.files() == {}


def test_a_failed_setup_leaves_no_record():
    c = dict(SEED)
    del c["ip6addr"]
    with RunDir():
        assert netifd.setup("wan6", c, Bus(WAN)) == 1
        assert RunDir.files() == {}


def test_a_record_that_cannot_be_written_costs_the_tunnel_nothing():
    with RunDir():
        RunDir._set(TMP + "/missing/not-a-directory")     # its parent is missing: no record can be made
        assert netifd.setup("wan6", SEED, Bus(WAN)) == 0
