"""The router protocol's options: defaults, derivations, and one stable code per mistake."""
import pytest

import shim_dump
from sixbroker.core import options
from sixbroker.core.errors import CODES, ConfigErrors

SEED_HOME = {"peeraddr": "198.51.100.1", "ip6addr": "2001:db8:5b10::b/127", "ip6prefix": ["2001:db8:5b11::/64"]}


def cfg(**kw):
    c = dict(SEED_HOME)
    for k, v in kw.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def codes_of(config, strict=False):
    with pytest.raises(ConfigErrors) as e:
        options.validate(config, strict)
    return e.value.codes()


def test_seed_home_config_is_valid_with_defaults():
    o = options.validate(SEED_HOME)
    assert str(o.peer) == "198.51.100.1" and o.peer_host is None
    assert str(o.ip6addr) == "2001:db8:5b10::b/127"
    assert str(o.ip6gw) == "2001:db8:5b10::a"          # the other end of the /127
    assert [str(p) for p in o.ip6prefix] == ["2001:db8:5b11::/64"]
    assert o.ttl == 64 and o.tos == "inherit" and o.mtu is None
    assert o.sourcerouting is False and o.defaultroute is True and o.zone == "wan"


def test_gateway_of_a_64_is_its_first_address():
    o = options.validate(cfg(ip6addr="2001:db8:5b10::2/64"))
    assert str(o.ip6gw) == "2001:db8:5b10::1"


def test_gateway_of_a_126():
    assert str(options.validate(cfg(ip6addr="2001:db8:5b10::2/126")).ip6gw) == "2001:db8:5b10::1"


def test_explicit_gateway_wins():
    o = options.validate(cfg(ip6addr="2001:db8:5b10::2/64", ip6gw="2001:db8:5b10::fffe"))
    assert str(o.ip6gw) == "2001:db8:5b10::fffe"


def test_host_name_peer_is_kept_for_resolving():
    o = options.validate(cfg(peeraddr="tunnel.example.net"))
    assert o.peer is None and o.peer_host == "tunnel.example.net"


def test_netifd_json_types_and_uci_text_both_accepted():
    a = options.validate(cfg(mtu="1472", ttl="255", sourcerouting="1", tos="0x10", metric="5"))
    b = options.validate(cfg(mtu=1472, ttl=255, sourcerouting=True, tos="10", metric=5))
    for o in (a, b):
        assert (o.mtu, o.ttl, o.sourcerouting, o.tos, o.metric) == (1472, 255, True, "10", 5)


def test_uci_boolean_words():
    for word in ("1", "yes", "on", "true", "enabled"):
        assert options.validate(cfg(sourcerouting=word)).sourcerouting is True
    for word in ("0", "no", "off", "false", "disabled"):
        assert options.validate(cfg(defaultroute=word)).defaultroute is False


def test_single_prefix_as_plain_option_and_several_as_list():
    assert len(options.validate(cfg(ip6prefix="2001:db8:5b11::/64")).ip6prefix) == 1
    two = options.validate(cfg(ip6prefix=["2001:db8:5b11::/64", "2001:db8:5b20::/60"]))
    assert [str(p) for p in two.ip6prefix] == ["2001:db8:5b11::/64", "2001:db8:5b20::/60"]


def test_empty_strings_mean_unset():
    o = options.validate(cfg(ipaddr="", mtu="", ip6gw="", tunlink=""))
    assert o.local is None and o.mtu is None and o.tunlink is None


def test_device_name_default_fits_the_kernel():
    assert options.device_name("wan6") == "sb-wan6"
    assert options.device_name("a" * 12) == "sb-" + "a" * 12          # rule 1 up to 15 characters
    assert options.device_name("wan6", "mytun") == "mytun"
    for name in ("a" * 13, "averyveryverylongname", "home_tunnel_a"):
        dev = options.device_name(name)
        assert len(dev) == 15 and dev.startswith("sb-" + name[:7] + "-")
        assert dev[11:] == "%04x" % options.name_hash(name)


