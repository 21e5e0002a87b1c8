"""Which IPv4 and IPv6 addresses are public: the IANA special-purpose registries, for the broker.

The broker refuses a router address or its own public address that the internet cannot reach.  The
router never asks, so the table stays out of the router's sixbroker.core.addr.
"""

from sixbroker.core.addr import Network

# The IANA special-purpose address registries with their "Globally Reachable" column
# (iana-ipv4-special-registry, iana-ipv6-special-registry, as of 2025).  The longest matching
# block decides; an address in no block is globally reachable.  Where the registry says N/A
# (deprecated 6to4 relay anycast, Teredo, 6to4) it is taken as not globally reachable: none of
# them is a place to put a tunnel end or a routed prefix.

_GLOBAL_TABLE = {
    4: (
        ("0.0.0.0/8", False),  # "this network", RFC 791
        ("10.0.0.0/8", False),  # private use, RFC 1918
        ("100.64.0.0/10", False),  # shared address space (CGNAT), RFC 6598
        ("127.0.0.0/8", False),  # loopback, RFC 1122
        ("169.254.0.0/16", False),  # link local, RFC 3927
        ("172.16.0.0/12", False),  # private use, RFC 1918
        ("192.0.0.0/24", False),  # IETF protocol assignments, RFC 6890
        ("192.0.0.9/32", True),  # PCP anycast, RFC 7723
        ("192.0.0.10/32", True),  # TURN anycast, RFC 8155
        ("192.0.2.0/24", False),  # documentation TEST-NET-1, RFC 5737
        ("192.31.196.0/24", True),  # AS112-v4, RFC 7535
        ("192.52.193.0/24", True),  # AMT, RFC 7450
        ("192.88.99.0/24", False),  # deprecated 6to4 relay anycast, RFC 7526 (N/A)
        ("192.168.0.0/16", False),  # private use, RFC 1918
        ("192.175.48.0/24", True),  # AS112 direct delegation, RFC 7534
        ("198.18.0.0/15", False),  # benchmarking, RFC 2544
        ("198.51.100.0/24", False),  # documentation TEST-NET-2, RFC 5737
        ("203.0.113.0/24", False),  # documentation TEST-NET-3, RFC 5737
        ("240.0.0.0/4", False),  # reserved, RFC 1112
        ("255.255.255.255/32", False),  # limited broadcast, RFC 919
    ),
    6: (
        ("::/128", False),  # unspecified, RFC 4291
        ("::1/128", False),  # loopback, RFC 4291
        ("::ffff:0:0/96", False),  # IPv4-mapped, RFC 4291
        ("64:ff9b::/96", True),  # IPv4-IPv6 translation, RFC 6052
        ("64:ff9b:1::/48", False),  # local-use IPv4-IPv6 translation, RFC 8215
        ("100::/64", False),  # discard-only, RFC 6666
        ("100:0:0:1::/64", False),  # dummy prefix, RFC 9780
        ("2001::/23", False),  # IETF protocol assignments, RFC 2928
        ("2001::/32", False),  # Teredo, RFC 4380 (N/A)
        ("2001:1::1/128", True),  # PCP anycast, RFC 7723
        ("2001:1::2/128", True),  # TURN anycast, RFC 8155
        ("2001:1::3/128", True),  # DNS-SD SRP anycast, RFC 9665
        ("2001:2::/48", False),  # benchmarking, RFC 5180
        ("2001:3::/32", True),  # AMT, RFC 7450
        ("2001:4:112::/48", True),  # AS112-v6, RFC 7535
        ("2001:10::/28", False),  # deprecated ORCHID, RFC 4843
        ("2001:20::/28", True),  # ORCHIDv2, RFC 7343
        ("2001:30::/28", True),  # drone remote ID entity tags, RFC 9374
        ("2001:db8::/32", False),  # documentation, RFC 3849
        ("2002::/16", False),  # 6to4, RFC 3056 (N/A)
        ("2620:4f:8000::/48", True),  # AS112 direct delegation, RFC 7534
        ("3fff::/20", False),  # documentation, RFC 9637
        ("5f00::/16", False),  # SRv6 SIDs, RFC 9602
        ("fc00::/7", False),  # unique local, RFC 4193
        ("fe80::/10", False),  # link-local unicast, RFC 4291
    ),
}

_DOCUMENTATION = {
    4: ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"),  # RFC 5737
    6: ("2001:db8::/32", "3fff::/20"),  # RFC 3849, RFC 9637
}

_GLOBAL = {v: [(Network.parse(t), reachable) for t, reachable in rows] for v, rows in _GLOBAL_TABLE.items()}
_DOC = {v: [Network.parse(t) for t in texts] for v, texts in _DOCUMENTATION.items()}


def is_global(a):
    """Globally reachable per the registries (longest block wins).  Like CPython's ipaddress, multicast
    is not special here: ask a.is_unicast as well."""
    best, answer = -1, True
    for net, reachable in _GLOBAL[a.version]:
        if net.length > best and net.contains(a):
            best, answer = net.length, reachable
    return answer


def is_documentation(a):
    return any(net.contains(a) for net in _DOC[a.version])


def is_public(a):
    """Reachable across the internet: IANA's globally reachable IPv4 space, plus the three documentation
    /24s (192.0.2.0, 198.51.100.0, 203.0.113.0), which the examples and tests use as public addresses and
    which no real router has.  Not public: private (RFC 1918), shared CGNAT 100.64/10, 0/8, 192.0.0/24,
    benchmarking 198.18/15, 6to4 relay anycast, and everything already not unicast."""
    return a.is_unicast and (is_global(a) or is_documentation(a))
