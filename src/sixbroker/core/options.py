"""The `sixbroker` protocol's options: one schema, one validator.

The same schema feeds netifd's `dump` (files/lib/netifd/proto/sixbroker.sh carries it as static JSON, a test
holds the two together), the LuCI form (a test holds luci-app's protocol/sixbroker.js to it) and the
standalone router mode, which reads the same options from a UCI file.

Every option reaches us as text.  netifd converts a UCI value to the type a handler declares and silently
drops one that does not convert (an `int` option 'abc' would vanish and the default would apply); declaring
everything a string keeps the user's mistake visible, so we can name it.
"""

from sixbroker.core import addr
from sixbroker.core.errors import ConfigErrors, SixbrokerError

# name -> (kind, default, description).  kind: "string" or "list".  A default of None means: derived
# at setup time (see plan.py) or not used.
SCHEMA = (
    ("peeraddr", "string", None, "IPv4 address or host name of the broker (the far end of the tunnel)"),
    ("ipaddr", "string", None, "Local IPv4 address (default: the address of tunlink, or of the route to the peer)"),
    ("ip6addr", "string", None, "This end's IPv6 tunnel address with its length, e.g. 2001:db8::b/127"),
    ("ip6gw", "string", None, "The broker's IPv6 tunnel address (default: the other end of a /127, else ::1)"),
    ("ip6prefix", "list", None, "Routed prefix(es) handed to the LAN"),
    ("tunlink", "string", None, "The logical interface the tunnel runs over, e.g. wan"),
    ("mtu", "string", None, "Tunnel MTU (default: the underlying device's MTU minus 20)"),
    ("ttl", "string", "64", "TTL of the outer IPv4 packets"),
    ("tos", "string", "inherit", "TOS of the outer IPv4 packets: inherit or a hex value"),
    ("sourcerouting", "string", "0", "Restrict the default route to the tunnel's and prefixes' sources"),
    ("defaultroute", "string", "1", "Add the IPv6 default route over the tunnel"),
    ("metric", "string", None, "Metric of the default route"),
    ("zone", "string", "wan", "Firewall zone of the tunnel interface"),
    ("device", "string", None, "Name of the sit device (default: sb-<interface>; see device_name for long names)"),
    # keeping the broker informed of this end's IPv4 address (core/dyndns.py); the stock 6in4's names
    ("tunnelid", "string", None, "The tunnel's name at the broker (Hurricane Electric: the tunnel ID)"),
    ("username", "string", None, "User name for the update (default: tunnelid; Hurricane Electric: the account name)"),
    ("password", "string", None, "Password for the update (updatekey wins when both are set)"),
    ("updatekey", "string", None, "The tunnel's update key: with tunnelid it turns the updater on"),
    ("updateurl", "string", None, "Update URL (default: the broker's https://<peeraddr>:8443/nic/update; Hurricane Electric's for a numeric tunnelid)"),
    ("updatecert", "string", None, "The broker's certificate file (PEM), for a broker with a self-signed certificate"),
    ("updateinterval", "string", "300", "Seconds between updates (0: only at setup and on a WAN address change)"),
)

OPTION_NAMES = tuple(o[0] for o in SCHEMA)

# Interface options netifd applies itself to every route a handler sends (interface.c, interface-ip.c):
# defaultroute 0 drops the ::/0 routes, metric fills in the interface's metric.  The handler must not
# declare them (netifd passes its own typed copy anyway) nor apply them twice; the standalone router,
# with no netifd, applies them from the plan.
NETIFD_OWNS = ("defaultroute", "metric")
DEFAULTS = dict((o[0], o[2]) for o in SCHEMA if o[2] is not None)
LIST_OPTIONS = tuple(o[0] for o in SCHEMA if o[1] == "list")

# Generic interface options netifd or fw4 use themselves; they may appear in a UCI section beside ours.
GENERIC_OPTIONS = ("proto", "auto", "disabled", "force_link", "ip6assign", "ip6hint", "ip6class",
                   "ip6ifaceid", "ip6weight", "delegate", "ip4table", "ip6table", "peerdns", "dns",
                   "dns_metric", "dns_search", "macaddr")

TRUE_WORDS = ("1", "yes", "on", "true", "enabled")
FALSE_WORDS = ("0", "no", "off", "false", "disabled")

MTU_MIN = 1280          # IPv6's minimum link MTU (RFC 8200)
MTU_MAX = 65515         # 65535 minus the 20-byte outer IPv4 header
METRIC_MAX = 2147483647


