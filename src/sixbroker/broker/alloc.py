"""Handing out transfer /127s and routed prefixes: lowest free first.

The broker prefix (say 2001:db8:5b00::/56) is cut like this by default:

    2001:db8:5b00::/64      the transfer prefix: one /127 per tunnel (the broker takes the even address,
                            the router the odd one)
    2001:db8:5b00:1::/64 .. the routed pool: every /64, /60, /56 ... not yet taken

A transfer prefix given with `init --transfer-prefix` may lie inside the broker prefix (its /64 is then
taken out of the pool) or outside it.  Prefixes given with `--reserve` are taken out of the pool too.

A VPS with exactly one /64 (often one the provider treats as on-link, see apply_ndp.py) is cut finer: the
pool is counted in /112s (FINE_UNIT) and routed prefixes are longer than /64 (/80 by default):

    2001:db8:5b00::/80      kept for the server's own addresses (its ::1, ::2, the provider's gateway)
    2001:db8:5b00:0:1::/80  the transfer prefix
    2001:db8:5b00:0:2::/80 .. the routed pool: /65 to /112, no SLAAC on a LAN that gets one (RFC 4862 5.5.3
                            wants a /64), DHCPv6 instead

Which /127s of the transfer prefix are used: never the first (its first address is the transfer prefix's
Subnet-Router anycast address, RFC 4291 2.6.1, which RFC 6164 5.1 says to avoid), and for a /64 never
the last 64 (the top 128 interface identifiers of a /64 are reserved anycast, RFC 2526).

"Lowest free first" is a function of what is allocated now, not of history: the same set of tunnels
always gets the same next prefix, whatever order they were added and removed in.  A routed prefix of
length L is the lowest L-aligned block that overlaps nothing taken.  The searches run in the database: the
PoP's tunnel count and taken units (the row its triggers keep, db.usage) against the largest index or
block end (one step down a (pop, ...) index) say whether there is any hole at all; with none (tunnels only
added, or every hole filled again) the answer is the end, in O(log N).  Only with a hole are the
candidates walked, in index order, each checked with one index lookup, the first free one ending the
walk.  Nothing is scanned in Python.
"""

from sixbroker.broker import db
from sixbroker.core import addr
from sixbroker.core.errors import SixbrokerError

POOL_UNIT = 64          # blocks are counted in /64s ...
FINE_UNIT = 112         # ... or, in a /64 broker prefix, in /112s (2**48 of them: SQLite's integers hold that)
MIN_ROUTED = 16         # broker prefixes from /16 ...
MAX_BROKER = 64         # ... to /64
FINE_DEFAULT_LENGTH = 80    # the routed prefix a /64 broker hands out unless told: 65536 of them
FINE_LAYOUT_LENGTH = 80     # the own and transfer blocks of a /64 broker prefix
TRANSFER_MIN = 64
TRANSFER_MAX = 126      # a /126 holds two /127s, one of them usable
RFC2526_TAIL = 64       # /127s at the top of a /64 transfer prefix that hold reserved anycast addresses


class Layout:
    """The broker prefix, the transfer prefix and what follows from them (no database access)."""

    def __init__(self, prefix, transfer):
        self.prefix = prefix
        self.transfer = transfer
        # a prefix can change only while no tunnel exists, so its unit never changes under stored blocks
        self.unit = FINE_UNIT if prefix.length >= POOL_UNIT else POOL_UNIT
        self.units = prefix.subnet_count(self.unit)
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

    @property
    def fine(self):
        """A /64 broker prefix: routed prefixes longer than /64, no SLAAC behind them."""
        return self.unit == FINE_UNIT

    @property
    def default_length(self):
        return FINE_DEFAULT_LENGTH if self.fine else POOL_UNIT

    def routed_net(self, start, length):
        """The prefix of a block that starts `start` units into the broker prefix."""
        return addr.Network(6, self.prefix.value + (start << (128 - self.unit)), length)

    def block_size(self, length):
        """Units a prefix of this length takes (a longer one than the unit takes a whole unit)."""
        return 1 << (self.unit - length) if length <= self.unit else 1

    def block_of(self, net):
        """(start, stop) in units of the pool block that holds `net`, or None if it is outside the prefix."""
        if not self.prefix.contains(net):
            return None
        start = (net.value - self.prefix.value) >> (128 - self.unit)
        return start, start + self.block_size(net.length)

    def check_length(self, length):
        # a /64 broker prefix cannot route a /64: its own and transfer blocks are in it
        lo = self.prefix.length + 1 if self.fine else self.prefix.length
        if type(length) is not int or length < lo or length > self.unit:
            raise SixbrokerError("INVALID_PREFIX_LENGTH", "/%s (the broker prefix is %s: /%d to /%d)"
                                 % (length, self.prefix, lo, self.unit))
        return length

    def default_cut(self):
        """(transfer prefix, [reserved]) when init is not told: the first /64 for transfer, or in a /64
        broker prefix the first /80 for the server itself and the second for transfer."""
        if self.fine:
            return (self.prefix.subnet(FINE_LAYOUT_LENGTH, 1), [self.prefix.subnet(FINE_LAYOUT_LENGTH, 0)])
        return self.prefix.subnet(POOL_UNIT, 0), []


