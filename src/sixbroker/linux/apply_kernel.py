"""The reconcile of plans into the kernel: tunnel devices, addresses and routes of one scope, over netlink.

CPython only.  `apply()` reconciles: it reads what is there (one dump each of links, IPv6 addresses and
our IPv6 routes per apply, and one more link dump when devices were created or re-keyed), changes only
what differs, and removes what it owns that no plan wants.  Every netlink change and sysctl write is
counted (Result.changes), so a test or benchmark can hold a second apply to zero.  Each device is
reconciled on its own: one that cannot be applied (Result.failures) leaves the others' changes made.
`apply(only=...)` does the same for a few named devices and reads nothing else: the broker's add and
remove of one tunnel cost the same with 1 or 1000 others.  The plans' sysctls are set last (sysctl.py).

The kernel is read and changed through kernel.py (one netlink socket, changes sent in batches, in order:
links first, then addresses and routes, which need the links' indexes).

Ownership, which survives a restart and is not a matter of names:
- a device is ours when its alias (IFLA_IFALIAS) is `sixbroker:<scope>`.  The scope keeps the broker's
  devices apart from a standalone router's on the same host.  A device with a wanted name but without our
  alias is never touched: that tunnel fails with DEVICE_NOT_OURS.  The kernel ignores an alias given at
  creation, so the request that marks it and brings it up goes in the same sendmsg as the one that makes
  it: the kernel handles both within that system call, so no device of ours exists unmarked, whatever
  kills us when;
- a route is ours when it has our routing protocol number (RTPROT, shown by `ip -6 route` as `proto 91`) and
  goes through a device of ours;
- an address on one of our devices is ours (the kernel's link-local and IPv4-compatible ones aside);
- a LAN address (standalone router: a routed prefix's ::1/64 on the LAN device, which is not ours) is ours
  when its prefix route metric (IFA_RT_PRIORITY) is LAN_METRIC.  An equal address without that mark is the
  admin's: it satisfies the plan and is never removed.

How a plan maps onto devices (one sit per tunnel, keyed by (local, remote)) is sit.PerTunnelSit; the
reconciler works on its neutral link/address/route specs, so a shared NBMA device (one sit with no
remote, routes via ::a.b.c.d) can be added as a second mapping without touching the rest.

Kernel facts this relies on (seen in the guest, ../../shared/qemu.md): a route via the far tunnel address
needs the link up (its connected /127 route appears then), so links come up before addresses and routes;
sit tunnels are keyed by (local, remote), a second device with one pair is EEXIST; sit computes its MTU
when it is created or re-keyed, so the MTU is always set explicitly.
"""

import errno
import hashlib

from sixbroker.linux import netlink as nl
from sixbroker.linux import sysctl
from sixbroker.linux.kernel import MAIN_TABLE, Changes, Kernel, canon6
from sixbroker.linux.sit import PerTunnelSit, RouteSpec
from sixbroker.core.errors import SixbrokerError

ALIAS_PREFIX = "sixbroker:"
DEFAULT_SCOPE = "broker"
RTPROT = 91                 # our routes' protocol number (0x5b); not in iproute2's rt_protos
LAN_METRIC = 297            # prefix-route metric marking our LAN addresses: the kernel's 256 + 41


class Result(Changes):
    """What one apply (or remove_all) changed: `changes` is one line per netlink change or sysctl write."""

    def __init__(self):
        Changes.__init__(self)
        self.foreign_tunnels = []     # (local, remote) of up sit devices that are not ours
        self.fingerprint = None       # see fingerprint()
        self.failures = {}            # device -> SixbrokerError (apply(isolate=True))

    def __repr__(self):
        return "apply_kernel.Result(%d changes)" % self.count


def tag(scope):
    """The alias that marks a device as this scope's."""
    if not scope or not all(c.isalnum() or c in "-_" for c in scope) or len(scope) > 64:
        raise ValueError("bad scope %r" % (scope,))
    return ALIAS_PREFIX + scope


# ---- the reconciler ----------------------------------------------------------------------------

