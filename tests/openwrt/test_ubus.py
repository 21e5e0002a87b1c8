"""sixbroker.openwrt.ubus (and the tests' one-shot ubus_once) against the fake ubusd (tests/ubusd_fake.py), under CPython and
MicroPython."""
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

import ubus_once
from sixbroker.openwrt import blobmsg, ubus
from ubusd_fake import FakeUbusd, Reply, T, encode_members
from core.test_blobmsg import CASES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")
SRC = os.path.join(ROOT, "src")
TESTS = os.path.join(ROOT, "tests")

WAN_STATUS = {
    "up": True, "pending": False, "available": True, "uptime": 86017, "l3_device": "eth1",
    "device": "eth1", "ipv4-address": [{"address": "192.0.2.2", "mask": 24}],
    "route": [{"target": "0.0.0.0", "mask": 0, "nexthop": "192.0.2.1", "source": "0.0.0.0/0"}],
    "data": {},
}

# what the protocol handler sends when the tunnel is up (openwrt-contract.md: action 0)
NOTIFY = {
    "action": 0, "interface": "wan6in4", "link-up": True, "ifname": "6in4-wan6in4",
    "address-external": False, "keep": False,
    "tunnel": {"mode": "sit", "local": "192.0.2.2", "remote": "198.51.100.1", "ttl": 64,
               "mtu": 1480, "link": "eth1"},
    "ip6addr": [{"ipaddr": "2001:db8::2", "mask": "127", "preferred": -1, "valid": -1}],
    "routes6": [{"target": "::", "netmask": "0", "gateway": "2001:db8::1", "metric": 1024}],
    "ip6prefix": ["2001:db8:1::/48"],
    "data": {"zone": "wan", "firewall": [{"type": "rule", "proto": "41", "src": "wan",
                                          "src_ip": "198.51.100.1", "target": "ACCEPT"}]},
}


@pytest.fixture
def fake():
    with FakeUbusd(objects={
        "network.interface": {"notify_proto": None},
        "network.interface.wan": {"status": WAN_STATUS, "up": None,
                                  "fail": Reply(status=ubus.STATUS_INVALID_ARGUMENT)},
    }) as ub:
        yield ub
        assert ub.errors == []


@pytest.fixture(autouse=True)
def no_socket_from_the_environment(monkeypatch):
    monkeypatch.delenv("SIXBROKER_UBUS_SOCKET", raising=False)


# -- the fake's own codec agrees with the hand-built bytes --------------------------------------------


@pytest.mark.parametrize("data,wire", CASES)
def test_fake_encoder_matches_hand_built_bytes(data, wire):
    assert encode_members(data) == wire


# -- calls ----------------------------------------------------------------------------------------


def test_status_reply_decodes(fake):
    with ubus.connect(fake.socket_path) as conn:
        assert conn.client_id == fake.clients[0] and conn.client_id != 0
        assert conn.call("network.interface.wan", "status") == WAN_STATUS
    assert fake.lookups == ["network.interface.wan"]
    (c,) = fake.calls
    assert (c.object, c.method, c.raw, c.typed) == ("network.interface.wan", "status", b"", {})
    assert c.objid == fake.object_id("network.interface.wan")


def test_notify_proto_arrives_with_netifd_types(fake):
    assert ubus_once.call("network.interface", "notify_proto", NOTIFY, socket_path=fake.socket_path) is None
    (c,) = fake.calls
    assert c.data == NOTIFY
    assert c.raw == blobmsg.encode_table(NOTIFY)
    t = c.typed
    assert t["action"] == ("int32", 0)
    assert t["link-up"] == ("int8", 1) and t["keep"] == ("int8", 0)
    assert t["interface"] == ("string", "wan6in4")
    assert t["tunnel"][0] == "table" and t["tunnel"][1]["ttl"] == ("int32", 64)
    assert t["ip6addr"] == ("array", [("table", {
        "ipaddr": ("string", "2001:db8::2"), "mask": ("string", "127"),
        "preferred": ("int32", -1), "valid": ("int32", -1)})])
    assert t["ip6prefix"] == ("array", [("string", "2001:db8:1::/48")])
    assert t["data"][1]["firewall"][1][0][1]["proto"] == ("string", "41")