def _is_name(text, extra):
    if not text:
        return False
    for ch in text:
        if not (("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9") or ch in extra):
            return False
    return True


def is_file_name(text):
    """Letters, digits, '_', '-' and inner dots: safe as one path component."""
    return _is_name(text, "_-.") and text[0] != "." and len(text) <= 64


def is_hostname(text):
    """RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens."""
    if not text or len(text) > 253:
        return False
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    for label in labels:
        if not label or len(label) > 63 or label[0] == "-" or label[-1] == "-":
            return False
        if not _is_name(label, "-"):
            return False
    # an all-digit top label is a mistyped address, not a host name (RFC 3696 2)
    return not labels[-1].isdigit()


def _bool(text):
    t = text.lower()
    if t in TRUE_WORDS:
        return True
    if t in FALSE_WORDS:
        return False
    return None


def _int(text):
    # ASCII digits only: CPython's isdigit() also takes '²' and Arabic-Indic digits
    if not text or not all("0" <= c <= "9" for c in text):
        return None
    return int(text)


def _text(value):
    """netifd sends JSON, UCI gives text, callers may pass ints or bools: normalise to text."""
    if value is True:
        return "1"
    if value is False:
        return "0"
    if isinstance(value, int):
        return str(value)
    return value


# The code a mistyped option gets.  A UCI interface reaches us typed by our dump (netifd config.c ->
# uci blob.c: a string option given as a UCI list is left out, a list option given as text is split
# into words), but a dynamic interface (ubus call network add_dynamic) reaches the handler with the
# caller's JSON types unchanged (netifd ubus.c netifd_add_dynamic keeps the message as the config), so
# any JSON type can arrive.
TYPE_CODES = {
    "peeraddr": "INVALID_PEER_ADDRESS", "ipaddr": "INVALID_IPADDR", "ip6addr": "INVALID_IP6ADDR",
    "ip6gw": "INVALID_IP6GW", "ip6prefix": "OPTION_NOT_LIST", "tunlink": "INVALID_TUNLINK",
    "mtu": "INVALID_MTU", "ttl": "INVALID_TTL", "tos": "INVALID_TOS",
    "sourcerouting": "INVALID_SOURCEROUTING", "defaultroute": "INVALID_DEFAULTROUTE",
    "metric": "INVALID_METRIC", "zone": "INVALID_ZONE", "device": "INVALID_DEVICE",
    "tunnelid": "INVALID_TUNNELID", "username": "INVALID_USERNAME", "password": "INVALID_UPDATEKEY",
    "updatekey": "INVALID_UPDATEKEY", "updateurl": "INVALID_UPDATEURL", "updatecert": "INVALID_UPDATECERT",
    "updateinterval": "INVALID_UPDATEINTERVAL",
}
NUMBER_OPTIONS = ("mtu", "ttl", "metric", "updateinterval")                 # text, or a JSON integer
BOOL_OPTIONS = ("sourcerouting", "defaultroute")          # text, a JSON boolean or 0/1


def json_kind(value):
    if value is True or value is False:
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a fraction"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a " + type(value).__name__


def type_problem(name, value):
    """Why value cannot be option name's, or None.  None (JSON null) counts as unset."""
    if value is None or isinstance(value, str):
        return None
    if name in LIST_OPTIONS:
        if isinstance(value, (list, tuple)):
            return None         # the items are checked one by one
    elif isinstance(value, int) and not (value is True or value is False):
        if name in NUMBER_OPTIONS or name in BOOL_OPTIONS:
            return None
    elif value is True or value is False:
        if name in BOOL_OPTIONS:
            return None
    return json_kind(value) + ", not " + ("a list or text" if name in LIST_OPTIONS else "text")


class Options:
    """Validated options; addresses are sixbroker.core.addr objects."""

    def __init__(self):
        self.peer = None          # Address, or None when peer_host needs resolving
        self.peer_host = None     # the host name as given
        self.local = None         # Address or None
        self.ip6addr = None       # Interface
        self.ip6gw = None         # Address
        self.ip6prefix = []       # [Network]
        self.tunlink = None
        self.mtu = None
        self.ttl = 64
        self.tos = "inherit"
        self.sourcerouting = False
        self.defaultroute = True
        self.metric = None
        self.zone = "wan"
        self.device = None
        self.update = None        # dict: tunnelid, user, key, url, cert, interval; None: no updater


# Update interval bounds (seconds): 0 turns the timer off; under a minute would only load the broker
INTERVAL_MIN = 60
INTERVAL_MAX = 86400


