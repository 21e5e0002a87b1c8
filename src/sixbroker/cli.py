"""`sixbroker`: one command, both ends.  Each subcommand imports only what it needs, so the router's
`sixbroker status` never loads broker code or the kernel appliers."""

import sys


USAGE = """usage: sixbroker <command> ...

commands:
  router up|down|status|update  a plain Linux router's end of the tunnel (not OpenWrt: there netifd does it)
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
    if cmd == "router" and rest[:1] == ["update"]:
        # its own module: the update loop imports router (for `up`), so router cannot dispatch to it
        module, rest = "sixbroker.linuxrouter.follow", rest[1:]
    else:
        module = {"router": "sixbroker.linuxrouter.router", "server": "sixbroker.broker.cli",
                  "status": "sixbroker.openwrt.statuscli"}.get(cmd)
    if module is None:
        sys.stderr.write("sixbroker: unknown command '" + cmd + "'\n" + USAGE)
        return 2
    try:
        run = __import__(module, None, None, ["main"]).main
    except ImportError as e:
        # the OpenWrt package ships the router end only, not the broker or the standalone mode
        sys.stderr.write("sixbroker: '" + cmd + "' is not available here: " + str(e) + "\n")
        return 1
    return run(rest)



if __name__ == "__main__":
    sys.exit(main())
