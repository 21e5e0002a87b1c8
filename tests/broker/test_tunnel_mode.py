"""The tunnel mode in the database and on the command line (issue 15), with the fake applier: chosen at
init, shown by info, changed by apply --tunnel-mode, handed to the appliers in the state.  The modes
themselves on a real kernel: tests/e2e/test_broker_shared.py and the parametrised tests/e2e/test_broker.py."""

from sixbroker.broker import service
from test_broker import Y, broker  # noqa: F401  (broker is a fixture)


def test_a_new_broker_takes_the_default_mode_and_says_so(broker):
    broker.init()
    assert broker.json("info")["server"]["tunnel_mode"] == service.DEFAULT_TUNNEL_MODE
    assert "tunnel mode     " in broker.ok("info")
    assert broker.applier.kernel_state["tunnel_mode"] == service.DEFAULT_TUNNEL_MODE


def test_init_chooses_shared_and_apply_moves_the_tunnels_back(broker):
    broker.init("--tunnel-mode", "shared")
    broker.ok("add", "home", "--remote", Y)
    assert broker.json("info")["server"]["tunnel_mode"] == "shared"
    assert "shared (one sit device, sbs-6in4, for every tunnel)" in broker.ok("info")
    assert broker.applier.kernel_state["tunnel_mode"] == "shared"
    assert broker.json("show", "home")["tunnel"]["device"] == service.SHARED_DEVICE
    body = broker.json("apply", "--tunnel-mode", "per-tunnel")
    assert body["tunnel_mode"] == "per-tunnel" and body["applied"] is True
    assert broker.applier.kernel_state["tunnel_mode"] == "per-tunnel"
    assert broker.json("show", "home")["tunnel"]["device"] == "sbs-home"
    # a later init without the option keeps the mode; with it, moves the tunnels as apply does
    broker.init()
    assert broker.json("info")["server"]["tunnel_mode"] == "per-tunnel"
    broker.init("--tunnel-mode", "shared")
    assert broker.json("info")["server"]["tunnel_mode"] == "shared"


def test_a_mode_that_does_not_exist_is_a_usage_error_and_changes_nothing(broker):
    broker.init()
    before = broker.dump()
    rc, out, err = broker.run("apply", "--tunnel-mode", "bridge")
    assert rc == 2 and "error USAGE" in err and broker.dump() == before
