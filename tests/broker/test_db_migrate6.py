"""Migration 6 on a real version-5 database: `tunnels` rebuilt (remote nullable), its rows, blocks and faults kept.

SQLite's half is about the file: its rebuild of a table that others refer to (PRAGMA table_info,
foreign_key_check, the triggers made again), so it runs on SQLite alone; PostgreSQL alters the table in
place, and its version-5 database migrating with its rows is the last test here.

The version-5 file is made the way a sixbroker of schema 5 made it: MIGRATIONS[:5] on an empty file, then
the rows of a broker with tunnels (made by today's CLI and copied over, so they are rows a broker writes).
test_broker.py's _downgrade only drops what came later and keeps the rebuilt table; this one has the old
`remote NOT NULL` table, whose rebuild drops a table that blocks and faults refer to with ON DELETE CASCADE.
"""
import sqlite3

import pytest

from conftest import assert_usage_counted
from sixbroker.broker import db, reconcile
from test_broker import Broker, FakeApplier, PREFIX, X

TABLES = ("server", "tunnels", "blocks", "faults", "applied")


def _rows(c, table, columns=None):
    cols = columns or [r[1] for r in c.execute("PRAGMA table_info(%s)" % table)]
    return [tuple(r) for r in c.execute("SELECT %s FROM %s ORDER BY 1" % (", ".join(cols), table))]


def _version5(src, dst):
    """dst: a schema-5 database holding src's rows (src at schema 6); its generation number."""
    old = sqlite3.connect(src)
    new = sqlite3.connect(dst, isolation_level=None)
    for script in db.MIGRATIONS[:5]:
        new.executescript(script.sqlite if isinstance(script, db.Dialects) else script)
    new.execute("BEGIN")
    for table in TABLES:
        cols = [r[1] for r in new.execute("PRAGMA table_info(%s)" % table)]     # schema 5's columns only
        have = [r[1] for r in old.execute("PRAGMA table_info(%s)" % table)]
        # applied's one row was id 1 before PoPs (schema 7 keys it by pop)
        for row in _rows(old, table, [c if c in have else "1 AS " + c for c in cols]):
            new.execute("INSERT INTO %s (%s) VALUES (%s)" % (table, ", ".join(cols), ", ".join("?" * len(cols))), row)
    # a fault, as apply records one for a tunnel it could not bring in line
    new.execute("INSERT INTO faults (tunnel, code, message, at) VALUES ('home', 'SIT_PAIR_IN_USE', 'x', 'now')")
    # the inserts above moved the generation by their triggers: set one that the migration must keep, and
    # that no count of trigger firings during it would land on by chance
    generation = old.execute("SELECT n FROM generation").fetchone()[0] + 1000
    new.execute("UPDATE generation SET n = ?", (generation,))
    new.execute("COMMIT")
    new.execute("PRAGMA user_version = 5")
    old.close()
    new.close()
    return generation


@pytest.fixture
def broker(tmp_path, capsys):
    applier = FakeApplier()
    reconcile.APPLIER = applier
    b = Broker(str(tmp_path / "now" / "broker.db"), capsys, applier)
    yield b
    reconcile.APPLIER = None


def test_a_version_5_database_migrates_with_its_rows_and_generation(broker, tmp_path):
    broker.ok("init", "--prefix", PREFIX, "--public-ipv4", X)
    broker.ok("add", "home", "--remote", "198.51.100.20")
    broker.ok("add", "away", "--remote", "198.51.100.30", "--routed-prefix-length", "60")
    path = str(tmp_path / "broker5.db")
    generation = _version5(broker.path, path)

    c = sqlite3.connect(path)
    assert "remote TEXT NOT NULL UNIQUE" in c.execute("SELECT sql FROM sqlite_master WHERE name = 'tunnels'").fetchone()[0]
    columns5 = {t: [r[1] for r in c.execute("PRAGMA table_info(%s)" % t)] for t in TABLES}
    before = {t: _rows(c, t) for t in TABLES}
    assert len(before["tunnels"]) == 2 and len(before["faults"]) == 1
    assert len([b for b in before["blocks"] if b[3] is not None]) == 2      # the routed blocks, by tunnel
    c.close()

    conn = db.connect(path, create=False)       # a writer: migrates
    conn.close()

    c = sqlite3.connect(path)
    assert c.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION >= 7
    sql = c.execute("SELECT sql FROM sqlite_master WHERE name = 'tunnels'").fetchone()[0]
    assert "remote TEXT," in sql and "NOT NULL UNIQUE,\n        transfer_index" not in sql
    for t in TABLES:
        now = [r[1] for r in c.execute("PRAGMA table_info(%s)" % t)]
        kept = [i for i, col in enumerate(columns5[t]) if col in now]        # (7 dropped applied's id)
        assert _rows(c, t, [columns5[t][i] for i in kept]) == [tuple(r[i] for i in kept) for r in before[t]], t
    # and every row of a broker from before PoPs is the PoP main's
    for t in ("server", "tunnels", "blocks", "applied"):
        assert set(r[0] for r in c.execute("SELECT pop FROM %s" % t)) == {"main"}, t
    assert c.execute("SELECT n FROM generation").fetchone()[0] == generation
    assert c.execute("PRAGMA foreign_key_check").fetchall() == []
    # the rebuilt table has its generation triggers again, and its cascades still reach blocks and faults
    c.execute("PRAGMA foreign_keys = ON")
    c.execute("UPDATE tunnels SET mtu = 1400 WHERE name = 'away'")
    assert c.execute("SELECT n FROM generation").fetchone()[0] == generation + 1
    c.execute("DELETE FROM tunnels WHERE name = 'home'")
    assert c.execute("SELECT count(*) FROM faults").fetchone()[0] == 0
    assert c.execute("SELECT count(*) FROM blocks WHERE tunnel = 'home'").fetchone()[0] == 0
    c.commit()
    c.close()
    # the counts the allocator reads were made from the rows that were there, and follow what came after
    conn = db.connect(path, create=False)
    try:
        assert db.usage(conn)[:2] == (1, 1)         # away, after home was deleted by hand
        assert_usage_counted(conn)
    finally:
        conn.close()


