"""The broker's state: one SQLite file, or a PostgreSQL database (pg.py) that several brokers share.

The database is the truth; the kernel and the firewall are made to match it afterwards (reconcile.py), so
every change is one transaction and a crash between the commit and the kernel change is repaired by the
next `sixbroker server apply`.

Layout (schema version 11, `PRAGMA user_version`; on PostgreSQL the table `schema_version`):
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
- `pop_certs`: each PoP's update-service certificate, as routers are given it (tls.publish).
- `apply_runs`: the last apply of each command on each PoP, for /metrics (record_apply_run).
- `pop_usage`: each PoP's tunnel count, active tunnel count and units taken, kept by triggers (usage()).
"""

import os
import sqlite3
import time
from urllib.parse import quote

from sixbroker.broker import pg
from sixbroker.core.errors import SixbrokerError

DEFAULT_PATH = "/var/lib/sixbroker/broker.db"
ENV_PATH = "SIXBROKER_DB"
ENV_STATE_DIR = "SIXBROKER_STATE_DIR"
ENV_POP = "SIXBROKER_POP"
DEFAULT_POP = "main"       # the PoP of a broker that names none (every broker from before PoPs)



class Dialects:
    """A migration whose SQL differs between SQLite and PostgreSQL (types, triggers, table rebuilds); a
    plain string in MIGRATIONS is run as it is on both."""

    def __init__(self, sqlite, postgresql):
        self.sqlite = sqlite
        self.postgresql = postgresql


# A PoP's (tunnels, active tunnels, units taken), counted from the rows: what pop_usage (11) keeps
_COUNTED = ("(SELECT COUNT(*) FROM tunnels t WHERE t.pop = {pop}), (SELECT COUNT(*) FROM tunnels t WHERE t.pop = {pop}"
            " AND t.remote IS NOT NULL), (SELECT COALESCE(SUM(b.stop - b.start), 0) FROM blocks b WHERE b.pop = {pop})")

