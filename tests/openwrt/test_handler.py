"""The handler as netifd runs it: the shim under busybox ash, the argv of netifd's proto-shell.c
(`./sixbroker.sh sixbroker setup <iface> '<config JSON>'`), on CPython and on MicroPython, inside a network
namespace whose devices, addresses and routes are real, talking ubus to a fake ubusd that answers as netifd
does and records every message.  Every recorded message is also held to netifd's policies
(tests/netifd_policy.py).

"micropython-mpy" is MicroPython running the packages as opkg installs them (scripts/mkipk.py stage of
sixbroker and sixbroker-micropython), with the .py of every module the add-on compiles deleted: the
scenarios pass only if MicroPython loads the .mpy.
"""
import json
import os
import subprocess
import sys

import pytest

import handler_shim
from netifd_policy import UBUS_INVALID_ARGUMENT, Interface
from sixbroker.core import options, plan
from sixbroker.broker import routerconf
from ubusd_fake import FakeUbusd

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO_DIR = os.path.join(ROOT, "files", "lib", "netifd", "proto")
NS = "sbtest-router"
ISP = "sbtest-isp"
PEER = "203.0.113.10"
WAN_IP = "198.51.100.20"
INTERPRETERS = {"cpython": os.path.join(ROOT, ".venv", "bin", "python"),
                "micropython": os.path.join(ROOT, ".venv", "bin", "micropython"),
                "micropython-mpy": os.path.join(ROOT, ".venv", "bin", "micropython")}
# where each variant's shim and modules are: the checkout, or the staged packages (staged_mpy below)
LIBS = {"cpython": os.path.join(ROOT, "src"), "micropython": os.path.join(ROOT, "src")}
PROTO_DIRS = {"cpython": PROTO_DIR, "micropython": PROTO_DIR}


def sh(*argv):
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture(scope="module")
def router_ns():
    """The router: `wan0` (Ethernet, MTU 1500, default route) and `pppoe-wan` (MTU 1492), each a veth
    whose other end sits in an "ISP" namespace; /etc/hosts of its own for the host-name peer."""
    for ns in (NS, ISP):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        sh("ip", "netns", "add", ns)
    sh("ip", "-n", NS, "link", "add", "wan0", "type", "veth", "peer", "isp0", "netns", ISP)
    sh("ip", "-n", NS, "link", "add", "pppoe-wan", "mtu", "1492", "type", "veth", "peer", "isp1", "netns", ISP)
    sh("ip", "-n", NS, "addr", "add", WAN_IP + "/24", "dev", "wan0")
    sh("ip", "-n", NS, "addr", "add", "192.0.2.50/24", "dev", "pppoe-wan")
    for dev in ("wan0", "pppoe-wan", "lo"):
        sh("ip", "-n", NS, "link", "set", dev, "up")
    for dev in ("isp0", "isp1"):
        sh("ip", "-n", ISP, "link", "set", dev, "up")
    sh("ip", "-n", NS, "route", "add", "default", "via", "198.51.100.1", "dev", "wan0", "onlink")
    etc = "/etc/netns/" + NS
    os.makedirs(etc, exist_ok=True)
    with open(etc + "/hosts", "w") as f:
        f.write("127.0.0.1 localhost\n" + PEER + " broker.example.net\n")
    # every other name goes to tests/dns_fake.py on the namespace's loopback
    with open(etc + "/resolv.conf", "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    dns = subprocess.Popen(["ip", "netns", "exec", NS, sys.executable, os.path.join(ROOT, "tests", "dns_fake.py")],
                           stdout=subprocess.PIPE, text=True)
    assert dns.stdout.readline().strip() == "ready"
    yield NS
    dns.terminate()
    dns.wait()
    for ns in (NS, ISP):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    subprocess.run(["rm", "-rf", etc])


