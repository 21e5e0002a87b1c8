"""Plans into the kernel over netlink: tunnel devices, addresses, routes, sysctls.

CPython only.  `apply()` reconciles: it reads what is there (one dump each of links, IPv6 addresses and
our IPv6 routes per apply, and one more link dump when devices were created or re-keyed), changes only
what differs, and removes what it owns that no plan wants.  Every netlink change and sysctl write is
counted (Result.changes), so a test or benchmark can hold a second apply to zero.  Each device is
reconciled on its own: one that cannot be applied (Result.failures) leaves the others' changes made.  `apply(only=...)` does
the same for a few named devices and reads nothing else: the broker's add and remove of one tunnel cost
the same with 1 or 1000 others.

Netlink is our own (sixbroker/linux/netlink.py): dumps decode only the fields compared, and changes go to the
kernel in batches, in order (links first, then addresses and routes, which need the links' indexes).

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
Sysctls are set, never reverted: the old value is not known, and forwarding is what a router wants.

How a plan maps onto devices (one sit per tunnel, keyed by (local, remote)) is `PerTunnelSit`; the
reconciler below it works on neutral link/address/route specs, so a shared NBMA device (one sit with no
remote, routes via ::a.b.c.d) can be added as a second mapping without touching the rest.

Kernel facts this relies on (seen in the guest, ../../shared/qemu.md): a route via the far tunnel address
needs the link up (its connected /127 route appears then), so links come up before addresses and routes;
sit tunnels are keyed by (local, remote), a second device with one pair is EEXIST; sit computes its MTU
when it is created or re-keyed, so the MTU is always set explicitly.
"""

import errno
import hashlib
import os
import socket
import struct

from sixbroker.core import addr
from sixbroker.linux import netlink as nl
from sixbroker.core.errors import SixbrokerError

ALIAS_PREFIX = "sixbroker:"
DEFAULT_SCOPE = "broker"
RTPROT = 91                 # our routes' protocol number (0x5b); not in iproute2's rt_protos
LAN_METRIC = 297            # prefix-route metric marking our LAN addresses: the kernel's 256 + 41
MAIN_TABLE = 254
DEFAULT_METRIC = 1024       # what the kernel gives an IPv6 route added without one
IFF_UP = 0x1
TOS_INHERIT = 1             # iproute2's `tos inherit`
AF_INET6 = socket.AF_INET6


class Result:
    """What one apply (or remove_all) changed: `changes` is one line per netlink change or sysctl write."""

    def __init__(self):
        self.changes = []
        self.foreign_tunnels = []     # (local, remote) of up sit devices that are not ours
        self.fingerprint = None       # see fingerprint()
        self.failures = {}            # device -> SixbrokerError (apply(isolate=True))

    @property
    def count(self):
        return len(self.changes)

    def add(self, what):
        self.changes.append(what)

    def __repr__(self):
        return "apply_kernel.Result(%d changes)" % self.count


def tag(scope):
    if not scope or not all(c.isalnum() or c in "-_" for c in scope) or len(scope) > 64:
        raise ValueError("bad scope %r" % (scope,))
    return ALIAS_PREFIX + scope


# ---- the mapping: plans -> neutral specs -------------------------------------------------------

class LinkSpec:
    def __init__(self, name, kind, params, mtu):
        self.name = name
        self.kind = kind
        self.params = params      # kind-specific, compared with what the dump shows
        self.mtu = mtu


class RouteSpec:
    def __init__(self, device, dst, dst_len, gateway, src=None, src_len=0, metric=None):
        self.device = device
        self.dst = dst
        self.dst_len = dst_len
        self.gateway = gateway
        self.src = src
        self.src_len = src_len
        self.metric = DEFAULT_METRIC if metric is None else metric

    def key(self):
        # what makes an IPv6 route unique in a table
        return (self.dst, self.dst_len, self.src, self.src_len, self.metric)

    def text(self):
        t = (self.dst + "/" + str(self.dst_len))
        if self.src:
            t += " from " + self.src + "/" + str(self.src_len)
        if self.gateway:
            t += " via " + self.gateway
        return t + " dev " + self.device + " metric " + str(self.metric)


def _canon6(text):
    """The kernel's spelling (inet_ntop), so a plan's address and a dumped one compare as text."""
    try:
        return socket.inet_ntop(AF_INET6, socket.inet_pton(AF_INET6, text))
    except (OSError, TypeError):
        raise ValueError("not an IPv6 address: %r" % (text,))


