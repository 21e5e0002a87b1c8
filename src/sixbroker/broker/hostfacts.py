"""Facts `sixbroker server` reads from the VPS: its public IPv4 address, which device is its uplink and
whether that configures itself from router advertisements (for `init`, when not told), and whether the
tunnels' local IPv4 address is still on the host (for `apply`)."""

from sixbroker.core import addr
from sixbroker.core.errors import SixbrokerError
from sixbroker.broker.reach import is_public

def detect(uplink, netns):
    """{"public_ipv4": text, "public_ipv4_error": SixbrokerError, "uplink": name, "uplink_ra": bool}, keys
    only for what could be read; the error is raised by whoever needs the address.

    Without an uplink, "uplink" is the device of the IPv6 default route (where RAs would come from): a VPS
    whose default route comes from RAs loses it once forwarding is on unless that device gets accept_ra=2,
    whether or not the user named it."""
    facts = {}
    try:
        ip = public_ipv4(uplink, netns)
        if ip:
            facts["public_ipv4"] = ip
    except SixbrokerError as e:
        facts["public_ipv4_error"] = e
    cut = False
    if not uplink:
        uplink, learned = default_route_device6(netns)
        if not uplink:
            # no IPv6 default route at all: the IPv4 uplink is where RAs would come from
            uplink, learned = default_route_device4(netns), False
            cut = True
        if uplink:
            facts["uplink"] = uplink
    if uplink:
        ra = uplink_takes_ra(uplink, netns)
        if ra is False and (cut or learned) and _sysctl("/proc/sys/net/ipv6/conf/" + uplink + "/accept_ra",
                                                        netns) == 1:
            # forwarding on already with accept_ra 1 (what an older init left): the kernel ignores RAs and
            # dropped their default route when forwarding went on, or holds one that will lapse
            ra = True
        if ra is not None:
            facts["uplink_ra"] = ra
    return facts


def _kernel(netns):
    from sixbroker.linux.kernel import Kernel
    try:
        return Kernel(netns)
    except SixbrokerError:
        return None


RTPROT_RA = 9       # a route the kernel learned from a router advertisement (`proto ra`)


def default_route_device6(netns):
    """(name, learned from an RA) of the device the main table's IPv6 default route leaves by (an RA
    route first: the one forwarding would stop renewing), or (None, False)."""
    k = _kernel(netns)
    if k is None:
        return None, False
    try:
        defaults = [r for r in k.routes6() if r.dst_len == 0 and r.src_len == 0 and r.oif]
        if not defaults:
            return None, False
        defaults.sort(key=lambda r: (r.proto != RTPROT_RA, r.metric))
        for li in k.links():
            if li.index == defaults[0].oif:
                return li.name, defaults[0].proto == RTPROT_RA
    except SixbrokerError:
        return None, False
    finally:
        k.close()
    return None, False


def default_route_device4(netns):
    """The name of the device the main table's IPv4 default route leaves by (the tunnels' outer packets
    come and go there), or None."""
    k = _kernel(netns)
    if k is None:
        return None
    try:
        index = k.default_route_device4()
        # that device alone: a dump of every link grows with the tunnels
        li = k.link(index=index) if index is not None else None
        return li.name if li is not None else None
    except SixbrokerError:
        return None
    finally:
        k.close()


def ipv4_on_host(address, netns):
    """True when IPv4 address is one of the host's (in netns), False when not, None when the host cannot
    be read (the apply that follows says why).  One address dump: `apply` asks every time, even when its
    record proves the rest unchanged, because the record cannot see the uplink's addresses."""
    k = _kernel(netns)
    if k is None:
        return None
    try:
        return any(a == address for _, a in k.addrs4())
    except SixbrokerError:
        return None
    finally:
        k.close()


def public_ipv4(uplink, netns):
    """The first global IPv4 address of the uplink, or of the device the IPv4 default route leaves by.

    A private address means the VPS is behind 1:1 NAT: routers must dial the public address, which only
    the user knows, so that is an error that says what to give."""
    k = _kernel(netns)
    if k is None:
        # a host we cannot read is a host we ask the user about; the error below says what to give
        return None
    try:
        if uplink:
            li = k.link(uplink)
            index = li.index if li is not None else None
        else:
            index = k.default_route_device4()
        if index is None:
            return None
        addrs = [a for i, a in k.addrs4(universe=True) if i == index]
    except SixbrokerError:
        return None
    finally:
        k.close()
    found = []
    for text in addrs:
        try:
            found.append(addr.Address.parse(text, 4))
        except addr.AddressError:
            continue
    public = [a for a in found if is_public(a)]
    if public:
        return str(public[0])
    if found:
        raise SixbrokerError("PUBLIC_IPV4_UNKNOWN", "the uplink has only %s, behind NAT: give --public-ipv4 "
                             "(the address routers reach) and --local-ipv4 %s" % (found[0], found[0]))
    return None


def _sysctl(path, netns):
    from sixbroker.linux.netns import InNetns
    try:
        # /proc/sys/net shows the reading thread's namespace: read it from inside
        with InNetns(netns):
            with open(path) as f:
                out = f.read()
        return int(out.strip())
    except (OSError, ValueError, SixbrokerError):
        return None


def uplink_takes_ra(uplink, netns):
    """True when the kernel configures the uplink from RAs now and would stop once forwarding is on.

    accept_ra 2: it does, whatever forwarding says.  accept_ra 1 with forwarding off: it does until we
    turn forwarding on.  accept_ra 1 with forwarding already on, or 0: it does not (a static address, or
    a user-space daemon such as systemd-networkd handling RAs itself), so we leave it alone."""
    base = "/proc/sys/net/ipv6/conf/" + uplink + "/"
    ra = _sysctl(base + "accept_ra", netns)
    if ra is None:
        return None
    if ra == 2:
        return True
    if ra == 1:
        fwd = _sysctl(base + "forwarding", netns)
        return fwd == 0
    return False
