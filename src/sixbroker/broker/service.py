"""The broker's operations on its database: init, add, remove, set, and the views they print.

Each change is one transaction; the caller (cli.py) then reconciles the kernel and the firewall with
reconcile.py.  Input is checked before the transaction starts, so a refused change leaves the database
exactly as it was.
"""

from sixbroker.core import addr, plan
from sixbroker.broker import alloc, db
from sixbroker.broker.reach import is_public
from sixbroker.core.errors import SixbrokerError

# Devices the broker owns start with this; the kernel applier removes any such device the database no
# longer wants, and touches no other.  Not the router end's "sb-": a Linux box that is a home router
# (`sixbroker router`) and a broker at once must not have one end clean up the other's tunnels.
DEVICE_PREFIX = "sbs-"
NAME_MAX = 15 - len(DEVICE_PREFIX)
# The shared mode's one sit device (linux/sit.py SharedSit): a tunnel's name starts with a letter, so no
# tunnel's device can ever be called this.
SHARED_DEVICE = DEVICE_PREFIX + "6in4"
TUNNEL_MODES = ("per-tunnel", "shared")
DEFAULT_TUNNEL_MODE = "per-tunnel"
DEFAULT_MTU = plan.DEFAULT_MTU
DEFAULT_ROUTED_LENGTH = 64
TTL = 64
MTU_MIN = 1280
MTU_MAX = 65515


# ---- checking input --------------------------------------------------------------------------------------

def check_name(name):
    """A tunnel name is the router's UCI section name (letters, digits, '_') and, with DEVICE_PREFIX,
    the sit device's name (15 characters at most)."""
    ok = isinstance(name, str) and 0 < len(name) <= NAME_MAX and ("a" <= name[0].lower() <= "z")
    if ok:
        for ch in name:
            if not (ch.isascii() and (ch.isalnum() or ch == "_")):
                ok = False
    if not ok:
        raise SixbrokerError("INVALID_NAME", repr(name) if isinstance(name, str) else None)
    return name


def device_of(name):
    return DEVICE_PREFIX + name


def _ipv4(text, code):
    try:
        a = addr.Address.parse(text, 4)
    except addr.AddressError as e:
        raise SixbrokerError(code, str(e))
    if not a.is_unicast or a.is_loopback or a.is_link_local:
        raise SixbrokerError(code, "%s is not a unicast address" % a)
    return a


def check_remote(text, server, allow_private=False):
    """A router's address as this server sees it.  A private or CGNAT one is the router's own address
    behind its NAT, which the server never sees: refused unless the router is on a private network with
    this server (allow_private)."""
    a = _ipv4(text, "INVALID_REMOTE")
    if str(a) in (server["local_ipv4"], server["public_ipv4"]):
        raise SixbrokerError("REMOTE_IS_SERVER", str(a))
    if not allow_private and not is_public(a):
        raise SixbrokerError("REMOTE_NOT_PUBLIC", str(a))
    return a