# Each entry moves the schema from version i to i + 1; never edit one that has shipped, append.
# On PostgreSQL the version is the one row of `schema_version` (no user_version there).
MIGRATIONS = [
    Dialects("""
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
    """, postgresql="""
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
        transfer_index BIGINT NOT NULL UNIQUE CHECK (transfer_index >= 0),
        mtu INTEGER NOT NULL,
        ttl INTEGER NOT NULL DEFAULT 64,
        created TEXT NOT NULL,
        updated TEXT NOT NULL
    );
    -- the overlap check as a constraint (ranges and their GiST index are built in): it holds under
    -- any concurrency, not only under the writers' advisory lock
    CREATE TABLE blocks (
        start BIGINT PRIMARY KEY CHECK (start >= 0),
        stop BIGINT NOT NULL UNIQUE,
        length INTEGER NOT NULL,
        tunnel TEXT REFERENCES tunnels(name) ON DELETE CASCADE ON UPDATE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('routed', 'transfer', 'reserved')),
        CHECK (stop > start),
        CHECK ((tunnel IS NULL) = (kind != 'routed')),
        CONSTRAINT blocks_no_overlap EXCLUDE USING gist (int8range(start, stop) WITH &&)
    );
    CREATE INDEX blocks_tunnel ON blocks(tunnel);
    """),
    # 2: a generation number that every change of the desired state moves on, and the record of the last
    # state the kernel and the firewall were seen in line with (see reconcile.py)
    Dialects("""
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
    """, postgresql="""
    CREATE TABLE generation (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        n BIGINT NOT NULL
    );
    INSERT INTO generation (id, n) VALUES (1, 0);
    -- per row, as SQLite's: a statement that changes nothing moves nothing on
    CREATE FUNCTION sixbroker_generation() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE generation SET n = n + 1;
        RETURN NULL;
    END $$;
    CREATE TRIGGER server_change AFTER INSERT OR UPDATE OR DELETE ON server
        FOR EACH ROW EXECUTE FUNCTION sixbroker_generation();
    CREATE TRIGGER tunnels_change AFTER INSERT OR UPDATE OR DELETE ON tunnels
        FOR EACH ROW EXECUTE FUNCTION sixbroker_generation();
    CREATE TRIGGER blocks_change AFTER INSERT OR UPDATE OR DELETE ON blocks
        FOR EACH ROW EXECUTE FUNCTION sixbroker_generation();
    CREATE TABLE applied (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        generation BIGINT NOT NULL,
        version TEXT NOT NULL,
        kernel TEXT NOT NULL,
        nft TEXT,
        foreign_tunnels TEXT NOT NULL,
        at TEXT NOT NULL
    );
    """),
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
    # PostgreSQL drops the NOT NULL in place.
    Dialects("""
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
    """, postgresql="""
    ALTER TABLE tunnels ALTER COLUMN remote DROP NOT NULL;
    CREATE TABLE update_keys (
        tunnel TEXT PRIMARY KEY REFERENCES tunnels(name) ON DELETE CASCADE ON UPDATE CASCADE,
        hash TEXT NOT NULL,
        created TEXT NOT NULL
    );
    CREATE TABLE updates (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
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
    """),
    # 7: points of presence.  Several brokers may share one (PostgreSQL) database: each is a PoP, one row
    # of `server` named by `pop`, with its own prefix, addresses and uplink; every tunnel belongs to one
    # PoP, and what is unique per host (device, the (local, remote) pair, the transfer /127) or per
    # prefix (blocks) is unique per PoP.  A broker from before is the PoP 'main'.  `applied` is per PoP
    # (each PoP's kernel is its own); the old record becomes main's (the rows are copied before the
    # generation triggers exist again, so the generation it names is still the current one).
    # SQLite rebuilds the three tables (foreign keys off, as for 6); PostgreSQL alters them in place.
    Dialects("""
    CREATE TABLE server_v7 (
        id INTEGER PRIMARY KEY,
        pop TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        transfer_prefix TEXT NOT NULL,
        public_ipv4 TEXT NOT NULL,
        local_ipv4 TEXT NOT NULL,
        uplink TEXT,
        uplink_ra INTEGER NOT NULL DEFAULT 0,
        netns TEXT,
        created TEXT NOT NULL,
        updated TEXT NOT NULL,
        ndp_proxy INTEGER NOT NULL DEFAULT 0,
        ipv4_detected INTEGER NOT NULL DEFAULT 0,
        update_url TEXT
    );
    INSERT INTO server_v7 (id, pop, prefix, transfer_prefix, public_ipv4, local_ipv4, uplink, uplink_ra, netns,
                           created, updated, ndp_proxy, ipv4_detected, update_url)
        SELECT id, 'main', prefix, transfer_prefix, public_ipv4, local_ipv4, uplink, uplink_ra, netns, created,
               updated, ndp_proxy, ipv4_detected, update_url FROM server;
    DROP TABLE server;
    ALTER TABLE server_v7 RENAME TO server;
    CREATE TABLE tunnels_v7 (
        name TEXT PRIMARY KEY,
        pop TEXT NOT NULL REFERENCES server(pop) ON UPDATE CASCADE,
        device TEXT NOT NULL,
        remote TEXT,
        transfer_index INTEGER NOT NULL CHECK (transfer_index >= 0),
        mtu INTEGER NOT NULL,
        ttl INTEGER NOT NULL DEFAULT 64,
        created TEXT NOT NULL,
        updated TEXT NOT NULL,
        UNIQUE (pop, device),
        UNIQUE (pop, remote),
        UNIQUE (pop, transfer_index)
    );
    INSERT INTO tunnels_v7 (name, pop, device, remote, transfer_index, mtu, ttl, created, updated)
        SELECT name, 'main', device, remote, transfer_index, mtu, ttl, created, updated FROM tunnels;
    DROP TABLE tunnels;
    ALTER TABLE tunnels_v7 RENAME TO tunnels;
    CREATE TABLE blocks_v7 (
        pop TEXT NOT NULL REFERENCES server(pop) ON UPDATE CASCADE,
        start INTEGER NOT NULL CHECK (start >= 0),
        stop INTEGER NOT NULL,
        length INTEGER NOT NULL,
        tunnel TEXT REFERENCES tunnels(name) ON DELETE CASCADE ON UPDATE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('routed', 'transfer', 'reserved')),
        CHECK (stop > start),
        CHECK ((tunnel IS NULL) = (kind != 'routed')),
        PRIMARY KEY (pop, start),
        UNIQUE (pop, stop)
    );
    INSERT INTO blocks_v7 (pop, start, stop, length, tunnel, kind)
        SELECT 'main', start, stop, length, tunnel, kind FROM blocks;
    DROP TABLE blocks;
    ALTER TABLE blocks_v7 RENAME TO blocks;
    CREATE INDEX blocks_tunnel ON blocks(tunnel);
    CREATE TRIGGER blocks_no_overlap BEFORE INSERT ON blocks
    WHEN (SELECT stop FROM blocks WHERE pop = NEW.pop AND start < NEW.stop ORDER BY start DESC LIMIT 1) > NEW.start
    BEGIN
        SELECT RAISE(ABORT, 'sixbroker: overlapping prefix');
    END;
    CREATE TRIGGER server_insert AFTER INSERT ON server BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER server_update AFTER UPDATE ON server BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER server_delete AFTER DELETE ON server BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER tunnels_insert AFTER INSERT ON tunnels BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER tunnels_update AFTER UPDATE ON tunnels BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER tunnels_delete AFTER DELETE ON tunnels BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER blocks_insert AFTER INSERT ON blocks BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER blocks_update AFTER UPDATE ON blocks BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TRIGGER blocks_delete AFTER DELETE ON blocks BEGIN UPDATE generation SET n = n + 1; END;
    CREATE TABLE applied_v7 (
        pop TEXT PRIMARY KEY,
        generation INTEGER NOT NULL,
        version TEXT NOT NULL,
        kernel TEXT NOT NULL,
        nft TEXT,
        foreign_tunnels TEXT NOT NULL,
        at TEXT NOT NULL
    );
    INSERT INTO applied_v7 (pop, generation, version, kernel, nft, foreign_tunnels, at)
        SELECT 'main', generation, version, kernel, nft, foreign_tunnels, at FROM applied;
    DROP TABLE applied;
    ALTER TABLE applied_v7 RENAME TO applied;
    """, postgresql="""
    ALTER TABLE server DROP CONSTRAINT server_id_check;
    ALTER TABLE server ADD COLUMN pop TEXT NOT NULL DEFAULT 'main';
    ALTER TABLE server ALTER COLUMN pop DROP DEFAULT;
    ALTER TABLE server ADD CONSTRAINT server_pop_key UNIQUE (pop);
    ALTER TABLE tunnels ADD COLUMN pop TEXT NOT NULL DEFAULT 'main' REFERENCES server(pop) ON UPDATE CASCADE;
    ALTER TABLE tunnels ALTER COLUMN pop DROP DEFAULT;
    ALTER TABLE tunnels DROP CONSTRAINT tunnels_device_key;
    ALTER TABLE tunnels DROP CONSTRAINT tunnels_remote_key;
    ALTER TABLE tunnels DROP CONSTRAINT tunnels_transfer_index_key;
    ALTER TABLE tunnels ADD UNIQUE (pop, device);
    ALTER TABLE tunnels ADD UNIQUE (pop, remote);
    ALTER TABLE tunnels ADD UNIQUE (pop, transfer_index);
    ALTER TABLE blocks ADD COLUMN pop TEXT NOT NULL DEFAULT 'main' REFERENCES server(pop) ON UPDATE CASCADE;
    ALTER TABLE blocks ALTER COLUMN pop DROP DEFAULT;
    ALTER TABLE blocks DROP CONSTRAINT blocks_pkey;
    ALTER TABLE blocks DROP CONSTRAINT blocks_stop_key;
    ALTER TABLE blocks DROP CONSTRAINT blocks_no_overlap;
    ALTER TABLE blocks ADD PRIMARY KEY (pop, start);
    ALTER TABLE blocks ADD UNIQUE (pop, stop);
    -- per PoP; a GiST exclusion on (pop, range) would need the btree_gist extension: a trigger as
    -- SQLite's, which the writers' advisory lock keeps race-free
    CREATE FUNCTION sixbroker_no_overlap() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF (SELECT stop FROM blocks WHERE pop = NEW.pop AND start < NEW.stop ORDER BY start DESC LIMIT 1) > NEW.start
        THEN
            RAISE EXCEPTION 'sixbroker: overlapping prefix' USING ERRCODE = 'exclusion_violation';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER blocks_no_overlap BEFORE INSERT ON blocks FOR EACH ROW EXECUTE FUNCTION sixbroker_no_overlap();
    ALTER TABLE applied ADD COLUMN pop TEXT NOT NULL DEFAULT 'main';
    ALTER TABLE applied ALTER COLUMN pop DROP DEFAULT;
    ALTER TABLE applied DROP COLUMN id;
    ALTER TABLE applied ADD PRIMARY KEY (pop);
    """),
    # 8: how the tunnels map onto the kernel (linux/sit.py): 'per-tunnel', a sit device each (every broker
    # from before keeps it), or 'shared', one NBMA sit device for all; per PoP (each PoP's kernel is its
    # own); set by `init --tunnel-mode`, changed by `apply --tunnel-mode` (which moves every tunnel of the
    # PoP).  Desired state: the server trigger moves the generation.  The same text in both dialects.
    """
    ALTER TABLE server ADD COLUMN tunnel_mode TEXT NOT NULL DEFAULT 'per-tunnel'
        CHECK (tunnel_mode IN ('per-tunnel', 'shared'));
    """,
    # 9: each PoP's update-service certificate as the router's updater needs it (tls.for_join: its SHA-256,
    # and the certificate itself, base64 DER, when it is self-signed), published by the PoP's own `init`
    # and `serve` (tls.publish): the file lives on that PoP's host only, and `add --pop` and `move` on any
    # PoP print that PoP's updater.  A table beside `server`, not columns of it: no desired state, so no
    # generation trigger (a certificate published must not make every tunnel pending).  Both dialects.
    """
    CREATE TABLE pop_certs (
        pop TEXT PRIMARY KEY REFERENCES server(pop) ON UPDATE CASCADE ON DELETE CASCADE,
        fingerprint TEXT NOT NULL,
        cert TEXT,
        updated TEXT NOT NULL
    );
    """,
    # 10: the last apply each command made on each PoP (`apply`, `add`, ..., and `serve`'s follower): when,
    # how long, and how it ended ('ok'; 'failed': some tunnels, `failed` of them; 'error': none applied,
    # `code`), for /metrics (metrics.py), which runs in another process.  No desired state, no trigger.
    """
    CREATE TABLE apply_runs (
        pop TEXT NOT NULL,
        command TEXT NOT NULL,
        at TEXT NOT NULL,
        seconds DOUBLE PRECISION NOT NULL,
        result TEXT NOT NULL CHECK (result IN ('ok', 'failed', 'error')),
        failed INTEGER NOT NULL DEFAULT 0,
        code TEXT,
        PRIMARY KEY (pop, command)
    );
    """,
    # 11: each PoP's counts, kept by triggers: its tunnels, those with a remote, and the units its blocks
    # take.  The allocator needed them on every add, and a COUNT or SUM walks every row of the PoP: at
    # 10,000 tunnels that was most of what an add costs more than at 1 (issue 15).  With them, an add
    # reads one row and two MAX() that the (pop, ...) indexes answer.  A later migration that rebuilds
    # tunnels or blocks must make their triggers again.  No desired state: no generation trigger.
    Dialects("""
    CREATE TABLE pop_usage (
        pop TEXT PRIMARY KEY,
        tunnels INTEGER NOT NULL DEFAULT 0,
        active INTEGER NOT NULL DEFAULT 0,
        units INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO pop_usage (pop, tunnels, active, units) SELECT s.pop, """ + _COUNTED.format(pop="s.pop") + """ FROM server s;
    CREATE TRIGGER pop_usage_server AFTER INSERT ON server BEGIN
        INSERT OR IGNORE INTO pop_usage (pop) VALUES (NEW.pop);
    END;
    CREATE TRIGGER pop_usage_tunnels_insert AFTER INSERT ON tunnels BEGIN
        UPDATE pop_usage SET tunnels = tunnels + 1, active = active + (NEW.remote IS NOT NULL) WHERE pop = NEW.pop;
    END;
    CREATE TRIGGER pop_usage_tunnels_delete AFTER DELETE ON tunnels BEGIN
        UPDATE pop_usage SET tunnels = tunnels - 1, active = active - (OLD.remote IS NOT NULL) WHERE pop = OLD.pop;
    END;
    CREATE TRIGGER pop_usage_tunnels_update AFTER UPDATE OF pop, remote ON tunnels BEGIN
        UPDATE pop_usage SET tunnels = tunnels - 1, active = active - (OLD.remote IS NOT NULL) WHERE pop = OLD.pop;
        UPDATE pop_usage SET tunnels = tunnels + 1, active = active + (NEW.remote IS NOT NULL) WHERE pop = NEW.pop;
    END;
    CREATE TRIGGER pop_usage_blocks_insert AFTER INSERT ON blocks BEGIN
        UPDATE pop_usage SET units = units + (NEW.stop - NEW.start) WHERE pop = NEW.pop;
    END;
    CREATE TRIGGER pop_usage_blocks_delete AFTER DELETE ON blocks BEGIN
        UPDATE pop_usage SET units = units - (OLD.stop - OLD.start) WHERE pop = OLD.pop;
    END;
    CREATE TRIGGER pop_usage_blocks_update AFTER UPDATE OF pop, start, stop ON blocks BEGIN
        UPDATE pop_usage SET units = units - (OLD.stop - OLD.start) WHERE pop = OLD.pop;
        UPDATE pop_usage SET units = units + (NEW.stop - NEW.start) WHERE pop = NEW.pop;
    END;
    """, postgresql="""
    CREATE TABLE pop_usage (
        pop TEXT PRIMARY KEY,
        tunnels BIGINT NOT NULL DEFAULT 0,
        active BIGINT NOT NULL DEFAULT 0,
        units BIGINT NOT NULL DEFAULT 0
    );
    INSERT INTO pop_usage (pop, tunnels, active, units) SELECT s.pop, """ + _COUNTED.format(pop="s.pop") + """ FROM server s;
    -- one function for the three tables; every writer holds the advisory lock, so the rows of two PoPs
    -- that a move touches are never taken in the opposite order by another
    CREATE FUNCTION sixbroker_usage() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_TABLE_NAME = 'server' THEN
            INSERT INTO pop_usage (pop) VALUES (NEW.pop) ON CONFLICT DO NOTHING;
        ELSIF TG_TABLE_NAME = 'tunnels' THEN
            IF TG_OP <> 'INSERT' THEN
                UPDATE pop_usage SET tunnels = tunnels - 1, active = active - (OLD.remote IS NOT NULL)::int
                    WHERE pop = OLD.pop;
            END IF;
            IF TG_OP <> 'DELETE' THEN
                UPDATE pop_usage SET tunnels = tunnels + 1, active = active + (NEW.remote IS NOT NULL)::int
                    WHERE pop = NEW.pop;
            END IF;
        ELSE
            IF TG_OP <> 'INSERT' THEN
                UPDATE pop_usage SET units = units - (OLD.stop - OLD.start) WHERE pop = OLD.pop;
            END IF;
            IF TG_OP <> 'DELETE' THEN
                UPDATE pop_usage SET units = units + (NEW.stop - NEW.start) WHERE pop = NEW.pop;
            END IF;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER pop_usage_server AFTER INSERT ON server FOR EACH ROW EXECUTE FUNCTION sixbroker_usage();
    CREATE TRIGGER pop_usage_tunnels AFTER INSERT OR DELETE OR UPDATE OF pop, remote ON tunnels
        FOR EACH ROW EXECUTE FUNCTION sixbroker_usage();
    CREATE TRIGGER pop_usage_blocks AFTER INSERT OR DELETE OR UPDATE OF pop, start, stop ON blocks
        FOR EACH ROW EXECUTE FUNCTION sixbroker_usage();
    """),
]
SCHEMA_VERSION = len(MIGRATIONS)