def _printable(text, extra_bad=""):
    # visible ASCII only: these travel in an HTTP request line, an Authorization header or a path
    for ch in text:
        if not ("!" <= ch <= "~") or ch in extra_bad:
            return False
    return True


def validate(config, strict=False, extra=()):
    """config: dict of option -> text (or list of text for ip6prefix).

    Returns Options, or raises ConfigErrors listing every problem.  strict rejects options that are
    neither ours nor generic interface options (a typo in a UCI file); netifd passes only what the dump
    declared, so it is not strict.  extra: further option names a caller handles itself (the
    standalone router's `lan`).
    """
    errors = []
    o = Options()

    def err(code, option, detail=None):
        errors.append(SixbrokerError(code, detail, option))

    # types first: a mistyped option gets its own code once, and nothing below looks at it (a list
    # compares with text character by character, and would pass as a name)
    mistyped = []
    for name in OPTION_NAMES:
        problem = type_problem(name, config.get(name))
        if problem is not None:
            err(TYPE_CODES[name], name, problem)
            mistyped.append(name)

    def get(name):
        v = None if name in mistyped else config.get(name)
        if v is None or v == "":
            v = DEFAULTS.get(name)
        if name in LIST_OPTIONS:
            return v
        return _text(v)

    if strict:
        for name in sorted(config):
            if name not in OPTION_NAMES and name not in GENERIC_OPTIONS and name not in extra:
                err("UNKNOWN_OPTION", name, name)

    # peer
    peer = get("peeraddr")
    if not peer:
        err("MISSING_PEER_ADDRESS", "peeraddr")
    elif ":" in peer:
        err("PEER_NOT_IPV4", "peeraddr", peer)
    elif peer.replace(".", "").isdigit():
        try:
            o.peer = addr.Address.parse(peer, 4)
        except addr.AddressError as e:
            err("INVALID_PEER_ADDRESS", "peeraddr", str(e))
        else:
            if not o.peer.is_unicast or o.peer.is_loopback or o.peer.is_link_local:
                err("PEER_NOT_UNICAST", "peeraddr", peer)
    elif is_hostname(peer):
        o.peer_host = peer
    else:
        err("INVALID_PEER_ADDRESS", "peeraddr", peer)

    # local
    local = get("ipaddr")
    if local:
        try:
            o.local = addr.Address.parse(local, 4)
        except addr.AddressError as e:
            err("INVALID_IPADDR", "ipaddr", str(e))
        else:
            if not o.local.is_unicast or o.local.is_loopback:
                err("IPADDR_NOT_UNICAST", "ipaddr", local)
            elif o.peer is not None and o.peer == o.local:
                err("PEER_IS_LOCAL", "ipaddr", local)

    # tunnel address
    a6 = get("ip6addr")
    if not a6:
        err("MISSING_IP6ADDR", "ip6addr")
    elif "/" not in a6:
        try:
            addr.Address.parse(a6, 6)
        except addr.AddressError as e:
            err("INVALID_IP6ADDR", "ip6addr", str(e))
        else:
            err("IP6ADDR_NEEDS_LENGTH", "ip6addr", a6)
    else:
        try:
            o.ip6addr = addr.Interface.parse(a6, 6)
        except addr.AddressError as e:
            err("INVALID_IP6ADDR", "ip6addr", str(e))
        else:
            a = o.ip6addr.address
            if o.ip6addr.length < 64:
                err("IP6ADDR_BAD_LENGTH", "ip6addr", a6)
                o.ip6addr = None
            elif not _unicast6(a):
                err("IP6ADDR_NOT_UNICAST", "ip6addr", a6)
                o.ip6addr = None
            elif o.ip6addr.length < 127 and a.value == o.ip6addr.network.value:
                # RFC 4291 2.6.1; on a /127 both ends are usable (RFC 6164)
                err("IP6ADDR_IS_ANYCAST", "ip6addr", a6)
                o.ip6addr = None

    # gateway
    gw = get("ip6gw")
    if gw:
        try:
            o.ip6gw = addr.Address.parse(gw, 6)
        except addr.AddressError as e:
            err("INVALID_IP6GW", "ip6gw", str(e))
        else:
            if o.ip6addr is not None:
                if o.ip6gw == o.ip6addr.address:
                    err("IP6GW_IS_LOCAL", "ip6gw", gw)
                elif not o.ip6addr.network.contains(o.ip6gw):
                    err("IP6GW_OUTSIDE_TUNNEL", "ip6gw", gw + " is not in " + str(o.ip6addr.network))
    elif o.ip6addr is not None:
        o.ip6gw = derive_gateway(o.ip6addr)
        if o.ip6gw is None:
            err("IP6GW_REQUIRED", "ip6gw", str(o.ip6addr))

    # routed prefixes
    prefixes = get("ip6prefix") or []
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    for text in prefixes:
        if not isinstance(text, str):
            err("INVALID_IP6PREFIX", "ip6prefix", json_kind(text) + " in the list, not text")
            continue
        if not text or "/" not in text:
            code = "IP6PREFIX_NEEDS_LENGTH"
            try:
                addr.Address.parse(text, 6)
            except (addr.AddressError, TypeError):
                code = "INVALID_IP6PREFIX"
            err(code, "ip6prefix", text)
            continue
        try:
            given = addr.Interface.parse(text, 6)
        except addr.AddressError as e:
            err("INVALID_IP6PREFIX", "ip6prefix", str(e))
            continue
        net = given.network
        if net.length < 1 or net.length > 64:
            err("IP6PREFIX_BAD_LENGTH", "ip6prefix", text)
        elif given.address.value != net.value:
            err("IP6PREFIX_HOST_BITS", "ip6prefix", text + " (did you mean " + str(net) + "?)")
        elif not _unicast6(net.address):
            err("IP6PREFIX_NOT_UNICAST", "ip6prefix", text)
        elif o.ip6addr is not None and net.overlaps(o.ip6addr.network):
            err("PREFIX_OVERLAPS_TUNNEL", "ip6prefix", text + " overlaps " + str(o.ip6addr.network))
        else:
            clash = None
            for other in o.ip6prefix:
                if other.overlaps(net):
                    clash = other
            if clash is not None:
                err("PREFIXES_OVERLAP", "ip6prefix", text + " overlaps " + str(clash))
            else:
                o.ip6prefix.append(net)

    # underlying interface: a netifd logical name
    tunlink = get("tunlink")
    if tunlink:
        if len(tunlink) > 15 or not _is_name(tunlink, "_-."):
            err("INVALID_TUNLINK", "tunlink", tunlink)
        else:
            o.tunlink = tunlink

    mtu = get("mtu")
    if mtu:
        n = _int(mtu)
        if n is None:
            err("INVALID_MTU", "mtu", mtu)
        elif n < MTU_MIN or n > MTU_MAX:
            err("MTU_OUT_OF_RANGE", "mtu", mtu)
        else:
            o.mtu = n

    ttl = _int(get("ttl"))
    if ttl is None or ttl < 1 or ttl > 255:
        err("INVALID_TTL", "ttl", get("ttl"))
    else:
        o.ttl = ttl

    tos = get("tos").lower()
    if tos != "inherit":
        t = tos[2:] if tos.startswith("0x") else tos
        if not t or len(t) > 2 or not _is_name(t, "") or not all(c in "0123456789abcdef" for c in t):
            err("INVALID_TOS", "tos", get("tos"))
        else:
            tos = "%02x" % int(t, 16)
    o.tos = tos

    for name, code in (("sourcerouting", "INVALID_SOURCEROUTING"), ("defaultroute", "INVALID_DEFAULTROUTE")):
        b = _bool(get(name))
        if b is None:
            err(code, name, get(name))
        else:
            setattr(o, name, b)

    metric = get("metric")
    if metric:
        n = _int(metric)
        if n is None or n > METRIC_MAX:
            err("INVALID_METRIC", "metric", metric)
        else:
            o.metric = n

    zone = get("zone")
    # fw4 zone names: up to 11 characters in iptables days; fw4 allows more, nft chain names stay short
    if not _is_name(zone, "_") or len(zone) > 32:
        err("INVALID_ZONE", "zone", zone)
    else:
        o.zone = zone

    device = get("device")
    if device:
        # no '.': netifd reads name.N as a VLAN of name
        if len(device) > 15 or not _is_name(device, "-_"):
            err("INVALID_DEVICE", "device", device)
        else:
            o.device = device

    _validate_update(o, get, err)

    # a mistyped option counts as unset above: drop what that alone caused (MISSING_PEER_ADDRESS...)
    errors = errors[:len(mistyped)] + [e for e in errors[len(mistyped):] if e.option not in mistyped]
    if errors:
        raise ConfigErrors(errors)
    return o


