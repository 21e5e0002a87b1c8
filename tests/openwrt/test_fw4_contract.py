"""fw4's reading of the firewall data our handler publishes in notify_proto's `data`, and our rules held to it.

Read from openwrt/firewall4 (stored copies):
    root/usr/share/ucode/fw4.uc                       05c8c4eba13070a128be9d29ffba1f00fa6d84de
        read_ubus      `ubus call network.interface dump`; for each interface: zone = ifc.data?.zone,
                       and each entry of ifc.data.firewall (when it is an array) becomes a rule spec
                       { ...rulespec, name: "ubus:<iface>[<proto>] <type||rule> <n>",
                         device: rulespec.device ?? ifc.l3_device ?? ifc.device }
        load           only specs with type == "rule" reach parse_rule (also "redirect", "nat",
                       "ipset" for the other parsers); a spec without a type is never parsed
        parse_options  unknown keys (other than "type" and ".xxx") only warn; an unparsable value
                       skips the whole rule
        parse_rule     the option table transcribed in RULE_OPTIONS; chain selection in add_rule
        parse_zone     a zone takes every ubus network whose zone === zone.name, matching its
                       l3 device
    root/usr/share/firewall4/templates/ruleset.uc     4fbf6d75a4a9e523d1848a28d8a3ea095e870195
        chain input: lo, ct established/related, then fw4.rules("input"), then the zone jumps: a rule
        in chain "input" sees inbound packets of every zone
    root/usr/share/firewall4/templates/rule.uc        756f1e21ed77f2c0b3fc2c8128c808704f2cf61b
        "iifname {{ rule.iifnames }}" is emitted whenever the rule has a device

The emulation below covers exactly the options our rules use and refuses the others, so a new key in
netifd.fw4_rule() fails here until it is transcribed.
"""
import json
import re
import socket

import pytest

from sixbroker.core import addr, options, plan

from sixbroker.openwrt import netifd

X = "203.0.113.10"
Y = "198.51.100.20"
IFACE = "wan6"
ZONES = ("lan", "wan")

# fw4.uc parse_options flags
PARSE_LIST, FLATTEN_LIST, NO_INVERT, UNSUPPORTED, REQUIRED, DEPRECATED = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

# fw4.uc parse_rule: option -> [datatype, default, flags]
RULE_OPTIONS = {
    "enabled": ("bool", "1", 0),
    "name": ("string", None, 0),
    "_name": ("string", None, DEPRECATED),
    "family": ("family", None, 0),
    "src": ("zone_ref", None, 0),
    "dest": ("zone_ref", None, 0),
    "device": ("device", None, NO_INVERT),
    "direction": ("direction", None, 0),
    "ipset": ("setmatch", None, 0),
    "helper": ("cthelper", None, 0),
    "set_helper": ("cthelper", None, NO_INVERT),
    "proto": ("protocol", "tcpudp", PARSE_LIST | FLATTEN_LIST),
    "src_ip": ("network", None, PARSE_LIST),
    "src_mac": ("mac", None, PARSE_LIST),
    "src_port": ("port", None, PARSE_LIST),
    "dest_ip": ("network", None, PARSE_LIST),
    "dest_port": ("port", None, PARSE_LIST),
    "icmp_type": ("icmptype", None, PARSE_LIST),
    "extra": ("string", None, UNSUPPORTED),
    "limit": ("limit", None, 0),
    "limit_burst": ("int", None, 0),
    "utc_time": ("bool", None, 0),
    "start_date": ("date", None, 0),
    "stop_date": ("date", None, 0),
    "start_time": ("time", None, 0),
    "stop_time": ("time", None, 0),
    "weekdays": ("weekdays", None, 0),
    "monthdays": ("monthdays", None, UNSUPPORTED),
    "mark": ("mark", None, 0),
    "set_mark": ("mark", None, NO_INVERT),
    "set_xmark": ("mark", None, NO_INVERT),
    "dscp": ("dscp", None, 0),
    "set_dscp": ("dscp", None, NO_INVERT),
    "counter": ("bool", "1", 0),
    "log": ("string", None, 0),
    "log_limit": ("limit", None, 0),
    "target": ("target", None, 0),
}

