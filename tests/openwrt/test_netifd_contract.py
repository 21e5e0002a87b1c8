"""Our notify_proto messages and our dump, held to netifd's policies (tests/netifd_policy.py).

First the checker is shown to catch each kind of mistake netifd would swallow silently, so that it cannot
pass everything; then every message our handler builds, over several option sets, must pass it.
"""
import json
import os
import shutil
import subprocess

import pytest

import netifd_policy as P
import shim_dump
from sixbroker.core import addr, options, plan
from sixbroker.openwrt import netifd

X = "203.0.113.10"      # the broker
Y = "198.51.100.20"     # the router's WAN address
IFACE = "wan6"
SHIM_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "files", "lib", "netifd", "proto")

SEED = {"peeraddr": X, "ip6addr": "2001:db8:5b10::b/127", "ip6prefix": ["2001:db8:5b11::/64"]}

# name -> (options, link MTU of the underlying device)
OPTION_SETS = {
    "seed": (SEED, None),
    "sourcerouting": (dict(SEED, sourcerouting="1"), None),
    "two-prefixes": (dict(SEED, ip6prefix=["2001:db8:5b11::/64", "2001:db8:5b20::/56"], sourcerouting="1"),
                     None),
    "metric": (dict(SEED, metric="100"), None),
    "tunlink": (dict(SEED, tunlink="wan"), None),
    "pppoe-mtu": (dict(SEED, tunlink="wan"), 1492),
    "slash64-derived-gateway": ({"peeraddr": X, "ip6addr": "2001:db8:5b10::2/64"}, None),
    "ttl-tos-device": (dict(SEED, ttl="255", tos="0x10", device="sixbrk0"), None),
    "no-defaultroute": (dict(SEED, defaultroute="0"), None),
    "mtu-option": (dict(SEED, mtu="1280"), 1500),
}


def build_plan(config, link_mtu=None):
    o = options.validate(config)
    return plan.router(o, IFACE, addr.Address.parse(X), addr.Address.parse(Y),
                       options.device_name(IFACE, o.device), link_mtu)


def seed_update():
    return netifd.update_message(IFACE, build_plan(SEED))


def problems_of(msg):
    # the message travels as JSON (ubus CLI or our encoder): check what survives the trip
    return P.check_notify(json.loads(json.dumps(msg)))


# ---------------------------------------------------------------------------------------------------
# The checker rejects what netifd would drop.

def _set(path, value):
    def mutate(m):
        target = m
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


def _del(path):
    def mutate(m):
        target = m
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return mutate


