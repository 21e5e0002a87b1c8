"""`sixbroker router`'s configuration file, read as the standalone router reads it (no kernel needed)."""

import os

import pytest

from sixbroker.linuxrouter import router as standalone
from sixbroker.core.errors import SixbrokerError


def write(tmp_path, text):
    path = os.path.join(str(tmp_path), "router")
    with open(path, "w") as f:
        f.write(text)
    return path


def test_sections_options_and_lan_devices(tmp_path):
    path = write(tmp_path, """
# two tunnels; the second is switched off
config tunnel 'wan6'
\toption peeraddr '203.0.113.10'
\toption ip6addr '2001:db8:5b10::b/127'
\tlist ip6prefix '2001:db8:5b20::/60'
\tlist ip6prefix '2001:db8:5b11::/64'
\tlist lan 'br-lan'
\tlist lan 'br-guest'
\toption tunlink 'eth0'

config tunnel 'spare'
\toption disabled '1'
\toption peeraddr '203.0.113.11'
\toption ip6addr '2001:db8:5b30::b/127'
""")
    [(name, o, lan)] = standalone.read_config(path)
    assert (name, lan, o.tunlink, str(o.ip6gw)) == ("wan6", ["br-lan", "br-guest"], "eth0", "2001:db8:5b10::a")
    # LAN device i gets the i-th /64 of each prefix: a /60 has 16, a /64 only one
    assert standalone.lan_addresses(o, lan) == [
        {"device": "br-lan", "address": "2001:db8:5b20::1", "length": 64},
        {"device": "br-lan", "address": "2001:db8:5b11::1", "length": 64},
        {"device": "br-guest", "address": "2001:db8:5b20:1::1", "length": 64},
    ]


def test_a_single_lan_as_an_option(tmp_path):
    path = write(tmp_path, "config tunnel 'wan6'\n\toption peeraddr '203.0.113.10'\n"
                           "\toption ip6addr '2001:db8:5b10::b/127'\n\toption lan 'br-lan'\n")
    [(_, o, lan)] = standalone.read_config(path)
    assert lan == ["br-lan"] and standalone.lan_addresses(o, lan) == []


@pytest.mark.parametrize("lan", ["br lan", "a-very-long-device-name", "../x", ".."])
def test_a_lan_that_cannot_be_a_device_name(tmp_path, lan):
    path = write(tmp_path, "config tunnel 'wan6'\n\toption peeraddr '203.0.113.10'\n"
                           "\toption ip6addr '2001:db8:5b10::b/127'\n\tlist lan '%s'\n" % lan)
    with pytest.raises(SixbrokerError) as e:
        standalone.read_config(path)
    assert e.value.code == "INVALID_DEVICE" and e.value.option == "lan"


def test_every_problem_of_a_section_at_once(tmp_path):
    path = write(tmp_path, "config tunnel 'home'\n\toption mtu '9'\n\toption ttl '0'\n")
    with pytest.raises(SixbrokerError) as e:
        standalone.read_config(path)
    assert e.value.codes == ["MISSING_PEER_ADDRESS", "MISSING_IP6ADDR", "MTU_OUT_OF_RANGE", "INVALID_TTL"]
    assert str(e.value).startswith("tunnel 'home': ")
