"""The router's one entry point: <python3|micropython> /usr/lib/sixbroker/sixbroker/run.py COMMAND ARGS...

The shell wrappers (the netifd shim, the hotplug script, the rpcd plugin, /usr/bin/sixbroker) run this
file.  A file run as a program is compiled on every start (netifd.py alone took 7.6 ms on CPython, on
every ifup); imported modules load from their compiled caches.  So the work lives in modules and the
file that runs stays this small.
"""
import sys

COMMANDS = ("netifd", "hotplug", "rpcd", "cli")


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd not in COMMANDS:
        sys.stderr.write("usage: run.py " + "|".join(COMMANDS) + " ARGS...\n")
        return 2
    module = __import__("sixbroker." + cmd, None, None, ["main"])
    # netifd, hotplug and rpcd read argv as their own program would (argv[0] the name); cli the rest
    return module.main(argv[2:] if cmd == "cli" else argv[1:])


if __name__ == "__main__":
    # run as a file: the import root is the directory above the package
    sys.path[0] = sys.path[0].rsplit("/", 1)[0]
    sys.exit(main(sys.argv))
