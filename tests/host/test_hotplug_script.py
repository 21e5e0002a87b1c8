"""files/etc/hotplug.d/iface/95-sixbroker as hotplug-call runs it (busybox sh, ACTION and INTERFACE in the
environment), on CPython and MicroPython, against a fake ubusd that answers netifd's interface dump and
records the down/up calls /sbin/ifup would make."""
import os
import subprocess

import pytest

from ubusd_fake import FakeUbusd

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "files", "etc", "hotplug.d", "iface", "95-sixbroker")
INTERPRETERS = {"cpython": os.path.join(ROOT, ".venv", "bin", "python"),
                "micropython": os.path.join(ROOT, ".venv", "bin", "micropython")}


def tunnel(name, local, local_from="tunlink"):
    return {"interface": name, "proto": "sixbroker", "up": True, "l3_device": "sb-" + name,
            "data": {"sixbroker": {"local": local, "remote": "203.0.113.10", "local_from": local_from,
                                   "tunlink": "wan"}}}


DUMP = {"interface": [
    {"interface": "wan", "proto": "dhcp", "up": True, "l3_device": "eth1",
     "ipv4-address": [{"address": "198.51.100.30", "mask": 24}]},        # the new lease
    tunnel("wan6", "198.51.100.20"),                                       # stale
    tunnel("hetun", "198.51.100.30"),                                      # already current
    tunnel("pinned", "192.0.2.99", local_from="option"),                  # ipaddr set: never follows
]}


def run(interp, action, network_config, tmp_path):
    cfg = tmp_path / "network"
    cfg.write_text(network_config)
    with FakeUbusd({"network.interface": {"dump": DUMP, "down": None, "up": None}}) as ub:
        env = {"PATH": "/usr/bin:/bin", "ACTION": action, "INTERFACE": "wan",
               "SIXBROKER_PYTHON": INTERPRETERS[interp], "SIXBROKER_LIB": os.path.join(ROOT, "src"),
               "SIXBROKER_NETWORK_CONFIG": str(cfg)}
        env.update(ub.env())
        p = subprocess.run(["busybox", "sh", SCRIPT], env=env, capture_output=True, text=True, timeout=60)
        assert ub.errors == []
        return p, [(c.method, c.data) for c in ub.calls], len(ub.clients)


@pytest.mark.parametrize("interp", ["cpython", "micropython"])
def test_only_the_stale_tunnel_is_restarted(interp, tmp_path):
    p, calls, _ = run(interp, "ifupdate", "config interface 'wan6'\n\toption proto 'sixbroker'\n", tmp_path)
    assert p.returncode == 0, p.stderr
    assert calls == [("dump", {}), ("down", {"interface": "wan6"}), ("up", {"interface": "wan6"})]
    assert p.stderr == "sixbroker: wan6: local address changed, restarting the tunnel\n"


@pytest.mark.parametrize("interp", ["cpython", "micropython"])
def test_other_events_start_nothing(interp, tmp_path):
    p, calls, clients = run(interp, "ifdown", "config interface 'wan6'\n\toption proto 'sixbroker'\n", tmp_path)
    assert (p.returncode, calls, clients) == (0, [], 0)


@pytest.mark.parametrize("interp", ["cpython", "micropython"])
def test_no_sixbroker_interface_starts_nothing(interp, tmp_path):
    p, calls, clients = run(interp, "ifupdate", "config interface 'wan'\n\toption proto 'dhcp'\n", tmp_path)
    assert (p.returncode, calls, clients) == (0, [], 0)
