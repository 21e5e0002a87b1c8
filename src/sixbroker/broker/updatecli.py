"""The update service's part of `sixbroker server`: keys, the join line `add` prints, `serve`, and what
`init`, `info`, `list` and `show` add about updates (kept apart so cli.py stays the general command line).
"""

import os

from sixbroker.broker import db, routerconf, serve, tls, update
from sixbroker.core import joinline
from sixbroker.core.errors import SixbrokerError

DEFAULT_PORT = update.DEFAULT_PORT
RATE_SOURCE = serve.RATE_SOURCE
RATE_TUNNEL = serve.RATE_TUNNEL
new_key = update.new_key


def after_init(conn, path, update_url):
    """init's part: the update URL (given, or '' for the default), and the self-signed certificate made
    when there is none (a failure to make it is a notice: the tunnels work without the service)."""
    if update_url is not None:
        url = update_url or None
        if url is not None and not (url.startswith("https://") or url.startswith("http://")) or (url and " " in url):
            raise SixbrokerError("USAGE", "--update-url must be an http(s) URL, not %r" % update_url)
        with db.transaction(conn):
            conn.execute("UPDATE server SET update_url = ? WHERE pop = ? AND update_url IS DISTINCT FROM ?",
                         (url, conn.pop, url))
    if path == ":memory:":
        return
    cert = tls.paths(db.local_path(path))[0]
    before = tls.fingerprint(cert) if os.path.exists(cert) else None
    try:
        _, _, made = tls.ensure(db.local_path(path), db.server(conn)["public_ipv4"])
        if made and before is not None:
            # every router checks the broker by the old one: each needs its tunnel's new join line
            conn.notices.append(("TLS_CERT_REMADE", "SHA-256 %s (was %s); `sixbroker server key NAME --rotate` "
                                 "prints each tunnel's join line with it" % (tls.fingerprint(cert), before)))
    except SixbrokerError as e:
        conn.notices.append(("TLS_CERT_FAIL", "%s; `serve` then needs --cert and --key" % e.detail))
    # made, remade or as it was: the other PoPs print it for the tunnels they place here
    tls.publish(conn, cert)


def server_extra(conn, path, view):
    """info's part: the update URL and the certificate's fingerprint."""
    s = db.server(conn)
    view["update_url"] = update.update_url(s)
    cert, _ = tls.paths(db.local_path(path))
    view["tls_fingerprint_sha256"] = tls.fingerprint(cert) if os.path.exists(cert) else None
    return view


def server_text(view):
    return ("update URL      %s\n" % view.get("update_url")
            + "TLS certificate %s\n" % ("SHA-256 " + view["tls_fingerprint_sha256"] if view.get("tls_fingerprint_sha256")
                                         else "none made (serve needs --cert and --key)"))


def join_fields(conn, path, t, key):
    """The join line's fields of tunnel t: its own PoP's update URL and certificate, whichever PoP prints them."""
    s = db.server(conn, t["pop"])
    fields = routerconf.fields(t)
    fields.update({"url": update.update_url(s), "key": key})
    if not s.get("update_url"):
        # the default URL is served with the PoP's self-signed certificate: the router must be given it
        fields.update(_cert_of(conn, path, t["pop"]))
    return fields


def _cert_of(conn, path, pop):
    """{"fp", "cert"} of PoP pop's update service: this PoP's own file, another's as it published it (tls.publish);
    {} and a notice when that PoP has published none (its init or serve has not run since schema 9)."""
    if pop == conn.pop:
        cert = None if path == ":memory:" else tls.paths(db.local_path(path))[0]
        return tls.for_join(cert) if cert is not None and os.path.exists(cert) else {}
    got = db.pop_cert(conn, pop)
    if got is None:
        conn.notices.append(("POP_CERT_UNKNOWN", "PoP %s: its `sixbroker server serve` (or `init`) publishes it; "
                             "then `sixbroker server key NAME --rotate` prints the section again" % pop))
        return {}
    return got


def _key_text(t, key, line):
    # comments, so that the whole output still pastes into the router's shell as it did
    return ("# update key (shown this once; `sixbroker server key %s --rotate` makes a new one): %s\n"
            "# instead of what follows, one line does it all on the router:\n"
            "#   sixbroker join %s\n" % (t["name"], key, line))


def with_key(conn, path, t, key, result):
    """What `add` and `key --rotate` print once: the key, the join line, and the router's section with its
    updater (the printed `uci batch` and the join line set up the same router)."""
    fields = join_fields(conn, path, t, key)
    line = joinline.encode(fields)
    result.update({"key": key, "join": "sixbroker join " + line, "router": routerconf.as_json(t, fields)})
    return _key_text(t, key, line) + routerconf.shell(t, fields)


def rotate(conn, path, name, result):
    from sixbroker.broker import service
    key = update.rotate(conn, name)
    t = service.show(conn, name)
    result["tunnel"] = t
    return t, with_key(conn, path, t, key, result)


def _rate(text, option):
    try:
        if text == "0":
            return (0, 1.0)
        burst, per = text.split("/")
        burst, per = int(burst), float(per)
        if burst < 0 or per <= 0:
            raise ValueError
        return burst, per
    except ValueError:
        raise SixbrokerError("USAGE", "%s must be BURST/SECONDS (e.g. 20/3) or 0, not %r" % (option, text))


def serve_(args, path):
    if not db.exists(path):
        raise SixbrokerError("BROKER_NOT_INITIALISED", "no database at " + path)
    cert, key = args.cert, args.key
    if (cert is None) != (key is None):
        raise SixbrokerError("USAGE", "give --cert and --key together")
    if not args.plain_http and cert is None:
        cert, key = tls.paths(db.local_path(path))
    serve.check_listen(args.listen)
    if args.metrics_listen:
        serve.check_metrics_listen(args.metrics_listen)
    return serve.run(path, args.listen, cert, key, plain=args.plain_http,
                     rate_source=_rate(args.rate_source, "--rate-source"),
                     rate_tunnel=_rate(args.rate_tunnel, "--rate-tunnel"), metrics_listen=args.metrics_listen,
                     pop=db.pop_from_env(getattr(args, "pop", None)))


def serve_main(args, path):
    try:
        return serve_(args, path)
    except KeyboardInterrupt:
        return 0
    except OSError as e:        # the port taken, a file unreadable
        raise SixbrokerError("INVALID_LISTEN" if e.errno in (98, 99, 13) else "TLS_CERT_FAIL",
                             "%s: %s" % (args.listen, e.strerror or e))

