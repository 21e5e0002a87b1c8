"""Status, device facts, diagnose, `sixbroker status` and the rpcd plugin's logic, in process, on CPython
and MicroPython.

The kernel's side is a directory tree laid out like /sys/class/net and /proc/net, with lines in the
kernel's own formats (taken from a 6.1 kernel: net/ipv6/addrconf.c if6_seq_show, net/ipv6/route.c
rt6_info_route, net/ipv4/fib_trie.c fib_route_seq_show).  netifd's side is a bus that answers
`network.interface dump` from a table shaped like netifd's ubus.c netifd_dump_status.
The same code against a real network namespace and the real ubus wire: tests/openwrt/test_rpcd.py.
"""
import json
import os
import struct
import sys

import pytest

from sixbroker.openwrt import devfacts, diagnose, humanize, probe, rpcd, status, statuscli
from sixbroker.core.errors import CODES, SixbrokerError

try:
    from io import StringIO
except ImportError:     # pragma: no cover - MicroPython has io.StringIO; keep the message clear if not
    StringIO = None

GW = "2001:db8:5b10::a"
PEER = "203.0.113.10"
LOCAL = "198.51.100.20"


class Tree:
    """A throw-away /sys/class/net + /proc/net."""

    def __init__(self):
        self.root = "/tmp/sixbroker-test-status-%d" % struct.unpack("<I", os.urandom(4))[0]
        self.made = []
        self.mkdir(self.root)
        self.sys = self.root + "/sys/"
        self.proc = self.root + "/proc/"
        self.mkdir(self.sys)
        self.mkdir(self.proc)
        self.write(self.proc + "if_inet6", "")
        self.write(self.proc + "ipv6_route", "")
        self.write(self.proc + "route", "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\t"
                   "MTU\tWindow\tIRTT\n")

    def mkdir(self, path):
        os.mkdir(path)
        self.made.append((path, True))

    def write(self, path, text):
        new = True
        try:
            os.stat(path)
            new = False
        except OSError:
            pass
        with open(path, "w") as f:
            f.write(text)
        if new:
            self.made.append((path, False))

    def append(self, path, text):
        with open(path) as f:
            old = f.read()
        self.write(path, old + text)

    def device(self, name, ifindex=5, mtu=1480, flags=0x91, operstate="unknown", stats=None):
        base = self.sys + name + "/"
        self.mkdir(base)
        self.mkdir(base + "statistics")
        self.write(base + "ifindex", "%d\n" % ifindex)
        self.write(base + "mtu", "%d\n" % mtu)
        self.write(base + "flags", "0x%x\n" % flags)
        self.write(base + "operstate", operstate + "\n")
        for k in devfacts.STATISTICS:
            self.write(base + "statistics/" + k, "%d\n" % ((stats or {}).get(k, 0)))

    def counters(self, name):
        out = {}
        for k in ("rx_packets", "tx_packets"):
            with open(self.sys + name + "/statistics/" + k) as f:
                out[k] = int(f.read())
        return out

    def bump(self, name, rx=0, tx=0):
        c = self.counters(name)
        self.write(self.sys + name + "/statistics/rx_packets", "%d\n" % (c["rx_packets"] + rx))
        self.write(self.sys + name + "/statistics/tx_packets", "%d\n" % (c["tx_packets"] + tx))

    def ipv4_route(self, dev, dest, bits, metric=0):
        mask = 0xFFFFFFFF ^ ((1 << (32 - bits)) - 1) if bits else 0
        order = "<I" if sys.byteorder == "little" else ">I"

        def word(v):
            return "%08X" % struct.unpack(order, struct.pack(">I", v))[0]

        d = [int(x) for x in dest.split(".")]
        value = (d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]
        self.append(self.proc + "route", "%s\t%s\t00000000\t0001\t0\t0\t%d\t%s\t0\t0\t0\n" % (
            dev, word(value), metric, word(mask)))

    def close(self):
        for path, is_dir in reversed(self.made):
            try:
                if is_dir:
                    os.rmdir(path)
                else:
                    os.remove(path)
            except OSError:
                pass


