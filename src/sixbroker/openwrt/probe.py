"""ICMP echo (ping) without the `ping` program: the router end runs on MicroPython, which cannot start one.

A raw socket speaks ICMP or ICMPv6 directly, on CPython and MicroPython alike.  It needs CAP_NET_RAW,
which rpcd (and so the LuCI plugin) and a root shell on OpenWrt have; anyone else gets ProbeError with
errno EPERM and the caller says "cannot measure" instead of "lost".

Linux does the ICMPv6 checksum itself on raw ICMPv6 sockets (RFC 3542 3.1, net/ipv6/raw.c: checksum
offset 2 is forced for IPPROTO_ICMPV6); for ICMP over IPv4 we compute it, and a received IPv4 packet
still carries its IP header.
"""

import errno
import os
import select
import socket
import struct

try:
    from time import ticks_us, ticks_diff     # MicroPython: a wrapping microsecond counter
except ImportError:
    from time import monotonic

    def ticks_us():
        return int(monotonic() * 1000000)

    def ticks_diff(a, b):
        return a - b

IPPROTO_ICMP = 1
IPPROTO_IPV6 = 41
IPPROTO_ICMPV6 = 58
IPV6_DONTFRAG = 62          # linux/in6.h: fail with EMSGSIZE instead of fragmenting locally
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)    # 25 on every Linux arch, MIPS included
ECHO_REQUEST4, ECHO_REPLY4 = 8, 0
ECHO_REQUEST6, ECHO_REPLY6 = 128, 129
HEADER6 = 40                # IPv6 header
HEADER4 = 20                # IPv4 header without options
ICMP_HEADER = 8


class ProbeError(Exception):
    """The probe could not be sent at all (no permission, no route, too big): .errno says which."""

    def __init__(self, text, errno=None):
        super().__init__(text)
        self.errno = errno
        self.text = text

    def __str__(self):
        return self.text


def payload_for_mtu(mtu, ipv6=True):
    """Echo payload bytes that make the whole packet exactly mtu bytes long."""
    return mtu - (HEADER6 if ipv6 else HEADER4) - ICMP_HEADER


def checksum(data):
    """RFC 1071 internet checksum."""
    if len(data) % 2:
        data = data + b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def request(ipv6, ident, seq, payload):
    if ipv6:
        return struct.pack("!BBHHH", ECHO_REQUEST6, 0, 0, ident, seq) + payload
    head = struct.pack("!BBHHH", ECHO_REQUEST4, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ECHO_REQUEST4, 0, checksum(head + payload), ident, seq) + payload


def parse_reply(ipv6, data):
    """(ident, seq, payload) of an echo reply, or None for any other packet."""
    if not ipv6:
        if len(data) < HEADER4 or data[0] >> 4 != 4:
            return None
        data = data[(data[0] & 15) * 4:]
    if len(data) < ICMP_HEADER:
        return None
    kind, code, _, ident, seq = struct.unpack("!BBHHH", data[:ICMP_HEADER])
    if kind != (ECHO_REPLY6 if ipv6 else ECHO_REPLY4) or code != 0:
        return None
    return ident, seq, data[ICMP_HEADER:]


def _source(family, sockaddr):
    """The packed source address of a received packet, from either interpreter's recvfrom()."""
    if isinstance(sockaddr, tuple):
        return socket.inet_pton(family, sockaddr[0].split("%")[0])
    return socket.sockaddr(sockaddr)[1]        # MicroPython: (family, packed address, port, ...)


# errno numbers differ between architectures (MIPS has its own), so they come from the errno module;
# MicroPython's lacks a few, which then fall back to asm-generic's.  Words because MicroPython has no
# os.strerror.
EPERM = getattr(errno, "EPERM", 1)
ENODEV = getattr(errno, "ENODEV", 19)
EACCES = getattr(errno, "EACCES", 13)
EMSGSIZE = getattr(errno, "EMSGSIZE", 90)
ENETUNREACH = getattr(errno, "ENETUNREACH", 101)
EHOSTUNREACH = getattr(errno, "EHOSTUNREACH", 113)
ENOBUFS = getattr(errno, "ENOBUFS", 105)
_WORDS = {
    EPERM: "not permitted (raw sockets need root)",
    EACCES: "not permitted (raw sockets need root)",
    ENODEV: "no such device",
    EMSGSIZE: "message too long for the path MTU",
    ENETUNREACH: "network unreachable (no route)",
    EHOSTUNREACH: "host unreachable",
}


def _oserror(e):
    code = e.args[0] if e.args and isinstance(e.args[0], int) else getattr(e, "errno", None)
    return ProbeError(_WORDS.get(code) or str(e), code)


def echo(dst, count=1, size=56, timeout=1.0, device=None, dontfrag=False):
    """Send count echo requests to dst (an IPv4 or IPv6 address as text), one after the other, each
    answered or given up after timeout seconds.  Returns one round-trip time in milliseconds per
    request, None for a lost one.

    device: send through this interface only (SO_BINDTODEVICE), e.g. the tunnel.  dontfrag: an IPv6
    packet larger than the path MTU the kernel knows fails with ProbeError(EMSGSIZE) instead of going
    out in fragments, so a path MTU test measures the path and not the fragmentation.
    """
    ipv6 = ":" in dst
    family = socket.AF_INET6 if ipv6 else socket.AF_INET
    try:
        want = socket.inet_pton(family, dst)
        target = socket.getaddrinfo(dst, 0, family)[0][-1]
        s = socket.socket(family, socket.SOCK_RAW, IPPROTO_ICMPV6 if ipv6 else IPPROTO_ICMP)
    except OSError as e:
        raise _oserror(e)
    try:
        try:
            if device:
                s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, device.encode() + b"\0")
            if dontfrag and ipv6:
                s.setsockopt(IPPROTO_IPV6, IPV6_DONTFRAG, 1)
        except OSError as e:
            raise _oserror(e)
        poller = select.poll()
        poller.register(s, select.POLLIN)
        ident = struct.unpack("!H", os.urandom(2))[0]
        # a token of our own: another ping with the same identifier must not count as our answer
        token = os.urandom(8)
        payload = (token * (size // 8 + 1))[:size] if size >= 8 else token[:size]
        out = []
        for seq in range(count):
            start = ticks_us()
            try:
                s.sendto(request(ipv6, ident, seq, payload), target)
            except OSError as e:
                if e.args and e.args[0] == ENOBUFS:
                    # the device dropped it on the way out (a full queue, a veth peer's smaller MTU):
                    # a lost packet, not a failure to probe
                    out.append(None)
                    continue
                raise _oserror(e)
            out.append(_wait(s, poller, ipv6, family, want, ident, seq, payload, start, timeout))
        return out
    finally:
        s.close()


def _wait(s, poller, ipv6, family, want, ident, seq, payload, start, timeout):
    limit = int(timeout * 1000000)
    while True:
        left = limit - ticks_diff(ticks_us(), start)
        if left <= 0:
            return None
        if not poller.poll(left // 1000 + 1):
            continue
        try:
            data, sender = s.recvfrom(65535)
        except OSError:
            continue
        now = ticks_us()
        reply = parse_reply(ipv6, data)
        if reply is None or reply[0] != ident or reply[1] != seq or reply[2] != payload:
            continue
        if _source(family, sender) != want:
            continue
        return ticks_diff(now, start) / 1000.0
