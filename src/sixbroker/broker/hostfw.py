"""Other firewalls on the broker's host: which of their rules would drop tunnel traffic.  Read only.

nftables runs every base chain on a hook, whatever table it is in, and a packet must pass all of them:
the accept in `inet sixbroker` cannot override a drop elsewhere (ufw's and Docker's `ip6 filter FORWARD`
with policy drop, firewalld's final `reject` in `inet firewalld filter_FORWARD`, an input chain that lets
in only ssh).  So `apply` and `info` read the other tables' filter chains (read(): `nft -j list`), send
three probe packets per tunnel through every other table's filter base chains, and report the rule (or policy) that
stops one, with the one-line fix for the firewall that owns it.  Nothing here changes a rule.

The probes are the packets a tunnel needs, as the first of a flow (ct state new: the home speaks first):
  in       IPv4 protocol 41 from the peer to the tunnel's local address, in over the uplink
  from     IPv6 TCP forwarded from the tunnel device, source in its routed prefix, out over the uplink
  to       IPv6 TCP forwarded to the tunnel device, destination in its routed prefix, in over the uplink
(TCP stands for what a home sends; a rule for ICMPv6 or UDP alone does not let it through.)
A match on something a probe does not fix (a port, a mark, the uplink's name when none is configured)
is "maybe": a rule that maybe drops is not reported, and a rule that maybe accepts ends the walk with no
verdict, so a warning is only given where the packet certainly dies.  Rules written by iptables-nft that
nft cannot show natively (`xt` expressions) are "maybe" too.
"""

import socket

from sixbroker.core import addr
from sixbroker.core.errors import CODES

CODE = "HOST_FIREWALL_DROPS"
OURS = ("inet", "sixbroker")
# families whose base chains see our packets: IPv4 for protocol 41, IPv6 for the forwarded ones
_SEES = {"in": ("ip", "inet"), "from": ("ip6", "inet"), "to": ("ip6", "inet")}
_HOOKS = {"in": ("prerouting", "input"), "from": ("prerouting", "forward"), "to": ("prerouting", "forward")}
_WORDS = {"in": "protocol 41 from the peers", "from": "forwarding from the tunnels",
          "to": "forwarding to the tunnels"}
_PROTO = {"tcp": 6, "udp": 17, "icmp": 1, "ipv6-icmp": 58, "icmpv6": 58, "ipv6": 41, "sctp": 132,
          "gre": 47, "esp": 50, "ah": 51}
_TRANSPORT = ("tcp", "udp", "sctp", "dccp", "udplite", "icmp", "icmpv6", "th")
_DEPTH = 16
_MAYBE = None


class _SomeDevice:
    """The uplink when its name is not configured: some device, never loopback and never a tunnel."""

    def __init__(self, never):
        self.never = never

    def equals(self, name):
        if name == "lo" or name in self.never or (name.endswith("*") and name.startswith(_OURS_PREFIX)):
            return False
        return _MAYBE


_OURS_PREFIX = "sbs-"


def probes(plans, uplink=None):
    """[(kind, tunnel name, packet)] for the plans (plan.broker's); packet: field -> value."""
    out = []
    if uplink is None:
        uplink = _SomeDevice(set(p["tunnel"]["device"] for p in plans))
    for p in plans:
        t = p["tunnel"]
        name = p["tunnel"]["device"]
        sources = p["firewall"].get("sources") or []
        host = _first_host(sources[-1]) if sources else None
        base = {"ct state": "new", "ct status": (), "pkttype": "host"}
        out.append(("in", name, dict(base, nfproto="ipv4", l4proto=41, iifname=uplink, oifname=None,
                                     saddr=t["remote"], daddr=t["local"], **{"fib daddr type": "local"})))
        out.append(("from", name, dict(base, nfproto="ipv6", l4proto=6, iifname=t["device"],
                                       oifname=uplink, saddr=host, daddr=None, **{"fib daddr type": "unicast"})))
        out.append(("to", name, dict(base, nfproto="ipv6", l4proto=6, iifname=uplink,
                                     oifname=t["device"], saddr=None, daddr=host, **{"fib daddr type": "unicast"})))
    return out


# ---- the ruleset ------------------------------------------------------------------------------------

