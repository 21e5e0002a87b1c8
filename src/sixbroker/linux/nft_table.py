"""Plans into the text of our nftables table: sets and rules, and the element changes of one tunnel.

CPython only; pure (no nft is run here: apply_nft.py loads the text).  The table is ours alone; no other
table is read for decisions or touched.  Its base chains have policy accept, so an `accept` here never
overrides a `drop` in another table (nft runs every base chain on a hook; a packet must pass all of them).
What this table adds on its own is therefore: counters, the drops and rejects the plans ask for, the
protocol-41 drop, and MSS clamping.

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

The shared device (sit.SharedSit, `shared=` its name): every tunnel comes in through one device, so the
device says nothing about the peer, and the inner source is bound to the peer on the outer packet, at
input, where both are in view.  The peers rule jumps, instead of accepting, to the chain `sources6in4`,
where `ip saddr . @th,64,N` (the outer source, and the first N bits of the inner IPv6 source: the IPv6
header follows the IPv4 one, its source starts 64 bits in) is looked up in a hash set of `peer . prefix`
per prefix length class N, a multiple of 8.  A prefix of length L goes into class ceil8(L), expanded
into 2**(ceil8(L) - L) elements (a /60: 16 /64s; /48, /56, /64 and the /127's two /128s: as they are),
so every lookup is an exact hash lookup, whatever the number of tunnels; one per class in use (usually
two: the routed prefixes' and 128 for the transfer addresses), the routed classes first.  A packet
found in none is dropped, counted on its peer's element of `spoofed6in4`.  The kernel hands the input
hook reassembled packets, so the inner header is there; a packet too short for it matches nothing and
is dropped.  (The raw payload sits in a chain of its own: nft 1.0.6 cannot list `@th` after a
`meta l4proto ipv6` in the same rule.)

Order within a chain: the ACCEPT rules (aggregated), then the rules with other verdicts in plan order.
That is the plans' own order as long as no plan puts an ACCEPT after a DROP or REJECT in one chain (plan.py
never does: a policy is allow-list then default deny); ruleset() refuses such a plan.

Traffic per tunnel (linux/traffic.py reads it), the same in any kernel mapping because it is keyed by
`local . peer`, not by device: received = the `peers6in4` element counters; sent = the elements of `sent6in4`,
counted by `meta l4proto ipv6 ip saddr . ip daddr @sent6in4 counter` in the output chain (no verdict); and
the time of the peer's last packet from `seen6in4`, a dynamic set with a timeout that
`... @peers6in4 update @seen6in4 { ip daddr . ip saddr } counter accept` refreshes on every packet from a peer: seconds since that packet = SEEN_TIMEOUT - the element's
`expires`.  (nft's `last` statement would say it directly, but Debian 12's nft 1.0.6 cannot parse it.)
The update is part of the `peers6in4` accept rule, not a rule of its own: every lookup that finds an
element runs the element's counter, so a second lookup would count each packet twice.
Packets put elements into `seen6in4`, so normalise() and nft_token leave its elements out: they are state,
like counters.

The text is written in the form `nft -s list table` prints, so a loaded table compares with the desired
one after normalise() (white space, set element order).  tests/linux/test_nft_host.py holds the two forms
together.
"""

TABLE = "sixbroker"
FAMILY = "inet"
COMMENT = "sixbroker: generated, replaced whole on every apply; do not edit"

PEERS = "peers6in4"          # local . peer of our tunnels
FOREIGN = "foreign6in4"      # local . peer of sit devices that are not ours (exempt from our drop)
LOCALS = "locals6in4"        # our tunnel endpoints: protocol 41 to them from anyone else is dropped
TUNNELS = "tunnels"          # our tunnel devices, for MSS clamping
SOURCES = "sources6"         # device . prefix: the inner sources each guarded tunnel may forward
SPOOFED = "spoofed6"         # guarded devices, one drop counter each
SOURCES4 = "sources6in4"     # shared device: the chain binding a peer to its inner sources, and its sets' prefix
SPOOFED4 = "spoofed6in4"     # shared device: the peers, one drop counter each
SENT = "sent6in4"            # local . peer again, in the output chain: what we send each peer
SEEN = "seen6in4"            # local . peer of the peers heard from within SEEN_TIMEOUT (packets add them)
SEEN_TIMEOUT = 30 * 86400    # seconds; nft prints it as 30d
SEEN_SIZE = 65535

ANY4 = "0.0.0.0"
PROTO_6IN4 = 41

# `nft list` writes ct states in the kernel's bit order
_CT_ORDER = ("invalid", "established", "related", "new", "untracked")
_PROTO_WORDS = {41: "ipv6", "41": "ipv6", "icmpv6": "ipv6-icmp", "ipv6-icmp": "ipv6-icmp", "tcp": "tcp",
                "udp": "udp", 6: "tcp", 17: "udp", 58: "ipv6-icmp"}
_VERDICTS = {"ACCEPT": "accept", "DROP": "drop", "REJECT": "reject with icmpx admin-prohibited"}
_CHAINS = ("input", "forward", "output")


# ---- building the table ------------------------------------------------------------------------