def _ascii_number(value):
    """The int of a text of ASCII digits only, else None.  str.isdigit() and int() take any script's
    digits ('\u0661\u0664\u0668\u0660' is 1480 to int()); the router side reads ASCII only."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or not value or not all("0" <= ch <= "9" for ch in value):
        return None
    return int(value)


def check_mtu(value):
    n = _ascii_number(value)
    if n is None:
        raise SixbrokerError("INVALID_MTU", repr(value))
    if n < MTU_MIN or n > MTU_MAX:
        raise SixbrokerError("MTU_OUT_OF_RANGE", str(n))
    return n


def check_length(value, layout):
    text = str(value)
    if text.startswith("/"):
        text = text[1:]
    n = _ascii_number(text)
    if n is None:
        raise SixbrokerError("INVALID_PREFIX_LENGTH", repr(value))
    return layout.check_length(n)


def _prefix(text, code, lo, hi):
    try:
        net = addr.Network.parse(text, version=6)
    except addr.AddressError as e:
        raise SixbrokerError(code, str(e))
    a = net.address
    if net.length < lo or net.length > hi:
        raise SixbrokerError(code, "%s is a /%d" % (net, net.length))
    if a.is_multicast or a.is_link_local or a.is_loopback or a.value >> 96 == 0 or a.value >> 32 == 0xFFFF:
        raise SixbrokerError(code, "%s is not a unicast prefix" % net)
    return net


def check_netns(name):
    if name is None:
        return None
    ok = isinstance(name, str) and 0 < len(name) <= 64 and name not in (".", "..")
    if ok:
        for ch in name:
            if not (ch.isascii() and (ch.isalnum() or ch in "-_.")):
                ok = False
    if not ok:
        raise SixbrokerError("INVALID_NETNS", repr(name))
    return name


def check_uplink(name):
    if name is None:
        return None
    ok = isinstance(name, str) and 0 < len(name) <= 15 and name not in (".", "..")
    if ok:
        for ch in name:
            if ch in "/:" or ch.isspace() or not ch.isprintable():
                ok = False
    if not ok:
        raise SixbrokerError("INVALID_UPLINK", repr(name))
    return name


# ---- init ---------------------------------------------------------------------------------------------------

def _layout_blocks(layout, reserved):
    """[(start, length, kind)] taken out of the pool before any tunnel: the transfer prefix (if inside),
    the reserved prefixes.  Overlaps among them are refused."""
    out = []
    b = layout.block_of(layout.transfer)
    if b is not None:
        out.append((b[0], b[1], layout.transfer.length, "transfer"))
    for net in reserved:
        rb = layout.block_of(net)
        if rb is None or net.length > layout.unit:
            raise SixbrokerError("INVALID_RESERVED_PREFIX", "%s is not a /%d or shorter inside %s"
                                 % (net, layout.unit, layout.prefix))
        for s, e, length, kind in out:
            if rb[0] < e and s < rb[1]:
                raise SixbrokerError("INVALID_RESERVED_PREFIX", "%s overlaps the %s prefix %s"
                                     % (net, kind, layout.routed_net(s, length)))
        out.append((rb[0], rb[1], net.length, "reserved"))
    if sum(e - s for s, e, _, _ in out) >= layout.units:
        raise SixbrokerError("NO_ROUTED_SPACE", str(layout.prefix))
    out.sort()
    return out


def check_tunnel_mode(mode):
    if mode not in TUNNEL_MODES:
        raise SixbrokerError("USAGE", "--tunnel-mode must be one of %s, not %r" % (", ".join(TUNNEL_MODES), mode))
    return mode


def init(conn, prefix=None, transfer_prefix=None, reserve=None, public_ipv4=None, local_ipv4=None,
         uplink=None, uplink_ra=None, netns=None, detect=None, ndp_proxy=None, onlink=None, tunnel_mode=None):
    """Create or update the server row.  On an existing broker, options not given keep their values;
    the prefixes can change only while there are no tunnels.

    detect: callable(uplink, netns) -> {"public_ipv4", "uplink", "uplink_ra"} facts read from the host,
    used only for what the caller did not give (tests pass their own).  public_ipv4 "auto": read it from
    the host now, and follow it when it changes (`apply`); an address given is pinned.  uplink "": none
    (stored as "", so a later init does not look for one again); not given and none yet: the device of the
    IPv6 default route, when it takes its configuration from RAs.
    ndp_proxy: "on", "off", "auto" (on when `onlink(prefix, uplink, netns)` says the uplink has the
    broker prefix on-link), None (the old value; auto on a first init).
    tunnel_mode: a first init's (default DEFAULT_TUNNEL_MODE); a later one's is changed by the caller
    (reconcile.switch_mode: it moves the tunnels).
    """
    mode = check_tunnel_mode(tunnel_mode or DEFAULT_TUNNEL_MODE)
    old = db.server_or_none(conn)
    if old is None and prefix is None:
        raise SixbrokerError("USAGE", "the first `init` needs --prefix")
    net = _prefix(prefix, "INVALID_PREFIX", alloc.MIN_ROUTED, alloc.MAX_BROKER) if prefix else \
        addr.Network.parse(old["prefix"])
    # what the prefix was cut into before, kept unless given again or the prefix itself changes
    same_prefix = old is not None and str(net) == old["prefix"]
    old_reserved = [r["prefix"] for r in _reserved_rows(conn, alloc.Layout.of(old))] if old else []
    if transfer_prefix:
        transfer = _prefix(transfer_prefix, "INVALID_TRANSFER_PREFIX", alloc.TRANSFER_MIN, alloc.TRANSFER_MAX)
    elif same_prefix:
        transfer = addr.Network.parse(old["transfer_prefix"])
    else:
        transfer = alloc.Layout(net, net).default_cut()[0]
    layout = alloc.Layout(net, transfer)
    if reserve is not None:
        reserved = [_prefix(r, "INVALID_RESERVED_PREFIX", 1, layout.unit) for r in reserve]
    elif same_prefix:
        reserved = [addr.Network.parse(r) for r in old_reserved]
    else:
        # the server's own /80 of a /64 broker prefix, unless the transfer prefix was put there
        reserved = [r for r in layout.default_cut()[1] if not r.overlaps(transfer)]
    fixed = _layout_blocks(layout, reserved)

    # not given: keep the old value; given as '': none any more
    if uplink is None:
        uplink = old["uplink"] if old else None
    else:
        uplink = check_uplink(uplink) if uplink != "" else ""
    if netns is None:
        netns = old["netns"] if old else None
    else:
        netns = check_netns(netns) if netns != "" else None
    facts = None
    detected = public_ipv4 in (None, "auto") and local_ipv4 is None
    if public_ipv4 == "auto":
        public_ipv4 = None
    elif public_ipv4 is None and old is not None:
        public_ipv4 = old["public_ipv4"]
        detected = bool(old["ipv4_detected"]) and local_ipv4 is None
        if local_ipv4 is None:
            local_ipv4 = old["local_ipv4"]
    find_uplink = uplink is None and uplink_ra is not False
    if uplink is None and uplink_ra is False:
        uplink = ""         # "leave RAs alone" is kept as no uplink to look after, so no later init looks
    if (public_ipv4 is None or find_uplink
            or (uplink_ra is None and uplink and (old is None or uplink != old["uplink"]))):
        facts = (detect or (lambda u, n: {}))(uplink or None, netns) or {}
    if find_uplink and facts.get("uplink") and (uplink_ra or facts.get("uplink_ra")):
        # forwarding would cut this host's own RA-configured default route: keep RAs on that device
        uplink = check_uplink(facts["uplink"])
        uplink_ra = True
    if public_ipv4 is None:
        public_ipv4 = facts.get("public_ipv4")
        if not public_ipv4:
            raise facts.get("public_ipv4_error") or SixbrokerError("PUBLIC_IPV4_UNKNOWN")
    public = _ipv4(public_ipv4, "INVALID_PUBLIC_IPV4")
    if not is_public(public):
        raise SixbrokerError("PUBLIC_IPV4_NOT_PUBLIC", str(public))
    local = _ipv4(local_ipv4, "INVALID_LOCAL_IPV4") if local_ipv4 else public
    if uplink_ra is None:
        if facts is not None and "uplink_ra" in facts and uplink:
            uplink_ra = bool(facts["uplink_ra"])
        elif old is not None and uplink == old["uplink"]:
            uplink_ra = bool(old["uplink_ra"])
        else:
            uplink_ra = False
    if not uplink:
        uplink_ra = False
    ndp = _ndp_mode(ndp_proxy, old, net, uplink, netns, onlink)

    stamp = db.now()
    with db.transaction(conn):
        if old is not None:
            same = (same_prefix and str(transfer) == old["transfer_prefix"]
                    and sorted(str(r) for r in reserved) == sorted(old_reserved))
            if not same and db.tunnel_count(conn):
                raise SixbrokerError("BROKER_PREFIX_IN_USE", "%d tunnel(s)" % db.tunnel_count(conn))
            if public != addr.Address.parse(old["public_ipv4"]) or local != addr.Address.parse(old["local_ipv4"]):
                clash = conn.execute("SELECT name FROM tunnels WHERE pop = ? AND remote IN (?, ?) ORDER BY name",
                                     (conn.pop, str(public), str(local))).fetchone()
                if clash:
                    raise SixbrokerError("REMOTE_IS_SERVER", "tunnel %s has %s as its remote"
                                         % (clash[0], str(public)))
        # the PoP's row first: its blocks refer to it
        conn.execute(
            "INSERT INTO server (id, pop, prefix, transfer_prefix, public_ipv4, local_ipv4, ipv4_detected, uplink,"
            " uplink_ra, netns, created, updated) VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM server),"
            " ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(pop) DO UPDATE SET prefix = excluded.prefix, transfer_prefix = excluded.transfer_prefix,"
            " public_ipv4 = excluded.public_ipv4, local_ipv4 = excluded.local_ipv4,"
            " ipv4_detected = excluded.ipv4_detected, uplink = excluded.uplink,"
            " uplink_ra = excluded.uplink_ra, netns = excluded.netns, updated = excluded.updated",
            (conn.pop, str(net), str(transfer), str(public), str(local), 1 if detected else 0, uplink,
             1 if uplink_ra else 0, netns, stamp, stamp))
        conn.execute("DELETE FROM blocks WHERE pop = ? AND tunnel IS NULL", (conn.pop,))
        for s, e, length, kind in fixed:
            conn.execute("INSERT INTO blocks (pop, start, stop, length, tunnel, kind) VALUES (?, ?, ?, ?, NULL, ?)",
                         (conn.pop, s, e, length, kind))
        conn.execute("UPDATE server SET ndp_proxy = ? WHERE pop = ? AND ndp_proxy != ?", (ndp, conn.pop, ndp))
        if old is None:
            conn.execute("UPDATE server SET tunnel_mode = ? WHERE pop = ?", (mode, conn.pop))
    return db.server(conn)


NDP_MODES = ("auto", "on", "off")


def _ndp_mode(mode, old, net, uplink, netns, onlink):
    """1 or 0: answer neighbour solicitations on the uplink for what the tunnels hold (apply_ndp.py)."""
    if mode is None and old is not None:
        mode = "on" if old["ndp_proxy"] else "off"
    mode = mode or "auto"
    if mode not in NDP_MODES:
        raise SixbrokerError("USAGE", "--ndp-proxy must be one of auto, on, off, not %r" % (mode,))
    if mode == "off":
        return 0
    if not uplink:
        if mode == "on":
            raise SixbrokerError("NDP_PROXY_NEEDS_UPLINK")
        return 0
    if mode == "on":
        return 1
    return 1 if onlink is not None and onlink(net, uplink, netns) else 0


def follow_ipv4(conn, on_host, detect):
    """Before an apply: (notice, error), each None or (code, text).  The tunnels' local address still on
    the host: nothing.  Gone and read from the host at init: the new one is read and saved (every tunnel
    re-keys to it in the apply that follows), LOCAL_IPV4_CHANGED.  Gone and given (or nothing public to
    follow): LOCAL_IPV4_GONE, the database unchanged.

    on_host: callable(address, netns) -> True/False/None; detect: as init's."""
    s = db.server(conn)
    old = s["local_ipv4"]
    if on_host(old, s["netns"]) is not False:
        return None, None
    routers = ("then set every router's peeraddr to it (or, so that this never happens again, to a host "
               "name whose A record follows this server: routers accept host names)")
    if not s["ipv4_detected"]:
        return None, ("LOCAL_IPV4_GONE", "%s was given with --public-ipv4/--local-ipv4 and is no longer on this "
                      "host: run `sixbroker server init --public-ipv4 NEW` (behind 1:1 NAT with --local-ipv4 "
                      "too, or --public-ipv4 auto to follow the uplink from now on), %s" % (old, routers))
    facts = detect(s["uplink"] or None, s["netns"]) or {}
    if not facts.get("public_ipv4") and s["uplink"]:
        facts = detect(None, s["netns"]) or {}
    new = facts.get("public_ipv4")
    why = facts.get("public_ipv4_error")
    if not new:
        return None, ("LOCAL_IPV4_GONE", "%s is no longer on this host and no public IPv4 address was found to "
                      "follow%s: run `sixbroker server init --public-ipv4 NEW`, %s"
                      % (old, " (%s)" % why if why else "", routers))
    clash = db.tunnel_with_remote(conn, new)
    if clash is not None:
        return None, ("LOCAL_IPV4_GONE", "%s is no longer on this host, and the new address %s is the remote of "
                      "tunnel %s" % (old, new, clash))
    db.set_server_ipv4(conn, new, new)
    return ("LOCAL_IPV4_CHANGED", "from %s to %s: the tunnels now use %s; %s"
            % (old, new, new, routers.replace("to it", "to " + new))), None


