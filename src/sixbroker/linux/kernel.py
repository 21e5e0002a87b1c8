"""One netlink socket into a namespace's kernel: links, addresses and routes decoded from its dumps, and
changes queued and sent in batches.

CPython only.  Netlink is our own (sixbroker/linux/netlink.py): dumps decode only the fields the appliers
compare, and changes go to the kernel in batches, in order, each counted once the kernel acked it and each
refusal turned into an error code.
"""

import errno
import os
import socket
import struct

from sixbroker.linux import netlink as nl
from sixbroker.linux.netns import InNetns, netns_path, os_error
from sixbroker.core.errors import SixbrokerError

MAIN_TABLE = 254
IFF_UP = 0x1
AF_INET6 = socket.AF_INET6


class Changes:
    """What was changed: `changes` is one line per netlink change or sysctl write."""

    def __init__(self):
        self.changes = []

    @property
    def count(self):
        return len(self.changes)

    def add(self, what):
        self.changes.append(what)

    def __repr__(self):
        return "%s(%d changes)" % (type(self).__name__, self.count)


def canon6(text):
    """The kernel's spelling (inet_ntop), so a plan's address and a dumped one compare as text."""
    try:
        return socket.inet_ntop(AF_INET6, socket.inet_pton(AF_INET6, text))
    except (OSError, TypeError):
        raise ValueError("not an IPv6 address: %r" % (text,))


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


class Link:
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


class Addr:
    """One IPv6 address of an address dump."""

    def __init__(self, index, length, a):
        self.index = index
        raw = a[nl.IFA_ADDRESS][:16]
        self.address = _ip6(raw)
        self.length = length
        self.metric = _u32(a[nl.IFA_RT_PRIORITY]) if nl.IFA_RT_PRIORITY in a else 0
        # the kernel's own: link-local (fe80::/10), and the IPv4-compatible ::a.b.c.d of a local-only sit
        self.kernel_made = (raw[0] == 0xFE and raw[1] & 0xC0 == 0x80) or raw[:12] == bytes(12)


class Route:
    """One route of a route dump."""

    def __init__(self, dst_len, src_len, table, proto, a, rtype=nl.RTN_UNICAST):
        self.local = rtype == nl.RTN_LOCAL
        self.table = _u32(a[nl.RTA_TABLE]) if nl.RTA_TABLE in a else table
        self.proto = proto
        self.oif = _u32(a[nl.RTA_OIF]) if nl.RTA_OIF in a else None
        self.dst = _ip6(a[nl.RTA_DST]) if nl.RTA_DST in a else "::"
        self.dst_len = dst_len
        self.src = _ip6(a[nl.RTA_SRC]) if nl.RTA_SRC in a else None
        self.src_len = src_len
        self.gateway = _ip6(a[nl.RTA_GATEWAY]) if nl.RTA_GATEWAY in a else None
        self.metric = _u32(a[nl.RTA_PRIORITY]) if nl.RTA_PRIORITY in a else 0
        self.mtu = None
        if nl.RTA_METRICS in a:
            m = nl.attrs(a[nl.RTA_METRICS], 0, len(a[nl.RTA_METRICS]))
            if nl.RTAX_MTU in m:
                self.mtu = _u32(m[nl.RTAX_MTU])

    def key(self):
        return (self.dst, self.dst_len, self.src, self.src_len, self.metric)


