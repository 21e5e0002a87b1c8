"""Plans into nftables: one table of our own, replaced whole in one transaction.

CPython only (it runs `nft`).  The table is ours alone; no other table is read for decisions or touched.
Its base chains have policy accept, so an `accept` here never overrides a `drop` in another table (nft
runs every base chain on a hook; a packet must pass all of them).  What this table adds on its own is
therefore: counters, the drops and rejects the plans ask for, the protocol-41 drop, and MSS clamping.

Aggregation, so 1000 tunnels are a handful of rules and some set elements, not thousands of rules:
- "accept protocol 41 from the peer" rules become elements `local . peer` of the set `peers6in4`, one rule
  `meta l4proto ipv6 ip daddr . ip saddr @peers6in4 counter accept`, each element with its own counter;
- ACCEPT rules that differ only in one interface or address become one rule over a named set;
- identical rules from several plans are written once.

Protocol 41 from a third host: one sit device per tunnel is keyed by (local, remote), and the kernel gives
a packet only to the device whose pair matches exactly, so a third host's packet reaches none of ours.  But
the kernel then answers it (ICMP port unreachable, from tunnel4), and a wildcard sit (sit0 brought up, a
local-only 6to4 or NBMA device) would take it.  So after the accepts comes
`meta l4proto ipv6 ip daddr @locals6in4 counter drop`: protocol 41 to one of our tunnel endpoints from a
host that is no peer of that endpoint is dropped silently.  That drop must not break a tunnel that is not
ours on the same address: the caller passes the foreign sit devices' (local, remote) pairs as `exempt`
(apply_kernel.Result.foreign_tunnels); their pairs are accepted first, and an endpoint a foreign wildcard
device listens on is left out of the drop.

Inner source check: a plan may name the IPv6 prefixes its tunnel's packets may come from
(firewall["sources"]; the broker's: the transfer /127 and the routed prefixes).  Linux has no IPv6
reverse-path filter by default, so without it one home could forward packets with another home's (or
anybody's) source.  Every guarded tunnel shares one rule, first in the forward chain:
`iifname . ip6 saddr != @sources6 iifname @spoofed6 counter drop`: the concatenated interval set holds
`device . prefix` for every tunnel, and the second lookup, reached only by a packet that failed the
first, counts the drop on that device's element.  One rule and one lookup per packet at any number of
tunnels; a packet from a device that is not guarded fails the first lookup and the second one too.

Order within a chain: the ACCEPT rules (aggregated), then the rules with other verdicts in plan order.
That is the plans' own order as long as no plan puts an ACCEPT after a DROP or REJECT in one chain (plan.py
never does: a policy is allow-list then default deny); ruleset() refuses such a plan.

Idempotence: the text we load is written in the form `nft -s list table` prints, so the loaded table is
compared with the desired one (after normalise(): white space, set element order) and nothing is loaded
when they are equal; counters keep counting.  tests/linux/test_nft_host.py holds the two forms together.
"""

import json
import os
import struct
import subprocess
from hashlib import blake2b as _blake2b

from sixbroker.core.errors import SixbrokerError

TABLE = "sixbroker"
FAMILY = "inet"
COMMENT = "sixbroker: generated, replaced whole on every apply; do not edit"

PEERS = "peers6in4"          # local . peer of our tunnels
FOREIGN = "foreign6in4"      # local . peer of sit devices that are not ours (exempt from our drop)
LOCALS = "locals6in4"        # our tunnel endpoints: protocol 41 to them from anyone else is dropped
TUNNELS = "tunnels"          # our tunnel devices, for MSS clamping
SOURCES = "sources6"         # device . prefix: the inner sources each guarded tunnel may forward
SPOOFED = "spoofed6"         # guarded devices, one drop counter each

ANY4 = "0.0.0.0"
PROTO_6IN4 = 41
SO_NETNS_COOKIE = 71     # asm-generic/socket.h, Linux 5.14+

