"""`server add` -> its join line -> `sixbroker router join` (the standalone router's file) and the OpenWrt
join's batch text: the broker in process with the fake applier (test_broker's fixture), no kernel."""
import json
import os

from sixbroker.linuxrouter import join as rjoin, router as standalone
from sixbroker.core import tunnelconf
from sixbroker.openwrt import join as ojoin

from test_broker import broker  # noqa: F401  (the fixture)


def test_add_then_router_join_writes_what_up_reads(broker, tmp_path):  # noqa: F811
    broker.init()
    body = broker.json("add", "home", "--remote", "198.51.100.7")
    line = body["join"]
    assert line.startswith("sixbroker join sb1:")
    cfg = str(tmp_path / "etc" / "router")
    os.makedirs(str(tmp_path / "etc"))
    with open(cfg, "w") as f:
        f.write("# my routers\nconfig tunnel 'other'\n\toption peeraddr '203.0.113.99'\n"
                "\toption ip6addr '2001:db8:99::b/127'\n")
    # the whole printed command pasted after `router join`, with a LAN
    assert rjoin.main([line, "--lan", "br-lan", "--config", cfg, "--no-up"]) == 0
    text = open(cfg).read()
    assert text.startswith("# my routers\n")            # a new tunnel is appended, the rest kept
    tunnels = dict((n, (o, lan)) for n, o, lan in standalone.read_config(cfg))
    o, lan = tunnels["home"]
    t = body["tunnel"]
    assert lan == ["br-lan"] and str(o.ip6gw) == t["server_address"]
    assert [str(p) for p in o.ip6prefix] == t["routed"]
    assert o.update["key"] == body["key"] and o.update["tunnelid"] == "home"
    assert oct(os.stat(cfg).st_mode & 0o777) == "0o600"
    # the OpenWrt join writes the same section as the broker's printed uci batch, updater and all
    _, opts, pem = ojoin.prepare([line])
    printed = body["router"]["uci_batch"]
    assert printed == tunnelconf.batch("home", opts) and pem == body["router"]["cert_file"]["pem"]
    # joining again (a rotated key) replaces the section
    rotated = broker.json("key", "home", "--rotate")
    assert "set network.home.updatekey='%s'" % rotated["key"] in rotated["router"]["uci_batch"]
    assert rjoin.main([rotated["join"], "--config", cfg, "--no-up"]) == 0
    tunnels = dict((n, (o, lan)) for n, o, lan in standalone.read_config(cfg))
    assert sorted(tunnels) == ["home", "other"] and tunnels["home"][0].update["key"] == rotated["key"]


def test_a_bad_line_writes_nothing(tmp_path, capsys):
    cfg = str(tmp_path / "router")
    for v in json.load(open(os.path.join(os.path.dirname(__file__), "..", "data", "join", "vectors.json")))["bad"]:
        assert rjoin.main([v["line"], "--config", cfg, "--no-up"]) == 1
        assert "sixbroker router join: %s:" % v["code"] in capsys.readouterr().err
        assert os.listdir(str(tmp_path)) == []
