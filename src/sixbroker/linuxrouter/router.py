"""`sixbroker router up|down|status`: the home end on a plain Linux router (not OpenWrt, where netifd does it).

The configuration is a UCI-style file (default /etc/sixbroker/router) with one `config tunnel 'NAME'`
section per tunnel, holding the netifd protocol's options (options.SCHEMA) and two of its own:

    config tunnel 'wan6'
        option peeraddr '203.0.113.10'
        option ip6addr '2001:db8:5b10::b/127'
        list ip6prefix '2001:db8:5b11::/64'
        option tunlink 'eth0'          # here a kernel device, not a netifd interface
        list lan 'br-lan'              # LAN devices

LAN device number i gets the i-th /64 of each routed prefix, as ::1/64 (the first LAN device the first /64;
a /64 prefix goes to the first LAN device only).  Router advertisements on the LAN are another program's
job (radvd, dnsmasq).

`up` brings the tunnel, addresses, routes, forwarding and the firewall table `inet sixbroker_router` to what
the file says; run it again after editing the file, it changes only what differs.  `down` removes all of it
(the file is not needed for that) and holds it down: `update --loop` then sets nothing up on a WAN change
until the next `up` (or a reboot, which forgets the hold with the rest of /run).  `status` shows what is there.  `--netns NAME` does all of it in a network
namespace.  Errors are one line with a stable code (errors.py), exit status 1; usage errors exit 2.
"""

import json
import os
import sys

from sixbroker.core import addr, options, plan, uci
from sixbroker.core.errors import ConfigErrors, SixbrokerError

DEFAULT_CONFIG = "/etc/sixbroker/router"
SCOPE = "router"
TABLE = "sixbroker_router"      # not the broker's `sixbroker`: both may run on one host
PROG = "sixbroker router"
USAGE = "usage: sixbroker router up|down|status|update [--config PATH] [--json] [--netns NAME] [--loop]"


class UsageError(Exception):
    pass


def _parse_args(argv):
    if not argv or argv[0] in ("-h", "--help", "help"):
        raise UsageError(None)
    args = {"command": argv[0], "config": DEFAULT_CONFIG, "json": False, "netns": None}
    if args["command"] not in ("up", "down", "status"):
        raise UsageError("unknown command '%s'" % args["command"])
    rest = list(argv[1:])
    while rest:
        a = rest.pop(0)
        if a == "--json":
            args["json"] = True
        elif a in ("--config", "--netns"):
            if not rest or not rest[0]:
                raise UsageError(a + " needs a value")
            args[a[2:]] = rest.pop(0)
        elif a.startswith("--config=") or a.startswith("--netns="):
            key, _, value = a[2:].partition("=")
            if not value:
                raise UsageError("--" + key + " needs a value")
            args[key] = value
        else:
            raise UsageError("unknown argument '%s'" % a)
    return args


# ---- the configuration -------------------------------------------------------------------------