def _tos(value):
    if value in (None, "inherit"):
        return TOS_INHERIT
    return int(value, 16) if isinstance(value, str) else int(value)


class PerTunnelSit:
    """One sit device per tunnel: the device carries the tunnel's addresses and routes."""

    kind = "sit"

    def links(self, plans):
        out = []
        for p in plans:
            t = p["tunnel"]
            if t.get("mode", "sit") != "sit":
                raise ValueError("the kernel applier makes sit tunnels only, not %r" % t.get("mode"))
            params = {"local": t["local"], "remote": t["remote"], "ttl": int(t["ttl"]), "tos": _tos(t.get("tos")),
                      "link": t.get("link") or None, "pmtudisc": 1}
            out.append(LinkSpec(t["device"], "sit", params, int(t["mtu"])))
        return out

    def addresses(self, plans):
        return dict((p["tunnel"]["device"], [(_canon6(a["address"]), int(a["length"])) for a in p["addresses"]])
                    for p in plans)

    def routes(self, plans):
        out = []
        for p in plans:
            dev = p["tunnel"]["device"]
            for r in p["routes"]:
                src, src_len = None, 0
                if r.get("source"):
                    net = addr.Interface.parse(r["source"], 6).network
                    src, src_len = str(net.address), net.length
                out.append(RouteSpec(dev, _canon6(r["target"]), int(r["length"]),
                                     _canon6(r["gateway"]) if r.get("gateway") else None, src, src_len,
                                     r.get("metric")))
        return out


# ---- talking to the kernel ---------------------------------------------------------------------

def _netns_path(netns):
    return netns if "/" in netns else "/run/netns/" + netns


def _os_error(e, what):
    code = getattr(e, "code", None) or getattr(e, "errno", None)
    if code in (errno.EPERM, errno.EACCES):
        return SixbrokerError("NOT_PERMITTED", what)
    return SixbrokerError("NETLINK_FAIL", what + ": " + os.strerror(code) if code else what + ": " + str(e))


def _u32(b):
    return struct.unpack("I", b[:4])[0]


def _text(b):
    return b.split(b"\0", 1)[0].decode("utf-8", "replace")


def _ip6(b):
    return socket.inet_ntop(AF_INET6, b[:16])


_STATS64 = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_errors", "tx_errors", "rx_dropped",
            "tx_dropped")


_LINK_FIELDS = frozenset((nl.IFLA_IFNAME, nl.IFLA_MTU, nl.IFLA_IFALIAS, nl.IFLA_LINKINFO))
_LINK_FIELDS_STATS = _LINK_FIELDS | frozenset((nl.IFLA_STATS64,))


class _Link:
    """One device of a link dump.  Only the attributes compared are picked out of the ~35 the kernel
    sends (a no-op apply of 1000 tunnels reads all of them), and the tunnel parameters are decoded on
    first use."""

    def __init__(self, index, flags, buf, start, end, stats=False):
        want = _LINK_FIELDS_STATS if stats else _LINK_FIELDS
        a = {}
        while start + 4 <= end:
            length, typ = struct.unpack_from("HH", buf, start)
            if length < 4:
                break
            typ &= 0x3FFF
            if typ in want:
                a[typ] = buf[start + 4:start + length]
                if len(a) == len(want):
                    break
            start += (length + 3) & ~3
        self.index = index
        self.name = _text(a[nl.IFLA_IFNAME]) if nl.IFLA_IFNAME in a else None
        self.alias = _text(a[nl.IFLA_IFALIAS]) if nl.IFLA_IFALIAS in a else None
        self.alias = self.alias or None
        self.mtu = _u32(a[nl.IFLA_MTU]) if nl.IFLA_MTU in a else None
        self.up = bool(flags & IFF_UP)
        self.info = a.get(nl.IFLA_LINKINFO, b"")
        self._kind = False
        self.stats = None
        if stats and nl.IFLA_STATS64 in a and len(a[nl.IFLA_STATS64]) >= 64:
            self.stats = dict(zip(_STATS64, struct.unpack_from("8Q", a[nl.IFLA_STATS64])))

    def _decode(self):
        self._kind, self._params = None, {}
        info = nl.attrs(self.info, 0, len(self.info))
        if nl.IFLA_INFO_KIND in info:
            self._kind = _text(info[nl.IFLA_INFO_KIND])
        if self._kind == "sit" and nl.IFLA_INFO_DATA in info:
            d = info[nl.IFLA_INFO_DATA]
            d = nl.attrs(d, 0, len(d))
            self._params = {"local": socket.inet_ntoa(d[nl.IFLA_IPTUN_LOCAL][:4]),
                            "remote": socket.inet_ntoa(d[nl.IFLA_IPTUN_REMOTE][:4]),
                            "ttl": d[nl.IFLA_IPTUN_TTL][0], "tos": d[nl.IFLA_IPTUN_TOS][0],
                            "link": _u32(d[nl.IFLA_IPTUN_LINK]) if nl.IFLA_IPTUN_LINK in d else 0,
                            "pmtudisc": d[nl.IFLA_IPTUN_PMTUDISC][0] if nl.IFLA_IPTUN_PMTUDISC in d else 1}

    @property
    def kind(self):
        if self._kind is False:
            self._decode()
        return self._kind

    @property
    def params(self):
        if self._kind is False:
            self._decode()
        return self._params

    def facts(self):
        """What a fingerprint covers of the device itself: the link info as the kernel sent it (kind and
        every tunnel parameter, no counters)."""
        return b"%s\0%s\0%d\0%d\0" % ((self.name or "").encode(), (self.alias or "").encode(), self.mtu or 0,
                                        self.up) + self.info