# Lines as a 6.1 kernel prints them for a sit tunnel sb-wan6 (ifindex 5) and eth1
IF_INET6 = (
    "20010db85b100000000000000000000b 05 7f 00 80  sb-wan6\n"
    "fe80000000000000000000000c633314 05 40 20 80  sb-wan6\n"
    "20010db8000100000000000000000001 03 40 00 80     eth1\n"
    "00000000000000000000000000000001 01 80 10 80       lo\n"
)
IPV6_ROUTE = (
    "20010db85b100000000000000000000a 7f 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000100 00000001 00000000 00000001  sb-wan6\n"
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "20010db85b100000000000000000000a 00000400 00000002 00000000 00000003  sb-wan6\n"
    "00000000000000000000000000000000 00 20010db85b1100000000000000000000 40 "
    "20010db85b100000000000000000000a 00000400 00000000 00000000 00000003  sb-wan6\n"
    "20010db85b100000000000000000000b 80 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000000 00000004 00000000 80200001  sb-wan6\n"
    "ff000000000000000000000000000000 08 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000100 00000002 00000000 00000001  sb-wan6\n"
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "20010db8000100000000000000000001 00000400 00000002 00000000 00000003     eth1\n"
)


def wan6(up=True, **kw):
    st = {"interface": "wan6", "proto": "sixbroker", "up": up, "pending": False, "available": True,
          "autostart": True, "dynamic": False,
          "data": {"sixbroker": {"local": LOCAL, "remote": PEER, "local_from": "tunlink", "tunlink": "wan"}}}
    if up:
        st.update({"uptime": 3725, "l3_device": "sb-wan6",
                   "ipv6-address": [{"address": "2001:db8:5b10::b", "mask": 127}],
                   "ipv6-prefix": [{"address": "2001:db8:5b11::", "mask": 64, "class": "wan6",
                                    "assigned": {"lan": {"address": "2001:db8:5b11::", "mask": 64}}}],
                   "route": [{"target": "::", "mask": 0, "nexthop": GW, "source": "::/0"}]})
    st.update(kw)
    return st


def wan(ipv4=LOCAL, dev="eth1"):
    return {"interface": "wan", "proto": "dhcp", "up": True, "l3_device": dev,
            "ipv4-address": [{"address": ipv4, "mask": 24}]}


class Bus:
    def __init__(self, *ifaces, fail=None):
        self.ifaces = list(ifaces)
        self.fail = fail
        self.calls = []
        self.closed = False

    def call(self, path, method, data):
        self.calls.append((path, method, data))
        if self.fail:
            raise SixbrokerError("UBUS_FAIL", self.fail)
        if (path, method) == ("uci", "get"):
            raise SixbrokerError("UBUS_FAIL", "Not found")     # rpcd: no such section
        assert (path, method) == ("network.interface", "dump")
        return {"interface": self.ifaces}

    def close(self):
        self.closed = True


def lab():
    """A tree with sb-wan6 as netifd left it: addresses, routes, a route to the peer via eth1."""
    t = Tree()
    t.device("sb-wan6", stats={"rx_bytes": 123456, "tx_bytes": 654321, "rx_packets": 100, "tx_packets": 200})
    t.device("eth1", ifindex=3, mtu=1500, flags=0x1003, operstate="up")
    t.write(t.proc + "if_inet6", IF_INET6)
    t.write(t.proc + "ipv6_route", IPV6_ROUTE)
    t.ipv4_route("eth1", "0.0.0.0", 0)
    return t


# ---- the kernel's view --------------------------------------------------------------------------------

def test_device_facts_read_sys_and_proc():
    t = lab()
    try:
        k = devfacts.device_facts("sb-wan6", t.sys, t.proc)
    finally:
        t.close()
    assert k["ifindex"] == 5 and k["mtu"] == 1480 and k["up"] is True and k["operstate"] == "unknown"
    assert k["statistics"]["rx_bytes"] == 123456 and k["statistics"]["tx_packets"] == 200
    assert k["addresses"] == [{"address": "2001:db8:5b10::b", "length": 127, "scope": "global"},
                              {"address": "fe80::c63:3314", "length": 64, "scope": "link"}]
    # the local route and the multicast route are left out; a source-restricted default keeps its source
    assert k["routes"] == [
        {"target": "2001:db8:5b10::a/127", "gateway": None, "metric": 256, "source": None},
        {"target": "::/0", "gateway": GW, "metric": 1024, "source": None},
        {"target": "::/0", "gateway": GW, "metric": 1024, "source": "2001:db8:5b11::/64"},
    ]


