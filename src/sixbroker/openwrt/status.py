"""The router's sixbroker tunnels as they are now: for LuCI (rpcd.py) and `sixbroker status [--json]`.

Two sources, both read without starting a program (MicroPython can start none):
- netifd, over ubus (`network.interface dump`): up or not and for how long, the tunnel addresses, the
  routes, the routed prefixes and the share each LAN got of them, the errors the handler reported, and
  data.sixbroker (the two IPv4 ends; netifd.py puts them there);
- the kernel, for the tunnel device: /sys/class/net/<dev>/{ifindex,flags,operstate,mtu,statistics/*},
  /proc/net/if_inet6 and /proc/net/ipv6_route.  Both roots are parameters, so the same code reads a
  network namespace's view in a test and the guest's real sit device in the end-to-end test.

The round-trip time to the broker's tunnel address comes from one ICMPv6 echo through the tunnel
(probe.py): it needs a raw socket, so root.
"""

import json
import sys
import time

from sixbroker.core import addr
from sixbroker.core.errors import CODES, SixbrokerError

SYS_NET = "/sys/class/net/"
PROC_NET = "/proc/net/"
PROTO = "sixbroker"
STATISTICS = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "rx_errors", "tx_errors",
              "rx_dropped", "tx_dropped")
RTT_TIMEOUT = 1.0           # seconds per tunnel: a LuCI poll must not hang on a dead peer

# include/uapi/linux/if.h and ipv6_route.h
IFF_UP = 0x1
RTF_GATEWAY = 0x2
RTF_CACHE = 0x01000000
RTF_LOCAL = 0x80000000
# the scope column of /proc/net/if_inet6 (net/ipv6/addrconf.c, ipv6_addr_scope)
SCOPES = {0x00: "global", 0x10: "host", 0x20: "link", 0x40: "site"}


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, ValueError):
        return None


def _int(text, base=10):
    try:
        return int(text, base)
    except (TypeError, ValueError):
        return None


def _hex6(text):
    return addr.format_ipv6(int(text, 16))


def device_addresses(device, proc_root=PROC_NET):
    """The device's IPv6 addresses from /proc/net/if_inet6: [{address, length, scope}]."""
    out = []
    text = _read(proc_root + "if_inet6") or ""
    for line in text.split("\n"):
        cols = line.split()
        if len(cols) != 6 or cols[5] != device:
            continue
        scope = int(cols[3], 16)
        out.append({"address": _hex6(cols[0]), "length": int(cols[2], 16),
                    "scope": SCOPES.get(scope & 0xF0, "%02x" % scope)})
    return out


def device_routes(device, proc_root=PROC_NET):
    """The device's IPv6 unicast routes from /proc/net/ipv6_route (every table; local ones, multicast and
    cached ones left out): [{target, gateway, metric, source}], prefixes as "addr/len"."""
    out = []
    text = _read(proc_root + "ipv6_route") or ""
    for line in text.split("\n"):
        cols = line.split()
        if len(cols) != 10 or cols[9] != device:
            continue
        flags = int(cols[8], 16)
        if flags & (RTF_LOCAL | RTF_CACHE) or cols[0].startswith("ff"):
            continue
        source = None
        if int(cols[3], 16):
            source = _hex6(cols[2]) + "/" + str(int(cols[3], 16))
        out.append({"target": _hex6(cols[0]) + "/" + str(int(cols[1], 16)),
                    "gateway": _hex6(cols[4]) if flags & RTF_GATEWAY else None,
                    "metric": int(cols[5], 16), "source": source})
    return out


def device_facts(device, sys_root=SYS_NET, proc_root=PROC_NET):
    """What the kernel says about one network device, or None when there is no such device.

    {device, ifindex, up (IFF_UP, set by `ip link set up`), operstate, mtu, statistics{rx_bytes, ...},
     addresses, routes}.  A sit device is "unknown" in operstate while it works: it has no carrier.
    """
    base = sys_root + device + "/"
    ifindex = _int(_read(base + "ifindex"))
    if ifindex is None:
        return None
    flags = _int(_read(base + "flags"), 16) or 0
    stats = {}
    for name in STATISTICS:
        stats[name] = _int(_read(base + "statistics/" + name))
    return {
        "device": device,
        "ifindex": ifindex,
        "up": bool(flags & IFF_UP),
        "operstate": _read(base + "operstate"),
        "mtu": _int(_read(base + "mtu")),
        "statistics": stats,
        "addresses": device_addresses(device, proc_root),
        "routes": device_routes(device, proc_root),
    }