# `nft list` writes ct states in the kernel's bit order
_CT_ORDER = ("invalid", "established", "related", "new", "untracked")
_PROTO_WORDS = {41: "ipv6", "41": "ipv6", "icmpv6": "ipv6-icmp", "ipv6-icmp": "ipv6-icmp", "tcp": "tcp",
                "udp": "udp", 6: "tcp", 17: "udp", 58: "ipv6-icmp"}
_VERDICTS = {"ACCEPT": "accept", "DROP": "drop", "REJECT": "reject with icmpx admin-prohibited"}
_CHAINS = ("input", "forward", "output")


class Result:
    """What one apply did: `changed` is whether a transaction was loaded (0 or 1 of them)."""

    def __init__(self, changed, text=None):
        self.changed = changed
        self.transactions = 1 if changed else 0
        self.text = text

    def __repr__(self):
        return "apply_nft.Result(changed=%r)" % self.changed


# ---- building the table ------------------------------------------------------------------------

def _quote(text):
    if '"' in text or "\\" in text or "\n" in text:
        raise ValueError("not writable in an nft string: %r" % text)
    return '"' + text + '"'


def _check_name(name):
    if not name or not (name[0].isalpha() or name[0] == "_") or not all(c.isalnum() or c == "_" for c in name):
        raise ValueError("not an nft identifier: %r" % name)
    return name


def _proto_word(proto):
    if proto is None:
        return None
    if proto not in _PROTO_WORDS:
        raise ValueError("protocol not known to the nft applier: %r" % (proto,))
    return _PROTO_WORDS[proto]


def _ip_word(address):
    return "ip6" if ":" in address else "ip"


def _matches(r, field=None, setname=None):
    """The match part of one rule, in the order and form `nft list` prints it."""
    out = []
    proto = _proto_word(r["proto"])
    src = r["src_ip"]
    has_ip = src is not None or field == "src_ip"
    # nft prints no `meta nfproto` where an ip/ip6 match or ICMPv6 already implies the family
    if r["family"] in ("ipv4", "ipv6") and not has_ip and proto != "ipv6-icmp":
        out.append("meta nfproto " + r["family"])
    if proto:
        out.append("meta l4proto " + proto)
    if field == "src_ip":
        out.append(("ip6" if r["family"] == "ipv6" else "ip") + " saddr @" + setname)
    elif src is not None:
        out.append(_ip_word(src) + " saddr " + src)
    for key, word in (("iif", "iifname"), ("oif", "oifname")):
        if field == key:
            out.append(word + " @" + setname)
        elif r[key] is not None:
            out.append(word + " " + _quote(r[key]))
    if r["ct_state"]:
        states = [s for s in _CT_ORDER if s in r["ct_state"]]
        if len(states) != len(r["ct_state"]):
            raise ValueError("unknown ct state in %r" % (r["ct_state"],))
        out.append("ct state " + ",".join(states))
    return out


def _rule_text(r, field=None, setname=None, comment=True):
    words = _matches(r, field, setname) + ["counter", _VERDICTS[r["target"]]]
    if comment and r.get("name"):
        words.append("comment " + _quote(r["name"]))
    return " ".join(words)


def _varying(r):
    """The one field an ACCEPT rule can be aggregated over, or None."""
    present = [k for k in ("iif", "oif", "src_ip") if r[k] is not None]
    return present[0] if len(present) == 1 else None


def _shape(r, field):
    """What aggregated rules must share: everything but the varying field and the name."""
    ct = tuple(r["ct_state"]) if r["ct_state"] else None
    return (r["chain"], field, r["family"], _proto_word(r["proto"]), ct)


def _set_name(shape):
    chain, field, family, proto, ct = shape
    name = chain + "_" + field + {"ipv4": "4", "ipv6": "6"}.get(family, "")
    if proto:
        name += "_" + proto.replace("-", "")
    if ct:
        name += "_" + "_".join(ct)
    return name


