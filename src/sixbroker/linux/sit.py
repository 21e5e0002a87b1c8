"""How plans map onto kernel devices, as neutral link, address and route specs: one sit device per
tunnel (PerTunnelSit), or one shared NBMA sit device for all of them (SharedSit).

CPython only.  The reconciler (apply_kernel.py) works on these specs alone.

The shared mapping (../../../shared/DESIGN.md, "Scale facts"): one sit device with a `local` address and
no `remote` takes protocol 41 from any host; what it sends goes to the IPv4 address in the low 32 bits of
the route's next hop when that is IPv4-compatible (`::a.b.c.d`; the kernel's sit.c reads only that form
and ISATAP's, never `::ffff:a.b.c.d`).  So each tunnel is its routes alone: its routed prefixes and the
router's transfer address, each `via ::<remote>` with the tunnel's MTU on the route (locked: the kernel
forwards by an unlocked route MTU's device, not the route), and the server's transfer address as a
`local` route in the main table: delivered here as an address would be, and answered from (an echo
reply's source is the address asked).  Not an address on the device: the kernel keeps a device's
addresses in one list that each add walks, so 2000 addresses took 3.3 s and the next 2000 8.6 s in the
guest, where 2000 local routes took 0.8 s and the next 2000 0.8 s again.  Packets the server itself
starts into a tunnel (an ICMPv6 error) take their source from its other addresses.  The device's MTU is the most any route may ask for.  A packet's peer cannot be told from
the device it came in on, so the source checks move to the outer packet (nft_table.py).
"""

from sixbroker.core import addr
from sixbroker.linux.kernel import canon6

DEFAULT_METRIC = 1024       # what the kernel gives an IPv6 route added without one
TOS_INHERIT = 1             # iproute2's `tos inherit`


class LinkSpec:
    """A device a plan wants: its name, kind, kind-specific parameters and MTU."""

    def __init__(self, name, kind, params, mtu):
        self.name = name
        self.kind = kind
        self.params = params      # kind-specific, compared with what the dump shows
        self.mtu = mtu


class RouteSpec:
    """A route a plan wants, through one of its devices."""

    def __init__(self, device, dst, dst_len, gateway, src=None, src_len=0, metric=None, mtu=None, owner=None,
                 local=False):
        self.device = device
        self.local = local        # a `local` route: this host's own address without an address on a device
        self.mtu = mtu            # a locked route MTU, or None
        self.owner = owner or device    # the tunnel device name a failure is reported under
        self.dst = dst
        self.dst_len = dst_len
        self.gateway = gateway
        self.src = src
        self.src_len = src_len
        self.metric = DEFAULT_METRIC if metric is None else metric

    def key(self):
        # what makes an IPv6 route unique in a table
        return (self.dst, self.dst_len, self.src, self.src_len, self.metric)

    def text(self):
        # iproute2's words: `ip -6 route add` takes this text as it is (a local route needs its table
        # named, or iproute2 puts it in the local table)
        t = ("local " if self.local else "") + self.dst + "/" + str(self.dst_len)
        if self.src:
            t += " from " + self.src + "/" + str(self.src_len)
        if self.gateway:
            t += " via " + self.gateway
        t += " dev " + self.device + (" table main" if self.local else "") + " metric " + str(self.metric)
        return t + (" mtu lock %d" % self.mtu if self.mtu else "")


def _tos(value):
    if value in (None, "inherit"):
        return TOS_INHERIT
    return int(value, 16) if isinstance(value, str) else int(value)


