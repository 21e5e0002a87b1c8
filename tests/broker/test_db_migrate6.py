"""Migration 6 on a real version-5 database: `tunnels` rebuilt (remote nullable), its rows, blocks and faults kept.

The version-5 file is made the way a sixbroker of schema 5 made it: MIGRATIONS[:5] on an empty file, then
the rows of a broker with tunnels (made by today's CLI and copied over, so they are rows a broker writes).
test_broker.py's _downgrade only drops what came later and keeps the rebuilt table; this one has the old
`remote NOT NULL` table, whose rebuild drops a table that blocks and faults refer to with ON DELETE CASCADE.
"""
import sqlite3

import pytest

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
        new.executescript(script)
    new.execute("BEGIN")
    for table in TABLES:
        cols = [r[1] for r in new.execute("PRAGMA table_info(%s)" % table)]     # schema 5's columns only
        for row in _rows(old, table, cols):
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
    assert c.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION >= 6
    sql = c.execute("SELECT sql FROM sqlite_master WHERE name = 'tunnels'").fetchone()[0]
    assert "remote TEXT UNIQUE" in sql and "NOT NULL UNIQUE,\n        transfer_index" not in sql
    for t in TABLES:
        assert _rows(c, t, columns5[t]) == before[t], t
    assert c.execute("SELECT n FROM generation").fetchone()[0] == generation
    assert c.execute("PRAGMA foreign_key_check").fetchall() == []
    # the rebuilt table has its generation triggers again, and its cascades still reach blocks and faults
    c.execute("PRAGMA foreign_keys = ON")
    c.execute("UPDATE tunnels SET mtu = 1400 WHERE name = 'away'")
    assert c.execute("SELECT n FROM generation").fetchone()[0] == generation + 1
    c.execute("DELETE FROM tunnels WHERE name = 'home'")
    assert c.execute("SELECT count(*) FROM faults").fetchone()[0] == 0
    assert c.execute("SELECT count(*) FROM blocks WHERE tunnel = 'home'").fetchone()[0] == 0
    c.close()