@pytest.fixture(scope="module", autouse=True)
def staged_mpy(tmp_path_factory):
    root = tmp_path_factory.mktemp("installed")
    for pkg in ("sixbroker", "sixbroker-micropython"):
        r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "mkipk.py"), "stage", pkg, str(root)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    lib = root / "usr" / "lib" / "sixbroker"
    top = lib / "mpy" / "sixbroker"
    compiled = [os.path.relpath(os.path.join(d, n), str(top))[:-4] for d, _, ns in os.walk(str(top)) for n in ns]
    assert "openwrt/netifd" in compiled and "__init__" in compiled
    for name in compiled:
        os.remove(lib / "sixbroker" / (name + ".py"))
    LIBS["micropython-mpy"] = str(lib)
    PROTO_DIRS["micropython-mpy"] = str(root / "lib" / "netifd" / "proto")
    yield lib


def netifd_interfaces():
    """What netifd answers for the interfaces of the namespace above (ubus.c netifd_dump_status)."""
    wan = {"interface": "wan", "up": True, "proto": "dhcp", "l3_device": "wan0", "device": "wan0",
           "ipv4-address": [{"address": WAN_IP, "mask": 24}]}
    wanppp = {"interface": "wanppp", "up": True, "proto": "pppoe", "l3_device": "pppoe-wan",
              "device": "eth1", "ipv4-address": [{"address": "192.0.2.50", "mask": 32}]}
    down = {"interface": "wwan", "up": False, "proto": "dhcp"}
    return [wan, wanppp, down]


def run_handler(interp, config, action="setup", iface="wan6", model=None):
    # the shim would fall back to /usr/bin/python3: make sure the interpreter under test is the one it finds
    assert os.access(INTERPRETERS[interp], os.X_OK), INTERPRETERS[interp]
    return handler_shim.run(INTERPRETERS[interp], NS, config, netifd_interfaces(), model, iface, action,
                            RUN_DIR, LIBS[interp], PROTO_DIRS[interp])


@pytest.fixture(autouse=True)
def fresh_run_dir(tmp_path):
    """The handler's /var/run/sixbroker, empty for each test (it keeps failures in a row there)."""
    global RUN_DIR
    RUN_DIR = str(tmp_path / "run")
    yield RUN_DIR


RUN_DIR = None


SEED = {"peeraddr": PEER, "ip6addr": "2001:db8:5b10::b/127", "ip6prefix": ["2001:db8:5b11::/64"],
        "tunlink": "wan"}


def fw_rule(device, peer=PEER):
    return {"type": "rule", "name": "sixbroker-wan6-6in4", "src": "*", "device": device, "family": "ipv4",
            "proto": "41", "src_ip": peer, "target": "ACCEPT"}


def update(local, mtu, link, device, routes6=None, prefixes=("2001:db8:5b11::/64",), local_from="tunlink"):
    msg = {"action": 0, "interface": "wan6", "ifname": "sb-wan6", "link-up": True,
           "tunnel": {"mode": "sit", "local": local, "remote": PEER, "mtu": mtu, "ttl": 64, "tos": "inherit",
                      "link": link},
           "ip6addr": [{"ipaddr": "2001:db8:5b10::b", "mask": "127"}],
           "routes6": routes6 or [{"target": "::", "netmask": "0", "gateway": "2001:db8:5b10::a"}],
           "data": {"zone": "wan", "firewall": [fw_rule(device)],
                    "sixbroker": {"local": local, "remote": PEER, "local_from": local_from, "tunlink": link}}}
    if prefixes:
        msg["ip6prefix"] = list(prefixes)
    return msg


both = pytest.mark.parametrize("interp", ["cpython", "micropython", "micropython-mpy"])


@both
def test_seed_home_router(router_ns, interp):
    proc, sent = run_handler(interp, SEED)
    assert proc.returncode == 0, proc.stderr
    assert sent == [{"action": 6, "interface": "wan6", "ifname": "wan"},
                    update(WAN_IP, 1480, "wan", "wan0")]
    assert "Traceback" not in proc.stderr
    assert "sb-wan6 198.51.100.20 -> 203.0.113.10 mtu 1480" in proc.stderr


