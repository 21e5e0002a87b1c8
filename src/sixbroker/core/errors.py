"""Stable error codes.

A code is part of the interface: netifd stores it as the interface's error, LuCI gives it words
(`network.registerErrorCode`), scripts match on it.  Codes never change meaning; new ones are added.
The words here are the ones LuCI shows, so a test holds the LuCI app to this table.
"""

# code -> the one-line text a user sees (LuCI, the log, the CLI).  These are the codes of the core and the
# router end; each other room adds its own when it is imported (linux/__init__.py, linuxrouter/__init__.py,
# broker/__init__.py: a code is raised only by code of its room), so the router carries only words it can show.
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
    "USAGE": "Usage error",
    # a tunnel's name: the broker gives it, the join line carries it to the router
    "INVALID_NAME": "The tunnel name must be 1 to 11 letters, digits or '_', starting with a letter (it names the router's interface and the sit device sbs-NAME)",
    # UCI files (/etc/config/*)
    "UCI_PARSE": "A UCI configuration file could not be read",
    "UCI_INVALID": "A UCI name or value is not valid",
    # the one-paste join line (core/joinline.py)
    "JOIN_FOREIGN": "This is not a sixbroker join line (it must start with sb1:)",
    "JOIN_VERSION": "This join line is of a newer format than this sixbroker reads: upgrade sixbroker",
    "JOIN_TRUNCATED": "The join line is cut short: copy all of it (it is one long line)",
    "JOIN_DAMAGED": "The join line is damaged (its checksum does not match): copy it again",
    "JOIN_INVALID": "The join line's contents are not valid",
    "JOIN_INTERFACE_TAKEN": "An interface of another protocol has that name: give another with --interface",
    "JOIN_CERT_WRITE": "The broker's certificate file cannot be written",
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
