"""Facts about the router a plan needs, read the cheap way on OpenWrt: netifd over ubus, the kernel from /proc
and /sys.  No helper programs: the handler runs on every ifup of a slow router, often on MicroPython,
which can start none.
"""

import sys

from sixbroker import addr
from sixbroker.errors import SixbrokerError


def resolve_ipv4(host):
    """A host name's first IPv4 address (the resolver's order), or PEER_RESOLVE_FAIL."""
    import socket  # here, not at the top: on CPython it pulls in enum and selectors, for host names only

    try:
        infos = socket.getaddrinfo(host, 0, socket.AF_INET)
    except OSError as e:
        raise SixbrokerError("PEER_RESOLVE_FAIL", host + ": " + str(e), "peeraddr")
    for info in infos:
        sa = info[4]
        if isinstance(sa, tuple):       # CPython: ("192.0.2.1", 0)
            return addr.Address.parse(sa[0], 4)
        raw = socket.sockaddr(sa)       # MicroPython: raw struct sockaddr
        if raw[0] == socket.AF_INET:
            b = raw[1]
            return addr.Address(4, (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3])
    raise SixbrokerError("PEER_RESOLVE_FAIL", host + ": no IPv4 address", "peeraddr")


def route_device(peer, route_file="/proc/net/route"):
    """The device of the kernel's main-table IPv4 route to peer (longest prefix, then lowest metric)."""
    best = None
    try:
        f = open(route_file)
    except OSError:
        return None
    with f:
        f.readline()
        for line in f:
            cols = line.split()
            if len(cols) < 8:
                continue
            # /proc/net/route prints the network-order word as a host-order integer (%08X)
            dest = _be32(cols[1])
            mask = _be32(cols[7])
            flags = int(cols[3], 16)
            if not flags & 1 or (peer.value & mask) != dest:   # RTF_UP
                continue
            key = (_bits(mask), -int(cols[6]))
            if best is None or key > best[0]:
                best = (key, cols[0])
    return best[1] if best else None


def _be32(h):
    v = int(h, 16)
    if sys.byteorder == "big":      # many MIPS routers
        return v
    return ((v & 0xFF) << 24) | ((v >> 8 & 0xFF) << 16) | ((v >> 16 & 0xFF) << 8) | (v >> 24 & 0xFF)


def _bits(mask):
    n = 0
    while mask & 0x80000000:
        n += 1
        mask = (mask << 1) & 0xFFFFFFFF
    return n


def device_mtu(device, sys_root="/sys/class/net/"):
    try:
        with open(sys_root + device + "/mtu") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


ARPHRD_SIT = 776


def device_in_use(name, sys_root="/sys/class/net/"):
    """True when a device of that name exists and is not a sit tunnel (ours from an earlier setup is)."""
    try:
        with open(sys_root + name + "/type") as f:
            return int(f.read().strip()) != ARPHRD_SIT
    except (OSError, ValueError):
        return False


def _first_ipv4(status):
    for a in status.get("ipv4-address") or []:
        if a.get("address"):
            return addr.Address.parse(a["address"], 4)
    return None


def tunlink_facts(bus, tunlink):
    """(local IPv4, l3 device) of the logical interface the tunnel runs over, as netifd sees it."""
    try:
        st = bus.call("network.interface." + tunlink, "status", {})
    except SixbrokerError:
        raise SixbrokerError("TUNLINK_NOT_UP", tunlink + " is not a known interface", "tunlink")
    if not st or not st.get("up"):
        raise SixbrokerError("TUNLINK_NOT_UP", tunlink, "tunlink")
    local = _first_ipv4(st)
    if local is None:
        raise SixbrokerError("NO_LOCAL_ADDRESS", tunlink + " has no IPv4 address", "tunlink")
    return local, st.get("l3_device") or st.get("device")


def route_facts(bus, peer):
    """(local IPv4, device, logical interface) of the route to peer: the kernel names the device, netifd
    the interface and its address (no getsockname on MicroPython, and netifd's answer is the one the host
    dependency must name anyway)."""
    dev = route_device(peer)
    if dev is None:
        raise SixbrokerError("NO_LOCAL_ADDRESS", "no IPv4 route to " + str(peer))
    dump = bus.call("network.interface", "dump", {}) or {}
    for st in dump.get("interface") or []:
        if st.get("up") and st.get("l3_device") == dev:
            local = _first_ipv4(st)
            if local is not None:
                return local, dev, st.get("interface")
    raise SixbrokerError("NO_LOCAL_ADDRESS", "no interface with an IPv4 address on " + dev)