UPDATE_MISTAKES = [
    ("numeric mask", _set(("ip6addr", 0, "mask"), 127), "'mask' is int32, the policy wants string"),
    ("hex mask", _set(("ip6addr", 0, "mask"), "0x7f"), "read by netifd as 127"),
    ("octal-looking mask", _set(("ip6addr", 0, "mask"), "0127"), "read by netifd as 87"),
    ("mask too long", _set(("ip6addr", 0, "mask"), "129"), "not a prefix length netifd accepts"),
    ("address with length", _set(("ip6addr", 0, "ipaddr"), "2001:db8:5b10::b/127"), "no IPv6 address"),
    ("IPv4 address in ip6addr", _set(("ip6addr", 0, "ipaddr"), Y), "no IPv6 address"),
    ("address item not a table", _set(("ip6addr", 0), "2001:db8:5b10::b/127"), "not a table"),
    ("broadcast on an IPv6 address", _set(("ip6addr", 0, "broadcast"), "ff02::1"), "'broadcast' is ignored"),
    ("preferred > valid", lambda m: m["ip6addr"][0].update(preferred=600, valid=300), "preferred > valid"),
    ("unknown top-level key", _set(("ip6gateway",), "2001:db8:5b10::a"), "unknown key 'ip6gateway'"),
    ("string metric", _set(("routes6", 0, "metric"), "100"), "'metric' is string, the policy wants int32"),
    ("numeric netmask", _set(("routes6", 0, "netmask"), 0), "'netmask' is int32"),
    ("netmask too long", _set(("routes6", 0, "netmask"), "200"), "not a prefix length"),
    ("route target not an address", _set(("routes6", 0, "target"), "default"), "target 'default'"),
    ("route gateway IPv4", _set(("routes6", 0, "gateway"), X), "gateway '203.0.113.10'"),
    ("route source length not decimal", _set(("routes6", 0, "source"), "2001:db8:5b11::/6x"), "atoi"),
    ("route item not a table", _set(("routes6", 0), "::/0"), "not a table"),
    ("route interface key", _set(("routes6", 0, "interface"), "wan"), "'interface' is ignored"),
    ("route onlink as string", _set(("routes6", 0, "onlink"), "1"), "'onlink' is string"),
    ("tunnel ttl as string", _set(("tunnel", "ttl"), "64"), "'ttl' is string, the policy wants int32"),
    ("tunnel ttl over 255", _set(("tunnel", "ttl"), 256), "ttl 256 out of 0..255"),
    ("tunnel mtu as string", _set(("tunnel", "mtu"), "1480"), "'mtu' is string"),
    ("tunnel mtu below IPv6 minimum", _set(("tunnel", "mtu"), 1000), "below 1280"),
    ("tunnel local IPv6", _set(("tunnel", "local"), "2001:db8::1"), "local '2001:db8::1' is no IPv4"),
    ("tunnel tos not hex", _set(("tunnel", "tos"), "zz"), "neither 'inherit' nor hex"),
    ("tunnel tos as int", _set(("tunnel", "tos"), 16), "'tos' is int32"),
    ("tunnel unknown key", _set(("tunnel", "encap"), "fou"), "unknown key 'encap'"),
    ("tunnel df off with ttl", _set(("tunnel", "df"), False), "incompatible"),
    ("tunnel mode missing", _del(("tunnel", "mode")), "mode missing"),
    ("tunnel mode unknown", _set(("tunnel", "mode"), "6in4"), "mode '6in4' unknown"),
    ("tunnel as string", _set(("tunnel",), "sit"), "'tunnel' is string"),
    ("link-up missing", _del(("link-up",)), "needs bool 'link-up'"),
    ("link-up as int", _set(("link-up",), 1), "'link-up' is int32, the policy wants bool"),
    ("link-up false with settings", _set(("link-up",), False), "only signals link loss"),
    ("action out of range", _set(("action",), 8), "not 0..7"),
    ("negative action", _set(("action",), -1), "not 0..7"),
    ("action as string", _set(("action",), "0"), "no int32 action"),
    ("action as bool", _set(("action",), False), "no int32 action"),
    ("interface missing", _del(("interface",)), "no interface string"),
    ("interface as list", _set(("interface",), [IFACE]), "'interface' is array"),
    ("ifname missing", _del(("ifname",)), "no ifname"),
    ("ifname 16 characters", _set(("ifname",), "sb-abcdefghijklm"), "16 characters"),
    ("ifname with a dot", _set(("ifname",), "sb.wan6"), "VLAN"),
    ("ifname with a colon", _set(("ifname",), "sb:wan6"), "not a valid kernel device name"),
    ("prefix length 0", _set(("ip6prefix", 0), "2001:db8:5b11::/0"), "decimal 1..64"),
    ("prefix length 65", _set(("ip6prefix", 0), "2001:db8:5b11::/65"), "decimal 1..64"),
    ("prefix length 320 (uint8_t wrap)", _set(("ip6prefix", 0), "2001:db8:5b11::/320"), "decimal 1..64"),
    ("prefix without length", _set(("ip6prefix", 0), "2001:db8:5b11::"), "needs addr/len"),
    ("prefix bad address", _set(("ip6prefix", 0), "2001:db8:5b11::g/64"), "no IPv6 address"),
    ("prefix as table", _set(("ip6prefix", 0), {"prefix": "2001:db8:5b11::", "length": 64}), "not a string"),
    ("prefix empty lifetime field", _set(("ip6prefix", 0), "2001:db8:5b11::/64,,3600"), "empty field"),
    ("prefix unknown extra", _set(("ip6prefix", 0), "2001:db8:5b11::/64,3600,7200,foo=1"), "ignores 'foo=1'"),
    ("ip6prefix as string", _set(("ip6prefix",), "2001:db8:5b11::/64"), "'ip6prefix' is string"),
    ("data as list", _set(("data",), []), "'data' is array"),
    ("keep as string", _set(("keep",), "1"), "'keep' is string"),
    ("ip6gw without addresses", lambda m: (m.pop("ip6addr"), m.update(ip6gw="2001:db8:5b10::a")),
     "applied only with ip6addr"),
    ("top-level netmask", _set(("netmask",), "64"), "'netmask' is ignored"),
    ("error in an update", _set(("error",), ["X"]), "'error' is ignored by action 0"),
    ("dns not an address", _set(("dns",), ["resolver.example"]), "drops it"),
    ("address-external with tunnel", _set(("address-external",), True), "address-external with tunnel"),
]


