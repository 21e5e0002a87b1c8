"""The plan for the seed's two ends (../shared/DESIGN.md) is exactly the seed's state."""
from sixbroker.core import addr, options, plan
from plan_commands import to_commands

X = "203.0.113.10"   # the VPS
Y = "198.51.100.20"  # the home router

SEED_HOME = {"peeraddr": X, "ip6addr": "2001:db8:5b10::b/127", "ip6prefix": ["2001:db8:5b11::/64"]}


def home(config=None, **kw):
    o = options.validate(config or SEED_HOME)
    return plan.router(o, "wan6", addr.Address.parse(X), addr.Address.parse(kw.pop("local", Y)), "sittun", **kw)


def vps(**kw):
    return plan.broker("home", "sittun", addr.Address.parse(X), addr.Address.parse(Y),
                       addr.Network.parse("2001:db8:5b10::a/127"), [addr.Network.parse("2001:db8:5b11::/64")],
                       **kw)


def test_seed_vps_end():
    p = vps(uplink="eth0")
    # ip tunnel add sittun mode sit local X remote Y ttl 64
    assert p["tunnel"] == {"device": "sittun", "mode": "sit", "local": X, "remote": Y, "ttl": 64,
                           "tos": "inherit", "mtu": 1480, "link": None}
    # ip addr add dev sittun 2001:db8:5b10::a/127
    assert p["addresses"] == [{"address": "2001:db8:5b10::a", "length": 127}]
    # ip -6 route add 2001:db8:5b11::/64 via 2001:db8:5b10::b
    assert p["routes"] == [{"target": "2001:db8:5b11::", "length": 64, "gateway": "2001:db8:5b10::b",
                            "source": None, "metric": None}]
    # forwarding=1; accept_ra=2 on the uplink, first (forwarding=1 purges RA default routes where it is not 2)
    assert p["sysctls"] == [["net.ipv6.conf.eth0.accept_ra", "2"], ["net.ipv6.conf.all.forwarding", "1"]]
    rules = p["firewall"]["rules"]
    # accept protocol 41 from Y
    assert [r for r in rules if r["chain"] == "input"] == [plan.rule("sixbroker-home-6in4", "input", "ACCEPT",
                                                                     "ipv4", 41, Y)]
    # forward to and from the tunnel
    fwd = [(r["iif"], r["oif"], r["target"]) for r in rules if r["chain"] == "forward"]
    assert fwd == [("sittun", None, "ACCEPT"), (None, "sittun", "ACCEPT")]
    assert p["prefixes"] == [] and p["host_route"] is None


def test_seed_home_end_standalone():
    p = home(lan=["br-lan"])
    # ip tunnel add sittun mode sit local Y remote X ttl 64
    t = p["tunnel"]
    assert (t["device"], t["mode"], t["local"], t["remote"], t["ttl"]) == ("sittun", "sit", Y, X, 64)
    # ip addr add dev sittun 2001:db8:5b10::b/127
    assert p["addresses"] == [{"address": "2001:db8:5b10::b", "length": 127}]
    # default route via 2001:db8:5b10::a: a plain ::/0, no source restriction
    assert p["routes"] == [{"target": "::", "length": 0, "gateway": "2001:db8:5b10::a", "source": None,
                            "metric": None}]
    assert p["sysctls"] == [["net.ipv6.conf.all.forwarding", "1"]]
    rules = p["firewall"]["rules"]
    assert rules[0] == plan.rule("sixbroker-wan6-6in4", "input", "ACCEPT", "ipv4", 41, X)
    # forward: established/related, ICMPv6, everything from the LAN; reject the rest
    fwd = [(r["ct_state"], r["proto"], r["iif"], r["target"]) for r in rules[1:]]
    assert fwd == [(["established", "related"], None, None, "ACCEPT"), (None, "icmpv6", None, "ACCEPT"),
                   (None, None, "br-lan", "ACCEPT"), (None, None, "sittun", "REJECT")]
    assert p["prefixes"] == [{"prefix": "2001:db8:5b11::", "length": 64}]


def test_the_two_ends_mirror_each_other():
    h, v = home(), vps()
    assert (h["tunnel"]["local"], h["tunnel"]["remote"]) == (v["tunnel"]["remote"], v["tunnel"]["local"])
    assert h["routes"][0]["gateway"] == v["addresses"][0]["address"]
    assert v["routes"][0]["gateway"] == h["addresses"][0]["address"]
    assert h["prefixes"][0]["prefix"] == v["routes"][0]["target"]


def test_netifd_plan_leaves_forwarding_policy_to_fw4():
    p = home()
    assert [r["chain"] for r in p["firewall"]["rules"]] == ["input"]
    assert p["sysctls"] == []
    assert p["host_route"] == {"host": X, "interface": None}


def test_sourcerouting_restricts_every_default_route():
    c = dict(SEED_HOME)
    c["sourcerouting"] = "1"
    c["ip6prefix"] = ["2001:db8:5b11::/64", "2001:db8:5b20::/60"]
    p = home(c)
    assert [(r["target"], r["length"], r["source"]) for r in p["routes"]] == [
        ("::", 0, "2001:db8:5b10::a/127"), ("::", 0, "2001:db8:5b11::/64"), ("::", 0, "2001:db8:5b20::/60")]


def test_no_default_route_when_disabled():
    c = dict(SEED_HOME)
    c["defaultroute"] = "0"
    assert home(c)["routes"] == []


def test_mtu_follows_the_underlying_link():
    assert home(link_mtu=1500)["tunnel"]["mtu"] == 1480
    assert home(link_mtu=1492)["tunnel"]["mtu"] == 1472      # PPPoE
    assert home()["tunnel"]["mtu"] == 1480                    # unknown link: Ethernet's
    c = dict(SEED_HOME)
    c["mtu"] = "1400"
    assert home(c, link_mtu=1500)["tunnel"]["mtu"] == 1400    # the option wins


def test_behind_nat_the_local_address_is_private():
    p = home(local="192.168.1.2")
    assert p["tunnel"]["local"] == "192.168.1.2" and p["tunnel"]["remote"] == X


def test_commands_render_the_seed():
    cmds = to_commands(vps(uplink="eth0"))
    assert cmds[0] == ["ip", "tunnel", "add", "sittun", "mode", "sit", "local", X, "remote", Y, "ttl", "64",
                       "tos", "inherit"]
    assert ["ip", "addr", "add", "dev", "sittun", "2001:db8:5b10::a/127"] in cmds
    assert ["ip", "-6", "route", "add", "2001:db8:5b11::/64", "via", "2001:db8:5b10::b", "dev", "sittun"] in cmds
    assert ["sysctl", "-qw", "net.ipv6.conf.eth0.accept_ra=2"] in cmds
    home_cmds = to_commands(home())
    assert ["ip", "-6", "route", "add", "default", "via", "2001:db8:5b10::a", "dev", "sittun"] in home_cmds