def test_every_json_type_reaches_the_object_typed(fake):
    data = {"i": 5, "neg": -5, "big": 2 ** 40, "t": True, "f": False, "d": 0.25, "n": None,
            "s": "x", "empty": {}, "list": [1, "a", [], {"k": None}]}
    ubus_once.call("network.interface", "notify_proto", data, socket_path=fake.socket_path)
    assert fake.calls[0].typed == {
        "i": ("int32", 5), "neg": ("int32", -5), "big": ("int64", 2 ** 40), "t": ("int8", 1),
        "f": ("int8", 0), "d": ("double", 0.25), "n": ("unspec", None), "s": ("string", "x"),
        "empty": ("table", {}),
        "list": ("array", [("int32", 1), ("string", "a"), ("array", []),
                           ("table", {"k": ("unspec", None)})]),
    }


def test_reply_types_decode(fake):
    fake.add_object("test", {"types": {"a": T("int16", -3), "b": T("int64", 2 ** 40), "c": T("int8", 0),
                                       "d": 1.5, "e": None, "f": [T("int8", 2)]}})
    assert ubus_once.call("test", "types", socket_path=fake.socket_path) == {
        "a": -3, "b": 2 ** 40, "c": False, "d": 1.5, "e": None, "f": [True]}


def test_no_reply_data_is_none(fake):
    assert ubus_once.call("network.interface.wan", "up", socket_path=fake.socket_path) is None


def test_first_of_several_replies(fake):
    fake.add_object("many", {"m": Reply(data=[{"n": 1}, {"n": 2}])})
    assert ubus_once.call("many", "m", socket_path=fake.socket_path) == {"n": 1}


def test_one_connection_many_calls(fake):
    with ubus.connect(fake.socket_path) as conn:
        for i in range(5):
            conn.call("network.interface", "notify_proto", {"action": i})
    assert [c.data["action"] for c in fake.calls] == [0, 1, 2, 3, 4]
    # libubus numbers requests from 1, one per LOOKUP and INVOKE (libubus-req.c ubus_start_request)
    assert [c.seq for c in fake.calls] == [2, 4, 6, 8, 10]
    assert len(set(c.client for c in fake.calls)) == 1


def test_environment_names_the_socket(fake, monkeypatch):
    monkeypatch.setenv("SIXBROKER_UBUS_SOCKET", fake.socket_path)
    assert ubus_once.call("network.interface.wan", "status")["l3_device"] == "eth1"


def test_older_default_socket_is_the_fallback(fake, monkeypatch, tmp_path):
    monkeypatch.setattr(ubus, "SOCKET_PATHS", (str(tmp_path / "ubus" / "ubus.sock"), fake.socket_path))
    with ubus.connect() as conn:
        assert conn.path == fake.socket_path


def test_concurrent_clients(fake):
    errors = []

    def one(i):
        try:
            ubus_once.call("network.interface", "notify_proto", {"n": i}, socket_path=fake.socket_path)
        except Exception as e:  # collected, asserted below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(c.data["n"] for c in fake.calls) == list(range(8))
    assert len(set(c.client for c in fake.calls)) == 8


def test_old_ubusd_with_host_order_header():
    # before ubus made seq and peer big-endian, a little-endian ubusd wrote them in its own order
    with FakeUbusd(objects={"network.interface.wan": {"status": {"up": True}}},
                   host_order_header=True) as old:
        assert ubus_once.call("network.interface.wan", "status", timeout=2,
                         socket_path=old.socket_path) == {"up": True}
        assert old.errors == []


# -- failures -------------------------------------------------------------------------------------


def test_socket_missing(tmp_path):
    path = str(tmp_path / "ubus.sock")
    with pytest.raises(ubus.UbusError) as e:
        ubus_once.call("network.interface", "notify_proto", {}, socket_path=path)
    assert e.value.code == "UBUS_FAIL" and e.value.status == ubus.STATUS_CONNECTION_FAILED
    assert str(e.value) == ("Could not talk to netifd over ubus: cannot connect to ubusd at "
                            + path + ": no such socket")


def test_both_default_sockets_missing(monkeypatch, tmp_path):
    paths = (str(tmp_path / "a.sock"), str(tmp_path / "b.sock"))
    monkeypatch.setattr(ubus, "SOCKET_PATHS", paths)
    with pytest.raises(ubus.UbusError) as e:
        ubus.connect()
    assert paths[0] + " or " + paths[1] in str(e.value) and "is ubusd running?" in str(e.value)


