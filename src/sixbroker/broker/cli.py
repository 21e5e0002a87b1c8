"""`sixbroker server ...`: the broker's command line.

Exit status: 0 done, 1 an error (a stable code from sixbroker.core.errors on stderr, or in the JSON with
--json), 2 a usage error, 3 done but some tunnels are not in line (TUNNELS_FAILED: each named with its
own code; the rest of the kernel and the firewall is in line, and the changes are saved).  Never a traceback: an unexpected exception is INTERNAL_ERROR with its one-line
text (SIXBROKER_DEBUG=1 prints the traceback too).
"""

import argparse
import json
import os
import sys

from sixbroker.broker import db, health, metrics, pg, pops, update, updatecli, reconcile, routerconf, service
from sixbroker.broker.lock import Lock
from sixbroker.core.errors import CODES, SixbrokerError

PROG = "sixbroker server"

DESCRIPTION = """The broker end of sixbroker: 6in4 tunnels to home routers, each with a transfer /127 and a
routed prefix out of this server's prefix.  State lives in an SQLite database (--db, or $SIXBROKER_DB,
default %s); after every change the kernel and the nftables table `inet sixbroker` are brought in line
with it, and `apply` does that alone (at boot, or after a crash).""" % db.DEFAULT_PATH


ALLOW_PRIVATE = ("accept a private or CGNAT --remote: the router reaches this server over a private network "
                 "(a VPN, the same LAN), not through NAT")


TUNNEL_MODE = ("per-tunnel: a sit device per tunnel; shared: one sit device (%s) for every tunnel, whose "
               "cost stays flat with thousands of tunnels (default for a new broker: %s; later: keep)"
               % (service.SHARED_DEVICE, service.DEFAULT_TUNNEL_MODE))


class _Usage(Exception):
    pass


