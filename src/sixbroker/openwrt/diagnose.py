"""`diagnose`: the checks a person would run by hand on a tunnel that does not work, in the order that
finds the cause, each said in words.

    interface -> netifd -> device -> IPv4 route -> IPv4 ping -> protocol 41 -> IPv6 ping -> path MTU
    -> default route -> LAN prefix

No helper program (MicroPython can start none, and `ping` is a process): probes are ICMP echoes on a
raw socket (probe.py), counters and routes come from /sys and /proc (devfacts.py), netifd's view over
ubus.  "Protocol 41 answered" is measured the way a person would with `ip -s link`: echo requests go
into the tunnel, and the tunnel device's rx counter must move; a sit device counts only packets that
arrived as protocol 41 from the configured remote.
"""

from sixbroker.core import addr
from sixbroker.core.errors import SixbrokerError
from sixbroker.openwrt import status
from sixbroker.openwrt.devfacts import PROC_NET, SYS_NET, device_facts
from sixbroker.openwrt.humanize import human_duration

OK, FAIL, WARN, SKIP = "ok", "fail", "warn", "skip"

CHECKS = (
    ("interface", "Interface with protocol sixbroker"),
    ("netifd", "netifd brought the interface up"),
    ("device", "Tunnel device in the kernel"),
    ("ipv4_route", "IPv4 route to the broker"),
    ("ipv4_ping", "Broker answers ping over IPv4"),
    ("proto41", "Broker answers protocol 41"),
    ("ipv6_ping", "Broker's tunnel address answers ping over IPv6"),
    ("mtu", "Full-size packets pass (path MTU)"),
    ("default_route", "IPv6 default route through the tunnel"),
    ("lan_prefix", "Routed prefix handed to the LAN"),
)
TITLES = dict(CHECKS)
TIMEOUT = 1.0
MTU_MIN = 1280


class Diagnosis:
    def __init__(self, interface):
        self.interface = interface
        self.checks = []

    def add(self, name, result, text):
        self.checks.append({"name": name, "title": TITLES[name], "status": result, "text": text})
        return result

    def skip_rest(self, text):
        done = set(c["name"] for c in self.checks)
        for name, _ in CHECKS:
            if name not in done:
                self.add(name, SKIP, text)

    def result(self):
        failed = [c for c in self.checks if c["status"] == FAIL]
        warned = [c for c in self.checks if c["status"] == WARN]
        if failed:
            summary = "Failed: " + failed[0]["title"] + ": " + failed[0]["text"]
        elif warned:
            summary = "The tunnel works, with warnings: " + warned[0]["text"]
        else:
            summary = "The tunnel works"
        return {"interface": self.interface, "ok": not failed,
                "failed": failed[0]["name"] if failed else None,
                "summary": summary, "checks": self.checks}


def _ms(rtts):
    got = [r for r in rtts if r is not None]
    return "%.1f ms" % (sum(got) / len(got)) if got else None


def _counters(device, sys_root, proc_root):
    k = device_facts(device, sys_root, proc_root)
    return k["statistics"] if k else {}


def _current_ipv4(dump, device):
    for st in (dump or {}).get("interface") or []:
        if st.get("up") and st.get("l3_device") == device:
            for a in st.get("ipv4-address") or []:
                if a.get("address"):
                    return a["address"]
    return None


def diagnose(bus, interface, sys_root=SYS_NET, proc_root=PROC_NET,
             route_file="/proc/net/route", echo=None, timeout=TIMEOUT):
    """Run every check on one interface; returns {interface, ok, failed, summary, checks: [...]}."""
    from sixbroker.openwrt import probe

    echo = echo or probe.echo
    d = Diagnosis(interface)
    try:
        dump = bus.call("network.interface", "dump", {}) or {}
    except SixbrokerError as e:
        d.add("interface", FAIL, "Could not ask netifd: " + e.text)
        d.skip_rest("netifd did not answer")
        return d.result()

    st = None
    for s in dump.get("interface") or []:
        if s.get("interface") == interface:
            st = s
    if st is None:
        d.add("interface", FAIL, "netifd knows no interface '" + interface + "': check /etc/config/network, "
              "then /etc/init.d/network reload")
        d.skip_rest("no such interface")
        return d.result()
    codes = [e.get("code") for e in st.get("errors") or [] if isinstance(e, dict)]
    if st.get("proto") is None and "INVALID_PROTO" in codes:
        d.add("interface", FAIL, "netifd does not know the protocol 'sixbroker' yet: it reads protocol "
              "handlers only when it starts, so run /etc/init.d/network restart once after installing")
        d.skip_rest("netifd cannot run it")
        return d.result()
    if st.get("proto") != status.PROTO:
        d.add("interface", FAIL, "'" + interface + "' uses protocol '" + str(st.get("proto"))
              + "', not sixbroker")
        d.skip_rest("not a sixbroker interface")
        return d.result()
    d.add("interface", OK, "'" + interface + "' uses protocol sixbroker")

    t = status.tunnel_status(st, None, sys_root, proc_root)
    if not _check_netifd(d, t, interface):
        d.skip_rest("the interface is not up")
        return d.result()
    if not _check_device(d, t):
        d.skip_rest("no usable tunnel device")
        return d.result()
    _check_ipv4(d, t, dump, route_file, echo, timeout)
    if _check_tunnel(d, t, echo, timeout, sys_root, proc_root):
        _check_mtu(d, t, echo, timeout)
    else:
        d.add("mtu", SKIP, "needs an answer through the tunnel first")
    _check_default_route(d, t)
    _check_prefixes(d, t)
    return d.result()