def test_socket_with_nobody_listening(tmp_path):
    path = str(tmp_path / "dead.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()  # the file stays, nobody accepts: what a crashed ubusd leaves behind
    with pytest.raises(ubus.UbusError) as e:
        ubus.connect(path)
    assert e.value.status == ubus.STATUS_CONNECTION_FAILED and "nobody listening" in str(e.value)


def test_object_not_found(fake):
    with pytest.raises(ubus.UbusError) as e:
        ubus_once.call("network.interface.lan", "status", socket_path=fake.socket_path)
    assert e.value.status == ubus.STATUS_NOT_FOUND
    assert str(e.value).endswith("ubus object network.interface.lan: Not found (ubus status 4)")
    assert fake.calls == []


def test_method_not_found(fake):
    with pytest.raises(ubus.UbusError) as e:
        ubus_once.call("network.interface.wan", "nope", socket_path=fake.socket_path)
    assert e.value.status == ubus.STATUS_METHOD_NOT_FOUND
    assert "ubus call network.interface.wan nope: Method not found" in str(e.value)


def test_method_error_status(fake):
    with pytest.raises(ubus.UbusError) as e:
        ubus_once.call("network.interface.wan", "fail", {"x": 1}, socket_path=fake.socket_path)
    assert e.value.status == ubus.STATUS_INVALID_ARGUMENT
    assert fake.calls[0].data == {"x": 1}


def test_timeout_then_the_connection_still_works(fake):
    fake.add_object("slow", {"late": Reply(data={"late": True}, delay=0.6), "quick": {"q": 1}})
    with ubus.connect(fake.socket_path) as conn:
        t0 = time.monotonic()
        with pytest.raises(ubus.UbusError) as e:
            conn.call("slow", "late", timeout=0.2)
        took = time.monotonic() - t0
        assert e.value.status == ubus.STATUS_TIMEOUT and 0.2 <= took < 1.5
        assert "Request timed out" in str(e.value)
        # the fake answers one request at a time, so the late answer to the first request is on
        # the socket before the answer to this one, and must be passed over
        assert conn.call("slow", "quick", timeout=5) == {"q": 1}


def test_no_answer_times_out(fake):
    fake.add_object("mute", {"m": Reply(silent=True)})
    t0 = time.monotonic()
    with pytest.raises(ubus.UbusError) as e:
        ubus_once.call("mute", "m", timeout=0.3, socket_path=fake.socket_path)
    assert e.value.status == ubus.STATUS_TIMEOUT and time.monotonic() - t0 < 1.5


def _serve_once(path, action):
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)

    def run():
        c, _ = srv.accept()
        action(c)
        time.sleep(0.5)
        c.close()
        srv.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_silent_server_bounds_connect(tmp_path):
    path = str(tmp_path / "mute.sock")
    _serve_once(path, lambda c: None)  # accepts, never says HELLO
    t0 = time.monotonic()
    with pytest.raises(ubus.UbusError) as e:
        ubus.connect(path, timeout=0.2)
    assert e.value.status == ubus.STATUS_TIMEOUT and time.monotonic() - t0 < 1.5