def path_from_env(given=None):
    return given or os.environ.get(ENV_PATH) or DEFAULT_PATH


def pop_from_env(given=None):
    """The PoP a command acts as (--pop, else $SIXBROKER_POP, else DEFAULT_POP)."""
    pop = given or os.environ.get(ENV_POP) or DEFAULT_POP
    ok = 0 < len(pop) <= 32 and all(ch.isascii() and (ch.isalnum() or ch in "-_.") for ch in pop)
    if not ok:
        raise SixbrokerError("INVALID_POP", repr(pop))
    return pop


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Connection(sqlite3.Connection):
    """A connection that carries what could not be written (`notices`: [(code, text)]) to the caller."""

    def __init__(self, *args, **kwargs):
        sqlite3.Connection.__init__(self, *args, **kwargs)
        self.notices = []


def connect(path, create=True, pop=None):
    """An open, migrated database.  create=False: a missing or empty file is BROKER_NOT_INITIALISED (and
    stays as it was).  Created here: the file 0600 and its directory 0700 (it holds the homes' addresses).
    A postgresql:// URL: that database (pg.py), its schema made or migrated here likewise."""
    pop = pop_from_env(pop)
    if pg.is_url(path):
        return _connect_pg(path, create, False, pop)
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
    conn = _prepared(_open(path, path, False), path, prepare)
    conn.pop = pop
    return conn