@pytest.mark.parametrize("name,mutate,expected", UPDATE_MISTAKES, ids=[m[0] for m in UPDATE_MISTAKES])
def test_checker_rejects_update_mistake(name, mutate, expected):
    msg = seed_update()
    assert problems_of(msg) == []
    mutate(msg)
    found = problems_of(msg)
    assert found, name
    assert any(expected in p for p in found), found


OTHER_MISTAKES = [
    ("error item not a string", {"action": 3, "interface": IFACE, "error": ["X", 5]}, "not a string"),
    ("error empty", {"action": 3, "interface": IFACE, "error": []}, "error is empty"),
    ("error as string", {"action": 3, "interface": IFACE, "error": "X"}, "'error' is string"),
    ("error too long", {"action": 3, "interface": IFACE, "error": ["E"] * 16}, "at most 15"),
    ("error missing", {"action": 3, "interface": IFACE}, "needs array 'error'"),
    ("host is a name", {"action": 6, "interface": IFACE, "host": "broker.example"}, "no IPv4/IPv6"),
    ("host dep with neither", {"action": 6, "interface": IFACE}, "needs a host"),
    ("host as list", {"action": 6, "interface": IFACE, "host": [X]}, "'host' is array"),
    ("available missing", {"action": 5, "interface": IFACE}, "needs bool 'available'"),
    ("available as int", {"action": 5, "interface": IFACE, "available": 1}, "'available' is int32"),
    ("command item not a string", {"action": 1, "interface": IFACE, "command": ["/bin/true", 1]},
     "not a string"),
    ("command too long", {"action": 1, "interface": IFACE, "command": ["x"] * 63}, "at most 62"),
    ("signal as string", {"action": 2, "interface": IFACE, "signal": "15"}, "'signal' is string"),
    ("link-up in an error", {"action": 3, "interface": IFACE, "error": ["X"], "link-up": True},
     "'link-up' is ignored by action 3"),
    ("update fields in block-restart", {"action": 4, "interface": IFACE, "ifname": "sb-wan6"},
     "'ifname' is ignored by action 4"),
    ("not an object", [0, IFACE], "not a JSON object"),
]


@pytest.mark.parametrize("name,msg,expected", OTHER_MISTAKES, ids=[m[0] for m in OTHER_MISTAKES])
def test_checker_rejects_other_mistake(name, msg, expected):
    found = problems_of(msg)
    assert any(expected in p for p in found), found


