"""The netifd protocol handler `sixbroker`: netifd's config JSON -> validate -> plan -> notify_proto.

netifd runs /lib/netifd/proto/sixbroker.sh, which answers `dump` itself and execs this file for the rest:
    sixbroker.py sixbroker setup|teardown|renew <interface> '<config JSON>' [<device>]
(netifd proto-shell.c, proto_shell_handler).  Messages follow the notify_proto policy of netifd's
proto-shell.c and system.c to the letter: netifd drops a mistyped attribute without a word.
"""

import sys

from sixbroker import options, plan as planmod
from sixbroker.errors import SixbrokerError, ConfigErrors

# notify_proto actions (proto-shell.c, enum proto_shell_notify... / netifd-proto.sh)
UPDATE, RUN_TASK, KILL_TASK, ERROR, BLOCK_RESTART, SET_AVAILABLE, HOST_DEP, SETUP_FAILED = range(8)

# Errors of the environment rather than the configuration: let netifd try again later.
TRANSIENT = ("PEER_RESOLVE_FAIL", "NO_LOCAL_ADDRESS", "TUNLINK_NOT_UP", "UBUS_FAIL")
RETRY_DELAY = 5     # seconds; netifd re-runs a failed setup at once, this keeps it from spinning


def update_message(interface, plan, local_from="option"):
    """The action-0 update: netifd creates the sit device from `tunnel` and owns it from then on.

    local_from: where the local address came from ("option", "tunlink" or "route"); the hotplug script
    re-runs setup when a derived one goes stale.
    """
    t = plan["tunnel"]
    tunnel = {"mode": t["mode"], "local": t["local"], "remote": t["remote"], "mtu": t["mtu"],
              "ttl": t["ttl"], "tos": t["tos"]}
    if t["link"]:
        tunnel["link"] = t["link"]
    routes = []
    for r in plan["routes"]:
        route = {"target": r["target"], "netmask": str(r["length"])}
        if r["gateway"]:
            route["gateway"] = r["gateway"]
        if r["source"]:
            route["source"] = r["source"]
        if r["metric"] is not None:
            route["metric"] = r["metric"]
        routes.append(route)
    msg = {
        "action": UPDATE,
        "interface": interface,
        "ifname": t["device"],
        "link-up": True,
        "tunnel": tunnel,
        # mask is a string in netifd's address policy; a number would silently become /128
        "ip6addr": [{"ipaddr": a["address"], "mask": str(a["length"])} for a in plan["addresses"]],
        "routes6": routes,
        "data": {"zone": plan["firewall"]["zone"],
                 "firewall": [fw4_rule(r) for r in plan["firewall"]["rules"]],
                 # the hotplug script compares this with the WAN's address to catch a silent change
                 "sixbroker": {"local": t["local"], "remote": t["remote"], "local_from": local_from}},
    }
    if t["link"]:
        msg["data"]["sixbroker"]["tunlink"] = t["link"]
    if plan["prefixes"]:
        msg["ip6prefix"] = [p["prefix"] + "/" + str(p["length"]) for p in plan["prefixes"]]
    return msg


def fw4_rule(r):
    """A neutral plan rule in fw4's UCI words; fw4 ignores a data.firewall entry without a type."""
    out = {"type": "rule", "name": r["name"], "target": r["target"]}
    if r["chain"] == "input":
        # any zone: protocol 41 arrives on the WAN's device whatever zone the tunnel itself is in
        out["src"] = "*"
        # fw4 (read_ubus) gives a rule without a device the interface's own l3 device, the sit device,
        # where protocol 41 never arrives: name the underlying device
        if r["iif"]:
            out["device"] = r["iif"]
    if r["family"]:
        out["family"] = r["family"]
    if r["proto"] is not None:
        out["proto"] = str(r["proto"])
    if r["src_ip"]:
        out["src_ip"] = r["src_ip"]
    return out


MAX_ERRORS = 15    # proto-shell.c refuses an error list of 16 or more entries whole


def error_message(interface, codes):
    return {"action": ERROR, "interface": interface, "error": list(codes)[:MAX_ERRORS]}


def simple_message(interface, action):
    return {"action": action, "interface": interface}


def host_dep_message(interface, host, via):
    msg = {"action": HOST_DEP, "interface": interface}
    if host:
        msg["host"] = host
    if via:
        msg["ifname"] = via
    return msg


def loads(text):
    """json.loads without the json package on CPython: its pure-Python layer imports re, enum and more,
    a third of a bare start, on every ifup.  The C scanner json itself uses does the work."""
    try:
        import _json
    except ImportError:
        import json  # MicroPython: json is a C module
        return json.loads(text)

    class Context:
        strict = True
        object_hook = object_pairs_hook = None
        parse_float, parse_int = float, int

        def parse_constant(self, name):
            raise ValueError("not JSON: " + name)

    start = len(text) - len(text.lstrip())
    try:
        obj, end = _json.make_scanner(Context())(text, start)
    except StopIteration as e:
        raise ValueError("not JSON at character " + str(e.value))
    except SystemError:
        # _json reports other syntax errors through json.decoder's exception class, found only once
        # json is imported: let json say what is wrong
        import json
        return json.loads(text)
    if text[end:].strip():
        raise ValueError("extra data after JSON at character " + str(end))
    return obj