# fw4.uc parse_target choices (parse_enum: lower-cased prefix match)
TARGETS = ("accept", "reject", "drop", "notrack", "helper", "mark", "dscp", "dnat", "snat", "masquerade")


class Skipped(Exception):
    """fw4 skips the rule ("skipped due to invalid options" or a specific warning)."""


def to_array(x):
    """fw4.uc to_array: arrays as they are, an object as [x], anything else as whitespace-split text."""
    if isinstance(x, list):
        return x
    if x is None:
        return []
    if isinstance(x, dict):
        return [x]
    if x is True or x is False:
        text = "true" if x else "false"
    else:
        text = str(x)
    text = text.strip()
    return [] if text == "" else re.split(r"[ \t]+", text)


def parse_invert(val):
    if val is None:
        return None
    text = str(val)
    invert = bool(re.match(r"^[ \t]*!", text))
    text = re.sub(r"^[ \t]*!", "", text).strip()
    return {"invert": invert, "val": text} if text else None


def parse_bool(val):
    if val in ("1", "on", "true", "yes"):
        return True
    if val in ("0", "off", "false", "no"):
        return False
    return None


def parse_family(val):
    if val in ("any", "all", "*"):
        return 0
    if val == "inet" or "4" in val:
        return 4
    if "6" in val:
        return 6
    return None


def parse_zone_ref(val):
    if val == "*":
        return {"any": True}
    if val in ZONES:
        return {"any": False, "zone": val}
    return None


def parse_device(val):
    rv = parse_invert(val)
    if not rv:
        return None
    if rv["val"] == "*":
        rv["any"] = True
    else:
        rv["device"] = rv["val"]
    return rv


def parse_protocol(val):
    p = parse_invert(val)
    if not p:
        return None
    v = p["val"].lower()
    if v in ("all", "any", "*"):
        p["any"] = True
    elif v in ("1", "icmp"):
        p["name"] = "icmp"
    elif v in ("58", "icmpv6", "ipv6-icmp"):
        p["name"] = "ipv6-icmp"
    elif v == "tcpudp":
        return [{"invert": p["invert"], "name": "tcp"}, {"invert": p["invert"], "name": "udp"}]
    elif v == "6":
        p["name"] = "tcp"
    elif v == "17":
        p["name"] = "udp"
    else:
        p["name"] = v
    return p


def parse_network(val):
    """parse_network -> parse_subnet, the forms a single address or addr/len take."""
    rv = parse_invert(val)
    if not rv:
        return None
    a, slash, bits = rv["val"].partition("/")
    for family, af, width in ((4, socket.AF_INET, 32), (6, socket.AF_INET6, 128)):
        try:
            socket.inet_pton(af, a)
        except OSError:
            continue
        if slash and not re.fullmatch(r"[0-9]+", bits):
            return None
        rv["addrs"] = [{"family": family, "addr": a, "bits": int(bits) if slash else width}]
        return rv
    return None     # a network name would resolve through state.networks; ours are addresses


def parse_target(val):
    v = str(val).lower()
    for choice in TARGETS:
        if choice[:len(v)] == v:
            return choice
    return None


def parse_string(val):
    return str(val)


PARSERS = {"bool": parse_bool, "string": parse_string, "family": parse_family, "zone_ref": parse_zone_ref,
           "device": parse_device, "protocol": parse_protocol, "network": parse_network, "target": parse_target}


def ubus_rule_specs(ifc):
    """fw4.uc read_ubus for one interface of `network.interface dump`."""
    specs = []
    firewall = (ifc.get("data") or {}).get("firewall")
    if isinstance(firewall, list):
        for n, spec in enumerate(firewall):
            r = dict(spec)
            if spec.get("type") != "ipset":
                r["name"] = "ubus:%s[%s] %s %d" % (ifc["interface"], ifc["proto"], spec.get("type") or "rule", n)
            device = spec.get("device")
            if device is None:
                device = ifc.get("l3_device") if ifc.get("l3_device") is not None else ifc.get("device")
            r["device"] = device
            specs.append(r)
    return specs