def connect_readonly(path, pop=None, timeout=30):
    """The database opened for reading only (list, show, config, info, /metrics): never created, migrated
    or written, whatever its state.  Schemas older than this one are read as they are: every version has
    the server, tunnels and blocks tables that the views read.  timeout: seconds to wait for a lock
    (SQLite)."""
    pop = pop_from_env(pop)
    if pg.is_url(path):
        return _connect_pg(path, False, True, pop)
    if not os.path.exists(path):
        raise SixbrokerError("BROKER_NOT_INITIALISED", "no database at " + path)
    def prepare(conn):
        version = _version(conn)
        if version > SCHEMA_VERSION:
            raise SixbrokerError("DB_TOO_NEW", "schema version %d, this sixbroker knows up to %d"
                                 % (version, SCHEMA_VERSION))
        if version == 0:
            raise SixbrokerError("BROKER_NOT_INITIALISED", "the database at %s is empty" % path)
    conn = _prepared(_open("file:%s?mode=ro" % quote(os.path.abspath(path)), path, True, timeout), path, prepare)
    if _version(conn) < SCHEMA_VERSION:
        # an older schema is read through a migrated copy in memory: one set of queries, the file untouched
        try:
            mem = _open(":memory:", path, False)
            conn.backup(mem)
            mem.execute("PRAGMA foreign_keys = ON")
            migrate(mem)
        except sqlite3.DatabaseError as e:
            raise _db_error(e, path)
        finally:
            conn.close()
        conn = mem
    conn.pop = pop
    return conn


