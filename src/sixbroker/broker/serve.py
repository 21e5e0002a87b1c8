"""`sixbroker server serve`: the dyndns2 update service over HTTPS (FastAPI on uvicorn), with its limits.

Why FastAPI on uvicorn: both are widely used and kept (uvicorn's HTTP/1.1 parser is h11, a strict,
well-tested pure-Python state machine), FastAPI publishes the OpenAPI schema the tests fuzz, and the one
route needs nothing more.  They are the optional extra `server` (pip install 'sixbroker[server]'): the
rest of the broker (and the router) runs without them.

The rules of an update are update.py's; here is what a hostile client meets first:
- rate limits, answered `abuse` before any database read: per source address (RATE_SOURCE: a burst of
  20, then one every 3 s) and, once authenticated, per tunnel (RATE_TUNNEL: a burst of 10, then one every
  10 s).  A router updates every few minutes and on each WAN change; a flood of wrong keys under a
  tunnel's name spends the source's budget, never the tunnel's;
- request size: the request line and headers together at most 8 KiB (h11's incomplete-event limit:
  431/400 from uvicorn), a query string at most 1 KiB (`badagent`), no body (413);
- time: a connection must finish its TLS handshake within REQUEST_SECONDS, then deliver a complete
  request within REQUEST_SECONDS (of the handshake or of the last answer), else it is closed, however
  slowly it trickles bytes; an idle keep-alive connection goes after KEEPALIVE_SECONDS;
- one log line per request on stderr (journald), `sixbroker-serve: update src=ADDR tunnel=NAME
  answer=WORD ...`, which files/broker/README.md gives a fail2ban filter for.
Refused requests change nothing: no database write, no kernel or firewall change.

Metrics (broker/metrics.py): /metrics is served only on a listener of its own, `--metrics-listen ADDR:PORT`,
plain HTTP on a loopback or private address (RFC 1918, CGNAT, fc00::/7, link-local: a VPN or the
provider's private network), never on the public update port: it names every tunnel and what each
carries, to anyone, unauthenticated.  A public --metrics-listen is refused (METRICS_LISTEN_PUBLIC).
"""

import os
import socket
import sys
import threading
import time

from sixbroker.broker import db, pg, pops, reconcile, tls, update
from sixbroker.core.errors import SixbrokerError

REQUEST_SECONDS = 5.0
KEEPALIVE_SECONDS = 5
MAX_HEADER_BYTES = 8192
MAX_QUERY = 1024
RATE_SOURCE = (20, 3.0)         # burst, seconds per request after it
RATE_TUNNEL = (10, 10.0)
MAX_TRACKED = 65536             # rate-limit entries kept: a spoofing flood cannot grow memory without end
LOG_PREFIX = "sixbroker-serve:"


class Buckets:
    """Token buckets by key: `allow(key)` takes one token, False when none is left."""

    def __init__(self, burst, per, clock=time.monotonic):
        self.burst = burst
        self.per = per
        self.clock = clock
        self.state = {}
        self.lock = threading.Lock()

    def allow(self, key):
        if not self.burst:
            return True         # 0: no limit (the bench)
        now = self.clock()
        with self.lock:
            tokens, at = self.state.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) / self.per)
            if len(self.state) >= MAX_TRACKED and key not in self.state:
                self._forget(now)
            if tokens < 1.0:
                self.state[key] = (tokens, now)
                return False
            self.state[key] = (tokens - 1.0, now)
            return True

    def _forget(self, now):
        """Drop the entries that are full again (they mean nothing); if none, the oldest half."""
        full = [k for k, (t, at) in self.state.items() if t + (now - at) / self.per >= self.burst]
        for k in full:
            del self.state[k]
        if len(self.state) >= MAX_TRACKED:
            for k, _ in sorted(self.state.items(), key=lambda kv: kv[1][1])[:MAX_TRACKED // 2]:
                del self.state[k]


def printable(text):
    """text with anything but printable ASCII as '?': a client's bytes end up in a header and the log."""
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in str(text))