def test_not_ubus_on_the_socket(tmp_path):
    path = str(tmp_path / "http.sock")
    _serve_once(path, lambda c: c.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n"))
    with pytest.raises(ubus.UbusError) as e:
        ubus.connect(path)
    assert "not a ubus message" in str(e.value)


def test_ubusd_goes_away_mid_call(fake):
    fake.add_object("crash", {"c": Reply(silent=True)})
    with ubus.connect(fake.socket_path) as conn:
        threading.Timer(0.2, fake.stop).start()
        with pytest.raises(ubus.UbusError) as e:
            conn.call("crash", "c", timeout=5)
    assert "closed the connection" in str(e.value)


def test_data_must_be_a_table(fake):
    with pytest.raises(ubus.UbusError) as e:
        ubus_once.call("network.interface", "notify_proto", [1, 2], socket_path=fake.socket_path)
    assert "must be a table" in str(e.value)
    with pytest.raises(ubus.UbusError):
        ubus_once.call("network.interface", "notify_proto", {"a": {2: 3}}, socket_path=fake.socket_path)
    assert fake.calls == []


# -- MicroPython ----------------------------------------------------------------------------------

MP_CLIENT = """
import sys, os, json
sys.path.insert(0, %r)
sys.path.insert(0, %r)
from sixbroker.openwrt import ubus
import ubus_once
out = {}
out["status"] = ubus_once.call("network.interface.wan", "status")
# through the environment: MicroPython's Unix port dies on an argv string over 255 bytes
out["notify"] = ubus_once.call("network.interface", "notify_proto", json.loads(os.getenv("NOTIFY")))
for obj, method in (("network.interface.lan", "status"), ("network.interface.wan", "nope")):
    try:
        ubus_once.call(obj, method)
    except ubus.UbusError as e:
        out[obj + " " + method] = [e.code, e.status, str(e)]
print(json.dumps(out))
""" % (SRC, TESTS)


def run_micropython(code, env):
    return subprocess.run([MICROPYTHON, "-c", code], env=env, capture_output=True, text=True,
                          timeout=30)


def test_micropython_client(fake):
    env = dict(os.environ, NOTIFY=json.dumps(NOTIFY), **fake.env())
    r = run_micropython(MP_CLIENT, env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == WAN_STATUS
    assert out["notify"] is None
    assert out["network.interface.lan status"] == [
        "UBUS_FAIL", 4, "Could not talk to netifd over ubus: ubus object network.interface.lan: "
        "Not found (ubus status 4)"]
    assert out["network.interface.wan nope"][:2] == ["UBUS_FAIL", 3]
    notify = fake.calls_to("network.interface", "notify_proto")[0]
    assert notify.typed["link-up"] == ("int8", 1) and notify.typed["action"] == ("int32", 0)
    assert notify.typed["tunnel"][1]["mtu"] == ("int32", 1480)
    assert notify.data == NOTIFY


def test_micropython_errors(tmp_path):
    code = """
import sys
sys.path.insert(0, %r)
sys.path.insert(0, %r)
from sixbroker.openwrt import ubus
import ubus_once
try:
    ubus_once.call("network.interface", "status")
except ubus.UbusError as e:
    print(e.status, e)
""" % (SRC, TESTS)
    env = dict(os.environ, SIXBROKER_UBUS_SOCKET=str(tmp_path / "gone.sock"))
    r = run_micropython(code, env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("10 Could not talk to netifd over ubus: cannot connect to ubusd at "
                                + str(tmp_path / "gone.sock") + ": no such socket")


def test_micropython_timeout(fake):
    fake.add_object("mute", {"m": Reply(silent=True)})
    code = """
import sys, time
sys.path.insert(0, %r)
sys.path.insert(0, %r)
from sixbroker.openwrt import ubus
import ubus_once
t = time.ticks_ms()
try:
    ubus_once.call("mute", "m", timeout=0.3)
except ubus.UbusError as e:
    print(e.status, time.ticks_diff(time.ticks_ms(), t))
""" % (SRC, TESTS)
    r = run_micropython(code, dict(os.environ, **fake.env()))
    status, took = r.stdout.split()
    assert int(status) == ubus.STATUS_TIMEOUT and 300 <= int(took) < 2000, r.stderr


def test_fake_as_a_program(tmp_path):
    """The fake run standalone (for benchmarks and other processes), driven by a MicroPython client."""
    sock = str(tmp_path / "ubus.sock")
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps({"network.interface": {"notify_proto": None}}))
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "ubusd_fake.py"), sock,
                             str(objects)], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        code = ("import sys\nsys.path.insert(0, %r)\nsys.path.insert(0, %r)\nimport ubus_once\n"
                "ubus_once.call('network.interface', 'notify_proto', {'action': 3, 'error': ['X']})" % (SRC, TESTS))
        r = run_micropython(code, dict(os.environ, SIXBROKER_UBUS_SOCKET=sock))
        assert r.returncode == 0, r.stderr
        line = json.loads(proc.stdout.readline())
        assert line == {"object": "network.interface", "method": "notify_proto",
                        "typed": {"action": ["int32", 3], "error": ["array", [["string", "X"]]]}}
    finally:
        proc.terminate()
        proc.wait(10)
