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

How a plan maps onto devices is the mapping's (sit.py): one sit per tunnel, keyed by (local, remote)
(PerTunnelSit, the default), or one shared NBMA sit whose routes via ::a.b.c.d are the tunnels
(SharedSit).  The reconciler works on their neutral link/address/route specs.  A one-tunnel change on
the shared device (apply(only=..., before=...)) reads and changes that tunnel's addresses and routes
alone, by one get request each (the device holds every tunnel's: a dump would cost what all of them
cost).  migrate() moves every tunnel from one mapping to the other one tunnel at a time, timing each.

Kernel facts this relies on (seen in the guest, ../../shared/qemu.md): a route via the far tunnel address
needs the link up (its connected /127 route appears then), so links come up before addresses and routes;
sit tunnels are keyed by (local, remote), a second device with one pair is EEXIST; sit computes its MTU
when it is created or re-keyed, so the MTU is always set explicitly.
"""

import errno
import hashlib
import time

from sixbroker.linux import netlink as nl
from sixbroker.linux import sysctl
from sixbroker.linux.kernel import MAIN_TABLE, Changes, Kernel, canon6
from sixbroker.linux.sit import PerTunnelSit, RouteSpec, SharedSit
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


class FullApplyNeeded(Exception):
    """A one-tunnel change that only the whole reconcile can make (the shared device gone or changed)."""


def apply(plans, netns=None, scope=DEFAULT_SCOPE, prefix=None, lan_addresses=None, mapping=None, only=None,
          isolate=False, before=None):
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
    before: with only and a shared mapping, the plans those tunnels had (what to take away); raises
    FullApplyNeeded when the shared device itself is not as wanted.
    """
    mark = tag(scope)
    mapping = mapping or PerTunnelSit()
    if only is not None and mapping.shared:
        return _apply_shared_only(plans, before or [], netns, mark, prefix, mapping, isolate)
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
        pairs = mapping.pairs(plans) if mapping.shared else {}
        before, routes_after = _reconcile(k, view, specs, want_addrs, want_routes, lan_addresses, mark, prefix,
                                          pairs)
        if only is not None:
            after = _state(_View(k, only), mark, prefix)
            result.foreign_tunnels = None
            result.fingerprint = (after - before) % FP_MOD
        elif result.changes:
            result.fingerprint = _state(_View(k), mark, prefix, None if k.failed else routes_after)
        else:
            result.fingerprint = before
        result.failures = dict(k.failed)
    finally:
        k.close()
    return _finish(plans, netns, result, isolate)


def _finish(plans, netns, result, isolate):
    """The plans' sysctls, then the first failure raised unless each tunnel's failure is to stand alone."""
    sysctls = []
    for p in plans:
        sysctls.extend(p.get("sysctls") or [])
    sysctl.apply(sysctls, netns, result)
    if result.failures and not isolate:
        raise result.failures[sorted(result.failures)[0]]
    return result


