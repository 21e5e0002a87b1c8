"""The broker suites' database: each test that takes `db_target` runs twice, on a SQLite file and on a
new database of the session's throw-away PostgreSQL (tests/pgserver.py), a copy of the broker's schema
migrated once per session (pg_broker_url; the migration of an empty PostgreSQL database has tests of
its own, on pg_url)."""

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request, tmp_path, monkeypatch):
    """What --db gets: a SQLite path under tmp_path/state, or a postgresql:// URL, whose host-local files
    (the writer lock, the TLS certificate) go to tmp_path/state through SIXBROKER_STATE_DIR."""
    state = tmp_path / "state"
    if request.param == "sqlite":
        return str(state / "broker.db")
    url = request.getfixturevalue("pg_broker_url")
    state.mkdir(mode=0o700, exist_ok=True)
    monkeypatch.setenv("SIXBROKER_STATE_DIR", str(state))
    return url