def error_words(code):
    return CODES.get(code, code)


def _errors(st):
    """netifd keeps a handler's error as one entry: the first code, the rest as its data (netifd
    proto-shell.c proto_shell_notify_error).  Our handler sends every configuration code it found, so
    the data items are codes too and get words of their own."""
    out = []
    for e in st.get("errors") or []:
        if not isinstance(e, dict) or not isinstance(e.get("code"), str):
            continue
        codes = [e["code"]] + [d for d in (e.get("data") or []) if isinstance(d, str) and d in CODES]
        out.append({"code": e["code"], "subsystem": e.get("subsystem"), "data": e.get("data") or [],
                    "messages": [{"code": c, "text": error_words(c)} for c in codes]})
    return out


def _prefixes(st):
    out = []
    for p in st.get("ipv6-prefix") or []:
        if not isinstance(p, dict) or "address" not in p:
            continue
        assigned = []
        for name, a in sorted((p.get("assigned") or {}).items()):
            if isinstance(a, dict) and "address" in a:
                assigned.append({"interface": name, "prefix": a["address"] + "/" + str(a.get("mask"))})
        out.append({"prefix": p["address"] + "/" + str(p.get("mask")), "assigned": assigned,
                    "preferred": p.get("preferred"), "valid": p.get("valid")})
    return out


def _routes(st):
    out = []
    for r in st.get("route") or []:
        if not isinstance(r, dict) or ":" not in str(r.get("target", "")):
            continue
        source = r.get("source")
        if source in ("::/0", None):
            source = None
        out.append({"target": r["target"] + "/" + str(r.get("mask")), "gateway": r.get("nexthop"),
                    "metric": r.get("metric"), "source": source})
    return out


def gateway(st):
    """The broker's tunnel address: the default route's next hop, else what options.py would derive
    from this end's tunnel address (a plain default route may be switched off with defaultroute 0)."""
    for r in st.get("route") or []:
        if isinstance(r, dict) and r.get("target") == "::" and r.get("mask") == 0 and r.get("nexthop") \
                and r["nexthop"] != "::":
            return r["nexthop"]
    from sixbroker.core import options
    for a in st.get("ipv6-address") or []:
        try:
            iface = addr.Interface.parse(a["address"] + "/" + str(a["mask"]), 6)
            gw = options.derive_gateway(iface)
        except (addr.AddressError, KeyError, TypeError):
            continue
        if gw is not None:
            return str(gw)
    return None


def tunnel_status(st, now=None, sys_root=SYS_NET, proc_root=PROC_NET):
    """One sixbroker interface: netifd's status object joined with the kernel's view of its device."""
    now = int(time.time()) if now is None else now
    sb = (st.get("data") or {}).get("sixbroker") or {}
    up = bool(st.get("up"))
    uptime = st.get("uptime") if up else None
    device = st.get("l3_device") if up else None
    return {
        "interface": st.get("interface"),
        "up": up,
        "pending": bool(st.get("pending")),
        "available": bool(st.get("available")),
        "autostart": bool(st.get("autostart")),
        "uptime": uptime,
        "since": now - uptime if isinstance(uptime, int) else None,
        "device": device,
        "local": sb.get("local"),
        "remote": sb.get("remote"),
        "local_from": sb.get("local_from"),
        "tunlink": sb.get("tunlink"),
        "addresses": [a["address"] + "/" + str(a["mask"]) for a in st.get("ipv6-address") or []
                      if isinstance(a, dict) and "address" in a],
        "gateway": gateway(st) if up else None,
        "routes": _routes(st),
        "prefixes": _prefixes(st),
        "errors": _errors(st),
        "kernel": device_facts(device, sys_root, proc_root) if device else None,
        "rtt_ms": None,
        "rtt_error": None,
        "config": None,
    }


def configured(name, cfg):
    """What a down tunnel is set to do, from its UCI section: the options as written, and what the
    handler derives for the empty ones it can derive without the network (gateway, device name)."""
    from sixbroker.core import options

    def text(key):
        v = cfg.get(key)
        return v if isinstance(v, str) and v != "" else None

    prefixes = cfg.get("ip6prefix") or []
    if isinstance(prefixes, str):
        prefixes = prefixes.split()
    gw, derived = text("ip6gw"), False
    if gw is None and text("ip6addr"):
        try:
            found = options.derive_gateway(addr.Interface.parse(text("ip6addr"), 6))
        except addr.AddressError:
            found = None
        gw, derived = (str(found), True) if found is not None else (None, False)
    device = text("device")
    return {"peeraddr": text("peeraddr"), "ipaddr": text("ipaddr"), "ip6addr": text("ip6addr"),
            "ip6gw": gw, "ip6gw_derived": derived, "ip6prefix": prefixes, "tunlink": text("tunlink"),
            "mtu": text("mtu"), "device": options.device_name(name, device) if name else device}


