"""Facts `sixbroker server init` reads from the VPS when it is not told them: its public IPv4 address and
whether the uplink configures itself from router advertisements."""

from sixbroker import addr
from sixbroker.errors import SixbrokerError

def detect(uplink, netns):
    """{"public_ipv4": text, "public_ipv4_error": SixbrokerError, "uplink_ra": bool}, keys only for what
    could be read; the error is raised by whoever needs the address."""
    facts = {}
    try:
        ip = public_ipv4(uplink, netns)
        if ip:
            facts["public_ipv4"] = ip
    except SixbrokerError as e:
        facts["public_ipv4_error"] = e
    if uplink:
        ra = uplink_takes_ra(uplink, netns)
        if ra is not None:
            facts["uplink_ra"] = ra
    return facts


def public_ipv4(uplink, netns):
    """The first global IPv4 address of the uplink, or of the device the IPv4 default route leaves by.

    A private address means the VPS is behind 1:1 NAT: routers must dial the public address, which only
    the user knows, so that is an error that says what to give."""
    from sixbroker import apply_kernel
    try:
        k = apply_kernel._Kernel(netns, apply_kernel.Result())
    except SixbrokerError:
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
    public = [a for a in found if not (a.is_private or a.is_cgnat or a.is_loopback or a.is_link_local)]
    if public:
        return str(public[0])
    if found:
        raise SixbrokerError("PUBLIC_IPV4_UNKNOWN", "the uplink has only %s, behind NAT: give --public-ipv4 "
                             "(the address routers reach) and --local-ipv4 %s" % (found[0], found[0]))
    return None


def _sysctl(path, netns):
    from sixbroker import apply_kernel
    try:
        # /proc/sys/net shows the reading thread's namespace: read it from inside
        with apply_kernel._InNetns(netns):
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
