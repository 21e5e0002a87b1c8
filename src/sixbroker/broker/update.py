"""The dyndns2 update: one authenticated request -> one answer word, and the tunnel re-keyed when its home moved.

HTTP-free (serve.py carries it over HTTP), so the rules are tested without a socket:

    GET /nic/update?hostname=NAME[&myip=A]    Authorization: Basic base64(NAME:KEY)

answers (HTTP 200, or 401 with a Basic challenge when no credentials came at all (serve.py), text/plain,
one line, the words ddclient's nic_dyndns2_update and inadyn's
plugins/common.c common_response read):
    good A      the tunnel's remote is now A (re-keyed through the same path as `set --remote`)
    nochg A     it already was A
    badauth     no or malformed Basic auth, an unknown tunnel, a wrong key, a tunnel with no key yet
    nohost      hostname is not the tunnel authenticated as (a key opens its own tunnel only)
    notfqdn     no hostname
    badip       no usable address: myip not a public IPv4 and the request's source not one either (an
                IPv6 source, a private or CGNAT one), or the address is another tunnel's or the server's
    abuse       too many requests (rate limits, serve.py)
    911         the change is saved but the kernel or firewall could not be brought in line (retry later)
`badip` is ours (dyndns2 has no word for it): ddclient logs it as an unexpected status, inadyn as an error;
neither retries any faster for it.

The address: `myip` when it is a public unicast IPv4 (service.is_public, the same test as `add --remote`),
else the request's source when that is one; a private, CGNAT or special address is never taken.

Keys: 16 random bytes (128 bits) as 22 base64url characters, made by `add` and `key --rotate`, shown once.
The database keeps SHA-256 of the key only: a fast hash is enough for a 128-bit random secret (a slow one
guards low-entropy passwords against guessing; nobody can search 2^128), and it keeps a request cheap.
The comparison is hmac.compare_digest over the hashes; an unknown tunnel is compared against a dummy hash
so its answer takes the same time as a wrong key's.

Nothing is written for a refused request.  An accepted one is recorded in `updates` (db.py): a run of the
same answer from the same source for the same address is one row whose `last` and `count` move; at most
HISTORY rows per tunnel are kept.
"""

import base64
import binascii
import hashlib
import hmac
import secrets
import time

from sixbroker.broker import db, pops, reconcile, service
from sixbroker.core import addr
from sixbroker.core.errors import SixbrokerError

KEY_BYTES = 16
HISTORY = 20
_DUMMY = hashlib.sha256(b"sixbroker: no such tunnel").hexdigest()


def new_key():
    """(key, hash): the key for the router, the hash for the database."""
    key = secrets.token_urlsafe(KEY_BYTES)
    return key, key_hash(key)


def key_hash(key):
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def rotate(conn, name):
    """A new key for tunnel name (the old one stops working at once); the key, to show once."""
    key, h = new_key()
    with db.transaction(conn):
        db.tunnel(conn, name)
        db.store_key(conn, name, h)
    return key


def has_key(conn, name):
    return db.has_table(conn, "update_keys") and conn.execute(
        "SELECT 1 FROM update_keys WHERE tunnel = ?", (name,)).fetchone() is not None