def parse_rule(data):
    """fw4.uc parse_options(data, parse_rule's table) and the chain/family/iifname choice of add_rule.

    Returns (rule, warnings); raises Skipped where fw4 drops the rule.
    """
    warnings = []
    rule = {}
    for key, (datatype, default, flags) in RULE_OPTIONS.items():
        val = data.get(key)
        if val is None:
            val = default
        if val is None:
            continue
        if datatype not in PARSERS:
            raise AssertionError("fw4 option %r (%s) is used but not emulated here" % (key, datatype))
        parse = PARSERS[datatype]
        if flags & PARSE_LIST:
            res = []
            for item in to_array(val):
                r = parse(item)
                if r is None:
                    raise Skipped("option %r specifies invalid value %r" % (key, item))
                res.extend(r if (flags & FLATTEN_LIST and isinstance(r, list)) else [r])
        else:
            if isinstance(val, list):
                raise Skipped("option %r must not be a list" % key)
            res = parse(val)
            if res is None:
                raise Skipped("option %r specifies invalid value %r" % (key, val))
        if isinstance(res, dict) and res.get("invert") and flags & NO_INVERT:
            raise Skipped("option %r must not be negated" % key)
        if flags & (DEPRECATED | UNSUPPORTED):
            warnings.append("option %r is deprecated or unsupported by fw4" % key)
            continue
        rule[key] = res
    for key in data:
        if not key.startswith(".") and key != "type" and key not in RULE_OPTIONS:
            warnings.append("specifies unknown option %r" % key)
    if not rule.get("enabled"):
        raise Skipped("is disabled")
    if (rule.get("device") or {}).get("any"):
        raise Skipped("must not specify '*' as device")
    # add_rule: filter-rule chain selection
    chain = "output"
    src, dest = rule.get("src"), rule.get("dest")
    if src:
        chain = ("forward" if dest else "input") if src["any"] else \
            "%s_%s" % ("forward" if dest else "input", src["zone"])
    if dest and not src:
        chain = "output" if dest["any"] else "output_" + dest["zone"]
    saddrs = [a for n in rule.get("src_ip", []) for a in n["addrs"]]
    family = rule.get("family")
    if family is None:
        fams = set(a["family"] for a in saddrs)
        family = fams.pop() if len(fams) == 1 else 0
    direction_out = rule.get("direction") is True
    effective = {
        "chain": chain,
        "family": family,
        "protos": [p.get("name", "any") for p in rule["proto"]],
        "saddrs": ["%s/%d" % (a["addr"], a["bits"]) for a in saddrs],
        "iifnames": [rule["device"]["device"]] if rule.get("device") and not direction_out else None,
        "target": rule.get("target"),
    }
    return effective, warnings


def fw4_load(ifc):
    """fw4.uc load: the parsed filter rules coming from one interface's ubus data, and the warnings."""
    rules, warnings = [], []
    for spec in ubus_rule_specs(ifc):
        if spec.get("type") != "rule":
            warnings.append("spec without type 'rule' is not a rule: %r" % (spec,))
            continue
        r, w = parse_rule(spec)
        rules.append(r)
        warnings.extend(w)
    return rules, warnings


def interface_status(msg):
    """What `ubus call network.interface dump` shows for our interface after the update (ubus.c
    netifd_dump_status: l3_device once up, proto, the data table as published)."""
    return {"interface": msg["interface"], "up": True, "proto": "sixbroker", "l3_device": msg["ifname"],
            "data": json.loads(json.dumps(msg["data"]))}


# ---------------------------------------------------------------------------------------------------

SEED = {"peeraddr": X, "ip6addr": "2001:db8:5b10::b/127", "ip6prefix": ["2001:db8:5b11::/64"]}
OPTION_SETS = {
    "seed": SEED,
    "tunlink": dict(SEED, tunlink="wan"),
    "zone-lan6": dict(SEED, zone="lan"),
    "sourcerouting": dict(SEED, sourcerouting="1"),
}


class _Bus:
    """netifd's answer for the underlying interface, as the real setup path asks for it."""

    def call(self, path, method, data):
        assert (path, method) == ("network.interface.wan", "status")
        return {"up": True, "l3_device": "eth0", "ipv4-address": [{"address": Y, "mask": 24}]}