@both
def test_behind_nat_local_is_found_from_the_route_to_the_peer(router_ns, interp):
    # no tunlink, no ipaddr: the kernel's route to the peer names wan0, netifd names its interface and
    # address (behind NAT that is the private address; protocol 41 is forwarded by the NAT)
    config = dict(SEED)
    del config["tunlink"]
    proc, sent = run_handler(interp, config)
    assert proc.returncode == 0, proc.stderr
    want = update(WAN_IP, 1480, "wan", "wan0", local_from="route")
    assert sent == [{"action": 6, "interface": "wan6", "ifname": "wan"}, want]


@both
def test_pinned_private_address(router_ns, interp):
    config = dict(SEED, ipaddr="192.0.2.99")
    proc, sent = run_handler(interp, config)
    assert proc.returncode == 0, proc.stderr
    assert sent[1]["tunnel"]["local"] == "192.0.2.99"
    assert sent[1]["data"]["sixbroker"]["local_from"] == "option"


@both
def test_host_name_peer_is_resolved(router_ns, interp):
    proc, sent = run_handler(interp, dict(SEED, peeraddr="broker.example.net"))
    assert proc.returncode == 0, proc.stderr
    assert sent[1] == update(WAN_IP, 1480, "wan", "wan0")


def retried(sent, code, option, delay):
    """The shape of a failure netifd retries by itself: the error, then a `sleep` proto task."""
    assert len(sent) == 2, sent
    error = sent[0]["error"]
    assert sent[0]["action"] == 3 and error[:2] == [code, option] and error[3:] == ["next try in %d s" % delay]
    assert sent[1] == {"action": 1, "interface": "wan6", "command": ["/bin/sleep", str(delay)]}
    return error[2]


# What the resolver answered (tests/dns_fake.py) -> the code: a name that does not exist or has no
# IPv4 address is a lasting mistake (30 s, then longer); no answer from the server is passing (5 s).
RESOLVER_ANSWERS = [("typo.example.net", "PEER_NOT_FOUND", 30),      # NXDOMAIN
                    ("v6only.example.net", "PEER_NO_IPV4", 30),      # NOERROR, no A record
                    ("v6only-nx.example.net", "PEER_NO_IPV4", 30),   # EAI_NONAME, yet AAAA records
                    ("broken.example.net", "PEER_NOT_RESOLVED", 5)]  # SERVFAIL (PEER_RESOLVE_FAIL)


@both
@pytest.mark.parametrize("host,code,delay", RESOLVER_ANSWERS)
def test_resolver_answers_tell_lasting_from_passing(router_ns, interp, host, code, delay):
    model = Interface("wan6")
    proc, sent = run_handler(interp, dict(SEED, peeraddr=host), model=model)
    assert proc.returncode == 1
    assert host in retried(sent, code, "peeraddr", delay)
    assert model.autostart and model.tasks == [["/bin/sleep", str(delay)]]
    assert [e["code"] for e in model.status()["errors"]] == [code]
    assert code in proc.stderr and "next try in %d s" % delay in proc.stderr and "Traceback" not in proc.stderr


@both
def test_pppoe_link_gives_mtu_1472(router_ns, interp):
    proc, sent = run_handler(interp, dict(SEED, tunlink="wanppp"))
    assert proc.returncode == 0, proc.stderr
    assert sent[1] == update("192.0.2.50", 1472, "wanppp", "pppoe-wan")


