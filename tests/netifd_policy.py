"""netifd's side of the protocol-handler contract, transcribed from upstream as data, and a checker for it.

netifd parses every notify_proto message with blobmsg policies and drops, without a word, an attribute
whose blobmsg type differs from the policy's.  Our messages are held to these tables instead of to a
running netifd (netifd, ubusd and fw4 cannot run on the build host).

Read with the search tools from the stored copies of upstream (the index holds several versions of each
file; the newest one found is the one cited; the stored texts carry no line numbers, so each table names
the file and function it comes from):

    openwrt/netifd   proto-ext.c     08a4a7b33056d171841ee5c0d666358821ec1b0c  (split out of proto-shell.c;
                                     an older 19421-char version, id 19875249847, agrees on every table)
                     proto-shell.c   newest stored post-split version (index id 19900174904);
                                     pre-split 6929508209 has the same flags minus no-device-config
                     proto.c         00fc987a147841a2e9bfd15399056886b6c77064
                     interface-ip.c  newest stored, 40215 chars (index id 7480120419; ROUTE_PROTO present)
                     interface.c     newest stored, 33162 chars (index id 7113073684)
                     system.c        newest stored, 4286 chars (index id 7355758011; TUNNEL_ATTR_TOS/DATA)
                     system-linux.c  newest stored, 114184 chars (index id 13752208166)
                     device.c        001100fd10fb799572e21551b4f9bdad861a1b4f; device.h 03834f80dc52
                     tunnel.c        newest stored (index id 7297146435)
                     handler.c       newest stored (index id 6765427748; "option:validator" support)
                     ubus.c          11c7cf99c362b9dc33c6d1aa209321e38d131128
                     utils.c         parse_netmask_string / parse_ip_and_netmask (index id 903935827)
                     config.c        config_parse_interface (index id 67022361470)
    openwrt/libubox  blobmsg.h 143303149c8b; blobmsg.c 66195aee50424cbda0c2d858014e4cc58a2dc029;
                     blobmsg_json.c blobmsg_add_json_element (stored f43da92dd7b8 maps every JSON
                     int to INT32; the later int64 change, read as an openwrt-devel patch, keeps INT32
                     for int32-range ints and makes others INT64, reals DOUBLE: modelled here)
    openwrt/uci      blob.c uci_attr_to_blob (index id 776733097)

Where this file and ../shared/openwrt-contract.md differ, this file follows upstream and says why.
"""

import json
import re
import socket

# ---------------------------------------------------------------------------------------------------
# libubox blobmsg.h, enum blobmsg_type.  BOOL is INT8: a JSON 1 (INT32) never satisfies a BOOL policy,
# and a JSON true (INT8) never satisfies an INT32 one.
UNSPEC, ARRAY, TABLE, STRING, INT64, INT32, INT16, INT8, DOUBLE = range(9)
BOOL = INT8
BLOBMSG_TYPE_LAST = DOUBLE
TYPE_NAMES = {UNSPEC: "null", ARRAY: "array", TABLE: "table", STRING: "string", INT64: "int64",
              INT32: "int32", INT16: "int16", INT8: "bool", DOUBLE: "double"}

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1


def blob_type(value):
    """The blobmsg type the ubus CLI gives a JSON value (libubox blobmsg_json.c, blobmsg_add_json_element).

    Our own encoder must do the same; Python's bool is tested before int because it is an int subclass.
    """
    if value is None:
        return UNSPEC
    if value is True or value is False:
        return BOOL
    if isinstance(value, int):
        return INT32 if INT32_MIN <= value <= INT32_MAX else INT64
    if isinstance(value, float):
        return DOUBLE
    if isinstance(value, str):
        return STRING
    if isinstance(value, (list, tuple)):
        return ARRAY
    if isinstance(value, dict):
        return TABLE
    raise TypeError("no JSON form for %r" % (value,))


# ---------------------------------------------------------------------------------------------------
# ubus.c, netifd_add_iface_object / netifd_handle_iface: every method of the shared "network.interface"
# object (notify_proto included) gets this one-entry policy; the interface is looked up by it, then the
# whole message goes on to the protocol's notify.  Calling "network.interface.<name>" needs no key.
UBUS_IFACE_POLICY = {"interface": STRING}

# proto-ext.c, enum NOTIFY_* / notify_attr[] (proto_ext_notify parses with it).
NOTIFY_POLICY = {
    "action": INT32,
    "error": ARRAY,
    "command": ARRAY,
    "env": ARRAY,
    "signal": INT32,
    "available": BOOL,
    "link-up": BOOL,
    "ifname": STRING,
    "address-external": BOOL,
    "routes": ARRAY,
    "routes6": ARRAY,
    "tunnel": TABLE,
    "data": TABLE,
    "keep": BOOL,
    "host": STRING,
    "dns": ARRAY,
    "dns_search": ARRAY,
    "neighbor": ARRAY,
    "neighbor6": ARRAY,
}

