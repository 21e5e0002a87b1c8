"""A DNS server for tests that answers each name as the zone below says, on 127.0.0.1:53 of the network
namespace it runs in (RFC 1035 4.1 message format; only what a stub resolver's A/AAAA query needs).

    ip netns exec NS python tests/dns_fake.py      # prints "ready" once it listens

The point is the resolver's real path: the handler's getaddrinfo (glibc here, musl on OpenWrt) turns
each answer into its own EAI_* code, which is what the handler tells apart.
"""
import socket
import struct
import sys

NOERROR, SERVFAIL, NXDOMAIN = 0, 2, 3
A, AAAA = 1, 28
ZONE = {
    "broker.example.net": {A: "203.0.113.10"},
    "v6only.example.net": {AAAA: "2001:db8::10"},       # an A query gets NOERROR with no answer (NODATA)
    "broken.example.net": SERVFAIL,                      # the server cannot answer now
    # an A query answered NXDOMAIN, an AAAA query with an address: glibc then says EAI_NONAME for an IPv4
    # lookup, as musl (OpenWrt) says for any name without an A record
    "v6only-nx.example.net": {A: NXDOMAIN, AAAA: "2001:db8::11"},
}                                                        # any other name: NXDOMAIN


def parse_question(msg):
    labels, i = [], 12
    while msg[i]:
        n = msg[i]
        labels.append(msg[i + 1:i + 1 + n].decode("ascii").lower())
        i += 1 + n
    qtype, qclass = struct.unpack(">HH", msg[i + 1:i + 5])
    return ".".join(labels), qtype, msg[12:i + 5]


def answer(msg):
    (qid, flags) = struct.unpack(">HH", msg[:4])
    name, qtype, question = parse_question(msg)
    entry = ZONE.get(name.rstrip("."), NXDOMAIN)
    records = []
    rcode = entry if isinstance(entry, int) else NOERROR
    if isinstance(entry, dict) and isinstance(entry.get(qtype), int):
        rcode = entry[qtype]
    elif isinstance(entry, dict) and qtype in entry:
        family = socket.AF_INET if qtype == A else socket.AF_INET6
        rdata = socket.inet_pton(family, entry[qtype])
        # the owner name as a pointer to the question's name at offset 12
        records.append(struct.pack(">HHHIH", 0xC00C, qtype, 1, 60, len(rdata)) + rdata)
    # QR, the query's RD, RA; the query's opcode is 0
    out_flags = 0x8000 | (flags & 0x0100) | 0x0080 | rcode
    return struct.pack(">HHHHHH", qid, out_flags, 1, len(records), 0, 0) + question + b"".join(records)


def main():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 53))
    print("ready", flush=True)
    while True:
        msg, peer = s.recvfrom(512)
        try:
            s.sendto(answer(msg), peer)
        except (IndexError, struct.error, UnicodeDecodeError):
            continue


if __name__ == "__main__":
    sys.exit(main())
