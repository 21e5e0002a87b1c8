"""files/etc/hotplug.d/iface/95-sixbroker as hotplug-call runs it, on CPython and MicroPython.

hotplug-call (openwrt/openwrt package/base-files/files/sbin/hotplug-call) sources every script of
/etc/hotplug.d/iface in a subshell, `( [ -f $script ] && . $script )`, with the environment netifd's
interface-event.c run_cmd() set: ACTION (eventnames[]: ifdown, ifup, ifup-failed, ifupdate; no hotplug
call for iflink, free dequeues), INTERFACE, DEVICE (the l3 device, on ifup and ifupdate only) and on ifupdate
IFUPDATE_ADDRESSES/ROUTES/PREFIXES/DATA for what the last update changed.  netifd waits for each call
before the next (call_hotplug/task_complete), so what the script costs, every event pays.

The records the script reads are written by the real handler run through the shim (setup), removed by
the shim's teardown; the addresses are a real kernel's (/proc/net/fib_trie of a network namespace).
"Starts no interpreter" is shown two ways: SIXBROKER_PYTHON names a recorder, which the script would run
before any other interpreter, and strace lists every program the script executes.
"""
import json
import os
import shutil
import subprocess

import pytest

from ubusd_fake import FakeUbusd

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "files", "etc", "hotplug.d", "iface", "95-sixbroker")
PROTO = os.path.join(ROOT, "files", "lib", "netifd", "proto")
SRC = os.path.join(ROOT, "src")
INTERPRETERS = {"cpython": os.path.join(ROOT, ".venv", "bin", "python"),
                "micropython": os.path.join(ROOT, ".venv", "bin", "micropython")}
STRACE = shutil.which("strace")

OLD, NEW = "198.51.100.20", "198.51.100.30"
SEED = {"peeraddr": "203.0.113.10", "ip6addr": "2001:db8:5b10::b/127", "ip6prefix": ["2001:db8:5b11::/64"],
        "tunlink": "wan"}


def wan(address):
    return {"interface": "wan", "proto": "dhcp", "up": True, "l3_device": "eth1",
            "ipv4-address": [{"address": address, "mask": 24}]}


def tunnel(name, local, local_from="tunlink"):
    return {"interface": name, "proto": "sixbroker", "up": True, "l3_device": "sb-" + name,
            "data": {"sixbroker": {"local": local, "remote": "203.0.113.10", "local_from": local_from,
                                   "tunlink": "wan"}}}


def objects(wan_address):
    """netifd after the WAN's new lease: three tunnels over it, one stale, one current, one pinned."""
    return {"network.interface": {"dump": {"interface": [
                wan(wan_address), tunnel("wan6", OLD), tunnel("hetun", NEW),
                tunnel("pinned", "192.0.2.99", local_from="option")]},
                "down": None, "up": None, "notify_proto": None},
            "network.interface.wan": {"status": wan(wan_address)}}