def test_missing_device_is_none():
    t = lab()
    try:
        assert devfacts.device_facts("sb-nothere", t.sys, t.proc) is None
    finally:
        t.close()


def test_down_device_is_not_up():
    t = Tree()
    try:
        t.device("sb-wan6", flags=0x90)
        assert devfacts.device_facts("sb-wan6", t.sys, t.proc)["up"] is False
    finally:
        t.close()


# ---- netifd joined with the kernel ---------------------------------------------------------------------

def test_tunnel_status_joins_netifd_and_kernel():
    t = lab()
    try:
        s = status.tunnel_status(wan6(), 1700000000, t.sys, t.proc)
    finally:
        t.close()
    assert s["interface"] == "wan6" and s["up"] and s["device"] == "sb-wan6"
    assert s["since"] == 1700000000 - 3725 and s["uptime"] == 3725
    assert (s["local"], s["remote"], s["tunlink"], s["local_from"]) == (LOCAL, PEER, "wan", "tunlink")
    assert s["addresses"] == ["2001:db8:5b10::b/127"]
    assert s["gateway"] == GW
    assert s["routes"] == [{"target": "::/0", "gateway": GW, "metric": None, "source": None}]
    assert s["prefixes"] == [{"prefix": "2001:db8:5b11::/64", "preferred": None, "valid": None,
                              "assigned": [{"interface": "lan", "prefix": "2001:db8:5b11::/64"}]}]
    assert s["kernel"]["statistics"]["tx_bytes"] == 654321
    assert s["errors"] == [] and s["rtt_ms"] is None


def test_down_tunnel_has_no_device_and_no_kernel_view():
    s = status.tunnel_status(wan6(up=False), 1700000000)
    assert not s["up"] and s["device"] is None and s["kernel"] is None and s["since"] is None
    assert s["gateway"] is None


def test_gateway_derived_when_there_is_no_default_route():
    st = wan6(route=[])
    assert status.gateway(st) == GW
    st = wan6(route=[], **{"ipv6-address": [{"address": "2001:db8:5b10::2", "mask": 64}]})
    assert status.gateway(st) == "2001:db8:5b10::1"
    st = wan6(route=[], **{"ipv6-address": [{"address": "2001:db8:5b10::1", "mask": 64}]})
    assert status.gateway(st) is None


def test_every_code_of_a_netifd_error_gets_words():
    # netifd keeps ["MISSING_PEER_ADDRESS", "INVALID_TTL"] as one error: code plus data
    st = wan6(up=False, errors=[{"subsystem": "sixbroker", "code": "MISSING_PEER_ADDRESS",
                                 "data": ["INVALID_TTL", "not a code"]}])
    s = status.tunnel_status(st, 0)
    assert s["errors"] == [{"code": "MISSING_PEER_ADDRESS", "subsystem": "sixbroker",
                            "data": ["INVALID_TTL", "not a code"],
                            "messages": [{"code": "MISSING_PEER_ADDRESS", "text": CODES["MISSING_PEER_ADDRESS"]},
                                         {"code": "INVALID_TTL", "text": CODES["INVALID_TTL"]}]}]


def test_only_sixbroker_interfaces_sorted_by_name():
    dump = {"interface": [wan(), wan6(interface="zz6", up=False), wan6(up=False),
                          {"interface": "lan", "proto": "static", "up": True}]}
    assert [t["interface"] for t in status.tunnels(dump)] == ["wan6", "zz6"]
    assert [t["interface"] for t in status.tunnels(dump, "zz6")] == ["zz6"]
    assert status.tunnels(dump, "lan") == []


def test_collect_asks_netifd_once():
    bus = Bus(wan(), wan6(up=False))
    out = status.collect(bus, rtt=False)
    assert [t["interface"] for t in out["tunnels"]] == ["wan6"]
    # and rpcd's uci, for what the down tunnel is set to do
    assert bus.calls == [("network.interface", "dump", {}), ("uci", "get", {"config": "network", "section": "wan6"})]
    assert out["tunnels"][0]["config"] is None