def _link_index(spec, by_name, k):
    """The index of the device a tunnel is bound to (its `link`), 0 for none."""
    name = spec.params.get("link")
    if not name:
        return 0
    under = by_name.get(name) if name in by_name else k.link(name)
    if under is None:
        raise SixbrokerError("TUNLINK_NOT_UP", name + " does not exist", "tunlink")
    return under.index


def _params_differ(spec, cur, link_index):
    want = dict(spec.params)
    want["link"] = link_index
    return any(cur.params.get(k) != v for k, v in want.items())


def _sit_request(spec, link_index, index=None):
    p = spec.params
    if index is None:
        return nl.link_add_sit(spec.name, spec.mtu, p["local"], p["remote"], p["ttl"], p["tos"], link_index,
                               p["pmtudisc"])
    return nl.link_change_sit(index, p["local"], p["remote"], p["ttl"], p["tos"], link_index, p["pmtudisc"])


def _links_by_name(links):
    return dict((li.name, li) for li in links)


def _check_plans(links, routes, prefix):
    names, pairs = set(), set()
    for spec in links:
        if spec.name in names:
            raise SixbrokerError("DUPLICATE_DEVICE", spec.name)
        names.add(spec.name)
        if prefix and not spec.name.startswith(prefix):
            raise SixbrokerError("INVALID_DEVICE", spec.name + " does not start with " + prefix)
        if len(spec.name) > 15:
            raise SixbrokerError("INVALID_DEVICE", spec.name)
        pair = (spec.params["local"], spec.params["remote"])
        if pair in pairs:
            raise SixbrokerError("SIT_PAIR_IN_USE", "two tunnels run from %s to %s" % pair)
        pairs.add(pair)
    keys = set()
    for r in routes:
        if r.key() in keys:
            raise SixbrokerError("DUPLICATE_ROUTE", r.text())
        keys.add(r.key())


def owned(li, mark, prefix):
    """Whether a device (a kernel.Link) is this scope's: marked with its tag and, given a prefix, named so."""
    return li.alias == mark and (not prefix or li.name.startswith(prefix))


class _View:
    """What the reconciler reads: the whole namespace (only=None), or just the devices named in `only`
    (one request each, and their own addresses and routes: an add or remove of one tunnel among
    thousands reads that tunnel alone)."""

    def __init__(self, k, only=None):
        self.k = k
        self.only = None if only is None else sorted(set(only))

    def links(self):
        if self.only is None:
            return self.k.links()
        return [li for li in (self.k.link(n) for n in self.only) if li is not None]

    def addrs6(self, indexes):
        if self.only is None:
            return self.k.addrs6()
        out = []
        for idx in sorted(indexes):
            out.extend(self.k.addrs6(idx))
        return out

    def routes6(self, indexes):
        if self.only is None:
            return self.k.routes6(RTPROT)
        out = []
        for idx in sorted(indexes):
            out.extend(self.k.routes6(RTPROT, idx))
        return out


def apply(plans, netns=None, scope=DEFAULT_SCOPE, prefix=None, lan_addresses=None, mapping=None, only=None,
          isolate=False):
    """Make the namespace hold exactly what the plans want of what this scope owns.

    netns: a name under /run/netns (or a path), None for our own namespace.  prefix: when given, every
    device of ours must start with it, and nothing else is ever taken for ours.  lan_addresses: None to
    leave LAN addresses alone (the broker), else a list of {"device", "address", "length"} to hold.
    only: device names; when given, the plans are those devices' (a name with no plan is removed when
    ours) and nothing else in the namespace is read or touched: the broker's add and remove.
    Returns a Result; its `fingerprint` is the state of what the scope owns afterwards (see fingerprint()),
    or with `only`, what the change added to it (fingerprints add up), and foreign_tunnels is None.
    A device that cannot be brought in line never stops the others: with isolate, Result.failures maps
    each such device to its SixbrokerError; without, the first of them is raised once all are done.
    """
    mark = tag(scope)
    mapping = mapping or PerTunnelSit()
    specs = mapping.links(plans)
    want_addrs = mapping.addresses(plans)
    want_routes = mapping.routes(plans)
    _check_plans(specs, want_routes, prefix)
    if only is not None:
        if lan_addresses is not None:
            raise ValueError("apply(only=...) leaves LAN addresses alone")
        stray = [s.name for s in specs if s.name not in only]
        if stray:
            raise ValueError("plans for devices outside `only`: %s" % ", ".join(stray))
    result = Result()
    k = Kernel(netns, result)
    try:
        view = _View(k, only)
        before = _reconcile(k, view, specs, want_addrs, want_routes, lan_addresses, mark, prefix)
        if only is not None:
            after = _state(_View(k, only), mark, prefix)
            result.foreign_tunnels = None
            result.fingerprint = (after - before) % FP_MOD
        elif result.changes:
            result.fingerprint = _state(_View(k), mark, prefix)
        else:
            result.fingerprint = before
        result.failures = dict(k.failed)
    finally:
        k.close()
    sysctls = []
    for p in plans:
        sysctls.extend(p.get("sysctls") or [])
    sysctl.apply(sysctls, netns, result)
    if result.failures and not isolate:
        raise result.failures[sorted(result.failures)[0]]
    return result