def _reserved_rows(conn, layout):
    out = []
    for b in conn.execute("SELECT start, length FROM blocks WHERE pop = ? AND kind = 'reserved' ORDER BY start",
                          (conn.pop,)):
        out.append({"prefix": str(layout.routed_net(b["start"], b["length"]))})
    return out


def server_view(conn):
    s = db.server(conn)
    layout = alloc.Layout.of(s)
    return {
        "prefix": s["prefix"],
        "transfer_prefix": s["transfer_prefix"],
        "reserved": [r["prefix"] for r in _reserved_rows(conn, layout)],
        "public_ipv4": s["public_ipv4"],
        "local_ipv4": s["local_ipv4"],
        # a database from before schemas 3 and 4 (read, never migrated, by `info`): no proxy, given addresses
        "ipv4_followed": bool(s.get("ipv4_detected")),
        "uplink": s["uplink"] or None,
        "uplink_accept_ra": bool(s["uplink_ra"]),
        "ndp_proxy": bool(s.get("ndp_proxy")),
        "tunnel_mode": db.tunnel_mode(s),
        "routed_default_length": layout.default_length,
        "netns": s["netns"],
        "tunnels": db.tunnel_count(conn),
        "usage": alloc.usage(conn, layout),
    }


# ---- tunnels --------------------------------------------------------------------------------------------