def basic_auth(header):
    """(user, password) of an Authorization: Basic header, or None."""
    if not header or len(header) > 1024:
        return None
    parts = header.split(None, 1)
    if len(parts) != 2 or parts[0].lower() != "basic":
        return None
    try:
        raw = base64.b64decode(parts[1].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if ":" not in raw:
        return None
    user, password = raw.split(":", 1)
    return user, password


def authenticate(conn, user, password):
    """The tunnel name when password is its key, else None; the same work either way."""
    row = None
    # only a name a tunnel can have reaches the database: any other is simply no tunnel (PostgreSQL
    # refuses a NUL in a text parameter, which was a 911 and an INTERNAL_ERROR, not badauth)
    if _could_be_tunnel(user):
        row = conn.execute("SELECT hash FROM update_keys WHERE tunnel = ?", (user,)).fetchone()
    want = row[0] if row is not None else _DUMMY
    ok = hmac.compare_digest(key_hash(password), want)
    return user if ok and row is not None else None


def _could_be_tunnel(user):
    try:
        service.check_name(user)
    except SixbrokerError:
        return False
    return True


def usable(text):
    """The text as a public unicast IPv4 address (str), or None."""
    if not text or len(text) > 15:
        return None
    try:
        a = addr.Address.parse(text, 4)
    except addr.AddressError:
        return None
    return str(a) if service.is_public(a) else None


def choose_address(myip, source):
    """(address, None) or (None, why): myip when usable, else the source when usable."""
    a = usable(myip)
    if a is not None:
        return a, None
    if source and ":" in source and not source.startswith("::ffff:"):
        return None, ("the request came over IPv6 (%s) and myip=%s is no public IPv4 address: send myip= "
                      "or update over IPv4" % (source, myip or "(none)"))
    s = usable(source[7:] if source and source.startswith("::ffff:") else source)
    if s is not None:
        return s, None
    return None, "neither myip=%s nor the source %s is a public IPv4 address" % (myip or "(none)", source)


class Answer:
    """What a request got: the dyndns2 word, the address (good, nochg), the tunnel, the reason in words;
    for a refused request `reason`, one stable word for /metrics (metrics.REASONS); `apply_seconds`, how
    long bringing the kernel in line took, when it was tried."""

    def __init__(self, word, address=None, tunnel=None, why="", reason=None):
        self.word = word
        self.address = address
        self.tunnel = tunnel
        self.why = why
        self.reason = reason
        self.apply_seconds = None

    def body(self):
        return self.word + (" " + self.address if self.address else "") + "\n"


def handle(conn, lock, auth, hostname, myip, source, admit=None):
    """The answer to one request; the tunnel's remote changed (and applied) on `good`.

    conn: an open database; lock: a context manager that serialises changes with the CLI (cli.Lock),
    taken only for a change; auth: (user, password) or None; admit: callable(tunnel) -> False when the
    tunnel has had its share of requests (serve.py's per-tunnel limit; only an authenticated request
    counts, so wrong keys sent under a tunnel's name cannot lock its router out)."""
    if auth is None:
        return Answer("badauth", why="no Basic authorization", reason="no_auth")
    name = authenticate(conn, auth[0], auth[1])
    if name is None:
        return Answer("badauth", why="wrong tunnel name or key for %r" % auth[0][:64], reason="bad_key")
    if admit is not None and not admit(name):
        return Answer("abuse", tunnel=name, why="rate limit of the tunnel", reason="rate_tunnel")
    if not hostname:
        return Answer("notfqdn", tunnel=name, why="no hostname", reason="no_hostname")
    if hostname != name:
        return Answer("nohost", tunnel=name, why="hostname %r is not the tunnel authenticated as" % hostname[:64],
                      reason="wrong_hostname")
    address, why = choose_address(myip, source)
    if address is None:
        return Answer("badip", tunnel=name, why=why, reason="no_public_ipv4")
    t = db.tunnel(conn, name)
    here = t.get("pop", getattr(conn, "pop", None)) == getattr(conn, "pop", t.get("pop"))
    # another PoP's kernel is that PoP's to know: for its tunnel the database's remote is the answer
    if t["remote"] == address and (not here or _in_kernel(conn, name)):
        _record(conn, name, source, address, "nochg")
        return Answer("nochg", address, name)
    with lock:
        change = None
        if db.tunnel(conn, name)["remote"] != address:
            change = reconcile.Change(conn, name)
            try:
                service.update(conn, name, remote=address)
            except SixbrokerError as e:
                if e.code in ("REMOTE_IN_USE", "REMOTE_IS_SERVER", "REMOTE_NOT_PUBLIC", "INVALID_REMOTE"):
                    return Answer("badip", tunnel=name, why="%s: %s" % (e.code, e.text), reason=e.code.lower())
                raise
            reconcile.crash_point("commit")
        if not here:
            # another PoP's tunnel: saved; its own PoP's serve re-keys it on the news (pops.py)
            pops.notify(conn, [t["pop"]])
            _record(conn, name, source, address, "good")
            return Answer("good", address, name)
        started = time.monotonic()
        try:
            # the new remote as `set --remote` applies it: that one tunnel, incrementally.  The same address
            # again while the kernel lacks it (an earlier request's 911, a change not applied since) must
            # not be `nochg`: then what `apply` does, now
            report = reconcile.reconcile(conn) if change is None else reconcile.reconcile_change(conn, change)
        except Exception as e:      # saved, not applied: `apply`, the next change or the next request
            _record(conn, name, source, address, "911")
            a = Answer("911", tunnel=name, why="saved, not applied: %s" % (getattr(e, "text", None) or e))
            a.apply_seconds = time.monotonic() - started
            return a
        took = time.monotonic() - started
    failed = [f for f in report.get("failed", []) if f["tunnel"] == name]
    if failed:
        _record(conn, name, source, address, "911")
        a = Answer("911", tunnel=name, why="saved, not applied: %s: %s" % (failed[0]["code"], failed[0]["message"]))
    else:
        _record(conn, name, source, address, "good")
        a = Answer("good", address, name)
    a.apply_seconds = took
    return a


def _in_kernel(conn, name):
    """Whether the tunnel's saved state is what the last apply brought in (not failed, nothing pending)."""
    return service.with_state(conn, [{"name": name}])[0]["state"] == "applied"


def _record(conn, name, source, address, answer):
    stamp = db.now()
    with db.transaction(conn):
        last = conn.execute("SELECT id, source, address, answer FROM updates WHERE tunnel = ? ORDER BY id DESC LIMIT 1",
                            (name,)).fetchone()
        if last is not None and (last["source"], last["address"], last["answer"]) == (source, address, answer):
            conn.execute("UPDATE updates SET last = ?, count = count + 1 WHERE id = ?", (stamp, last["id"]))
            return
        conn.execute("INSERT INTO updates (tunnel, first, last, count, source, address, answer)"
                     " VALUES (?, ?, ?, 1, ?, ?, ?)", (name, stamp, stamp, source, address, answer))
        conn.execute("DELETE FROM updates WHERE tunnel = ? AND id NOT IN (SELECT id FROM updates WHERE tunnel = ?"
                     " ORDER BY id DESC LIMIT ?)", (name, name, HISTORY))


def history(conn, name):
    """The tunnel's recorded updates, newest first (none from a database before schema 6)."""
    if not db.has_table(conn, "updates"):
        return []
    return [{"first": r["first"], "last": r["last"], "count": r["count"], "source": r["source"],
             "address": r["address"], "answer": r["answer"]}
            for r in conn.execute("SELECT * FROM updates WHERE tunnel = ? ORDER BY id DESC", (name,))]


def with_updates(conn, tunnels, limit=None):
    """Each view with its last update and (limit None) its bounded history, newest first; `key`: whether
    the tunnel has an update key (one from before schema 6 has none until `key --rotate`)."""
    for t in tunnels:
        h = history(conn, t["name"])
        t["last_update"] = h[0] if h else None
        if limit is None:
            t["updates"] = h
        t["update_key"] = has_key(conn, t["name"])
        if t["remote"] is None and t.get("state") != "failed":
            t["state"] = "waiting"      # for its first update: no device yet
    return tunnels


def update_url(server):
    """The URL routers send updates to: init --update-url, else the public IPv4 at the default port."""
    return server.get("update_url") or "https://%s:%d/nic/update" % (server["public_ipv4"], DEFAULT_PORT)


DEFAULT_PORT = 8443
