"""Settings for every pytest suite here (the host suites by room, tests/e2e; tests/core runs under tests/mprun.py too).

Hypothesis draws new examples on every run, which is how it found the form/validator disagreements so
far.  CI (CI=true, the run a submission lands by) draws the same examples every time instead: a new draw
that finds a new disagreement should become a written case and a fix, not a landing that fails by chance.
"""

import os


def pytest_configure(config):
    # The e2e sessions in the QEMU guest run with `-p no:hypothesispytest`: none of them draws examples, and
    # importing Hypothesis there (its modules assertion-rewritten as a plugin's) is ~20 s under TCG.
    if not config.pluginmanager.has_plugin("hypothesispytest"):
        return
    from hypothesis import settings

    settings.register_profile("ci", derandomize=True)
    if os.environ.get("CI") == "true":
        settings.load_profile("ci")


# ---- a throw-away PostgreSQL (tests/pgserver.py): one server for the session, a new database per test ----
# (kept in memory, each database dropped after its test; the broker's tests copy one migrated template)

import pytest


@pytest.fixture(scope="session")
def pg_server():
    import pgserver
    why = pgserver.available()
    if why:
        pytest.skip(why)
    # (a generous start timeout: the e2e suites start it in the QEMU guest, 10-20x slower)
    server = pgserver.Server(base=pgserver.memory_base()).start(timeout=240)
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_url(pg_server):
    """postgresql://... of a new, empty database on the session's server."""
    url = pg_server.create_db()
    yield url
    pg_server.drop_db(url)


@pytest.fixture(scope="session")
def pg_template(pg_server):
    """A database with the broker's schema and nothing in it, migrated once per session."""
    from sixbroker.broker import db
    return pg_server.make_template("sixbroker_schema", lambda url: db.connect(url).close())


@pytest.fixture
def pg_broker_url(pg_server, pg_template):
    """postgresql://... of a new database with the broker's schema (as the first connect leaves it, so
    what the tests do starts where `init` on an empty one would continue); pg_url for an empty one."""
    url = pg_server.create_db(pg_template)
    yield url
    pg_server.drop_db(url)
