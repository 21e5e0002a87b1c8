"""The netifd protocol handler `sixbroker`: netifd's config JSON -> validate -> plan -> notify_proto.

netifd runs /lib/netifd/proto/sixbroker.sh, which answers `dump` itself and execs this file for the rest:
    sixbroker.py sixbroker setup|teardown|renew <interface> '<config JSON>' [<device>]
(netifd proto-shell.c, proto_shell_handler).  Messages follow the notify_proto policy of netifd's
proto-shell.c and system.c to the letter: netifd drops a mistyped attribute without a word.
"""

import sys

from sixbroker.core import options, plan as planmod
from sixbroker.core.errors import LUCI_REPLACEMENTS, SixbrokerError, ConfigErrors

# notify_proto actions (proto-shell.c, enum proto_shell_notify... / netifd-proto.sh)
UPDATE, RUN_TASK, KILL_TASK, ERROR, BLOCK_RESTART, SET_AVAILABLE, HOST_DEP, SETUP_FAILED = range(8)

# Failures of the environment, not of the configuration: netifd tries again after a delay.  PASSING ones
# usually heal within seconds (the WAN or the resolver is still coming up); LASTING ones wait for someone
# to act (a misspelt host name, one with only IPv6 addresses, a tunlink naming no interface, netifd
# unable to create the sit device) and back off much further.  Every other error is the configuration's:
# netifd is told not to restart (action 4) until the next ifup or configuration change.
PASSING = ("PEER_RESOLVE_FAIL", "NO_LOCAL_ADDRESS", "TUNLINK_NOT_UP", "UBUS_FAIL")
LASTING = ("PEER_NOT_FOUND", "PEER_NO_IPV4", "TUNLINK_UNKNOWN", "UPDATE_REFUSED")
# seconds: the first delay and the most, doubling in between (5 10 20 40 60 60 ...; 30 60 ... 3600)
DELAYS = {"passing": (5, 60), "lasting": (30, 3600)}
# The delay is a proto task (action 1) of netifd's: `sleep N`, and when it ends netifd tears the
# interface down and sets it up again (proto-shell.c proto_shell_task_finish: a proto task ending in
# S_SETUP runs teardown; interface.c then calls interface_set_up, which clears the errors).  Setup itself
# exits at once: no interpreter waits in memory, and ifdown meanwhile just kills the sleep
# (proto_shell_handler: teardown runs when no script is pending, then the task gets SIGTERM).
SLEEP = "/bin/sleep"
# Failures in a row survive setup re-runs (netifd runs a fresh process each time), not a reboot: they are
# kept in the run directory (hotplug.run_path).


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


def error_message(interface, err, retry=None):
    """One action 3 for one mistake.  netifd keeps each call as one entry of the interface's error list
    (proto-shell.c proto_shell_notify_error -> interface.c interface_add_error: code = error[0],
    data = the rest), and LuCI shows one line per entry, by its code (network.js getErrors); a list
    of codes in one call would show only the first.

    error: [CODE, option, detail] ("" where there is none), then "next try in N s" when netifd will
    try again by itself.
    """
    # a NUL cannot travel in a blobmsg string (ubus refuses the whole message): the detail quotes the
    # user's value, which a dynamic interface's JSON may give one
    detail = str(err.detail).replace("\0", "\\0") if err.detail is not None else ""
    error = [err.code, err.option or "", detail]
    if retry is not None:
        error.append("next try in %d s" % retry)
    return {"action": ERROR, "interface": interface, "error": error}


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
    from sixbroker.core import resolve
    from sixbroker.openwrt import hostinfo

    opts = options.validate(config)
    # netifd applies defaultroute and metric to our routes itself (options.NETIFD_OWNS)
    opts.defaultroute, opts.metric = True, None
    peer = opts.peer if opts.peer is not None else resolve.resolve_ipv4(opts.peer_host)
    local, device, via, local_from = local_facts(bus, opts, peer)
    name = options.device_name(interface, opts.device)
    taken = hostinfo.device_taken(name, bus, interface)
    if taken:
        raise SixbrokerError("DEVICE_IN_USE", taken, "device")
    link_mtu = hostinfo.device_mtu(device) if device else None
    p = planmod.router(opts, interface, peer, local, name, link_mtu, link=via, link_device=device)
    if opts.mtu and p["tunnel"]["mtu"] < opts.mtu:
        log("%s: mtu %d lowered to %d: %s has MTU %d, less the outer IPv4 header" % (
            interface, opts.mtu, p["tunnel"]["mtu"], device, link_mtu))
    # The dependency without a host: netifd still re-runs setup when `via` goes down and up, but adds no
    # /32 route to the peer, which it would leave behind after ifdown (interface_ip_add_target_route puts
    # it on the WAN's host_routes, flushed only when the WAN goes down).  tunnel.link pins the outer
    # packets to `via` instead.
    msgs = [host_dep_message(interface, None, via), update_message(interface, p, local_from)]
    if opts.update:
        # the updater (openwrt/updater.py): a proto task, sent last, once netifd has the tunnel
        from sixbroker.openwrt import hotplug, updater
        msgs.append(updater.task_message(interface, opts.update, local, via, hotplug.run_path(interface, "update")))
    return p, msgs