def _apply_shared_only(plans, before, netns, mark, prefix, mapping, isolate):
    """apply(only=...) on the shared device: the named tunnels' addresses and routes, each read by one get
    request before and after (the fingerprint's change), changed where they differ."""
    result = Result()
    result.foreign_tunnels = None
    if not plans and not before:
        result.fingerprint = 0          # (a pending tunnel: nothing of it is in the kernel)
        return result
    k = Kernel(netns, result)
    try:
        specs = mapping.links(list(plans) + list(before))
        spec = specs[0]
        # the namespace's devices: few, with every tunnel on one (and the foreign sit devices are needed)
        links = k.links()
        cur = _links_by_name(links).get(spec.name)
        if (cur is None or not owned(cur, mark, prefix) or cur.kind != spec.kind or not cur.up
                or cur.mtu != spec.mtu or _params_differ(spec, cur, 0)):
            raise FullApplyNeeded("%s is not as the last apply left it" % spec.name)
        idx, dev = cur.index, cur.name
        want_a, want_r, old_a, old_r = {}, {}, {}, {}
        for p in before:
            for a in mapping.tunnel_addresses(p):
                old_a[a[0]] = (a[1], p["tunnel"]["device"])
            for r in mapping.tunnel_routes(p):
                old_r[r.key()] = r
        held = _held_pairs(links, mark)
        for p in plans:
            for a in mapping.tunnel_addresses(p):
                want_a[a[0]] = (a[1], p["tunnel"]["device"])
            owner, pair = p["tunnel"]["device"], (p["tunnel"]["local"], p["tunnel"]["remote"])
            if pair in held:
                k.failed[owner] = _pair_held(owner, held[pair], pair)
                continue
            for r in mapping.tunnel_routes(p):
                want_r[r.key()] = r

        def read():
            addrs, routes, fp = {}, {}, 0
            for address in sorted(set(old_a) | set(want_a)):
                a = k.addr6(idx, address)
                if a is not None and a.index == idx:
                    addrs[address] = a
                    fp += _addr_hash(dev, a)
            for key in sorted(set(old_r) | set(want_r), key=str):
                w = want_r.get(key) or old_r[key]
                r = k.route6_entry(w.dst, w.dst_len)
                if r is not None and r.key() == key:
                    routes[key] = r
                    if r.proto == RTPROT and r.oif == idx:
                        fp += _route_hash(dev, r)
            return addrs, routes, fp

        addrs, routes, fp_before = read()
        for key in sorted(old_r, key=str):
            r = routes.get(key)
            if key not in want_r and r is not None and r.proto == RTPROT and r.oif == idx:
                spec_r = _spec_of(dev, r)
                k.queue("route del %s for %s" % (spec_r.text(), old_r[key].owner), _route_request("del", spec_r, idx),
                        owner=old_r[key].owner)
        for address in sorted(old_a):
            if address not in want_a and address in addrs:
                a = addrs[address]
                k.queue("addr del %s/%d dev %s for %s" % (address, a.length, dev, old_a[address][1]),
                        nl.addr6(False, idx, address, a.length), owner=old_a[address][1])
        for address in sorted(want_a):
            length, owner = want_a[address]
            a = addrs.get(address)
            if a is not None and a.length == length:
                continue
            if a is not None:
                k.queue("addr del %s/%d dev %s for %s" % (address, a.length, dev, owner),
                        nl.addr6(False, idx, address, a.length), owner=owner)
            k.queue("addr add %s/%d dev %s for %s" % (address, length, dev, owner), nl.addr6(True, idx, address, length),
                    owner=owner)
        for key in sorted(want_r, key=str):
            w = want_r[key]
            r = routes.get(key)
            if r is not None and (r.proto != RTPROT or r.oif != idx):
                k.failed.setdefault(w.owner, SixbrokerError("ROUTE_NOT_OURS", w.text()))
                continue
            if r is not None and _same_route(r, w):
                continue
            cmd = "add" if r is None else "replace"
            k.queue("route %s %s for %s" % (cmd, w.text(), w.owner), _route_request(cmd, w, idx),
                    {errno.EEXIST: SixbrokerError("ROUTE_NOT_OURS", w.text())}, owner=w.owner)
        k.flush()
        result.fingerprint = (read()[2] - fp_before) % FP_MOD
        result.failures = dict(k.failed)
    finally:
        k.close()
    return _finish(plans, netns, result, isolate)


def _reconcile(k, view, specs, want_addrs, want_routes, lan_addresses, mark, prefix, pairs=None):
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
    # (shared device) a foreign sit with a tunnel's very pair gets that peer's packets: the tunnel fails
    held = _held_pairs(links, mark)
    for owner, pair in sorted((pairs or {}).items()):
        if pair in held:
            failed.setdefault(owner, _pair_held(owner, held[pair], pair))

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
    routes_after = _reconcile_routes(k, by_name, index_of, routes, good, [r for r in want_routes if r.device in index_of
                                                                          and r.owner not in failed])
    k.flush()
    return before, routes_after


def _held_pairs(links, mark):
    """{(local, remote): device name} of the up sit devices that are not ours."""
    return dict(((li.params["local"], li.params["remote"]), li.name) for li in links
                if li.kind == "sit" and li.up and li.alias != mark and li.params)


def _pair_held(owner, device, pair):
    return SixbrokerError("SIT_PAIR_IN_USE", "%s: another sit device, %s, runs from %s to %s and takes its packets"
                          % ((owner, device) + pair))


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
    return nl.route6(cmd, idx, r.dst, r.dst_len, r.gateway, r.src, r.src_len, r.metric, RTPROT, MAIN_TABLE,
                     getattr(r, "mtu", None), r.local)


