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
    "INVALID_DEVICE": "The tunnel device name must be 1 to 15 letters, digits, '-', '_' or '.'",
    "UNKNOWN_OPTION": "Unknown option",
    "OPTION_NOT_LIST": "This option takes a list",
    # setup time (the environment, not the configuration)
    "PEER_RESOLVE_FAIL": "The peer's host name (peeraddr) did not resolve to an IPv4 address",
    "NO_LOCAL_ADDRESS": "No local IPv4 address: the underlying interface has none, or there is no route to the peer",
    "TUNLINK_NOT_UP": "The underlying interface (tunlink) is not up",
    "UBUS_FAIL": "Could not talk to netifd over ubus",
    "INTERNAL_ERROR": "Internal error (a bug in sixbroker): see the system log",
}


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