def update(config):
    # the real setup path (validate -> facts -> plan -> message), so the device fw4 sees is the one we find
    _, msgs = netifd.setup_messages(IFACE, dict(config, tunlink="wan"), _Bus())
    return msgs[-1]


def our_rules(config=SEED):
    return fw4_load(interface_status(update(config)))


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_every_rule_is_parsed_without_warnings(name):
    msg = update(OPTION_SETS[name])
    specs = msg["data"]["firewall"]
    assert specs, "the handler publishes the protocol-41 rule"
    rules, warnings = fw4_load(interface_status(msg))
    assert warnings == []
    assert len(rules) == len(specs)


def test_spec_without_type_is_not_a_rule():
    spec = dict(update(SEED)["data"]["firewall"][0])
    assert spec["type"] == "rule"
    del spec["type"]
    rules, warnings = fw4_load({"interface": IFACE, "proto": "sixbroker", "l3_device": "sb-wan6",
                                "data": {"firewall": [spec]}})
    assert rules == [] and warnings


def test_protocol_41_input_rule_from_the_peer():
    rules, _ = our_rules()
    (r,) = rules
    assert r["protos"] == ["41"]
    assert r["family"] == 4
    assert r["saddrs"] == [X + "/32"]
    assert r["target"] == "accept"


# a number outside a list is stringified by to_array; a number inside a list would reach ucode's
# replace() as an int (not emulated): text is the safe form
@pytest.mark.parametrize("proto", ["41", 41, ["41"]])
def test_proto_41_as_text_or_number(proto):
    r, w = parse_rule({"type": "rule", "src": "*", "proto": proto, "family": "ipv4", "target": "ACCEPT"})
    assert r["protos"] == ["41"] and w == []


def test_src_star_is_the_input_chain_of_every_zone():
    # '*' -> parse_zone_ref {any: true} -> chain "input", which ruleset.uc fills before the zone jumps
    rules, _ = our_rules()
    assert [r["chain"] for r in rules] == ["input"]
    assert parse_rule({"src": "wan", "proto": "41"})[0]["chain"] == "input_wan"
    # without src the same rule would filter the router's own output
    assert parse_rule({"proto": "41"})[0]["chain"] == "output"
    with pytest.raises(Skipped):
        parse_rule({"src": "nozone", "proto": "41"})


def test_device_star_is_refused():
    with pytest.raises(Skipped):
        parse_rule({"src": "*", "proto": "41", "device": "*"})


def test_fw4_replaces_the_rule_name():
    (spec,) = ubus_rule_specs(interface_status(update(SEED)))
    assert spec["name"] == "ubus:%s[sixbroker] rule 0" % IFACE


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_zone_is_an_fw4_identifier(name):
    msg = update(OPTION_SETS[name])
    zone = msg["data"]["zone"]
    # parse_zone compares net.zone === zone.name; zone names are parse_identifier words
    assert isinstance(zone, str)
    assert re.fullmatch(r"[a-zA-Z_.][a-zA-Z0-9/_.-]*", zone)
    assert zone == OPTION_SETS[name].get("zone", "wan")


def test_a_rule_with_the_wan_device_matches_where_protocol_41_arrives():
    # the form netifd.fw4_rule should publish: an explicit device wins over the injected l3_device
    spec = dict(update(SEED)["data"]["firewall"][0], device="eth0")
    rules, warnings = fw4_load({"interface": IFACE, "proto": "sixbroker", "l3_device": "sb-wan6",
                                "data": {"firewall": [spec]}})
    assert warnings == [] and rules[0]["iifnames"] == ["eth0"] and rules[0]["chain"] == "input"


def test_our_rule_matches_packets_arriving_on_the_wan_device():
    # fw4.uc read_ubus gives every data.firewall rule device = rulespec.device ?? ifc.l3_device: without
    # an explicit device the rule would match on the sit device, where protocol 41 never arrives
    msg = update(SEED)
    rules, _ = fw4_load(interface_status(msg))
    (r,) = rules
    assert r["iifnames"] == ["eth0"] and r["iifnames"] != [msg["ifname"]]
