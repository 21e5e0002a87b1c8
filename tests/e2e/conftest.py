"""Fixtures of the real-kernel suite.  It needs a kernel with sit: run it in the QEMU guest with
`make test-e2e` (one boot for the whole session); elsewhere every test is skipped, saying why."""

import os
import time

import pytest

import lab_world
import topo

_T0 = time.time()


@pytest.fixture(scope="session")
def world():
    why = lab_world.sit_missing()
    if why:
        pytest.skip(why + ": run `make test-e2e`, which boots a kernel that has sit")
    topo.build()
    yield topo
    topo.teardown()


# namespaces some suites add beside topo's (test_broker.py's homes, test_broker_pops.py's second VPS)
EXTRA_NAMESPACES = ("home2", "home3", "vps2")


@pytest.fixture
def clean(world):
    """Each test starts from the seed's bare topology: nothing of ours, nothing foreign left over."""
    from sixbroker.linux import apply_kernel
    from sixbroker.linuxrouter import router as standalone
    for ns in topo.NAMESPACES + EXTRA_NAMESPACES:
        topo.kill_all(ns)
    for ns, foreign in (("vps", "he-vps"), ("home", "he-ipv6")):
        apply_kernel.remove_all(ns, scope="broker")
        apply_kernel.remove_all(ns, scope=standalone.SCOPE, lan=True)
        if foreign in topo.link_names(ns):
            topo.ip(ns, "link", "del", foreign)
        # the test namespaces' tables are all the tests' own: ours, and the foreign ones they made
        drop = ["delete " + t.strip() for t in topo.nft(ns, "list", "tables").stdout.splitlines() if t.strip()]
        if drop:
            topo.nft(ns, "-f", "-", stdin="\n".join(drop) + "\n")
    return world


# The broker suites' database: SQLite files, or with SIXBROKER_E2E_DB=postgresql (`make test-e2e-pg`) the
# same suites with every broker on a database of one throw-away PostgreSQL started in the guest from the
# host's binaries (tests/pgserver.py, the pg_server fixture of tests/conftest.py).
E2E_DB = os.environ.get("SIXBROKER_E2E_DB") or "sqlite"


class BrokerDatabases:
    """new(tmp): what a broker's --db gets, a SQLite file in tmp or a new PostgreSQL database (whose
    host-local files, the writer lock and the TLS certificate, go to the session's SIXBROKER_STATE_DIR)."""

    def __init__(self, pg_server=None):
        self.pg_server = pg_server
        self.open = []

    def new(self, tmp, name="broker.db"):
        if self.pg_server is None:
            return str(tmp / name)
        url = self.pg_server.create_db()
        self.open.append(url)
        return url

    def drop_since(self, n):
        while len(self.open) > n:
            self.pg_server.drop_db(self.open.pop())


@pytest.fixture(scope="session")
def broker_dbs(request, tmp_path_factory):
    if E2E_DB == "sqlite":
        return BrokerDatabases()
    if E2E_DB != "postgresql":
        pytest.fail("SIXBROKER_E2E_DB=%s: sqlite or postgresql" % E2E_DB)
    import pgserver
    why = pgserver.available()
    if why:
        pytest.fail("SIXBROKER_E2E_DB=postgresql: " + why)      # asked for: no silent skip
    os.environ["SIXBROKER_STATE_DIR"] = str(tmp_path_factory.mktemp("broker-state"))
    return BrokerDatabases(request.getfixturevalue("pg_server"))


@pytest.fixture
def broker_db(broker_dbs, tmp_path):
    """A broker database for this test (dropped after it); broker_dbs.new for a wider scope."""
    n = len(broker_dbs.open)
    yield broker_dbs.new(tmp_path)
    broker_dbs.drop_since(n)


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("e2e: whole session %.1f s (broker database: %s)" % (time.time() - _T0, E2E_DB))
