"""`sixbroker`: one command, both ends.  Each subcommand imports only what it needs, so the router's
`sixbroker status` never loads broker code or the kernel appliers."""

import sys


USAGE = """usage: sixbroker <command> ...

commands:
  router join LINE        a plain Linux router: write `sixbroker server add`'s tunnel, bring it up
  router up|down|status|update  a plain Linux router's end of the tunnel (not OpenWrt: there netifd does it)
  server ...              the broker on the VPS: tunnels, prefixes, kernel and firewall state
  status                  the router's tunnels, for a terminal (OpenWrt)
  join LINE               write and bring up the tunnel of `sixbroker server add`'s line (OpenWrt)
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
    # a plain Linux router's `join` and `update` are modules of their own: both import router (for `up`),
    # so router cannot dispatch to them
    if cmd == "router" and rest[:1] in (["join"], ["update"]):
        cmd, rest = "router " + rest[0], rest[1:]
    module = {"router": "sixbroker.linuxrouter.router", "router join": "sixbroker.linuxrouter.join",
              "router update": "sixbroker.linuxrouter.follow", "server": "sixbroker.broker.cli",
              "status": "sixbroker.openwrt.statuscli", "join": "sixbroker.openwrt.join"}.get(cmd)
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