def _check_netifd(d, t, interface):
    if t["up"]:
        d.add("netifd", OK, "up for " + human_duration(t["uptime"]))
        return True
    words = []
    for e in t["errors"]:
        for m in e["messages"]:
            words.append(m["text"] + " (" + m["code"] + ")")
    if words:
        d.add("netifd", FAIL, "; ".join(words))
    elif t["pending"]:
        d.add("netifd", FAIL, "netifd is still setting it up: the handler has not reported back yet")
    elif not t["autostart"]:
        d.add("netifd", FAIL, "it is down and not started at boot: bring it up with `ifup " + interface + "`")
    else:
        d.add("netifd", FAIL, "it is down (see `logread -e netifd` for what the handler said)")
    return False


def _check_device(d, t):
    dev, k = t["device"], t["kernel"]
    if not dev:
        d.add("device", FAIL, "netifd names no device for the interface")
        return False
    if k is None:
        d.add("device", FAIL, "the device " + dev + " does not exist in the kernel (is kmod-sit installed?)")
        return False
    if not k["up"]:
        d.add("device", FAIL, "the device " + dev + " is administratively down")
        return False
    d.add("device", OK, "%s, MTU %s" % (dev, k["mtu"]))
    return True


def _nat_hint(local):
    try:
        a = addr.Address.parse(local, 4)
    except (addr.AddressError, TypeError):
        return ""
    if a.is_private or a.is_cgnat:
        return (" (" + local + " is a private address: this router is behind NAT, so the broker must have "
                "your public IPv4 address as this tunnel's remote, and the NAT must pass protocol 41)")
    return ""


def _check_ipv4(d, t, dump, route_file, echo, timeout):
    from sixbroker.openwrt import hostinfo, probe

    remote, local = t["remote"], t["local"]
    if not remote:
        d.add("ipv4_route", SKIP, "netifd holds no tunnel end points for this interface")
        d.add("ipv4_ping", SKIP, "no broker address known")
        return
    try:
        via = hostinfo.route_device(addr.Address.parse(remote, 4), route_file)
    except addr.AddressError:
        via = None
    if via is None:
        d.add("ipv4_route", FAIL, "no IPv4 route to the broker " + remote
              + ": the WAN is down or has no default route")
    else:
        now = _current_ipv4(dump, via)
        if t["local_from"] in ("tunlink", "route") and now and local and now != local:
            d.add("ipv4_route", FAIL, "the tunnel still sends from %s, but %s now has %s: restart the "
                  "tunnel (ifup %s)" % (local, via, now, t["interface"]))
        else:
            d.add("ipv4_route", OK, "via " + via + (" from " + local if local else "") + _nat_hint(local))
    try:
        rtts = echo(remote, count=2, timeout=timeout)
    except probe.ProbeError as e:
        d.add("ipv4_ping", SKIP, "cannot send a ping: " + e.text)
        return
    if _ms(rtts):
        d.add("ipv4_ping", OK, remote + " answered in " + _ms(rtts))
    else:
        d.add("ipv4_ping", WARN, remote + " did not answer: many servers drop ping, so this alone is no fault")