def read_configured(bus, name):
    """configured() for one interface, read through rpcd's `uci get` (rpcd uci.c rpc_uci_get: the
    section's options in "values"; UBUS_STATUS_NOT_FOUND when there is no such section), or None."""
    try:
        reply = bus.call("uci", "get", {"config": "network", "section": name}) or {}
    except SixbrokerError:
        return None     # no rpcd, or no such section: the status must still answer
    values = reply.get("values")
    if not isinstance(values, dict):
        return None
    return configured(name, dict((k, v) for k, v in values.items() if not k.startswith(".")))


def tunnels(dump, interface=None, now=None, sys_root=SYS_NET, proc_root=PROC_NET):
    """Every sixbroker interface in a `network.interface dump` answer (or just `interface`), by name."""
    out = []
    for st in (dump or {}).get("interface") or []:
        if not isinstance(st, dict) or st.get("proto") != PROTO:
            continue
        if interface is not None and st.get("interface") != interface:
            continue
        out.append(tunnel_status(st, now, sys_root, proc_root))
    out.sort(key=lambda t: t["interface"] or "")
    return out


def measure_rtt(t, timeout=RTT_TIMEOUT):
    """Fill in rtt_ms (or rtt_error) of an up tunnel with one echo to the broker's tunnel address."""
    from sixbroker.openwrt import probe

    if not t["up"] or not t["gateway"] or not t["kernel"]:
        return t
    try:
        t["rtt_ms"] = probe.echo(t["gateway"], timeout=timeout, device=t["device"])[0]
        if t["rtt_ms"] is None:
            t["rtt_error"] = "no answer within %g s" % timeout
    except probe.ProbeError as e:
        t["rtt_error"] = e.text
    return t


def collect(bus, interface=None, rtt=True, sys_root=SYS_NET, proc_root=PROC_NET):
    """{"tunnels": [...]} from netifd (bus: a ubus connection) and the kernel."""
    dump = bus.call("network.interface", "dump", {})
    out = tunnels(dump, interface, None, sys_root, proc_root)
    for t in out:
        if not t["up"]:
            # netifd shows nothing of a down interface's settings: say what it is set to do
            t["config"] = read_configured(bus, t["interface"])
    for t in out:
        t["update"] = last_update(t["interface"])
    if rtt:
        for t in out:
            measure_rtt(t)
    return {"tunnels": out}


def last_update(interface):
    """The updater's record of its last request (core/updaterecord.py), or None: no updater, or none yet."""
    from sixbroker.core import updaterecord
    from sixbroker.openwrt import hotplug
    return updaterecord.read(hotplug.run_path(interface, "update")) if interface else None


# ---- `sixbroker status` ----------------------------------------------------------------------------

USAGE = """usage: sixbroker status [--json] [--no-rtt] [INTERFACE]
       sixbroker status --diagnose INTERFACE [--json]

The router's sixbroker tunnels as netifd and the kernel see them.  --diagnose runs the checks one
would otherwise run by hand (IPv4 path, protocol 41, IPv6 through the tunnel, path MTU) and says
which one failed.
"""


def human_bytes(n):
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024
    return str(n)