def _connect_pg(url, create, read_only, pop):
    conn = pg.Connection(url, read_only=read_only)
    conn.pop = pop
    try:
        version = _version(conn)
        if version > SCHEMA_VERSION:
            raise SixbrokerError("DB_TOO_NEW", "schema version %d, this sixbroker knows up to %d"
                                 % (version, SCHEMA_VERSION))
        if read_only and 0 < version < SCHEMA_VERSION:
            raise SixbrokerError("DB_TOO_OLD", "schema version %d, this sixbroker writes %d" % (version, SCHEMA_VERSION))
        if not create and (version == 0 or not has_table(conn, "server")
                           or conn.execute("SELECT 1 FROM server LIMIT 1").fetchone() is None):
            raise SixbrokerError("BROKER_NOT_INITIALISED", "the database at %s is empty" % pg.url_for_humans(url))
        if not read_only:
            before = _pg_objects(conn) if version == 0 else None
            migrate(conn)
            if before is not None:
                # what a refused first init takes away again (forget_created)
                conn.created = [o for o in _pg_objects(conn) if o not in before]
    except BaseException:
        conn.close()
        raise
    return conn


def _pg_objects(conn):
    """The tables and functions in the schema we work in, as (kind, name)."""
    return ([("TABLE", r[0]) for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1")]
            + [("FUNCTION", r[0]) for r in conn.execute(
                "SELECT proname FROM pg_proc WHERE pronamespace = current_schema()::regnamespace ORDER BY 1")])


def forget_created(conn):
    """A refused first init on PostgreSQL leaves the database as empty as it found it: what connect()
    made in it is dropped again (a SQLite one is a file, which the caller removes)."""
    created = getattr(conn, "created", None)
    if not created:
        return
    for kind, name in created:
        conn.execute('DROP %s IF EXISTS "%s" CASCADE' % (kind, name.replace('"', '""')))
    conn.created = []


def is_postgresql(conn):
    return getattr(conn, "dialect", "sqlite") == "postgresql"


def exists(path):
    """Whether there is a database to open (a PostgreSQL one always is: connect() tells whether it is empty)."""
    return pg.is_url(path) or os.path.exists(path)


def local_path(path):
    """Where this host keeps what belongs beside the database (the writer lock, the update service's TLS
    certificate): the SQLite file itself, or for PostgreSQL a name in $SIXBROKER_STATE_DIR (default the
    directory of DEFAULT_PATH): the kernel they guard is this host's, whatever database it follows."""
    if not pg.is_url(path):
        return path
    return os.path.join(os.environ.get(ENV_STATE_DIR) or os.path.dirname(DEFAULT_PATH), "postgresql")


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


def _open(target, path, uri, timeout=30):
    try:
        # isolation_level=None: the module's implicit transactions off; transaction() says BEGIN itself
        conn = sqlite3.connect(target, timeout=timeout, isolation_level=None, uri=uri, factory=Connection)
    except sqlite3.Error as e:
        raise _db_error(e, path)
    conn.row_factory = sqlite3.Row
    return conn


def _version(conn):
    if is_postgresql(conn):
        if not has_table(conn, "schema_version"):
            return 0
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        return row[0] if row else 0
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
    if is_postgresql(conn):
        return _migrate_pg(conn, version)
    # off for the migrations (a no-op inside a transaction, hence here): a table rebuilt (6) is dropped,
    # and a drop with foreign keys on deletes every row that refers to it; foreign_key_check proves
    # before each commit that nothing was left dangling
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        while version < SCHEMA_VERSION:
            with transaction(conn):
                # executescript would COMMIT on its own; the statements run one by one inside ours
                step = MIGRATIONS[version]
                for stmt in _statements(step.sqlite if isinstance(step, Dialects) else step):
                    conn.execute(stmt)
                bad = conn.execute("PRAGMA foreign_key_check").fetchall()
                if bad:
                    raise SixbrokerError("DB_ERROR", "migration %d leaves %d dangling references"
                                         % (version + 1, len(bad)))
                conn.execute("PRAGMA user_version = %d" % (version + 1))
            version += 1
    finally:
        conn.execute("PRAGMA foreign_keys = ON")


def _migrate_pg(conn, version):
    """PostgreSQL's DDL is transactional: each step, with its version, is one transaction, which the
    writers' advisory lock also keeps any other PoP's migration out of (it finds the version moved on)."""
    with transaction(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = _version(conn)
        while version < SCHEMA_VERSION:
            step = MIGRATIONS[version]
            # one multi-statement text (no parameters: the simple query protocol), $$ bodies and all
            conn.execute(step.postgresql if isinstance(step, Dialects) else step)
            version += 1
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))


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
    `sixbroker server add` at the same time allocate one after the other, never the same prefix.

    track: set conn.tracked to (generation before, generation after) once it commits: the writers being
    one at a time here, that is exactly what this change moved the desired state from and to, whatever
    other writers (another PoP's host, which holds no lock of this host's) commit before or after it.
    A one-tunnel apply may record only "after" as applied (reconcile.reconcile_change)."""

    def __init__(self, conn, track=False):
        self.conn = conn
        self.track = track

    def __enter__(self):
        if self.track:
            self.conn.tracked = None
        if is_postgresql(self.conn):
            self.conn.execute("BEGIN")
            try:
                self.conn.execute("SELECT pg_advisory_xact_lock(?)", (pg.WRITER_KEY,))
            except BaseException as e:
                self.__exit__(type(e), e, None)
                raise
        else:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                raise _read_only_error(e)
        if self.track:
            self.before = generation(self.conn)
        return self.conn

    def __exit__(self, typ, value, tb):
        after = generation(self.conn) if self.track and typ is None else None
        if is_postgresql(self.conn):
            self._exit_pg(typ, value)
        elif typ is None:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.OperationalError as e:
                raise _read_only_error(e)
        else:
            self._exit_sqlite(value)
        if after is not None:
            self.conn.tracked = (self.before, after)
        return False

    def _exit_sqlite(self, value):
        self.conn.execute("ROLLBACK")
        if isinstance(value, sqlite3.OperationalError) and _read_only(value):
            # SQLite takes the write lock of a read-only file and refuses only the first write
            raise SixbrokerError("DB_READ_ONLY", str(value))

    def _exit_pg(self, typ, value):
        _, read_only, _ = pg.errors()
        if typ is None:
            try:
                self.conn.execute("COMMIT")
            except read_only as e:
                raise SixbrokerError("DB_READ_ONLY", str(e).strip())
            return False
        if self.conn.in_transaction():
            try:
                self.conn.execute("ROLLBACK")
            except SixbrokerError:
                pass        # the connection is gone, and the transaction with it
        if isinstance(value, read_only):
            raise SixbrokerError("DB_READ_ONLY", str(value).strip())
        return False


def integrity_errors(conn):
    """The exception classes a refused constraint raises on conn (for an `except`)."""
    return pg.errors()[0] if is_postgresql(conn) else sqlite3.IntegrityError


def _read_only_error(e):
    return SixbrokerError("DB_READ_ONLY", str(e)) if _read_only(e) else e


# ---- reading ------------------------------------------------------------------------------------------

def server(conn, pop=None):
    """The server row of this PoP (conn.pop) or of `pop` as a dict, or BROKER_NOT_INITIALISED."""
    s = server_or_none(conn, pop)
    if s is None:
        if pop is None and conn.execute("SELECT 1 FROM server LIMIT 1").fetchone() is not None:
            raise SixbrokerError("BROKER_NOT_INITIALISED", "no PoP %r in this database (%s): `init --pop %s`"
                                 % (conn.pop, ", ".join(pops(conn)), conn.pop))
        raise SixbrokerError("BROKER_NOT_INITIALISED")
    return s


def set_server_ipv4(conn, public, local):
    with transaction(conn):
        conn.execute("UPDATE server SET public_ipv4 = ?, local_ipv4 = ?, updated = ? WHERE pop = ?",
                     (public, local, now(), conn.pop))


def tunnel_mode(server_row):
    """'per-tunnel' or 'shared' (a database from before schema 8, read and never migrated: per-tunnel)."""
    return server_row.get("tunnel_mode") or "per-tunnel"


def set_tunnel_mode(conn, mode):
    with transaction(conn):
        conn.execute("UPDATE server SET tunnel_mode = ?, updated = ? WHERE pop = ? AND tunnel_mode != ?",
                     (mode, now(), conn.pop, mode))


def server_or_none(conn, pop=None):
    row = conn.execute("SELECT * FROM server WHERE pop = ?", (pop or conn.pop,)).fetchone()
    return dict(row) if row is not None else None


def pops(conn):
    """The names of every PoP in the database."""
    return sorted(r[0] for r in conn.execute("SELECT pop FROM server"))     # byte order: see _tunnel_rows


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
    # by code point, as SQLite's BINARY collation orders: a PostgreSQL database's ORDER BY follows its
    # locale (en-US puts "a_b" before "B"), and `list` must not depend on how the database was created
    out.sort(key=lambda t: t["name"])
    return out


def tunnels(conn, pop=None):
    """This PoP's tunnels (or `pop`'s)."""
    return _tunnel_rows(conn, "WHERE pop = ?", (pop or conn.pop,))


def tunnel(conn, name):
    """A tunnel of any PoP (names are the database's, the update service's user names)."""
    rows = _tunnel_rows(conn, "WHERE name = ?", (name,))
    if not rows:
        raise SixbrokerError("TUNNEL_NOT_FOUND", name)
    return rows[0]


def usage(conn, pop=None):
    """(tunnels, active tunnels, units its blocks take) of this PoP or `pop`, as the triggers keep them."""
    pop = pop or conn.pop
    try:
        row = conn.execute("SELECT tunnels, active, units FROM pop_usage WHERE pop = ?", (pop,)).fetchone()
    except sqlite3.OperationalError:
        if has_table(conn, "pop_usage"):
            raise
        # a SQLite file from before schema 11, read without migrating it (PostgreSQL refuses that read)
        return tuple(conn.execute("SELECT " + _COUNTED.format(pop=":pop"), {"pop": pop}).fetchone())
    return tuple(row) if row else (0, 0, 0)


def tunnel_count(conn, active=False):
    """This PoP's tunnels, or (active) those with a remote: a pending one has no device and no plan."""
    return usage(conn)[1 if active else 0]