# proto.c, proto_ip_attributes[]: proto_apply_ip_settings() parses the whole action-0 message with it.
PROTO_IP_POLICY = {
    "ipaddr": ARRAY,
    "ip6addr": ARRAY,
    "netmask": STRING,
    "broadcast": STRING,
    "gateway": STRING,
    "ip6gw": STRING,
    "ip6prefix": ARRAY,
}
# proto_apply_ip_settings (unlike proto_apply_static_ip_settings) never reads these two
PROTO_IP_IGNORED_BY_NOTIFY = ("netmask", "broadcast")

TOP_LEVEL_POLICY = {}
TOP_LEVEL_POLICY.update(UBUS_IFACE_POLICY)
TOP_LEVEL_POLICY.update(NOTIFY_POLICY)
TOP_LEVEL_POLICY.update(PROTO_IP_POLICY)

# proto-ext.c, proto_ext_notify: the switch on blobmsg_get_u32(action); anything else is
# UBUS_STATUS_INVALID_ARGUMENT.
ACTIONS = {
    0: "update link (proto_ext_update_link)",
    1: "run proto task (proto_ext_run_command)",
    2: "kill proto task (proto_ext_kill_command)",
    3: "error (proto_ext_notify_error)",
    4: "block restart (proto_ext_block_restart)",
    5: "set available (proto_ext_set_available)",
    6: "host dependency (proto_ext_add_host_dependency)",
    7: "setup failed (proto_ext_setup_failed)",
}

# The attributes each action's function reads; any other attribute in the message is ignored.
ACTION_FIELDS = {
    0: ("link-up", "keep", "address-external", "ifname", "tunnel", "ipaddr", "ip6addr", "ip6prefix",
        "gateway", "ip6gw", "routes", "routes6", "neighbor", "neighbor6", "dns", "dns_search", "data"),
    1: ("command", "env"),
    2: ("signal",),
    3: ("error",),
    4: (),
    5: ("available",),
    6: ("host", "ifname"),
    7: (),
}
# Missing -> UBUS_STATUS_INVALID_ARGUMENT (action 6 needs host, or an empty host with an ifname).
ACTION_REQUIRED = {0: ("link-up",), 1: ("command",), 3: ("error",), 5: ("available",)}

# proto-ext.c fill_string_list (argv[64], env[32]: fails when argc reaches max - 1) and
# proto_ext_notify_error (data[16]: fails when n_data + 1 reaches 16).
COMMAND_MAX_ITEMS = 62
ENV_MAX_ITEMS = 30
ERROR_MAX_ITEMS = 15

# proto.c, enum ADDR_* / proto_ip_addr[] (parse_address_item).  Items are tables; the first bad item
# makes parse_address_list return -1 and netifd skips the rest of the list, then gateway/ip6gw too.
ADDR_POLICY = {
    "ipaddr": STRING,      # inet_pton only: "addr/len" is rejected
    "mask": STRING,        # parse_netmask_string; absent: 32 / 128
    "broadcast": STRING,   # IPv4 only
    "ptp": STRING,         # IPv4 only
    "preferred": INT32,    # IPv6 only, seconds from now
    "valid": INT32,        # IPv6 only; preferred > valid is an error
    "offlink": BOOL,
    "class": STRING,       # IPv6 only
}
ADDR_V4_ONLY = ("broadcast", "ptp")
ADDR_V6_ONLY = ("preferred", "valid", "class")

# interface-ip.c, enum ROUTE_* / route_attr[] (interface_ip_add_route).  Items must be tables
# (proto_ext_parse_route_list skips others); a bad item is dropped alone.
ROUTE_POLICY = {
    "interface": STRING,   # only for UCI route sections: ignored for a protocol's routes
    "target": STRING,      # parse_ip_and_netmask: "addr" or "addr/len" (len overrides netmask)
    "netmask": STRING,     # parse_netmask_string
    "gateway": STRING,
    "metric": INT32,       # absent: the interface's metric (interface_set_route_info)
    "mtu": INT32,
    "table": STRING,       # system_resolve_rt_table: a name or a number
    "valid": INT32,
    "source": STRING,      # "addr[/len]", len read by atoi
    "onlink": BOOL,
    "type": STRING,        # system_resolve_rt_type
    "proto": STRING,       # system_resolve_rt_proto
}
ROUTE_IGNORED_FOR_PROTO = ("interface",)