def human_duration(seconds):
    if seconds is None:
        return "?"
    d, rest = divmod(int(seconds), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    if d:
        return "%dd %02dh %02dm" % (d, h, m)
    if h:
        return "%dh %02dm" % (h, m)
    if m:
        return "%dm %02ds" % (m, s)
    return "%ds" % s


def _clock(epoch):
    t = time.localtime(epoch)
    return "%04d-%02d-%02d %02d:%02d:%02d" % (t[0], t[1], t[2], t[3], t[4], t[5])


def format_tunnel(t):
    """A few lines for a terminal."""
    if t["up"]:
        state = "up since %s (%s)" % (_clock(t["since"]), human_duration(t["uptime"])) \
            if t["since"] is not None else "up"
    elif t["pending"]:
        state = "being set up"
    else:
        state = "down"
    lines = [t["interface"] + ": " + state]
    k = t["kernel"]
    if t["device"]:
        line = "  device   " + t["device"]
        if k:
            line += ", mtu %s, %s" % (k["mtu"], "up" if k["up"] else "DOWN")
        else:
            line += " (missing in the kernel)"
        lines.append(line)
    if t["local"] or t["remote"]:
        via = ""
        if t["tunlink"]:
            via = " over " + t["tunlink"]
        lines.append("  IPv4     %s -> %s%s" % (t["local"] or "?", t["remote"] or "?", via))
    if t["addresses"]:
        line = "  tunnel   " + ", ".join(t["addresses"])
        if t["gateway"]:
            line += ", broker " + t["gateway"]
        lines.append(line)
    if t["rtt_ms"] is not None:
        lines.append("  rtt      %.1f ms" % t["rtt_ms"])
    elif t["rtt_error"]:
        lines.append("  rtt      - (" + t["rtt_error"] + ")")
    for p in t["prefixes"]:
        given = ", ".join(a["interface"] + " " + a["prefix"] for a in p["assigned"]) or "not assigned to any LAN"
        lines.append("  prefix   %s -> %s" % (p["prefix"], given))
    if k:
        st = k["statistics"]
        lines.append("  traffic  rx %s (%s packets), tx %s (%s packets)" % (
            human_bytes(st["rx_bytes"]), st["rx_packets"], human_bytes(st["tx_bytes"]), st["tx_packets"]))
    c = t.get("config")
    if not t["up"] and c:
        gw = (c["ip6gw"] + (" (derived)" if c["ip6gw_derived"] else "")) if c["ip6gw"] else "?"
        lines.append("  set to   broker %s, tunnel %s, broker's end %s" % (
            c["peeraddr"] or "(not set)", c["ip6addr"] or "(not set)", gw))
        lines.append("           prefixes %s, link %s, mtu %s, device %s" % (
            ", ".join(c["ip6prefix"]) or "none", c["tunlink"] or "(route to the broker)",
            c["mtu"] or "auto", c["device"]))
    u = t.get("update")
    if u and u["time"] is not None:
        lines.append("  update   %s%s at %s: %s" % (u["word"], " " + u["address"] if u["address"] else "",
                                                      _clock(u["time"]), u["words"]))
        if t["up"] and u["next"] is not None:
            lines.append("           next at %s%s" % (_clock(u["next"]), ", %d failures in a row" % u["fails"]
                                                     if u["fails"] else ""))
    seen = []
    for e in t["errors"]:
        for m in e["messages"]:
            line = "  error    %s: %s" % (m["code"], m["text"])
            if line not in seen:    # netifd keeps a retried setup's errors until the interface is up
                seen.append(line)
                lines.append(line)
    return "\n".join(lines)


def format_diagnosis(d):
    marks = {"ok": "ok  ", "fail": "FAIL", "warn": "warn", "skip": "skip"}
    lines = [d["interface"] + ": " + d["summary"]]
    for c in d["checks"]:
        lines.append("  [%s] %s: %s" % (marks.get(c["status"], c["status"]), c["title"], c["text"]))
    return "\n".join(lines)


def main(argv):
    want_json = diagnose = False
    rtt = True
    names = []
    for a in argv:
        if a in ("-h", "--help"):
            sys.stdout.write(USAGE)
            return 0
        if a == "--json":
            want_json = True
        elif a == "--diagnose":
            diagnose = True
        elif a == "--no-rtt":
            rtt = False
        elif a.startswith("-") or names:
            sys.stderr.write("sixbroker status: USAGE: unexpected '" + a + "'\n" + USAGE)
            return 2
        else:
            names.append(a)
    name = names[0] if names else None
    if diagnose and name is None:
        sys.stderr.write("sixbroker status: USAGE: --diagnose needs an interface\n" + USAGE)
        return 2
    from sixbroker.openwrt import ubus
    try:
        bus = ubus.connect()
        try:
            if diagnose:
                from sixbroker.openwrt import diagnose as diag
                result = diag.diagnose(bus, name)
            else:
                result = collect(bus, name, rtt)
        finally:
            bus.close()
    except SixbrokerError as e:
        sys.stderr.write("sixbroker status: " + e.code + ": " + e.text + "\n")
        return 1
    if want_json:
        sys.stdout.write(json.dumps(result) + "\n")
    elif diagnose:
        sys.stdout.write(format_diagnosis(result) + "\n")
    elif not result["tunnels"]:
        sys.stdout.write("no sixbroker interface" + (" named " + name if name else "") + "\n")
    else:
        sys.stdout.write("\n\n".join(format_tunnel(t) for t in result["tunnels"]) + "\n")
    if diagnose:
        return 0 if result["ok"] else 1
    return 0 if result["tunnels"] or name is None else 1
