"""Facts about the router a plan needs, read the cheap way on OpenWrt: netifd over ubus, the kernel from /proc
and /sys.  No helper programs: the handler runs on every ifup of a slow router, often on MicroPython,
which can start none.
"""

import sys

from sixbroker import addr
from sixbroker.errors import SixbrokerError


# getaddrinfo's answers (<netdb.h>; the same numbers in glibc and musl, OpenWrt's libc).  glibc: an
# NXDOMAIN gives EAI_NONAME, a name without an A record EAI_NODATA.  musl (lookup_name.c name_from_dns)
# gives EAI_NONAME for both, so a name that has IPv6 addresses is asked about once more.  Both: a
# SERVFAIL or no answer is EAI_AGAIN, another refusal (REFUSED, FORMERR) EAI_FAIL.
EAI_NONAME = -2
EAI_AGAIN = -3
EAI_NODATA = -5
_RESOLVE_CODES = {EAI_NONAME: "PEER_NOT_FOUND", EAI_NODATA: "PEER_NO_IPV4"}


def resolve_ipv4(host):
    """A host name's first IPv4 address (the resolver's order).

    Raises PEER_NOT_FOUND (the name does not exist), PEER_NO_IPV4 (it has no IPv4 address) or
    PEER_RESOLVE_FAIL (the resolver gave no answer: it may come).
    """
    import socket  # here, not at the top: on CPython it pulls in enum and selectors, for host names only

    try:
        infos = socket.getaddrinfo(host, 0, socket.AF_INET)
    except OSError as e:
        code = _RESOLVE_CODES.get(_eai(e), "PEER_RESOLVE_FAIL")
        if code == "PEER_NOT_FOUND" and _has_ipv6(socket, host):
            code = "PEER_NO_IPV4"
        raise SixbrokerError(code, host + ": " + str(e), "peeraddr")
    for info in infos:
        sa = info[4]
        if isinstance(sa, tuple):       # CPython: ("192.0.2.1", 0)
            return addr.Address.parse(sa[0], 4)
        raw = socket.sockaddr(sa)       # MicroPython: raw struct sockaddr
        if raw[0] == socket.AF_INET:
            b = raw[1]
            return addr.Address(4, (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3])
    raise SixbrokerError("PEER_NO_IPV4", host, "peeraddr")


def _has_ipv6(socket, host):
    try:
        return bool(socket.getaddrinfo(host, 0, getattr(socket, "AF_INET6", 10)))
    except OSError:
        return False


def _eai(e):
    """The EAI_* number of a getaddrinfo failure: CPython's socket.gaierror carries it as errno,
    MicroPython's unix port only in its text, "[addrinfo error -2]"."""
    if e.args and isinstance(e.args[0], int):
        return e.args[0]
    text = str(e)
    i = text.find("error ")
    if i < 0:
        return None
    digits = text[i + 6:].rstrip("]")
    try:
        return int(digits)
    except ValueError:
        return None


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


def device_taken(name, bus, interface, sys_root="/sys/class/net/"):
    """Why `interface` cannot have a sit device called name, or None when it may.

    netifd deletes whatever holds the name before it creates the tunnel (system-linux.c
    system_add_ip_tunnel), so a device that is not a sit, or another interface's sit, must be refused;
    a sit no interface claims is a leftover of ours (netifd removes it at teardown, but not when it is
    killed).  netifd names the owner: l3_device in its interface dump (ubus.c netifd_dump_status).
    """
    try:
        with open(sys_root + name + "/type") as f:
            kind = int(f.read().strip())
    except (OSError, ValueError):
        return None
    if kind != ARPHRD_SIT:
        return name + " is a device that is not a sit tunnel"
    dump = bus.call("network.interface", "dump", {}) or {}
    for st in dump.get("interface") or []:
        other = st.get("interface")
        if other != interface and name in (st.get("l3_device"), st.get("device")):
            return name + " is the tunnel of interface " + str(other)
    return None


def _first_ipv4(status):
    for a in status.get("ipv4-address") or []:
        if a.get("address"):
            return addr.Address.parse(a["address"], 4)
    return None


def tunlink_facts(bus, tunlink):
    """(local IPv4, l3 device) of the logical interface the tunnel runs over, as netifd sees it."""
    try:
        st = bus.call("network.interface." + tunlink, "status", {})
    except SixbrokerError as e:
        # ubusd answers a lookup of an object nobody registered with NOT_FOUND (4): no such interface
        if getattr(e, "status", None) == 4:
            raise SixbrokerError("TUNLINK_UNKNOWN", tunlink, "tunlink")
        raise
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