def read_config(path):
    """[(name, Options, lan devices)] of the enabled tunnel sections; errors name the section."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise SixbrokerError("CONFIG_NOT_FOUND", path + ": " + (e.strerror or str(e)))
    try:
        pkg = uci.parse(text, filename=path)
    except uci.UciError as e:
        raise SixbrokerError(e.code, str(e))
    out = []
    for i, sec in enumerate(pkg.find("tunnel")):
        name = sec.name or "tunnel%d" % i
        cfg = dict(sec.options)
        if options._bool(cfg.get("disabled") or "0") is True:
            continue
        try:
            o = options.validate(cfg, strict=True, extra=("lan",))
        except ConfigErrors as e:
            raise _in_section(name, e)
        lan = cfg.get("lan") or []
        if not isinstance(lan, list):
            lan = [lan]
        for dev in lan:
            if len(dev) > 15 or dev in (".", "..") or not options._is_name(dev, "-_.@"):
                raise SixbrokerError("INVALID_DEVICE", "tunnel '%s': lan '%s'" % (name, dev), "lan")
        out.append((name, o, lan))
    if not out:
        raise SixbrokerError("NO_TUNNELS", path)
    return out


def _in_section(name, errs):
    e = SixbrokerError(errs.code, errs.detail, errs.option)
    e.text = "tunnel '%s': %s" % (name, errs.text)
    e.codes = errs.codes()
    return e


def lan_addresses(o, lan):
    """LAN device i: ::1/64 in the i-th /64 of each routed prefix (when the prefix has one)."""
    out = []
    for i, dev in enumerate(lan):
        for net in o.ip6prefix:
            if i < net.subnet_count(64):
                out.append({"device": dev, "address": str(net.subnet(64, i).host(1)), "length": 64})
    return out


# ---- facts about this host ---------------------------------------------------------------------

def _facts(o, peer, netns):
    """(local IPv4, underlying MTU) from ipaddr, else the tunlink device, else the route to the peer."""
    from sixbroker.linux import kernel_status
    if o.tunlink:
        local, mtu = kernel_status.ipv4_facts(netns, device=o.tunlink)
        if o.local is None and local is None:
            raise SixbrokerError("NO_LOCAL_ADDRESS", o.tunlink + " has no IPv4 address", "tunlink")
    else:
        try:
            local, mtu = kernel_status.ipv4_facts(netns, peer=str(peer))
        except SixbrokerError:
            if o.local is None:
                raise
            local, mtu = None, None
        if o.local is None and local is None:
            raise SixbrokerError("NO_LOCAL_ADDRESS", "the route to %s has no source address" % peer)
    return (o.local if o.local is not None else addr.Address.parse(local, 4)), mtu


def build_plans(tunnels, netns=None):
    """[(plan, lan addresses)] for the configured tunnels, with this host's addresses and MTUs."""
    from sixbroker.core import resolve
    out = []
    for name, o, lan in tunnels:
        peer = o.peer if o.peer is not None else resolve.resolve_ipv4(o.peer_host)
        local, link_mtu = _facts(o, peer, netns)
        if local == peer:
            raise SixbrokerError("PEER_IS_LOCAL", "tunnel '%s': %s" % (name, peer), "peeraddr")
        device = options.device_name(name, o.device)
        p = plan.router(o, name, peer, local, device, link_mtu=link_mtu, lan=lan or None)
        out.append((p, lan_addresses(o, lan)))
    return out


# ---- the commands ------------------------------------------------------------------------------

def _hold_path(netns):
    from sixbroker.linuxrouter import update
    return os.path.join(update.record_dir(netns), "down")


def held_down(netns=None):
    """Whether a person took the tunnels down (`down`) and has not set them up since."""
    return os.path.exists(_hold_path(netns))


def up(config, netns=None, updates=True):
    from sixbroker.linux import apply_kernel, apply_nft
    tunnels = read_config(config)
    try:
        os.remove(_hold_path(netns))
    except FileNotFoundError:
        pass
    built = build_plans(tunnels, netns)
    plans = [p for p, _ in built]
    lan = [la for _, las in built for la in las]
    k = apply_kernel.apply(plans, netns=netns, scope=SCOPE, lan_addresses=lan)
    n = apply_nft.apply(plans, netns=netns, table=TABLE, exempt=k.foreign_tunnels)
    r = {"command": "up", "tunnels": [p["tunnel"]["device"] for p in plans], "kernel_changes": k.changes,
         "firewall_changed": n.changed, "updates": {}}
    if updates:
        # the broker learns this end's address now (bounded: update.UP_TIMEOUT), the loop keeps it current
        from sixbroker.linuxrouter import update
        r["updates"] = dict(update.after_up(tunnels, built, netns))
    return r


def down(netns=None):
    from sixbroker.linux import apply_kernel, apply_nft
    # the hold first: a loop that sees the device gone must not set it up again in between
    os.makedirs(os.path.dirname(_hold_path(netns)), exist_ok=True)
    open(_hold_path(netns), "w").close()
    k = apply_kernel.remove_all(netns=netns, scope=SCOPE, lan=True)
    removed = apply_nft.remove(TABLE, netns)
    return {"command": "down", "kernel_changes": k.changes, "firewall_removed": removed}


def status(netns=None):
    from sixbroker.linux import apply_nft, kernel_status
    st = kernel_status.status(netns=netns, scope=SCOPE, lan=True)
    from sixbroker.linuxrouter import update
    st["firewall"] = {"table": "inet " + TABLE, "counters": apply_nft.counters(TABLE, netns)}
    st["updates"] = update.records(netns)
    return st