def test_a_version_5_postgresql_database_migrates_with_its_rows(pg_url, monkeypatch):
    """Schema 5 on PostgreSQL with a broker's rows and a fault, then today's connect: the rows, the fault
    and the generation kept, `remote` nullable (a pending tunnel fits), the cascades still reach blocks
    and faults, and the generation triggers still fire."""
    monkeypatch.setattr(db, "SCHEMA_VERSION", 5)
    conn = db.connect(pg_url)
    stamp = db.now()
    with db.transaction(conn):
        conn.execute("INSERT INTO server (id, prefix, transfer_prefix, public_ipv4, local_ipv4, created, updated)"
                     " VALUES (1, ?, '2001:db8:5b00::/64', ?, ?, ?, ?)", (PREFIX, X, X, stamp, stamp))
        conn.execute("INSERT INTO blocks (start, stop, length, tunnel, kind) VALUES (0, 1, 64, NULL, 'transfer')")
        for i, name in enumerate(("home", "away"), 1):
            conn.execute("INSERT INTO tunnels (name, device, remote, transfer_index, mtu, ttl, created, updated)"
                         " VALUES (?, ?, ?, ?, 1480, 64, ?, ?)", (name, "sbs-" + name, "198.51.100.%d" % i, i,
                                                                  stamp, stamp))
            conn.execute("INSERT INTO blocks (start, stop, length, tunnel, kind) VALUES (?, ?, 64, ?, 'routed')",
                         (i, i + 1, name))
        conn.execute("INSERT INTO faults (tunnel, code, message, at) VALUES ('home', 'SIT_PAIR_IN_USE', 'x', 'now')")
        conn.execute("UPDATE generation SET n = 1000")
    with pytest.raises(db.integrity_errors(conn)):      # schema 5: every tunnel has its remote
        with db.transaction(conn):
            conn.execute("INSERT INTO tunnels (name, device, remote, transfer_index, mtu, ttl, created, updated)"
                         " VALUES ('later', 'sbs-later', NULL, 9, 1480, 64, ?, ?)", (stamp, stamp))
    conn.close()
    monkeypatch.undo()

    conn = db.connect(pg_url, create=False)
    try:
        assert db._version(conn) == db.SCHEMA_VERSION and db.generation(conn) == 1000
        assert db.usage(conn)[:2] == (2, 2)
        assert_usage_counted(conn)
        assert [(t["name"], t["remote"], t["blocks"]) for t in db.tunnels(conn)] == [
            ("away", "198.51.100.2", [(2, 64)]), ("home", "198.51.100.1", [(1, 64)])]
        assert list(db.faults(conn)) == ["home"]
        with db.transaction(conn):
            conn.execute("INSERT INTO tunnels (name, pop, device, remote, transfer_index, mtu, ttl, created, updated)"
                         " VALUES ('later', 'main', 'sbs-later', NULL, 9, 1480, 64, ?, ?)", (stamp, stamp))
        assert db.generation(conn) == 1001
        with db.transaction(conn):
            conn.execute("DELETE FROM tunnels WHERE name = 'home'")
        assert db.faults(conn) == {} and [b["tunnel"] for b in db.blocks(conn)] == [None, "away"]
    finally:
        conn.close()
