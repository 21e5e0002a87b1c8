"""The plan: what one tunnel end must look like, as plain data.

Built from validated options (router end) or a broker database row (VPS end); consumed unchanged by every
applier: netifd's notify_proto (netifd.py), the kernel via netlink and the nftables table (apply_*.py).
Plain dicts, lists, strings and ints only, so a plan compares with ==, prints as JSON and runs on
MicroPython.

    {
      "tunnel":    {"device", "mode": "sit", "local", "remote", "ttl", "tos", "mtu", "link"},
      "addresses": [{"address", "length"}],                  # on the tunnel device
      "routes":    [{"target", "length", "gateway", "source", "metric"}],   # IPv6, via the tunnel
      "prefixes":  [{"prefix", "length"}],                   # router end: delegated to the LAN
      "firewall":  {"zone", "rules": [rule, ...], "sources": [prefix] (broker end only)},
      "sysctls":   [[key, value], ...],
      "host_route": {"host", "interface"} or None,           # keep the peer reachable over IPv4
    }

A firewall rule is the neutral form both firewalls understand (fw4's UCI rule words):
    {"name", "chain": "input"|"forward", "family": "ipv4"|"ipv6"|None, "proto": 41|"icmpv6"|None,
     "src_ip", "iif", "oif", "ct_state": [..] or None, "target": "ACCEPT"|"REJECT"|"DROP"}
"""


SIT = "sit"
PROTO_6IN4 = 41
DEFAULT_MTU = 1480      # Ethernet's 1500 less the 20-byte outer IPv4 header


def rule(name, chain, target, family=None, proto=None, src_ip=None, iif=None, oif=None, ct_state=None):
    return {"name": name, "chain": chain, "family": family, "proto": proto, "src_ip": src_ip,
            "iif": iif, "oif": oif, "ct_state": ct_state, "target": target}


def _tunnel(device, local, remote, ttl, tos, mtu, link):
    return {"device": device, "mode": SIT, "local": str(local), "remote": str(remote), "ttl": ttl,
            "tos": tos, "mtu": mtu, "link": link}


def _addr(a, length):
    return {"address": str(a), "length": length}


def _route(target, length, gateway, source=None, metric=None):
    return {"target": target, "length": length, "gateway": str(gateway) if gateway else None,
            "source": source, "metric": metric}


def tunnel_mtu(option_mtu, link_mtu):
    """The underlying device's MTU less the outer IPv4 header, capped by the `mtu` option.

    The option is a most, not a must: the broker prints its own MTU (1480) into every router's
    configuration, and a router behind PPPoE (1492) must still send 1472-byte packets, not outer
    packets its link cannot carry.  The broker keeps sending up to its MTU; netifd sets DF on the outer
    packets (tunnel df, on by default), so the ISP's "fragmentation needed" lowers the path MTU the
    VPS's sit device uses towards this router.  Without a known link: the option, else 1480.
    """
    if link_mtu:
        derived = max(link_mtu - 20, 1280)
        return min(option_mtu, derived) if option_mtu else derived
    return option_mtu or DEFAULT_MTU


def router(opts, interface, peer, local, device, link_mtu=None, lan=None, link=None, link_device=None):
    """The home end.

    opts: options.Options; peer/local: addr.Address (peer resolved, local found by hostinfo);
    lan: LAN device names for the standalone router's forward policy (netifd's fw4 zones do that job
    on OpenWrt, so the netifd handler passes None);
    link: the logical interface the tunnel runs over, when found rather than configured;
    link_device: its device, where protocol 41 arrives.
    """
    link = opts.tunlink or link
    tun = _tunnel(device, local, peer, opts.ttl, opts.tos, tunnel_mtu(opts.mtu, link_mtu), link)
    routes = []
    if opts.defaultroute:
        if opts.sourcerouting:
            # the stock 6in4's only form; opt-in here because a router-originated packet finds no route
            sources = [str(opts.ip6addr.network)] + [str(p) for p in opts.ip6prefix]
            for src in sources:
                routes.append(_route("::", 0, opts.ip6gw, src, opts.metric))
        else:
            routes.append(_route("::", 0, opts.ip6gw, None, opts.metric))
    rules = [rule("sixbroker-" + interface + "-6in4", "input", "ACCEPT", "ipv4", PROTO_6IN4, str(peer),
                  iif=link_device)]
    sysctls = []
    if lan is not None:
        rules.extend(home_forward_rules(interface, device, lan))
        sysctls.append(["net.ipv6.conf.all.forwarding", "1"])
    return {
        "tunnel": tun,
        "addresses": [_addr(opts.ip6addr.address, opts.ip6addr.length)],
        "routes": routes,
        "prefixes": [{"prefix": str(p.address), "length": p.length} for p in opts.ip6prefix],
        "firewall": {"zone": opts.zone, "rules": rules},
        "sysctls": sysctls,
        "host_route": {"host": str(peer), "interface": link},
    }


def home_forward_rules(interface, device, lan):
    """The seed's home policy for the tunnel: replies, ICMPv6 and the LAN's own traffic pass; the rest
    coming in from the tunnel is rejected."""
    name = "sixbroker-" + interface
    rules = [
        rule(name + "-established", "forward", "ACCEPT", "ipv6", ct_state=["established", "related"]),
        rule(name + "-icmpv6", "forward", "ACCEPT", "ipv6", "icmpv6"),
    ]
    for dev in lan:
        rules.append(rule(name + "-lan-" + dev, "forward", "ACCEPT", "ipv6", iif=dev))
    rules.append(rule(name + "-reject", "forward", "REJECT", "ipv6", iif=device))
    return rules


def broker(name, device, local, remote, tunnel_net, routed, mtu=DEFAULT_MTU, ttl=64, uplink=None):
    """The VPS end of one tunnel.

    tunnel_net: addr.Network, the transfer /127 (the broker takes the first address, the router the
    second); routed: [addr.Network] routed to the router's tunnel address.
    """
    # each address formatted once (a cold apply at 10,000 tunnels builds every plan): a network's text is
    # its first address's and its length
    ours = str(tunnel_net.host(0))
    theirs = str(tunnel_net.host(1))
    remote = str(remote)
    routed = [(str(p.address), p.length) for p in routed]
    rules = [
        rule("sixbroker-" + name + "-6in4", "input", "ACCEPT", "ipv4", PROTO_6IN4, remote),
        rule("sixbroker-" + name + "-in", "forward", "ACCEPT", "ipv6", iif=device),
        rule("sixbroker-" + name + "-out", "forward", "ACCEPT", "ipv6", oif=device),
    ]
    sysctls = [["net.ipv6.conf.all.forwarding", "1"]]
    if uplink:
        # forwarding turns off accepting RAs unless accept_ra is 2, and switching it on drops the RA default
        # routes at once (kernel rt6_purge_dflt_routers) unless accept_ra is 2 already: set that first
        sysctls.insert(0, ["net.ipv6.conf." + uplink + ".accept_ra", "2"])
    return {
        "tunnel": _tunnel(device, local, remote, ttl, "inherit", mtu, None),
        "addresses": [_addr(ours, tunnel_net.length)],
        "routes": [_route(a, length, theirs) for a, length in routed],
        "prefixes": [],
        # the only inner sources this tunnel may forward (apply_nft drops and counts the rest)
        "firewall": {"zone": None, "rules": rules,
                     "sources": ["%s/%d" % (ours, tunnel_net.length)] + ["%s/%d" % r for r in routed]},
        "sysctls": sysctls,
        "host_route": None,
    }
