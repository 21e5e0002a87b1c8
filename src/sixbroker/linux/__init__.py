"""The Linux appliers: plans into the kernel (netlink) and nftables.  CPython only."""