# system.c, tunnel_attrs[] (system_add_ip_tunnel parses the "tunnel" table with it) ...
TUNNEL_POLICY = {
    "mode": STRING,
    "local": STRING,
    "remote": STRING,
    "mtu": INT32,
    "df": BOOL,
    "ttl": INT32,
    "tos": STRING,
    "link": STRING,        # a LOGICAL interface (vlist_find(&interfaces, ...)); unknown -> -EINVAL
    "data": TABLE,
}
# ... and tunnel.c tunnel_reload -> device.c device_init_settings parses the same table with dev_attrs[]
# (device.c 001100fd): this is how "mtu" reaches the sit device.  Newer device.c adds more keys.
DEVICE_POLICY = {
    "type": STRING,
    "mtu": INT32,
    "mtu6": INT32,
    "macaddr": STRING,
    "txqueuelen": INT32,
    "enabled": BOOL,
    "ipv6": BOOL,
    "promisc": BOOL,
    "rpfilter": STRING,
    "acceptlocal": BOOL,
    "igmpversion": INT32,
    "mldversion": INT32,
    "neighreachabletime": INT32,
    "rps": BOOL,
    "xps": BOOL,
    "dadtransmits": INT32,
    "multicast_to_unicast": BOOL,
    "multicast_router": INT32,
}
# system.c sixrd_data_attrs[]: the "data" table of a sit tunnel (system-linux.c system_add_sit_tunnel)
SIXRD_DATA_POLICY = {"prefix": STRING, "relay-prefix": STRING}
# system-linux.c system_add_ip_tunnel: the modes it knows; any other -> -EINVAL
TUNNEL_MODES = ("sit", "ipip6", "greip", "gretapip", "greip6", "gretapip6", "vtiip", "vtiip6", "xfrm",
                "vxlan", "vxlan6", "ipip")
IPV4_TUNNEL_MODES = ("sit", "ipip")   # system_add_proto_tunnel: local/remote through inet_pton(AF_INET)
TTL_MAX = 255                          # system_add_ip_tunnel: ttl > 255 -> -EINVAL
TOS_MAX = 0xFF                         # system_tos_aton: strtoul(..., 16) <= 255, or "inherit"

# device.h: char ifname[IFNAMSIZ + 1] holds 16 characters, but SIOCADDTUNNEL (system_add_proto_tunnel)
# copies sizeof(p.name) - 1 = 15 of them, and the kernel (dev_valid_name) takes at most 15: a 16th
# character makes netifd look for a device the kernel never created.
IFNAMSIZ = 16
IFNAME_MAX = IFNAMSIZ - 1

# ---------------------------------------------------------------------------------------------------
# Handler discovery.  handler.c netifd_parse_script_handler: popen("./NAME.sh '' dump"), fgets() 512-byte
# chunks into one json_tokener; a chunk ending in "\n" with no complete object frees the tokener, so a
# JSON object spread over several lines is lost: one object per line.
# proto-shell.c proto_shell_add_handler: flags read with json_get_field(obj, flag, json_type_boolean), so
# only a JSON true counts (1 or "1" is ignored).
HANDLER_FLAGS = ("no-device", "no-device-config", "no-proto-task", "available", "renew-handler",
                 "lasterror", "teardown-on-l3-link-down")
# proto-ext.c 08a4a7b tests PROTO_FLAG_RESTART_AVAILABLE for the "restart" action; the proto-shell.c
# that sets it from the dump was not among the stored versions (the contract file names the flag).
HANDLER_FLAGS_UNVERIFIED = ("restart-handler",)
# handler.c netifd_handler_parse_config: config = [[name, type], ...], name may be "name:validator",
# type an int <= BLOBMSG_TYPE_LAST, else the whole config is dropped (n_params = 0).
# openwrt/uci blob.c uci_attr_to_blob fills only these; an option of any other type never arrives
# (INT64 only in newer uci; not offered here).
UCI_BLOB_TYPES = (ARRAY, STRING, INT32, BOOL)

# config.c config_parse_interface: the config netifd hands the handler is uci_to_blob() of the section
# with interface_attr_list, then the handler's own list, then simple_device_type's (device_attr_list).
# An option declared again by the handler appears twice in the JSON (Python and MicroPython json keep the
# last), and netifd itself acts on its own typed copy.
INTERFACE_OPTIONS = {    # interface.c iface_attrs[] (newest stored)
    "proto": STRING, "ifname": STRING, "auto": BOOL, "defaultroute": BOOL, "peerdns": BOOL,
    "metric": INT32, "dns": ARRAY, "dns_search": ARRAY, "dns_metric": INT32, "interface": STRING,
    "ip6assign": INT32, "ip6hint": STRING, "ip4table": STRING, "ip6table": STRING, "ip6class": ARRAY,
    "delegate": BOOL, "ip6ifaceid": STRING, "force_link": BOOL, "ip6weight": INT32,
}
# uci blob.c: a BOOL option converts only from "1", "true", "0", "false"; "yes"/"on" are dropped and
# netifd's default applies (defaultroute: true).
UCI_BOOL_WORDS = ("1", "true", "0", "false")


# ---------------------------------------------------------------------------------------------------
# Value parsers, each mirroring the C function named.

def inet(text, v6):
    """inet_pton(AF_INET6 or AF_INET, text) > 0"""
    if not isinstance(text, str):
        return False
    try:
        socket.inet_pton(socket.AF_INET6 if v6 else socket.AF_INET, text)
    except (OSError, ValueError):
        return False
    return True


