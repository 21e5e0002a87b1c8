"""Fixtures of the real-kernel suite.  It needs a kernel with sit: run it in the QEMU guest with
`make test-e2e` (one boot for the whole session); elsewhere every test is skipped, saying why."""

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


@pytest.fixture
def clean(world):
    """Each test starts from the seed's bare topology: nothing of ours, nothing foreign left over."""
    from sixbroker.linux import apply_kernel
    from sixbroker.linuxrouter import router as standalone
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


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("e2e: whole session %.1f s" % (time.time() - _T0))
