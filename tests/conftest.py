"""Settings for every pytest suite here (the host suites by room, tests/e2e; tests/core runs under tests/mprun.py too).

Hypothesis draws new examples on every run, which is how it found the form/validator disagreements so
far.  CI (CI=true, the run a submission lands by) draws the same examples every time instead: a new draw
that finds a new disagreement should become a written case and a fix, not a landing that fails by chance.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")


# ---- a throw-away PostgreSQL (tests/pgserver.py): one server for the session, a new database per test ----

import pytest


@pytest.fixture(scope="session")
def pg_server():
    import pgserver
    why = pgserver.available()
    if why:
        pytest.skip(why)
    server = pgserver.Server().start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_url(pg_server):
    """postgresql://... of a new, empty database on the session's server."""
    return pg_server.create_db()