def _strtoul(text, base):
    """C strtoul: returns (value, rest) with value None when no digits were read."""
    s = text.lstrip(" \t\n\r\f\v")
    neg = False
    if s[:1] in ("+", "-"):
        neg = s[0] == "-"
        s = s[1:]
    if base in (0, 16) and s[:2].lower() == "0x" and len(s) > 2 and s[2] in "0123456789abcdefABCDEF":
        s, base = s[2:], 16
    elif base == 0:
        base = 8 if s[:1] == "0" else 10
    digits = "0123456789abcdef"[:base]
    n = 0
    while n < len(s) and s[n].lower() in digits:
        n += 1
    if n == 0:
        return None, text
    value = int(s[:n], base)
    if neg:
        value = (-value) % (2 ** 64)
    return value, s[n:]


def netmask_value(text, v6):
    """utils.c parse_netmask_string: the prefix length netifd reads, or None where it returns ~0.

    No "." -> strtoul(text, &err, 0): "0x7f" is 127 and "0127" is octal 87; "" is 0.  With "." an
    IPv4 dotted mask (IPv4 only).
    """
    if "." not in text:
        value, rest = _strtoul(text, 0)
        if value is None:
            return 0 if text == "" else None
        if rest:
            return None
        return value & 0xFFFFFFFF
    if v6:
        return None
    try:
        packed = socket.inet_aton(text)
    except OSError:
        return None
    bits = int.from_bytes(packed, "big")
    inverted = ~bits & 0xFFFFFFFF
    return 32 - inverted.bit_length()


def _length_problem(text, v6, what):
    """A prefix length given as text: netifd's reading, and whether it is the plain decimal we meant."""
    limit = 128 if v6 else 32
    value = netmask_value(text, v6)
    if value is None or value > limit:
        return "%s %r is not a prefix length netifd accepts (parse_netmask_string)" % (what, text)
    if "." not in text and text != str(value):
        return "%s %r is read by netifd as %d (strtoul base 0); write %r" % (what, text, value, str(value))
    return None


def _decimal(text, low, high):
    return bool(re.fullmatch(r"0|[1-9][0-9]*", text)) and low <= int(text) <= high


def prefix_problem(text):
    """proto.c parse_prefix_option: "addr/len[,preferred[,valid[,excluded=addr/len|class=name...]]]".

    len is strtoul(..., 10) cast to uint8_t and must be 1..64; lifetimes are strtoul(..., 10) seconds
    (absent = infinite, 0 = already expired); strtok_r skips empty fields, which would shift them.
    """
    if not isinstance(text, str):
        return "ip6prefix item %r is not a string (parse_prefix_list rejects the list)" % (text,)
    if len(text) + 1 >= 128:
        return "ip6prefix %r longer than parse_prefix_option's 128-byte buffer" % text
    fields = text.split(",")
    if any(f == "" for f in fields):
        return "ip6prefix %r has an empty field; strtok_r would shift the lifetimes" % text
    head = fields[0].split("/")
    if len(head) != 2:
        return "ip6prefix %r needs addr/len" % text
    if not inet(head[0], True):
        return "ip6prefix %r: %r is no IPv6 address" % (text, head[0])
    if not _decimal(head[1], 1, 64):
        return "ip6prefix %r: length must be a decimal 1..64 (uint8_t cast of strtoul)" % text
    for f in fields[1:3]:
        if not _decimal(f, 0, 0xFFFFFFFF):
            return "ip6prefix %r: lifetime %r is not decimal seconds" % (text, f)
    for f in fields[3:]:
        key, _, value = f.partition("=")
        if key == "excluded":
            a, _, n = value.partition("/")
            if not inet(a, True) or not _decimal(n, 0, 128):
                return "ip6prefix %r: bad excluded=%r" % (text, value)
        elif key != "class" or not value:
            return "ip6prefix %r: netifd ignores %r (only excluded= and class=)" % (text, f)
    return None


def tos_ok(text):
    """system-linux.c: "inherit", or system_tos_aton: strtoul(text, &e, 16) with nothing left, <= 255."""
    if text == "inherit":
        return True
    value, rest = _strtoul(text, 16)
    return value is not None and not rest and value <= TOS_MAX and text == text.strip()


def ifname_problem(name, created):
    """Kernel dev_valid_name plus netifd's own readings of a device name."""
    if not name:
        return "ifname is empty"
    if len(name) > IFNAME_MAX:
        return "ifname %r is %d characters; the kernel takes %d (SIOCADDTUNNEL copies IFNAMSIZ-1)" % (
            name, len(name), IFNAME_MAX)
    if name in (".", "..") or any(c in name for c in "/: \t\n"):
        return "ifname %r is not a valid kernel device name" % name
    if created and "." in name:
        return "ifname %r contains '.', which device.c device_get reads as a VLAN (get_vlan_device_chain)" % name
    return None


# ---------------------------------------------------------------------------------------------------
# The checker.

def _type_problems(obj, policy, where, problems, ignored=()):
    for key in sorted(obj):
        value = obj[key]
        if key not in policy:
            problems.append("%s: unknown key %r (blobmsg_parse skips it silently)" % (where, key))
            continue
        want, got = policy[key], blob_type(value)
        if want != got:
            problems.append("%s: %r is %s, the policy wants %s: netifd drops it silently" % (
                where, key, TYPE_NAMES[got], TYPE_NAMES[want]))
        elif key in ignored:
            problems.append("%s: %r is ignored here" % (where, key))


