"""The broker's state: one SQLite file.

The database is the truth; the kernel and the firewall are made to match it afterwards (reconcile.py), so
every change is one transaction and a crash between the commit and the kernel change is repaired by the
next `sixbroker server apply`.

Layout (schema version 7, `PRAGMA user_version`):
- `server`: one row, the broker's own facts (its prefix, transfer prefix, IPv4 addresses, uplink, netns,
  its tunnel mode (a sit device per tunnel, or one shared), whether it proxies NDP on the uplink, and
  whether the IPv4 addresses were read from the host, so `apply` may follow them when they change).
- `tunnels`: one row per tunnel; `transfer_index` numbers its /127 inside the transfer prefix.
- `blocks`: what is taken out of the broker prefix, counted in /64s from its start (`start` inclusive,
  `stop` exclusive): each tunnel's routed prefix, the transfer prefix and any reserved prefix (tunnel
  NULL).  A trigger refuses an overlapping block, so even a bug in the allocator cannot hand a prefix
  out twice.

Integers are /64 counts and /127 indexes rather than addresses because SQLite's integers are 64-bit: a
/16 broker prefix holds 2**48 /64s, a /64 transfer prefix 2**63 /127s, both fit.

- `generation`: one number, moved on by triggers at every change of the three tables above.
- `applied`: the generation the kernel and the firewall were last made to match, with the kernel's
  fingerprint and the nftables token seen then (reconcile.py: how `apply` tells "nothing to do" cheaply).
- `faults`: the tunnels that last apply left out of line, with the error code (reconcile.py).
- `update_keys`, `updates`: each tunnel's update key (a hash) and its recent updates (update.py).
"""

import os
import sqlite3
import time
from urllib.parse import quote

from sixbroker.core.errors import SixbrokerError

DEFAULT_PATH = "/var/lib/sixbroker/broker.db"
ENV_PATH = "SIXBROKER_DB"