class Ruleset:
    """`nft -j list` items, indexed: base chains, chains' rules, named sets."""

    def __init__(self, items):
        self.chains, self.rules, self.sets = {}, {}, {}
        for item in items:
            if "chain" in item:
                c = item["chain"]
                self.chains[(c["family"], c["table"], c["name"])] = c
            elif "rule" in item:
                r = item["rule"]
                self.rules.setdefault((r["family"], r["table"], r["chain"]), []).append(r)
            elif "set" in item or "map" in item:
                s = item.get("set") or item.get("map")
                self.sets[(s["family"], s["table"], s["name"])] = s.get("elem", [])

    def base_chains(self, families, hooks):
        out = []
        for key, c in sorted(self.chains.items(), key=lambda kv: (kv[1].get("prio", 0), kv[0])):
            if (key[0], key[1]) == OURS or key[0] not in families or c.get("hook") not in hooks:
                continue
            if c.get("type", "filter") != "filter":
                continue
            out.append(key)
        return out

    def table_has_chain(self, family, table, prefix):
        return any(k[0] == family and k[1] == table and k[2].startswith(prefix) for k in self.chains)


def read(netns=None):
    """The other tables that can drop our packets (a Ruleset): those with a filter base chain on the
    prerouting, input or forward hook.  `nft -j list chains` finds them without listing set elements
    (ours alone hold one per tunnel), then each is listed whole (its jumps and sets stay inside it)."""
    items = _listed(["chains"], netns)
    tables = []
    for item in items:
        c = item.get("chain")
        if (not c or (c["family"], c["table"]) == OURS or c["family"] not in ("ip", "ip6", "inet")
                or c.get("type", "filter") != "filter" or c.get("hook") not in ("prerouting", "input", "forward")):
            continue
        if (c["family"], c["table"]) not in tables:
            tables.append((c["family"], c["table"]))
    out = []
    for family, table in tables:
        out.extend(_listed(["table", family, table], netns))
    return Ruleset(out)


def _listed(what, netns):
    import json
    from sixbroker.linux import apply_nft
    from sixbroker.core.errors import SixbrokerError
    p = apply_nft.run(["-j", "list"] + what, netns)
    if p.returncode != 0:
        raise SixbrokerError("NFT_FAIL", apply_nft.error_line(p.stderr))
    return json.loads(p.stdout or "{}").get("nftables", [])


# ---- one expression against one probe ----------------------------------------------------------------

def _not(v):
    return _MAYBE if v is _MAYBE else not v