def test_terminal_text():
    t = lab()
    try:
        s = status.tunnel_status(wan6(), 1700000000, t.sys, t.proc)
    finally:
        t.close()
    s["rtt_ms"] = 23.456
    text = statuscli.format_tunnel(s)
    assert text.startswith("wan6: up since ") and "(1h 02m)" in text
    assert "  IPv4     198.51.100.20 -> 203.0.113.10 over wan" in text
    assert "  tunnel   2001:db8:5b10::b/127, broker 2001:db8:5b10::a" in text
    assert "  rtt      23.5 ms" in text
    assert "  prefix   2001:db8:5b11::/64 -> lan 2001:db8:5b11::/64" in text
    assert "  traffic  rx 120.6 KiB (100 packets), tx 639.0 KiB (200 packets)" in text


def test_human_units():
    assert humanize.human_bytes(0) == "0 B" and humanize.human_bytes(1023) == "1023 B"
    assert humanize.human_bytes(1536) == "1.5 KiB" and humanize.human_bytes(5 * 1024 ** 3) == "5.0 GiB"
    assert humanize.human_duration(59) == "59s" and humanize.human_duration(61) == "1m 01s"
    assert humanize.human_duration(90061) == "1d 01h 01m"


# ---- diagnose -------------------------------------------------------------------------------------------

class Net:
    """An echo() that behaves like a network, and moves the tunnel's counters as the kernel would."""

    def __init__(self, tree, ipv4=True, proto41=True, ipv6=True, mtu=1480, refuse=None):
        self.tree, self.ipv4, self.proto41, self.ipv6 = tree, ipv4, proto41, ipv6
        self.mtu, self.refuse = mtu, refuse
        self.sent = []

    def __call__(self, dst, count=1, size=56, timeout=1.0, device=None, dontfrag=False):
        self.sent.append((dst, count, size, device, dontfrag))
        if self.refuse is not None:
            raise probe.ProbeError("not permitted (raw sockets need root)", self.refuse)
        if ":" not in dst:
            return [1.5 if self.ipv4 else None] * count
        assert device == "sb-wan6"
        fits = size + probe.HEADER6 + probe.ICMP_HEADER <= self.mtu
        back = self.proto41 and fits
        self.tree.bump("sb-wan6", tx=count, rx=count if back else 0)
        return [0.8 if back and self.ipv6 else None] * count


def run(net_kw=None, ifaces=None, tree=None):
    t = tree or lab()
    try:
        net = Net(t, **(net_kw or {}))
        bus = Bus(*(ifaces if ifaces is not None else (wan(), wan6())))
        d = diagnose.diagnose(bus, "wan6", t.sys, t.proc, t.proc + "route", echo=net, timeout=0.1)
    finally:
        t.close()
    return d, net


def verdicts(d):
    return dict((c["name"], c["status"]) for c in d["checks"])


def test_healthy_tunnel_passes_every_check_in_order():
    d, net = run()
    assert [c["name"] for c in d["checks"]] == [n for n, _ in diagnose.CHECKS]
    assert d["ok"] and d["failed"] is None and d["summary"] == "The tunnel works"
    assert set(verdicts(d).values()) == {"ok"}
    texts = dict((c["name"], c["text"]) for c in d["checks"])
    assert texts["proto41"] == "3 packets came back through the tunnel from 203.0.113.10"
    assert texts["mtu"] == "1480-byte packets pass"
    assert texts["lan_prefix"] == "2001:db8:5b11::/64 -> lan 2001:db8:5b11::/64"
    # the full-size probe fills the tunnel MTU exactly, without fragmenting
    assert (GW, 2, 1480 - 48, "sb-wan6", True) in net.sent


def test_silent_broker_fails_protocol_41():
    d, _ = run({"proto41": False})
    v = verdicts(d)
    assert d["failed"] == "proto41" and not d["ok"]
    assert v["ipv4_route"] == "ok" and v["ipv4_ping"] == "ok"
    assert v["proto41"] == "fail" and v["ipv6_ping"] == "fail" and v["mtu"] == "skip"
    text = [c["text"] for c in d["checks"] if c["name"] == "proto41"][0]
    assert "went into the tunnel to 203.0.113.10, but nothing came back" in text
    assert "does not answer protocol 41 from 198.51.100.20" in text