def _is_6in4_accept(r):
    return (r["chain"] == "input" and r["target"] == "ACCEPT" and r["proto"] in (PROTO_6IN4, "41")
            and r["src_ip"] is not None and r["iif"] is None and r["oif"] is None and not r["ct_state"])


def _check_order(plan):
    seen_other = {}
    for r in plan["firewall"]["rules"]:
        if r["chain"] not in _CHAINS:
            raise ValueError("unknown chain %r in rule %r" % (r["chain"], r.get("name")))
        if r["target"] not in _VERDICTS:
            raise ValueError("unknown target %r in rule %r" % (r["target"], r.get("name")))
        if r["target"] != "ACCEPT":
            seen_other[r["chain"]] = r.get("name")
        elif r["chain"] in seen_other:
            raise ValueError("rule %r accepts after %r denies in chain %s: the nft applier puts every accept"
                             " first" % (r.get("name"), seen_other[r["chain"]], r["chain"]))


def _set_block(name, typ, elements, flags=()):
    lines = ["\tset " + name + " {", "\t\ttype " + typ]
    lines.extend("\t\t" + f for f in flags)
    lines.append("\t\telements = { " + ",\n\t\t\t     ".join(elements) + " }")
    lines.append("\t}")
    return "\n".join(lines)


def ruleset(plans, table=TABLE, exempt=(), mss_clamp=True):
    """The whole table as nft text, or None when the plans want no rules at all.

    exempt: (local, remote) pairs of sit devices that are not ours; "0.0.0.0" or None is a wildcard.
    """
    _check_name(table)
    sets, chains = _build(plans, exempt, mss_clamp)
    if not any(chains.values()):
        return None
    out = ["table " + FAMILY + " " + table + " {", "\tcomment " + _quote(COMMENT)]
    out.extend(_set_block(*s) for s in sets)
    for chain in _CHAINS:
        if not chains[chain]:
            continue
        out.append("\tchain " + chain + " {")
        out.append("\t\ttype filter hook " + chain + " priority filter; policy accept;")
        out.extend("\t\t" + line for line in chains[chain])
        out.append("\t}")
    out.append("}")
    return "\n".join(out) + "\n"


