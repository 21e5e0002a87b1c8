"""The shim's teardown as netifd runs it, on a router's userland: busybox alone in a chroot, the package
staged into it as opkg installs it, and /usr/bin/python3 and /usr/bin/micropython both there (recorders:
each logs that it was started).

netifd (proto-shell.c proto_shell_handler, the `teardown` branch) runs
    ./sixbroker.sh sixbroker teardown <iface> '<config JSON>' [<main device>]
from /lib/netifd/proto (script_task.dir_fd = proto_fd; netifd_start_process fchdir()s there and
execvp()s argv[0]), with ERROR=<n> added to its own environment when a proto task failed.  It does so after
every ifdown, after a setup that sent "setup failed" (proto_shell_setup_failed) and when the interface the
tunnel depends on goes down (proto_shell_if_down_cb); a teardown while one runs returns at once (S_TEARDOWN),
but a later one comes again: teardown must be repeatable.  The sixbroker protocol is no-device, so netifd
has no main device to pass; the argv with one is tried too.
"""
import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MKIPK = os.path.join(ROOT, "scripts", "mkipk.py")
BUSYBOX = shutil.which("busybox")
STRACE = shutil.which("strace")
CONFIG = {"peeraddr": "203.0.113.10", "ip6addr": "2001:db8:5b10::b/127", "ip6prefix": ["2001:db8:5b11::/64"],
          "tunlink": "wan"}
RECORDER = '#!/bin/sh\necho "$0 $*" >> /tmp/interpreters\n'


def tree(root):
    """Every path under root with its type and bytes: what a test compares before and after."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            data = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    data = f.read()
            out[os.path.relpath(path, root)] = (stat.S_IFMT(st.st_mode), data)
    return out


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    if os.geteuid() != 0 or shutil.which("chroot") is None:
        pytest.skip("a chroot needs root and chroot(8)")
    if BUSYBOX is None:
        pytest.skip("busybox is not installed (busybox-static)")
    root = tmp_path_factory.mktemp("router")
    (root / "bin").mkdir()
    shutil.copy(BUSYBOX, str(root / "bin" / "busybox"))
    if subprocess.run(["chroot", str(root), "/bin/busybox", "true"], capture_output=True).returncode != 0:
        pytest.skip("%s does not run alone in a chroot (want busybox-static)" % BUSYBOX)
    subprocess.run(["chroot", str(root), "/bin/busybox", "--install", "-s", "/bin"], check=True)
    for d in ("tmp", "var/run", "usr/bin", "dev"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.mknod(str(root / "dev" / "null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    for name in ("python3", "micropython"):
        (root / "usr" / "bin" / name).write_text(RECORDER)
        (root / "usr" / "bin" / name).chmod(0o755)
    r = subprocess.run([sys.executable, MKIPK, "stage", "--no-mpy", "sixbroker", str(root)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    return root


def teardown(root, argv, env=None, trace=None):
    """Run argv in the router's /lib/netifd/proto the way netifd does; the programs run come back too."""
    cmd = ["chroot", str(root), "/bin/sh", "-c", 'cd /lib/netifd/proto && exec "$@"', "sh"] + argv
    if trace is not None:
        cmd = [STRACE, "-f", "-qq", "-e", "trace=execve", "-o", str(trace)] + cmd
    full_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    full_env.update(env or {})
    p = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=30)
    execs = None
    if trace is not None:
        execs = [line.split('execve("', 1)[1].split('"', 1)[0] for line in open(str(trace)) if "execve(" in line]
    return p, execs


ARGVS = {
    "no device (our no-device protocol)": ["./sixbroker.sh", "sixbroker", "teardown", "wan6", json.dumps(CONFIG)],
    "with a main device": ["./sixbroker.sh", "sixbroker", "teardown", "wan6", json.dumps(CONFIG), "sb-wan6"],
    "empty config": ["./sixbroker.sh", "sixbroker", "teardown", "wan6", "{}"],
}


@pytest.mark.parametrize("shape", sorted(ARGVS))
def test_teardown_starts_no_interpreter_and_leaves_nothing(router, tmp_path, shape):
    (router / "var" / "run" / "sixbroker").mkdir(exist_ok=True)
    before = tree(str(router))
    # what the setup left for the hotplug script (src/sixbroker/openwrt/hotplug.py record)
    record = router / "var" / "run" / "sixbroker" / "wan6.follows"
    record.write_text("wan 198.51.100.20\n")
    for env in ({}, {"ERROR": "1"}):
        p, execs = teardown(router, ARGVS[shape], env=env, trace=tmp_path / "trace" if STRACE else None)
        assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
        assert not (router / "tmp" / "interpreters").exists()
        if execs is not None:
            # chroot, the sh around it, the shim's own /bin/sh, and an rm only while there was a record
            assert not [e for e in execs if "python" in e], execs
            assert execs[1:3] == ["/bin/sh", "./sixbroker.sh"], execs
            assert execs[3:] in ([], ["/bin/rm"]), execs
        assert tree(str(router)) == before          # the record is gone; nothing else was made
    # and the other tunnels' records stay
    other = router / "var" / "run" / "sixbroker" / "home.follows"
    other.write_text("wan 198.51.100.20\n")
    teardown(router, ARGVS[shape])
    assert other.read_text() == "wan 198.51.100.20\n"
    other.unlink()


def test_an_interface_name_never_reaches_outside_the_run_directory(router):
    victim = router / "var" / "run" / "x.follows"
    victim.write_text("not ours\n")
    for name in ("../x", "/x", ""):
        p, _ = teardown(router, ["./sixbroker.sh", "sixbroker", "teardown", name, "{}"])
        assert p.returncode == 0, p.stderr
    assert victim.read_text() == "not ours\n"
    victim.unlink()
    assert not (router / "tmp" / "interpreters").exists()


def test_setup_still_goes_to_the_interpreter(router):
    # the recorder stands in for python3: setup reaches it with the config in the environment
    p, _ = teardown(router, ["./sixbroker.sh", "sixbroker", "setup", "wan6", json.dumps(CONFIG)])
    assert p.returncode == 0, p.stderr
    log = router / "tmp" / "interpreters"
    assert log.read_text() == "/usr/bin/python3 /usr/lib/sixbroker/sixbroker/run.py netifd sixbroker setup wan6 -\n"
    log.unlink()