def _reconcile(k, view, specs, want_addrs, want_routes, lan_addresses, mark, prefix):
    """Queue and send the changes; the fingerprint of what the view showed before them.

    Each device is reconciled on its own: what cannot be done for one (a device of that name that is
    not ours, its (local, remote) pair held by another sit, a route with its key that is someone
    else's) is recorded in k.failed and leaves that device's remaining steps undone, while every other
    device is brought in line all the same."""
    links = view.links()
    by_name = _links_by_name(links)
    wanted = dict((s.name, s) for s in specs)
    failed = k.failed
    for la in lan_addresses or ():
        if la["device"] not in by_name:
            raise SixbrokerError("LAN_DEVICE_MISSING", la["device"], "lan")
    for s in specs:
        cur = by_name.get(s.name)
        if cur is not None and cur.alias != mark:
            failed[s.name] = SixbrokerError("DEVICE_NOT_OURS", _not_ours_detail(cur, mark))
        elif cur is not None and cur.kind != s.kind:
            failed[s.name] = SixbrokerError("DEVICE_NOT_OURS", "%s is ours but a %s device, not %s"
                                            % (s.name, cur.kind, s.kind))
    ours = dict((li.index, li.name) for li in links if owned(li, mark, prefix))
    addrs = view.addrs6(ours)
    routes = view.routes6(ours)
    before = _fingerprint(links, addrs, routes, mark, prefix)

    # First free what no plan wants: a device going away may free the (local, remote) pair a new one needs.
    deleted = [li for li in sorted(links, key=lambda x: x.name) if owned(li, mark, prefix) and li.name not in wanted]
    for li in deleted:
        k.queue("link del " + li.name, nl.link_del(li.index), owner=li.name)
    k.flush()

    relisted = False
    for s in specs:
        if s.name in failed:
            continue
        cur = by_name.get(s.name)
        try:
            link_index = _link_index(s, by_name, k)
        except SixbrokerError as e:
            failed[s.name] = e
            continue
        in_use = {errno.EEXIST: SixbrokerError("SIT_PAIR_IN_USE", "%s: another sit device runs from %s to %s"
                                               % (s.name, s.params["local"], s.params["remote"]))}
        if cur is None:
            # marked in the same system call as it is made (the kernel ignores an alias given at
            # creation): no device of ours ever exists unmarked, whatever kills us when
            k.queue("link add " + s.name, _sit_request(s, link_index), in_use, owner=s.name, glue=True)
            typ, flags, body = nl.link_set(0, mark, None, True)
            k.queue("link set %s alias %s up" % (s.name, mark), (typ, flags, body + nl.attr_str(nl.IFLA_IFNAME, s.name)),
                    owner=s.name)
            relisted = True
        elif _params_differ(s, cur, link_index):
            k.queue("link set %s local %s remote %s ttl %d tos %d" % (s.name, s.params["local"],
                    s.params["remote"], s.params["ttl"], s.params["tos"]), _sit_request(s, link_index, cur.index),
                    in_use, owner=s.name)
            relisted = True       # a re-keyed sit recomputes its MTU
    k.flush()
    if relisted:
        links = view.links()
        by_name = _links_by_name(links)
    k.result.foreign_tunnels = foreign(links, mark)

    index_of = {}
    for s in specs:
        cur = by_name.get(s.name)
        if s.name in failed or cur is None or cur.alias != mark:
            failed.setdefault(s.name, SixbrokerError("NETLINK_FAIL", s.name + " was not made"))
            continue
        index_of[s.name] = cur.index
        words = []
        if cur.mtu != s.mtu:
            words.append("mtu %d" % s.mtu)
        if not cur.up:
            words.append("up")
        if words:
            k.queue("link set " + s.name + " " + " ".join(words),
                    nl.link_set(cur.index, None, s.mtu if cur.mtu != s.mtu else None, not cur.up), owner=s.name)

    # the devices whose addresses and routes are made to match: ours, wanted, and not failed so far
    # (a whole-namespace view keeps its first reads: new devices have nothing of ours yet, re-keyed ones
    # keep their addresses and routes)
    good = set(index_of.values())
    if relisted and view.only is not None:
        addrs = view.addrs6(good)
        routes = view.routes6(good)
    _reconcile_addresses(k, by_name, index_of, addrs, good, want_addrs, lan_addresses)
    _reconcile_routes(k, by_name, index_of, routes, good, [r for r in want_routes if r.device in index_of])
    k.flush()
    return before


