"""The handler's messages to netifd, in process, with a bus that answers like netifd and records calls.

The wire (ubus) and the argv netifd uses are tested in tests/openwrt/test_handler.py; netifd's policy for
every field in tests/openwrt/test_netifd_contract.py.
"""
from sixbroker.openwrt import netifd
from sixbroker.core.errors import SixbrokerError
from sixbroker.openwrt.ubus import UbusError

SEED = {"peeraddr": "203.0.113.10", "ip6addr": "2001:db8:5b10::b/127", "ip6prefix": ["2001:db8:5b11::/64"],
        "tunlink": "wan"}

# the handler keeps failures in a row in a run directory: not the host's /var/run
RUN_DIR = "/tmp/sixbroker-core-tests"
try:
    import os
    os.environ["SIXBROKER_RUN_DIR"] = RUN_DIR     # CPython's getenv reads os.environ
except AttributeError:
    os.putenv("SIXBROKER_RUN_DIR", RUN_DIR)       # MicroPython has no os.environ

WAN_UP = {"up": True, "l3_device": "sbtest-nodev", "ipv4-address": [{"address": "198.51.100.20", "mask": 24}]}


class Bus:
    """Answers status calls from a table and records every notify_proto."""

    def __init__(self, objects=None):
        self.objects = objects if objects is not None else {"network.interface.wan": WAN_UP}
        self.sent = []

    def call(self, path, method, data):
        if method == "notify_proto":
            self.sent.append(data)
            return None
        if path not in self.objects:
            # what ubusd answers a lookup of an object nobody registered (ubusd_proto.c)
            raise UbusError("ubus call " + path + " " + method + ": Not found (ubus status 4)", 4)
        return self.objects[path]

    def close(self):
        pass


def run(config, bus=None):
    bus = bus or Bus()
    rc = netifd.setup("wan6", config, bus)
    return rc, bus.sent


def test_seed_home_router_update():
    rc, sent = run(SEED)
    assert rc == 0
    assert sent[0] == {"action": 6, "interface": "wan6", "ifname": "wan"}
    assert sent[1] == {
        "action": 0, "interface": "wan6", "ifname": "sb-wan6", "link-up": True,
        "tunnel": {"mode": "sit", "local": "198.51.100.20", "remote": "203.0.113.10", "mtu": 1480, "ttl": 64,
                   "tos": "inherit", "link": "wan"},
        "ip6addr": [{"ipaddr": "2001:db8:5b10::b", "mask": "127"}],
        "routes6": [{"target": "::", "netmask": "0", "gateway": "2001:db8:5b10::a"}],
        "ip6prefix": ["2001:db8:5b11::/64"],
        "data": {"zone": "wan",
                 "firewall": [{"type": "rule", "name": "sixbroker-wan6-6in4", "src": "*", "device": "sbtest-nodev",
                               "family": "ipv4",
                               "proto": "41", "src_ip": "203.0.113.10", "target": "ACCEPT"}],
                 "sixbroker": {"local": "198.51.100.20", "remote": "203.0.113.10",
                               "local_from": "tunlink", "tunlink": "wan"}},
    }
    assert len(sent) == 2


def test_ipaddr_overrides_the_tunlink_address():
    c = dict(SEED)
    c["ipaddr"] = "192.168.1.2"       # behind NAT the user may pin the private address
    rc, sent = run(c)
    assert rc == 0 and sent[1]["tunnel"]["local"] == "192.168.1.2"


def test_configuration_error_blocks_restart():
    c = dict(SEED)
    c["mtu"] = "huge"
    rc, sent = run(c)
    assert rc == 1
    assert sent == [{"action": 3, "interface": "wan6", "error": ["INVALID_MTU", "mtu", "huge"]},
                    {"action": 4, "interface": "wan6"}]


def test_every_configuration_error_is_its_own_action_3():
    rc, sent = run({"ip6addr": "2001:db8::b", "ttl": "0"})
    assert [m["action"] for m in sent] == [3, 3, 3, 4]
    assert [m["error"][:2] for m in sent[:3]] == [
        ["PEER_ADDRESS_MISSING", "peeraddr"], ["IP6ADDR_NEEDS_LENGTH", "ip6addr"], ["INVALID_TTL", "ttl"]]


