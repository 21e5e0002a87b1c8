"""The proof that our nftables table is as we left it: a token of boot, namespace, ruleset generation
and a digest of the table.

CPython only.  `apply` with nothing to do, and add/remove/set of one tunnel, trust a record of the table
instead of reading it through `nft` (a process, and text that grows with the tunnels).  The ruleset generation
(NFT_MSG_GETGEN) alone moves with every other nftables user's change (fail2ban, Docker, a firewall
reload), so it only ever proves "nothing changed anywhere"; when it moved, the table itself is read
over netlink and summed into a digest: one 128-bit hash per item (the table, each chain, rule and set
as the kernel reports them, each set element by its key), added up, so a one-tunnel change moves the
digest by what its elements add and remove (apply_nft.Result.delta), without reading the table again.
Counters (rule `counter`, per-element counters, base-chain counters) are left out: packets move them; so
are the elements of nft_table.SEEN, which packets add.
A rule is hashed with its expressions, not by its handle alone: `nft replace rule` keeps the handle
(net/netfilter/nf_tables_api.c, nf_tables_newrule: with NLM_F_REPLACE the handle is the one given).
"""

import struct
from hashlib import blake2b as _blake2b

from sixbroker.linux.nft_table import SEEN, TABLE, check_name
from sixbroker.linux.netns import InNetns

SO_NETNS_COOKIE = 71     # asm-generic/socket.h, Linux 5.14+
DIGEST_MOD = 1 << 128
NFPROTO_INET = 1
NFT_GETTABLE, NFT_GETCHAIN, NFT_GETRULE, NFT_GETSET, NFT_GETSETELEM = 1, 4, 7, 10, 13
_CHAIN_SKIP = (8, 9)                 # NFTA_CHAIN_COUNTERS, NFTA_CHAIN_PAD
_RULE_EXPRESSIONS, _RULE_SKIP = 4, (8, 9)       # NFTA_RULE_EXPRESSIONS; NFTA_RULE_PAD, NFTA_RULE_ID
_STATEFUL = (b"counter\0", b"quota\0", b"last\0")    # expressions whose data is state, not configuration
# NFTA_SET_NAME; NFTA_SET_PAD, and what kernels after 6.1 add (NFTA_SET_TYPE, NFTA_SET_COUNT: the
# element count, which the elements themselves already cover)
_SET_NAME, _SET_SKIP, _SET_KNOWN = 2, (14,), 18
_ELEM_LIST, _ELEM_KEY, _ELEM_FLAGS, _ELEM_KEY_END = 3, 1, 3, 10
_ELEM_STATE = (5, 7, 8, 11)         # NFTA_SET_ELEM_EXPIRATION, _EXPR, _PAD, _EXPRESSIONS
IFNAMSIZ = 16
_TYPEOF = {"ip saddr": "ipv4_addr", "ip daddr": "ipv4_addr"}


def _h(*parts):
    return int.from_bytes(_blake2b(b"\0".join(parts), digest_size=16).digest(), "big")


def _item(kind, attrs, skip=()):
    return _h(kind, *(b"%d=" % t + v for t, v in sorted(attrs.items()) if t not in skip))


def _element_hash(setname, key, flags):
    return _h(b"elem", setname, key, b"%d" % flags)


