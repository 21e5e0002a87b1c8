"""Facts about the router a plan needs, read the cheap way on OpenWrt: netifd over ubus, the kernel from /proc
and /sys.  No helper programs: the handler runs on every ifup of a slow router, often on MicroPython,
which can start none.
"""

import sys

from sixbroker.core import addr
from sixbroker.core.errors import SixbrokerError


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
