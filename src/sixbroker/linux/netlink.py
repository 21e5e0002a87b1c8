"""rtnetlink and nfnetlink over a plain socket: dumps, single requests and batched changes.

CPython only (the broker and the standalone router; the netifd handler never changes the kernel itself).
Messages are packed with struct from linux/rtnetlink.h, if_link.h, if_addr.h and if_tunnel.h.  Two
reasons for our own code instead of pyroute2:
- reading: pyroute2 decodes every attribute of every message into objects (~1.4 ms a link natively, 20x
  under TCG: seconds for a no-op apply of 1000 tunnels); we read only what is compared;
- writing: pyroute2 sends one message and waits for its answer; `Socket.batch` sends up to BATCH messages
  in one sendmsg and then collects their acks.  The kernel handles the messages of one send in order and
  goes on after a failed one, so a batch behaves like the same requests one after another, for a
  fraction of the system calls and Python work.
"""

import os
import socket
import struct

NETLINK_ROUTE, NETLINK_NETFILTER = 0, 12
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR = 0x1, 0x4, 0x300, 0x10
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
SOL_NETLINK, NETLINK_GET_STRICT_CHK = 270, 12
NLA_F_NESTED = 0x8000

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26

IFLA_IFNAME, IFLA_MTU, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_STATS64, IFLA_EXT_MASK = 3, 4, 18, 20, 23, 29
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_IPTUN_LINK, IFLA_IPTUN_LOCAL, IFLA_IPTUN_REMOTE, IFLA_IPTUN_TTL, IFLA_IPTUN_TOS = 1, 2, 3, 4, 5
IFLA_IPTUN_PMTUDISC = 10
IFA_ADDRESS, IFA_LOCAL, IFA_RT_PRIORITY = 1, 2, 9
RTA_DST, RTA_SRC, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_METRICS, RTA_TABLE = 1, 2, 4, 5, 6, 7, 8, 15
RTAX_LOCK, RTAX_MTU = 1, 2
RTM_F_FIB_MATCH = 0x2000     # a route get answers with the table's entry that matched, not a clone
RTN_UNICAST, RT_SCOPE_UNIVERSE = 1, 0
RTN_LOCAL, RT_SCOPE_HOST = 2, 254

# nfnetlink (linux/netfilter/nfnetlink.h, nf_tables.h): the ruleset generation
NFNL_SUBSYS_NFTABLES, NFT_MSG_GETGEN, NFTA_GEN_ID = 10, 16, 1

BATCH = 100     # messages per send: their acks (~1 KB of receive buffer each) must fit the socket's buffer


class Error(OSError):
    """A request the kernel refused (or a reply we cannot read), by errno."""

    def __init__(self, code):
        OSError.__init__(self, code, os.strerror(code))


def messages(data):
    """(type, flags, seq, payload start, end) of each netlink message in one datagram."""
    pos = 0
    while pos + 16 <= len(data):
        length, typ, flags, seq, _ = struct.unpack_from("IHHII", data, pos)
        if length < 16:
            raise Error(71)     # EPROTO: a malformed message
        yield typ, flags, seq, pos + 16, pos + length
        pos += (length + 3) & ~3


_HH_FROM = struct.Struct("HH").unpack_from
_ATTR_U32 = struct.Struct("HHI").pack


def attrs(buf, start, end):
    """{type: bytes} of the attributes in buf[start:end] (the nested flag masked off)."""
    out = {}
    while start + 4 <= end:
        length, typ = _HH_FROM(buf, start)
        if length < 4:
            break
        out[typ & 0x3FFF] = buf[start + 4:start + length]
        start += (length + 3) & ~3
    return out


def attr(typ, payload):
    n = 4 + len(payload)
    return struct.pack("HH", n, typ) + payload + b"\0" * (-n & 3)


def attr_u32(typ, value):
    # (one pack: a dump or a batch of 10,000 tunnels' routes makes and reads a few hundred thousand of these)
    return _ATTR_U32(8, typ, value)


def attr_str(typ, text):
    return attr(typ, text.encode() + b"\0")


def nested(typ, *parts):
    return attr(typ | NLA_F_NESTED, b"".join(parts))