def test_long_interface_names_get_distinct_devices():
    # issue 11 item 9: both were sb-home_tunnel_
    a, b = options.device_name("home_tunnel_a"), options.device_name("home_tunnel_b")
    assert a != b
    names = ["home_tunnel_" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789_"]
    assert len(set(options.device_name(n) for n in names)) == len(names)


def test_name_hash_is_fnv1a_folded():
    # FNV-1a 32-bit reference values (draft-eastlake-fnv, test vectors): "" 811c9dc5, "a" e40c292c,
    # "foobar" bf9cf968; folded (high ^ low 16 bits)
    for text, fnv in (("", 0x811C9DC5), ("a", 0xE40C292C), ("foobar", 0xBF9CF968)):
        assert options.name_hash(text) == (fnv >> 16) ^ (fnv & 0xFFFF)


# One bad configuration per line, each with the single code it must produce and nothing else.
BAD = [
    (cfg(peeraddr=None), "MISSING_PEER_ADDRESS"),
    (cfg(peeraddr=""), "MISSING_PEER_ADDRESS"),
    (cfg(peeraddr="198.51.100.256"), "INVALID_PEER_ADDRESS"),
    (cfg(peeraddr="198.51.100"), "INVALID_PEER_ADDRESS"),
    (cfg(peeraddr="bad_host!name"), "INVALID_PEER_ADDRESS"),
    (cfg(peeraddr="-lead.example.com"), "INVALID_PEER_ADDRESS"),
    (cfg(peeraddr="2001:db8::1"), "PEER_NOT_IPV4"),
    (cfg(peeraddr="224.0.0.1"), "PEER_NOT_UNICAST"),
    (cfg(peeraddr="127.0.0.1"), "PEER_NOT_UNICAST"),
    (cfg(peeraddr="0.0.0.0"), "PEER_NOT_UNICAST"),
    (cfg(ipaddr="192.0.2.300"), "INVALID_IPADDR"),
    (cfg(ipaddr="255.255.255.255"), "IPADDR_NOT_UNICAST"),
    (cfg(ipaddr="198.51.100.1"), "PEER_IS_LOCAL"),
    (cfg(ip6addr=None), "MISSING_IP6ADDR"),
    (cfg(ip6addr="2001:db8:5b10::g/127"), "INVALID_IP6ADDR"),
    (cfg(ip6addr="2001:db8:5b10::b/129"), "INVALID_IP6ADDR"),
    (cfg(ip6addr="2001:db8:5b10::b"), "IP6ADDR_NEEDS_LENGTH"),
    (cfg(ip6addr="2001:db8:5b10::b/48"), "IP6ADDR_BAD_LENGTH"),
    (cfg(ip6addr="fe80::b/127"), "IP6ADDR_NOT_UNICAST"),
    (cfg(ip6addr="ff02::b/127"), "IP6ADDR_NOT_UNICAST"),
    (cfg(ip6addr="2001:db8:5b10::/64"), "IP6ADDR_IS_ANYCAST"),
    (cfg(ip6gw="2001:db8:5b10::zz"), "INVALID_IP6GW"),
    (cfg(ip6gw="2001:db8:5b10::1"), "IP6GW_OUTSIDE_TUNNEL"),
    (cfg(ip6gw="2001:db8:5b10::b"), "IP6GW_IS_LOCAL"),
    (cfg(ip6addr="2001:db8:5b10::1/64"), "IP6GW_REQUIRED"),
    (cfg(ip6prefix=["2001:db8:5b11::/64", "nonsense/64"]), "INVALID_IP6PREFIX"),
    (cfg(ip6prefix=["2001:db8:5b11::"]), "IP6PREFIX_NEEDS_LENGTH"),
    (cfg(ip6prefix=["2001:db8:5b11::/80"]), "IP6PREFIX_BAD_LENGTH"),
    (cfg(ip6prefix=["2001:db8:5b11::1/64"]), "IP6PREFIX_HOST_BITS"),
    (cfg(ip6prefix=["ff00::/8"]), "IP6PREFIX_NOT_UNICAST"),
    (cfg(ip6prefix=["2001:db8:5b10::/48"]), "PREFIX_OVERLAPS_TUNNEL"),
    (cfg(ip6prefix=["2001:db8:5b20::/56", "2001:db8:5b20:10::/60"]), "PREFIXES_OVERLAP"),
    (cfg(ip6prefix={"a": 1}), "OPTION_NOT_LIST"),
    (cfg(tunlink="wan 1"), "INVALID_TUNLINK"),
    (cfg(tunlink="a-very-long-interface"), "INVALID_TUNLINK"),
    (cfg(mtu="14x0"), "INVALID_MTU"),
    (cfg(mtu="-1"), "INVALID_MTU"),
    (cfg(mtu="1279"), "MTU_OUT_OF_RANGE"),
    (cfg(mtu="65516"), "MTU_OUT_OF_RANGE"),
    (cfg(ttl="0"), "INVALID_TTL"),
    (cfg(ttl="256"), "INVALID_TTL"),
    (cfg(ttl="x"), "INVALID_TTL"),
    (cfg(tos="0x100"), "INVALID_TOS"),
    (cfg(tos="gg"), "INVALID_TOS"),
    (cfg(sourcerouting="maybe"), "INVALID_SOURCEROUTING"),
    (cfg(defaultroute="2"), "INVALID_DEFAULTROUTE"),
    (cfg(metric="-5"), "INVALID_METRIC"),
    (cfg(metric="2147483648"), "INVALID_METRIC"),
    (cfg(zone="w@n"), "INVALID_ZONE"),
    (cfg(device="sixbroker-tunnel-0"), "INVALID_DEVICE"),
    (cfg(device="bad/name"), "INVALID_DEVICE"),
    (cfg(device="eth0.2"), "INVALID_DEVICE"),
]


@pytest.mark.parametrize("config,code", BAD)
def test_each_mistake_has_its_own_code_and_nothing_else(config, code):
    assert codes_of(config) == [code]
    assert code in CODES


def test_at_least_thirty_distinct_codes_are_exercised():
    assert len(set(code for _, code in BAD)) >= 30


def test_unknown_option_only_in_strict_mode():
    c = cfg(peeradr="192.0.2.1")
    assert options.validate(c).peer is not None
    assert codes_of(c, strict=True) == ["UNKNOWN_OPTION"]
    # generic interface options beside ours are not typos
    assert options.validate(cfg(proto="sixbroker", ip6assign="60", auto="1"), strict=True)


def test_every_problem_is_reported_at_once():
    got = codes_of({"ip6addr": "2001:db8::b", "mtu": "big", "ttl": "0"})
    assert got == ["MISSING_PEER_ADDRESS", "IP6ADDR_NEEDS_LENGTH", "INVALID_MTU", "INVALID_TTL"]


def test_error_names_the_option_and_says_what_to_fix():
    with pytest.raises(ConfigErrors) as e:
        options.validate(cfg(ip6prefix=["2001:db8:5b11::1/64"]))
    err = e.value.errors[0]
    assert err.option == "ip6prefix"
    assert "2001:db8:5b11::/64" in str(err)      # the prefix the user meant


def test_netifd_dump_declares_every_option_as_text():
    d = shim_dump.netifd_dump()
    assert d["name"] == "sixbroker"
    assert [c[0] for c in d["config"]] == [n for n in options.OPTION_NAMES if n not in options.NETIFD_OWNS]
    assert "defaultroute" not in [c[0] for c in d["config"]]
    types = dict((c[0], c[1]) for c in d["config"])
    assert types["ip6prefix"] == shim_dump.BLOBMSG_ARRAY
    assert all(t == shim_dump.BLOBMSG_STRING for n, t in types.items() if n != "ip6prefix")


# JSON types netifd can pass: a dynamic interface (netifd ubus.c netifd_add_dynamic keeps the caller's
# message as the config, proto-shell.c proto_shell_handler prints it with blobmsg_format_json), so any
# JSON type the caller used.  A UCI interface cannot: a UCI list for a string option is left out
# (netifd config.c / uci blob.c uci_to_blob: `if (o->type == UCI_TYPE_LIST) continue;`).
MISTYPED = [
    ({"peeraddr": ["198.51.100.1"]}, "INVALID_PEER_ADDRESS", "peeraddr"),
    ({"peeraddr": 3325256705}, "INVALID_PEER_ADDRESS", "peeraddr"),
    ({"mtu": 1480.5}, "INVALID_MTU", "mtu"),
    ({"mtu": 1480.0}, "INVALID_MTU", "mtu"),
    ({"mtu": True}, "INVALID_MTU", "mtu"),
    ({"tos": ["10"]}, "INVALID_TOS", "tos"),
    ({"tos": 16}, "INVALID_TOS", "tos"),
    ({"tunlink": ["wan"]}, "INVALID_TUNLINK", "tunlink"),
    ({"zone": ["wan", "lan"]}, "INVALID_ZONE", "zone"),
    ({"zone": {"name": "wan"}}, "INVALID_ZONE", "zone"),
    ({"ipaddr": ["192.0.2.1"]}, "INVALID_IPADDR", "ipaddr"),
    ({"ip6addr": ["2001:db8:5b10::b/127"]}, "INVALID_IP6ADDR", "ip6addr"),
    ({"ip6gw": 1}, "INVALID_IP6GW", "ip6gw"),
    ({"ttl": 64.0}, "INVALID_TTL", "ttl"),
    ({"metric": [5]}, "INVALID_METRIC", "metric"),
    ({"sourcerouting": "1 0".split()}, "INVALID_SOURCEROUTING", "sourcerouting"),
    ({"device": ["sb-x"]}, "INVALID_DEVICE", "device"),
    ({"ip6prefix": {"a": 1}}, "OPTION_NOT_LIST", "ip6prefix"),
    ({"ip6prefix": 64}, "OPTION_NOT_LIST", "ip6prefix"),
    ({"ip6prefix": ["2001:db8:5b11::/64", 5]}, "INVALID_IP6PREFIX", "ip6prefix"),
    ({"ip6prefix": [["2001:db8:5b11::/64"]]}, "INVALID_IP6PREFIX", "ip6prefix"),
]


@pytest.mark.parametrize("change,code,option", MISTYPED)
def test_a_mistyped_option_gets_its_own_code_only(change, code, option):
    with pytest.raises(ConfigErrors) as e:
        options.validate(dict(SEED_HOME, **change))
    assert [(x.code, x.option) for x in e.value.errors] == [(code, option)]


def test_mistyped_options_each_reported_with_the_others():
    bad = dict(SEED_HOME, peeraddr=["198.51.100.1"], mtu=1480.5, zone=["wan", "lan"], ttl="300")
    with pytest.raises(ConfigErrors) as e:
        options.validate(bad)
    assert sorted(e.value.codes()) == ["INVALID_MTU", "INVALID_PEER_ADDRESS", "INVALID_TTL", "INVALID_ZONE"]


def test_json_null_is_unset():
    assert options.validate(dict(SEED_HOME, mtu=None, zone=None)).zone == "wan"