def _build(plans, exempt, mss_clamp):
    """([(set name, type, [element], [flag])], {chain: [rule text]}): the table before it is text."""
    peers, locals_, tunnels = [], [], []
    sources, guarded = [], []
    accepts = {"input": [], "forward": [], "output": []}    # [(shape or None, rule)] in first-seen order
    groups = {}                                             # shape -> [values]
    others = {"input": [], "forward": [], "output": []}
    singles = set()
    for p in plans:
        _check_order(p)
        t = p["tunnel"]
        tunnels.append(t["device"])
        if p["firewall"].get("sources") is not None:
            guarded.append(_quote(t["device"]))
            sources.extend(_quote(t["device"]) + " . " + net for net in p["firewall"]["sources"])
        for r in p["firewall"]["rules"]:
            if _is_6in4_accept(r):
                pair = t["local"] + " . " + r["src_ip"]
                if pair not in peers:
                    peers.append(pair)
                if t["local"] not in locals_:
                    locals_.append(t["local"])
                continue
            chain = r["chain"]
            if r["target"] != "ACCEPT":
                text = _rule_text(r)
                key = _rule_text(r, comment=False)
                if key not in singles:
                    singles.add(key)
                    others[chain].append(text)
                continue
            field = _varying(r)
            if field is None:
                key = _rule_text(r, comment=False)
                if key not in singles:
                    singles.add(key)
                    accepts[chain].append((None, _rule_text(r)))
                continue
            shape = _shape(r, field)
            if shape not in groups:
                groups[shape] = []
                accepts[chain].append((shape, r))
            if r[field] not in groups[shape]:
                groups[shape].append(r[field])

    foreign_pairs, open_locals = [], set()
    for local, remote in exempt:
        local = None if local in (None, ANY4) else local
        remote = None if remote in (None, ANY4) else remote
        if local is not None and remote is not None:
            foreign_pairs.append(local + " . " + remote)
        elif remote is not None:       # any local address: each of ours it could take
            foreign_pairs.extend(l + " . " + remote for l in locals_)
        elif local is not None:
            open_locals.add(local)
        else:                          # a fully wildcard device (sit0 up) takes anything: drop nothing
            open_locals.update(locals_)
    foreign_pairs = [fp for fp in dict.fromkeys(foreign_pairs) if fp not in peers]
    drop_locals = [l for l in locals_ if l not in open_locals]

    chains = {"input": [], "forward": [], "output": []}
    sets = []
    if peers:
        sets.append((PEERS, "ipv4_addr . ipv4_addr", [e + " counter" for e in peers], ("counter",)))
        chains["input"].append("meta l4proto ipv6 ip daddr . ip saddr @" + PEERS + ' counter accept comment "'
                               + PEERS + '"')
    if foreign_pairs and drop_locals:
        sets.append((FOREIGN, "ipv4_addr . ipv4_addr", foreign_pairs, ()))
        chains["input"].append("meta l4proto ipv6 ip daddr . ip saddr @" + FOREIGN + " accept")
    if guarded:
        sets.append((SOURCES, "ifname . ipv6_addr", list(dict.fromkeys(sources)), ("flags interval",)))
        sets.append((SPOOFED, "ifname", [d + " counter" for d in dict.fromkeys(guarded)], ("counter",)))
        # before every accept: a spoofed packet must not pass as traffic *to* another tunnel either
        chains["forward"].append("iifname . ip6 saddr != @" + SOURCES + " iifname @" + SPOOFED
                                 + ' counter drop comment "' + SPOOFED + '"')
    for chain in _CHAINS:
        for shape, r in accepts[chain]:
            if shape is None:
                chains[chain].append(r)
                continue
            name = _check_name(_set_name(shape))
            field = shape[1]
            values = groups[shape]
            if field == "src_ip":
                typ = "ipv6_addr" if r["family"] == "ipv6" or ":" in values[0] else "ipv4_addr"
                flags = ["flags interval"] if any("/" in v for v in values) else []
                sets.append((name, typ, values, tuple(flags)))
            else:
                sets.append((name, "ifname", [_quote(v) for v in values], ()))
            chains[chain].append(_rule_text(r, field, name, comment=False) + " comment " + _quote(name))
    if drop_locals:
        sets.append((LOCALS, "ipv4_addr", drop_locals, ()))
        chains["input"].append("meta l4proto ipv6 ip daddr @" + LOCALS + ' counter drop comment "'
                               + LOCALS + '"')
    for chain in _CHAINS:
        chains[chain].extend(others[chain])
    if mss_clamp and tunnels and any(chains.values()):
        sets.append((TUNNELS, "ifname", [_quote(d) for d in dict.fromkeys(tunnels)], ()))
        # both ends clamp the SYNs that leave through their tunnel, so every handshake crossing it is
        # clamped once; `rt mtu` is the route's MTU (the tunnel's), and the kernel only ever lowers an MSS
        chains["forward"].insert(0, "oifname @" + TUNNELS + " tcp flags syn tcp option maxseg size set rt mtu")
    return sets, chains


# ---- comparing ---------------------------------------------------------------------------------

def normalise(text):
    """Text of a table in a form that compares equal whenever nft would load the same table: white space
    collapsed, set elements sorted (the kernel keeps them in hash order), protocol 41 by one name
    (`nft list` prints the /etc/protocols name when there is one)."""
    if text is None:
        return None
    flat = " ".join(text.split())
    flat = flat.replace("meta l4proto 41 ", "meta l4proto ipv6 ")
    out = []
    pos = 0
    marker = "elements = { "
    while True:
        i = flat.find(marker, pos)
        if i < 0:
            out.append(flat[pos:])
            break
        j = flat.find(" }", i)
        out.append(flat[pos:i + len(marker)])
        items = flat[i + len(marker):j].split(", ")
        out.append(", ".join(sorted(items)))
        pos = j
    return "".join(out)