class Service:
    """The update service's state: the database path, the rate limits, a connection per thread."""

    def __init__(self, path, rate_source=RATE_SOURCE, rate_tunnel=RATE_TUNNEL, log=None, pop=None):
        from sixbroker.broker.lock import Lock
        from sixbroker.broker.metrics import Metrics
        self.path = path
        self.pop = db.pop_from_env(pop)
        self.sources = Buckets(*rate_source)
        self.tunnels = Buckets(*rate_tunnel)
        self.local = threading.local()
        self.lock_of = lambda: Lock(db.local_path(path))
        self.log = log or (lambda line: (sys.stderr.write(line + "\n"), sys.stderr.flush()))
        self.metrics = Metrics(path, self.log, pop=self.pop)
        self.published = None       # the certificate this PoP publishes (run(): tls.publish)

    def conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = self.local.conn = db.connect(self.path, create=False, pop=self.pop)
        return c

    def forget_conn(self):
        c = getattr(self.local, "conn", None)
        self.local.conn = None
        if c is not None:
            c.close()

    def answer(self, source, auth_header, query):
        """The Answer to one request (query: [(name, value)]); never raises."""
        if not self.sources.allow(source):
            return self._log(source, None, update.Answer("abuse", why="rate limit of the source", reason="rate_source"))
        params = {}
        for k, v in query:
            if k in params:
                return self._log(source, None, update.Answer("badagent", why="%r given twice" % k,
                                                             reason="duplicate_parameter"))
            params[k] = v
        auth = update.basic_auth(auth_header)
        try:
            a = update.handle(self.conn(), self.lock_of(), auth, params.get("hostname"), params.get("myip"),
                              source, admit=self.tunnels.allow)
        except SixbrokerError as e:
            if e.code == "DB_UNAVAILABLE":
                self.forget_conn()     # the next request connects anew: the database may be back by then
            a = update.Answer("911", why="%s: %s" % (e.code, e.text), reason=e.code.lower())
        except Exception as e:     # never a traceback to a client; the log says what
            a = update.Answer("911", why="INTERNAL_ERROR: %s: %s" % (type(e).__name__, e), reason="internal_error")
        return self._log(source, auth[0] if auth else None, a)

    def _log(self, source, user, a):
        tunnel = a.tunnel or user or "-"
        safe = "".join(ch if 32 < ord(ch) < 127 and ch not in '"\\' else "?" for ch in str(tunnel))[:32]
        line = "%s update src=%s tunnel=%s answer=%s" % (LOG_PREFIX, source, safe, a.word)
        if a.address:
            line += " address=" + a.address
        if a.why:
            line += ' why="%s"' % printable(a.why).replace('"', "'")
        self.log(line)
        self.metrics.answered(a)
        return a