# Each entry moves the schema from version i to i + 1; never edit one that has shipped, append.
MIGRATIONS = [
    """
    CREATE TABLE server (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        prefix TEXT NOT NULL,
        transfer_prefix TEXT NOT NULL,
        public_ipv4 TEXT NOT NULL,
        local_ipv4 TEXT NOT NULL,
        uplink TEXT,
        uplink_ra INTEGER NOT NULL DEFAULT 0,
        netns TEXT,
        created TEXT NOT NULL,
        updated TEXT NOT NULL
    );
    CREATE TABLE tunnels (
        name TEXT PRIMARY KEY,
        device TEXT NOT NULL UNIQUE,
        remote TEXT NOT NULL UNIQUE,
        transfer_index INTEGER NOT NULL UNIQUE CHECK (transfer_index >= 0),
        mtu INTEGER NOT NULL,
        ttl INTEGER NOT NULL DEFAULT 64,
        created TEXT NOT NULL,
        updated TEXT NOT NULL
    );
    CREATE TABLE blocks (
        start INTEGER PRIMARY KEY CHECK (start >= 0),
        stop INTEGER NOT NULL UNIQUE,
        length INTEGER NOT NULL,
        tunnel TEXT REFERENCES tunnels(name) ON DELETE CASCADE ON UPDATE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('routed', 'transfer', 'reserved')),
        CHECK (stop > start),
        CHECK ((tunnel IS NULL) = (kind != 'routed'))
    );
    CREATE INDEX blocks_tunnel ON blocks(tunnel);
    -- Blocks never overlap, so the one that starts last before the new block ends is the only one that
    -- can reach into it: one index lookup, not a scan.
    CREATE TRIGGER blocks_no_overlap BEFORE INSERT ON blocks
    WHEN (SELECT stop FROM blocks WHERE start < NEW.stop ORDER BY start DESC LIMIT 1) > NEW.start
    BEGIN
        SELECT RAISE(ABORT, 'sixbroker: overlapping prefix');
    END;
    """,
    # 2: a generation number that every change of the desired state moves on, and the record of the last
    # state the kernel and the firewall were seen in line with (see reconcile.py)
    """
    CREATE TABLE generation (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        n INTEGER NOT NULL
    );
    INSERT INTO generation (id, n) VALUES (1, 0);
    CREATE TRIGGER server_insert AFTER INSERT ON server BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER server_update AFTER UPDATE ON server BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER server_delete AFTER DELETE ON server BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER tunnels_insert AFTER INSERT ON tunnels BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER tunnels_update AFTER UPDATE ON tunnels BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER tunnels_delete AFTER DELETE ON tunnels BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER blocks_insert AFTER INSERT ON blocks BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER blocks_update AFTER UPDATE ON blocks BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER blocks_delete AFTER DELETE ON blocks BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TABLE applied (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        generation INTEGER NOT NULL,
        version TEXT NOT NULL,
        kernel TEXT NOT NULL,
        nft TEXT,
        foreign_tunnels TEXT NOT NULL,
        at TEXT NOT NULL
    );
    """,
    # 3: answer neighbour solicitations on the uplink for the tunnels' addresses (an on-link /64, apply_ndp.py)
    """
    ALTER TABLE server ADD COLUMN ndp_proxy INTEGER NOT NULL DEFAULT 0;
    """,
    # 4: the IPv4 addresses read from the host at init (1) rather than given (0); a broker from before
    # counts as given, so `apply` refuses loudly instead of moving its tunnels to an address it guessed
    """
    ALTER TABLE server ADD COLUMN ipv4_detected INTEGER NOT NULL DEFAULT 0;
    """,
    # 5: the tunnels the last apply could not bring in line, each with its error (reconcile.py); written
    # by apply, read by list and show.  Not part of the desired state: no generation trigger.
    """
    CREATE TABLE faults (
        tunnel TEXT PRIMARY KEY REFERENCES tunnels(name) ON DELETE CASCADE ON UPDATE CASCADE,
        code TEXT NOT NULL,
        message TEXT NOT NULL,
        at TEXT NOT NULL
    );
    """,
    # 6: the update service (update.py).  A tunnel may wait for its first update: remote NULL, "pending",
    # no device (SQLite cannot drop NOT NULL in place: the table is rebuilt, the way its ALTER TABLE page
    # says, with foreign keys off - migrate() - so the blocks and faults that refer to it stay).  Each
    # tunnel's update key, as a hash; a tunnel from before has none until `key NAME --rotate` (nobody has
    # seen a key for it: making one here would make one that nobody can read).  The bounded history of
    # accepted updates (runs of nochg are one row with a count).  Keys and history are no desired state:
    # no generation trigger.  update_url: what `add` prints for the router (NULL: https://PUBLIC:8443/...).
    """
    CREATE TABLE tunnels_v6 (
        name TEXT PRIMARY KEY,
        device TEXT NOT NULL UNIQUE,
        remote TEXT UNIQUE,
        transfer_index INTEGER NOT NULL UNIQUE CHECK (transfer_index >= 0),
        mtu INTEGER NOT NULL,
        ttl INTEGER NOT NULL DEFAULT 64,
        created TEXT NOT NULL,
        updated TEXT NOT NULL
    );
    INSERT INTO tunnels_v6 (name, device, remote, transfer_index, mtu, ttl, created, updated)
        SELECT name, device, remote, transfer_index, mtu, ttl, created, updated FROM tunnels;
    DROP TABLE tunnels;
    ALTER TABLE tunnels_v6 RENAME TO tunnels;
    CREATE TRIGGER tunnels_insert AFTER INSERT ON tunnels BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER tunnels_update AFTER UPDATE ON tunnels BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER tunnels_delete AFTER DELETE ON tunnels BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TABLE update_keys (
        tunnel TEXT PRIMARY KEY REFERENCES tunnels(name) ON DELETE CASCADE ON UPDATE CASCADE,
        hash TEXT NOT NULL,
        created TEXT NOT NULL
    );
    CREATE TABLE updates (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tunnel TEXT NOT NULL REFERENCES tunnels(name) ON DELETE CASCADE ON UPDATE CASCADE,
        first TEXT NOT NULL,
        last TEXT NOT NULL,
        count INTEGER NOT NULL DEFAULT 1,
        source TEXT NOT NULL,
        address TEXT NOT NULL,
        answer TEXT NOT NULL
    );
    CREATE INDEX updates_tunnel ON updates(tunnel, id);
    ALTER TABLE server ADD COLUMN update_url TEXT;
    """,
    # 7: how the tunnels map onto the kernel (linux/sit.py): 'per-tunnel', a sit device each (every broker
    # from before keeps it), or 'shared', one NBMA sit device for all; set by `init --tunnel-mode`, changed
    # by `apply --tunnel-mode` (which moves every tunnel).  Desired state: the server trigger moves the generation.
    """
    ALTER TABLE server ADD COLUMN tunnel_mode TEXT NOT NULL DEFAULT 'per-tunnel'
        CHECK (tunnel_mode IN ('per-tunnel', 'shared'));
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def path_from_env(given=None):
    return given or os.environ.get(ENV_PATH) or DEFAULT_PATH


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Connection(sqlite3.Connection):
    """A connection that carries what could not be written (`notices`: [(code, text)]) to the caller."""

    def __init__(self, *args, **kwargs):
        sqlite3.Connection.__init__(self, *args, **kwargs)
        self.notices = []


def connect(path, create=True):
    """An open, migrated database.  create=False: a missing or empty file is BROKER_NOT_INITIALISED (and
    stays as it was).  Created here: the file 0600 and its directory 0700 (it holds the homes' addresses)."""
    if not create and not os.path.exists(path):
        raise SixbrokerError("BROKER_NOT_INITIALISED", "no database at " + path)
    if create and path != ":memory:":
        parent = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(parent, mode=0o700, exist_ok=True)
            # sqlite would create it umask-wide (0644); its journals copy the file's mode
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        except OSError as e:
            raise SixbrokerError("DB_ERROR", "%s: %s" % (e.filename or path, e.strerror or e))
    def prepare(conn):
        conn.execute("PRAGMA foreign_keys = ON")
        # rollback journal with full sync: a commit that returned survives a power cut, which the
        # boot-time `apply` relies on
        conn.execute("PRAGMA synchronous = FULL")
        if not create and _version(conn) == 0:
            raise SixbrokerError("BROKER_NOT_INITIALISED", "the database at %s is empty" % path)
        migrate(conn)
    return _prepared(_open(path, path, False), path, prepare)


def connect_readonly(path):
    """The database opened for reading only (list, show, config, info): never created, migrated or
    written, whatever its state.  Schemas older than this one are read as they are: every version has the
    server, tunnels and blocks tables that the views read."""
    if not os.path.exists(path):
        raise SixbrokerError("BROKER_NOT_INITIALISED", "no database at " + path)
    def prepare(conn):
        version = _version(conn)
        if version > SCHEMA_VERSION:
            raise SixbrokerError("DB_TOO_NEW", "schema version %d, this sixbroker knows up to %d"
                                 % (version, SCHEMA_VERSION))
        if version == 0:
            raise SixbrokerError("BROKER_NOT_INITIALISED", "the database at %s is empty" % path)
    return _prepared(_open("file:%s?mode=ro" % quote(os.path.abspath(path)), path, True), path, prepare)


def _prepared(conn, path, prepare):
    """conn once prepare(conn) has run; closed, with the error in our words, when it fails."""
    try:
        prepare(conn)
    except sqlite3.DatabaseError as e:
        conn.close()
        raise _db_error(e, path)
    except SixbrokerError:
        conn.close()
        raise
    return conn


def _open(target, path, uri):
    try:
        # isolation_level=None: the module's implicit transactions off; transaction() says BEGIN itself
        conn = sqlite3.connect(target, timeout=30, isolation_level=None, uri=uri, factory=Connection)
    except sqlite3.Error as e:
        raise _db_error(e, path)
    conn.row_factory = sqlite3.Row
    return conn


def _version(conn):
    return conn.execute("PRAGMA user_version").fetchone()[0]


def _read_only(e):
    return getattr(e, "sqlite_errorname", "").startswith("SQLITE_READONLY") or "readonly" in str(e)


def _db_error(e, path):
    if _read_only(e):
        return SixbrokerError("DB_READ_ONLY", "%s: %s" % (path, e))
    return SixbrokerError("DB_ERROR", "%s: %s" % (path, e))


def migrate(conn):
    version = _version(conn)
    if version > SCHEMA_VERSION:
        raise SixbrokerError("DB_TOO_NEW", "schema version %d, this sixbroker knows up to %d"
                             % (version, SCHEMA_VERSION))
    if version == SCHEMA_VERSION:
        return
    # off for the migrations (a no-op inside a transaction, hence here): a table rebuilt (6) is dropped,
    # and a drop with foreign keys on deletes every row that refers to it; foreign_key_check proves
    # before each commit that nothing was left dangling
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        while version < SCHEMA_VERSION:
            with transaction(conn):
                # executescript would COMMIT on its own; the statements run one by one inside ours
                for stmt in _statements(MIGRATIONS[version]):
                    conn.execute(stmt)
                bad = conn.execute("PRAGMA foreign_key_check").fetchall()
                if bad:
                    raise SixbrokerError("DB_ERROR", "migration %d leaves %d dangling references"
                                         % (version + 1, len(bad)))
                conn.execute("PRAGMA user_version = %d" % (version + 1))
            version += 1
    finally:
        conn.execute("PRAGMA foreign_keys = ON")


def _statements(script):
    out, buf = [], ""
    for line in script.splitlines(True):
        if line.strip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        raise ValueError("incomplete SQL statement in a migration: " + buf.strip()[:60])
    return out


class transaction:
    """`with transaction(conn):` one write transaction, taken at once (BEGIN IMMEDIATE), so two
    `sixbroker server add` at the same time allocate one after the other, never the same prefix."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise _read_only_error(e)
        return self.conn

    def __exit__(self, typ, value, tb):
        if typ is None:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.OperationalError as e:
                raise _read_only_error(e)
            return False
        self.conn.execute("ROLLBACK")
        if isinstance(value, sqlite3.OperationalError) and _read_only(value):
            # SQLite takes the write lock of a read-only file and refuses only the first write
            raise SixbrokerError("DB_READ_ONLY", str(value))
        return False


def _read_only_error(e):
    return SixbrokerError("DB_READ_ONLY", str(e)) if _read_only(e) else e


# ---- reading ------------------------------------------------------------------------------------------

def server(conn):
    """The server row as a dict, or BROKER_NOT_INITIALISED."""
    row = conn.execute("SELECT * FROM server WHERE id = 1").fetchone()
    if row is None:
        raise SixbrokerError("BROKER_NOT_INITIALISED")
    return dict(row)


def set_server_ipv4(conn, public, local):
    with transaction(conn):
        conn.execute("UPDATE server SET public_ipv4 = ?, local_ipv4 = ?, updated = ? WHERE id = 1",
                     (public, local, now()))


def tunnel_mode(server_row):
    """'per-tunnel' or 'shared' (a database from before schema 7, read and never migrated: per-tunnel)."""
    return server_row.get("tunnel_mode") or "per-tunnel"


def set_tunnel_mode(conn, mode):
    with transaction(conn):
        conn.execute("UPDATE server SET tunnel_mode = ?, updated = ? WHERE id = 1 AND tunnel_mode != ?",
                     (mode, now(), mode))


def server_or_none(conn):
    row = conn.execute("SELECT * FROM server WHERE id = 1").fetchone()
    return dict(row) if row is not None else None


def _tunnel_rows(conn, where="", args=()):
    rows = conn.execute("SELECT * FROM tunnels " + where + " ORDER BY name", args).fetchall()
    out = []
    blocks = {}
    q = "SELECT tunnel, start, length FROM blocks WHERE tunnel IS NOT NULL"
    if where:
        q += " AND tunnel IN (SELECT name FROM tunnels " + where + ")"
    for b in conn.execute(q + " ORDER BY start", args):
        blocks.setdefault(b["tunnel"], []).append((b["start"], b["length"]))
    for r in rows:
        t = dict(r)
        t["blocks"] = blocks.get(t["name"], [])
        out.append(t)
    return out


def tunnels(conn):
    return _tunnel_rows(conn)


def tunnel(conn, name):
    rows = _tunnel_rows(conn, "WHERE name = ?", (name,))
    if not rows:
        raise SixbrokerError("TUNNEL_NOT_FOUND", name)
    return rows[0]


def tunnel_count(conn, active=False):
    """All tunnels, or (active) those with a remote: a pending one has no device and no plan."""
    return conn.execute("SELECT COUNT(*) FROM tunnels" + (" WHERE remote IS NOT NULL" if active else "")).fetchone()[0]


def tunnel_with_remote(conn, remote):
    row = conn.execute("SELECT name FROM tunnels WHERE remote = ?", (remote,)).fetchone()
    return row[0] if row else None


def has_tunnel(conn, name):
    return conn.execute("SELECT 1 FROM tunnels WHERE name = ?", (name,)).fetchone() is not None


def blocks(conn):
    return [dict(r) for r in conn.execute("SELECT * FROM blocks ORDER BY start")]


# ---- what was applied ---------------------------------------------------------------------------------

def generation(conn):
    return conn.execute("SELECT n FROM generation WHERE id = 1").fetchone()[0]


def has_table(conn, name):
    """Whether a table exists: a read opens an older database as it is, never migrated."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def applied(conn):
    if not has_table(conn, "applied"):
        return None
    row = conn.execute("SELECT * FROM applied WHERE id = 1").fetchone()
    return dict(row) if row is not None else None


def record_applied(conn, gen, version, kernel, nft, foreign_tunnels):
    """Write the record, unless it already says exactly this (an apply that changed nothing writes
    nothing, so it runs on a read-only file system).  A database that cannot be written is no failure of
    the apply: the kernel and the firewall are in line all the same; it goes to conn.notices."""
    old = applied(conn)
    new = (gen, version, kernel, nft, foreign_tunnels)
    if old is not None and tuple(old[k] for k in ("generation", "version", "kernel", "nft", "foreign_tunnels")) == new:
        return
    _write_or_notice(conn, "the kernel and the firewall are in line, but the record of it could not be saved "
                     "(%s): the next apply compares everything again",
                     lambda: conn.execute("INSERT OR REPLACE INTO applied (id, generation, version, kernel, nft,"
                                          " foreign_tunnels, at) VALUES (1, ?, ?, ?, ?, ?, ?)", new + (now(),)))


def _write_or_notice(conn, words, write):
    """write() in a transaction; a read-only database's refusal is a notice (conn.notices, words % the
    error), not a failure of the apply it belongs to: the kernel and the firewall are in line all the same."""
    try:
        with transaction(conn):
            write()
    except SixbrokerError as e:
        if e.code != "DB_READ_ONLY" or not hasattr(conn, "notices"):
            raise
        conn.notices.append(("DB_READ_ONLY", words % e))


def forget_applied(conn):
    with transaction(conn):
        conn.execute("DELETE FROM applied")


def faults(conn):
    """{tunnel: {"code", "message", "at"}} of the tunnels the last apply could not bring in line (none
    from a database older than the table: a read does not migrate)."""
    if not has_table(conn, "faults"):
        return {}
    return dict((r["tunnel"], {"code": r["code"], "message": r["message"], "at": r["at"]})
                for r in conn.execute("SELECT * FROM faults ORDER BY tunnel"))


def record_faults(conn, failed, names=None):
    """Replace what is recorded of the tunnels `names` (all when None) with failed: {tunnel: (code,
    message)}.  Nothing is written when that is what the table holds already (an apply with nothing to
    do runs on a read-only file system); one that cannot be written is a notice, as in record_applied."""
    old = dict((t, (f["code"], f["message"])) for t, f in faults(conn).items())
    keep = {} if names is None else dict((t, f) for t, f in old.items() if t not in names)
    want = dict(keep)
    want.update((n, tuple(f)) for n, f in failed.items())
    tunnels = set(r[0] for r in conn.execute("SELECT name FROM tunnels"))
    if old == dict((n, f) for n, f in want.items() if n in tunnels):
        return
    stamp = now()

    def write():
        if names is None:
            conn.execute("DELETE FROM faults")
        else:
            conn.executemany("DELETE FROM faults WHERE tunnel = ?", [(n,) for n in names])
        conn.executemany("INSERT INTO faults (tunnel, code, message, at) SELECT ?, ?, ?, ?"
                         " WHERE EXISTS (SELECT 1 FROM tunnels WHERE name = ?)",
                         [(n, c, m, stamp, n) for n, (c, m) in sorted(failed.items())])
    _write_or_notice(conn, "the tunnels that failed could not be recorded (%s): `list` may show an older state",
                     write)