# ---- running nft -------------------------------------------------------------------------------

def _nft(args, netns=None, stdin=None):
    # the child inherits the namespace of the thread that forks it: no `ip netns exec` (which also
    # remounts /sys, ~10x the cost of nft itself under TCG)
    from sixbroker.linux.apply_kernel import _InNetns
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    try:
        with _InNetns(netns):
            return subprocess.run(["nft"] + args, input=stdin, capture_output=True, text=True, env=env)
    except FileNotFoundError as e:
        raise SixbrokerError("NFT_MISSING", str(e))


def _error_line(stderr):
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        if "Error:" in ln:
            return ln
    return lines[0] if lines else "no message"


def loaded(table=TABLE, netns=None):
    """Our table as `nft -s list` prints it, or None when there is none."""
    _check_name(table)
    p = _nft(["-s", "list", "table", FAMILY, table], netns)
    if p.returncode == 0:
        return p.stdout
    if "No such file or directory" in p.stderr:
        return None
    raise SixbrokerError("NFT_FAIL", _error_line(p.stderr))


def _load(text, netns):
    p = _nft(["-f", "-"], netns, stdin=text)
    if p.returncode != 0:
        raise SixbrokerError("NFT_FAIL", _error_line(p.stderr))


def _replace_text(table, body):
    # declaring the table first makes the delete valid when it does not exist yet; all of it is one
    # transaction, so the old table is never half gone and no packet passes without one of them
    head = "table " + FAMILY + " " + table + "\ndelete table " + FAMILY + " " + table + "\n"
    return head + (body or "")


def apply(plans, netns=None, table=TABLE, exempt=(), mss_clamp=True):
    """Make our table exactly what the plans want; load nothing when it already is."""
    desired = ruleset(plans, table, exempt, mss_clamp)
    current = loaded(table, netns)
    if normalise(current) == normalise(desired):
        return Result(False, desired)
    _load(_replace_text(table, desired), netns)
    return Result(True, desired)


# ---- one tunnel at a time -----------------------------------------------------------------------
# The broker's add and remove change one tunnel among many: its set elements, never a rule.  Loading the
# whole table again would cost the same at 1000 tunnels as creating it; `nft add/delete element` costs
# the same at any size.

def _shape_and_elements(plans, mss_clamp):
    sets, chains = _build(plans, (), mss_clamp)
    shape = ([(name, typ, tuple(flags)) for name, typ, _, flags in sets if name != FOREIGN],
             dict((c, list(rules)) for c, rules in chains.items() if rules))
    elements = dict((name, set(els)) for name, _, els, _ in sets if name != FOREIGN)
    return shape, elements


def _owned(element, devices):
    """Whether a set element belongs to one of the devices alone: it is the device (with its counter),
    or a `device . prefix` pair."""
    key = _key(element)
    return key in devices or key.split(" . ", 1)[0] in devices


def _key(element):
    # a set element with its statements (`a . b counter`) as a delete names it: by its key alone
    return element[:-len(" counter")] if element.endswith(" counter") else element


def change_text(before, after, other, table=TABLE, mss_clamp=True):
    """The nft script that turns the table of (other tunnels + before) into the table of (other tunnels +
    after) by set elements alone, or None when the rules themselves would change (the first tunnel, the
    last one, a tunnel unlike the others): the caller then applies the whole table.

    before, after: the changed tunnels' plans (old and new); other: the plan of one tunnel that stays.
    A tunnel's own elements (its device's name, its `device . prefix` sources, its `local . peer` pair:
    the kernel keeps devices and pairs unique) go with it.  Any other element (an endpoint address, a source address) may be shared with tunnels not
    named here: it stays when `other` has it too, and when it does not, nobody can say without all the
    plans, so None.
    """
    parts = _change_parts(before, after, other, table, mss_clamp)
    return None if parts is None else parts[0]