class _Addr:
    def __init__(self, index, length, a):
        self.index = index
        raw = a[nl.IFA_ADDRESS][:16]
        self.address = _ip6(raw)
        self.length = length
        self.metric = _u32(a[nl.IFA_RT_PRIORITY]) if nl.IFA_RT_PRIORITY in a else 0
        # the kernel's own: link-local (fe80::/10), and the IPv4-compatible ::a.b.c.d of a local-only sit
        self.kernel_made = (raw[0] == 0xFE and raw[1] & 0xC0 == 0x80) or raw[:12] == bytes(12)


class _Route:
    def __init__(self, dst_len, src_len, table, proto, a):
        self.table = _u32(a[nl.RTA_TABLE]) if nl.RTA_TABLE in a else table
        self.proto = proto
        self.oif = _u32(a[nl.RTA_OIF]) if nl.RTA_OIF in a else None
        self.dst = _ip6(a[nl.RTA_DST]) if nl.RTA_DST in a else "::"
        self.dst_len = dst_len
        self.src = _ip6(a[nl.RTA_SRC]) if nl.RTA_SRC in a else None
        self.src_len = src_len
        self.gateway = _ip6(a[nl.RTA_GATEWAY]) if nl.RTA_GATEWAY in a else None
        self.metric = _u32(a[nl.RTA_PRIORITY]) if nl.RTA_PRIORITY in a else 0

    def key(self):
        return (self.dst, self.dst_len, self.src, self.src_len, self.metric)