class Socket:
    """One netlink socket, opened in the calling thread's network namespace (the caller enters the right
    one first: netns.InNetns)."""

    def __init__(self, protocol=NETLINK_ROUTE):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
        self.sock.bind((0, 0))
        self.seq = 0
        try:
            # filters in a dump request are applied by the kernel (Linux 4.20+); older ones ignore them
            # and the callers filter again
            self.sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        except OSError:
            pass

    def close(self):
        self.sock.close()

    def _send(self, msg_type, flags, body):
        self.seq += 1
        self.sock.send(struct.pack("IHHII", 16 + len(body), msg_type, flags, self.seq, 0) + body)
        return self.seq

    def dump(self, msg_type, body):
        """[(buf, start, end)] of every answer; a dump disturbed by a change is read again."""
        for _ in range(5):
            seq = self._send(msg_type, NLM_F_REQUEST | NLM_F_DUMP, body)
            out, interrupted = [], False
            done = False
            while not done:
                data = self.sock.recv(1 << 20)
                for typ, flags, mseq, pos, end in messages(data):
                    if mseq != seq:
                        continue
                    if typ == NLMSG_DONE:
                        done = True
                        break
                    if typ == NLMSG_ERROR:
                        code = -struct.unpack_from("i", data, pos)[0]
                        if code:
                            raise Error(code)
                        done = True
                        break
                    interrupted = interrupted or bool(flags & NLM_F_DUMP_INTR)
                    out.append((data, pos, end))
            if not interrupted:
                return out
        raise Error(4)     # EINTR: the dump kept being interrupted by changes

    def request(self, msg_type, body):
        """(buf, start, end) of the one answer to a get request; Error when refused."""
        seq = self._send(msg_type, NLM_F_REQUEST, body)
        while True:
            data = self.sock.recv(1 << 16)
            for typ, _, mseq, pos, end in messages(data):
                if mseq == seq:
                    if typ == NLMSG_ERROR:
                        raise Error(-struct.unpack_from("i", data, pos)[0])
                    return data, pos, end

    def batch(self, requests):
        """Send [(msg_type, flags, body)], BATCH to a send; [0 or errno] per request, in order."""
        results = []
        for first in range(0, len(requests), BATCH):
            chunk = requests[first:first + BATCH]
            seqs = {}
            out = []
            for i, (msg_type, flags, body) in enumerate(chunk):
                self.seq += 1
                seqs[self.seq] = i
                out.append(struct.pack("IHHII", 16 + len(body), msg_type, flags | NLM_F_REQUEST | NLM_F_ACK,
                                       self.seq, 0) + body)
            self.sock.send(b"".join(out))
            codes = [None] * len(chunk)
            left = len(chunk)
            while left:
                data = self.sock.recv(1 << 20)
                for typ, _, mseq, pos, _ in messages(data):
                    i = seqs.get(mseq)
                    if i is None or typ != NLMSG_ERROR or codes[i] is not None:
                        continue
                    codes[i] = -struct.unpack_from("i", data, pos)[0]
                    left -= 1
            results.extend(codes)
        return results


# ---- the messages we send ------------------------------------------------------------------------

def ifinfo(index=0, flags=0, change=0):
    return struct.pack("BxHiII", socket.AF_UNSPEC, 0, index, flags, change)


def sit_info(local, remote, ttl, tos, link, pmtudisc):
    data = (attr_u32(IFLA_IPTUN_LINK, link) + attr(IFLA_IPTUN_LOCAL, socket.inet_aton(local))
            + attr(IFLA_IPTUN_REMOTE, socket.inet_aton(remote)) + attr(IFLA_IPTUN_TTL, bytes([ttl]))
            + attr(IFLA_IPTUN_TOS, bytes([tos])) + attr(IFLA_IPTUN_PMTUDISC, bytes([pmtudisc])))
    return nested(IFLA_LINKINFO, attr_str(IFLA_INFO_KIND, "sit"), nested(IFLA_INFO_DATA, data))


def link_add_sit(name, mtu, local, remote, ttl, tos, link, pmtudisc):
    body = ifinfo() + attr_str(IFLA_IFNAME, name) + attr_u32(IFLA_MTU, mtu) + sit_info(
        local, remote, ttl, tos, link, pmtudisc)
    return RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body


def link_change_sit(index, local, remote, ttl, tos, link, pmtudisc):
    return RTM_NEWLINK, 0, ifinfo(index) + sit_info(local, remote, ttl, tos, link, pmtudisc)


def link_set(index, alias=None, mtu=None, up=False):
    body = ifinfo(index, 1, 1) if up else ifinfo(index)       # IFF_UP set, in the change mask
    if alias is not None:
        body += attr_str(IFLA_IFALIAS, alias)
    if mtu is not None:
        body += attr_u32(IFLA_MTU, mtu)
    return RTM_NEWLINK, 0, body