def tunnel_with_remote(conn, remote, pop=None):
    """The tunnel of this PoP (or `pop`) with that remote: sit keys a tunnel by its two ends, per host."""
    row = conn.execute("SELECT name FROM tunnels WHERE remote = ? AND pop = ?", (remote, pop or conn.pop)).fetchone()
    return row[0] if row else None


def has_tunnel(conn, name):
    return conn.execute("SELECT 1 FROM tunnels WHERE name = ?", (name,)).fetchone() is not None


def blocks(conn):
    return [dict(r) for r in conn.execute("SELECT * FROM blocks WHERE pop = ? ORDER BY start", (conn.pop,))]


# ---- what was applied ---------------------------------------------------------------------------------

def generation(conn):
    return conn.execute("SELECT n FROM generation WHERE id = 1").fetchone()[0]


def has_table(conn, name):
    """Whether a table exists: a read opens an older database as it is, never migrated."""
    if is_postgresql(conn):
        return conn.execute("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()[0]
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def applied(conn):
    if not has_table(conn, "applied"):
        return None
    row = conn.execute("SELECT * FROM applied WHERE pop = ?", (conn.pop,)).fetchone()
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
                     lambda: conn.execute("INSERT INTO applied (pop, generation, version, kernel, nft, foreign_tunnels, at)"
                                          " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (pop) DO UPDATE SET"
                                          " generation = excluded.generation, version = excluded.version,"
                                          " kernel = excluded.kernel, nft = excluded.nft,"
                                          " foreign_tunnels = excluded.foreign_tunnels, at = excluded.at",
                                          (conn.pop,) + new + (now(),)))


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