def log(text):
    sys.stderr.write("sixbroker: " + text + "\n")


def setup_messages(interface, config, bus):
    """Everything setup sends, in order; raises SixbrokerError/ConfigErrors with nothing sent."""
    from sixbroker import hostinfo

    opts = options.validate(config)
    # netifd applies defaultroute and metric to our routes itself (options.NETIFD_OWNS)
    opts.defaultroute, opts.metric = True, None
    peer = opts.peer if opts.peer is not None else hostinfo.resolve_ipv4(opts.peer_host)
    local, device, via, local_from = local_facts(bus, opts, peer)
    name = options.device_name(interface, opts.device)
    if hostinfo.device_in_use(name):
        # netifd deletes whatever holds the name before it creates the tunnel (system_add_ip_tunnel)
        raise SixbrokerError("DEVICE_IN_USE", name, "device")
    link_mtu = hostinfo.device_mtu(device) if device else None
    p = planmod.router(opts, interface, peer, local, name, link_mtu, link=via, link_device=device)
    # The dependency without a host: netifd still re-runs setup when `via` goes down and up, but adds no
    # /32 route to the peer, which it would leave behind after ifdown (interface_ip_add_target_route puts
    # it on the WAN's host_routes, flushed only when the WAN goes down).  tunnel.link pins the outer
    # packets to `via` instead.
    return p, [host_dep_message(interface, None, via), update_message(interface, p, local_from)]


def local_facts(bus, opts, peer):
    """(local IPv4, underlying device, its logical interface, where the address came from)."""
    from sixbroker import hostinfo

    if opts.tunlink:
        local, device = hostinfo.tunlink_facts(bus, opts.tunlink)
        via, local_from = opts.tunlink, "tunlink"
    else:
        local, device, via = hostinfo.route_facts(bus, peer)
        local_from = "route"
    if opts.local is not None:
        local, local_from = opts.local, "option"
    return local, device, via, local_from


def setup(interface, config, bus):
    try:
        p, msgs = setup_messages(interface, config, bus)
    except ConfigErrors as e:
        for err in e.errors:
            log(interface + ": " + err.code + ": " + err.text)
        _send(bus, error_message(interface, e.codes()))
        # a configuration error will not fix itself: stop netifd from retrying until the next ifup
        _send(bus, simple_message(interface, BLOCK_RESTART))
        return 1
    except SixbrokerError as e:
        log(interface + ": " + e.code + ": " + e.text)
        _send(bus, error_message(interface, [e.code]))
        if e.code in TRANSIENT:
            _pause()
            _send(bus, simple_message(interface, SETUP_FAILED))
        else:
            _send(bus, simple_message(interface, BLOCK_RESTART))
        return 1
    for m in msgs:
        _send(bus, m)
    from sixbroker import hotplug
    hotplug.record(interface, msgs)     # what the hotplug script follows, in the shell
    t = p["tunnel"]
    log("%s: %s %s -> %s mtu %d, %s/%d via %s%s" % (
        interface, t["device"], t["local"], t["remote"], t["mtu"], p["addresses"][0]["address"],
        p["addresses"][0]["length"], p["routes"][0]["gateway"] if p["routes"] else "-",
        "".join(", prefix " + x["prefix"] + "/" + str(x["length"]) for x in p["prefixes"])))
    return 0


def _pause():
    import os
    import time
    delay = os.getenv("SIXBROKER_RETRY_DELAY")
    time.sleep(float(delay) if delay else RETRY_DELAY)


def _send(bus, msg):
    try:
        bus.call("network.interface", "notify_proto", msg)
    except SixbrokerError as e:
        log(msg["interface"] + ": UBUS_FAIL: " + e.text)


def main(argv):
    if len(argv) < 4 or argv[2] not in ("setup", "teardown", "renew"):
        log("usage: sixbroker.sh sixbroker setup|teardown|renew <interface> '<config JSON>' [<device>]")
        return 2
    action, interface = argv[2], argv[3]
    if action == "teardown":
        # netifd deletes the sit device it created with its addresses and routes; we added no host
        # route.  Nothing to do, so teardown is idempotent (netifd may call it again on a WAN down).
        return 0
    text = argv[4] if len(argv) > 4 else ""
    if text == "-":
        import os
        text = os.getenv("SIXBROKER_CONFIG") or ""   # the shim passes it so (see sixbroker.sh)
    try:
        config = loads(text) if text else {}
    except Exception:  # noqa: BLE001 - reported below as one line, never a traceback
        config = None
    try:
        from sixbroker import ubus
        bus = ubus.connect()
    except Exception as e:  # noqa: BLE001 - one line in the log, never a traceback
        log(interface + ": UBUS_FAIL: " + str(e))
        return 1
    try:
        if not isinstance(config, dict):
            log(interface + ": INTERNAL_ERROR: netifd passed no JSON object")
            _send(bus, error_message(interface, ["INTERNAL_ERROR"]))
            return 1
        return setup(interface, config, bus)
    except Exception as e:  # noqa: BLE001
        log(interface + ": INTERNAL_ERROR: " + type(e).__name__ + ": " + str(e))
        _send(bus, error_message(interface, ["INTERNAL_ERROR"]))
        _send(bus, simple_message(interface, SETUP_FAILED))
        return 1
    finally:
        bus.close()