class _Kernel:
    """One netlink socket in the namespace.  Reads come back as _Link/_Addr/_Route; changes are queued
    (`queue`) and sent in batches (`flush`), each counted into the Result once the kernel acked it, each
    refusal turned into an error code."""

    def __init__(self, netns, result):
        if netns is not None and not os.path.exists(_netns_path(netns)):
            raise SixbrokerError("NETNS_NOT_FOUND", netns)
        self.netns = netns
        self.result = result
        self.pending = []
        self.failed = {}        # device -> SixbrokerError: what could not be done for it
        try:
            with _InNetns(netns):
                self.sock = nl.Socket()
        except OSError as e:
            raise _os_error(e, "netlink socket")

    def close(self):
        self.sock.close()

    def _read(self, fn, what, *args):
        try:
            return fn(*args)
        except OSError as e:
            raise _os_error(e, what)

    def links(self, stats=False):
        """Every device; sit parameters decoded, counters only with stats."""
        body = nl.ifinfo() + nl.attr_u32(nl.IFLA_EXT_MASK, 0 if stats else nl.RTEXT_FILTER_SKIP_STATS)
        out = []
        for buf, start, end in self._read(self.sock.dump, "link dump", nl.RTM_GETLINK, body):
            _, _, index, flags, _ = struct.unpack_from("BxHiII", buf, start)
            out.append(_Link(index, flags, buf, start + 16, end, stats))
        return out

    def link(self, name):
        """The device called name, or None."""
        body = nl.ifinfo() + nl.attr_str(nl.IFLA_IFNAME, name) + nl.attr_u32(nl.IFLA_EXT_MASK,
                                                                           nl.RTEXT_FILTER_SKIP_STATS)
        try:
            buf, start, end = self.sock.request(nl.RTM_GETLINK, body)
        except OSError as e:
            if e.errno == errno.ENODEV:
                return None
            raise _os_error(e, "link get " + name)
        _, _, index, flags, _ = struct.unpack_from("BxHiII", buf, start)
        return _Link(index, flags, buf, start + 16, end)

    def addrs6(self, index=0):
        """IPv6 addresses, of one device when index is given (the kernel filters: Linux 4.20+)."""
        out = []
        body = struct.pack("BBBBI", AF_INET6, 0, 0, 0, index)
        for buf, start, end in self._read(self.sock.dump, "address dump", nl.RTM_GETADDR, body):
            family, length, _, _, idx = struct.unpack_from("BBBBI", buf, start)
            a = nl.attrs(buf, start + 8, end)
            if family == AF_INET6 and nl.IFA_ADDRESS in a and (not index or idx == index):
                out.append(_Addr(idx, length, a))
        return out

    def addrs4(self, universe=False):
        """[(device index, IPv4 address)] in the kernel's order (primary addresses first); with universe,
        global-scope ones only."""
        out = []
        body = struct.pack("BBBBI", socket.AF_INET, 0, 0, 0, 0)
        for buf, start, end in self._read(self.sock.dump, "address dump", nl.RTM_GETADDR, body):
            family, _, _, scope, index = struct.unpack_from("BBBBI", buf, start)
            a = nl.attrs(buf, start + 8, end)
            raw = a.get(nl.IFA_LOCAL) or a.get(nl.IFA_ADDRESS)
            if family == socket.AF_INET and raw and not (universe and scope != nl.RT_SCOPE_UNIVERSE):
                out.append((index, socket.inet_ntoa(raw[:4])))
        return out

    def default_route_device4(self):
        """The output device index of the main table's IPv4 default route, or None."""
        body = struct.pack("BBBBBBBBI", socket.AF_INET, 0, 0, 0, MAIN_TABLE, 0, 0, 0, 0)
        for buf, start, end in self._read(self.sock.dump, "route dump", nl.RTM_GETROUTE, body):
            family, dst_len, _, _, table, _, _, _, _ = struct.unpack_from("BBBBBBBBI", buf, start)
            a = nl.attrs(buf, start + 12, end)
            table = _u32(a[nl.RTA_TABLE]) if nl.RTA_TABLE in a else table
            if family == socket.AF_INET and dst_len == 0 and table == MAIN_TABLE and nl.RTA_OIF in a:
                return _u32(a[nl.RTA_OIF])
        return None

    def routes6(self, proto=None, oif=None):
        """IPv6 routes of the main table (of one protocol and one output device, when given)."""
        body = struct.pack("BBBBBBBBI", AF_INET6, 0, 0, 0, MAIN_TABLE, proto or 0, 0, 0, 0)
        if oif:
            body += nl.attr_u32(nl.RTA_OIF, oif)
        out = []
        for buf, start, end in self._read(self.sock.dump, "route dump", nl.RTM_GETROUTE, body):
            family, dst_len, src_len, _, table, rproto, _, _, _ = struct.unpack_from("BBBBBBBBI", buf, start)
            r = _Route(dst_len, src_len, table, rproto, nl.attrs(buf, start + 12, end))
            if (family == AF_INET6 and r.table == MAIN_TABLE and (proto is None or rproto == proto)
                    and (not oif or r.oif == oif)):
                out.append(r)
        return out

    def route_get4(self, dst):
        """(preferred source, output device index) of the kernel's route to IPv4 dst."""
        attr = nl.attr(nl.RTA_DST, socket.inet_aton(dst))
        body = struct.pack("BBBBBBBBI", socket.AF_INET, 32, 0, 0, 0, 0, 0, 0, 0) + attr
        buf, start, end = self.sock.request(nl.RTM_GETROUTE, body)
        a = nl.attrs(buf, start + 12, end)
        src = socket.inet_ntoa(a[nl.RTA_PREFSRC][:4]) if nl.RTA_PREFSRC in a else None
        return src, (_u32(a[nl.RTA_OIF]) if nl.RTA_OIF in a else None)

    def queue(self, what, request, on_error=None, owner=None, glue=False):
        """request: (type, flags, body) from sixbroker.linux.netlink; on_error: {errno: SixbrokerError}.
        owner: the device the change is for: its refusal is that device's failure (`failed`), and the
        other devices' changes go on; None: a refusal stops the apply.  glue: send this request and the
        next in one sendmsg, which the kernel handles within that one system call, so no kill -9 can
        fall between them."""
        self.pending.append((what, request, on_error or {}, owner, glue))

    def _chunks(self, pending):
        chunk = []
        for i, item in enumerate(pending):
            chunk.append(item)
            glued = item[4] and i + 1 < len(pending)
            if len(chunk) >= nl.BATCH - 1 and not glued:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def flush(self):
        """Send what is queued, in order.  A refused change of a device is recorded in `failed` (the
        first per device); one without an owner is raised after all were answered."""
        pending, self.pending = self.pending, []
        first = None
        for chunk in self._chunks(pending):
            try:
                codes = self.sock.batch([req for _, req, _, _, _ in chunk])
            except OSError as e:
                raise _os_error(e, "netlink")
            for (what, _, on_error, owner, _), code in zip(chunk, codes):
                if not code:
                    self.result.add(what)
                    continue
                err = on_error.get(code) or _os_error(OSError(code, os.strerror(code)), what)
                if owner is not None:
                    self.failed.setdefault(owner, err)
                elif first is None:
                    first = err
        if first is not None:
            raise first


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