def _key_bytes(typ, text):
    """The kernel's form of an element key (NFTA_DATA_VALUE), for the types our sets use, as (key, end):
    end is None but for a concatenation with intervals, which the kernel (nft_set_pipapo) keeps as one
    element with the range's first key and its last (NFTA_SET_ELEM_KEY_END).  None where we cannot say
    (an interval set of one field keeps start and end as elements of their own)."""
    import socket
    fields, values = typ[0].split(" . "), text.split(" . ")
    interval = any("interval" in f for f in typ[1])
    if len(fields) != len(values) or (interval and len(fields) < 2):
        return None
    key = end = b""
    for field, value in zip(fields, values):
        field = _TYPEOF.get(field.replace("typeof ", ""), field.replace("typeof ", ""))
        if field.startswith("@th,") and value.startswith("0x"):
            # raw payload: its bits, big-endian, each field of a concatenation padded to 32 bits
            bits = int(field.split(",")[2])
            raw = int(value, 16).to_bytes(-(-bits // 8), "big")
            raw += b"\0" * (-len(raw) % 4)
            key += raw
            end += raw
        elif field in ("ipv4_addr", "ipv6_addr") and "-" not in value:
            family, size = (socket.AF_INET, 32) if field == "ipv4_addr" else (socket.AF_INET6, 128)
            address, _, length = value.partition("/")
            if length and not interval:
                return None
            raw = int.from_bytes(socket.inet_pton(family, address), "big")
            host = (1 << (size - int(length or size))) - 1
            key += (raw & ~host).to_bytes(size // 8, "big")
            end += (raw | host).to_bytes(size // 8, "big")
        elif field == "ifname" and value.startswith('"'):
            name = value.strip('"').encode()
            name += b"\0" * (IFNAMSIZ - len(name))
            key += name
            end += name
        else:
            return None
    return key, (end if interval else None)


def delta(moves):
    """What apply_nft.change()'s moves (nft_table.change_parts) add to the digest, or None where an element's
    kernel form is not known here."""
    total = 0
    for setname, typ, element, sign in moves:
        found = _key_bytes(typ, element)
        if found is None:
            return None
        key, end = found
        name = setname.encode()
        total += sign * _element_hash(name, key, 0)
        if end is not None:
            # as _elements hashes it: NFTA_SET_ELEM_KEY_END with its nested NFTA_DATA_VALUE header
            total += sign * _h(b"elem-extra", name, key, b"%d=" % _ELEM_KEY_END +
                               struct.pack("HH", 4 + len(end), 1) + end)
    return total % DIGEST_MOD


def _nest(buf):
    from sixbroker.linux import netlink
    return netlink.attrs(buf, 0, len(buf))


def _digest(sock, table):
    """The digest of our table, or "none" when there is none."""
    from sixbroker.linux import netlink as nl
    name = nl.attr_str(1, table)          # NFTA_{TABLE,CHAIN,RULE,SET,SET_ELEM_LIST}_TABLE (and _NAME)
    try:
        found = nl.nft_request(sock, NFT_GETTABLE, NFPROTO_INET, name)
    except OSError as e:
        if e.errno == 2:                  # ENOENT
            return "none"
        raise
    total = _item(b"table", found, (5, 7))        # NFTA_TABLE_PAD, NFTA_TABLE_OWNER (a port id)
    want = table.encode() + b"\0"
    for a in nl.nft_dump(sock, NFT_GETCHAIN, NFPROTO_INET, b""):
        if a.get(1) == want:
            total += _item(b"chain", a, _CHAIN_SKIP)
    for a in nl.nft_dump(sock, NFT_GETRULE, NFPROTO_INET, name):
        exprs = []
        for e in nl.iter_nested(a.get(_RULE_EXPRESSIONS, b"")):
            e = _nest(e)
            exprs.append(e.get(1, b"") + (b"" if e.get(1) in _STATEFUL else e.get(2, b"")))
        total += _h(b"rule", _h(*exprs).to_bytes(16, "big"), b"%d" % _item(b"", a, (_RULE_EXPRESSIONS,) + _RULE_SKIP))
    sets = []
    for a in nl.nft_dump(sock, NFT_GETSET, NFPROTO_INET, name):
        total += _item(b"set", a, _SET_SKIP + tuple(t for t in a if t > _SET_KNOWN))
        sets.append(a[_SET_NAME])
    for setname in sets:
        if setname == SEEN.encode() + b"\0":
            continue                      # its elements are put there by packets: state, like counters
        for a in nl.nft_dump(sock, NFT_GETSETELEM, NFPROTO_INET, name + nl.attr(2, setname)):
            total += _elements(setname.rstrip(b"\0"), a.get(_ELEM_LIST, b""))
    return "%032x" % (total % DIGEST_MOD)


_HH = struct.Struct("HH").unpack_from
_U16 = struct.Struct("H").unpack_from
_BE32 = struct.Struct(">I").unpack_from


def _elements(sname, buf):
    """The digest of one message's set elements.  The loop that costs with 10,000 tunnels (60,000
    elements, ~5 s in the guest): attributes are walked in place, no dict per element, and each element's
    hash is _element_hash's, written out here (the same bytes hashed: delta() computes it from text)."""
    total = 0
    head = b"elem\0" + sname + b"\0"
    frombytes, blake = int.from_bytes, _blake2b
    pos, n = 0, len(buf)
    while pos + 4 <= n:
        length = _U16(buf, pos)[0]
        if length < 4:
            break
        end = pos + length
        p = pos + 4
        key, flags, rest = b"", 0, None
        while p + 4 <= end:
            alen, typ = _HH(buf, p)
            if alen < 4:
                break
            typ &= 0x3FFF
            if typ == _ELEM_KEY:        # nested: NFTA_DATA_VALUE first
                key = buf[p + 8:p + 4 + _U16(buf, p + 4)[0]]
            elif typ == _ELEM_FLAGS:
                flags = _BE32(buf, p + 4)[0]
            elif typ not in _ELEM_STATE:
                rest = (rest or []) + [b"%d=" % typ + buf[p + 4:p + alen]]
            p += (alen + 3) & ~3
        if rest:
            total += _h(b"elem-extra", sname, key, *rest)
        total += frombytes(blake(head + key + (b"\0%d" % flags), digest_size=16).digest(), "big")
        pos += (length + 3) & ~3
    return total


def token(netns=None, table=TABLE, known=None, moved_by=None):
    """"boot id/namespace cookie/ruleset generation/digest of our table", or None where the kernel
    cannot say (Linux < 5.14 has no namespace cookie).  Cookies are never reused within a boot, so the
    first two name this very namespace of this very boot.  When `known` (an earlier token) has this
    boot, namespace and generation, nothing was loaded since and it is returned as it is, without reading
    the table; with `moved_by` (the digest delta of our own one transaction since `known`) and a
    generation one further, the digest is known's moved by it, again without reading the table."""
    import socket
    from sixbroker.linux import netlink
    check_name(table)
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        with InNetns(netns):
            s = netlink.Socket(netlink.NETLINK_NETFILTER)
        try:
            cookie = struct.unpack("Q", s.sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))[0]
            gen = netlink.nft_generation(s)
            head = "%s/%d/%d" % (boot, cookie, gen)
            if known is not None:
                k = known.split("/")
                if known.rsplit("/", 1)[0] == head:
                    return known
                if moved_by is not None and len(k) == 4 and k[:2] == [boot, str(cookie)] and \
                        k[3] != "none" and int(k[2]) + 1 == gen:
                    return head + "/%032x" % ((int(k[3], 16) + moved_by) % DIGEST_MOD)
            return head + "/" + _digest(s, table)
        finally:
            s.close()
    except OSError:
        return None


def token_same(a, b):
    """Whether two tokens show our table the same: same boot and namespace, and an equal digest."""
    if a is None or b is None:
        return False
    a, b = a.split("/"), b.split("/")
    return len(a) == len(b) == 4 and a[:2] == b[:2] and a[3] == b[3]


def token_after(before, result, netns=None, table=TABLE):
    """The token after change() loaded `result` onto the table that `before` showed: the digest moved
    by the change's delta when its own transaction is the only one since (the generation moved by one),
    else read once."""
    delta = getattr(result, "delta", None) if getattr(result, "changed", False) else None
    return token(netns, table, known=before, moved_by=delta)