@both
def test_the_brokers_printed_config_on_pppoe_gives_1472(router_ns, interp):
    # issue 11 item 8: `sixbroker server add` prints mtu '1480' (the broker's MTU) into every router's
    # section; it is the most the router uses, not a must: behind PPPoE (1492) the router takes 1472
    view = {"name": "wan6", "peeraddr": PEER, "router_address": "2001:db8:5b10::b", "transfer_length": 127,
            "server_address": "2001:db8:5b10::a", "routed": ["2001:db8:5b11::/64"], "mtu": plan.DEFAULT_MTU}
    printed = dict(routerconf.options(view))
    assert printed["mtu"] == "1480"
    del printed["proto"]
    proc, sent = run_handler(interp, dict(printed, tunlink="wanppp"))
    assert proc.returncode == 0, proc.stderr
    assert sent[1]["tunnel"]["mtu"] == 1472
    assert "wan6: mtu 1480 lowered to 1472: pppoe-wan has MTU 1492" in proc.stderr
    # on Ethernet the printed 1480 is what the link gives anyway, and nothing is logged
    proc, sent = run_handler(interp, dict(printed, tunlink="wan"))
    assert sent[1]["tunnel"]["mtu"] == 1480 and "lowered" not in proc.stderr
    # a lower MTU from the broker still caps the router
    proc, sent = run_handler(interp, dict(printed, tunlink="wan", mtu="1400"))
    assert sent[1]["tunnel"]["mtu"] == 1400


@both
def test_two_routed_prefixes(router_ns, interp):
    prefixes = ["2001:db8:5b11::/64", "2001:db8:5b20::/60"]
    proc, sent = run_handler(interp, dict(SEED, ip6prefix=prefixes))
    assert proc.returncode == 0, proc.stderr
    assert sent[1]["ip6prefix"] == prefixes


@both
def test_sourcerouting_on(router_ns, interp):
    proc, sent = run_handler(interp, dict(SEED, sourcerouting="1"))
    assert proc.returncode == 0, proc.stderr
    gw = "2001:db8:5b10::a"
    assert sent[1]["routes6"] == [
        {"target": "::", "netmask": "0", "gateway": gw, "source": "2001:db8:5b10::a/127"},
        {"target": "::", "netmask": "0", "gateway": gw, "source": "2001:db8:5b11::/64"}]


@both
def test_tunlink_down_is_passing(router_ns, interp):
    proc, sent = run_handler(interp, dict(SEED, tunlink="wwan"))
    assert proc.returncode == 1
    assert retried(sent, "TUNLINK_NOT_UP", "tunlink", 5) == "wwan"


@both
def test_delays_grow_across_setups_and_start_over(router_ns, interp):
    # netifd runs setup afresh after each delay (a new process): the count lives in the run directory
    unknown = dict(SEED, tunlink="wan9")
    delays = []
    for _ in range(8):
        proc, sent = run_handler(interp, unknown)
        retried(sent, "TUNLINK_UNKNOWN", "tunlink", int(sent[1]["command"][1]))
        delays.append(int(sent[1]["command"][1]))
    assert delays == [30, 60, 120, 240, 480, 960, 1920, 3600]
    # another failure starts at its own first delay; so does a changed configuration
    proc, sent = run_handler(interp, dict(SEED, tunlink="wwan"))
    assert sent[1]["command"] == ["/bin/sleep", "5"]
    proc, sent = run_handler(interp, dict(SEED, tunlink="wwan"))
    assert sent[1]["command"] == ["/bin/sleep", "10"]
    proc, sent = run_handler(interp, dict(SEED, tunlink="wwan", ttl="63"))
    assert sent[1]["command"] == ["/bin/sleep", "5"]
    # a success forgets the failures
    assert run_handler(interp, SEED)[0].returncode == 0
    proc, sent = run_handler(interp, dict(SEED, tunlink="wwan", ttl="63"))
    assert sent[1]["command"] == ["/bin/sleep", "5"]


@both
def test_failures_of_an_odd_interface_name_stay_in_the_run_directory(router_ns, interp):
    # a dynamic interface (ubus call network add_dynamic) may have any name
    for _ in range(2):
        proc, sent = run_handler(interp, dict(SEED, tunlink="wwan"), iface="../escape")
    assert sent[1]["command"] == ["/bin/sleep", "10"]
    assert os.listdir(RUN_DIR) == ["%04x.failures" % options.name_hash("../escape")]
    assert not os.path.exists(os.path.join(os.path.dirname(RUN_DIR), "escape.failures"))