# ---- sysctls -----------------------------------------------------------------------------------

def _sysctl_path(key):
    parts = key.split(".")
    # net.ipv6.conf.<device>.<setting>: a device name may itself hold dots (eth0.2)
    if len(parts) > 5 and parts[0] == "net" and parts[2] in ("conf", "neigh"):
        parts = parts[:3] + [".".join(parts[3:-1]), parts[-1]]
    for p in parts:
        if not p or p in (".", "..") or "/" in p:
            raise SixbrokerError("SYSCTL_FAIL", key + ": not a sysctl name")
    return "/proc/sys/" + "/".join(parts)


CLONE_NEWNET = 0x40000000


def _setns(fd):
    if hasattr(os, "setns"):            # Python 3.12+
        os.setns(fd, CLONE_NEWNET)
        return
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


class _InNetns:
    """Run this thread in another network namespace for a while: sockets made meanwhile stay there, and
    /proc/sys/net is that namespace's."""

    def __init__(self, netns):
        self.netns = netns
        self.saved = None

    def __enter__(self):
        if self.netns is None:
            return self
        try:
            fd = os.open(_netns_path(self.netns), os.O_RDONLY)
        except OSError:
            raise SixbrokerError("NETNS_NOT_FOUND", self.netns)
        try:
            self.saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            _setns(fd)
        except OSError as e:
            if self.saved is not None:
                os.close(self.saved)
                self.saved = None
            raise _os_error(e, "enter network namespace " + self.netns)
        finally:
            os.close(fd)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            try:
                _setns(self.saved)
            finally:
                os.close(self.saved)
                self.saved = None
        return False


def apply_sysctls(sysctls, netns=None, result=None):
    """Set each [key, value] that differs (read first, so an unchanged one is no change); a Result."""
    result = result if result is not None else Result()
    want = []
    for key, value in sysctls:
        if (key, str(value)) not in want:
            want.append((key, str(value)))
    if not want:
        return result
    with _InNetns(netns):
        for key, value in want:
            path = _sysctl_path(key)
            try:
                with open(path) as f:
                    current = f.read()
                if current.split() == value.split():
                    continue
                with open(path, "w") as f:
                    f.write(value)
            except OSError as e:
                if e.errno in (errno.EPERM, errno.EACCES):
                    raise SixbrokerError("NOT_PERMITTED", key)
                raise SixbrokerError("SYSCTL_FAIL", key + "=" + value + ": " + (e.strerror or str(e)))
            result.add("sysctl " + key + "=" + value)
    return result



# ---- the reconciler ----------------------------------------------------------------------------

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


def _owned(li, mark, prefix):
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
    k = _Kernel(netns, result)
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
    apply_sysctls(sysctls, netns, result)
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
    ours = dict((li.index, li.name) for li in links if _owned(li, mark, prefix))
    addrs = view.addrs6(ours)
    routes = view.routes6(ours)
    before = _fingerprint(links, addrs, routes, mark, prefix)

    # First free what no plan wants: a device going away may free the (local, remote) pair a new one needs.
    deleted = [li for li in sorted(links, key=lambda x: x.name) if _owned(li, mark, prefix) and li.name not in wanted]
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
    k.result.foreign_tunnels = _foreign(links, mark)

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
        want_lan.add((li.index, _canon6(la["address"]), int(la["length"])))
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
        if _owned(li, mark, prefix):
            text = " ".join(sorted(by_index.get(li.index, ()))) + "\n" + "\n".join(sorted(rts.get(li.index, ())))
            total += _hash(b"ours\0" + li.facts() + text.encode())
        elif li.kind == "sit" and li.up and li.params:
            total += _hash(("foreign %s %s %s" % (li.name, li.params["local"], li.params["remote"])).encode())
    return total % FP_MOD