def view(server, layout, t):
    """One tunnel as the CLI prints it (JSON and text) and as routerconf reads it.  device: the kernel
    device it runs over (in shared mode the one every tunnel shares)."""
    net = layout.transfer_net(t["transfer_index"])
    return {
        "name": t["name"],
        "device": SHARED_DEVICE if db.tunnel_mode(server) == "shared" else t["device"],
        "remote": t["remote"],
        "local": server["local_ipv4"],
        "peeraddr": server["public_ipv4"],
        "mtu": t["mtu"],
        "ttl": t["ttl"],
        "transfer": str(net),
        "transfer_length": net.length,
        "server_address": str(net.host(0)),
        "router_address": str(net.host(1)),
        "routed": [str(layout.routed_net(s, length)) for s, length in t["blocks"]],
        "pop": t["pop"],
        "created": t["created"],
        "updated": t["updated"],
    }


def views(conn):
    s = db.server(conn)
    layout = alloc.Layout.of(s)
    return [view(s, layout, t) for t in db.tunnels(conn)]


def show(conn, name):
    """One tunnel of any PoP, with its PoP's addresses."""
    t = db.tunnel(conn, name)
    s = db.server(conn, t["pop"])
    return view(s, alloc.Layout.of(s), t)


def with_state(conn, tunnels):
    """The views with where each tunnel stands since the last apply: "failed" (with the error it got),
    "applied", or "pending" (the database changed since; `apply` brings it in)."""
    faults = db.faults(conn)
    rec = db.applied(conn)
    current = rec is not None and rec["generation"] == db.generation(conn)
    for t in tunnels:
        f = faults.get(t["name"])
        t["state"] = "failed" if f else ("applied" if current else "pending")
        if f:
            t["error"] = f
    return tunnels