def _same_route(cur, w):
    return cur.gateway == w.gateway and cur.mtu == w.mtu and cur.local == w.local


def _spec_of(device, r):
    """A RouteSpec for a route the kernel showed (to delete it as it is)."""
    return RouteSpec(device, r.dst, r.dst_len, r.gateway, r.src, r.src_len, r.metric, local=r.local)


def _reconcile_routes(k, by_name, index_of, routes, ours, want_routes):
    """Queue the route changes; the routes of ours the kernel holds once every one of them is acked."""
    name_of = dict((li.index, li.name) for li in by_name.values())
    have = {}
    for r in routes:
        if r.oif in ours:
            have[r.key()] = r
    want = dict((r.key(), r) for r in want_routes)
    after = dict(have)
    for key in sorted(have, key=str):
        if key not in want:
            r = after.pop(key)
            spec = _spec_of(name_of.get(r.oif, str(r.oif)), r)
            k.queue("route del " + spec.text(), _route_request("del", spec, r.oif), owner=spec.device)
    for key in sorted(want, key=str):
        w = want[key]
        idx = index_of[w.device]
        cur = have.get(key)
        if cur is not None and cur.oif == idx and _same_route(cur, w):
            continue
        # add is exclusive: a route of someone else's with this key (destination, source, metric) is EEXIST
        cmd = "add" if cur is None else "replace"
        k.queue("route %s %s" % (cmd, w.text()) + ("" if w.owner == w.device else " for " + w.owner),
                _route_request(cmd, w, idx), {errno.EEXIST: SixbrokerError("ROUTE_NOT_OURS", w.text())}, owner=w.owner)
        after[key] = _Sent(w, idx)
    return list(after.values())


class _Sent:
    """A route as a dump shows it once the kernel took our request for it: the specs are in the dump's
    forms already (addresses as inet_ntop writes them, the metric given), or every apply would replace
    them.  tests/e2e/test_broker.py checks the fingerprint built from these against a dump."""

    def __init__(self, w, idx):
        self.oif, self.dst, self.dst_len, self.src, self.src_len = idx, w.dst, w.dst_len, w.src, w.src_len
        self.metric, self.gateway, self.mtu, self.local = w.metric, w.gateway, w.mtu, w.local


# ---- fingerprints ------------------------------------------------------------------------------
# A number for "what this scope owns in the kernel": the sum of one hash per owned device (its
# parameters, addresses and routes) and per foreign sit device (the firewall exempts their pairs), so the
# broker can tell a namespace that is exactly as it left it from one dump, without building any plan, and
# a change to one device updates the sum from that device alone.

FP_MOD = 1 << 128


def _hash(data):
    return int.from_bytes(hashlib.sha256(data).digest()[:16], "big")


def _addr_hash(dev, a):
    return _hash(("addr %s %s/%d" % (dev, a.address, a.length)).encode())


def _route_hash(dev, r):
    # (one format: a cold apply at 10,000 tunnels hashes 30,000 routes)
    return _hash(("route %s %s/%d %s/%d %d %s%s%s" % (dev, r.dst, r.dst_len, r.src, r.src_len, r.metric, r.gateway,
                                                      " mtu %d" % r.mtu if r.mtu else "",
                                                      " local" if r.local else "")).encode())


def _fingerprint(links, addrs, routes, mark, prefix):
    # one hash per device, per address and per route, added up: a shared device's one tunnel changes the
    # sum by its own addresses and routes
    ours = {}
    total = 0
    for li in links:
        if owned(li, mark, prefix):
            ours[li.index] = li.name
            total += _hash(b"ours\0" + li.facts())
        elif li.kind == "sit" and li.up and li.params:
            total += _hash(("foreign %s %s %s" % (li.name, li.params["local"], li.params["remote"])).encode())
    for a in addrs:
        if a.index in ours and not a.kernel_made:
            total += _addr_hash(ours[a.index], a)
    for r in routes:
        if r.oif in ours:
            total += _route_hash(ours[r.oif], r)
    return total % FP_MOD