# Hand-written messages netifd takes, in the forms upstream's own handlers send: the checker must not
# reject everything.
VALID = [
    {"action": 0, "interface": "x", "ifname": "6in4-x", "link-up": True,
     "tunnel": {"mode": "sit", "local": Y, "remote": X, "mtu": 1280, "ttl": 64, "tos": "inherit",
                "link": "wan", "df": True},
     "ip6addr": [{"ipaddr": "2001:db8::2", "mask": "64", "preferred": 3600, "valid": 7200, "offlink": False}],
     "routes6": [{"target": "::", "netmask": "0", "gateway": "2001:db8::1", "source": "2001:db8::/64",
                  "metric": 1024, "mtu": 1280, "onlink": True, "table": "main"}],
     "ip6prefix": ["2001:db8:1::/48", "2001:db8:2::/56,3600,7200", "2001:db8:3::/48,3600,7200,class=wan"],
     "ipaddr": [{"ipaddr": "192.0.2.2", "mask": "255.255.255.0", "broadcast": "192.0.2.255"}],
     "gateway": "192.0.2.1", "routes": [{"target": "198.51.100.0/24", "gateway": "192.0.2.1"}],
     "dns": ["192.0.2.53", "2001:db8::53"], "dns_search": ["example.org"], "keep": False,
     "data": {"zone": "wan", "firewall": []}},
    {"action": 0, "interface": "x", "link-up": False},
    {"action": 0, "interface": "x", "ifname": "wg0", "link-up": True, "address-external": True,
     "ipaddr": [{"ipaddr": "192.0.2.2", "mask": "32"}]},
    {"action": 1, "interface": "x", "command": ["/usr/sbin/pppd", "nodetach"], "env": ["A=1"]},
    {"action": 2, "interface": "x", "signal": 15},
    {"action": 3, "interface": "x", "error": ["PEER_RESOLVE_FAIL", X]},
    {"action": 4, "interface": "x"},
    {"action": 5, "interface": "x", "available": True},
    {"action": 6, "interface": "x", "host": X, "ifname": "wan"},
    {"action": 6, "interface": "x", "host": "2001:db8::1"},
    {"action": 6, "interface": "x", "ifname": "wan"},
    {"action": 7, "interface": "x"},
]


@pytest.mark.parametrize("msg", VALID, ids=["valid-%d" % i for i in range(len(VALID))])
def test_checker_accepts_valid_forms(msg):
    assert problems_of(msg) == []


def test_direct_object_needs_no_interface_key():
    msg = {"action": 4}
    assert problems_of(msg) != []
    assert P.check_notify(msg, shared_object=False) == []


@pytest.mark.parametrize("value,expected", [
    (True, P.BOOL), (False, P.BOOL), (1, P.INT32), (-(2 ** 31), P.INT32), (2 ** 31, P.INT64),
    (1.5, P.DOUBLE), ("1", P.STRING), ([], P.ARRAY), ({}, P.TABLE), (None, P.UNSPEC),
])
def test_json_types_map_like_blobmsg_json(value, expected):
    assert P.blob_type(value) == expected


@pytest.mark.parametrize("text,v6,expected", [
    ("", True, 0), ("64", True, 64), ("0x7f", True, 127), ("0127", True, 87), (" 64", True, 64),
    ("64x", True, None), ("-1", True, 0xFFFFFFFF), ("255.255.255.0", False, 24), ("255.255.255.0", True, None),
    ("0.0.0.0", False, 0), ("255.255.255.255", False, 32),
])
def test_netmask_reading_follows_parse_netmask_string(text, v6, expected):
    assert P.netmask_value(text, v6) == expected


# ---------------------------------------------------------------------------------------------------
# Our messages.

@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_update_message_passes(name):
    config, link_mtu = OPTION_SETS[name]
    p = build_plan(config, link_mtu)
    msg = netifd.update_message(IFACE, p)
    assert problems_of(msg) == []
    # the checker saw the parts that matter: the tunnel, its device and the tunnel address
    assert msg["tunnel"]["mode"] == "sit" and msg["ifname"] == p["tunnel"]["device"]
    assert [a["ipaddr"] for a in msg["ip6addr"]] == [a["address"] for a in p["addresses"]]


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_host_dependency_messages_pass(name):
    config, _ = OPTION_SETS[name]
    o = options.validate(config)
    assert problems_of(netifd.host_dep_message(IFACE, X, o.tunlink)) == []
    assert problems_of(netifd.host_dep_message(IFACE, X, "wan")) == []


