"""How plans map onto kernel devices: one sit device per tunnel, as neutral link, address and route specs.

CPython only.  The reconciler (apply_kernel.py) works on these specs alone, so a shared NBMA device (one
sit with no remote, routes via ::a.b.c.d) can be added as a second mapping beside PerTunnelSit without
touching the rest.
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

    def __init__(self, device, dst, dst_len, gateway, src=None, src_len=0, metric=None):
        self.device = device
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
        t = (self.dst + "/" + str(self.dst_len))
        if self.src:
            t += " from " + self.src + "/" + str(self.src_len)
        if self.gateway:
            t += " via " + self.gateway
        return t + " dev " + self.device + " metric " + str(self.metric)


def _tos(value):
    if value in (None, "inherit"):
        return TOS_INHERIT
    return int(value, 16) if isinstance(value, str) else int(value)


class PerTunnelSit:
    """One sit device per tunnel: the device carries the tunnel's addresses and routes."""

    kind = "sit"

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