def _state(view, mark, prefix, routes=None):
    """The fingerprint of what the view shows; with routes (what a full apply's acked requests left), those
    in place of a dump of them: at 10,000 tunnels in the shared mode the dump is 30,000 routes read and
    parsed again (~5 s in the guest) to learn what was just sent."""
    links = view.links()
    ours = set(li.index for li in links if owned(li, mark, prefix))
    if routes is None:
        routes = view.routes6(ours)
    return _fingerprint(links, view.addrs6(ours), routes, mark, prefix)


def fingerprint(netns=None, scope=DEFAULT_SCOPE, prefix=None):
    """The fingerprint of what this scope owns in the namespace now (one dump each of links, IPv6
    addresses and our routes); equal to an apply's Result.fingerprint while nothing changed."""
    k = Kernel(netns)
    try:
        return _state(_View(k), tag(scope), prefix)
    finally:
        k.close()


# ---- moving between mappings ---------------------------------------------------------------------------

def migrate(plans, old, new, netns=None, scope=DEFAULT_SCOPE, prefix=None, clock=time.monotonic):
    """Move every tunnel of the plans from mapping `old` to mapping `new` (one PerTunnelSit, the other
    SharedSit) one tunnel at a time: each tunnel's new state comes and its old state goes in one send to
    the kernel, which handles it within that one system call, new before old (a route of the same key is
    replaced in place; the old device, or the shared device's other routes of the tunnel, go after).
    Returns (Result, {tunnel device: seconds}): per tunnel, the time from that send to the kernel's last
    answer, a bound on the time its packets could find no route.  The caller then runs apply() with
    `new`, which finds little or nothing left to do and repairs whatever this left undone (a tunnel's
    failure here is in Result.failures).

    The new shared device exists before the first tunnel moves (a per-tunnel device's exact (local,
    remote) pair wins the kernel's lookup over it, so nothing moves early); new per-tunnel devices are
    made before the first tunnel moves too (packets from their peer come in through them at once, and
    are forwarded by the shared device's routes until the tunnel moves), and the shared device goes last.
    """
    mark = tag(scope)
    result = Result()
    outage = {}
    k = Kernel(netns, result)
    try:
        if new.shared:
            _to_shared(k, plans, new, mark, prefix, clock, outage)
        else:
            _to_per_tunnel(k, plans, old, new, mark, prefix, clock, outage)
        result.failures = dict(k.failed)
    finally:
        k.close()
    return result, outage


def _make_link(k, s, mark):
    k.queue("link add " + s.name, _sit_request(s, 0), {errno.EEXIST: SixbrokerError(
        "SIT_PAIR_IN_USE", "%s: another sit device runs from %s to %s" % (s.name, s.params["local"],
                                                                           s.params["remote"]))},
        owner=s.name, glue=True)
    typ, flags, body = nl.link_set(0, mark, None, True)
    k.queue("link set %s alias %s up" % (s.name, mark), (typ, flags, body + nl.attr_str(nl.IFLA_IFNAME, s.name)),
            owner=s.name)