def _quote(text):
    if '"' in text or "\\" in text or "\n" in text:
        raise ValueError("not writable in an nft string: %r" % text)
    return '"' + text + '"'


def check_name(name):
    """name, when nft takes it as an identifier (a table's or a set's); else ValueError."""
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
    lines = ["\tset " + name + " {", "\t\t" + (typ if typ.startswith("typeof ") else "type " + typ)]
    lines.extend("\t\t" + f for f in flags)
    if elements:        # only the dynamic set starts empty
        lines.append("\t\telements = { " + ",\n\t\t\t     ".join(elements) + " }")
    lines.append("\t}")
    return "\n".join(lines)


def ruleset(plans, table=TABLE, exempt=(), mss_clamp=True, shared=None):
    """The whole table as nft text, or None when the plans want no rules at all.

    exempt: (local, remote) pairs of sit devices that are not ours; "0.0.0.0" or None is a wildcard.
    shared: the shared device's name when every tunnel runs over it (see above).
    """
    check_name(table)
    sets, chains = _build(plans, exempt, mss_clamp, shared)
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
    if chains.get(SOURCES4):
        out.append("\tchain " + SOURCES4 + " {")
        out.extend("\t\t" + line for line in chains[SOURCES4])
        out.append("\t}")
    out.append("}")
    return "\n".join(out) + "\n"