def _check_tunnel(d, t, echo, timeout, sys_root, proc_root):
    """protocol 41 and IPv6 ping; True when the broker's tunnel address answered."""
    from sixbroker.openwrt import probe

    gw, dev = t["gateway"], t["device"]
    if not gw:
        d.add("proto41", SKIP, "the broker's tunnel address is not known (no default route, no ip6gw)")
        d.add("ipv6_ping", SKIP, "the broker's tunnel address is not known")
        return False
    before = _counters(dev, sys_root, proc_root)
    try:
        rtts = echo(gw, count=3, timeout=timeout, device=dev)
    except probe.ProbeError as e:
        d.add("proto41", SKIP, "cannot send through the tunnel: " + e.text)
        d.add("ipv6_ping", SKIP, "cannot send through the tunnel: " + e.text)
        return False
    after = _counters(dev, sys_root, proc_root)
    sent = (after.get("tx_packets") or 0) - (before.get("tx_packets") or 0)
    came = (after.get("rx_packets") or 0) - (before.get("rx_packets") or 0)
    if _ms(rtts):
        d.add("proto41", OK, "%d packet%s came back through the tunnel from %s" % (
            came, "" if came == 1 else "s", t["remote"] or "the broker"))
        d.add("ipv6_ping", OK, gw + " answered in " + _ms(rtts))
        return True
    if sent <= 0:
        d.add("proto41", FAIL, "nothing went out through " + dev + " (its tx counter did not move): "
              "the route to " + gw + " does not use the tunnel")
    elif came <= 0:
        d.add("proto41", FAIL, "%d echo request%s went into the tunnel to %s, but nothing came back: the "
              "broker does not answer protocol 41 from %s. Check this tunnel's remote address on the "
              "broker, that its firewall accepts protocol 41 from you, and that nothing in between drops "
              "protocol 41%s" % (sent, "" if sent == 1 else "s", t["remote"] or "the broker",
                                 t["local"] or "this router", _nat_hint(t["local"])))
    else:
        d.add("proto41", OK, "packets come back through the tunnel")
        d.add("ipv6_ping", FAIL, "packets come back through the tunnel, but " + gw + " does not answer "
              "echo requests: check ip6gw (the broker's tunnel address) and the broker's ICMPv6 policy")
        return False
    d.add("ipv6_ping", FAIL, "no answer from " + gw)
    return False


def _passes(echo, gw, dev, mtu, timeout, count=2):
    from sixbroker.openwrt import probe

    rtts = echo(gw, count=count, size=probe.payload_for_mtu(mtu), timeout=timeout, device=dev, dontfrag=True)
    return any(r is not None for r in rtts)


def _check_mtu(d, t, echo, timeout):
    from sixbroker.openwrt import probe

    gw, dev, mtu = t["gateway"], t["device"], (t["kernel"] or {}).get("mtu")
    if not mtu or mtu <= MTU_MIN:
        d.add("mtu", SKIP, "the tunnel MTU is %s: nothing to test above the IPv6 minimum" % mtu)
        return
    try:
        if _passes(echo, gw, dev, mtu, timeout):
            d.add("mtu", OK, "%d-byte packets pass" % mtu)
            return
        if not _passes(echo, gw, dev, MTU_MIN, timeout):
            d.add("mtu", WARN, "neither %d- nor %d-byte echoes came back, though small ones did" % (mtu, MTU_MIN))
            return
        good, bad = MTU_MIN, mtu
        # about 8 probes from 1280 to 1480; the answer is the number to put in option mtu
        while bad - good > 1:
            mid = (good + bad) // 2
            if _passes(echo, gw, dev, mid, timeout / 2, 1):
                good = mid
            else:
                bad = mid
        d.add("mtu", FAIL, "%d-byte packets are lost while %d-byte ones pass: set option mtu %d on this "
              "interface (and the same on the broker's end)" % (mtu, good, good))
    except probe.ProbeError as e:
        if e.errno == probe.EMSGSIZE:
            d.add("mtu", FAIL, "the kernel already knows a path MTU below %d towards %s (an ICMPv6 Packet "
                  "Too Big came back): lower option mtu on this interface" % (mtu, gw))
        else:
            d.add("mtu", SKIP, "cannot send: " + e.text)


def _check_default_route(d, t):
    wanted = [r for r in t["routes"] if r["target"] == "::/0"]
    if not wanted:
        d.add("default_route", SKIP, "netifd has no IPv6 default route for this interface (defaultroute 0)")
        return
    have = [r for r in (t["kernel"] or {}).get("routes") or [] if r["target"] == "::/0"]
    if not have:
        d.add("default_route", FAIL, "netifd holds a default route via %s, but the kernel has none on %s"
              % (wanted[0]["gateway"], t["device"]))
        return
    r = have[0]
    text = "default via " + (r["gateway"] or "the tunnel") + " dev " + t["device"]
    if r["source"]:
        text += " from " + ", ".join(x["source"] for x in have if x["source"]) + \
            " only (sourcerouting 1: traffic from other sources does not use the tunnel)"
    d.add("default_route", OK, text)


def _check_prefixes(d, t):
    if not t["prefixes"]:
        d.add("lan_prefix", SKIP, "no routed prefix (ip6prefix) configured")
        return
    lonely = [p["prefix"] for p in t["prefixes"] if not p["assigned"]]
    given = ["%s -> %s" % (p["prefix"], ", ".join(a["interface"] + " " + a["prefix"] for a in p["assigned"]))
             for p in t["prefixes"] if p["assigned"]]
    if lonely:
        d.add("lan_prefix", WARN, ", ".join(lonely) + " is not handed to any LAN: set option ip6assign "
              "(e.g. 64) on the LAN interface")
    else:
        d.add("lan_prefix", OK, "; ".join(given))