def route6_get(dst):
    """The main table's entry a lookup of dst matches (RTM_F_FIB_MATCH), as one get request."""
    body = struct.pack("BBBBBBBBI", socket.AF_INET6, 128, 0, 0, 0, 0, 0, 0, RTM_F_FIB_MATCH)
    return body + attr(RTA_DST, socket.inet_pton(socket.AF_INET6, dst))


def addr6_get(index, address):
    """One IPv6 address of one device, as one get request."""
    return struct.pack("BBBBI", socket.AF_INET6, 0, 0, 0, index) + attr(IFA_ADDRESS, socket.inet_pton(
        socket.AF_INET6, address))


def link_del(index):
    return RTM_DELLINK, 0, ifinfo(index)


def addr6(add, index, address, length, metric=None):
    body = struct.pack("BBBBI", socket.AF_INET6, length, 0, RT_SCOPE_UNIVERSE, index)
    body += attr(IFA_ADDRESS, socket.inet_pton(socket.AF_INET6, address))
    if metric is not None:
        body += attr_u32(IFA_RT_PRIORITY, metric)
    if add:
        return RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body
    return RTM_DELADDR, 0, body


def route6(cmd, oif, dst, dst_len, gateway=None, src=None, src_len=0, metric=None, proto=0, table=254, mtu=None,
           local=False):
    """cmd: "add" (exclusive), "replace" or "del".  mtu: a locked MTU metric (`mtu lock N`): the kernel
    takes an unlocked one for the packets it sends itself only, and forwards by the device's MTU.
    local: a `local` route (delivered to this host, as an address's own route is, without the address)."""
    body = struct.pack("BBBBBBBBI", socket.AF_INET6, dst_len, src_len if src else 0, 0, table, proto,
                       RT_SCOPE_HOST if local else RT_SCOPE_UNIVERSE, RTN_LOCAL if local else RTN_UNICAST, 0)
    if dst_len:
        body += attr(RTA_DST, socket.inet_pton(socket.AF_INET6, dst))
    if src:
        body += attr(RTA_SRC, socket.inet_pton(socket.AF_INET6, src))
    if gateway:
        body += attr(RTA_GATEWAY, socket.inet_pton(socket.AF_INET6, gateway))
    body += attr_u32(RTA_OIF, oif)
    if metric is not None:
        body += attr_u32(RTA_PRIORITY, metric)
    if mtu is not None and cmd != "del":
        body += _locked_mtu(mtu)
    body += attr_u32(RTA_TABLE, table)
    if cmd == "add":
        return RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body
    if cmd == "replace":
        return RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, body
    return RTM_DELROUTE, 0, body


_LOCKED_MTU = {}


def _locked_mtu(mtu):
    # the same few MTUs on every tunnel's routes: each one's attribute built once
    a = _LOCKED_MTU.get(mtu)
    if a is None:
        a = _LOCKED_MTU[mtu] = nested(RTA_METRICS, attr_u32(RTAX_LOCK, 1 << RTAX_MTU), attr_u32(RTAX_MTU, mtu))
    return a


def nft_generation(sock):
    """The nftables ruleset generation of the namespace of sock (a NETLINK_NETFILTER Socket): it counts
    every committed nftables transaction, of any table (nf_tables_api.c, NFT_MSG_GETGEN)."""
    buf, start, end = sock.request((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN,
                                   struct.pack("BBH", socket.AF_UNSPEC, 0, 0))
    a = attrs(buf, start + 4, end)
    return struct.unpack(">I", a[NFTA_GEN_ID][:4])[0]


def _nft_body(family, attrs_bytes):
    return struct.pack("BBH", family, 0, 0) + attrs_bytes


def nft_request(sock, msg, family, attrs_bytes):
    """{attribute: bytes} of the answer to one nf_tables get request (NFT_MSG_GET*)."""
    buf, start, end = sock.request((NFNL_SUBSYS_NFTABLES << 8) | msg, _nft_body(family, attrs_bytes))
    return attrs(buf, start + 4, end)


def nft_dump(sock, msg, family, attrs_bytes):
    """[{attribute: bytes}] of each answer to an nf_tables dump request (filters in attrs_bytes)."""
    return [attrs(buf, start + 4, end)
            for buf, start, end in sock.dump((NFNL_SUBSYS_NFTABLES << 8) | msg, _nft_body(family, attrs_bytes))]


def iter_nested(buf):
    """The payloads of the attributes in buf, in order (a nested list: NFTA_LIST_ELEM, ...)."""
    pos = 0
    while pos + 4 <= len(buf):
        length, _ = struct.unpack_from("HH", buf, pos)
        if length < 4:
            break
        yield buf[pos + 4:pos + length]
        pos += (length + 3) & ~3