def _change_parts(before, after, other, table, mss_clamp):
    """(change_text, [(set name, set type, element, +1 added or -1 deleted)]) or None."""
    _check_name(table)
    if other is None:
        return None
    shape, other_els = _shape_and_elements([other], mss_clamp)
    with_before, before_els = _shape_and_elements([other] + list(before), mss_clamp)
    with_after, after_els = _shape_and_elements([other] + list(after), mss_clamp)
    if not shape[1] or with_before != shape or with_after != shape:
        return None
    types = dict((name, (typ, flags)) for name, typ, flags in shape[0])
    own = set(_quote(p["tunnel"]["device"]) for p in before)
    lines, moves = [], []
    for name in sorted(before_els):
        gone = sorted(before_els[name] - after_els.get(name, set()) - other_els.get(name, set()))
        if any(name != PEERS and not _owned(e, own) for e in gone):
            return None
        if gone:
            lines.append("delete element %s %s %s { %s }" % (FAMILY, table, name, ", ".join(_key(e) for e in gone)))
            moves.extend((name, types[name], _key(e), -1) for e in gone)
    for name in sorted(after_els):
        new = sorted(after_els[name] - before_els.get(name, set()))
        if new:
            lines.append("add element %s %s %s { %s }" % (FAMILY, table, name, ", ".join(new)))
            moves.extend((name, types[name], _key(e), 1) for e in new)
    return "".join(line + "\n" for line in lines), moves


def change(before, after, other, netns=None, table=TABLE, mss_clamp=True):
    """Apply change_text() as one transaction; a Result, or None when it cannot be done by elements or
    the table refused it (not there, an element already gone): the caller applies the whole table.
    The Result's `delta` is what the change adds to the table's digest (see token()), None when an
    element's kernel form is not known here."""
    parts = _change_parts(before, after, other, table, mss_clamp)
    if parts is None:
        return None
    text, moves = parts
    if not text:
        return Result(False, text)
    p = _nft(["-f", "-"], netns, stdin=text)
    if p.returncode != 0:
        return None
    result = Result(True, text)
    result.delta = _delta(table, moves)
    return result


# ---- the proof that our table is as we left it ---------------------------------------------------
# `apply` with nothing to do, and add/remove/set of one tunnel, trust a record of the table instead of
# reading it through `nft` (a process, and text that grows with the tunnels).  The ruleset generation
# (NFT_MSG_GETGEN) alone moves with every other nftables user's change (fail2ban, Docker, a firewall
# reload), so it only ever proves "nothing changed anywhere"; when it moved, the table itself is read
# over netlink and summed into a digest: one 128-bit hash per item (the table, each chain, rule and set
# as the kernel reports them, each set element by its key), added up, so a one-tunnel change moves the
# digest by what its elements add and remove (Result.delta), without reading the table again.
# Counters (rule `counter`, per-element counters, base-chain counters) are left out: packets move them.
# A rule is hashed with its expressions, not by its handle alone: `nft replace rule` keeps the handle
# (net/netfilter/nf_tables_api.c, nf_tables_newrule: with NLM_F_REPLACE the handle is the one given).

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
        if field in ("ipv4_addr", "ipv6_addr") and "-" not in value:
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


def _delta(table, moves):
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
        for a in nl.nft_dump(sock, NFT_GETSETELEM, NFPROTO_INET, name + nl.attr(2, setname)):
            total += _elements(setname.rstrip(b"\0"), a.get(_ELEM_LIST, b""))
    return "%032x" % (total % DIGEST_MOD)