def _print_up(r):
    n = len(r["kernel_changes"])
    print("%s: up: %s; %d kernel change%s; firewall %s" % (
        PROG, ", ".join(r["tunnels"]), n, "" if n == 1 else "s", "loaded" if r["firewall_changed"] else "unchanged"))
    for c in r["kernel_changes"]:
        print("  " + c)
    for name, rec in sorted(r["updates"].items()):
        print("  " + _update_line(name, rec))


def _update_line(name, rec):
    import time
    return "%s: update %s: %s%s (%s)%s" % (
        name, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rec["time"])) if rec["time"] else "?",
        rec["word"], " " + rec["address"] if rec["address"] else "", rec["words"],
        ", %d failures in a row" % rec["fails"] if rec["fails"] else "")


def _print_down(r):
    n = len(r["kernel_changes"])
    print("%s: down: %d kernel change%s; firewall table %s" % (
        PROG, n, "" if n == 1 else "s", "removed" if r["firewall_removed"] else "was not there"))
    for c in r["kernel_changes"]:
        print("  " + c)


def _print_status(st):
    if not st["devices"]:
        print("%s: no tunnel is up" % PROG)
    for d in st["devices"]:
        c = d["counters"]
        print("%s  %s  mtu %s  %s -> %s  ttl %s" % (d["device"], "up" if d["up"] else "DOWN", d["mtu"], d["local"],
                                                   d["remote"], d["ttl"]))
        for a in d["addresses"]:
            print("  address " + a)
        for r in d["routes"]:
            print("  route " + r)
        print("  rx %d packets %d bytes, tx %d packets %d bytes, errors rx %d tx %d, tx dropped %d" % (
            c["rx_packets"], c["rx_bytes"], c["tx_packets"], c["tx_bytes"], c["rx_errors"], c["tx_errors"],
            c["tx_dropped"]))
    for a in st.get("lan_addresses") or []:
        print("lan " + a)
    fw = st["firewall"]
    if fw["counters"] is None:
        print("firewall: no table %s" % fw["table"])
    else:
        print("firewall %s:" % fw["table"])
        for pair, cnt in sorted(fw["counters"]["peers"].items()):
            print("  6in4 %s: %d packets %d bytes" % (pair.replace(" . ", " from "), cnt["packets"], cnt["bytes"]))
        for name, cnt in sorted(fw["counters"]["rules"].items()):
            print("  %s: %d packets %d bytes" % (name, cnt["packets"], cnt["bytes"]))
    for f in st.get("foreign_tunnels") or []:
        print("other sit tunnel (not ours): " + f)
    for name, rec in sorted((st.get("updates") or {}).items()):
        print(_update_line(name, rec))


def _error_line(e):
    codes = getattr(e, "codes", None)
    code = ",".join(codes) if codes else e.code
    return "%s: %s: %s\n" % (PROG, code, str(e).replace("\n", " "))


def main(argv):
    try:
        args = _parse_args(argv)
    except UsageError as e:
        if e.args[0] is None:
            sys.stdout.write(USAGE + "\n")
            return 0 if argv else 2
        sys.stderr.write("%s: %s; %s\n" % (PROG, e.args[0], USAGE))
        return 2
    try:
        if args["command"] == "up":
            r = up(args["config"], args["netns"])
            printer = _print_up
        elif args["command"] == "down":
            r = down(args["netns"])
            printer = _print_down
        else:
            r = status(args["netns"])
            printer = _print_status
    except ConfigErrors as e:
        sys.stderr.write(_error_line(e))
        return 1
    except SixbrokerError as e:
        sys.stderr.write(_error_line(e))
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("%s: interrupted\n" % PROG)
        return 130
    except Exception as e:      # a bug: still one line, never a traceback
        sys.stderr.write(_error_line(SixbrokerError("INTERNAL_ERROR", "%s: %s" % (type(e).__name__, e))))
        return 1
    if args["json"]:
        sys.stdout.write(json.dumps(r, indent=2, sort_keys=True) + "\n")
    else:
        printer(r)
    return 0
