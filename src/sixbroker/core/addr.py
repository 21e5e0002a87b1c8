"""IPv4 and IPv6 addresses, networks (prefixes) and interface addresses.

The router end runs on MicroPython, which has no `ipaddress`, so this module is the one place
sixbroker reads and writes addresses, on both interpreters.  Reading is strict: only text that
every tool (ip, netifd, nft, a browser) reads the same way is accepted, so a typo is an error
and not a different address.  Writing is RFC 5952 canonical, so one address always has one text
(in UCI, in netifd's JSON, in the broker's database, in a diff).

Errors are AddressError (a ValueError) with a stable .code ("BAD_ADDRESS" or "BAD_PREFIX"), a
finer .reason (the constants below) and a one-line message that quotes what was given.

Decisions that differ from CPython's ipaddress (tests/core/cpython/test_addr_oracle.py checks the rest
against it):
- IPv4-mapped addresses print as ::ffff:192.0.2.1 (RFC 5952 section 5), not ::ffff:c000:201;
  other embedded forms (::192.0.2.1, 64:ff9b::192.0.2.1) print in hex, as iproute2 shows them.
- Zone indexes ("fe80::1%eth0") are refused: netifd and the kernel take the device separately.
- Prefix lengths are numbers only ("/24", not "/255.255.255.0"), and a bare address is not a
  network unless the caller gives default_length.
- is_private means RFC 1918 / fc00::/7.  Whether an address is globally reachable is the broker's
  question (sixbroker.broker.reach), not the router's.
"""

BITS = {4: 32, 6: 128}

# AddressError.reason: callers that turn an address error into a configuration error code
# (ip6addr needs a length, ip6prefix has host bits, ...) branch on these, never on the words.
SYNTAX = "SYNTAX"  # not an address / prefix at all
WRONG_VERSION = "WRONG_VERSION"  # a well-formed address of the other family
NO_LENGTH = "NO_LENGTH"  # "/len" missing where one is required
BAD_LENGTH = "BAD_LENGTH"  # "/len" not a number, or too long for the family
HOST_BITS = "HOST_BITS"  # a network written with bits set after its length
OUT_OF_RANGE = "OUT_OF_RANGE"  # an index or integer outside what the network / family holds
NO_PEER = "NO_PEER"  # no single other end can be derived for a point-to-point link

_DIGITS = "0123456789"
_HEX = "0123456789abcdefABCDEF"
_WHITE = " \t\n\r\x0b\x0c"
_SHOW_MAX = 60