class Kernel:
    """One netlink socket in the namespace.  Reads come back as Link/Addr/Route; changes are queued
    (`queue`) and sent in batches (`flush`), each counted into `result` (a Changes) once the kernel acked
    it, each refusal turned into an error code."""

    def __init__(self, netns, result=None):
        if netns is not None and not os.path.exists(netns_path(netns)):
            raise SixbrokerError("NETNS_NOT_FOUND", netns)
        self.netns = netns
        self.result = result if result is not None else Changes()
        self.pending = []
        self.failed = {}        # device -> SixbrokerError: what could not be done for it
        try:
            with InNetns(netns):
                self.sock = nl.Socket()
        except OSError as e:
            raise os_error(e, "netlink socket")

    def close(self):
        self.sock.close()

    def dump(self, what, msg_type, body):
        """The messages of one dump request, as (buffer, start, end); `what` names it in an error."""
        try:
            return self.sock.dump(msg_type, body)
        except OSError as e:
            raise os_error(e, what)

    def links(self, stats=False):
        """Every device; sit parameters decoded, counters only with stats."""
        body = nl.ifinfo() + nl.attr_u32(nl.IFLA_EXT_MASK, 0 if stats else nl.RTEXT_FILTER_SKIP_STATS)
        out = []
        for buf, start, end in self.dump("link dump", nl.RTM_GETLINK, body):
            _, _, index, flags, _ = struct.unpack_from("BxHiII", buf, start)
            out.append(Link(index, flags, buf, start + 16, end, stats))
        return out

    def link(self, name=None, index=0):
        """The device called name (or with that index), or None."""
        body = nl.ifinfo(index) + (nl.attr_str(nl.IFLA_IFNAME, name) if name is not None else b"")
        body += nl.attr_u32(nl.IFLA_EXT_MASK, nl.RTEXT_FILTER_SKIP_STATS)
        try:
            buf, start, end = self.sock.request(nl.RTM_GETLINK, body)
        except OSError as e:
            if e.errno == errno.ENODEV:
                return None
            raise os_error(e, "link get %s" % (name if name is not None else index))
        _, _, index, flags, _ = struct.unpack_from("BxHiII", buf, start)
        return Link(index, flags, buf, start + 16, end)

    def addrs6(self, index=0):
        """IPv6 addresses, of one device when index is given (the kernel filters: Linux 4.20+)."""
        out = []
        body = struct.pack("BBBBI", AF_INET6, 0, 0, 0, index)
        for buf, start, end in self.dump("address dump", nl.RTM_GETADDR, body):
            family, length, _, _, idx = struct.unpack_from("BBBBI", buf, start)
            a = nl.attrs(buf, start + 8, end)
            if family == AF_INET6 and nl.IFA_ADDRESS in a and (not index or idx == index):
                out.append(Addr(idx, length, a))
        return out

    def addr6(self, index, address):
        """The address on device index, as an Addr, or None."""
        try:
            buf, start, end = self.sock.request(nl.RTM_GETADDR, nl.addr6_get(index, address))
        except OSError:
            return None
        family, length, _, _, idx = struct.unpack_from("BBBBI", buf, start)
        a = nl.attrs(buf, start + 8, end)
        return Addr(idx, length, a) if nl.IFA_ADDRESS in a else None

    def route6_entry(self, dst, dst_len):
        """The route of the main table with exactly this destination that lookups of it take, or None
        (one get request: what a dump of thousands would find for it)."""
        try:
            buf, start, end = self.sock.request(nl.RTM_GETROUTE, nl.route6_get(dst))
        except OSError:
            return None
        _, rlen, src_len, _, table, proto, _, rtype, _ = struct.unpack_from("BBBBBBBBI", buf, start)
        r = Route(rlen, src_len, table, proto, nl.attrs(buf, start + 12, end), rtype)
        if r.dst != canon6(dst) or r.dst_len != dst_len or r.table != MAIN_TABLE or r.src is not None:
            return None
        return r

    def addrs4(self, universe=False):
        """[(device index, IPv4 address)] in the kernel's order (primary addresses first); with universe,
        global-scope ones only."""
        out = []
        body = struct.pack("BBBBI", socket.AF_INET, 0, 0, 0, 0)
        for buf, start, end in self.dump("address dump", nl.RTM_GETADDR, body):
            family, _, _, scope, index = struct.unpack_from("BBBBI", buf, start)
            a = nl.attrs(buf, start + 8, end)
            raw = a.get(nl.IFA_LOCAL) or a.get(nl.IFA_ADDRESS)
            if family == socket.AF_INET and raw and not (universe and scope != nl.RT_SCOPE_UNIVERSE):
                out.append((index, socket.inet_ntoa(raw[:4])))
        return out

    def default_route_device4(self):
        """The output device index of the main table's IPv4 default route, or None."""
        body = struct.pack("BBBBBBBBI", socket.AF_INET, 0, 0, 0, MAIN_TABLE, 0, 0, 0, 0)
        for buf, start, end in self.dump("route dump", nl.RTM_GETROUTE, body):
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
        for buf, start, end in self.dump("route dump", nl.RTM_GETROUTE, body):
            family, dst_len, src_len, _, table, rproto, _, rtype, _ = struct.unpack_from("BBBBBBBBI", buf, start)
            r = Route(dst_len, src_len, table, rproto, nl.attrs(buf, start + 12, end), rtype)
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
                raise os_error(e, "netlink")
            for (what, _, on_error, owner, _), code in zip(chunk, codes):
                if not code:
                    self.result.add(what)
                    continue
                err = on_error.get(code) or os_error(OSError(code, os.strerror(code)), what)
                if owner is not None:
                    self.failed.setdefault(owner, err)
                elif first is None:
                    first = err
        if first is not None:
            raise first