class _Exit(Exception):
    def __init__(self, status):
        Exception.__init__(self, status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so main() returns a status and tests call it in-process."""

    def error(self, message):
        raise _Usage("%s: %s (see %s --help)" % (self.prog, message, self.prog))

    def exit(self, status=0, message=None):
        if message:
            sys.stderr.write(message)
        raise _Exit(status)


def _parser():
    common = _Parser(add_help=False)
    # SUPPRESS: a subcommand's unset option must not overwrite the same option given before it
    common.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS,
                        help="the database (default: $SIXBROKER_DB or %s)" % db.DEFAULT_PATH)
    js = _Parser(add_help=False)
    js.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    # which PoP this host is; add and move take --pop as where the tunnel goes instead
    here = _Parser(add_help=False)
    here.add_argument("--pop", metavar="NAME", default=argparse.SUPPRESS,
                      help="the point of presence this broker is, of those sharing the database (default: "
                      "$%s or %s)" % (db.ENV_POP, db.DEFAULT_POP))

    p = _Parser(prog=PROG, description=DESCRIPTION, parents=[common])
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    s = sub.add_parser("init", parents=[common, here, js], help="set the server's prefix and addresses",
                       description="Set (or change) the broker's prefix and addresses, then apply: IPv6 "
                       "forwarding, accept_ra=2 on an uplink that takes its address from RAs, the firewall "
                       "table.  Options not given keep their earlier values.")
    s.add_argument("--prefix", help="the routed IPv6 prefix this server hands out, e.g. 2001:db8:5b00::/56")
    s.add_argument("--transfer-prefix", metavar="PREFIX",
                   help="where the tunnels' /127s come from (default: the first /64 of --prefix)")
    s.add_argument("--reserve", metavar="PREFIX", action="append",
                   help="keep a prefix of --prefix out of the pool, e.g. one the server uses itself "
                   "(repeatable; replaces the earlier list)")
    s.add_argument("--public-ipv4", metavar="ADDRESS",
                   help="the IPv4 address routers reach this server at (default, or 'auto': the uplink's, "
                   "followed by `apply` when it changes; an address given is kept as given)")
    s.add_argument("--local-ipv4", metavar="ADDRESS",
                   help="the tunnels' local IPv4 address if not the public one (1:1 NAT)")
    s.add_argument("--uplink", metavar="IFNAME", help="the server's upstream interface, e.g. eth0 ('' for none)")
    s.add_argument("--uplink-ra", choices=("auto", "yes", "no"), default="auto",
                   help="keep accepting RAs on the uplink (accept_ra=2); auto: when it takes its "
                   "address from them now")
    s.add_argument("--netns", metavar="NAME", help="run the tunnels in this network namespace ('' for none)")
    s.add_argument("--update-url", metavar="URL",
                   help="the update service's URL as routers reach it, e.g. https://vps.example.net/nic/update "
                   "behind a reverse proxy with a CA-signed certificate (default: https://PUBLIC-IPV4:%d/nic/update "
                   "with the self-signed certificate made here, which the join line then carries; '' for "
                   "the default)" % updatecli.DEFAULT_PORT)
    s.add_argument("--tunnel-mode", choices=service.TUNNEL_MODES, default=None, help=TUNNEL_MODE)
    s.add_argument("--ndp-proxy", choices=service.NDP_MODES, default=None,
                   help="answer neighbour solicitations on the uplink for the tunnels' addresses and routed "
                   "prefixes (a provider that treats the VPS's /64 as on-link); auto: when the uplink has "
                   "the prefix on-link (default on a first init; later: keep)")

    s = sub.add_parser("add", parents=[common, js], help="add a tunnel and print the router's configuration",
                       description="Allocate a transfer /127 and a routed prefix for a new tunnel, apply, "
                       "and print the router's configuration (a `uci batch` script to paste).")
    s.add_argument("name", help="tunnel name: also the router's interface name (letters, digits, _)")
    s.add_argument("--remote", metavar="IPV4", help="the router's public IPv4 address (default: none yet; "
                   "the tunnel waits for the router's first update, `serve`)")
    s.add_argument("--routed-prefix-length", metavar="LEN", help="length of the routed prefix (default 64)")
    s.add_argument("--mtu", help="tunnel MTU (default %d)" % service.DEFAULT_MTU)
    s.add_argument("--allow-private", action="store_true", help=ALLOW_PRIVATE)
    s.add_argument("--pop", metavar="NAME", default=argparse.SUPPRESS,
                   help="the point of presence to place it on (default: this one, $%s or %s)"
                   % (db.ENV_POP, db.DEFAULT_POP))
    s = sub.add_parser("move", parents=[common, js], help="re-home a tunnel on another point of presence",
                       description="Give the tunnel a transfer /127 and routed prefixes from another PoP's "
                       "prefixes (the old ones are freed) and print the router's new configuration, with a new "
                       "update key (the old one stops working) and the other PoP's updater; each PoP's "
                       "`serve` (or its next `apply`) brings its own kernel in line.")
    s.add_argument("name")
    s.add_argument("--pop", metavar="NAME", required=True, dest="to_pop", help="the PoP it moves to")

    s = sub.add_parser("list", parents=[common, here, js], help="list the tunnels")
    s = sub.add_parser("show", parents=[common, here, js], help="show one tunnel")
    s.add_argument("name")
    s = sub.add_parser("remove", parents=[common, here, js], help="remove a tunnel and free its prefixes")
    s.add_argument("name")
    s = sub.add_parser("set", parents=[common, here, js], help="change a tunnel's remote address or MTU")
    s.add_argument("name")
    s.add_argument("--remote", metavar="IPV4")
    s.add_argument("--mtu")
    s.add_argument("--allow-private", action="store_true", help=ALLOW_PRIVATE)
    s = sub.add_parser("key", parents=[common, here, js], help="make a tunnel's update key anew",
                       description="With --rotate: a new update key for the tunnel (the old one stops working at "
                       "once), printed once with the join line that carries it.")
    s.add_argument("name")
    s.add_argument("--rotate", action="store_true", help="make the new key (required: the old key is never shown)")
    s = sub.add_parser("serve", parents=[common, here], help="run the HTTPS update service (dyndns2, for the routers)",
                       description="Serve GET /nic/update?hostname=NAME[&myip=A] with HTTP Basic auth NAME:KEY "
                       "(dyndns2), moving each tunnel to its home's new address.  TLS with --cert/--key, else "
                       "the self-signed certificate `init` made beside the database.")
    s.add_argument("--listen", metavar="ADDR:PORT", default="0.0.0.0:%d" % updatecli.DEFAULT_PORT,
                   help="where to listen (default 0.0.0.0:%d; [::]:PORT for IPv6)" % updatecli.DEFAULT_PORT)
    s.add_argument("--cert", metavar="PEM", help="certificate chain (e.g. certbot's fullchain.pem)")
    s.add_argument("--key", metavar="PEM", help="its private key")
    s.add_argument("--plain-http", action="store_true",
                   help="no TLS: only on a loopback --listen, behind a reverse proxy that does TLS")
    s.add_argument("--rate-source", metavar="BURST/SECONDS", default="%d/%g" % updatecli.RATE_SOURCE,
                   help="requests per source address: a burst, then one per SECONDS (0 for none)")
    s.add_argument("--rate-tunnel", metavar="BURST/SECONDS", default="%d/%g" % updatecli.RATE_TUNNEL,
                   help="authenticated requests per tunnel (0 for none)")
    s.add_argument("--metrics-listen", metavar="ADDR:PORT",
                   help="serve Prometheus metrics at http://ADDR:PORT/metrics, on a loopback or private address "
                   "only (they name every tunnel; the public port never serves them)")
    s = sub.add_parser("apply", parents=[common, here, js], help="bring the kernel and firewall in line with the database")
    s.add_argument("--if-initialised", action="store_true",
                   help="no database yet is not an error: say so and exit 0 (the systemd unit's form)")
    s.add_argument("--tunnel-mode", choices=service.TUNNEL_MODES, default=None,
                   help="move every tunnel to this mode, one at a time, printing each one's switch time; " + TUNNEL_MODE)
    s = sub.add_parser("config", parents=[common, here, js], help="print a tunnel's router configuration again")
    s.add_argument("name")
    s = sub.add_parser("info", parents=[common, here, js], help="show the server's prefixes, addresses and usage")
    return p


# ---- output -----------------------------------------------------------------------------------------------

def _out(text):
    sys.stdout.write(text)


def _json(obj):
    _out(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _tunnel_text(t):
    text = ("# tunnel %s: device %s, %s <-> %s, mtu %d\n"
            "#   transfer %s (server %s, router %s)\n"
            "#   routed %s\n" % (t["name"], t["device"], t["local"], t["remote"], t["mtu"], t["transfer"],
                                 t["server_address"], t["router_address"], ", ".join(t["routed"])))
    if "state" in t:
        text += "#   state %s\n" % _state_text(t, True)
    if t.get("health"):
        text += "#   %s\n" % _health_text(t)
    if t.get("updates"):
        u = t["updates"][0]
        text += "#   last update %s from %s: %s %s%s\n" % (u["last"], u["source"], u["answer"], u["address"],
                                                         " (%d times since %s)" % (u["count"], u["first"]) if u["count"] > 1 else "")
    return text


def _health_text(t):
    h, c = t["health"], t["traffic"]
    if h["idle_seconds"] is None:
        text = "not alive: no packet from the peer yet (since the firewall table was loaded)"
    else:
        text = "%s: last packet from the peer %s ago (%s)" % ("alive" if h["alive"] else "not alive",
                                                             health.ago(h["idle_seconds"]), h["last_packet"])
    if c is not None:
        text += "; received %d packets (%d bytes), sent %d packets (%d bytes), outer IPv4" % (
            c["rx_packets"], c["rx_bytes"], c["tx_packets"], c["tx_bytes"])
    return text


def _alive_text(t):
    h = t.get("health")
    if not h:
        return "-", "-"
    return ("yes" if h["alive"] else "no"), ("never" if h["idle_seconds"] is None else health.ago(h["idle_seconds"]))


def _state_text(t, long=False):
    if t["state"] != "failed":
        return t["state"]
    return "FAILED %s" % (t["error"]["message"] if long else t["error"]["code"])


def _list_text(tunnels):
    rows = [("NAME", "DEVICE", "REMOTE", "TRANSFER", "ROUTED", "MTU", "STATE", "ALIVE", "IDLE", "UPDATE")]
    for t in tunnels:
        u = t.get("last_update")
        rows.append((t["name"], t["device"], t["remote"] or "-", t["transfer"], ",".join(t["routed"]), str(t["mtu"]),
                     _state_text(t)) + _alive_text(t) + ("%s %s" % (u["answer"], u["last"]) if u else "-",))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        lines.append("  ".join(r[i].ljust(widths[i]) for i in range(len(r))).rstrip())
    return "\n".join(lines) + "\n"


def _count(n):
    """A pool size people can read: 2^63 transfer /127s is true, and unreadable."""
    if n < 1000000:
        return str(n)
    bits = n.bit_length()
    if n < (1 << bits) * 3 // 4:
        bits -= 1           # the nearer power of two
    return "2^%d" % bits if n == 1 << bits else "about 2^%d" % bits


def _server_text(s):
    lines = ["prefix          %s" % s["prefix"],
             "transfer prefix %s" % s["transfer_prefix"]]
    if s["reserved"]:
        lines.append("reserved        %s" % ", ".join(s["reserved"]))
    lines += ["public IPv4     %s%s" % (s["public_ipv4"], " (read from the host; apply follows it)"
                                        if s["ipv4_followed"] else ""),
              "local IPv4      %s" % s["local_ipv4"],
              "uplink          %s%s" % (s["uplink"] or "-", " (accept_ra=2)" if s["uplink_accept_ra"] else ""),
              "ndp proxy       %s" % ("on (the uplink answers for every tunnel address and routed prefix)"
                                      if s.get("ndp_proxy") else "off"),
              "tunnel mode     %s" % ("shared (one sit device, %s, for every tunnel)" % service.SHARED_DEVICE
                                      if s.get("tunnel_mode") == "shared" else "per-tunnel (a sit device each)"),
              "netns           %s" % (s["netns"] or "-"),
              "tunnels         %d (room for %s)" % (s["tunnels"], _count(s["usage"]["transfer_total"])),
              "routed /64s     %d used of %s" % (s["usage"]["routed_64s_used"],
                                                 _count(s["usage"]["routed_64s_total"]))]
    if s["usage"].get("unit", 64) > 64:
        lines[-1] = "routed /%ds    %d used of %s (routed prefixes /%d by default)" % (
            s["usage"]["unit"], s["usage"]["routed_64s_used"], _count(s["usage"]["routed_64s_total"]),
            s["routed_default_length"])
        lines.append(NO_SLAAC)
    return "\n".join(lines) + "\n"


NO_SLAAC = ("note: a /64 broker prefix routes prefixes longer than /64: a home's LAN gets no SLAAC (it "
            "needs a /64) and takes addresses by DHCPv6 (odhcpd: dhcpv6 'server', ra_flags 'managed-config')")


# ---- running ----------------------------------------------------------------------------------------------

def _apply(conn, command, change=None):
    """Reconcile (just the changed tunnel, when there is one), recorded for /metrics as `command`'s last
    apply; (report, None) or (None, SixbrokerError APPLY_FAILED) - the change itself is saved."""
    try:
        return metrics.timed_reconcile(conn, command, change), None
    except SixbrokerError as e:
        cause, why = e.code, e.text
    except Exception as e:
        _debug()
        cause, why = "INTERNAL_ERROR", "%s: %s" % (type(e).__name__, e)
    err = SixbrokerError("APPLY_FAILED", cause)
    err.cause = cause
    # the cause first, then what it means for the change that was made
    err.text = "%s: %s. %s" % (cause, why, CODES["APPLY_FAILED"])
    return None, err


def _debug():
    if os.environ.get("SIXBROKER_DEBUG"):
        import traceback
        traceback.print_exc()


def _run(args, path):
    want_json = getattr(args, "json", False)
    cmd = args.command
    if cmd == "serve":
        return updatecli.serve_main(args, path)
    # the PoP this host is: --pop, except where --pop says where a tunnel goes (add, move)
    here = getattr(args, "pop", None) if cmd not in ("add", "move") else None
    if cmd in ("list", "show", "config", "info"):
        # a read never writes: not a migration, not an empty file turned into a database
        conn = db.connect_readonly(path, here)
        try:
            if cmd == "list":
                tunnels = health.with_health(conn, update.with_updates(
                    conn, service.with_state(conn, service.views(conn)), 1))
                _json({"tunnels": tunnels}) if want_json else _out(_list_text(tunnels))
            elif cmd == "info":
                s = service.server_view(conn)
                found = _host_firewall(conn, s)
                updatecli.server_extra(conn, path, s)
                _json({"server": s}) if want_json else _out(_server_text(s) + updatecli.server_text(s))
                _warn_host_firewall(found, want_json)
            elif cmd == "show":
                t = health.with_health(conn, update.with_updates(
                    conn, service.with_state(conn, [service.show(conn, args.name)])))[0]
                _spoofed(conn, t)
                extra = ""
                if "spoofed_dropped" in t:
                    extra = "#   dropped for an inner source not its own: %d packets\n" % t["spoofed_dropped"]["packets"]
                _json({"tunnel": t}) if want_json else _out(_tunnel_text(t) + extra)
            else:
                t = service.show(conn, args.name)
                _json({"router": routerconf.as_json(t)}) if want_json else _out(routerconf.shell(t))
        finally:
            conn.close()
        return 0

    if cmd != "init" and not db.exists(path):
        if cmd == "apply" and args.if_initialised:
            _out("no database at %s: nothing to apply\n" % path)
            return 0
        raise SixbrokerError("BROKER_NOT_INITIALISED", "no database at " + path)
    parent = os.path.dirname(os.path.abspath(db.local_path(path)))
    new_dir = not os.path.isdir(parent)
    with Lock(db.local_path(path)) as lock:
        fresh = not db.exists(path)
        try:
            conn = db.connect(path, create=(cmd == "init"), pop=here)
        except SixbrokerError as e:
            if cmd == "apply" and args.if_initialised and e.code == "BROKER_NOT_INITIALISED" and pg.is_url(path):
                _out("an empty database at %s: nothing to apply\n" % pg.url_for_humans(path))
                return 0
            if fresh:
                _forget_first_init(path, lock, new_dir)
            raise
        except BaseException:
            if fresh:
                _forget_first_init(path, lock, new_dir)
            raise
        try:
            return _change(conn, args, cmd, want_json, path)
        except BaseException:
            if getattr(conn, "created", None) and db.server_or_none(conn) is None:
                db.forget_created(conn)
            elif fresh and db.server_or_none(conn) is None:
                conn.close()
                _forget_first_init(path, lock, new_dir)
            raise
        finally:
            conn.close()


def _forget_first_init(path, lock, new_dir):
    """A refused first init leaves nothing behind: no database, no lock file, no directory we made."""
    for p in (path, path + "-journal"):
        try:
            os.unlink(p)
        except OSError:
            pass
    lock.remove()
    if new_dir:
        try:
            os.rmdir(os.path.dirname(os.path.abspath(path)))
        except OSError:
            pass


def _change(conn, args, cmd, want_json, path):
    result = {}
    change = lost = moved = None
    if cmd == "init":
        ra = {"auto": None, "yes": True, "no": False}[args.uplink_ra]
        from sixbroker.broker import hostfacts
        old = db.server_or_none(conn)
        from sixbroker.linux import apply_ndp
        new = service.init(conn, prefix=args.prefix, transfer_prefix=args.transfer_prefix, reserve=args.reserve,
                           public_ipv4=args.public_ipv4, local_ipv4=args.local_ipv4, uplink=args.uplink,
                           uplink_ra=ra, netns=args.netns, detect=hostfacts.detect, ndp_proxy=args.ndp_proxy,
                           onlink=apply_ndp.onlink, tunnel_mode=args.tunnel_mode)
        reconcile.crash_point("commit")
        if old is not None and args.tunnel_mode:
            moved = _switch_mode(conn, args.tunnel_mode, result)
        if hostfacts.ipv4_on_host(new["local_ipv4"], new["netns"]) is False:
            conn.notices.append(("LOCAL_IPV4_NOT_ON_HOST", "%s: behind 1:1 NAT give --local-ipv4 with this host's "
                                 "own address (--public-ipv4 stays the NAT's)" % new["local_ipv4"]))
        updatecli.after_init(conn, path, args.update_url)
        result["server"] = service.server_view(conn)
        updatecli.server_extra(conn, path, result["server"])
        text = _server_text(result["server"]) + updatecli.server_text(result["server"])
        if old is not None and old["netns"] != new["netns"]:
            # the tunnels move: what we made in the old namespace goes (a namespace gone is no error)
            try:
                reconcile.abandon(old["netns"])
            except Exception as e:
                _debug()
                result["warnings"] = ["could not clean the old namespace %s: %s" % (old["netns"] or "(main)", e)]
                sys.stderr.write("%s: warning: %s\n" % (PROG, result["warnings"][0]))
    elif cmd == "add":
        change = reconcile.Change(conn, args.name)
        key, key_hash = updatecli.new_key()
        t = service.add(conn, args.name, args.remote, args.routed_prefix_length, args.mtu, args.allow_private,
                        key_hash=key_hash, pop=getattr(args, "pop", None))
        reconcile.crash_point("commit")
        result["tunnel"] = t
        text = _tunnel_text(t) + updatecli.with_key(conn, path, t, key, result)
    elif cmd == "key":
        if not args.rotate:
            raise _Usage("%s key: give --rotate (a key is stored only as a hash and is never shown again)" % PROG)
        t, text = updatecli.rotate(conn, path, args.name, result)
    elif cmd == "move":
        old = db.tunnel(conn, args.name)["pop"]
        # the router needs a new section anyway (new addresses, another PoP's updater): it gets a new key
        # with it, the one moment a key can be shown (only its hash is kept)
        key, key_hash = updatecli.new_key()
        t = service.move(conn, args.name, args.to_pop, key_hash=key_hash)
        reconcile.crash_point("commit")
        result["tunnel"] = t
        text = _tunnel_text(t) + updatecli.with_key(conn, path, t, key, result)
        touched = (old, t["pop"])
    elif cmd == "remove":
        change = reconcile.Change(conn, args.name)
        t = service.remove(conn, args.name)
        reconcile.crash_point("commit")
        result["removed"] = t
        text = "removed tunnel %s (%s); freed %s and %s\n" % (t["name"], t["device"], t["transfer"],
                                                              ", ".join(t["routed"]))
    elif cmd == "set":
        if args.remote is None and args.mtu is None:
            raise _Usage("%s set: nothing to change: give --remote and/or --mtu" % PROG)
        change = reconcile.Change(conn, args.name)
        t = service.update(conn, args.name, args.remote, args.mtu, args.allow_private)
        reconcile.crash_point("commit")
        result["tunnel"] = t
        text = _tunnel_text(t)
    else:  # apply
        db.server(conn)
        text = ""
        lost = _follow_ipv4(conn)
        if args.tunnel_mode:
            moved = _switch_mode(conn, args.tunnel_mode, result)
    if cmd in ("add", "remove", "set"):
        touched = ((result.get("tunnel") or result.get("removed"))["pop"],)
    elif cmd != "move":
        touched = (conn.pop,)
    if cmd != "key":
        # this PoP's own change is applied below by this process; its `serve` hears of it only if that
        # fails (a full reconcile per add would cost every add what an apply costs)
        pops.notify(conn, [p for p in touched if p != conn.pop])
    if cmd == "key" or conn.pop not in touched:
        # no desired state changed here (key), or another PoP's: its `serve` (or its next apply) applies it
        if cmd != "key":
            result["applied_by"] = [p for p in touched if p != conn.pop]
            text += "# applied by PoP %s (its serve, or its next apply)\n" % ", ".join(result["applied_by"])
        _notices(conn, result)
        _json(result) if want_json else _out(text)
        return 0
    if cmd == "move":
        change = None       # this PoP lost or gained a tunnel: all of it compared
    report, err = _apply(conn, cmd, change)
    failed = report.pop("failed", []) if report is not None else []
    if err is not None or failed:
        pops.notify(conn, [conn.pop])       # this PoP's `serve` tries again
    found = _host_firewall(conn, result) if cmd in ("apply", "init") else []
    result["applied"] = err is None and not failed
    if cmd == "apply" and err is None and lost is not None:
        err = SixbrokerError(*lost)
    if report is not None:
        result["apply"] = report
        if cmd == "apply":
            text = _applied_text(report["tunnels"], failed)
    if moved:
        text = _moved_text(moved, result["tunnel_mode"]) + text
    if failed:
        result["failed"] = failed
        if err is None:
            err = SixbrokerError("TUNNELS_FAILED", "; ".join("%s (%s): %s: %s" % (
                f["tunnel"], f["device"], f["code"], f["message"]) for f in failed))
            err.cause = None
    _notices(conn, result)
    if want_json:
        if err is not None:
            result["error"] = {"code": err.code, "cause": getattr(err, "cause", err.code), "message": err.text}
        _json(result)
    else:
        _out(text)
    _warn_host_firewall(found, want_json)
    if err is not None:
        if not want_json:
            _error(err)
        return 3 if err.code == "TUNNELS_FAILED" else 1
    return 0


def _switch_mode(conn, mode, result):
    """The tunnels moved to another mode (reconcile.switch_mode): {tunnel: seconds}, also in result."""
    moved = reconcile.switch_mode(conn, mode)
    result["tunnel_mode"] = mode
    if moved is not None:
        result["moved"] = dict((name, round(sec, 6)) for name, sec in moved.items())
    return moved


def _moved_text(moved, mode):
    """One line per tunnel moved: how long its switch took (the kernel's answer to its one send)."""
    ms = sorted(sec * 1000 for sec in moved.values())
    lines = ["moved %d tunnel%s to %s mode: switch per tunnel median %.1f ms, max %.1f ms" % (
        len(ms), "" if len(ms) == 1 else "s", mode, ms[len(ms) // 2], ms[-1])]
    lines += ["  %s %.1f ms" % (name, moved[name] * 1000) for name in sorted(moved)]
    return "\n".join(lines) + "\n"


def _follow_ipv4(conn):
    """The tunnels' local address checked before every apply (see service.follow_ipv4): a change
    followed becomes a notice; one that cannot be, the apply's error (everything else is applied)."""
    from sixbroker.broker import hostfacts
    notice, lost = service.follow_ipv4(conn, hostfacts.ipv4_on_host, hostfacts.detect)
    if notice is not None:
        conn.notices.append(notice)
    return lost


def _notices(conn, result):
    """What the user must hear even when the command succeeded: on stderr (text) and in the JSON."""
    notices = getattr(conn, "notices", [])
    if notices:
        result["notices"] = [{"code": c, "message": "%s: %s" % (CODES[c], text)} for c, text in notices]
        for n in result["notices"]:
            sys.stderr.write("%s: notice %s: %s\n" % (PROG, n["code"], n["message"]))


def _applied_text(count, failed):
    if not failed:
        return "kernel and firewall are in line with the database (%d tunnel%s)\n" % (count, "" if count == 1 else "s")
    return "kernel and firewall are in line with the database except %d of %d tunnels: %s\n" % (
        len(failed), count, ", ".join("%s (%s)" % (f["tunnel"], f["code"]) for f in failed))


def _host_firewall(conn, into):
    """Rules of other tables that drop tunnel traffic (broker/hostfw.py), as into["host_firewall"]: a
    warning, never an error.  Only the real appliers look (a test's fake one has no host firewall)."""
    a = reconcile.applier()
    if not hasattr(a, "host_firewall"):
        return []
    server, plans = service.plans(conn)
    shared = service.SHARED_DEVICE if db.tunnel_mode(server) == "shared" else None
    try:
        found = a.host_firewall(plans, server["uplink"], server["netns"], shared=shared)
    except SixbrokerError as e:
        found = [{"code": e.code, "message": "the other tables could not be read: " + e.text}]
    into["host_firewall"] = found
    return found


def _warn_host_firewall(found, want_json):
    if want_json:
        return
    for f in found:
        sys.stderr.write("%s: warning %s: %s%s\n" % (PROG, f["code"], f["message"],
                                                   "; fix: " + f["fix"] if f.get("fix") else ""))


def _spoofed(conn, t):
    """t["spoofed_dropped"]: packets the tunnel sent with an inner source not its own, dropped."""
    a = reconcile.applier()
    if not hasattr(a, "spoofed"):
        return
    server = db.server(conn)
    shared = db.tunnel_mode(server) == "shared"
    try:
        counts = a.spoofed(server["netns"], shared=shared)
    except SixbrokerError:
        return
    # the shared device checks the outer packet: its drops are counted per peer
    t["spoofed_dropped"] = counts.get(t["remote"] if shared else t["device"], {"packets": 0, "bytes": 0})


def _error(e):
    sys.stderr.write("%s: error %s: %s\n" % (PROG, e.code, e.text))


def main(argv):
    want_json = "--json" in argv
    try:
        args = _parser().parse_args(argv)
        path = db.path_from_env(getattr(args, "db", None))
        return _run(args, path)
    except _Exit as e:
        return e.status
    except _Usage as e:
        if want_json:
            _json({"error": {"code": "USAGE", "message": str(e)}})
        else:
            sys.stderr.write("%s: error USAGE: %s\n" % (PROG, e))
        return 2
    except SixbrokerError as e:
        if e.code == "USAGE":
            if want_json:
                _json({"error": {"code": e.code, "message": e.text}})
            else:
                _error(e)
            return 2
        if want_json:
            _json({"error": {"code": e.code, "message": e.text}})
        else:
            _error(e)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:
        _debug()
        err = SixbrokerError("INTERNAL_ERROR", "%s: %s" % (type(e).__name__, e))
        if want_json:
            _json({"error": {"code": err.code, "message": err.text}})
        else:
            _error(err)
        return 1
