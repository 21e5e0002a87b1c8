"""Run the netifd shim as netifd does, in a network namespace, against tests/ubusd_fake.py answering as
netifd (tests/netifd_policy.py Interface for the handler's own interface): for the host tests
(tests/openwrt/test_handler.py, veth devices) and the real-kernel ones (tests/e2e/test_handler_sit.py, sit).

The argv is proto-shell.c proto_shell_handler's: `./sixbroker.sh sixbroker setup <iface> '<JSON>'`, run
by busybox sh in /lib/netifd/proto; stdout and stderr are what netifd logs.
"""
import json
import os
import subprocess

from netifd_policy import Interface, check_notify
from ubusd_fake import FakeUbusd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTO_DIR = os.path.join(ROOT, "files", "lib", "netifd", "proto")
LIB = os.path.join(ROOT, "src")


def netifd_objects(model, interfaces):
    """ubus objects as netifd registers them (ubus.c): the shared network.interface (notify_proto, dump)
    and one network.interface.<name> per interface (status).  interfaces: status tables of the others."""
    def dump(call):
        return {"interface": list(interfaces) + [model.status()]}

    objects = {"network.interface": {"notify_proto": lambda call: model.notify(call.data), "dump": dump},
               "network.interface." + model.name: {"status": lambda call: model.status()}}
    for st in interfaces:
        objects["network.interface." + st["interface"]] = {"status": st}
    return objects


def run(python, ns, config, interfaces, model=None, iface="wan6", action="setup", run_dir=None, lib=LIB,
        proto_dir=PROTO_DIR):
    """(the finished process, the notify_proto messages in order); every message held to netifd's
    policies, and the fake ubusd saw nothing malformed."""
    model = model or Interface(iface)
    with FakeUbusd(netifd_objects(model, interfaces)) as ub:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SIXBROKER_PYTHON": python, "SIXBROKER_LIB": lib}
        if run_dir:
            env["SIXBROKER_RUN_DIR"] = run_dir
        env.update(ub.env())
        argv = ["ip", "netns", "exec", ns, "busybox", "sh", "./sixbroker.sh", "sixbroker", action, iface,
                json.dumps(config)]
        proc = subprocess.run(argv, cwd=proto_dir, env=env, capture_output=True, text=True, timeout=60)
        assert ub.errors == []
        sent = [c.data for c in ub.calls if c.method == "notify_proto"]
    for msg in sent:
        assert check_notify(msg) == [], (msg, check_notify(msg))
    return proc, sent
