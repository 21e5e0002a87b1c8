"""The router's sixbroker tunnels as they are now: what LuCI (rpcd.py) and `sixbroker status` show.

Two sources, both read without starting a program (MicroPython can start none):
- netifd, over ubus (`network.interface dump`): up or not and for how long, the tunnel addresses, the
  routes, the routed prefixes and the share each LAN got of them, the errors the handler reported, and
  data.sixbroker (the two IPv4 ends; netifd.py puts them there);
- the kernel, for the tunnel device (devfacts.py).

The round-trip time to the broker's tunnel address comes from one ICMPv6 echo through the tunnel
(probe.py): it needs a raw socket, so root.
"""

import time

from sixbroker.core import addr
from sixbroker.core.errors import CODES, SixbrokerError
from sixbroker.openwrt.devfacts import PROC_NET, SYS_NET, device_facts

PROTO = "sixbroker"
RTT_TIMEOUT = 1.0           # seconds per tunnel: a LuCI poll must not hang on a dead peer


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
    if rtt:
        for t in out:
            measure_rtt(t)
    for t in out:
        t["update"] = last_update(t["interface"])
    return {"tunnels": out}


def last_update(interface):
    """The updater's record of its last request (core/updaterecord.py), or None: no updater, or none yet."""
    from sixbroker.core import updaterecord
    from sixbroker.openwrt import hotplug
    return updaterecord.read(hotplug.run_path(interface, "update")) if interface else None