def app(service):
    """The ASGI application: GET /nic/update, plus the OpenAPI schema at /openapi.json."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import PlainTextResponse
    except ImportError:
        raise SixbrokerError("SERVE_NEEDS_EXTRA")

    api = FastAPI(title="sixbroker update service", version="1", docs_url=None, redoc_url=None,
                  description="dyndns2 updates of a tunnel's remote IPv4 address (see broker/update.py)")

    @api.middleware("http")
    async def limits(request, call_next):
        # no body, ever: the update is a GET; a body would only hold the connection open
        if request.headers.get("content-length", "0") not in ("0", "") or "transfer-encoding" in request.headers:
            service.metrics.refused("body")
            return PlainTextResponse("badagent\n", status_code=413, headers={"connection": "close"})
        if len(request.url.query) > MAX_QUERY:
            host = request.client.host if request.client else "-"
            a = service._log(host, None, update.Answer("badagent", why="query string of %d bytes" % len(request.url.query),
                                                       reason="query_too_long"))
            return PlainTextResponse(a.body(), status_code=200)
        return await call_next(request)

    @api.get("/nic/update", response_class=PlainTextResponse,
             responses={200: {"description": "a dyndns2 answer: good A, nochg A, badauth, nohost, notfqdn, "
                              "badip, abuse, badagent, 911", "content": {"text/plain": {}}}})
    def nic_update(request: Request, hostname: str = None, myip: str = None, system: str = None):
        # sync: FastAPI runs it in its thread pool, so a change waiting for the CLI's lock blocks no one else
        source = request.client.host if request.client else ""
        auth = request.headers.get("authorization")
        a = service.answer(source, auth, list(request.query_params.multi_items()))
        # h11 refuses a header value with leading or trailing whitespace (a 500 and a traceback): a
        # parameter named "" made why " given twice"
        reason = printable(a.why)[:200].strip()
        headers = {"x-sixbroker-reason": reason} if reason else {}
        if auth is None and a.word == "badauth":
            # uclient-fetch (the router's client, uclient-http.c) and wget send their credentials only
            # after a 401 that asks for Basic; ddclient and inadyn send them at once and never see this
            headers["www-authenticate"] = 'Basic realm="sixbroker"'
            return PlainTextResponse(a.body(), status_code=401, headers=headers)
        return PlainTextResponse(a.body(), status_code=200, headers=headers)

    return api


def metrics_app(service):
    """The ASGI application of the metrics listener: GET /metrics alone."""
    from fastapi import FastAPI
    from fastapi.responses import Response

    api = FastAPI(title="sixbroker metrics", docs_url=None, redoc_url=None, openapi_url=None)

    @api.get("/metrics")
    def scrape():
        # sync: the database and nft are read in FastAPI's thread pool, not on the event loop
        body, kind = service.metrics.text()
        return Response(body, media_type=kind)

    return api


def check_metrics_listen(text):
    """(host, port) of a --metrics-listen: loopback or a private address only (METRICS_LISTEN_PUBLIC)."""
    from sixbroker.core import addr
    host, port = check_listen(text)
    a = addr.Address.parse(host)
    if not (a.is_loopback or a.is_private or a.is_cgnat or a.is_link_local):
        raise SixbrokerError("METRICS_LISTEN_PUBLIC", text)
    return host, port


def metrics_config(service, host, port, fd=None):
    """The uvicorn.Config of the metrics listener (plain HTTP; check_metrics_listen first)."""
    import uvicorn
    return uvicorn.Config(metrics_app(service), host=host, port=port, fd=fd, lifespan="off", access_log=False,
                          log_level="warning", server_header=False, timeout_keep_alive=KEEPALIVE_SECONDS,
                          limit_concurrency=16, ws="none")


def _guarded_protocol():
    """uvicorn's h11 protocol with a deadline for the whole request: uvicorn arms its keep-alive timer only
    after an answer, and any byte received cancels it, so a client trickling a byte a second would hold
    a connection forever."""
    from uvicorn.protocols.http.h11_impl import H11Protocol
    import h11

    class Guarded(H11Protocol):
        def connection_made(self, transport):
            H11Protocol.connection_made(self, transport)
            self._arm()

        def _arm(self):
            self._disarm()
            self._deadline = self.loop.call_later(REQUEST_SECONDS, self._expire)

        def _disarm(self):
            d = getattr(self, "_deadline", None)
            if d is not None:
                d.cancel()
            self._deadline = None

        def _expire(self):
            if not self.transport.is_closing():
                self.transport.close()

        def handle_events(self):
            H11Protocol.handle_events(self)
            if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED):
                self._disarm()      # a whole request is in: its answer may wait for the lock

        def on_response_complete(self):
            H11Protocol.on_response_complete(self)
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc):
            self._disarm()
            H11Protocol.connection_lost(self, exc)

    return Guarded


def Server(cfg):
    """A uvicorn.Server whose TLS handshake must end within REQUEST_SECONDS.

    asyncio gives a handshake 60 s and uvicorn has no setting for it; until the handshake ends no protocol
    of ours sees the connection, so an idle TCP connection that never sends a ClientHello would hold a
    descriptor (of limit_concurrency's 256) for a minute.  The bound is asyncio's own
    (create_server's ssl_handshake_timeout), put on the one create_server call uvicorn's startup makes."""
    import uvicorn

    class Bounded(uvicorn.Server):
        async def startup(self, sockets=None):
            import asyncio
            loop = asyncio.get_running_loop()
            create = loop.create_server

            def create_server(*args, **kwargs):
                if kwargs.get("ssl") is not None:
                    kwargs.setdefault("ssl_handshake_timeout", REQUEST_SECONDS)
                return create(*args, **kwargs)

            loop.create_server = create_server
            try:
                await uvicorn.Server.startup(self, sockets)
            finally:
                del loop.create_server
    return Bounded(cfg)


def check_listen(text):
    """(host, port) of HOST:PORT or [V6]:PORT; INVALID_LISTEN otherwise."""
    from sixbroker.core import addr
    try:
        if text.startswith("["):
            host, _, port = text[1:].partition("]:")
            addr.Address.parse(host, 6)
        else:
            host, _, port = text.rpartition(":")
            addr.Address.parse(host, 4)
        if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(port)
    except (addr.AddressError, ValueError):
        raise SixbrokerError("INVALID_LISTEN", repr(text))
    return host, int(port)


def is_loopback(host):
    from sixbroker.core import addr
    return addr.Address.parse(host).is_loopback


def config(service, host, port, cert=None, key=None, plain=False, fd=None):
    """The uvicorn.Config of the service (the tests run it in a thread with uvicorn.Server)."""
    try:
        import uvicorn
    except ImportError:
        raise SixbrokerError("SERVE_NEEDS_EXTRA")
    if plain and not is_loopback(host):
        raise SixbrokerError("SERVE_PLAIN_NOT_LOOPBACK", host)
    kw = {}
    if not plain:
        if not cert or not key or not os.path.exists(cert) or not os.path.exists(key):
            raise SixbrokerError("TLS_CERT_MISSING", cert or "")
        kw = {"ssl_certfile": cert, "ssl_keyfile": key}
    return uvicorn.Config(app(service), host=host, port=port, fd=fd, http=_guarded_protocol(), lifespan="off",
                          access_log=False, log_level="warning", server_header=False, date_header=False,
                          timeout_keep_alive=KEEPALIVE_SECONDS, h11_max_incomplete_event_size=MAX_HEADER_BYTES,
                          limit_concurrency=256, ws="none",
                          # behind a reverse proxy on loopback (plain only) the client is its X-Forwarded-For;
                          # over TLS nobody may claim another source
                          proxy_headers=bool(plain), forwarded_allow_ips="127.0.0.1,::1", **kw)


def follower(service):
    """On PostgreSQL, the thread that applies what other PoPs commit for this one (pops.py), else None."""
    if not pg.is_url(service.path):
        return None
    from sixbroker.broker import metrics

    def reconcile_here():
        with service.lock_of():
            conn = db.connect(service.path, create=False, pop=service.pop)
            try:
                if service.published:
                    _publish(conn, service.published)       # a serve that started while the database was away
                report = metrics.timed_reconcile(conn, "serve")
            finally:
                conn.close()
        if report.get("failed"):
            service.log("%s PoP %s: %s" % (LOG_PREFIX, service.pop, "; ".join(
                "%s: %s" % (f["tunnel"], f["code"]) for f in report["failed"])))
    return pops.Follower(service.path, service.pop, reconcile_here,
                         lambda line: service.log("%s %s" % (LOG_PREFIX, line))).start()


def _publish(conn, cert):
    """tls.publish, and a line when it cannot be (the service works; only other PoPs' printouts miss it)."""
    try:
        if tls.publish(conn, cert):
            sys.stderr.write("%s published the certificate of PoP %s (SHA-256 %s)\n" % (
                LOG_PREFIX, conn.pop, tls.fingerprint(cert)))
    except SixbrokerError as e:
        if e.code not in ("DB_READ_ONLY", "TLS_CERT_FAIL"):
            raise
        sys.stderr.write("%s the certificate could not be published: %s: %s\n" % (LOG_PREFIX, e.code, e.text))


def run(path, listen, cert, key, plain=False, rate_source=RATE_SOURCE, rate_tunnel=RATE_TUNNEL,
        metrics_listen=None, pop=None):
    """Serve until SIGTERM/SIGINT (the metrics listener, if any, in a thread: the main one takes the signals)."""
    import uvicorn
    host, port = check_listen(listen)
    mhost, mport = check_metrics_listen(metrics_listen) if metrics_listen else (None, None)
    # the certificate routers are given for this PoP (--plain-http: a reverse proxy's, or the one `init` made)
    published = cert if cert is not None and not plain else tls.paths(db.local_path(path))[0]
    try:
        conn = db.connect(path, create=False, pop=pop)      # migrated and there, before the first request
        try:
            _publish(conn, published)
        finally:
            conn.close()
    except SixbrokerError as e:
        # a PoP's serve starts without its database all the same: its follower catches up when it is back
        if e.code != "DB_UNAVAILABLE":
            raise
        sys.stderr.write("%s %s: serving, and following the database when it is back\n" % (LOG_PREFIX, e.text))
    service = Service(path, rate_source, rate_tunnel, pop=pop)
    service.published = published
    server = Server(config(service, host, port, cert, key, plain))
    if metrics_listen:
        side = uvicorn.Server(metrics_config(service, mhost, mport))
        # bound here, so a port taken fails the command, not a thread
        sock = socket.socket(socket.AF_INET6 if ":" in mhost else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((mhost, mport))
        except OSError as e:
            sock.close()
            raise SixbrokerError("INVALID_LISTEN", "--metrics-listen %s: %s" % (metrics_listen, e.strerror or e))
        threading.Thread(target=side.run, kwargs={"sockets": [sock]}, daemon=True).start()
        sys.stderr.write("%s metrics on http://%s/metrics\n" % (LOG_PREFIX, metrics_listen))
    sys.stderr.write("%s listening on %s://%s (database %s, PoP %s)\n" % (
        LOG_PREFIX, "http" if plain else "https", listen, pg.url_for_humans(path), service.pop))
    sys.stderr.flush()
    follow = follower(service)
    try:
        server.run()
    finally:
        if follow is not None:
            follow.stop()
    return 0
