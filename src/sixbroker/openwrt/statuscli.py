"""`sixbroker status`: the router's tunnels and their diagnosis, as lines for a terminal or as JSON.

The tunnels come from status.py, the checks from diagnose.py; this module only reads the command line
and writes what they found."""

import json
import sys
import time

from sixbroker.core.errors import SixbrokerError
from sixbroker.openwrt import status
from sixbroker.openwrt.humanize import human_bytes, human_duration

USAGE = """usage: sixbroker status [--json] [--no-rtt] [INTERFACE]
       sixbroker status --diagnose INTERFACE [--json]

The router's sixbroker tunnels as netifd and the kernel see them.  --diagnose runs the checks one
would otherwise run by hand (IPv4 path, protocol 41, IPv6 through the tunnel, path MTU) and says
which one failed.
"""


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
                result = status.collect(bus, name, rtt)
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
