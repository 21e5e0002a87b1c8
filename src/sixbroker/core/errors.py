"""Stable error codes.

A code is part of the interface: netifd stores it as the interface's error, LuCI gives it words
(`network.registerErrorCode`), scripts match on it.  Codes never change meaning; new ones are added.
The words here are the ones LuCI shows, so a test holds the LuCI app to this table.
"""

# code -> the one-line text a user sees (LuCI, the log, the CLI).
CODES = {
    # router protocol options
    "MISSING_PEER_ADDRESS": "No peer address (peeraddr): set the IPv4 address or host name of your broker",
    "INVALID_PEER_ADDRESS": "The peer address (peeraddr) is neither an IPv4 address nor a valid host name",
    "PEER_NOT_IPV4": "The peer address (peeraddr) must be IPv4: 6in4 runs over IPv4",
    "PEER_NOT_UNICAST": "The peer address (peeraddr) is not a unicast IPv4 address",
    "PEER_IS_LOCAL": "The peer address (peeraddr) is the same as the local address (ipaddr)",
    "INVALID_IPADDR": "The local address (ipaddr) is not an IPv4 address",
    "IPADDR_NOT_UNICAST": "The local address (ipaddr) is not a unicast IPv4 address",
    "MISSING_IP6ADDR": "No tunnel address (ip6addr): set this end's IPv6 address with its length, e.g. 2001:db8::b/127",
    "INVALID_IP6ADDR": "The tunnel address (ip6addr) is not an IPv6 address",
    "IP6ADDR_NEEDS_LENGTH": "The tunnel address (ip6addr) needs a prefix length, e.g. /127 or /64",
    "IP6ADDR_BAD_LENGTH": "The tunnel address (ip6addr) length must be between 64 and 128",
    "IP6ADDR_NOT_UNICAST": "The tunnel address (ip6addr) is not a global or unique-local unicast address",
    "IP6ADDR_IS_ANYCAST": "The tunnel address (ip6addr) is the subnet-router anycast address of its prefix",
    "INVALID_IP6GW": "The tunnel gateway (ip6gw) is not an IPv6 address",
    "IP6GW_OUTSIDE_TUNNEL": "The tunnel gateway (ip6gw) is not inside the tunnel prefix of ip6addr",
    "IP6GW_IS_LOCAL": "The tunnel gateway (ip6gw) is this end's own address",
    "IP6GW_REQUIRED": "The tunnel gateway cannot be derived from ip6addr: set ip6gw",
    "INVALID_IP6PREFIX": "A routed prefix (ip6prefix) is not an IPv6 prefix",
    "IP6PREFIX_NEEDS_LENGTH": "A routed prefix (ip6prefix) needs a length, e.g. 2001:db8:1::/64",
    "IP6PREFIX_BAD_LENGTH": "A routed prefix (ip6prefix) must be between /1 and /64 to be handed to the LAN",
    "IP6PREFIX_HOST_BITS": "A routed prefix (ip6prefix) has bits set after its length",
    "IP6PREFIX_NOT_UNICAST": "A routed prefix (ip6prefix) is not a global or unique-local unicast prefix",
    "PREFIX_OVERLAPS_TUNNEL": "A routed prefix (ip6prefix) overlaps the tunnel's own prefix (ip6addr)",
    "PREFIXES_OVERLAP": "Two routed prefixes (ip6prefix) overlap",
    "INVALID_TUNLINK": "The underlying interface (tunlink) is not a valid interface name",
    "INVALID_MTU": "The MTU is not a whole number",
    "MTU_OUT_OF_RANGE": "The MTU must be between 1280 and 65515",
    "INVALID_TTL": "The TTL must be a whole number between 1 and 255",
    "INVALID_TOS": "The TOS must be 'inherit' or a hexadecimal value 00 to ff",
    "INVALID_SOURCEROUTING": "sourcerouting must be 0 or 1",
    "INVALID_DEFAULTROUTE": "defaultroute must be 0 or 1",
    "INVALID_METRIC": "The metric must be a whole number between 0 and 2147483647",
    "INVALID_ZONE": "The firewall zone name is not valid",
    "INVALID_DEVICE": "The tunnel device name must be 1 to 15 letters, digits, '-' or '_'",
    "INVALID_TUNNELID": "The tunnel name (tunnelid) must be 1 to 64 letters, digits, '_', '-' or '.'",
    "INVALID_USERNAME": "The update user name (username) must be 1 to 64 visible ASCII characters without ':'",
    "INVALID_UPDATEKEY": "The update key (updatekey, password) must be 1 to 128 visible ASCII characters",
    "INVALID_UPDATEURL": "The update URL (updateurl) must be an http:// or https:// URL naming a host, without spaces or '#'",
    "INVALID_UPDATECERT": "The broker's certificate (updatecert) must be an absolute file name",
    "INVALID_UPDATEINTERVAL": "The update interval (updateinterval) must be 0 or a whole number of seconds from 60 to 86400",
    "UPDATE_NEEDS_TUNNELID": "An update key is set but no tunnel name (tunnelid): the broker needs both",
    "UNKNOWN_OPTION": "Unknown option",
    "OPTION_NOT_LIST": "This option takes a list",
    # the same two mistakes under codes of our own: LuCI's network.js predefines the old codes and keeps
    # its own words for them (registerErrorCode refuses a known code), so LuCI shows these words only
    # under these codes (see LUCI_PREDEFINED)
    "PEER_ADDRESS_MISSING": "The broker address (peeraddr) is not set: give the IPv4 address or host name of your broker",
    "PEER_NOT_RESOLVED": "The broker's host name (peeraddr) has no IPv4 address in DNS",
    # setup time (the environment, not the configuration)
    "PEER_RESOLVE_FAIL": "The peer's host name (peeraddr) did not resolve to an IPv4 address",
    "NO_LOCAL_ADDRESS": "No local IPv4 address: the underlying interface has none, or there is no route to the peer",
    "TUNLINK_NOT_UP": "The underlying interface (tunlink) is not up",
    "DEVICE_IN_USE": "The tunnel device name (device) is taken by a device that is not a sit tunnel, or by another interface's tunnel",
    "UBUS_FAIL": "Could not talk to netifd over ubus",
    "PEER_NOT_FOUND": "The peer's host name (peeraddr) does not exist (NXDOMAIN): check its spelling",
    "PEER_NO_IPV4": "The peer's host name (peeraddr) has no IPv4 address (no A record): 6in4 needs one",
    "TUNLINK_UNKNOWN": "The underlying interface (tunlink) names no interface netifd knows",
    "UPDATE_REFUSED": "netifd refused the tunnel (it could not create or claim the sit device): see the system log",
    "INTERNAL_ERROR": "Internal error (a bug in sixbroker): see the system log",
    # UCI files (/etc/config/*)
    "UCI_PARSE": "A UCI configuration file could not be read",
    "UCI_INVALID": "A UCI name or value is not valid",
    # the broker (`sixbroker server`)
    "USAGE": "Usage error",
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
    "INVALID_NAME": "The tunnel name must be 1 to 11 letters, digits or '_', starting with a letter (it names the router's interface and the sit device sbs-NAME)",
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
    "NDP_UPLINK_MISSING": "Proxy NDP is on but the uplink device does not exist",
    "NDPPD_MISSING": "ndppd is not installed (apt-get install ndppd): it answers neighbour solicitations for the routed prefixes",
    "NDPPD_FAIL": "ndppd did not start: see its message",
    "DB_ERROR": "The broker database cannot be opened or is damaged",
    "DB_READ_ONLY": "The broker database cannot be written (a read-only file system or file)",
    "DB_TOO_NEW": "The broker database was written by a newer sixbroker: upgrade sixbroker",
    "TUNNELS_FAILED": "Some tunnels could not be applied (each is named with its cause); everything else is in line with the database: fix each cause, then run `sixbroker server apply`",
    "APPLY_FAILED": "The database is saved but the kernel or firewall is not in line with it: fix the cause, then run `sixbroker server apply`",
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
    "HOST_FIREWALL_DROPS": "Another nftables table on this host drops tunnel traffic, whatever sixbroker's own table accepts",
    # the one-paste join line (core/joinline.py)
    "JOIN_FOREIGN": "This is not a sixbroker join line (it must start with sb1:)",
    "JOIN_VERSION": "This join line is of a newer format than this sixbroker reads: upgrade sixbroker",
    "JOIN_TRUNCATED": "The join line is cut short: copy all of it (it is one long line)",
    "JOIN_DAMAGED": "The join line is damaged (its checksum does not match): copy it again",
    "JOIN_INVALID": "The join line's contents are not valid",
    # the update service (`sixbroker server serve`, `key`)
    "TUNNEL_NO_KEY": "The tunnel has no update key yet: run `sixbroker server key NAME --rotate`",
    "SERVE_NEEDS_EXTRA": "The update service needs the optional dependencies: pip install 'sixbroker[server]'",
    "SERVE_PLAIN_NOT_LOOPBACK": "Plain HTTP (--plain-http) is served only on a loopback address (behind a reverse proxy that does TLS)",
    "TLS_CERT_MISSING": "No TLS certificate: give --cert and --key, or run `sixbroker server init` to make a self-signed one",
    "TLS_CERT_FAIL": "The TLS certificate or key cannot be read or made",
    "INVALID_LISTEN": "The listen address must be an IP address and port, e.g. 0.0.0.0:8443 or [::]:8443",
    "CONFIG_NOT_FOUND": "The configuration file cannot be read",
    "NO_TUNNELS": "The configuration has no enabled `config tunnel` section",
    "NO_UPDATER": "No tunnel in the configuration has an updater: set tunnelid and updatekey",
}


