"""Handing out transfer /127s and routed prefixes: lowest free first.

The broker prefix (say 2001:db8:5b00::/56) is cut like this by default:

    2001:db8:5b00::/64      the transfer prefix: one /127 per tunnel (the broker takes the even address,
                            the router the odd one)
    2001:db8:5b00:1::/64 .. the routed pool: every /64, /60, /56 ... not yet taken

A transfer prefix given with `init --transfer-prefix` may lie inside the broker prefix (its /64 is then
taken out of the pool) or outside it.  Prefixes given with `--reserve` are taken out of the pool too.

Which /127s of the transfer prefix are used: never the first (its first address is the transfer prefix's
Subnet-Router anycast address, RFC 4291 2.6.1, which RFC 6164 5.1 says to avoid), and for a /64 never
the last 64 (the top 128 interface identifiers of a /64 are reserved anycast, RFC 2526).

"Lowest free first" is a function of what is allocated now, not of history: the same set of tunnels
always gets the same next prefix, whatever order they were added and removed in.  A routed prefix of
length L is the lowest L-aligned block that overlaps nothing taken.  The searches run in SQLite over its
indexes: each candidate is checked with one index lookup, so an add costs O(N log N) in C at worst, and
nothing is scanned in Python.
"""

from sixbroker import addr
from sixbroker.errors import SixbrokerError

POOL_UNIT = 64          # blocks are counted in /64s
MIN_ROUTED = 16         # broker prefixes from /16 ...
MAX_BROKER = 63         # ... to /63 (a /64 broker prefix would have nothing left after its transfer /64)
TRANSFER_MIN = 64
TRANSFER_MAX = 126      # a /126 holds two /127s, one of them usable
RFC2526_TAIL = 64       # /127s at the top of a /64 transfer prefix that hold reserved anycast addresses


class Layout:
    """The broker prefix, the transfer prefix and what follows from them (no database access)."""

    def __init__(self, prefix, transfer):
        self.prefix = prefix
        self.transfer = transfer
        self.units = prefix.subnet_count(POOL_UNIT)
        count = transfer.subnet_count(127)
        self.transfer_lo = 1
        self.transfer_hi = count - RFC2526_TAIL if transfer.length == 64 else count

    @classmethod
    def of(cls, server):
        return cls(addr.Network.parse(server["prefix"]), addr.Network.parse(server["transfer_prefix"]))

    @property
    def transfer_capacity(self):
        return self.transfer_hi - self.transfer_lo

    def transfer_net(self, index):
        return self.transfer.subnet(127, index)

    def routed_net(self, start, length):
        """The prefix of a block that starts `start` /64s into the broker prefix."""
        return addr.Network(6, self.prefix.value + (start << (128 - POOL_UNIT)), length)

    def block_of(self, net):
        """(start, stop) in /64s of the pool block that holds `net`, or None if it is outside the prefix.
        A prefix longer than /64 takes its whole /64 (routed prefixes are /64 or shorter)."""
        if not self.prefix.contains(net):
            return None
        start = (net.value - self.prefix.value) >> (128 - POOL_UNIT)
        size = 1 << (POOL_UNIT - net.length) if net.length <= POOL_UNIT else 1
        return start, start + size

    def check_length(self, length):
        if type(length) is not int or length < self.prefix.length or length > POOL_UNIT:
            raise SixbrokerError("INVALID_PREFIX_LENGTH", "/%s (the broker prefix is %s)" % (length, self.prefix))
        return length


def next_transfer_index(conn, layout):
    """The lowest /127 index of the transfer prefix that no tunnel has."""
    row = conn.execute(
        "SELECT c FROM (SELECT :lo AS c UNION ALL SELECT transfer_index + 1 FROM tunnels)"
        " WHERE c >= :lo AND c < :hi"
        " AND NOT EXISTS (SELECT 1 FROM tunnels WHERE transfer_index = c)"
        " ORDER BY c LIMIT 1",
        {"lo": layout.transfer_lo, "hi": layout.transfer_hi}).fetchone()
    if row is None:
        raise SixbrokerError("POOL_EXHAUSTED", "all %d transfer /127s of %s are in use"
                             % (layout.transfer_capacity, layout.transfer))
    return row[0]


def next_block(conn, layout, length):
    """The start (in /64s) of the lowest free `length`-aligned block of the pool."""
    layout.check_length(length)
    size = 1 << (POOL_UNIT - length)
    # Candidates: the pool's start and, after every taken block, the first aligned start at or after its
    # end; the lowest free block is always one of them.  A candidate is free when the block starting
    # last before the candidate's end ends at or before the candidate.
    row = conn.execute(
        "SELECT c FROM (SELECT 0 AS c UNION ALL SELECT ((stop + :s - 1) / :s) * :s FROM blocks)"
        " WHERE c + :s <= :units"
        " AND COALESCE((SELECT stop FROM blocks WHERE start < c + :s ORDER BY start DESC LIMIT 1), 0) <= c"
        " ORDER BY c LIMIT 1",
        {"s": size, "units": layout.units}).fetchone()
    if row is None:
        raise SixbrokerError("POOL_EXHAUSTED", "no free /%d left in %s" % (length, layout.prefix))
    return row[0]


def take_block(conn, start, length, tunnel=None, kind="routed"):
    size = 1 << (POOL_UNIT - length) if length <= POOL_UNIT else 1
    conn.execute("INSERT INTO blocks (start, stop, length, tunnel, kind) VALUES (?, ?, ?, ?, ?)",
                 (start, start + size, length, tunnel, kind))


def usage(conn, layout):
    """How much of the pools is taken: for `list`, and for the benchmarks."""
    taken = conn.execute("SELECT COALESCE(SUM(stop - start), 0) FROM blocks WHERE kind = 'routed'").fetchone()[0]
    fixed = conn.execute("SELECT COALESCE(SUM(stop - start), 0) FROM blocks WHERE kind != 'routed'").fetchone()[0]
    used = conn.execute("SELECT COUNT(*) FROM tunnels").fetchone()[0]
    return {"routed_64s_total": layout.units - fixed, "routed_64s_used": taken,
            "transfer_total": layout.transfer_capacity, "transfer_used": used}