def _ok(obj, key, policy):
    return key in obj and blob_type(obj[key]) == policy[key]


def _check_address(item, v6, where, problems):
    if blob_type(item) != TABLE:
        problems.append("%s: item is %s, not a table: parse_address_item fails and netifd drops the "
                        "rest of the list" % (where, TYPE_NAMES[blob_type(item)]))
        return
    ignored = ADDR_V4_ONLY if v6 else ADDR_V6_ONLY
    _type_problems(item, ADDR_POLICY, where, problems, ignored)
    if not _ok(item, "ipaddr", ADDR_POLICY):
        problems.append("%s: ipaddr missing: the item and the rest of the list are dropped" % where)
    elif not inet(item["ipaddr"], v6):
        problems.append("%s: ipaddr %r is no %s address (inet_pton; no /len here)" % (
            where, item["ipaddr"], "IPv6" if v6 else "IPv4"))
    if _ok(item, "mask", ADDR_POLICY):
        p = _length_problem(item["mask"], v6, "mask")
        if p:
            problems.append("%s: %s" % (where, p))
    for key in ("broadcast", "ptp"):
        if not v6 and _ok(item, key, ADDR_POLICY) and not inet(item[key], False):
            problems.append("%s: %s %r is no IPv4 address" % (where, key, item[key]))
    if v6 and _ok(item, "preferred", ADDR_POLICY) and _ok(item, "valid", ADDR_POLICY):
        if (item["preferred"] & 0xFFFFFFFF) > (item["valid"] & 0xFFFFFFFF):
            problems.append("%s: preferred > valid: parse_address_item rejects the item" % where)


def _check_route(item, v6, where, problems):
    if blob_type(item) != TABLE:
        problems.append("%s: item is %s, not a table: proto_ext_parse_route_list skips it" % (
            where, TYPE_NAMES[blob_type(item)]))
        return
    _type_problems(item, ROUTE_POLICY, where, problems, ROUTE_IGNORED_FOR_PROTO)
    mask_given = None
    if _ok(item, "netmask", ROUTE_POLICY):
        p = _length_problem(item["netmask"], v6, "netmask")
        if p:
            problems.append("%s: %s: the route is dropped" % (where, p))
        mask_given = netmask_value(item["netmask"], v6)
    if _ok(item, "target", ROUTE_POLICY):
        addr, slash, length = item["target"].partition("/")
        if not inet(addr, v6):
            problems.append("%s: target %r is no %s address: the route is dropped" % (
                where, item["target"], "IPv6" if v6 else "IPv4"))
        if slash:
            p = _length_problem(length, v6, "target length")
            if p:
                problems.append("%s: %s: the route is dropped" % (where, p))
            elif mask_given is not None and netmask_value(length, v6) != mask_given:
                problems.append("%s: target %r overrides netmask %r" % (where, item["target"],
                                                                         item["netmask"]))
    if _ok(item, "gateway", ROUTE_POLICY) and not inet(item["gateway"], v6):
        problems.append("%s: gateway %r is no %s address: the route is dropped" % (
            where, item["gateway"], "IPv6" if v6 else "IPv4"))
    if _ok(item, "source", ROUTE_POLICY):
        addr, slash, length = item["source"].partition("/")
        if not inet(addr, v6):
            problems.append("%s: source %r: address part fails inet_pton: the route is dropped" % (
                where, item["source"]))
        elif slash and not _decimal(length, 0, 128 if v6 else 32):
            problems.append("%s: source %r: length is read with atoi" % (where, item["source"]))
    for key in ("metric", "mtu"):
        if _ok(item, key, ROUTE_POLICY) and item[key] < 0:
            problems.append("%s: %s %d is read as an unsigned 32-bit number" % (where, key, item[key]))


def _check_tunnel(t, where, problems):
    policy = dict(DEVICE_POLICY)
    policy.update(TUNNEL_POLICY)
    _type_problems(t, policy, where, problems)
    mode = t.get("mode")
    if not _ok(t, "mode", TUNNEL_POLICY):
        problems.append("%s: mode missing: system_add_ip_tunnel fails (-EINVAL)" % where)
    elif mode not in TUNNEL_MODES:
        problems.append("%s: mode %r unknown to system_add_ip_tunnel" % (where, mode))
    if _ok(t, "ttl", TUNNEL_POLICY) and not 0 <= t["ttl"] <= TTL_MAX:
        problems.append("%s: ttl %d out of 0..%d: -EINVAL" % (where, t["ttl"], TTL_MAX))
    if _ok(t, "tos", TUNNEL_POLICY) and not tos_ok(t["tos"]):
        problems.append("%s: tos %r is neither 'inherit' nor hex <= ff (system_tos_aton)" % (where, t["tos"]))
    if mode in IPV4_TUNNEL_MODES:
        for key in ("local", "remote"):
            if _ok(t, key, TUNNEL_POLICY) and not inet(t[key], False):
                problems.append("%s: %s %r is no IPv4 address: -EINVAL" % (where, key, t[key]))
        if _ok(t, "df", TUNNEL_POLICY) and not t["df"] and t.get("ttl", 0):
            problems.append("%s: df false with a ttl: 'ttl != 0 and nopmtudisc are incompatible'" % where)
    if mode == "sit" and _ok(t, "data", TUNNEL_POLICY):
        _type_problems(t["data"], SIXRD_DATA_POLICY, where + ".data", problems)
    if _ok(t, "link", TUNNEL_POLICY) and not t["link"]:
        problems.append("%s: link is empty: no logical interface of that name" % where)
    if _ok(t, "mtu", TUNNEL_POLICY) and not 1280 <= t["mtu"] <= 65535:
        problems.append("%s: mtu %d: below 1280 the kernel disables IPv6 on the device" % (where, t["mtu"]))


