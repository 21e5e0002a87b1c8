"""`sixbroker join LINE` on OpenWrt: files/usr/bin/sixbroker run by dash with openwrt/join.py on
CPython and MicroPython, with busybox's applets, against a fake `uci` and `ifup` that record what they were given.

The path is the router's: the wrapper asks `uci show network` for the interfaces of other protocols, Python
checks the line and writes the certificate, the wrapper pipes the printed script to `uci batch` and runs
`ifup`.  The script is read back with core/uci (libuci's reading) and validated as the handler validates;
every bad vector of tests/data/join/vectors.json is refused with its code, with no uci call that writes
and no certificate.
"""
import base64
import json
import os
import shutil
import ssl
import subprocess

import pytest

from sixbroker.core import options, uci

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WRAPPER = os.path.join(ROOT, "files", "usr", "bin", "sixbroker")
SRC = os.path.join(ROOT, "src")
INTERPRETERS = {"cpython": os.path.join(ROOT, ".venv", "bin", "python"),
                "micropython": os.path.join(ROOT, ".venv", "bin", "micropython")}
VECTORS = json.load(open(os.path.join(ROOT, "tests", "data", "join", "vectors.json")))
BUSYBOX = shutil.which("busybox")
# dash, not busybox sh: Debian's busybox runs its own `ifup` applet before any in PATH (OpenWrt's has none,
# /sbin/ifup is a script), so the fake could not be reached; sed and the rest are busybox's
SHELL = "/bin/dash"
both = pytest.mark.parametrize("interp", sorted(INTERPRETERS))
# what `uci show network` prints on a fresh router (the lan, the wan, an older tunnel of ours)
SHOW = ("network.lan=interface\nnetwork.lan.proto='static'\nnetwork.wan=interface\nnetwork.wan.proto='dhcp'\n"
        "network.old6=interface\nnetwork.old6.proto='sixbroker'\n")
FAKE_UCI = """#!/bin/sh
echo "uci $*" >> "$LOG"
[ "$1" = -q ] && shift
case "$1" in
show) cat "$SHOW" ;;
batch) cat > "$BATCH" ;;
esac
"""


@pytest.fixture
def router(tmp_path):
    if BUSYBOX is None:
        pytest.skip("busybox is not installed")
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for applet in ("sh", "sed", "cat", "echo", "printf"):
        os.symlink(BUSYBOX, str(bin_ / applet))
    (bin_ / "uci").write_text(FAKE_UCI)
    (bin_ / "ifup").write_text('#!/bin/sh\necho "ifup $*" >> "$LOG"\n')
    for f in ("uci", "ifup"):
        (bin_ / f).chmod(0o755)
    (tmp_path / "show").write_text(SHOW)
    return tmp_path


def join(router, interp, *args):
    env = {"PATH": str(router / "bin"), "SIXBROKER_PYTHON": INTERPRETERS[interp], "SIXBROKER_LIB": SRC,
           "SIXBROKER_CERT_DIR": str(router / "etc"), "LOG": str(router / "log"),
           "SHOW": str(router / "show"), "BATCH": str(router / "batch")}
    p = subprocess.run([SHELL, WRAPPER, "join"] + list(args), env=env, capture_output=True, text=True,
                       timeout=60)
    log = (router / "log").read_text().splitlines() if (router / "log").exists() else []
    return p, log


@both
def test_a_good_line_is_written_and_brought_up(router, interp):
    v = VECTORS["good"][0]
    assert "cert" in v["fields"]
    p, log = join(router, interp, v["pasted"])
    assert p.returncode == 0, p.stderr
    assert log == ["uci -q show network", "uci batch", "ifup home"]
    script = (router / "batch").read_text()
    assert script.endswith("commit network\n")
    # the batch read back as a file holds (libuci's quoting, one command per line)
    text = "".join(l.replace("set network.home=''", "").replace("set network.home='interface'",
                                                                 "config interface 'home'")
                   .replace("set network.home.", "\toption ").replace("add_list network.home.", "\tlist ")
                   .replace("=", " ", 1) + "\n" for l in script.splitlines()[:-1] if l != "set network.home=''")
    sec = uci.parse(text).find("interface")[0]
    cfg = dict(sec.options)
    pem = str(router / "etc" / "home.pem")
    f = v["fields"]
    assert cfg == {"proto": "sixbroker", "peeraddr": f["peer"], "ip6addr": f["ip6addr"], "ip6gw": f["ip6gw"],
                   "ip6prefix": f["ip6prefix"], "mtu": str(f["mtu"]), "tunnelid": "home", "updatekey": f["key"],
                   "updateurl": f["url"], "updatecert": pem}
    del cfg["proto"]
    o = options.validate(cfg, strict=True)
    assert o.update["cert"] == pem and o.update["key"] == f["key"]
    # the certificate, as the broker has it
    assert ssl.PEM_cert_to_DER_cert(open(pem).read()) == base64.b64decode(f["cert"])


@both
def test_interface_name_and_a_line_in_pieces(router, interp):
    v = [g for g in VECTORS["good"] if "cert" not in g["fields"]][0]
    line = v["line"]
    p, log = join(router, interp, "--interface", "wan6", line[:40], line[40:])
    assert p.returncode == 0, p.stderr
    assert log[-1] == "ifup wan6"
    script = (router / "batch").read_text()
    assert "set network.wan6='interface'" in script and "updatecert" not in script
    assert "set network.wan6.tunnelid='%s'" % v["fields"]["name"] in script
    assert not (router / "etc").exists()


@both
def test_bad_lines_write_nothing(router, interp):
    for v in VECTORS["bad"]:
        p, log = join(router, interp, v["line"])
        assert p.returncode == 1, v
        assert "sixbroker join: %s: " % v["code"] in p.stderr, (v, p.stderr)
        assert log == ["uci -q show network"], v
        assert not (router / "etc").exists() and not (router / "batch").exists()
        (router / "log").unlink()


@both
def test_an_interface_of_another_protocol_is_not_replaced(router, interp):
    good = VECTORS["good"][0]["line"]
    for iface, code in (("wan", "JOIN_INTERFACE_TAKEN"), ("bad-name", "INVALID_NAME")):
        p, log = join(router, interp, good, "--interface", iface)
        assert p.returncode == 1 and "sixbroker join: %s: " % code in p.stderr, p.stderr
        assert log == ["uci -q show network"]
        assert not (router / "etc").exists() and not (router / "batch").exists()
        (router / "log").unlink()
    # one of ours is replaced
    p, log = join(router, interp, good, "--interface", "old6")
    assert p.returncode == 0 and log[-1] == "ifup old6", p.stderr