@pytest.fixture
def netns():
    """A network namespace whose loopback holds the WAN's address: the router's kernel, for fib_trie."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    name = "sbhp%d" % os.getpid()
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", OLD + "/24", "dev", "lo"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def run(tmp_path):
    """The run directory (SIXBROKER_RUN_DIR, /var/run/sixbroker on the router) of this test."""
    path = tmp_path / "run"
    path.mkdir()
    (tmp_path / "network").write_text("config interface 'wan6'\n\toption proto 'sixbroker'\n")
    return path


@pytest.fixture
def recorder(tmp_path):
    path = tmp_path / "recorder"
    path.write_text('#!/bin/sh\necho "$0 $*" >> "%s.log"\n' % path)
    path.chmod(0o755)
    return path


def recorded(recorder):
    log = str(recorder) + ".log"
    return open(log).read().splitlines() if os.path.exists(log) else []


def shim(interp, run_dir, action, iface="wan6", config=SEED, wan_address=OLD):
    """The handler as netifd runs it: ./sixbroker.sh <proto> <action> <iface> '<config>' (proto-shell.c)."""
    with FakeUbusd(objects(wan_address)) as ub:
        env = {"PATH": "/usr/bin:/bin", "SIXBROKER_PYTHON": INTERPRETERS[interp], "SIXBROKER_LIB": SRC,
               "SIXBROKER_RUN_DIR": str(run_dir)}
        env.update(ub.env())
        p = subprocess.run(["./sixbroker.sh", "sixbroker", action, iface, json.dumps(config)], cwd=PROTO,
                           env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p


def hotplug(python, run_dir, action, interface, ns=None, ub=None, trace=None, extra=None):
    """One hotplug-call of our script; with trace, the programs it executed (strace -f) come back too."""
    env = {"PATH": "/usr/bin:/bin", "ACTION": action, "INTERFACE": interface, "SIXBROKER_PYTHON": str(python),
           "SIXBROKER_LIB": SRC, "SIXBROKER_RUN_DIR": str(run_dir),
           # a router whose configuration has a sixbroker interface (read by the script before issue 11)
           "SIXBROKER_NETWORK_CONFIG": str(run_dir.parent / "network")}
    if action in ("ifup", "ifupdate"):
        env["DEVICE"] = "eth1" if interface == "wan" else "br-" + interface
    env.update(extra or {})
    if ub is not None:
        env.update(ub.env())
    argv = ["busybox", "sh", "-c", '( [ -f "$0" ] && . "$0" )', SCRIPT]
    if trace is not None:
        argv = [STRACE, "-f", "-qq", "-e", "trace=execve", "-o", str(trace)] + argv
    if ns is not None:
        argv = ["ip", "netns", "exec", ns] + argv
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    execs = None
    if trace is not None:
        execs = [line.split('execve("', 1)[1].split('"', 1)[0] for line in open(str(trace)) if "execve(" in line]
    return p, execs


def test_what_setup_records_and_teardown_removes(run, tmp_path):
    for interp in INTERPRETERS:
        shim(interp, run, "setup")
        assert os.listdir(str(run)) == ["wan6.follows"]
        assert (run / "wan6.follows").read_text() == "wan %s\n" % OLD
        shim(interp, run, "teardown")
        assert os.listdir(str(run)) == []
    pinned = dict(SEED, ipaddr="192.0.2.99")
    shim("cpython", run, "setup", config=pinned)
    assert os.listdir(str(run)) == []               # ipaddr set: nothing to follow


@pytest.mark.parametrize("interp", sorted(INTERPRETERS))
def test_a_wan_address_change_restarts_only_the_stale_tunnel(interp, run, tmp_path, netns, recorder):
    shim(interp, run, "setup")                     # wan6 follows wan, from OLD
    # the lease is renewed, same address: the script decides alone
    _, execs = hotplug(recorder, run, "ifupdate", "wan", ns=netns, extra={"IFUPDATE_ADDRESSES": "1"},
                       trace=tmp_path / "trace" if STRACE else None)
    assert recorded(recorder) == []
    assert execs in (None, ["/usr/bin/busybox"])
    # a new lease: OLD leaves the kernel, netifd reports NEW
    subprocess.run(["ip", "-n", netns, "addr", "del", OLD + "/24", "dev", "lo"], check=True)
    subprocess.run(["ip", "-n", netns, "addr", "add", NEW + "/24", "dev", "lo"], check=True)
    with FakeUbusd(objects(NEW)) as ub:
        p, _ = hotplug(INTERPRETERS[interp], run, "ifupdate", "wan", ns=netns, ub=ub)
        assert ub.errors == []
        calls = [(c.method, c.data) for c in ub.calls]
    assert calls == [("dump", {}), ("down", {"interface": "wan6"}), ("up", {"interface": "wan6"})]
    assert p.stderr == "sixbroker: wan6: local address changed, restarting the tunnel\n"


def test_events_of_other_interfaces_start_nothing(run, tmp_path, netns, recorder):
    shim("cpython", run, "setup")
    # even with the followed WAN's address gone, so that the record is stale
    subprocess.run(["ip", "-n", netns, "addr", "del", OLD + "/24", "dev", "lo"], check=True)
    for action, interface in (("ifup", "lan"), ("ifupdate", "lan"), ("ifup", "guest"), ("ifupdate", "wan6"),
                              ("ifup", "wan_6"), ("ifup", "")):
        _, execs = hotplug(recorder, run, action, interface, ns=netns,
                           trace=tmp_path / "trace" if STRACE else None)
        assert execs in (None, ["/usr/bin/busybox"]), (action, interface, execs)
    assert recorded(recorder) == []
    # the followed WAN itself does start it
    hotplug(recorder, run, "ifupdate", "wan", ns=netns)
    assert recorded(recorder) == ["%s %s/sixbroker/run.py hotplug wan" % (recorder, SRC)]


def test_other_events_of_the_followed_wan_start_nothing(run, tmp_path, netns, recorder):
    shim("cpython", run, "setup")
    subprocess.run(["ip", "-n", netns, "addr", "del", OLD + "/24", "dev", "lo"], check=True)
    for action in ("ifdown", "ifup-failed", "iflink", "free", "update", ""):
        hotplug(recorder, run, action, "wan", ns=netns)
    assert recorded(recorder) == []


def test_no_tunnel_set_up_means_nothing_to_follow(run, tmp_path, netns, recorder):
    for config in (None, dict(SEED, ipaddr="192.0.2.99")):      # none at all; one with ipaddr pinned
        if config:
            shim("cpython", run, "setup", config=config)
        _, execs = hotplug(recorder, run, "ifupdate", "wan", ns=netns,
                           trace=tmp_path / "trace" if STRACE else None)
        assert execs in (None, ["/usr/bin/busybox"])
    assert recorded(recorder) == []
    # a tunnel torn down (ifdown, or its WAN went down) follows nothing either
    shim("cpython", run, "setup")
    shim("cpython", run, "teardown")
    subprocess.run(["ip", "-n", netns, "addr", "del", OLD + "/24", "dev", "lo"], check=True)
    hotplug(recorder, run, "ifupdate", "wan", ns=netns)
    assert recorded(recorder) == []


def test_a_record_it_cannot_read_is_left_to_hotplug_py(run, tmp_path, netns, recorder):
    # half a line (a record from another version, a full disk): the script does not guess, python decides
    (run / "wan6.follows").write_text("wan")
    hotplug(recorder, run, "ifup", "wan", ns=netns)
    assert len(recorded(recorder)) == 1
