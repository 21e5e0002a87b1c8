"""Issue 14's Must show for the plain-Linux router, on the real kernel: its home's IPv4 address changes and
the LAN host's IPv6 works again with no command typed (tests/e2e/follow_world.py builds the world).

(a) the home router's WAN address is replaced in place (no link event): the update loop sees the new
    address, sets the tunnel up on it and tells `sixbroker server serve`, which re-keys the VPS's end;
(c) after `sixbroker router down` a person's hold stands: the WAN address replaced again sets nothing up,
    until `sixbroker router up`, after which the loop tells the broker at once;
(b) behind a NAT box whose public address changes (invisible from the home): the loop's timer sends, the
    broker takes the request's new source address, within the updater's interval (60 s, the least).
Each measured from the change to the LAN host's first ping answered by the VPS across the tunnel, printed.
"""

import time

import pytest

import topo
from follow_world import Home, sixbroker
from sixbroker.linux import kernel_status
from sixbroker.linuxrouter import router as standalone

NEW, NEW2 = "198.51.100.21", "198.51.100.22"
PUB1, PUB2 = "192.0.2.20", "192.0.2.21"


@pytest.fixture
def home(clean, tmp_path):
    pytest.importorskip("uvicorn")
    h = Home(tmp_path, interval=60)
    yield h
    h.close()


def sit_local():
    [dev] = kernel_status.status("home", scope=standalone.SCOPE)["devices"]
    return dev["local"]


def test_a_replaced_wan_address_and_a_nat_boxs_new_address_are_followed(home, capsys):
    # the tunnel works, the loop's first update said nochg (up's own update already had it)
    t = time.monotonic()
    home.first_ping(t, timeout=60)
    assert home.remote() == topo.Y and sit_local() == topo.Y

    # (a) the WAN address replaced: no command typed
    t0 = home.replace_wan(NEW)
    took = home.first_ping(t0, timeout=60)
    assert sit_local() == NEW and home.remote() == NEW
    # the broker re-keys before it answers, so the first ping can beat the loop's log line of that answer
    good = "wan6: update: good %s (ok, next in 60 s)" % NEW
    deadline = time.monotonic() + 20
    loop = open(home.loop_log).read()
    while good not in loop and time.monotonic() < deadline:
        time.sleep(0.2)
        loop = open(home.loop_log).read()
    assert "wan6: local address %s -> %s: setting the tunnel up again" % (topo.Y, NEW) in loop
    assert good in loop
    with capsys.disabled():
        print("\nrouter follow: WAN address replaced -> IPv6 through the tunnel again: %.2f s" % took)
        print("".join("    " + ln + "\n" for ln in loop.splitlines()))

    # (c) held down by a person: a WAN change is not followed until `up`
    sixbroker("router", "down", "--netns", "home")
    home.replace_wan(NEW2)
    time.sleep(4)                                       # four of the loop's looks
    assert kernel_status.status("home", scope=standalone.SCOPE)["devices"] == []
    loop = open(home.loop_log).read()
    assert "held down" in loop and "-> %s" % NEW2 not in loop
    t0 = time.monotonic()
    sixbroker("router", "up", "--config", home.config, "--netns", "home")
    home.first_ping(t0, timeout=60)
    assert sit_local() == NEW2 and home.remote() == NEW2

    # (b) behind a NAT box: the router's address becomes private (a change the loop sees: good, from the
    # source), then the NAT box's public address changes (one it cannot see: the timer's)
    home.behind_nat(PUB1)
    home.first_ping(time.monotonic(), timeout=60)
    assert home.remote() == PUB1 and sit_local() == "10.9.0.2"
    t0 = home.nat_change(PUB2)
    took = home.first_ping(t0, timeout=120)
    assert home.remote() == PUB2
    assert took <= 60 + 15, took        # the interval, and the time one update and one ping take under TCG
    with capsys.disabled():
        print("router follow: NAT box's public address changed -> IPv6 again: %.2f s (interval 60 s)" % took)