class PerTunnelSit:
    """One sit device per tunnel: the device carries the tunnel's addresses and routes."""

    kind = "sit"
    shared = False

    def links(self, plans):
        out = []
        for p in plans:
            t = p["tunnel"]
            if t.get("mode", "sit") != "sit":
                raise ValueError("the kernel applier makes sit tunnels only, not %r" % t.get("mode"))
            params = {"local": t["local"], "remote": t["remote"], "ttl": int(t["ttl"]), "tos": _tos(t.get("tos")),
                      "link": t.get("link") or None, "pmtudisc": 1}
            out.append(LinkSpec(t["device"], "sit", params, int(t["mtu"])))
        return out

    def addresses(self, plans):
        return dict((p["tunnel"]["device"], [(canon6(a["address"]), int(a["length"])) for a in p["addresses"]])
                    for p in plans)

    def routes(self, plans):
        out = []
        for p in plans:
            dev = p["tunnel"]["device"]
            for r in p["routes"]:
                src, src_len = None, 0
                if r.get("source"):
                    net = addr.Interface.parse(r["source"], 6).network
                    src, src_len = str(net.address), net.length
                out.append(RouteSpec(dev, canon6(r["target"]), int(r["length"]),
                                     canon6(r["gateway"]) if r.get("gateway") else None, src, src_len,
                                     r.get("metric")))
        return out



SHARED_MTU = 65515      # sit's largest (IP6_MAX_MTU less the outer header): the routes carry each MTU
ANY4 = "0.0.0.0"


def compat4(ipv4):
    """The IPv4-compatible next hop ::a.b.c.d, in the kernel's spelling."""
    return canon6("::" + ipv4)


class SharedSit:
    """One NBMA sit device for every tunnel: each tunnel's routes via ::<remote> and the server's transfer
    address as a local route, no addresses.  Every address and route names its tunnel's device (`owner`), which is no kernel
    device here but the name the tunnel's failures and one-tunnel changes go by."""

    kind = "sit"
    shared = True

    def __init__(self, device):
        self.device = device

    def links(self, plans):
        if not plans:
            return []
        first = plans[0]["tunnel"]
        params = None
        for p in plans:
            t = p["tunnel"]
            if t.get("mode", "sit") != "sit":
                raise ValueError("the kernel applier makes sit tunnels only, not %r" % t.get("mode"))
            mine = {"local": t["local"], "remote": ANY4, "ttl": int(t["ttl"]), "tos": _tos(t.get("tos")),
                    "link": t.get("link") or None, "pmtudisc": 1}
            if params is None:
                params = mine
            elif mine != params:
                raise ValueError("one shared device: tunnel %s differs from %s in local, ttl, tos or link"
                                 % (t["device"], first["device"]))
        return [LinkSpec(self.device, "sit", params, SHARED_MTU)]

    def pairs(self, plans):
        """{tunnel device: (local, remote)}: a sit device of someone else's with one of these pairs takes
        that peer's packets before the shared device can (the kernel's exact match comes first)."""
        return dict((p["tunnel"]["device"], (p["tunnel"]["local"], p["tunnel"]["remote"])) for p in plans)

    def tunnel_addresses(self, plan):
        return []

    def addresses(self, plans):
        return {}

    def tunnel_routes(self, plan):
        t = plan["tunnel"]
        via = compat4(t["remote"])
        mtu = int(t["mtu"])
        out, hops = [], []
        for r in plan["routes"]:
            src, src_len = None, 0
            if r.get("source"):
                net = addr.Interface.parse(r["source"], 6).network
                src, src_len = str(net.address), net.length
            if r.get("gateway") and canon6(r["gateway"]) not in hops:
                hops.append(canon6(r["gateway"]))
            out.append(RouteSpec(self.device, canon6(r["target"]), int(r["length"]), via, src, src_len,
                                 r.get("metric"), mtu, t["device"]))
        # the router's own end of the transfer prefix, which the plan reaches as an on-link neighbour
        for hop in hops:
            out.append(RouteSpec(self.device, hop, 128, via, None, 0, None, mtu, t["device"]))
        for a in plan["addresses"]:
            out.append(RouteSpec(self.device, canon6(a["address"]), 128, None, owner=t["device"], local=True))
        return out

    def routes(self, plans):
        out = []
        for p in plans:
            out.extend(self.tunnel_routes(p))
        return out
