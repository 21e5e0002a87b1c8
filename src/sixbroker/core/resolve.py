"""A broker's host name to its IPv4 address, with the resolver's failures told apart: a name that does not
exist or has no IPv4 address will not heal by itself, no answer may (the router's retry back-off differs).
Runs on CPython and MicroPython: the netifd handler and the plain-Linux router both resolve `peeraddr`.
"""

from sixbroker.core import addr
from sixbroker.core.errors import SixbrokerError


# getaddrinfo's answers (<netdb.h>; the same numbers in glibc and musl, OpenWrt's libc).  glibc: an
# NXDOMAIN gives EAI_NONAME, a name without an A record EAI_NODATA.  musl (lookup_name.c name_from_dns)
# gives EAI_NONAME for both, so a name that has IPv6 addresses is asked about once more.  Both: a
# SERVFAIL or no answer is EAI_AGAIN, another refusal (REFUSED, FORMERR) EAI_FAIL.
EAI_NONAME = -2
EAI_AGAIN = -3
EAI_NODATA = -5
_RESOLVE_CODES = {EAI_NONAME: "PEER_NOT_FOUND", EAI_NODATA: "PEER_NO_IPV4"}


def resolve_ipv4(host):
    """A host name's first IPv4 address (the resolver's order).

    Raises PEER_NOT_FOUND (the name does not exist), PEER_NO_IPV4 (it has no IPv4 address) or
    PEER_RESOLVE_FAIL (the resolver gave no answer: it may come).
    """
    import socket  # here, not at the top: on CPython it pulls in enum and selectors, for host names only

    try:
        infos = socket.getaddrinfo(host, 0, socket.AF_INET)
    except OSError as e:
        code = _RESOLVE_CODES.get(_eai(e), "PEER_RESOLVE_FAIL")
        if code == "PEER_NOT_FOUND" and _has_ipv6(socket, host):
            code = "PEER_NO_IPV4"
        raise SixbrokerError(code, host + ": " + str(e), "peeraddr")
    for info in infos:
        sa = info[4]
        if isinstance(sa, tuple):       # CPython: ("192.0.2.1", 0)
            return addr.Address.parse(sa[0], 4)
        raw = socket.sockaddr(sa)       # MicroPython: raw struct sockaddr
        if raw[0] == socket.AF_INET:
            b = raw[1]
            return addr.Address(4, (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3])
    raise SixbrokerError("PEER_NO_IPV4", host, "peeraddr")


def _has_ipv6(socket, host):
    try:
        return bool(socket.getaddrinfo(host, 0, getattr(socket, "AF_INET6", 10)))
    except OSError:
        return False


def _eai(e):
    """The EAI_* number of a getaddrinfo failure: CPython's socket.gaierror carries it as errno,
    MicroPython's unix port only in its text, "[addrinfo error -2]"."""
    if e.args and isinstance(e.args[0], int):
        return e.args[0]
    text = str(e)
    i = text.find("error ")
    if i < 0:
        return None
    digits = text[i + 6:].rstrip("]")
    try:
        return int(digits)
    except ValueError:
        return None
