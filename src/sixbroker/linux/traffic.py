"""Per-tunnel traffic as plain data: protocol-41 packets and bytes each way, and the peer's last packet.

CPython only (it runs `nft`).  Everything comes from our own nftables table (nft_table.py), keyed by the
tunnel's `local . peer` pair, so it reads the same whatever devices carry the tunnels (one sit device per
tunnel, or one shared device):
- received: the element counters of `peers6in4` (protocol 41 from the peer to our endpoint, accepted);
- sent: the element counters of `sent6in4` (protocol 41 from our endpoint to the peer, output chain);
- idle_seconds: seconds since the peer's last packet, from `seen6in4`: SEEN_TIMEOUT minus the element's
  `expires` (nft -j lists it in whole seconds, so to within a second).  None when the peer has sent
  nothing since the table was last loaded whole, or within SEEN_TIMEOUT (30 days).

The counters count outer packets: an IPv4 packet of 20 bytes more than the IPv6 packet it carries (the
kernel's counters on a sit device count the inner packet).  They start at zero when the table is loaded
whole (the first tunnel, a changed rule shape, a reboot); a tunnel's own add, remove or re-key changes
elements only, and a re-key starts the new pair's counters at zero.  Prometheus's rate() takes resets in
its stride.
"""

from sixbroker.linux import apply_nft
from sixbroker.linux.nft_table import FAMILY, PEERS, SEEN, SEEN_TIMEOUT, SENT, TABLE, check_name

ALIVE_SECONDS = 300     # a tunnel is alive when its peer sent protocol 41 within this many seconds
FIELDS = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes")


def read(netns=None, table=TABLE):
    """{"LOCAL . PEER": {rx_packets, rx_bytes, tx_packets, tx_bytes, idle_seconds}} for every peer of the
    table; {} when there is no table (nothing applied yet, or nothing to count)."""
    check_name(table)
    out = {}
    sets = dict((name, _listed_set(table, name, netns)) for name in (PEERS, SENT, SEEN))
    for name, prefix in ((PEERS, "rx_"), (SENT, "tx_")):
        for key, c in apply_nft._element_counters(sets.get(name, {})).items():
            entry = out.setdefault(key, _empty())
            entry[prefix + "packets"] = c["packets"]
            entry[prefix + "bytes"] = c["bytes"]
    for key, expires in _expiries(sets.get(SEEN, {})).items():
        if key in out:      # a pair no longer ours keeps its element until it expires: not reported
            out[key]["idle_seconds"] = max(0, SEEN_TIMEOUT - expires)
    return out


def _listed_set(table, name, netns):
    """One set as `nft -j list set` gives it ({} when it or the table is not there).  Three such lists
    cost 0.46 s at 10,000 tunnels on the host where one list of the whole table costs 1.16 s: the
    table's other sets (the shared mode's sources, up to 17 elements a tunnel) are not read."""
    for item in apply_nft._listed_json(["set", FAMILY, table, name], netns) or []:
        if "set" in item:
            return item["set"]
    return {}


def _empty():
    entry = dict((f, 0) for f in FIELDS)
    entry["idle_seconds"] = None
    return entry


def _expiries(s):
    """{key: seconds left} of a set with timeouts, as `nft -j` lists it."""
    out = {}
    for e in s.get("elem", []):
        el = e.get("elem") if isinstance(e, dict) else None
        if not isinstance(el, dict) or "expires" not in el:
            continue
        val = el.get("val")
        if isinstance(val, dict) and "concat" in val:
            val = " . ".join(str(v) for v in val["concat"])
        out[str(val)] = el["expires"]
    return out


def of_tunnel(reading, local, remote):
    """The tunnel's entry of a read() by its local and remote address; None when the table has none (no
    remote yet, not applied)."""
    if not local or not remote:
        return None
    return reading.get(local + " . " + remote)


def alive(entry, alive_seconds=ALIVE_SECONDS):
    """Whether the peer sent protocol 41 within alive_seconds; False without an entry or a packet."""
    return entry is not None and entry["idle_seconds"] is not None and entry["idle_seconds"] <= alive_seconds