def test_nat_hint_for_a_private_local_address():
    ifaces = (wan("192.168.1.2"), wan6(data={"sixbroker": {"local": "192.168.1.2", "remote": PEER,
                                                           "local_from": "tunlink", "tunlink": "wan"}}))
    d, _ = run({"proto41": False}, ifaces)
    text = [c["text"] for c in d["checks"] if c["name"] == "proto41"][0]
    assert "behind NAT" in text and "public IPv4 address" in text


def test_answer_through_the_tunnel_but_no_echo_reply():
    d, _ = run({"ipv6": False})
    v = verdicts(d)
    assert v["proto41"] == "ok" and v["ipv6_ping"] == "fail" and d["failed"] == "ipv6_ping"


def test_small_path_mtu_is_found_and_named():
    d, _ = run({"mtu": 1400})
    assert d["failed"] == "mtu"
    text = [c["text"] for c in d["checks"] if c["name"] == "mtu"][0]
    assert text == ("1480-byte packets are lost while 1400-byte ones pass: set option mtu 1400 on this "
                    "interface (and the same on the broker's end)")


def test_ping_dropped_over_ipv4_is_only_a_warning():
    d, _ = run({"ipv4": False})
    assert d["ok"] and verdicts(d)["ipv4_ping"] == "warn"
    assert d["summary"].startswith("The tunnel works, with warnings: 203.0.113.10 did not answer")


def test_no_ipv4_route_to_the_broker():
    t = Tree()
    t.device("sb-wan6")
    d, _ = run(tree=t)
    assert verdicts(d)["ipv4_route"] == "fail"
    assert "no IPv4 route to the broker 203.0.113.10" in d["summary"]


def test_stale_local_address():
    d, _ = run(ifaces=(wan("198.51.100.99"), wan6()))
    text = [c["text"] for c in d["checks"] if c["name"] == "ipv4_route"][0]
    assert d["failed"] == "ipv4_route"
    assert text == ("the tunnel still sends from 198.51.100.20, but eth1 now has 198.51.100.99: restart the "
                    "tunnel (ifup wan6)")


def test_without_raw_sockets_the_probes_are_skipped_not_failed():
    d, _ = run({"refuse": probe.EPERM})
    v = verdicts(d)
    assert v["ipv4_ping"] == v["proto41"] == v["ipv6_ping"] == v["mtu"] == "skip"
    assert d["ok"]


def test_down_interface_reports_the_handler_errors_in_words():
    st = wan6(up=False, errors=[{"subsystem": "sixbroker", "code": "MISSING_PEER_ADDRESS",
                                 "data": ["INVALID_TTL"]}])
    d, net = run(ifaces=(wan(), st))
    assert d["failed"] == "netifd" and net.sent == []
    text = [c["text"] for c in d["checks"] if c["name"] == "netifd"][0]
    assert text == (CODES["MISSING_PEER_ADDRESS"] + " (MISSING_PEER_ADDRESS); "
                    + CODES["INVALID_TTL"] + " (INVALID_TTL)")
    assert [c["status"] for c in d["checks"]][2:] == ["skip"] * 8


def test_unknown_protocol_means_netifd_needs_a_restart():
    st = {"interface": "wan6", "up": False, "errors": [{"subsystem": "interface", "code": "INVALID_PROTO"}]}
    d, _ = run(ifaces=(st,))
    assert d["failed"] == "interface" and "/etc/init.d/network restart" in d["summary"]


def test_missing_and_foreign_interfaces():
    d, _ = run(ifaces=(wan(),))
    assert d["failed"] == "interface" and "knows no interface 'wan6'" in d["summary"]
    d, _ = run(ifaces=(dict(wan(), interface="wan6"),))
    assert "'wan6' uses protocol 'dhcp', not sixbroker" in d["summary"]


def test_missing_device_in_the_kernel():
    t = Tree()
    d, _ = run(tree=t)
    assert d["failed"] == "device" and "sb-wan6 does not exist in the kernel" in d["summary"]