def test_codes_luci_words_itself_travel_under_ours():
    # LuCI's network.js defines MISSING_PEER_ADDRESS and PEER_RESOLVE_FAIL with its own words, and
    # registerErrorCode cannot replace them
    rc, sent = run({"ip6addr": "2001:db8::b/127"})
    assert sent[0]["error"][:2] == ["PEER_ADDRESS_MISSING", "peeraddr"]
    assert netifd.for_netifd(SixbrokerError("PEER_RESOLVE_FAIL", "x", "peeraddr")).code == "PEER_NOT_RESOLVED"
    assert netifd.for_netifd(SixbrokerError("INVALID_TTL", "0", "ttl")).code == "INVALID_TTL"


def test_tunlink_down_is_retried_after_a_delay():
    bus = Bus({"network.interface.wan": {"up": False}})
    rc, sent = run(SEED, bus)
    assert rc == 1
    assert sent[0]["error"][:2] == ["TUNLINK_NOT_UP", "tunlink"]
    assert sent[0]["error"][3].startswith("next try in ")
    assert sent[1]["action"] == 1 and sent[1]["command"][0] == "/bin/sleep"
    assert sent[0]["error"][3] == "next try in " + sent[1]["command"][1] + " s"


def test_unknown_tunlink_is_its_own_code():
    rc, sent = run(SEED, Bus({}))
    assert sent[0]["error"][:3] == ["TUNLINK_UNKNOWN", "tunlink", "wan"]


def test_tunlink_without_ipv4_address():
    rc, sent = run(SEED, Bus({"network.interface.wan": {"up": True, "l3_device": "x", "ipv4-address": []}}))
    assert sent[0]["error"][0] == "NO_LOCAL_ADDRESS"


def test_sourcerouting_routes_carry_their_source():
    c = dict(SEED)
    c["sourcerouting"] = "1"
    rc, sent = run(c)
    assert sent[1]["routes6"] == [
        {"target": "::", "netmask": "0", "gateway": "2001:db8:5b10::a", "source": "2001:db8:5b10::a/127"},
        {"target": "::", "netmask": "0", "gateway": "2001:db8:5b10::a", "source": "2001:db8:5b11::/64"}]


def test_defaultroute_and_metric_are_left_to_netifd():
    # netifd applies both to a handler's routes itself (options.NETIFD_OWNS); it passes typed copies
    c = dict(SEED)
    c["defaultroute"] = False
    c["metric"] = 10
    rc, sent = run(c)
    assert sent[1]["routes6"] == [{"target": "::", "netmask": "0", "gateway": "2001:db8:5b10::a"}]


def test_device_name_held_by_another_device_is_refused():
    c = dict(SEED)
    c["device"] = "lo"
    rc, sent = run(c)
    assert rc == 1
    assert sent == [{"action": 3, "interface": "wan6", "error": ["DEVICE_IN_USE", "device",
                                                                  "lo is a device that is not a sit tunnel"]},
                    {"action": 4, "interface": "wan6"}]


def test_no_prefix_means_no_ip6prefix_key():
    c = dict(SEED)
    del c["ip6prefix"]
    rc, sent = run(c)
    assert "ip6prefix" not in sent[1]


def test_usage_error_exit_code():
    assert netifd.main(["x", "sixbroker", "bogus", "wan6"]) == 2
    assert netifd.main(["x"]) == 2


def test_teardown_needs_nothing_from_netifd():
    assert netifd.main(["x", "sixbroker", "teardown", "wan6", "{}"]) == 0


def test_config_json_parses_like_json():
    import json
    for text in ['{"a": [1, 2.5, true, null, "x\\u00e9"], "b": {}}', '[]', ' {"k": -3} ', '{"a":1,"a":2}']:
        assert netifd.loads(text) == json.loads(text), text


def test_config_json_rejects_what_json_rejects():
    import pytest
    # ('{"a":}' too on CPython; MicroPython's json reads it as {}: netifd never sends it)
    for text in ['{', '{"a":1} x', 'NaN', '{"a": Infinity}', '']:
        with pytest.raises(ValueError):
            netifd.loads(text)



def test_a_nul_in_the_users_value_still_reaches_netifd():
    rc, sent = run(dict(SEED, ttl="6\u00004"))
    assert sent[0]["error"] == ["INVALID_TTL", "ttl", "6\\04"]
