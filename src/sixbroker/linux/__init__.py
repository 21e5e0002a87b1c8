"""The Linux appliers: plans into the kernel (netlink) and nftables.  CPython only."""

from sixbroker.core.errors import CODES

# this room's error codes and their words (core/errors.py holds the rest)
CODES.update({
    # the kernel and nftables appliers, the standalone router (`sixbroker router`)
    "DEVICE_NOT_OURS": "A device with the tunnel's name exists and sixbroker did not make it: it is left alone",
    "DUPLICATE_DEVICE": "Two tunnels use the same device name",
    "DUPLICATE_ROUTE": "Two tunnels want the same route (destination, source and metric)",
    "SIT_PAIR_IN_USE": "Another sit tunnel already runs between these two IPv4 addresses",
    "ROUTE_NOT_OURS": "A route sixbroker did not make has the same destination, source and metric: set a metric",
    "LAN_DEVICE_MISSING": "A LAN device (lan) does not exist",
    "NETNS_NOT_FOUND": "The network namespace does not exist",
    "NOT_PERMITTED": "Not permitted: run as root (CAP_NET_ADMIN)",
    "NETLINK_FAIL": "The kernel refused a network change",
    "SYSCTL_FAIL": "Could not set a kernel setting (sysctl)",
    "NFT_MISSING": "The nft program (nftables) is not installed",
    "NFT_FAIL": "nftables refused the firewall table",
    # proxy NDP (apply_ndp.py)
    "NDP_UPLINK_MISSING": "Proxy NDP is on but the uplink device does not exist",
    "NDPPD_MISSING": "ndppd is not installed (apt-get install ndppd): it answers neighbour solicitations for the routed prefixes",
    "NDPPD_FAIL": "ndppd did not start: see its message",
})
