"""The broker suites' database: each test that takes `db_target` (or `fresh_db`) runs twice, on SQLite and
on a new database of the session's throw-away PostgreSQL (tests/pgserver.py), a copy of the broker's
schema migrated once per session (pg_broker_url; the migration of an empty PostgreSQL database has tests
of its own, on pg_url)."""

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    """Which database the test runs on ("sqlite" or "postgresql"); test_broker.ONE_BACKEND pins it."""
    return request.param


@pytest.fixture
def db_target(backend, tmp_path, monkeypatch, request):
    """What --db gets: a SQLite path under tmp_path/state, or a postgresql:// URL, whose host-local files
    (the writer lock, the TLS certificate) go to tmp_path/state through SIXBROKER_STATE_DIR."""
    state = tmp_path / "state"
    if backend == "sqlite":
        return str(state / "broker.db")
    url = request.getfixturevalue("pg_broker_url")
    state.mkdir(mode=0o700, exist_ok=True)
    monkeypatch.setenv("SIXBROKER_STATE_DIR", str(state))
    return url


class FreshDatabases:
    """new() -> an open connection to a new, migrated, empty database of the backend: SQLite in memory,
    or a PostgreSQL copy of the schema template (dropped again by close_all)."""

    def __init__(self, backend, pg_server=None, template=None):
        self.backend = backend
        self.pg_server = pg_server
        self.template = template
        self.made = []

    def new(self):
        from sixbroker.broker import db
        if self.backend == "sqlite":
            return db.connect(":memory:")
        url = self.pg_server.create_db(self.template)
        conn = db.connect(url)
        self.made.append((url, conn))
        return conn

    def close_all(self):
        while self.made:
            url, conn = self.made.pop()
            conn.close()
            self.pg_server.drop_db(url)


@pytest.fixture
def fresh_db(backend, request):
    """fresh_db() -> a connection to a new, empty broker database (service-level tests, no CLI)."""
    if backend == "sqlite":
        dbs = FreshDatabases(backend)
    else:
        dbs = FreshDatabases(backend, request.getfixturevalue("pg_server"), request.getfixturevalue("pg_template"))
    yield dbs.new
    dbs.close_all()


def assert_usage_counted(conn):
    """Every PoP's row of the counts the triggers keep (db.usage) is what counting the rows gives."""
    from sixbroker.broker import db
    for pop in db.pops(conn):
        counted = conn.execute("SELECT " + db._COUNTED.format(pop=":pop"), {"pop": pop}).fetchone()
        assert db.usage(conn, pop) == tuple(counted), pop