def _to_shared(k, plans, new, mark, prefix, clock, outage):
    specs = new.links(plans)
    if not specs:
        return
    spec = specs[0]
    cur = k.link(spec.name)
    if cur is None:
        _make_link(k, spec, mark)
        k.flush()
        cur = k.link(spec.name)
    if cur is None or not owned(cur, mark, prefix):
        raise k.failed.get(spec.name) or SixbrokerError("DEVICE_NOT_OURS", _not_ours_detail(cur, mark)
                                                        if cur is not None else spec.name)
    idx = cur.index
    if not cur.up or cur.mtu != spec.mtu:
        k.queue("link set %s mtu %d up" % (spec.name, spec.mtu), nl.link_set(idx, None, spec.mtu, True))
        k.flush()
    by_name = _links_by_name(k.links())
    have_a = set(a.address for a in k.addrs6(idx) if not a.kernel_made)
    # every route of ours, by key: a key held by the tunnel's old device is replaced in place
    ours = dict((r.key(), r.oif) for r in k.routes6(RTPROT))
    for p in plans:
        dev = p["tunnel"]["device"]
        li = by_name.get(dev)
        moved = li is not None and owned(li, mark, prefix)
        # make before break: the new address and routes first (a route replaced takes the next packet),
        # the old device last (deleting a device waits for the kernel's grace period)
        for address, length in new.tunnel_addresses(p):
            if address not in have_a:
                k.queue("addr add %s/%d dev %s" % (address, length, spec.name), nl.addr6(True, idx, address, length),
                        owner=dev)
        for w in new.tunnel_routes(p):
            oif = ours.get(w.key())
            if oif == idx:
                continue
            cmd = "replace" if moved and oif == li.index else "add"
            k.queue("route %s %s" % (cmd, w.text()), _route_request(cmd, w, idx),
                    {errno.EEXIST: SixbrokerError("ROUTE_NOT_OURS", w.text())}, owner=dev)
        if moved:
            # a device going away stops taking packets (it is closed) a grace period before it stops
            # matching its peer's (local, remote) pair: re-keyed first to a pair nobody sends from (the
            # kernel unlinks it at once, so the peer's packets find the shared device), it then goes
            # without taking any with it
            q = li.params
            nobody = "0.%d.%d.%d" % ((li.index >> 16) & 255, (li.index >> 8) & 255, li.index & 255)
            k.queue("link set %s remote %s" % (dev, nobody), nl.link_change_sit(
                li.index, q["local"], nobody, q["ttl"], q["tos"], q["link"], q["pmtudisc"]), owner=dev)
            k.queue("link del " + dev, nl.link_del(li.index), owner=dev)
        t0 = clock()
        k.flush()
        if moved:
            outage[dev] = clock() - t0


def _to_per_tunnel(k, plans, old, new, mark, prefix, clock, outage):
    links = k.links()
    by_name = _links_by_name(links)
    shared = None
    for s in old.links(plans) or []:
        li = by_name.get(s.name)
        if li is not None and owned(li, mark, prefix):
            shared = li
    specs = dict((s.name, s) for s in new.links(plans))
    for name in sorted(specs):
        if name not in by_name:
            _make_link(k, specs[name], mark)
    k.flush()
    by_name = _links_by_name(k.links())
    have_a, have_r = {}, {}
    if shared is not None:
        have_a = dict((a.address, a.length) for a in k.addrs6(shared.index) if not a.kernel_made)
        have_r = dict((r.key(), r) for r in k.routes6(RTPROT, shared.index))
    for p in plans:
        dev = p["tunnel"]["device"]
        li = by_name.get(dev)
        if dev in k.failed or li is None or not owned(li, mark, prefix):
            continue
        if li.mtu != specs[dev].mtu:
            k.queue("link set %s mtu %d" % (dev, specs[dev].mtu), nl.link_set(li.index, None, specs[dev].mtu), owner=dev)
        wanted = new.addresses([p]).get(dev, [])
        for address, length in wanted:
            k.queue("addr add %s/%d dev %s" % (address, length, dev), nl.addr6(True, li.index, address, length),
                    {errno.EEXIST: SixbrokerError("NETLINK_FAIL", "%s is on %s already" % (address, dev))}, owner=dev)
        # make before break: a route the shared device holds is replaced in place, the rest of its go after
        moving = False
        keys = set()
        for w in new.routes([p]):
            keys.add(w.key())
            cmd = "replace" if w.key() in have_r else "add"
            moving = moving or cmd == "replace"
            k.queue("route %s %s" % (cmd, w.text()), _route_request(cmd, w, li.index),
                    {errno.EEXIST: SixbrokerError("ROUTE_NOT_OURS", w.text())}, owner=dev)
        if shared is not None:
            for r in old.tunnel_routes(p):
                cur = have_r.get(r.key())
                if cur is not None and r.key() not in keys:
                    spec_r = _spec_of(shared.name, cur)
                    k.queue("route del " + spec_r.text(), _route_request("del", spec_r, shared.index), owner=dev)
                    moving = True
        if shared is not None:
            for address, length in wanted:
                if have_a.get(address) is not None:
                    k.queue("addr del %s/%d dev %s" % (address, have_a[address], shared.name),
                            nl.addr6(False, shared.index, address, have_a[address]), owner=dev)
        t0 = clock()
        k.flush()
        if moving:
            outage[dev] = clock() - t0
    if shared is not None:
        k.queue("link del " + shared.name, nl.link_del(shared.index))
        k.flush()


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