def next_transfer_index(conn, layout, pop=None):
    """The lowest /127 index of the PoP's transfer prefix that none of its tunnels has (pop: conn.pop)."""
    p = {"lo": layout.transfer_lo, "pop": pop or conn.pop}
    # the count from the triggers' row, less the few below lo; MAX alone is one step down the (pop,
    # transfer_index) index, where a COUNT beside it would walk all of it
    below = conn.execute("SELECT COUNT(*) FROM tunnels WHERE pop = :pop AND transfer_index < :lo", p).fetchone()[0]
    count = db.usage(conn, p["pop"])[0] - below
    top = conn.execute("SELECT MAX(transfer_index) FROM tunnels WHERE pop = :pop", p).fetchone()[0]
    if not count:
        index = layout.transfer_lo
    elif top - layout.transfer_lo + 1 == count:
        # no hole (tunnels only ever added, or the holes filled again): the one after the last.  One pass
        # over the index in C, not a lookup per tunnel
        index = top + 1
    else:
        # the lowest free index follows the first taken one whose successor is free (lo taken: a hole
        # somewhere above it), walked in the index's order and stopped at the first
        row = conn.execute(
            "SELECT MIN(c) FROM (SELECT :lo AS c WHERE NOT EXISTS (SELECT 1 FROM tunnels WHERE pop = :pop"
            " AND transfer_index = :lo) UNION ALL SELECT * FROM (SELECT t.transfer_index + 1 FROM tunnels t"
            " WHERE t.pop = :pop AND t.transfer_index >= :lo AND NOT EXISTS (SELECT 1 FROM tunnels u"
            " WHERE u.pop = :pop AND u.transfer_index = t.transfer_index + 1) ORDER BY t.transfer_index LIMIT 1)"
            " AS gap) AS candidates", p).fetchone()
        index = row[0]
    if index >= layout.transfer_hi:
        raise SixbrokerError("POOL_EXHAUSTED", "all %d transfer /127s of %s are in use"
                             % (layout.transfer_capacity, layout.transfer))
    return index


def next_block(conn, layout, length, pop=None):
    """The start (in units) of the lowest free `length`-aligned block of the PoP's pool (pop: conn.pop)."""
    layout.check_length(length)
    size = layout.block_size(length)
    p = {"s": size, "pop": pop or conn.pop}
    used = db.usage(conn, p["pop"])[2]
    top = conn.execute("SELECT COALESCE(MAX(stop), 0) FROM blocks WHERE pop = :pop", p).fetchone()[0]
    if used == top:
        # no free unit below the last block's end: the first aligned start after it
        start = -(-top // size) * size
    else:
        # Candidates: the pool's start and, after every taken block, the first aligned start at or after
        # its end; the lowest free block is always one of them.  A candidate is free when the block
        # starting last before the candidate's end ends at or before the candidate.  The candidates after
        # blocks rise with the blocks' ends, so they are walked in the (pop, stop) index's order and the
        # first free one ends the walk.
        free = ("COALESCE((SELECT stop FROM blocks WHERE pop = :pop AND start < {c} + :s ORDER BY start DESC"
                " LIMIT 1), 0) <= {c}")
        c = "((b.stop + :s - 1) / :s) * :s"
        row = conn.execute("SELECT MIN(c) FROM (SELECT 0 AS c WHERE " + free.format(c="0")
                           + " UNION ALL SELECT * FROM (SELECT " + c + " FROM blocks b WHERE b.pop = :pop AND "
                           + free.format(c=c) + " ORDER BY b.stop LIMIT 1) AS gap) AS candidates", p).fetchone()
        start = row[0]
    if start + size > layout.units:
        raise SixbrokerError("POOL_EXHAUSTED", "no free /%d left in %s" % (length, layout.prefix))
    return start


def take_block(conn, start, length, tunnel=None, kind="routed", layout=None, pop=None):
    size = layout.block_size(length) if layout is not None else 1 << (POOL_UNIT - length)
    conn.execute("INSERT INTO blocks (pop, start, stop, length, tunnel, kind) VALUES (?, ?, ?, ?, ?, ?)",
                 (pop or conn.pop, start, start + size, length, tunnel, kind))


def usage(conn, layout):
    """How much of the pools is taken: for `list`, and for the benchmarks."""
    used, _, units = db.usage(conn)
    fixed = conn.execute("SELECT COALESCE(SUM(stop - start), 0) FROM blocks WHERE pop = ? AND kind != 'routed'",
                         (conn.pop,)).fetchone()[0]
    taken = units - fixed       # every block is the transfer prefix, a reserved one or a tunnel's
    # the keys say /64s, as before /64 broker prefixes; "unit" says what is counted
    return {"routed_64s_total": layout.units - fixed, "routed_64s_used": taken, "unit": layout.unit,
            "transfer_total": layout.transfer_capacity, "transfer_used": used}