@pytest.mark.parametrize("retry", [None, 5, 3600])
def test_error_message_passes(retry):
    err = options.SixbrokerError("PEER_NOT_FOUND", "typo.example.net: [Errno -2] Name or service not known",
                                 "peeraddr")
    msg = netifd.error_message(IFACE, err, retry)
    assert problems_of(msg) == []
    # proto-shell.c proto_shell_notify_error: error[0] is the code, the rest its data (at most 15 in all)
    assert msg["error"][0] == "PEER_NOT_FOUND" and len(msg["error"]) <= P.ERROR_MAX_ITEMS


def test_error_message_for_real_config_errors_passes():
    with pytest.raises(options.ConfigErrors) as e:
        options.validate({"ttl": "0", "tos": "xyz", "mtu": "9", "ip6prefix": ["nonsense"], "zone": ["a", "b"]})
    for err in e.value.errors:
        assert problems_of(netifd.error_message(IFACE, err)) == []


def test_retry_task_message_passes():
    msg = {"action": netifd.RUN_TASK, "interface": IFACE, "command": [netifd.SLEEP, "30"]}
    assert problems_of(msg) == []


@pytest.mark.parametrize("action", [netifd.BLOCK_RESTART, netifd.SETUP_FAILED])
def test_simple_messages_pass(action):
    assert problems_of(netifd.simple_message(IFACE, action)) == []


def test_action_numbers_match_upstream():
    ours = {netifd.UPDATE: 0, netifd.RUN_TASK: 1, netifd.KILL_TASK: 2, netifd.ERROR: 3,
            netifd.BLOCK_RESTART: 4, netifd.SET_AVAILABLE: 5, netifd.HOST_DEP: 6, netifd.SETUP_FAILED: 7}
    for value, number in ours.items():
        assert value == number
        assert number in P.ACTIONS


# ---------------------------------------------------------------------------------------------------
# The dump.

def run_shim_dump():
    # exactly what handler.c does: popen("./sixbroker.sh '' dump") in /lib/netifd/proto; no PATH and no
    # Python library: the dump must not need an interpreter
    busybox = shutil.which("busybox")
    assert busybox, "busybox is needed to run the shim as OpenWrt's sh would"
    return subprocess.run([busybox, "sh", "-c", "./sixbroker.sh '' dump"], cwd=SHIM_DIR,
                          env={"PATH": "/nonexistent", "SIXBROKER_LIB": "/nonexistent"},
                          capture_output=True, text=True, timeout=10)


def test_options_dump_passes():
    assert P.check_dump(shim_dump.netifd_dump()) == []


def test_shim_dump_passes_and_equals_options_dump():
    assert os.access(os.path.join(SHIM_DIR, "sixbroker.sh"), os.X_OK)
    r = run_shim_dump()
    assert r.returncode == 0, r.stderr
    objects, problems = P.parse_dump_output(r.stdout)
    assert problems == []
    assert len(objects) == 1
    assert P.check_dump(objects[0]) == []
    assert objects[0] == shim_dump.netifd_dump()


DUMP_MISTAKES = [
    ("flag as int", {"name": "x", "no-device": 1}, "only a JSON boolean"),
    ("flag as string", {"name": "x", "available": "true"}, "only a JSON boolean"),
    ("unknown flag", {"name": "x", "no_device": True}, "unknown key 'no_device'"),
    ("no name", {"config": []}, "no name string"),
    ("type out of range", {"name": "x", "config": [["a", 9]]}, "BLOBMSG_TYPE_LAST"),
    ("table type", {"name": "x", "config": [["a", 2]]}, "uci_to_blob fills only"),
    ("type as string", {"name": "x", "config": [["a", "3"]]}, "not an int"),
    ("entry not a pair", {"name": "x", "config": ["a"]}, "must be [name, type]"),
    ("duplicate option", {"name": "x", "config": [["a", 3], ["a:uinteger", 3]]}, "declared twice"),
]