def test_kernel_lost_the_default_route():
    t = lab()
    t.write(t.proc + "ipv6_route", IPV6_ROUTE.split("\n")[0] + "\n")
    d, _ = run(tree=t)
    assert d["failed"] == "default_route"


def test_prefix_without_a_lan_is_a_warning():
    st = wan6(**{"ipv6-prefix": [{"address": "2001:db8:5b11::", "mask": 64, "assigned": {}}]})
    d, _ = run(ifaces=(wan(), st))
    assert verdicts(d)["lan_prefix"] == "warn" and "ip6assign" in d["summary"]


def test_netifd_not_answering():
    d = diagnose.diagnose(Bus(fail="Connection refused"), "wan6")
    assert d["failed"] == "interface" and "Could not ask netifd" in d["summary"]


# ---- the rpcd plugin's logic ---------------------------------------------------------------------------

def run_main(argv, stdin_text=""):
    if StringIO is None:
        pytest.skip("no io.StringIO")
    out = StringIO()
    rc = rpcd.main(argv, StringIO(stdin_text), out)
    return rc, json.loads(out.getvalue())


def test_list_prints_the_method_map():
    rc, out = run_main(["luci.sixbroker", "list"])
    assert rc == 0 and out == {"status": {"interface": "str"}, "diagnose": {"interface": "str"}}


def test_unknown_method_and_bad_input_are_error_objects():
    assert run_main(["x", "call", "reboot"], "{}") == (1, {"error": "Method not found", "code": "USAGE"})
    assert run_main(["x", "call", "status"], "{not json") == (1, {"error": "Invalid JSON on standard input",
                                                                  "code": "USAGE"})
    assert run_main(["x"]) == (2, {"error": "usage: luci.sixbroker list | call <method>", "code": "USAGE"})


def test_arguments_are_checked_against_the_signature():
    assert rpcd.check_args("status", {}) is None
    assert rpcd.check_args("status", {"ubus_rpc_session": "0123abcd", "interface": "wan6"}) is None
    assert rpcd.check_args("status", {"bogus": 1})["error"] == "Invalid argument 'bogus'"
    assert rpcd.check_args("diagnose", {})["error"] == "Missing argument 'interface'"
    assert rpcd.check_args("diagnose", {"interface": 6})["error"] == "Invalid argument 'interface': text expected"
    assert rpcd.check_args("diagnose", {"interface": "../../x"})["error"] == "Invalid interface name"
    assert rpcd.check_args("status", [])["code"] == "USAGE"


def test_call_with_a_bus():
    bus = Bus(wan(), wan6(up=False))
    out = rpcd.call("status", {"ubus_rpc_session": "x"}, bus)
    assert [t["interface"] for t in out["tunnels"]] == ["wan6"] and not bus.closed
    out = rpcd.call("diagnose", {"interface": "wan6"}, bus)
    assert out["failed"] == "netifd"
    assert rpcd.call("status", {}, Bus(fail="gone")) == {"error": CODES["UBUS_FAIL"] + ": gone",
                                                         "code": "UBUS_FAIL"}


def test_shell_list_is_the_python_method_map():
    # files/usr/libexec/rpcd/luci.sixbroker answers `list` itself: it must say what rpcd.METHODS says
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    with open(here + "/../../files/usr/libexec/rpcd/luci.sixbroker") as f:
        text = f.read()
    start = text.index("echo '") + 6
    assert json.loads(text[start:text.index("'", start)]) == rpcd.METHODS


def test_terminal_text_of_a_down_tunnel_says_what_it_is_set_to_do():
    st = wan6(up=False, errors=[{"subsystem": "sixbroker", "code": "PEER_NOT_RESOLVED"}] * 3)
    s = status.tunnel_status(st, 0)
    s["config"] = status.configured("wan6", {"peeraddr": "broker.example", "ip6addr": "2001:db8:5b10::b/127",
                                             "ip6prefix": ["2001:db8:5b11::/64"]})
    text = statuscli.format_tunnel(s)
    assert "  set to   broker broker.example, tunnel 2001:db8:5b10::b/127, broker's end 2001:db8:5b10::a (derived)" in text
    assert "           prefixes 2001:db8:5b11::/64, link (route to the broker), mtu auto, device sb-wan6" in text
    assert text.count("PEER_NOT_RESOLVED") == 1