def _not_ours_detail(cur, mark):
    if cur.alias and cur.alias.startswith(ALIAS_PREFIX):
        return "%s belongs to %s, not %s" % (cur.name, cur.alias, mark)
    text = "%s exists and was not made by sixbroker (its alias is not %s)" % (cur.name, mark)
    if cur.kind == "sit" and not cur.alias and not cur.up:
        text += "; if an earlier run was interrupted, delete it: ip link del " + cur.name
    return text


def _reconcile_addresses(k, by_name, index_of, addrs, ours, want_addrs, lan_addresses):
    name_of = dict((li.index, li.name) for li in by_name.values())
    have = {}
    lan_have = {}
    for a in addrs:
        if a.index in ours and not a.kernel_made:
            have.setdefault(a.index, set()).add((a.address, a.length))
        elif a.metric == LAN_METRIC:
            lan_have[(a.index, a.address, a.length)] = True
        else:
            lan_have.setdefault((a.index, a.address, a.length), False)
    for dev in sorted(index_of):
        idx = index_of[dev]
        want = set(want_addrs.get(dev, ()))
        cur = have.get(idx, set())
        for address, length in sorted(cur - want):
            k.queue("addr del %s/%d dev %s" % (address, length, dev), nl.addr6(False, idx, address, length),
                    owner=dev)
        for address, length in sorted(want - cur):
            k.queue("addr add %s/%d dev %s" % (address, length, dev), nl.addr6(True, idx, address, length),
                    owner=dev)
    if lan_addresses is None:
        return
    want_lan = set()
    for la in lan_addresses:
        li = by_name.get(la["device"])
        if li is None:
            raise SixbrokerError("LAN_DEVICE_MISSING", la["device"], "lan")
        want_lan.add((li.index, canon6(la["address"]), int(la["length"])))
    for key in sorted(kk for kk, marked in lan_have.items() if marked and kk not in want_lan):
        idx, address, length = key
        k.queue("addr del %s/%d dev %s" % (address, length, name_of.get(idx, idx)),
                nl.addr6(False, idx, address, length))
    for key in sorted(want_lan):
        if key in lan_have:
            continue        # ours already, or the admin's own: either way it is there
        idx, address, length = key
        k.queue("addr add %s/%d dev %s metric %d" % (address, length, name_of[idx], LAN_METRIC),
                nl.addr6(True, idx, address, length, LAN_METRIC))


def _route_request(cmd, r, idx):
    return nl.route6(cmd, idx, r.dst, r.dst_len, r.gateway, r.src, r.src_len, r.metric, RTPROT, MAIN_TABLE)