def _check_strings(value, where, problems, limit=None):
    for i, item in enumerate(value):
        if blob_type(item) != STRING:
            problems.append("%s[%d]: %s, not a string" % (where, i, TYPE_NAMES[blob_type(item)]))
    if limit is not None and len(value) > limit:
        problems.append("%s: %d items, netifd takes at most %d" % (where, len(value), limit))


def _check_update(msg, no_device, problems):
    if _ok(msg, "link-up", NOTIFY_POLICY) and not msg["link-up"]:
        rest = sorted(k for k in msg if k in ACTION_FIELDS[0] and k != "link-up")
        if rest:
            problems.append("link-up false only signals link loss; netifd ignores %s" % rest)
        return
    if _ok(msg, "tunnel", NOTIFY_POLICY):
        if not _ok(msg, "ifname", NOTIFY_POLICY):
            problems.append("tunnel without ifname is ignored (proto_ext_update_link)")
        _check_tunnel(msg["tunnel"], "tunnel", problems)
        if msg.get("address-external") is True:
            problems.append("address-external with tunnel: netifd would not put the addresses on the "
                            "device it creates")
    if _ok(msg, "ifname", NOTIFY_POLICY):
        p = ifname_problem(msg["ifname"], created=_ok(msg, "tunnel", NOTIFY_POLICY))
        if p:
            problems.append(p)
    elif no_device and msg.get("keep") is not True:
        problems.append("no ifname: a no-device handler has no main device, netifd answers "
                        "INVALID_ARGUMENT (proto_ext_update_link)")
    counts = {}
    for key, v6 in (("ipaddr", False), ("ip6addr", True)):
        if _ok(msg, key, PROTO_IP_POLICY):
            counts[key] = len(msg[key])
            for i, item in enumerate(msg[key]):
                _check_address(item, v6, "%s[%d]" % (key, i), problems)
    for key, addrs, v6 in (("gateway", "ipaddr", False), ("ip6gw", "ip6addr", True)):
        if _ok(msg, key, PROTO_IP_POLICY):
            if not counts.get(addrs):
                problems.append("%s is applied only with %s items in the same update "
                                "(proto_apply_ip_settings)" % (key, addrs))
            if not inet(msg[key], v6):
                problems.append("%s %r is no address" % (key, msg[key]))
    if _ok(msg, "ip6prefix", PROTO_IP_POLICY):
        for item in msg["ip6prefix"]:
            p = prefix_problem(item)
            if p:
                problems.append(p)
    for key, v6 in (("routes", False), ("routes6", True)):
        if _ok(msg, key, NOTIFY_POLICY):
            for i, item in enumerate(msg[key]):
                _check_route(item, v6, "%s[%d]" % (key, i), problems)
    for key in ("neighbor", "neighbor6"):
        if _ok(msg, key, NOTIFY_POLICY):
            problems.append("%s: the neighbour policy was not transcribed; not checked" % key)
    if _ok(msg, "dns", NOTIFY_POLICY):
        _check_strings(msg["dns"], "dns", problems)
        for item in msg["dns"]:
            if isinstance(item, str) and not (inet(item, False) or inet(item, True)):
                problems.append("dns %r is no address: interface_add_dns_server drops it" % item)
    if _ok(msg, "dns_search", NOTIFY_POLICY):
        _check_strings(msg["dns_search"], "dns_search", problems)


