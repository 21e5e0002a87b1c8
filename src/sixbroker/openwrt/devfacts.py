"""One network device as the kernel shows it in /sys and /proc: counters, flags, addresses, routes.

Read without starting a program (MicroPython can start none, and `ip` is a process):
/sys/class/net/<dev>/{ifindex,flags,operstate,mtu,statistics/*}, /proc/net/if_inet6 and
/proc/net/ipv6_route.  Both roots are parameters, so the same code reads a network namespace's view in
a test and the guest's real sit device in the end-to-end test.
"""

from sixbroker.core import addr

SYS_NET = "/sys/class/net/"
PROC_NET = "/proc/net/"
STATISTICS = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "rx_errors", "tx_errors",
              "rx_dropped", "tx_dropped")

# include/uapi/linux/if.h and ipv6_route.h
IFF_UP = 0x1
RTF_GATEWAY = 0x2
RTF_CACHE = 0x01000000
RTF_LOCAL = 0x80000000
# the scope column of /proc/net/if_inet6 (net/ipv6/addrconf.c, ipv6_addr_scope)
SCOPES = {0x00: "global", 0x10: "host", 0x20: "link", 0x40: "site"}


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, ValueError):
        return None


def _int(text, base=10):
    try:
        return int(text, base)
    except (TypeError, ValueError):
        return None


def _hex6(text):
    return addr.format_ipv6(int(text, 16))


def device_addresses(device, proc_root=PROC_NET):
    """The device's IPv6 addresses from /proc/net/if_inet6: [{address, length, scope}]."""
    out = []
    text = _read(proc_root + "if_inet6") or ""
    for line in text.split("\n"):
        cols = line.split()
        if len(cols) != 6 or cols[5] != device:
            continue
        scope = int(cols[3], 16)
        out.append({"address": _hex6(cols[0]), "length": int(cols[2], 16),
                    "scope": SCOPES.get(scope & 0xF0, "%02x" % scope)})
    return out


def device_routes(device, proc_root=PROC_NET):
    """The device's IPv6 unicast routes from /proc/net/ipv6_route (every table; local ones, multicast and
    cached ones left out): [{target, gateway, metric, source}], prefixes as "addr/len"."""
    out = []
    text = _read(proc_root + "ipv6_route") or ""
    for line in text.split("\n"):
        cols = line.split()
        if len(cols) != 10 or cols[9] != device:
            continue
        flags = int(cols[8], 16)
        if flags & (RTF_LOCAL | RTF_CACHE) or cols[0].startswith("ff"):
            continue
        source = None
        if int(cols[3], 16):
            source = _hex6(cols[2]) + "/" + str(int(cols[3], 16))
        out.append({"target": _hex6(cols[0]) + "/" + str(int(cols[1], 16)),
                    "gateway": _hex6(cols[4]) if flags & RTF_GATEWAY else None,
                    "metric": int(cols[5], 16), "source": source})
    return out


def device_facts(device, sys_root=SYS_NET, proc_root=PROC_NET):
    """What the kernel says about one network device, or None when there is no such device.

    {device, ifindex, up (IFF_UP, set by `ip link set up`), operstate, mtu, statistics{rx_bytes, ...},
     addresses, routes}.  A sit device is "unknown" in operstate while it works: it has no carrier.
    """
    base = sys_root + device + "/"
    ifindex = _int(_read(base + "ifindex"))
    if ifindex is None:
        return None
    flags = _int(_read(base + "flags"), 16) or 0
    stats = {}
    for name in STATISTICS:
        stats[name] = _int(_read(base + "statistics/" + name))
    return {
        "device": device,
        "ifindex": ifindex,
        "up": bool(flags & IFF_UP),
        "operstate": _read(base + "operstate"),
        "mtu": _int(_read(base + "mtu")),
        "statistics": stats,
        "addresses": device_addresses(device, proc_root),
        "routes": device_routes(device, proc_root),
    }