def _reconcile_routes(k, by_name, index_of, routes, ours, want_routes):
    name_of = dict((li.index, li.name) for li in by_name.values())
    have = {}
    for r in routes:
        if r.oif in ours:
            have[r.key()] = r
    want = dict((r.key(), r) for r in want_routes)
    for key in sorted(have, key=str):
        if key not in want:
            r = have[key]
            spec = RouteSpec(name_of.get(r.oif, str(r.oif)), r.dst, r.dst_len, r.gateway, r.src, r.src_len, r.metric)
            k.queue("route del " + spec.text(), _route_request("del", spec, r.oif), owner=spec.device)
    for key in sorted(want, key=str):
        w = want[key]
        idx = index_of[w.device]
        cur = have.get(key)
        if cur is not None and cur.gateway == w.gateway and cur.oif == idx:
            continue
        # add is exclusive: a route of someone else's with this key (destination, source, metric) is EEXIST
        cmd = "add" if cur is None else "replace"
        k.queue("route %s %s" % (cmd, w.text()), _route_request(cmd, w, idx),
                {errno.EEXIST: SixbrokerError("ROUTE_NOT_OURS", w.text())}, owner=w.device)


# ---- fingerprints ------------------------------------------------------------------------------
# A number for "what this scope owns in the kernel": the sum of one hash per owned device (its
# parameters, addresses and routes) and per foreign sit device (the firewall exempts their pairs), so the
# broker can tell a namespace that is exactly as it left it from one dump, without building any plan, and
# a change to one device updates the sum from that device alone.

FP_MOD = 1 << 128


def _hash(data):
    return int.from_bytes(hashlib.sha256(data).digest()[:16], "big")


def _fingerprint(links, addrs, routes, mark, prefix):
    by_index = {}
    for a in addrs:
        if not a.kernel_made:
            by_index.setdefault(a.index, []).append("%s/%d" % (a.address, a.length))
    rts = {}
    for r in routes:
        rts.setdefault(r.oif, []).append("%s/%d %s/%d %d %s" % (r.dst, r.dst_len, r.src, r.src_len, r.metric, r.gateway))
    total = 0
    for li in links:
        if owned(li, mark, prefix):
            text = " ".join(sorted(by_index.get(li.index, ()))) + "\n" + "\n".join(sorted(rts.get(li.index, ())))
            total += _hash(b"ours\0" + li.facts() + text.encode())
        elif li.kind == "sit" and li.up and li.params:
            total += _hash(("foreign %s %s %s" % (li.name, li.params["local"], li.params["remote"])).encode())
    return total % FP_MOD


def _state(view, mark, prefix):
    links = view.links()
    ours = set(li.index for li in links if owned(li, mark, prefix))
    return _fingerprint(links, view.addrs6(ours), view.routes6(ours), mark, prefix)


def fingerprint(netns=None, scope=DEFAULT_SCOPE, prefix=None):
    """The fingerprint of what this scope owns in the namespace now (one dump each of links, IPv6
    addresses and our routes); equal to an apply's Result.fingerprint while nothing changed."""
    k = Kernel(netns)
    try:
        return _state(_View(k), tag(scope), prefix)
    finally:
        k.close()


# ---- removing -------------------------------------------------------------------------------------

def remove_all(netns=None, scope=DEFAULT_SCOPE, prefix=None, lan=False):
    """Delete every device of this scope (their addresses and routes go with them) and, with lan, our
    LAN addresses."""
    mark = tag(scope)
    result = Result()
    k = Kernel(netns, result)
    try:
        links = k.links()
        for li in sorted(links, key=lambda x: x.name):
            if owned(li, mark, prefix):
                k.queue("link del " + li.name, nl.link_del(li.index))
        if lan:
            name_of = dict((li.index, li.name) for li in links)
            for a in k.addrs6():
                if a.metric == LAN_METRIC:
                    k.queue("addr del %s/%d dev %s" % (a.address, a.length, name_of.get(a.index, a.index)),
                            nl.addr6(False, a.index, a.address, a.length))
        k.flush()
    finally:
        k.close()
    return result


def foreign_tunnels(netns=None, scope=DEFAULT_SCOPE):
    """(local, remote) of the up sit devices this scope does not own ("0.0.0.0" is a wildcard)."""
    mark = tag(scope)
    k = Kernel(netns)
    try:
        return foreign(k.links(), mark)
    finally:
        k.close()


def foreign(links, mark):
    """(local, remote) of the up sit devices among links that are not this scope's."""
    return [(li.params["local"], li.params["remote"]) for li in links
            if li.kind == "sit" and li.up and li.alias != mark and li.params]