def _state(view, mark, prefix):
    links = view.links()
    ours = set(li.index for li in links if _owned(li, mark, prefix))
    return _fingerprint(links, view.addrs6(ours), view.routes6(ours), mark, prefix)


def fingerprint(netns=None, scope=DEFAULT_SCOPE, prefix=None):
    """The fingerprint of what this scope owns in the namespace now (one dump each of links, IPv6
    addresses and our routes); equal to an apply's Result.fingerprint while nothing changed."""
    k = _Kernel(netns, Result())
    try:
        return _state(_View(k), tag(scope), prefix)
    finally:
        k.close()


# ---- removing and reading ----------------------------------------------------------------------

def remove_all(netns=None, scope=DEFAULT_SCOPE, prefix=None, lan=False):
    """Delete every device of this scope (their addresses and routes go with them) and, with lan, our
    LAN addresses."""
    mark = tag(scope)
    result = Result()
    k = _Kernel(netns, result)
    try:
        links = k.links()
        for li in sorted(links, key=lambda x: x.name):
            if _owned(li, mark, prefix):
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


def ipv4_facts(netns=None, device=None, peer=None):
    """(local IPv4 or None, MTU or None) for a tunnel: of `device` (its first IPv4 address) when given,
    else of the kernel's route to `peer` (its preferred source and output device)."""
    k = _Kernel(netns, Result())
    try:
        if device is not None:
            li = k.link(device)
            if li is None:
                raise SixbrokerError("TUNLINK_NOT_UP", device + " does not exist", "tunlink")
            for index, a in k.addrs4():
                if index == li.index:
                    return a, li.mtu
            return None, li.mtu
        try:
            src, oif = k.route_get4(peer)
        except OSError as e:
            raise SixbrokerError("NO_LOCAL_ADDRESS", "no IPv4 route to %s (%s)" % (peer, e.strerror))
        mtu = None
        for li in k.links():
            if li.index == oif:
                mtu = li.mtu
        return src, mtu
    finally:
        k.close()


def foreign_tunnels(netns=None, scope=DEFAULT_SCOPE):
    """(local, remote) of the up sit devices this scope does not own ("0.0.0.0" is a wildcard)."""
    mark = tag(scope)
    k = _Kernel(netns, Result())
    try:
        return _foreign(k.links(), mark)
    finally:
        k.close()


def _foreign(links, mark):
    return [(li.params["local"], li.params["remote"]) for li in links
            if li.kind == "sit" and li.up and li.alias != mark and li.params]


def status(netns=None, scope=DEFAULT_SCOPE, prefix=None, lan=False):
    """What this scope owns, as plain data: devices with addresses, routes and counters; LAN addresses."""
    mark = tag(scope)
    k = _Kernel(netns, Result())
    try:
        links = k.links(stats=True)
        addrs = k.addrs6()
        routes = k.routes6(RTPROT)
    finally:
        k.close()
    name_of = dict((li.index, li.name) for li in links)
    devices = []
    for li in sorted(links, key=lambda x: x.name):
        if not _owned(li, mark, prefix):
            continue
        st = li.stats or {}
        devices.append({
            "device": li.name, "kind": li.kind, "up": li.up, "mtu": li.mtu,
            "local": li.params.get("local"), "remote": li.params.get("remote"), "ttl": li.params.get("ttl"),
            "addresses": sorted("%s/%d" % (a.address, a.length) for a in addrs
                                if a.index == li.index and not a.kernel_made),
            "routes": sorted(RouteSpec(li.name, r.dst, r.dst_len, r.gateway, r.src, r.src_len, r.metric).text()
                             for r in routes if r.oif == li.index and r.proto == RTPROT),
            "counters": dict((key, st.get(key, 0)) for key in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes",
                                                               "rx_errors", "tx_errors", "tx_dropped")),
        })
    out = {"scope": scope, "devices": devices}
    if lan:
        out["lan_addresses"] = sorted("%s/%d dev %s" % (a.address, a.length, name_of.get(a.index, a.index))
                                      for a in addrs if a.metric == LAN_METRIC)
    out["foreign_tunnels"] = ["%s -> %s" % pair for pair in _foreign(links, mark)]
    return out
