"""`sixbroker`: one command, both ends.  Each subcommand imports only what it needs, so the router's
`sixbroker status` never loads broker code or pyroute2."""

import sys

USAGE = """usage: sixbroker <command> ...

commands:
  router up|down|status   a plain Linux router's end of the tunnel (not OpenWrt: there netifd does it)
  server ...              the broker on the VPS: tunnels, prefixes, kernel and firewall state
  status                  the router's tunnels, for a terminal (OpenWrt)
  version                 print the version
"""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "version":
        from sixbroker import VERSION
        print(VERSION)
        return 0
    if cmd == "router":
        from sixbroker.standalone import main as run
    elif cmd == "server":
        from sixbroker.broker.cli import main as run
    elif cmd == "status":
        from sixbroker.status import main as run
    else:
        sys.stderr.write("sixbroker: unknown command '" + cmd + "'\n" + USAGE)
        return 2
    return run(rest)


if __name__ == "__main__":
    sys.exit(main())
