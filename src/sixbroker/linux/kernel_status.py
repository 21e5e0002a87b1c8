"""What a scope owns in the kernel and what a tunnel runs over, read only: status and IPv4 facts.

CPython only.  Nothing here changes the kernel: `status` is what `sixbroker router status` and the tests
show of a scope's devices, and `ipv4_facts` is what a standalone router plans a tunnel from.
"""

from sixbroker.linux.apply_kernel import DEFAULT_SCOPE, LAN_METRIC, RTPROT, foreign, owned, tag
from sixbroker.linux.kernel import Kernel
from sixbroker.linux.sit import RouteSpec
from sixbroker.core.errors import SixbrokerError


def ipv4_facts(netns=None, device=None, peer=None):
    """(local IPv4 or None, MTU or None) for a tunnel: of `device` (its first IPv4 address) when given,
    else of the kernel's route to `peer` (its preferred source and output device)."""
    k = Kernel(netns)
    try:
        if device is not None:
            li = k.link(device)
            if li is None:
                raise SixbrokerError("TUNLINK_NOT_UP", device + " does not exist", "tunlink")
            for index, a in k.addrs4():
                if index == li.index:
                    return a, li.mtu
            return None, li.mtu
        try:
            src, oif = k.route_get4(peer)
        except OSError as e:
            raise SixbrokerError("NO_LOCAL_ADDRESS", "no IPv4 route to %s (%s)" % (peer, e.strerror))
        mtu = None
        for li in k.links():
            if li.index == oif:
                mtu = li.mtu
        return src, mtu
    finally:
        k.close()



def status(netns=None, scope=DEFAULT_SCOPE, prefix=None, lan=False):
    """What this scope owns, as plain data: devices with addresses, routes and counters; LAN addresses."""
    mark = tag(scope)
    k = Kernel(netns)
    try:
        links = k.links(stats=True)
        addrs = k.addrs6()
        routes = k.routes6(RTPROT)
    finally:
        k.close()
    name_of = dict((li.index, li.name) for li in links)
    devices = []
    for li in sorted(links, key=lambda x: x.name):
        if not owned(li, mark, prefix):
            continue
        st = li.stats or {}
        devices.append({
            "device": li.name, "kind": li.kind, "up": li.up, "mtu": li.mtu,
            "local": li.params.get("local"), "remote": li.params.get("remote"), "ttl": li.params.get("ttl"),
            "addresses": sorted("%s/%d" % (a.address, a.length) for a in addrs
                                if a.index == li.index and not a.kernel_made),
            "routes": sorted(RouteSpec(li.name, r.dst, r.dst_len, r.gateway, r.src, r.src_len, r.metric).text()
                             for r in routes if r.oif == li.index and r.proto == RTPROT),
            "counters": dict((key, st.get(key, 0)) for key in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes",
                                                               "rx_errors", "tx_errors", "tx_dropped")),
        })
    out = {"scope": scope, "devices": devices}
    if lan:
        out["lan_addresses"] = sorted("%s/%d dev %s" % (a.address, a.length, name_of.get(a.index, a.index))
                                      for a in addrs if a.metric == LAN_METRIC)
    out["foreign_tunnels"] = ["%s -> %s" % pair for pair in foreign(links, mark)]
    return out
