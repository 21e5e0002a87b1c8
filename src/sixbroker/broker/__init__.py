"""`sixbroker server`: the broker end (the VPS).

db.py the state (SQLite, or PostgreSQL through pg.py, shared by several PoPs: pops.py), alloc.py what is handed out, service.py the operations, reconcile.py database ->
plans -> kernel and firewall, routerconf.py the router's configuration, cli.py the command line,
hostfacts.py what `init` reads from the host, health.py and metrics.py what `list`/`show` and /metrics say of
each tunnel's traffic.
"""

import sixbroker.linux  # noqa: F401  (the appliers' codes: the broker runs them and raises some itself)
from sixbroker.core.errors import CODES

# this room's error codes and their words (core/errors.py holds the rest)
CODES.update({
    # the broker (`sixbroker server`)
    "BROKER_NOT_INITIALISED": "The broker has no prefix yet: run `sixbroker server init --prefix PREFIX` first",
    "BROKER_PREFIX_IN_USE": "The prefixes cannot change while tunnels use them: remove the tunnels first",
    "INVALID_PREFIX": "The broker prefix must be an IPv6 prefix of length /16 to /64",
    "INVALID_TRANSFER_PREFIX": "The transfer prefix must be an IPv6 prefix of length /64 to /126",
    "INVALID_RESERVED_PREFIX": "A reserved prefix must be an IPv6 prefix inside the broker prefix, /64 or shorter (/112 in a /64 broker prefix)",
    "NO_ROUTED_SPACE": "The transfer and reserved prefixes leave nothing of the broker prefix to route",
    "INVALID_PUBLIC_IPV4": "The public IPv4 address is not a unicast IPv4 address",
    "INVALID_LOCAL_IPV4": "The local IPv4 address is not a unicast IPv4 address",
    "PUBLIC_IPV4_UNKNOWN": "Could not find the server's public IPv4 address: give --public-ipv4",
    "INVALID_UPLINK": "The uplink is not a valid interface name",
    "INVALID_NETNS": "The network namespace name is not valid",
    "INVALID_REMOTE": "The remote address is not a unicast IPv4 address",
    "REMOTE_IS_SERVER": "The remote address is the server's own IPv4 address",
    "REMOTE_NOT_PUBLIC": "The remote address is not a public IPv4 address (it is private, shared CGNAT or special-purpose): give the address the router's packets come from, for a router behind NAT its NAT's public address (--allow-private for a router on a private network with this server)",
    "PUBLIC_IPV4_NOT_PUBLIC": "The public IPv4 address is not public (it is private, shared CGNAT or special-purpose): behind 1:1 NAT give the NAT's public address as --public-ipv4 and this host's own as --local-ipv4",
    "LOCAL_IPV4_GONE": "The server's IPv4 address for the tunnels is no longer on this host: every tunnel is down",
    "LOCAL_IPV4_NOT_ON_HOST": "The tunnels' local IPv4 address is not on this host: no tunnel can come up until it is",
    "LOCAL_IPV4_CHANGED": "The server's IPv4 address changed: the tunnels now use the new one; every router's peeraddr must change to it (better: a host name that follows this server)",
    "REMOTE_IN_USE": "Another tunnel already has this remote address (sit tunnels are keyed by their two ends)",
    "INVALID_PREFIX_LENGTH": "The routed prefix length must be a whole number from the broker prefix's length to 64 (65 to 112 in a /64 broker prefix)",
    "TUNNEL_EXISTS": "A tunnel with this name already exists",
    "TUNNEL_NOT_FOUND": "No tunnel with this name",
    "POOL_EXHAUSTED": "No free prefix of this size is left",
    "NDP_PROXY_NEEDS_UPLINK": "Proxy NDP answers on the uplink: give --uplink",
    "DB_ERROR": "The broker database cannot be opened or is damaged",
    "DB_READ_ONLY": "The broker database cannot be written (a read-only file system or file)",
    "INVALID_POP": "A PoP name is 1 to 32 letters, digits, '-', '_' or '.'",
    "POP_NOT_FOUND": "No point of presence of this name in the database: `sixbroker server init --pop NAME` on its VPS makes it",
    "TUNNEL_ALREADY_ON_POP": "The tunnel is on that point of presence already",
    "DB_TOO_OLD": "The PostgreSQL database has an older schema: run `sixbroker server apply` (a writer migrates it) first",
    "DB_UNAVAILABLE": "The broker's PostgreSQL database cannot be reached: the tunnels keep what was last applied; try again when it is back",
    "PG_NEEDS_EXTRA": "A postgresql:// database needs the optional dependency: pip install 'sixbroker[postgresql]'",
    "DB_TOO_NEW": "The broker database was written by a newer sixbroker: upgrade sixbroker",
    "TUNNELS_FAILED": "Some tunnels could not be applied (each is named with its cause); everything else is in line with the database: fix each cause, then run `sixbroker server apply`",
    "APPLY_FAILED": "The database is saved but the kernel or firewall is not in line with it: fix the cause, then run `sixbroker server apply`",
    "HOST_FIREWALL_DROPS": "Another nftables table on this host drops tunnel traffic, whatever sixbroker's own table accepts",
    # the update service (`sixbroker server serve`, `key`)
    "TUNNEL_NO_KEY": "The tunnel has no update key yet: run `sixbroker server key NAME --rotate`",
    "SERVE_NEEDS_EXTRA": "The update service needs the optional dependencies: pip install 'sixbroker[server]'",
    "SERVE_PLAIN_NOT_LOOPBACK": "Plain HTTP (--plain-http) is served only on a loopback address (behind a reverse proxy that does TLS)",
    "TLS_CERT_MISSING": "No TLS certificate: give --cert and --key, or run `sixbroker server init` to make a self-signed one",
    "TLS_CERT_FAIL": "The TLS certificate or key cannot be read or made",
    "POP_CERT_UNKNOWN": "That point of presence has not published its update service's certificate yet: the printed updater checks the broker against the router's system CAs, which a self-signed certificate fails",
    "TLS_CERT_REMADE": "The self-signed TLS certificate named the old public address and was made anew",
    "INVALID_LISTEN": "The listen address must be an IP address and port, e.g. 0.0.0.0:8443 or [::]:8443",
    "METRICS_LISTEN_PUBLIC": "Metrics are served on a loopback or private address only (they name every tunnel, unauthenticated): e.g. 127.0.0.1:9468, or the VPS's address on a VPN",
})