def check_notify(msg, no_device=True, shared_object=True):
    """Problems netifd would have with a notify_proto message, as text; [] when there are none.

    no_device: the handler declared no-device (ours does), so an update must name its device.
    shared_object: the message goes to the shared "network.interface" object and must name the interface.
    """
    problems = []
    if blob_type(msg) != TABLE:
        return ["the message is %s, not a JSON object" % TYPE_NAMES[blob_type(msg)]]
    _type_problems(msg, TOP_LEVEL_POLICY, "message", problems, PROTO_IP_IGNORED_BY_NOTIFY)
    if shared_object:
        if not _ok(msg, "interface", UBUS_IFACE_POLICY):
            problems.append("no interface string: netifd_handle_iface answers INVALID_ARGUMENT")
        elif not msg["interface"]:
            problems.append("interface is empty: NOT_FOUND")
    if not _ok(msg, "action", NOTIFY_POLICY):
        problems.append("no int32 action: proto_ext_notify answers INVALID_ARGUMENT")
        return problems
    action = msg["action"]
    if action not in ACTIONS:
        problems.append("action %r is not 0..7: INVALID_ARGUMENT" % action)
        return problems
    used = ACTION_FIELDS[action]
    for key in sorted(msg):
        if key in ("action", "interface") or key not in TOP_LEVEL_POLICY or key in PROTO_IP_IGNORED_BY_NOTIFY:
            continue
        if key not in used:
            problems.append("%r is ignored by action %d, %s" % (key, action, ACTIONS[action]))
    for key in ACTION_REQUIRED.get(action, ()):
        if not _ok(msg, key, TOP_LEVEL_POLICY):
            problems.append("action %d needs %s %r: INVALID_ARGUMENT" % (
                action, TYPE_NAMES[TOP_LEVEL_POLICY[key]], key))
    if action == 0:
        _check_update(msg, no_device, problems)
    elif action == 1:
        if _ok(msg, "command", NOTIFY_POLICY):
            _check_strings(msg["command"], "command", problems, COMMAND_MAX_ITEMS)
            if not msg["command"]:
                problems.append("command is empty")
        if _ok(msg, "env", NOTIFY_POLICY):
            _check_strings(msg["env"], "env", problems, ENV_MAX_ITEMS)
    elif action == 3 and _ok(msg, "error", NOTIFY_POLICY):
        if not msg["error"]:
            problems.append("error is empty: INVALID_ARGUMENT")
        _check_strings(msg["error"], "error", problems, ERROR_MAX_ITEMS)
    elif action == 6:
        host = msg.get("host") if _ok(msg, "host", NOTIFY_POLICY) else ""
        ifname = msg.get("ifname") if _ok(msg, "ifname", NOTIFY_POLICY) else ""
        if not host and not ifname:
            problems.append("action 6 needs a host address, or an ifname for a route-less dependency")
        elif host and not (inet(host, False) or inet(host, True)):
            problems.append("host %r is no IPv4/IPv6 address (no names): INVALID_ARGUMENT" % host)
    return problems


# ---------------------------------------------------------------------------------------------------
# The dump.

def check_dump(obj):
    """Problems netifd would have with one protocol declaration from `dump`; [] when there are none."""
    if not isinstance(obj, dict):
        return ["a dump entry must be a JSON object"]
    problems = []
    known = ("name", "config") + HANDLER_FLAGS + HANDLER_FLAGS_UNVERIFIED
    for key in sorted(obj):
        if key not in known:
            problems.append("unknown key %r: proto_shell_add_handler ignores it" % key)
        elif key in HANDLER_FLAGS + HANDLER_FLAGS_UNVERIFIED and not isinstance(obj[key], bool):
            problems.append("flag %r is %r: only a JSON boolean is read (json_type_boolean)" % (key, obj[key]))
    if not isinstance(obj.get("name"), str) or not obj.get("name"):
        problems.append("no name string: netifd_init_script_handler skips the object")
    if "config" not in obj:
        return problems
    config = obj["config"]
    if not isinstance(config, list):
        return problems + ["config is not an array: proto_shell_add_handler ignores it"]
    seen = set()
    for i, entry in enumerate(config):
        where = "config[%d]" % i
        if not isinstance(entry, list) or len(entry) != 2:
            problems.append("%s: must be [name, type]; netifd drops the whole config" % where)
            continue
        name, kind = entry
        if not isinstance(name, str) or not name.split(":", 1)[0]:
            problems.append("%s: name %r is not a string: netifd drops the whole config" % (where, name))
            continue
        if isinstance(kind, bool) or not isinstance(kind, int):
            problems.append("%s: type %r is not an int: netifd drops the whole config" % (where, kind))
            continue
        if not 0 <= kind <= BLOBMSG_TYPE_LAST:
            problems.append("%s: type %d > BLOBMSG_TYPE_LAST: netifd drops the whole config" % (where, kind))
        elif kind not in UCI_BLOB_TYPES:
            problems.append("%s: type %d: uci_to_blob fills only %s, the option never arrives" % (
                where, kind, [TYPE_NAMES[t] for t in UCI_BLOB_TYPES]))
        option = name.split(":", 1)[0]
        if option in seen:
            problems.append("%s: %r declared twice" % (where, option))
        seen.add(option)
    return problems


def parse_dump_output(text):
    """What netifd reads from a handler's dump output: (objects, problems).

    One JSON object per line (handler.c: the tokener is freed at a newline with no complete object).
    """
    objects, problems = [], []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            problems.append("line %d is not one complete JSON value: netifd drops it (%s)" % (n, e))
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            problems.append("line %d has no object with a name: netifd registers nothing" % n)
            continue
        objects.append(obj)
    return objects, problems