def local_facts(bus, opts, peer):
    """(local IPv4, underlying device, its logical interface, where the address came from)."""
    from sixbroker.openwrt import hostinfo

    if opts.tunlink:
        local, device = hostinfo.tunlink_facts(bus, opts.tunlink)
        via, local_from = opts.tunlink, "tunlink"
    else:
        local, device, via = hostinfo.route_facts(bus, peer)
        local_from = "route"
    if opts.local is not None:
        local, local_from = opts.local, "option"
    return local, device, via, local_from


def setup(interface, config, bus, fingerprint=""):
    """fingerprint: the config as netifd passed it; a changed configuration starts the delays over."""
    try:
        p, msgs = setup_messages(interface, config, bus)
    except ConfigErrors as e:
        return _refuse(bus, interface, e.errors)
    except SixbrokerError as e:
        if e.code in PASSING or e.code in LASTING:
            return _retry_later(bus, interface, e, fingerprint)
        return _refuse(bus, interface, [e])
    for m in msgs:
        failed = _send(bus, m)
        if failed is not None and m["action"] == UPDATE:
            # proto-shell.c proto_shell_update_link: INVALID_ARGUMENT when the device could not be
            # created, UNKNOWN_ERROR when it could not be claimed (system_add_ip_tunnel failed)
            return _retry_later(bus, interface, SixbrokerError("UPDATE_REFUSED", failed.text), fingerprint)
    _forget_failures(interface)
    from sixbroker.openwrt import hotplug
    hotplug.record(interface, msgs)     # what the hotplug script follows, in the shell
    t = p["tunnel"]
    log("%s: %s %s -> %s mtu %d, %s/%d via %s%s" % (
        interface, t["device"], t["local"], t["remote"], t["mtu"], p["addresses"][0]["address"],
        p["addresses"][0]["length"], p["routes"][0]["gateway"] if p["routes"] else "-",
        "".join(", prefix " + x["prefix"] + "/" + str(x["length"]) for x in p["prefixes"])))
    return 0


def for_netifd(err):
    """The error under the code netifd keeps: LuCI shows its own words for the codes it defines itself
    (network.js proto_errors; registerErrorCode does not replace them), so ours travel under codes of
    our own (errors.LUCI_REPLACEMENTS)."""
    code = LUCI_REPLACEMENTS.get(err.code)
    return err if code is None else SixbrokerError(code, err.detail, err.option)


def _refuse(bus, interface, errors):
    errors = [for_netifd(e) for e in errors]
    for err in errors:
        log(interface + ": " + err.code + ": " + err.text)
    for err in errors:
        _send(bus, error_message(interface, err))
    # a configuration error will not fix itself: stop netifd from retrying until the next ifup
    _send(bus, simple_message(interface, BLOCK_RESTART))
    _forget_failures(interface)
    return 1


def _retry_later(bus, interface, err, fingerprint):
    # what is not known to pass (LASTING, an internal error) waits the long delays
    kind = "passing" if err.code in PASSING else "lasting"
    delay = _next_delay(interface, err.code, fingerprint, kind)
    err = for_netifd(err)
    log("%s: %s: %s; next try in %d s" % (interface, err.code, err.text, delay))
    _send(bus, error_message(interface, err, delay))
    if _send(bus, {"action": RUN_TASK, "interface": interface, "command": [SLEEP, str(delay)]}) is not None:
        # no task, no wait: netifd tears down and sets up again at once
        _send(bus, simple_message(interface, SETUP_FAILED))
    return 1


def _failures_file(interface):
    from sixbroker.openwrt import hotplug
    return hotplug.run_path(interface, "failures")


def _next_delay(interface, code, fingerprint, kind):
    """The delay after this failure: the first one after a success, a new kind of failure or a changed
    configuration, then twice the last, up to the most.  Kept in a file: "<code> <hash> <count>"."""
    import os
    key = code + " " + "%04x" % options.name_hash(fingerprint)
    path = _failures_file(interface)
    count = 0
    try:
        with open(path) as f:
            words = f.read().split()
        if " ".join(words[:2]) == key:
            count = int(words[2])
    except (OSError, ValueError, IndexError):
        pass
    first, most = DELAYS[kind]
    delay = first
    for _ in range(min(count, 32)):     # 2 ** 32 times any first delay is past any most
        delay = min(delay * 2, most)
    from sixbroker.openwrt import hotplug
    hotplug.make_run_dir(path)      # read-only: then every delay is the first
    try:
        with open(path, "w") as f:
            f.write(key + " " + str(count + 1) + "\n")
    except OSError:
        pass
    return delay


def _forget_failures(interface):
    import os
    try:
        os.remove(_failures_file(interface))
    except OSError:
        pass


def _send(bus, msg):
    """None when netifd took the message, else the error (logged)."""
    try:
        bus.call("network.interface", "notify_proto", msg)
    except SixbrokerError as e:
        log(msg["interface"] + ": UBUS_FAIL: " + e.text)
        return e
    return None


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
        from sixbroker.openwrt import ubus
        bus = ubus.connect()
    except Exception as e:  # noqa: BLE001 - one line in the log, never a traceback
        log(interface + ": UBUS_FAIL: " + str(e))
        return 1
    try:
        if not isinstance(config, dict):
            return _retry_later(bus, interface, SixbrokerError("INTERNAL_ERROR", "netifd passed no JSON object"), text)
        return setup(interface, config, bus, text)
    except Exception as e:  # noqa: BLE001
        # a bug: as rare a retry as a lasting failure, not netifd's immediate one
        return _retry_later(bus, interface, SixbrokerError("INTERNAL_ERROR", type(e).__name__ + ": " + str(e)), text)
    finally:
        bus.close()

