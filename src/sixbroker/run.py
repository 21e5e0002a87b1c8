"""The router's one entry point: <python3|micropython> /usr/lib/sixbroker/sixbroker/run.py COMMAND ARGS...

The shell wrappers (the netifd shim, the hotplug script, the rpcd plugin, /usr/bin/sixbroker) run this
file.  A file run as a program is compiled on every start (netifd.py alone took 7.6 ms on CPython, on
every ifup); imported modules load from their compiled caches.  So the work lives in modules and the
file that runs stays this small.

MicroPython keeps no cache: it compiles every module it imports, on every start.  The add-on package
sixbroker-micropython holds the modules of MPY_COMMANDS precompiled in <lib>/mpy/sixbroker/, apart from
the .py (in one directory MicroPython takes the .py).  A package's submodules come from its one
directory only, so that directory goes first just for those commands.
"""
import sys

# command -> module: the OpenWrt room's three callers, and the command line
COMMANDS = {"netifd": "sixbroker.openwrt.netifd", "hotplug": "sixbroker.openwrt.hotplug",
            "rpcd": "sixbroker.openwrt.rpcd", "cli": "sixbroker.cli"}
# the commands whose every module sixbroker-micropython compiles (scripts/mkipk.py MPY_ADDONS)
MPY_COMMANDS = ("netifd", "hotplug")


def load(name, compiled):
    if compiled and sys.implementation.name == "micropython":
        mpy = sys.path[0] + "/mpy"
        sys.path.insert(0, mpy)
        try:
            return __import__(name, None, None, ["main"])
        except (ValueError, ImportError):
            # ValueError: an .mpy version this MicroPython does not load; ImportError: an add-on that
            # lacks a module.  Forget what came from there and take the .py.
            sys.path.remove(mpy)
            for key in [k for k in sys.modules if k == "sixbroker" or k.startswith("sixbroker.")]:
                del sys.modules[key]
    return __import__(name, None, None, ["main"])


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd not in COMMANDS:
        sys.stderr.write("usage: run.py " + "|".join(sorted(COMMANDS)) + " ARGS...\n")
        return 2
    module = load(COMMANDS[cmd], cmd in MPY_COMMANDS)
    # netifd, hotplug and rpcd read argv as their own program would (argv[0] the name); cli the rest
    return module.main(argv[2:] if cmd == "cli" else argv[1:])


if __name__ == "__main__":
    # run as a file: the import root is the directory above the package
    sys.path[0] = sys.path[0].rsplit("/", 1)[0]
    sys.exit(main(sys.argv))