def _validate_update(o, get, err):
    """The updater's options (core/dyndns.py); o.update stays None unless a key and tunnelid are set."""
    tunnelid = get("tunnelid")
    if tunnelid and (len(tunnelid) > 64 or not _is_name(tunnelid, "_-.")):
        err("INVALID_TUNNELID", "tunnelid", tunnelid)
        tunnelid = None
    user = get("username")
    if user and (len(user) > 64 or not _printable(user, ":")):
        err("INVALID_USERNAME", "username", user)
    key = None
    for name in ("password", "updatekey"):       # updatekey wins (stock 6in4.sh)
        v = get(name)
        if v:
            if len(v) > 128 or not _printable(v):
                # the key itself stays out of the message: it ends up in the system log
                err("INVALID_UPDATEKEY", name, "%d characters" % len(v))
            else:
                key = v
    url = get("updateurl")
    if url:
        rest = url[8:] if url.startswith("https://") else url[7:] if url.startswith("http://") else ""
        if not rest or rest[0] in "/?:" or len(url) > 255 or not _printable(url, "#"):
            err("INVALID_UPDATEURL", "updateurl", url)
    cert = get("updatecert")
    if cert and (cert[0] != "/" or len(cert) > 255 or not _printable(cert)):
        err("INVALID_UPDATECERT", "updatecert", cert)
    interval = _int(get("updateinterval"))
    if interval is None or interval > INTERVAL_MAX or 0 < interval < INTERVAL_MIN:
        err("INVALID_UPDATEINTERVAL", "updateinterval", get("updateinterval"))
    if key and not get("tunnelid"):
        err("UPDATE_NEEDS_TUNNELID", "tunnelid")
    if key and tunnelid:
        from sixbroker.core import dyndns      # only then: a tunnel without an updater never loads it
        peer = o.peer_host or (str(o.peer) if o.peer is not None else "")
        o.update = {"tunnelid": tunnelid, "user": user or tunnelid, "key": key,
                    "url": url or dyndns.default_url(tunnelid, peer), "cert": cert or None,
                    "interval": interval if interval is not None else int(DEFAULTS["updateinterval"])}


