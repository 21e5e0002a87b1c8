"""The throw-away PostgreSQL the PostgreSQL tests run on (tests/pgserver.py): it serves, and every test gets its own database."""

import psycopg


def test_fresh_database_per_test(pg_url, pg_server):
    with psycopg.connect(pg_url, autocommit=True) as c:
        assert c.execute("SELECT current_database()").fetchone()[0] == pg_url.rsplit("/", 1)[1]
        assert c.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0
        c.execute("CREATE TABLE t (x int)")
    other = pg_server.create_db()
    with psycopg.connect(other) as c:
        assert c.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0


def test_restart_keeps_data(pg_url, pg_server):
    """What the fault tests rely on: a stopped server refuses connections, and comes back with its data."""
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute("CREATE TABLE t (x int)")
        c.execute("INSERT INTO t VALUES (7)")
    pg_server.stop()
    try:
        psycopg.connect(pg_url, connect_timeout=2).close()
        raise AssertionError("connected to a stopped server")
    except psycopg.OperationalError:
        pass
    pg_server.start()
    with psycopg.connect(pg_url) as c:
        assert c.execute("SELECT x FROM t").fetchall() == [(7,)]