@both
def test_refused_update_is_an_error_netifd_keeps_and_backs_off(router_ns, interp):
    # proto-shell.c proto_shell_update_link answers INVALID_ARGUMENT when the sit device could not be
    # created (proto_shell_create_tunnel -> NULL)
    model = Interface("wan6", refuse_update=UBUS_INVALID_ARGUMENT)
    proc, sent = run_handler(interp, SEED, model=model)
    assert proc.returncode == 1
    assert [m["action"] for m in sent] == [6, 0, 3, 1]
    assert sent[2]["error"][:2] == ["UPDATE_REFUSED", ""] and "Invalid argument" in sent[2]["error"][2]
    assert sent[2]["error"][3] == "next try in 30 s" and sent[3]["command"] == ["/bin/sleep", "30"]
    assert model.status()["errors"][0]["code"] == "UPDATE_REFUSED" and not model.up
    assert "UPDATE_REFUSED" in proc.stderr and " -> " not in proc.stderr     # no success line
    proc, sent = run_handler(interp, SEED, model=Interface("wan6", refuse_update=UBUS_INVALID_ARGUMENT))
    assert sent[3]["command"] == ["/bin/sleep", "60"]


@both
def test_tunlink_naming_no_interface_is_lasting(router_ns, interp):
    proc, sent = run_handler(interp, dict(SEED, tunlink="wan9"))
    assert retried(sent, "TUNLINK_UNKNOWN", "tunlink", 30) == "wan9"


CONFIG_ERRORS = [
    # MISSING_PEER_ADDRESS: LuCI words that code itself, so netifd gets ours (errors.LUCI_REPLACEMENTS)
    ({"ip6addr": "2001:db8:5b10::b/127"}, "PEER_ADDRESS_MISSING", "peeraddr"),
    (dict(SEED, peeraddr="2001:db8::1"), "PEER_NOT_IPV4", "peeraddr"),
    (dict(SEED, ip6addr="2001:db8:5b10::b"), "IP6ADDR_NEEDS_LENGTH", "ip6addr"),
    (dict(SEED, ip6prefix=["2001:db8:5b10::/48"]), "PREFIX_OVERLAPS_TUNNEL", "ip6prefix"),
    (dict(SEED, ip6prefix=["2001:db8:5b11::1/64"]), "IP6PREFIX_HOST_BITS", "ip6prefix"),
    (dict(SEED, mtu="jumbo"), "INVALID_MTU", "mtu"),
    (dict(SEED, ttl="300"), "INVALID_TTL", "ttl"),
    (dict(SEED, device="wan0"), "DEVICE_IN_USE", "device"),
]


@both
@pytest.mark.parametrize("config,code,option", CONFIG_ERRORS)
def test_configuration_errors(router_ns, interp, config, code, option):
    model = Interface("wan6")
    proc, sent = run_handler(interp, config, model=model)
    assert proc.returncode == 1
    assert len(sent) == 2 and sent[1] == {"action": 4, "interface": "wan6"}
    assert sent[0]["action"] == 3 and sent[0]["error"][:2] == [code, option] and len(sent[0]["error"]) == 3
    assert [e["code"] for e in model.status()["errors"]] == [code] and model.autostart is False
    log = proc.stderr.strip().splitlines()
    assert log and all(line.startswith("sixbroker: wan6: " + code) for line in log), log
    assert "Traceback" not in proc.stderr