def store_key(conn, name, key_hash):
    """Tunnel name's update key (its hash) is now this one, inside the caller's transaction."""
    conn.execute("INSERT INTO update_keys (tunnel, hash, created) VALUES (?, ?, ?) ON CONFLICT (tunnel)"
                 " DO UPDATE SET hash = excluded.hash, created = excluded.created", (name, key_hash, now()))


def pop_cert(conn, pop):
    """{"fp", "cert"} (cert only when self-signed) that PoP `pop` last published, or None."""
    if not has_table(conn, "pop_certs"):
        return None
    row = conn.execute("SELECT fingerprint, cert FROM pop_certs WHERE pop = ?", (pop,)).fetchone()
    if row is None:
        return None
    return dict([("fp", row[0])] + ([("cert", row[1])] if row[1] else []))


def set_pop_cert(conn, fp, cert):
    """This PoP's certificate as published (tls.publish); written only when it differs."""
    if pop_cert(conn, conn.pop) == dict([("fp", fp)] + ([("cert", cert)] if cert else [])):
        return False
    with transaction(conn):
        conn.execute("INSERT INTO pop_certs (pop, fingerprint, cert, updated) VALUES (?, ?, ?, ?) ON CONFLICT (pop)"
                     " DO UPDATE SET fingerprint = excluded.fingerprint, cert = excluded.cert, updated = excluded.updated",
                     (conn.pop, fp, cert, now()))
    return True