class AddressError(ValueError):
    """A value that is not the address, prefix or index it should be; the message says why."""

    def __init__(self, message, code="BAD_ADDRESS", reason=SYNTAX, suggestion=None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        # for HOST_BITS: the canonical text of the network that was probably meant
        self.suggestion = suggestion

    def __str__(self):
        return self.message


class _Why(Exception):
    """Internal: why a text is not an address; the public functions add what was given."""

    def __init__(self, why, reason=SYNTAX):
        super().__init__(why)
        self.why = why
        self.reason = reason


def _invisible(o):
    return o < 0x20 or 0x7F <= o <= 0xA0 or o == 0xAD or 0x2000 <= o <= 0x200F or (
        0x2028 <= o <= 0x202F) or 0x205F <= o <= 0x206F or o == 0x3000 or o == 0xFEFF


def _show(text):
    """Quote user input for a one-line message: invisible characters escaped, long input cut."""
    if not isinstance(text, str):
        r = repr(text)
        return r if len(r) <= _SHOW_MAX else r[:_SHOW_MAX] + "..."
    cut = len(text) > _SHOW_MAX
    if cut:
        text = text[:_SHOW_MAX]
    out = []
    for c in text:
        o = ord(c)
        if c == "\\" or c == "'":
            out.append("\\" + c)
        elif _invisible(o):
            out.append("\\x%02x" % o if o < 0x100 else "\\u%04x" % o)
        else:
            out.append(c)
    return "'" + "".join(out) + ("...'" if cut else "'")


def _check_text(text):
    if not isinstance(text, str):
        raise _Why("expected text, got " + type(text).__name__)
    if not text:
        raise _Why("it is empty")
    for c in text:
        if c in _WHITE:
            if text.strip(_WHITE) != text:
                raise _Why("it has white space before or after it; remove it")
            raise _Why("it has white space inside it")


def _int_check(n, version, what="address"):
    """Check that n is an integer a version-`version` address can hold."""
    if type(n) is bool or not isinstance(n, int):
        raise AddressError(
            "an IPv%d %s must be a whole number, not %s" % (version, what, type(n).__name__),
            reason=SYNTAX)
    if n < 0 or n >> BITS[version]:
        raise AddressError(
            "%d is not an IPv%d %s: %s" % (n, version, what, "it is negative" if n < 0 else
                                           "it does not fit in %d bits" % BITS[version]),
            reason=OUT_OF_RANGE)


def _version_check(version):
    if type(version) is not int or (version != 4 and version != 6):
        raise AddressError("the IP version must be 4 or 6, not " + _show(version))


def _length_check(version, length):
    if type(length) is bool or not isinstance(length, int) or length < 0 or length > BITS[version]:
        raise AddressError(
            "%s is not an IPv%d prefix length: it must be a whole number from 0 to %d"
            % (_show(length), version, BITS[version]),
            code="BAD_PREFIX", reason=BAD_LENGTH)


def _netmask(version, length):
    bits = BITS[version]
    return ((1 << length) - 1) << (bits - length)


def _hostmask(version, length):
    return (1 << (BITS[version] - length)) - 1


# ---- IPv4 text ----------------------------------------------------------------------------


def _v4(text):
    _check_text(text)
    for c in text:
        if c == "." or c in _DIGITS:
            continue
        if c == "/":
            raise _Why("it has a prefix length (" + _show(text[text.index("/"):])
                       + "); give the address without it")
        if c == ":":
            if _is_v6(text):
                raise _Why("it is an IPv6 address", WRONG_VERSION)
            raise _Why("it has a ':', and an IPv4 address is 4 numbers separated by dots,"
                       " like 192.0.2.1")
        raise _Why(_show(c) + " is not a decimal digit: an IPv4 address is 4 numbers"
                   " from 0 to 255 separated by dots, like 192.0.2.1")
    parts = text.split(".")
    if "" in parts:
        raise _Why("a number is missing (a dot at the start or end, or two dots in a row)")
    if len(parts) != 4:
        # inet_aton reads "1.2.3" and "16909060" as addresses, ip and nft do not agree on them
        raise _Why("it has %d number%s: an IPv4 address is exactly 4 numbers separated by dots,"
                   " like 192.0.2.1" % (len(parts), "" if len(parts) == 1 else "s"))
    value = 0
    for p in parts:
        if len(p) > 1 and p[0] == "0":
            # inet_aton reads "010" as octal 8; refusing it avoids the ambiguity (CPython >= 3.9.5)
            raise _Why(_show(p) + " has a leading zero, which some programs read as octal;"
                       " write it without the zero")
        n = int(p)
        if n > 255:
            raise _Why(_show(p) + " is more than 255")
        value = (value << 8) | n
    return value


def _is_v4(text):
    try:
        _v4(text)
        return True
    except _Why:
        return False


def parse_ipv4(text):
    """'192.0.2.1' -> 3221225985.  Strictly four decimal numbers 0-255, no leading zeros."""
    try:
        return _v4(text)
    except _Why as e:
        raise AddressError(_show(text) + " is not an IPv4 address: " + e.why, reason=e.reason)


def format_ipv4(n):
    _int_check(n, 4)
    return "%d.%d.%d.%d" % ((n >> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255)


# ---- IPv6 text ----------------------------------------------------------------------------


def _v6(text):
    _check_text(text)
    if "%" in text:
        # the kernel and netifd take the interface separately; "fe80::1%eth0" in a config would be
        # silently half-used by some tools and refused by others
        raise _Why("it has a zone index (" + _show(text[text.index("%"):])
                   + "), which is not allowed here; give the address without it")
    if "/" in text:
        raise _Why("it has a prefix length (" + _show(text[text.index("/"):])
                   + "); give the address without it")
    if "[" in text or "]" in text:
        raise _Why("remove the square brackets around it")
    if ":" not in text:
        if _is_v4(text):
            raise _Why("it is an IPv4 address", WRONG_VERSION)
        raise _Why("it has no ':'; an IPv6 address is 8 groups of hex digits separated by ':',"
                   " like 2001:db8::1")
    if ":::" in text:
        raise _Why("it has ':::'; a run of zero groups is written '::'")
    double = text.count("::")
    if double > 1:
        raise _Why("it uses '::' more than once; '::' may stand for one run of zero groups only")
    if double:
        head, tail = text.split("::")
    else:
        head, tail = text, None
    if head.startswith(":"):
        raise _Why("it starts with a single ':'")
    if (head if tail is None else tail).endswith(":"):
        raise _Why("it ends with a single ':'")
    front = head.split(":") if head else []
    back = tail.split(":") if tail else []
    written = front + back
    # the last group as written: the only place an IPv4 tail may be (RFC 4291 section 2.2)
    last = written[-1] if written and not text.endswith("::") else None
    v4 = None
    for i, g in enumerate(written):
        if "." in g:
            if i != len(written) - 1 or last is None:
                raise _Why("an IPv4 part (" + _show(g) + ") may only come last")
            try:
                v4 = _v4(g)
            except _Why as e:
                raise _Why("its IPv4 part " + _show(g) + " is not valid: " + e.why)
            continue
        for c in g:
            if c not in _HEX:
                raise _Why(_show(c) + " is not a hex digit")
        if len(g) > 4:
            raise _Why(_show(g) + " has more than 4 hex digits")
    count = len(written) + (1 if v4 is not None else 0)
    note = " (its IPv4 part counts as 2)" if v4 is not None else ""
    if tail is None and count != 8:
        raise _Why("it has %d groups%s; an IPv6 address has 8, or '::' for a run of zero groups"
                   % (count, note))
    if tail is not None and count > 7:
        raise _Why("it has %d groups%s and '::'; with '::' standing for at least one zero group,"
                   " at most 7 may be written" % (count, note))
    values = []
    for g in written:
        if "." not in g:
            values.append(int(g, 16))
    if v4 is not None:
        values.append(v4 >> 16)
        values.append(v4 & 0xFFFF)
    if tail is not None:
        nfront = len(front)
        values = values[:nfront] + [0] * (8 - len(values)) + values[nfront:]
    value = 0
    for v in values:
        value = (value << 16) | v
    return value


def _is_v6(text):
    try:
        _v6(text)
        return True
    except _Why:
        return False


def parse_ipv6(text):
    """Any RFC 4291 text form ('2001:DB8:0::1', '::ffff:192.0.2.1', ...) -> int."""
    try:
        return _v6(text)
    except _Why as e:
        raise AddressError(_show(text) + " is not an IPv6 address: " + e.why, reason=e.reason)


_MAPPED = 0xFFFF  # value >> 32 of ::ffff:0:0/96, IPv4-mapped addresses


def _zero_run(mask):
    """(start, length) of the longest run of two or more zero groups (the first on a tie) in an
    address whose zero groups are the set bits of mask (bit 7: the first group), or (-1, 1)."""
    best, best_len = -1, 1
    i = 0
    while i < 8:
        if not mask >> (7 - i) & 1:
            i += 1
            continue
        j = i
        while j < 8 and mask >> (7 - j) & 1:
            j += 1
        if j - i > best_len:
            best, best_len = i, j - i
        i = j
    return best, best_len


def _zero_form(mask):
    """(format, start, stop) for an address whose zero groups are the set bits of mask: the text with
    groups start..stop-1 as '::', filled in with the other groups."""
    best, best_len = _zero_run(mask)
    if best < 0:
        return ":".join(["%x"] * 8), 0, 0
    return ":".join(["%x"] * best) + "::" + ":".join(["%x"] * (8 - best - best_len)), best, best + best_len


# every pattern of zero groups worked out once: an address is then one % of its groups (50,000 addresses
# in a broker's plans at 10,000 tunnels)
_ZERO_FORMS = [_zero_form(m) for m in range(256)]


def format_ipv6(n):
    """RFC 5952: lowercase, no leading zeros, the longest (first on a tie) run of two or more
    zero groups as '::', and IPv4-mapped addresses with a dotted tail (section 5)."""
    _int_check(n, 6)
    if n >> 32 == _MAPPED:
        return "::ffff:" + format_ipv4(n & 0xFFFFFFFF)
    groups = ((n >> 112) & 0xFFFF, (n >> 96) & 0xFFFF, (n >> 80) & 0xFFFF, (n >> 64) & 0xFFFF,
              (n >> 48) & 0xFFFF, (n >> 32) & 0xFFFF, (n >> 16) & 0xFFFF, n & 0xFFFF)
    mask = 0
    for g in groups:
        mask = mask + mask + (0 if g else 1)
    form, start, stop = _ZERO_FORMS[mask]
    return form % (groups[:start] + groups[stop:])


def _format(version, n):
    return format_ipv4(n) if version == 4 else format_ipv6(n)


def _family_word(version):
    return "IP" if version is None else "IPv%d" % version


def _guess_version(text):
    """The family a malformed text was probably meant to be, for the words of the message."""
    if not isinstance(text, str) or not text:
        return None
    if ":" in text:
        return 6
    if "." in text or text[0] in _DIGITS:
        return 4
    return None


def _address(text, version):
    """(version, value) of an address of `version` (4, 6 or None: either); raises _Why with
    .version set to the family the message should name."""
    if version is not None:
        _version_check(version)
    try:
        if version == 4:
            return 4, _v4(text)
        if version == 6:
            return 6, _v6(text)
        _check_text(text)
        guess = _guess_version(text)
        if guess == 6:
            return 6, _v6(text)
        if guess == 4:
            return 4, _v4(text)
        raise _Why("expected an IPv4 address like 192.0.2.1 or an IPv6 address like 2001:db8::1")
    except _Why as e:
        e.version = version if version is not None else _guess_version(text)
        raise


def _parse_address(text, version):
    try:
        return _address(text, version)
    except _Why as e:
        raise AddressError(_show(text) + " is not an " + _family_word(e.version) + " address: "
                           + e.why, reason=e.reason)


# ---- classification tables ----------------------------------------------------------------
# What the router asks of an address.  Whether an address is public (the IANA registries) is the
# broker's question: sixbroker.broker.reach.

_NAMED = {
    4: {
        "loopback": ("127.0.0.0/8",),
        "multicast": ("224.0.0.0/4",),
        "link_local": ("169.254.0.0/16",),
        "private": ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"),
        "cgnat": ("100.64.0.0/10",),
        "reserved": ("240.0.0.0/4",),  # includes 255.255.255.255
    },
    6: {
        "loopback": ("::1/128",),
        "multicast": ("ff00::/8",),
        "link_local": ("fe80::/10",),
        "private": ("fc00::/7",),
        "cgnat": (),
        "reserved": (),
    },
}

_tables = {}


def _blocks(version, texts):
    out = []
    for t in texts:
        a, ln = t.split("/")
        out.append((_v4(a) if version == 4 else _v6(a), int(ln)))
    return out


def _table(version, name):
    """The named block list as (value, length) pairs, built on first use (cheap start-up)."""
    key = (version, name)
    t = _tables.get(key)
    if t is None:
        t = _tables[key] = _blocks(version, _NAMED[version][name])
    return t


def _in_blocks(version, value, name):
    bits = BITS[version]
    for net, length in _table(version, name):
        if value >> (bits - length) == net >> (bits - length):
            return True
    return False


# ---- objects ------------------------------------------------------------------------------


def _cmp_check(a, b):
    if type(a) is not type(b):
        raise TypeError("cannot compare %s with %s" % (type(a).__name__, type(b).__name__))


class _Keyed:
    """Equality, hashing and ordering by _key(), among objects of one class only."""

    def __eq__(self, other):
        return type(other) is type(self) and self._key() == other._key()

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash(self._key())

    def __lt__(self, other):
        _cmp_check(self, other)
        return self._key() < other._key()

    def __le__(self, other):
        _cmp_check(self, other)
        return self._key() <= other._key()

    def __gt__(self, other):
        _cmp_check(self, other)
        return self._key() > other._key()

    def __ge__(self, other):
        _cmp_check(self, other)
        return self._key() >= other._key()


class Address(_Keyed):
    """One IPv4 or IPv6 address: .version (4 or 6) and .value (the address as an integer)."""

    def __init__(self, version, value):
        _version_check(version)
        _int_check(value, version)
        self.version = version
        self.value = value

    @classmethod
    def parse(cls, text, version=None):
        v, n = _parse_address(text, version)
        return cls(v, n)

    @property
    def bits(self):
        return BITS[self.version]

    def __str__(self):
        return _format(self.version, self.value)

    def __repr__(self):
        return "Address('" + str(self) + "')"

    def _key(self):
        # IPv4 sorts before IPv6 (CPython refuses to compare across families; a mixed list of
        # peers is easier to print sorted)
        return (self.version, self.value)

    @property
    def is_loopback(self):
        return _in_blocks(self.version, self.value, "loopback")

    @property
    def is_multicast(self):
        return _in_blocks(self.version, self.value, "multicast")

    @property
    def is_link_local(self):
        return _in_blocks(self.version, self.value, "link_local")

    @property
    def is_private(self):
        """RFC 1918 (IPv4) or unique local fc00::/7 (IPv6); narrower than CPython's is_private."""
        return _in_blocks(self.version, self.value, "private")

    @property
    def is_cgnat(self):
        return _in_blocks(self.version, self.value, "cgnat")

    @property
    def is_reserved(self):
        """IPv4 240.0.0.0/4 (never assigned; includes the limited broadcast); none for IPv6."""
        return _in_blocks(self.version, self.value, "reserved")

    @property
    def is_unicast(self):
        """Usable as one host's address: not multicast, unspecified, broadcast or 240.0.0.0/4."""
        return not (self.value == 0 or self.is_multicast or self.is_reserved)


class Network(_Keyed):
    """A prefix: .version, .value (the network address as an integer) and .length."""

    def __init__(self, version, value, length):
        _version_check(version)
        _int_check(value, version)
        _length_check(version, length)
        if value & _hostmask(version, length):
            fixed = _format(version, value & _netmask(version, length)) + "/%d" % length
            raise _host_bits_error(_show(_format(version, value) + "/%d" % length), length, fixed)
        self.version = version
        self.value = value
        self.length = length

    @classmethod
    def parse(cls, text, strict=True, version=None, default_length=None):
        """'2001:db8::/32' -> Network.  strict: host bits set is an error naming the network;
        otherwise they are cleared.  A bare address takes default_length, if given."""
        v, n, length = _parse_with_length(text, version, default_length, "prefix", "/64", "/24")
        if n & _hostmask(v, length):
            fixed = _format(v, n & _netmask(v, length)) + "/%d" % length
            if strict:
                raise _host_bits_error(_show(text), length, fixed)
            n &= _netmask(v, length)
        return cls(v, n, length)

    @property
    def bits(self):
        return BITS[self.version]

    @property
    def address(self):
        return Address(self.version, self.value)

    @property
    def first(self):
        return self.value

    @property
    def last(self):
        return self.value | _hostmask(self.version, self.length)

    @property
    def size(self):
        return 1 << (BITS[self.version] - self.length)

    @property
    def netmask(self):
        return _netmask(self.version, self.length)

    def __str__(self):
        return _format(self.version, self.value) + "/%d" % self.length

    def __repr__(self):
        return "Network('" + str(self) + "')"

    def _key(self):
        return (self.version, self.value, self.length)

    def contains(self, x):
        """An Address inside, or a Network equal to or inside this one; other family: False."""
        if isinstance(x, Address):
            return x.version == self.version and x.value & self.netmask == self.value
        if isinstance(x, Network):
            return (x.version == self.version and x.length >= self.length
                    and x.value & self.netmask == self.value)
        # an Interface is ambiguous (its address or its whole network?): the caller says which
        raise TypeError("contains() takes an Address or a Network (for an Interface, pass"
                        " .address or .network), not " + type(x).__name__)

    __contains__ = contains

    def overlaps(self, other):
        if not isinstance(other, Network):
            raise TypeError("overlaps() takes a Network, not " + type(other).__name__)
        return self.contains(other) or other.contains(self)

    def _new_length_check(self, new_length):
        if (type(new_length) is bool or not isinstance(new_length, int)
                or new_length < self.length or new_length > BITS[self.version]):
            raise AddressError(
                "%s has no /%s subnets: the length must be a whole number from %d to %d"
                % (self, new_length, self.length, BITS[self.version]),
                code="BAD_PREFIX", reason=BAD_LENGTH)

    def subnet_count(self, new_length):
        self._new_length_check(new_length)
        return 1 << (new_length - self.length)

    def subnet(self, new_length, index):
        """The index-th /new_length inside (0 first; negative counts from the end)."""
        count = self.subnet_count(new_length)
        i = _index_check(index, count)
        if i is None:
            raise AddressError(
                "%s has %d /%d subnet%s: index %s is out of range"
                % (self, count, new_length, "" if count == 1 else "s", _show(index)),
                code="BAD_PREFIX", reason=OUT_OF_RANGE)
        return Network(self.version, self.value + (i << (BITS[self.version] - new_length)), new_length)

    def host(self, i):
        """The address network + i (negative i counts from the end: -1 is the last address)."""
        j = _index_check(i, self.size)
        if j is None:
            raise AddressError(
                "%s has %d address%s: index %s is out of range"
                % (self, self.size, "" if self.size == 1 else "es", _show(i)),
                reason=OUT_OF_RANGE)
        return Address(self.version, self.value + j)


def _index_check(i, count):
    if type(i) is bool or not isinstance(i, int):
        return None
    if i < 0:
        i += count
    return i if 0 <= i < count else None


def _host_bits_error(shown, length, fixed):
    return AddressError(
        "%s has host bits set (bits after the first %d are not all zero): the network is %s"
        % (shown, length, fixed), code="BAD_PREFIX", reason=HOST_BITS, suggestion=fixed)


def _parse_with_length(text, version, default_length, what, example6, example4):
    """(version, value, length) of 'address/length' text; what names the thing in messages."""
    if version is not None:
        _version_check(version)
    try:
        _check_text(text)
    except _Why as e:
        raise AddressError(_show(text) + " is not an " + _family_word(version or _guess_version(text))
                           + " " + what + ": " + e.why, reason=e.reason)
    if "/" not in text:
        v, n = _parse_address(text, version)
        if default_length is None:
            raise AddressError(
                "%s has no prefix length: add one, e.g. %s"
                % (_show(text), example4 if v == 4 else example6),
                code="BAD_PREFIX", reason=NO_LENGTH)
        _length_check(v, default_length)
        return v, n, default_length
    addr, ltext = text.split("/", 1)
    v, n = _parse_prefix_address(addr, text, version, what)
    word = "IPv%d %s" % (v, what)
    if "/" in ltext:
        why = "it has more than one '/'"
    elif not ltext:
        why = "there is no length after the '/'"
    elif any(c not in _DIGITS for c in ltext):
        why = "%s is not a prefix length: it must be a whole number from 0 to %d" % (_show(ltext), BITS[v])
        if v == 4 and _is_v4(ltext):
            mask = _v4(ltext)
            length = _mask_length(mask)
            if length is not None:
                why = "give the length as a number (/%d), not as a netmask" % length
    else:
        # int() of thousands of digits is slow, and refused by CPython >= 3.11: look first
        digits = ltext.lstrip("0") or "0"
        if len(digits) <= 3 and int(digits) <= BITS[v]:
            return v, n, int(digits)
        why = "%s is too long: an IPv%d prefix length is at most %d" % (_show("/" + ltext), v, BITS[v])
    raise AddressError(_show(text) + " is not an " + word + ": " + why, code="BAD_PREFIX",
                       reason=BAD_LENGTH)


def _mask_length(mask):
    for length in range(33):
        if mask == _netmask(4, length):
            return length
    return None


def _parse_prefix_address(addr, text, version, what):
    """The address part of 'address/length'; errors quote the whole text and name `what`."""
    try:
        return _address(addr, version)
    except _Why as e:
        raise AddressError(_show(text) + " is not an " + _family_word(e.version) + " " + what
                           + ": " + e.why, reason=e.reason)


class Interface(_Keyed):
    """An address with the length of its network, host bits allowed: '2001:db8::b/127'."""

    def __init__(self, version, value, length):
        _version_check(version)
        _int_check(value, version)
        _length_check(version, length)
        self.version = version
        self.value = value
        self.length = length

    @classmethod
    def parse(cls, text, version=None, default_length=None):
        v, n, length = _parse_with_length(text, version, default_length, "address with a length",
                                          "/64", "/24")
        return cls(v, n, length)

    @property
    def address(self):
        return Address(self.version, self.value)

    @property
    def network(self):
        return Network(self.version, self.value & _netmask(self.version, self.length), self.length)

    def peer(self):
        """The other end of the point-to-point link this address is one end of."""
        return peer_address(self.address, self.length)

    def __str__(self):
        return _format(self.version, self.value) + "/%d" % self.length

    def __repr__(self):
        return "Interface('" + str(self) + "')"

    def _key(self):
        return (self.version, self.value, self.length)


def peer_address(address, length):
    """The other end of a point-to-point link: /127 and /31 (RFC 6164, RFC 3021) flip the last
    bit; /126 and /30 pair the first and second usable addresses (index 1 <-> 2)."""
    if not isinstance(address, Address):
        raise TypeError("peer_address() takes an Address, not " + type(address).__name__)
    v = address.version
    _length_check(v, length)
    bits = BITS[v]
    shown = str(address) + "/%d" % length
    if length == bits - 1:
        return Address(v, address.value ^ 1)
    if length == bits - 2:
        index = address.value & 3
        if index == 1 or index == 2:
            return Address(v, address.value ^ 3)
        base = address.value & ~3
        if v == 6:
            what = "the subnet-router anycast address" if index == 0 else "the last address"
        else:
            what = "the network address" if index == 0 else "the broadcast address"
        raise AddressError(
            "%s has no peer: it is %s of the /%d, whose two ends are %s and %s"
            % (shown, what, length, _format(v, base + 1), _format(v, base + 2)), reason=NO_PEER)
    raise AddressError(
        "%s has no single peer: the other end can be worked out only in a /%d or /%d"
        " point-to-point link; give the peer address explicitly" % (shown, bits - 1, bits - 2),
        code="BAD_PREFIX", reason=NO_PEER)