def _ip(text):
    """(version, integer) of an address text, else None.  The C parser: this runs per probe."""
    try:
        if ":" in text:
            return (6, int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big"))
        if text.count(".") == 3:
            return (4, int.from_bytes(socket.inet_aton(text), "big"))
    except (OSError, TypeError, ValueError):
        pass
    return None


def _first_host(prefix):
    """The address after a prefix's own (its ::1): one a home numbers its LAN from."""
    net = prefix.split("/")[0]
    return socket.inet_ntop(socket.AF_INET6, (int.from_bytes(socket.inet_pton(socket.AF_INET6, net), "big")
                                              + 1).to_bytes(16, "big"))


def _field(left, pkt):
    """(value, applies): the probe's value of an expression's left side; applies False when the packet
    cannot have the field at all (nft's implicit dependency, e.g. `tcp dport` on protocol 41, fails)."""
    if "meta" in left:
        key = left["meta"]["key"]
        if key in ("iifname", "oifname", "iif", "oif"):
            return pkt[key.replace("name", "") + "name"], True
        if key in ("l4proto", "nfproto"):
            return pkt[key], True
        if key == "pkttype":
            return pkt["pkttype"], True
        return _MAYBE, True
    if "payload" in left:
        pl = left["payload"]
        proto, field = pl.get("protocol"), pl.get("field")
        if proto in ("ip", "ip6"):
            if pkt["nfproto"] != ("ipv4" if proto == "ip" else "ipv6"):
                return _MAYBE, False
            if field in ("saddr", "daddr"):
                return pkt[field], True
            if field in ("protocol", "nexthdr"):
                return pkt["l4proto"], True
            return _MAYBE, True
        if proto in _TRANSPORT or proto is None:
            want = _PROTO.get(proto)
            if pkt["l4proto"] is not None and proto not in ("th", None) and want != pkt["l4proto"]:
                return _MAYBE, False
            return _MAYBE, True
        return _MAYBE, True
    if "fib" in left:
        # ufw's ufw-not-local: `fib daddr type local return`; the probes' destinations are known
        fib = left["fib"]
        if fib.get("result") == "type" and fib.get("flags") in (["daddr"], "daddr"):
            return pkt["fib daddr type"], True
        return _MAYBE, True
    if "ct" in left:
        key = left["ct"].get("key")
        if key == "state":
            return pkt["ct state"], True
        if key == "status":
            return pkt["ct status"], True
        return _MAYBE, True
    if "concat" in left:
        parts = [_field(x, pkt) for x in left["concat"]]
        if not all(ok for _, ok in parts):
            return _MAYBE, False
        return [v for v, _ in parts], True
    return _MAYBE, True


def _one(value, right, ruleset, table):
    """Whether value equals (or lies in) right; right is one nft JSON value."""
    if value is _MAYBE:
        return _MAYBE
    if isinstance(right, str) and right.startswith("@"):
        elems = ruleset.sets.get((table[0], table[1], right[1:]))
        if elems is None:
            return _MAYBE
        return _in_set(value, elems, ruleset, table)
    if isinstance(right, dict):
        if "set" in right:
            return _in_set(value, right["set"], ruleset, table)
        if "prefix" in right:
            v = _ip(value) if isinstance(value, str) else None
            if v is None:
                return _MAYBE
            try:
                net = addr.Network.parse("%s/%d" % (right["prefix"]["addr"], right["prefix"]["len"]), strict=False)
            except addr.AddressError:
                return _MAYBE
            return net.version == v[0] and net.contains(addr.Address.parse(value))
        if "range" in right:
            lo, hi = right["range"]
            a, b, v = _ip(lo), _ip(hi), _ip(value) if isinstance(value, str) else None
            if a and b and v:
                return a[0] == v[0] and a[1] <= v[1] <= b[1]
            if all(isinstance(x, int) for x in (lo, hi, value)):
                return lo <= value <= hi
            return _MAYBE
        if "elem" in right:
            return _one(value, right["elem"].get("val"), ruleset, table)
        if "concat" in right:
            if not isinstance(value, list) or len(value) != len(right["concat"]):
                return _MAYBE
            results = [_one(v, r, ruleset, table) for v, r in zip(value, right["concat"])]
            if False in results:
                return False
            return _MAYBE if _MAYBE in results else True
        return _MAYBE
    if isinstance(value, (tuple, list)) and not isinstance(right, list):
        return right in value
    return _scalar(value, right)


def _scalar(value, right):
    if isinstance(value, _SomeDevice):
        return value.equals(right) if isinstance(right, str) else False
    if isinstance(right, str) and isinstance(value, str):
        if right.endswith("*") and not right.endswith("\\*"):
            return value.startswith(right[:-1])       # iptables' `-i sbs+`, nft's "sbs*"
        a, b = _ip(value), _ip(right)
        if a and b:
            return a == b
        return value == right
    if isinstance(value, int) and isinstance(right, str):
        return _PROTO.get(right, right) == value
    if isinstance(value, str) and isinstance(right, int):
        return _PROTO.get(value, value) == right
    return value == right


def _in_set(value, elems, ruleset, table):
    seen_maybe = False
    for e in elems if isinstance(elems, list) else [elems]:
        r = _one(value, e, ruleset, table)
        if r is True:
            return True
        if r is _MAYBE:
            seen_maybe = True
    return _MAYBE if seen_maybe else False


def _match(m, pkt, ruleset, table):
    value, applies = _field(m["left"], pkt)
    if not applies:
        return False
    if value is _MAYBE:
        return _MAYBE
    op, right = m.get("op", "=="), m["right"]
    if op == "in" or (isinstance(right, list) and not isinstance(value, list)):
        # flags (ct state new,established): the packet's one flag among them
        flags = right if isinstance(right, list) else [right]
        if isinstance(value, (tuple, list)):
            return any(f in value for f in flags)
        return _in_set(value, flags, ruleset, table) if flags else False
    r = _one(value, right, ruleset, table)
    if op == "==":
        return r
    if op == "!=":
        return _not(r)
    return _MAYBE


# ---- walking the chains ---------------------------------------------------------------------------

_TERMINAL = ("accept", "drop", "reject", "jump", "goto", "return", "queue", "vmap")


def _rule_outcome(rule, pkt, ruleset, table):
    """(match: True/False/None, verdict statement or None) of one rule."""
    result = True
    for stmt in rule.get("expr", []):
        if "match" in stmt:
            r = _match(stmt["match"], pkt, ruleset, table)
            if r is False:
                return False, None
            if r is _MAYBE:
                result = _MAYBE
        elif "xt" in stmt:
            xt = stmt["xt"]
            if xt.get("type") == "target":
                if xt.get("name") in ("REJECT", "DROP"):
                    return result, {"drop": None}
                if xt.get("name") == "ACCEPT":
                    return result, {"accept": None}
                continue
            result = _MAYBE                # an iptables match nft cannot show: cannot say
        elif "limit" in stmt or "quota" in stmt or "meter" in stmt:
            result = _MAYBE if result else result
        elif any(k in stmt for k in _TERMINAL):
            return result, stmt
    return result, None


def walk(ruleset, key, pkt, depth=0):
    """("accept" | "drop" | "continue" | "unknown", rule or None) of one chain for one probe."""
    if depth > _DEPTH:
        return "unknown", None
    table = key[:2]
    for rule in ruleset.rules.get(key, []):
        m, verdict = _rule_outcome(rule, pkt, ruleset, table)
        if m is False or verdict is None:
            continue
        name = list(verdict)[0]
        if name == "accept":
            if m is True:
                return "accept", rule
            return "unknown", rule
        if name in ("drop", "reject"):
            if m is True:
                return "drop", rule
            continue
        if name in ("jump", "goto"):
            target = (key[0], key[1], verdict[name]["target"])
            outcome, where = walk(ruleset, target, pkt, depth + 1)
            if m is _MAYBE and outcome in ("accept", "drop", "unknown"):
                return "unknown", rule
            if outcome != "continue":
                return outcome, where
            if name == "goto":
                return "continue", None
            continue
        if name == "return":
            if m is True:
                return "continue", None
            return "unknown", rule
        return "unknown", rule            # queue, vmap: not followed
    return "continue", None


def base_outcome(ruleset, key, pkt):
    outcome, rule = walk(ruleset, key, pkt)
    if outcome == "continue":
        policy = ruleset.chains[key].get("policy", "accept")
        return ("drop", None) if policy == "drop" else ("accept", None)
    return outcome, rule


# ---- what to tell the user ---------------------------------------------------------------------------

def owner(ruleset, family, table):
    """Which firewall wrote a table: "ufw", "docker", "firewalld" or None."""
    if (family, table) == ("inet", "firewalld"):
        return "firewalld"
    if table == "filter" and family in ("ip", "ip6"):
        if ruleset.table_has_chain(family, table, "ufw"):
            return "ufw"
        if ruleset.table_has_chain(family, table, "DOCKER"):
            return "docker"
    return None


def fix(who, kind, family, table, chain):
    """The one change that lets the tunnels through, in the owner's own terms (files/broker/README.md)."""
    if who == "ufw":
        if kind == "in":
            return "add `-A ufw-before-input -p 41 -s PEER -j ACCEPT` per peer to /etc/ufw/before.rules, then `ufw reload`"
        return ("add `-A ufw6-before-forward -i sbs-+ -j ACCEPT` and `-A ufw6-before-forward -o sbs-+ -j ACCEPT` "
                "to /etc/ufw/before6.rules, then `ufw reload`")
    if who == "docker":
        if kind == "in":
            return "ip%stables -I INPUT -p 41 -s PEER -j ACCEPT" % ("" if family == "ip" else "6")
        return "ip6tables -I DOCKER-USER -i sbs-+ -j ACCEPT; ip6tables -I DOCKER-USER -o sbs-+ -j ACCEPT"
    if who == "firewalld":
        if kind == "in":
            return ("firewall-cmd --permanent --add-rich-rule='rule family=ipv4 source address=PEER protocol "
                    "value=ipv6 accept' (in the uplink's zone), then firewall-cmd --reload")
        return ("firewall-cmd --permanent --new-zone=sixbroker --set-target=ACCEPT and --zone=sixbroker "
                "--add-interface=sbs-+, a policy --new-policy=sixbroker-in --add-ingress-zone=ANY "
                "--add-egress-zone=sixbroker --set-target=ACCEPT, then firewall-cmd --reload")
    match = {"in": "meta l4proto ipv6 ip saddr PEER", "from": 'iifname "sbs-*"', "to": 'oifname "sbs-*"'}[kind]
    return "nft insert rule %s %s %s %s accept (before the rule that drops)" % (family, table, chain, match)


class _Classes:
    """What tells probes apart for the ruleset: a probe's device name matters only by which of the
    ruleset's strings it equals or matches ("sbs-*"), an address only by which of its addresses,
    prefixes and ranges hold it.  Probes of one class walk the chains alike, so each class is walked
    once: with rules that name no tunnel in particular, three walks for any number of tunnels."""

    def __init__(self, ruleset):
        self.strings, self.spans = set(), set()
        for key, rules in ruleset.rules.items():
            if key[:2] != OURS:
                for r in rules:
                    self._scan(r.get("expr", []))
        for key, elems in ruleset.sets.items():
            if key[:2] != OURS:
                self._scan(elems)
        self.wildcards = sorted(x[:-1] for x in self.strings if x.endswith("*"))
        self.spans = sorted(self.spans)
        self.names = {}

    def _span(self, lo, hi):
        a, b = _ip(lo), _ip(hi)
        if a and b and a[0] == b[0]:
            self.spans.add((a[0], a[1], b[1]))

    def _scan(self, x):
        if isinstance(x, str):
            if _ip(x):
                self._span(x, x)
            else:
                self.strings.add(x)
        elif isinstance(x, list):
            for y in x:
                self._scan(y)
        elif isinstance(x, dict):
            if "prefix" in x and isinstance(x["prefix"], dict):
                try:
                    net = addr.Network.parse("%s/%d" % (x["prefix"]["addr"], x["prefix"]["len"]), strict=False)
                    self._span(str(net.first), str(net.last))
                except (addr.AddressError, KeyError, TypeError):
                    pass
            elif "range" in x and isinstance(x["range"], list) and len(x["range"]) == 2:
                self._span(*[str(v) for v in x["range"]])
            else:
                for y in x.values():
                    self._scan(y)

    def of(self, pkt):
        key = []
        for field in ("iifname", "oifname"):
            v = pkt[field]
            if isinstance(v, str):
                v = self._name(v)
            key.append(v)
        for field in ("saddr", "daddr"):
            v = pkt[field]
            key.append(self._address(v) if isinstance(v, str) else None)
        return tuple(key)

    def _name(self, v):
        # every tunnel's probes carry the same few names (the uplink, the shared device): each classed once
        if v not in self.names:
            self.names[v] = (v if v in self.strings else None, tuple(w for w in self.wildcards if v.startswith(w)))
        return self.names[v]

    def _address(self, v):
        a = _ip(v)
        if a is None:
            return None
        if not self.spans:
            return ()
        return tuple(ver == a[0] and lo <= a[1] <= hi for ver, lo, hi in self.spans)


def check(plans, uplink=None, ruleset=None, netns=None):
    """[finding] for the tunnels' probes, one per (table, chain, rule, kind); finding: {"code", "table",
    "chain", "handle", "rule", "kind", "traffic", "tunnels", "owner", "fix", "message"}."""
    if not plans:
        return []
    rs = ruleset if ruleset is not None else read(netns)
    chains = dict((kind, rs.base_chains(_SEES[kind], _HOOKS[kind])) for kind in _SEES)
    if not any(chains.values()):
        return []           # no other firewall on our hooks: no probe to send, whatever the tunnels
    classes = _Classes(rs)
    walked = {}
    found = {}
    order = []
    for kind, device, pkt in probes(plans, uplink):
        cls = (kind, classes.of(pkt))
        if cls not in walked:
            walked[cls] = [(key, base_outcome(rs, key, pkt)) for key in chains[kind]]
        for key, (outcome, rule) in walked[cls]:
            if outcome != "drop":
                continue
            # the rule may be in a chain the base chain jumped to: name that one
            where = (key[0], key[1], rule["chain"]) if rule else key
            k = (where, rule.get("handle") if rule else None, kind)
            if k not in found:
                found[k] = {}
                order.append(k)
            # a dict, first seen first: a drop that meets every one of 10,000 tunnels must not search a
            # list of them each time; the shared device stands for every tunnel once
            found[k][device] = None
    out = []
    for k in order:
        (family, table, chain), handle, kind = k
        who = owner(rs, family, table)
        where = "%s %s %s" % (family, table, chain)
        rule = "policy drop" if handle is None else "rule handle %d" % handle
        devices = list(found[k])
        out.append({
            "code": CODE, "table": "%s %s" % (family, table), "chain": chain, "handle": handle, "rule": rule,
            "kind": kind, "traffic": _WORDS[kind], "tunnels": devices, "owner": who,
            "fix": fix(who, kind, family, table, chain),
            "message": "%s: %s (%s) drops %s (%d tunnel%s: %s)" % (
                CODES[CODE], where, rule, _WORDS[kind], len(devices), "" if len(devices) == 1 else "s",
                ", ".join(devices[:5]) + (", ..." if len(devices) > 5 else "")),
        })
    return out


def describe(findings, netns=None):
    """Fill in each finding's rule text from `nft -a list chain` (one call per chain that drops)."""
    from sixbroker.linux import apply_nft
    texts = {}
    for f in findings:
        if f["handle"] is None:
            continue
        family, table = f["table"].split(" ", 1)
        key = (family, table, f["chain"])
        if key not in texts:
            p = apply_nft.run(["-a", "list", "chain", family, table, f["chain"]], netns)
            texts[key] = p.stdout if p.returncode == 0 else ""
        for line in texts[key].splitlines():
            if line.rstrip().endswith("# handle %d" % f["handle"]):
                f["rule"] = line.split(" # handle ")[0].strip()
                f["message"] = f["message"].replace("rule handle %d" % f["handle"], f["rule"], 1)
    return findings