def record_apply_run(conn, command, seconds, result, failed=0, code=None):
    """The last apply `command` made on this PoP: for /metrics.  Best effort: a database that cannot be
    written (an apply on a read-only file system, which must still work) keeps the older record, whose
    timestamp says how old it is; nothing is said about it, the apply's own record speaks for that."""
    try:
        with transaction(conn):
            conn.execute("INSERT INTO apply_runs (pop, command, at, seconds, result, failed, code)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (pop, command) DO UPDATE SET at = excluded.at,"
                         " seconds = excluded.seconds, result = excluded.result, failed = excluded.failed,"
                         " code = excluded.code", (conn.pop, command, now(), seconds, result, failed, code))
    except SixbrokerError as e:
        if e.code not in ("DB_READ_ONLY", "DB_UNAVAILABLE"):
            raise


def apply_runs(conn):
    """[{command, at, seconds, result, failed, code}] of this PoP, by command (none before schema 10)."""
    if not has_table(conn, "apply_runs"):
        return []
    return [dict(r) for r in conn.execute("SELECT command, at, seconds, result, failed, code FROM apply_runs"
                                          " WHERE pop = ? ORDER BY command", (conn.pop,))]


def forget_applied(conn):
    with transaction(conn):
        conn.execute("DELETE FROM applied WHERE pop = ?", (conn.pop,))


def faults(conn):
    """{tunnel: {"code", "message", "at"}} of the tunnels the last apply could not bring in line (none
    from a database older than the table: a read does not migrate)."""
    if not has_table(conn, "faults"):
        return {}
    return dict((r["tunnel"], {"code": r["code"], "message": r["message"], "at": r["at"]})
                # from the faults (few) to their tunnels, never from every tunnel of the PoP to its fault
                for r in conn.execute("SELECT f.* FROM faults f WHERE EXISTS (SELECT 1 FROM tunnels t"
                                      " WHERE t.name = f.tunnel AND t.pop = ?) ORDER BY f.tunnel", (conn.pop,)))


def _existing(conn, names):
    """The set of those names that are tunnels of this PoP: a lookup each while they are few (one tunnel's
    change), one read of the PoP's names when they are many."""
    if len(names) > 100:
        return set(r[0] for r in conn.execute("SELECT name FROM tunnels WHERE pop = ?", (conn.pop,)))
    return set(n for n in names
               if conn.execute("SELECT 1 FROM tunnels WHERE name = ? AND pop = ?", (n, conn.pop)).fetchone())


def record_faults(conn, failed, names=None):
    """Replace what is recorded of the tunnels `names` (all when None) with failed: {tunnel: (code,
    message)}.  Nothing is written when that is what the table holds already (an apply with nothing to
    do runs on a read-only file system); one that cannot be written is a notice, as in record_applied."""
    old = dict((t, (f["code"], f["message"])) for t, f in faults(conn).items())
    keep = {} if names is None else dict((t, f) for t, f in old.items() if t not in names)
    want = dict(keep)
    want.update((n, tuple(f)) for n, f in failed.items())
    tunnels = _existing(conn, list(want))
    if old == dict((n, f) for n, f in want.items() if n in tunnels):
        return
    stamp = now()

    def write():
        if names is None:
            conn.execute("DELETE FROM faults WHERE tunnel IN (SELECT name FROM tunnels WHERE pop = ?)", (conn.pop,))
        else:
            conn.executemany("DELETE FROM faults WHERE tunnel = ?", [(n,) for n in names])
        conn.executemany("INSERT INTO faults (tunnel, code, message, at) SELECT ?, ?, ?, ?"
                         " WHERE EXISTS (SELECT 1 FROM tunnels WHERE name = ?)",
                         [(n, c, m, stamp, n) for n, (c, m) in sorted(failed.items())])
    _write_or_notice(conn, "the tunnels that failed could not be recorded (%s): `list` may show an older state",
                     write)