def add(conn, name, remote=None, routed_length=None, mtu=None, allow_private=False, key_hash=None, pop=None):
    """remote None: the tunnel is pending (no device) until an update gives it one (update.py).
    key_hash: the hash of its update key (update.new_key), stored in the same transaction.
    pop: the PoP it goes on (default conn.pop, this one)."""
    pop = db.pop_from_env(pop or conn.pop)
    s = _pop_server(conn, pop)
    layout = alloc.Layout.of(s)
    check_name(name)
    r = check_remote(remote, s, allow_private) if remote is not None else None
    length = check_length(layout.default_length if routed_length is None else routed_length, layout)
    mtu = DEFAULT_MTU if mtu is None else check_mtu(mtu)
    stamp = db.now()
    with db.transaction(conn, track=True):
        if db.has_tunnel(conn, name):
            raise SixbrokerError("TUNNEL_EXISTS", name)
        other = db.tunnel_with_remote(conn, str(r), pop) if r is not None else None
        if other is not None:
            raise SixbrokerError("REMOTE_IN_USE", "%s is the remote of tunnel %s" % (r, other))
        index = alloc.next_transfer_index(conn, layout, pop)
        start = alloc.next_block(conn, layout, length, pop)
        try:
            conn.execute("INSERT INTO tunnels (name, pop, device, remote, transfer_index, mtu, ttl, created, updated)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (name, pop, device_of(name), str(r) if r is not None else None, index, mtu, TTL, stamp, stamp))
            alloc.take_block(conn, start, length, name, layout=layout, pop=pop)
            if key_hash is not None:
                conn.execute("INSERT INTO update_keys (tunnel, hash, created) VALUES (?, ?, ?)", (name, key_hash, stamp))
        except db.integrity_errors(conn) as e:
            # every case is checked above inside this transaction; reaching here is a bug, not bad input
            raise SixbrokerError("INTERNAL_ERROR", "database refused the new tunnel: %s" % e)
    return show(conn, name)


def _pop_server(conn, pop):
    s = db.server_or_none(conn, pop)
    if s is None:
        raise SixbrokerError("POP_NOT_FOUND", "%r (the PoPs: %s; `init --pop %s` makes one)"
                             % (pop, ", ".join(db.pops(conn)) or "none", pop))
    return s


def move(conn, name, pop, key_hash=None):
    """Re-home a tunnel on PoP `pop`: a transfer /127 and routed prefixes of the same lengths from that
    PoP's pools, the old ones freed, in one transaction; the remote stays, and the update key too unless
    key_hash gives the new one's hash (update.new_key), stored in the same transaction."""
    pop = db.pop_from_env(pop)
    s = _pop_server(conn, pop)
    layout = alloc.Layout.of(s)
    with db.transaction(conn):
        t = db.tunnel(conn, name)
        if t["pop"] == pop:
            raise SixbrokerError("TUNNEL_ALREADY_ON_POP", "%s is on %s" % (name, pop))
        if t["remote"] is not None:
            check_remote(t["remote"], s, allow_private=True)
            other = db.tunnel_with_remote(conn, t["remote"], pop)
            if other is not None:
                raise SixbrokerError("REMOTE_IN_USE", "%s is the remote of tunnel %s on %s" % (t["remote"], other, pop))
        lengths = [layout.check_length(length) for _, length in t["blocks"]]
        index = alloc.next_transfer_index(conn, layout, pop)
        conn.execute("DELETE FROM blocks WHERE tunnel = ?", (name,))
        conn.execute("DELETE FROM faults WHERE tunnel = ?", (name,))
        conn.execute("UPDATE tunnels SET pop = ?, transfer_index = ?, updated = ? WHERE name = ?",
                     (pop, index, db.now(), name))
        for length in lengths:
            alloc.take_block(conn, alloc.next_block(conn, layout, length, pop), length, name, layout=layout, pop=pop)
        if key_hash is not None:
            db.store_key(conn, name, key_hash)
    return show(conn, name)


def remove(conn, name):
    with db.transaction(conn, track=True):
        gone = show(conn, name)
        conn.execute("DELETE FROM blocks WHERE tunnel = ?", (name,))
        conn.execute("DELETE FROM tunnels WHERE name = ?", (name,))
    return gone


def update(conn, name, remote=None, mtu=None, allow_private=False):
    """A tunnel of any PoP: its remote checked against that PoP's addresses."""
    s = db.server(conn, db.tunnel(conn, name)["pop"])
    r = check_remote(remote, s, allow_private) if remote is not None else None
    mtu = check_mtu(mtu) if mtu is not None else None
    with db.transaction(conn, track=True):
        t = db.tunnel(conn, name)
        if r is not None and str(r) != t["remote"]:
            other = db.tunnel_with_remote(conn, str(r), t["pop"])
            if other is not None:
                raise SixbrokerError("REMOTE_IN_USE", "%s is the remote of tunnel %s" % (r, other))
            conn.execute("UPDATE tunnels SET remote = ?, updated = ? WHERE name = ?", (str(r), db.now(), name))
        if mtu is not None and mtu != t["mtu"]:
            conn.execute("UPDATE tunnels SET mtu = ?, updated = ? WHERE name = ?", (mtu, db.now(), name))
    return show(conn, name)


# ---- the desired kernel state --------------------------------------------------------------------------------

def plans(conn):
    """(server row, [plan]) for every tunnel, in name order.

    Kept on the connection for the database generation it was built from (every change of the server,
    tunnels or blocks moves it): an `apply` needs the plans for the reconcile and again for the
    host-firewall check, and at 10,000 tunnels building them is the larger part of its Python.  The same
    objects are returned while the generation stands: callers read them and never change them.  (Not
    called inside a transaction that may roll back: a generation number would then mean two states.)"""
    key = (conn.pop, db.generation(conn))
    memo = getattr(conn, "plans_memo", None)
    if memo is not None and memo[0] == key:
        return memo[1]
    s = db.server(conn)
    out = s, _plans(s, db.tunnels(conn))
    conn.plans_memo = (key, out)
    return out


def _plans(s, rows):
    layout = alloc.Layout.of(s)
    uplink = s["uplink"] if s["uplink_ra"] else None
    local = str(addr.Address.parse(s["local_ipv4"], 4))      # (formatted once, not per plan)
    out = []
    for t in rows:
        if t["remote"] is None:
            continue        # pending: no device until its first update (update.py) gives it a remote
        routed = [layout.routed_net(start, length) for start, length in t["blocks"]]
        out.append(plan.broker(t["name"], t["device"], local, addr.Address.parse(t["remote"], 4),
                               layout.transfer_net(t["transfer_index"]), routed, t["mtu"], t["ttl"], uplink))
    return out


def plan_of(conn, name):
    """The plan of one tunnel, or None when there is no such tunnel or it is pending."""
    plans = _plans(db.server(conn), db._tunnel_rows(conn, "WHERE name = ? AND pop = ?", (name, conn.pop)))
    return plans[0] if plans else None


def another_plan(conn, name):
    """The plan of some tunnel other than name, or None when there is none."""
    rows = db._tunnel_rows(conn, "WHERE name = (SELECT name FROM tunnels WHERE pop = ? AND name != ?"
                                 " AND remote IS NOT NULL LIMIT 1)", (conn.pop, name))
    return _plans(db.server(conn), rows)[0] if rows else None


def ndp_state(conn):
    """What apply_ndp answers for on the uplink: both ends of every transfer /127 and every routed
    prefix inside the broker prefix (the provider's link reaches only that), or nothing when off."""
    s = db.server(conn)
    out = {"netns": s["netns"], "uplink": None, "addresses": [], "prefixes": []}
    if not s["ndp_proxy"] or not s["uplink"]:
        return out
    out["uplink"] = s["uplink"]
    layout = alloc.Layout.of(s)
    inside = layout.prefix.overlaps(layout.transfer)
    for t in db.tunnels(conn):
        if t["remote"] is None:
            continue
        if inside:
            net = layout.transfer_net(t["transfer_index"])
            out["addresses"] += [str(net.host(0)), str(net.host(1))]
        out["prefixes"] += [str(layout.routed_net(start, length)) for start, length in t["blocks"]]
    return out


NEIGH_FROM = 256        # tunnels from which the IPv6 neighbour table is sized for them


def base_sysctls(server, tunnels=0):
    """What the broker needs even with no tunnel: forwarding, and RAs kept on an uplink that takes its
    own address from them (forwarding=1 turns RA processing off unless accept_ra is 2).

    Each tunnel's route via the router's /127 address holds an IPv6 neighbour entry (NOARP, but an
    entry), and the kernel's default table refuses new entries past gc_thresh3 = 1024 ("neighbour table
    overflow", packets dropped; DESIGN.md, scale facts).  From NEIGH_FROM tunnels on the thresholds are
    raised to a power of two with room for twice the tunnels and the uplink's own neighbours.  The table
    is one for all namespaces and its thresholds exist only in the initial one, so a broker running in a
    namespace (--netns) leaves them to the host."""
    out = [["net.ipv6.conf.all.forwarding", "1"]]
    if server["uplink"] and server["uplink_ra"]:
        # before forwarding: switching that on drops the RA default routes of every device whose
        # accept_ra is not 2 (kernel rt6_purge_dflt_routers), the VPS's own IPv6 until the next RA
        out.insert(0, ["net.ipv6.conf." + server["uplink"] + ".accept_ra", "2"])
    if tunnels >= NEIGH_FROM and not server.get("netns"):
        cap = 4096
        while cap < 2 * tunnels + 1024:
            cap *= 2
        for key, value in (("gc_thresh1", cap // 4), ("gc_thresh2", cap // 2), ("gc_thresh3", cap)):
            out.append(["net.ipv6.neigh.default." + key, str(value)])
    return out