def _unicast6(a):
    return a.is_unicast and not a.is_loopback and not a.is_link_local and not _v4_embedded(a)


def _v4_embedded(a):
    # ::/96 (deprecated IPv4-compatible) and ::ffff:0:0/96 (IPv4-mapped) never belong on a link
    return (a.value >> 32) == 0 or (a.value >> 32) == 0xFFFF


def derive_gateway(iface):
    """The far end of the tunnel: the other end of a /127 (or /126), else ::1 of the prefix."""
    if iface.length == 128:
        return None         # a /128 has no other address: the user must name the gateway
    if iface.length in (127, 126):
        try:
            return addr.peer_address(iface.address, iface.length)
        except addr.AddressError:
            return None
    gw = iface.network.host(1)
    if gw == iface.address:
        return None
    return gw


DEVICE_MAX = 15     # IFNAMSIZ - 1
DEVICE_PREFIX = "sb-"


def device_name(interface, option=None):
    """The sit device of an interface: the `device` option if given, else derived from the interface name.

    The rule (luci-app's options.js deviceName() mirrors it; a test holds the two together):
      1. "sb-" + interface, when that fits the kernel's 15 characters (interface up to 12 characters);
      2. else "sb-" + the interface's first 7 characters + "-" + 4 lower-case hex digits of
         name_hash(interface): 3 + 7 + 1 + 4 = 15 characters.
    Two interfaces never share a name by rule 1; rule 2's "-" cannot appear in a UCI section name (letters,
    digits, '_'), so a rule-2 name never equals a rule-1 name of an interface defined in UCI.  Two long
    names with the same first 7 characters collide only when their 16-bit hashes do (1 in 65536), and the
    handler refuses a sit that netifd says belongs to another interface (DEVICE_IN_USE) even then.
    """
    if option:
        return option
    name = DEVICE_PREFIX + interface
    if len(name) <= DEVICE_MAX:
        return name
    return DEVICE_PREFIX + interface[:7] + "-" + "%04x" % name_hash(interface)


def name_hash(text):
    """32-bit FNV-1a over the UTF-8 bytes of text, xor-folded to 16 bits (FNV's own advice for short
    hashes).  Plain integer arithmetic, the same on CPython, MicroPython and JavaScript (Math.imul)."""
    h = 0x811C9DC5
    for b in text.encode("utf-8"):
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return (h >> 16) ^ (h & 0xFFFF)