def source_classes(peer, prefixes):
    """{class N: [`peer . value` elements]} of one peer's inner source prefixes (see above)."""
    import socket
    out = {}
    for net in prefixes:
        address, _, length = net.partition("/")
        length = int(length or 128)
        n = max(8, -(-length // 8) * 8)
        top = int.from_bytes(socket.inet_pton(socket.AF_INET6, address), "big") >> (128 - length)
        for i in range(1 << (n - length)):
            out.setdefault(n, []).append("%s . %#x" % (peer, (top << (n - length)) | i))
    return out


def _build(plans, exempt, mss_clamp, shared=None):
    """([(set name, type, [element], [flag])], {chain: [rule text]}): the table before it is text.

    Linear in the plans: what must be unique and keep its first-seen order is a dict's keys, never a list
    searched with `in` (10,000 tunnels made that 10**8 comparisons)."""
    peers, locals_, tunnels = {}, {}, []
    sources, guarded = [], []
    accepts = {"input": [], "forward": [], "output": []}    # [(shape or None, rule)] in first-seen order
    groups = {}                                             # shape -> {value: None}, first seen first
    others = {"input": [], "forward": [], "output": []}
    singles = set()
    classes, spoofed4 = {}, []
    for p in plans:
        _check_order(p)
        t = p["tunnel"]
        if shared:
            # one device for all: its name in every rule the plan writes for the tunnel's own
            p = _on_device(p, t["device"], shared)
            tunnels.append(shared)
            if p["firewall"].get("sources") is not None:
                spoofed4.append(t["remote"])
                for n, els in source_classes(t["remote"], p["firewall"]["sources"]).items():
                    classes.setdefault(n, []).extend(els)
        else:
            tunnels.append(t["device"])
        if p["firewall"].get("sources") is not None and not shared:
            guarded.append(_quote(t["device"]))
            sources.extend(_quote(t["device"]) + " . " + net for net in p["firewall"]["sources"])
        for r in p["firewall"]["rules"]:
            if _is_6in4_accept(r):
                peers[t["local"] + " . " + r["src_ip"]] = None
                locals_[t["local"]] = None
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
                groups[shape] = {}
                accepts[chain].append((shape, r))
            groups[shape][r[field]] = None

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
    peers, locals_ = list(peers), list(locals_)
    drop_locals = [l for l in locals_ if l not in open_locals]

    chains = {"input": [], "forward": [], "output": []}
    sets = []
    if peers:
        sets.append((PEERS, "ipv4_addr . ipv4_addr", [e + " counter" for e in peers], ("counter",)))
        verdict = "jump " + SOURCES4 if spoofed4 else "accept"
        # the update rides on this rule's lookup: a lookup of its own would count every packet twice (an
        # element's counter counts each lookup that finds it)
        chains["input"].append("meta l4proto ipv6 ip daddr . ip saddr @" + PEERS + " update @" + SEEN
                               + " { ip daddr . ip saddr } counter " + verdict + ' comment "' + PEERS + '"')
        _traffic(sets, chains, peers)
    if spoofed4:
        chains[SOURCES4] = []
        for n in sorted(classes):
            name = "%s_%d" % (SOURCES4, n)
            sets.append((name, "typeof ip saddr . @th,64,%d" % n, list(dict.fromkeys(classes[n])), ()))
            chains[SOURCES4].append("ip saddr . @th,64,%d @%s accept" % (n, name))
        sets.append((SPOOFED4, "ipv4_addr", [a + " counter" for a in dict.fromkeys(spoofed4)], ("counter",)))
        chains[SOURCES4].append("ip saddr @" + SPOOFED4 + " drop")
        chains[SOURCES4].append("drop")
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
            name = check_name(_set_name(shape))
            field = shape[1]
            values = list(groups[shape])
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


def _on_device(plan, device, shared):
    rules = []
    for r in plan["firewall"]["rules"]:
        r = dict(r)
        for key in ("iif", "oif"):
            if r[key] == device:
                r[key] = shared
        rules.append(r)
    out = dict(plan)
    out["firewall"] = dict(plan["firewall"], rules=rules)
    return out


def _traffic(sets, chains, peers):
    """What counts each peer's traffic both ways and remembers its last packet (see the module's text)."""
    sets.append((SENT, "ipv4_addr . ipv4_addr", [e + " counter" for e in peers], ("counter",)))
    sets.append((SEEN, "ipv4_addr . ipv4_addr", [], ("size %d" % SEEN_SIZE, "flags dynamic,timeout",
                                                     "timeout %dd" % (SEEN_TIMEOUT // 86400))))
    chains["output"].append("meta l4proto ipv6 ip saddr . ip daddr @" + SENT + ' counter comment "' + SENT + '"')


# ---- comparing ---------------------------------------------------------------------------------

def normalise(text):
    """Text of a table in a form that compares equal whenever nft would load the same table: white space
    collapsed, set elements sorted (the kernel keeps them in hash order), protocol 41 by one name
    (`nft list` prints the /etc/protocols name when there is one)."""
    if text is None:
        return None
    flat = " ".join(text.split())
    flat = _without_seen(flat)
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


def _without_seen(flat):
    """flat text with the elements of SEEN left out: packets put them there."""
    head = "set " + SEEN + " { "
    i = flat.find(head)
    if i < 0:
        return flat
    j = flat.find("elements = { ", i)
    end = flat.find(" }", i)
    if j < 0 or j > end:
        return flat
    k = flat.find(" }", j)
    return flat[:j].rstrip() + flat[k + 2:]


# ---- one tunnel at a time -----------------------------------------------------------------------
# The broker's add and remove change one tunnel among many: its set elements, never a rule.  Loading the
# whole table again would cost the same at 1000 tunnels as creating it; `nft add/delete element` costs
# the same at any size.

def _shape_and_elements(plans, mss_clamp, shared=None):
    sets, chains = _build(plans, (), mss_clamp, shared)
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


def change_text(before, after, other, table=TABLE, mss_clamp=True, shared=None):
    """The nft script that turns the table of (other tunnels + before) into the table of (other tunnels +
    after) by set elements alone, or None when the rules themselves would change (the first tunnel, the
    last one, a tunnel unlike the others): the caller then applies the whole table.

    before, after: the changed tunnels' plans (old and new); other: the plan of one tunnel that stays.
    A tunnel's own elements (its device's name, its `device . prefix` sources, its `local . peer` pair:
    the kernel keeps devices and pairs unique) go with it.  Any other element (an endpoint address, a source address) may be shared with tunnels not
    named here: it stays when `other` has it too, and when it does not, nobody can say without all the
    plans, so None.
    """
    parts = change_parts(before, after, other, table, mss_clamp, shared)
    return None if parts is None else parts[0]


def change_parts(before, after, other, table, mss_clamp, shared=None):
    """(change_text, [(set name, set type, element, +1 added or -1 deleted)]) or None: the text, and the
    moves that nft_token.delta() turns into the digest's change."""
    check_name(table)
    if other is None:
        return None
    shape, other_els = _shape_and_elements([other], mss_clamp, shared)
    with_before, before_els = _shape_and_elements([other] + list(before), mss_clamp, shared)
    with_after, after_els = _shape_and_elements([other] + list(after), mss_clamp, shared)
    if not shape[1] or with_before != shape or with_after != shape:
        return None
    types = dict((name, (typ, flags)) for name, typ, flags in shape[0])
    # (a shared device's per-peer elements start with the peer, which the database keeps unique too)
    own = set(_quote(p["tunnel"]["device"]) for p in before) | set(p["tunnel"]["remote"] for p in before)
    lines, moves = [], []
    for name in sorted(before_els):
        gone = sorted(before_els[name] - after_els.get(name, set()) - other_els.get(name, set()))
        if any(name not in (PEERS, SENT) and not _owned(e, own) for e in gone):
            return None
        if gone:
            lines.append("delete element %s %s %s { %s }" % (FAMILY, table, name, ", ".join(_key(e) for e in gone)))
            moves.extend((name, types[name], _key(e), -1) for e in gone)
        if gone and name == PEERS:
            # a peer gone takes its last-packet element along, which exists only if it ever sent: adding
            # it first (no error when it is there) makes the delete always valid.  Not a move: nft_token
            # leaves SEEN out
            pairs = ", ".join(_key(e) for e in gone)
            lines.append("add element %s %s %s { %s }" % (FAMILY, table, SEEN, pairs))
            lines.append("delete element %s %s %s { %s }" % (FAMILY, table, SEEN, pairs))
    for name in sorted(after_els):
        new = sorted(after_els[name] - before_els.get(name, set()))
        if new:
            lines.append("add element %s %s %s { %s }" % (FAMILY, table, name, ", ".join(new)))
            moves.extend((name, types[name], _key(e), 1) for e in new)
    return "".join(line + "\n" for line in lines), moves