def shadowed_options(obj):
    """Declared options netifd already parses for itself: interface.c iface_attrs and device.c dev_attrs
    (config.c config_parse_interface appends both to every interface config)."""
    names = [e[0].split(":", 1)[0] for e in obj.get("config", []) if isinstance(e, list) and e]
    return sorted(n for n in names if n in INTERFACE_OPTIONS or n in DEVICE_POLICY)


# ---------------------------------------------------------------------------------------------------
# The config JSON netifd passes to `setup` (argv[4]).

def uci_value(text, kind):
    """openwrt/uci blob.c uci_attr_to_blob for one UCI option value; None where it adds nothing."""
    if kind == STRING:
        return text
    if kind == BOOL:
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        return None
    if kind == INT32:
        # strtol(str, &err, 0) and *err must be 0: "" gives 0, "10x" gives nothing
        if text == "":
            return 0
        value, rest = _strtoul(text, 0)
        if value is None or rest:
            return None
        return value - 2 ** 64 if value >= 2 ** 63 else value
    return None


def netifd_config_json(section, dump):
    """The JSON text a handler gets for a UCI interface section (config.c config_parse_interface:
    interface_attr_list, then the handler's declared config, then simple_device_type's device_attr_list;
    proto-ext.c proto_ext_run: blobmsg_format_json of that blob).  Keys may repeat."""
    declared = dict((e[0].split(":", 1)[0], e[1]) for e in dump.get("config", []))
    pairs = []
    for policy in (INTERFACE_OPTIONS, declared, DEVICE_POLICY):
        for name, text in section.items():
            if name not in policy:
                continue
            kind = policy[name]
            if kind == ARRAY:
                words = text if isinstance(text, list) else text.split()
                pairs.append((name, list(words)))
                continue
            if isinstance(text, list):
                continue
            value = uci_value(text, kind)
            if value is not None:
                pairs.append((name, value))
    return "{" + ", ".join(json.dumps(k) + ": " + json.dumps(v) for k, v in pairs) + "}"


# ---------------------------------------------------------------------------------------------------
# One interface's state as netifd keeps it while a protocol handler runs, for the fake ubusd to answer
# notify_proto and status with.  Transcribed from openwrt/netifd at 02dd2f2 (proto-shell.c, index id
# 19830955791) and 01901f4 (interface.c, index id 19931711362), ubus.c netifd_add_interface_errors.

UBUS_OK, UBUS_INVALID_ARGUMENT, UBUS_NOT_FOUND, UBUS_PERMISSION_DENIED, UBUS_UNKNOWN_ERROR = 0, 2, 4, 6, 9


class Interface:
    """What a handler's notify_proto calls leave behind in netifd.

    errors: interface.c interface_add_error appends one {subsystem, code, data} per action 3 (the
    subsystem is the protocol's name, proto_shell_notify_error); nothing but interface_set_up (from
    down, the next setup), a configuration reload and the interface's removal clears the list.
    refuse_update: the ubus status proto_shell_update_link answers an update with (INVALID_ARGUMENT
    when the tunnel device could not be created, UNKNOWN_ERROR when device_claim failed), or None.
    """

    def __init__(self, name, proto="sixbroker", refuse_update=None):
        self.name = name
        self.proto = proto
        self.refuse_update = refuse_update
        self.errors = []
        self.autostart = True
        self.up = False
        self.pending = True         # IFS_SETUP: set_up() ran the setup that now talks to us
        self.tasks = []             # proto tasks started (action 1): their argv
        self.setup_failed = False   # action 7 seen: netifd tears down (and sets up again if autostart)
        self.l3_device = None
        self.data = {}

    def set_up(self):
        """interface.c interface_set_up from IFS_DOWN: errors cleared, then the handler's setup."""
        self.errors = []
        self.autostart = True
        self.up, self.pending, self.setup_failed, self.tasks = False, True, False, []

    def notify(self, msg):
        """proto-shell.c proto_shell_notify: the ubus status for one notify_proto message."""
        if check_notify(msg):
            return UBUS_INVALID_ARGUMENT
        action = msg["action"]
        if action == 0:
            if self.refuse_update is not None:
                return self.refuse_update
            self.up, self.pending = True, False
            self.l3_device = msg.get("ifname")
            self.data.update(msg.get("data") or {})
        elif action == 1:
            self.tasks.append(list(msg["command"]))
        elif action == 3:
            # proto_shell_notify_error: data[16], n_data + 1 == 16 fails; every item a string
            items = msg["error"]
            self.errors.append({"subsystem": self.proto, "code": items[0], "data": list(items[1:])})
        elif action == 4:
            self.autostart = False
        elif action == 7:
            self.setup_failed = True
        return UBUS_OK

    def status(self):
        """ubus.c netifd_handle_status, the parts a handler's messages change."""
        st = {"interface": self.name, "up": self.up, "pending": self.pending, "autostart": self.autostart,
              "proto": self.proto, "data": dict(self.data)}
        if self.l3_device:
            st["l3_device"] = self.l3_device
        if self.errors:
            # netifd_add_interface_errors: "data" only when there is some
            st["errors"] = [dict((k, v) for k, v in e.items() if k != "data" or v) for e in self.errors]
        return st