# The codes LuCI's network.js defines itself (its proto_errors table, openwrt/luci
# modules/luci-base/htdocs/luci-static/resources/network.js): Network -> Interfaces shows LuCI's words
# for them whatever a protocol registers.  Ours among them -> the code that carries our words.
LUCI_PREDEFINED = ("CONNECT_FAILED", "INVALID_ADDRESS", "INVALID_GATEWAY", "INVALID_LOCAL_ADDRESS",
                   "MISSING_ADDRESS", "MISSING_PEER_ADDRESS", "NO_DEVICE", "NO_IFACE", "NO_IFNAME",
                   "NO_WAN_ADDRESS", "NO_WAN_LINK", "PEER_RESOLVE_FAIL", "PIN_FAILED")
LUCI_REPLACEMENTS = {"MISSING_PEER_ADDRESS": "PEER_ADDRESS_MISSING", "PEER_RESOLVE_FAIL": "PEER_NOT_RESOLVED"}


class SixbrokerError(Exception):
    """An error a user can act on: a stable code, a one-line message, the option it concerns."""

    def __init__(self, code, detail=None, option=None):
        text = CODES.get(code, code)
        if detail:
            text = text + ": " + str(detail)
        super().__init__(text)
        self.code = code
        self.detail = detail
        self.option = option
        self.text = text

    def __str__(self):
        return self.text


class ConfigErrors(SixbrokerError):
    """Every problem found in one configuration, so the user fixes them in one go."""

    def __init__(self, errors):
        self.errors = errors
        super().__init__(errors[0].code, errors[0].detail, errors[0].option)
        self.text = "; ".join(e.text for e in errors)

    def codes(self):
        return [e.code for e in self.errors]