def _elements(sname, buf):
    """The digest of one message's set elements.  The loop that costs with 1000 tunnels (several
    thousand elements): attributes are walked in place, no dict per element."""
    total = 0
    unpack = struct.unpack_from
    pos, n = 0, len(buf)
    while pos + 4 <= n:
        length = unpack("H", buf, pos)[0]
        if length < 4:
            break
        end = pos + length
        p = pos + 4
        key, flags, rest = b"", 0, None
        while p + 4 <= end:
            alen, typ = unpack("HH", buf, p)
            if alen < 4:
                break
            typ &= 0x3FFF
            if typ == _ELEM_KEY:        # nested: NFTA_DATA_VALUE first
                key = buf[p + 8:p + 4 + unpack("H", buf, p + 4)[0]]
            elif typ == _ELEM_FLAGS:
                flags = unpack(">I", buf, p + 4)[0]
            elif typ not in _ELEM_STATE:
                rest = (rest or []) + [b"%d=" % typ + buf[p + 4:p + alen]]
            p += (alen + 3) & ~3
        if rest:
            total += _h(b"elem-extra", sname, key, *rest)
        total += _element_hash(sname, key, flags)
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
    from sixbroker.linux.apply_kernel import _InNetns
    _check_name(table)
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        with _InNetns(netns):
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


def remove(table=TABLE, netns=None):
    """Delete our table; True when there was one."""
    if loaded(table, netns) is None:
        return False
    _load(_replace_text(table, None), netns)
    return True


def _element_counters(s):
    """{key: {packets, bytes}} of one set as `nft -j` lists it; a concatenated key joined by " . "."""
    out = {}
    for e in s.get("elem", []):
        el = e.get("elem", e) if isinstance(e, dict) else e
        val = el.get("val") if isinstance(el, dict) else el
        cnt = (el.get("counter") if isinstance(el, dict) else None) or {}
        if isinstance(val, dict) and "concat" in val:
            val = " . ".join(str(v) for v in val["concat"])
        out[str(val)] = {"packets": cnt.get("packets", 0), "bytes": cnt.get("bytes", 0)}
    return out


def _listed_json(args, netns):
    p = _nft(["-j", "list"] + args, netns)
    if p.returncode != 0:
        if "No such file or directory" in p.stderr:
            return None
        raise SixbrokerError("NFT_FAIL", _error_line(p.stderr))
    return json.loads(p.stdout).get("nftables", [])


def counters(table=TABLE, netns=None):
    """Counters of our table: {"peers": {"local . peer": {packets, bytes}}, "spoofed": {device: {...}},
    "rules": {name: {...}}}.  A rule over a set is named for the set."""
    _check_name(table)
    items = _listed_json(["table", FAMILY, table], netns)
    if items is None:
        return None
    out = {"peers": {}, "spoofed": {}, "rules": {}}
    index = {}
    for item in items:
        s = item.get("set")
        if s and s.get("name") == PEERS:
            out["peers"] = dict((k, v) for k, v in _element_counters(s).items() if " . " in k)
        elif s and s.get("name") == SPOOFED:
            out["spoofed"] = _element_counters(s)
        r = item.get("rule")
        if r:
            chain = r.get("chain")
            index[chain] = index.get(chain, 0) + 1
            cnt = None
            for stmt in r.get("expr", []):
                if isinstance(stmt, dict) and "counter" in stmt:
                    cnt = stmt["counter"]
            if cnt is not None:
                name = r.get("comment") or chain + ":" + str(index[chain])
                out["rules"][name] = {"packets": cnt.get("packets", 0), "bytes": cnt.get("bytes", 0)}
    return out


def spoofed(table=TABLE, netns=None):
    """Packets dropped per tunnel device for an inner source outside its prefixes: {device: {packets,
    bytes}}, from one set (cheaper than counters()); {} when there is no table or no guarded tunnel."""
    _check_name(table)
    items = _listed_json(["set", FAMILY, table, SPOOFED], netns)
    for item in items or []:
        if "set" in item:
            return _element_counters(item["set"])
    return {}