@pytest.mark.parametrize("name,obj,expected", DUMP_MISTAKES, ids=[m[0] for m in DUMP_MISTAKES])
def test_dump_checker_rejects(name, obj, expected):
    found = P.check_dump(obj)
    assert any(expected in p for p in found), found


def test_dump_checker_accepts_validators_and_every_flag():
    obj = {"name": "x", "config": [["a:uinteger", 5], ["b", 7], ["c", 1], ["d", 3]]}
    obj.update((flag, True) for flag in P.HANDLER_FLAGS)
    assert P.check_dump(obj) == []


def test_multiline_dump_object_is_lost():
    text = json.dumps(shim_dump.netifd_dump(), indent=1)
    objects, problems = P.parse_dump_output(text)
    assert objects == [] and problems


def test_dump_declares_no_option_netifd_applies_itself_but_mtu():
    # defaultroute and metric: netifd applies them to our routes (interface.c iface_attrs), so the handler
    # neither declares nor applies them.  mtu (device.c dev_attrs) is declared on purpose: netifd drops a
    # value that is no number without a word; our string copy arrives too, so INVALID_MTU can name it.
    assert P.shadowed_options(shim_dump.netifd_dump()) == ["mtu"]


def test_handler_reads_netifd_config_with_repeated_keys():
    section = {"proto": "sixbroker", "peeraddr": X, "ip6addr": "2001:db8:5b10::b/127",
               "ip6prefix": ["2001:db8:5b11::/64"], "mtu": "1400", "defaultroute": "0", "metric": "10"}
    text = P.netifd_config_json(section, shim_dump.netifd_dump())
    # netifd's typed copies and ours both arrive; json keeps the last of each
    assert text.count('"mtu"') == 2 and text.count('"metric"') == 1
    o = options.validate(json.loads(text))
    assert (o.mtu, o.defaultroute, o.metric) == (1400, False, 10)


# ---------------------------------------------------------------------------------------------------
# The error list netifd keeps (tests/netifd_policy.py Interface, which the handler tests answer with).

def test_each_action_3_is_one_more_error_until_the_next_setup():
    # proto-shell.c proto_shell_notify_error -> interface.c interface_add_error (list_add_tail); only
    # interface_set_up from down (interface_clear_errors), a reload or a removal clears the list
    model = P.Interface(IFACE)
    for err in (["INVALID_TTL", "ttl", "0"], ["INVALID_MTU", "mtu", "x"], ["UPDATE_REFUSED"]):
        assert model.notify({"action": 3, "interface": IFACE, "error": err}) == P.UBUS_OK
    assert model.status()["errors"] == [
        {"subsystem": "sixbroker", "code": "INVALID_TTL", "data": ["ttl", "0"]},
        {"subsystem": "sixbroker", "code": "INVALID_MTU", "data": ["mtu", "x"]},
        {"subsystem": "sixbroker", "code": "UPDATE_REFUSED"}]      # ubus.c: no data array when empty
    model.set_up()
    assert "errors" not in model.status()


@pytest.mark.parametrize("error", [["A"] * 16, ["A", 5], [], "A"])
def test_an_error_netifd_refuses_is_not_kept(error):
    # data[16]: n_data + 1 == 16 fails; every item must be a string; an empty list fails
    model = P.Interface(IFACE)
    assert model.notify({"action": 3, "interface": IFACE, "error": error}) == P.UBUS_INVALID_ARGUMENT
    assert "errors" not in model.status()
    assert model.notify({"action": 3, "interface": IFACE, "error": ["A"] * 15}) == P.UBUS_OK