@both
def test_each_mistake_is_one_error_netifd_keeps(router_ns, interp):
    # issue 11 item 2: all codes in one action 3 became one netifd error with the rest as its data
    model = Interface("wan6")
    config = {"ip6addr": "2001:db8:5b10::b", "mtu": "9000000", "ttl": "0", "peeraddr": ["203.0.113.10"]}
    proc, sent = run_handler(interp, config, model=model)
    assert proc.returncode == 1
    assert [m["action"] for m in sent] == [3, 3, 3, 3, 4]
    errors = model.status()["errors"]
    assert [(e["subsystem"], e["code"], e["data"][0]) for e in errors] == [
        ("sixbroker", "INVALID_PEER_ADDRESS", "peeraddr"), ("sixbroker", "IP6ADDR_NEEDS_LENGTH", "ip6addr"),
        ("sixbroker", "MTU_OUT_OF_RANGE", "mtu"), ("sixbroker", "INVALID_TTL", "ttl")]
    assert errors[0]["data"][1] == "a list, not text"


@both
def test_mistyped_json_from_netifd_is_the_options_code(router_ns, interp):
    # issue 11 item 7: these were INTERNAL_ERROR (a TypeError), retried at once
    for change, code in (({"mtu": 1480.5}, "INVALID_MTU"), ({"zone": ["wan", "lan"]}, "INVALID_ZONE"),
                         ({"tos": ["10"]}, "INVALID_TOS"), ({"tunlink": ["wan"]}, "INVALID_TUNLINK"),
                         # a NUL in a blobmsg string makes ubus refuse the whole message
                         ({"ttl": "6\u00004"}, "INVALID_TTL")):
        proc, sent = run_handler(interp, dict(SEED, **change))
        assert [m["action"] for m in sent] == [3, 4], (change, sent)
        assert sent[0]["error"][0] == code and "Traceback" not in proc.stderr


@both
def test_long_config_reaches_the_handler(router_ns, interp):
    # a config far past the 255 bytes the PyPI MicroPython accepts in one argument
    prefixes = ["2001:db8:5b%02x::/64" % i for i in range(0x20, 0x40)]
    proc, sent = run_handler(interp, dict(SEED, ip6prefix=prefixes))
    assert len(json.dumps(dict(SEED, ip6prefix=prefixes))) > 700
    assert proc.returncode == 0, proc.stderr
    assert sent[1]["ip6prefix"] == prefixes


@both
def test_config_that_is_not_json_is_an_internal_error(router_ns, interp):
    with FakeUbusd(handler_shim.netifd_objects(Interface("wan6"), netifd_interfaces())) as ub:
        env = {"PATH": "/usr/bin:/bin", "SIXBROKER_PYTHON": INTERPRETERS[interp], "SIXBROKER_LIB": LIBS[interp],
               "SIXBROKER_RUN_DIR": RUN_DIR}
        env.update(ub.env())
        proc = subprocess.run(["busybox", "sh", "./sixbroker.sh", "sixbroker", "setup", "wan6", "{not json"],
                              cwd=PROTO_DIRS[interp], env=env, capture_output=True, text=True, timeout=60)
        sent = [c.data for c in ub.calls if c.method == "notify_proto"]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    # a bug is retried as rarely as a lasting failure, not at once (netifd's own retry)
    assert sent == [{"action": 3, "interface": "wan6",
                     "error": ["INTERNAL_ERROR", "", "netifd passed no JSON object", "next try in 30 s"]},
                    {"action": 1, "interface": "wan6", "command": ["/bin/sleep", "30"]}]


@both
def test_teardown_sends_nothing_and_succeeds(router_ns, interp):
    proc, sent = run_handler(interp, SEED, action="teardown")
    assert proc.returncode == 0 and sent == []


@both
def test_no_ubus_is_one_clear_line(router_ns, interp):
    env = {"PATH": "/usr/bin:/bin", "SIXBROKER_PYTHON": INTERPRETERS[interp], "SIXBROKER_LIB": LIBS[interp],
           "SIXBROKER_UBUS_SOCKET": "/nonexistent/ubus.sock"}
    proc = subprocess.run(["busybox", "sh", "./sixbroker.sh", "sixbroker", "setup", "wan6", json.dumps(SEED)],
                          cwd=PROTO_DIRS[interp], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("sixbroker: wan6: UBUS_FAIL") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
