"""One dyndns2 update of a plain-Linux router's tunnel to its broker, over Python's own HTTPS, and its record.

What the OpenWrt end does with uclient-fetch (files/usr/lib/sixbroker/update.sh), done with http.client and
ssl from the standard library: the request (core/dyndns.request_url), the answer's meaning and the next delay
(core/dyndns.parse, next_delay) and the record status reads (core/updaterecord) are the same code.

- Over IPv4 only: the broker's name is resolved to IPv4 addresses and the connection made to one of those,
  since the tunnel itself may be what is broken.
- The certificate is checked, always: against `updatecert` as the only CA when it is set (a broker's
  self-signed certificate, which names its public address), else against the system's CAs.  A certificate
  that does not verify is the answer `badcert`, never a request sent anyway.
- The key goes in the Authorization header at once (the connection is TLS; no 401 round trip), never in the
  URL, the record or a log line.
- Failures get uclient-fetch's exit statuses (4 unreachable, 5 certificate, 6 authentication, 8 another HTTP
  error) so that dyndns.parse reads them as it reads the shell's, and the record's `status` means one thing.
"""

import base64
import os
import socket
import ssl
import time

from sixbroker.core import dyndns, updaterecord

RUN_DIR = "/run/sixbroker"
TIMEOUT = 20            # seconds for one request in the loop
UP_TIMEOUT = 5          # after `sixbroker router up`: it never waits longer than this for its broker
MAX_BODY = 4096         # a dyndns2 answer is one short line
AGENT = "sixbroker-router"


def record_dir(netns=None):
    """Where the records live: a tmpfs (a reboot forgets them, as it forgets the tunnel); one directory per
    network namespace, so that routers in several namespaces of one host keep theirs apart."""
    return os.path.join(RUN_DIR, "router" + ("@" + netns if netns else ""))


def record_path(name, netns=None):
    return os.path.join(record_dir(netns), name + ".update")


def records(netns=None):
    """{tunnel name: record} of every record there (status needs no configuration to show them)."""
    d = record_dir(netns)
    try:
        names = sorted(n for n in os.listdir(d) if n.endswith(".update"))
    except OSError:
        return {}
    out = {}
    for n in names:
        rec = updaterecord.read(os.path.join(d, n))
        if rec is not None:
            out[n[:-len(".update")]] = rec
    return out


def myip(local):
    """The address sent as myip: the local one when public; behind NAT none, so the broker takes the source."""
    return str(local) if local is not None and dyndns.is_public(local) else None


def _split(url):
    scheme, sep, rest = url.partition("://")
    hostport, slash, path = rest.partition("/")
    host, port = hostport, None
    if hostport.startswith("["):            # an IPv6 literal: over IPv4 only, so unreachable
        host = hostport[1:].partition("]")[0]
        port = hostport.partition("]:")[2] or None
    elif ":" in hostport:
        host, _, port = hostport.rpartition(":")
    port = int(port) if port else (443 if scheme == "https" else 80)
    return scheme, host, port, "/" + path


def _context(cert):
    if cert:
        # the broker's certificate is its own CA: its name (the VPS's address or name) is still checked
        return ssl.create_default_context(cafile=cert)
    return ssl.create_default_context()


def fetch(update, address=None, timeout=TIMEOUT, netns=None):
    """(body, status, errors) of one request from network namespace netns, status as uclient-fetch's exit
    status (0: an HTTP 200)."""
    import http.client
    from sixbroker.linux.netns import InNetns
    url = dyndns.request_url(update["url"], update["tunnelid"], address)
    try:
        scheme, host, port, target = _split(url)
    except ValueError:
        return "", 8, "bad update URL"
    try:
        ctx = _context(update["cert"]) if scheme == "https" else None
    except (OSError, ssl.SSLError) as e:
        return "", 5, "updatecert: %s" % e
    sock = None
    deadline = time.monotonic() + timeout
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
        last = None
        for info in infos:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                with InNetns(netns):        # the socket stays in the router's namespace, the thread does not
                    sock = socket.create_connection(info[4], timeout=left)
                break
            except OSError as e:
                last = e
        if sock is None:
            return "", 4, "connect: %s" % (last or "timed out")
        if ctx is not None:
            sock = ctx.wrap_socket(sock, server_hostname=host)
        conn = http.client.HTTPConnection(host, port, timeout=max(deadline - time.monotonic(), 0.1))
        conn.sock = sock        # connected and wrapped here: http.client only speaks HTTP over it
        auth = base64.b64encode(("%s:%s" % (update["user"], update["key"])).encode()).decode()
        conn.request("GET", target, headers={"Authorization": "Basic " + auth, "User-Agent": AGENT,
                                             "Host": host if port in (80, 443) else "%s:%d" % (host, port)})
        r = conn.getresponse()
        body = r.read(MAX_BODY).decode("utf-8", "replace")
        conn.close()
    except ssl.SSLCertVerificationError as e:
        return "", 5, "certificate: %s" % e.verify_message
    except (ssl.SSLError, OSError, http.client.HTTPException) as e:
        return "", 4, "%s: %s" % (type(e).__name__, e)
    finally:
        if sock is not None:
            sock.close()
    if r.status == 200:
        return body, 0, ""
    return body, 6 if r.status == 401 else 8, "HTTP error %d" % r.status


def send(name, update, local, path, fails=0, timeout=TIMEOUT, netns=None):
    """Send one update for tunnel `name` and write its record at path; the record (updaterecord's fields)."""
    body, status, errors = fetch(update, myip(local), timeout, netns)
    word, address = dyndns.parse(body, status, errors)
    kind = dyndns.kind(word)
    fails = 0 if kind == "ok" else fails + 1
    delay = dyndns.next_delay(kind, fails, update["interval"])
    now = int(time.time())
    rec = {"time": now, "word": word, "address": address, "kind": kind, "status": status, "fails": fails,
           "next": now + delay, "interval": update["interval"], "follow": None,
           "url": update["url"].partition("?")[0]}
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        updaterecord.write(path, rec)
    except OSError:
        pass        # a record not written costs the status view its line, not the update
    rec["words"] = dyndns.meaning(word)
    rec["delay"] = delay
    rec["errors"] = errors
    return rec


def after_up(tunnels, built, netns=None, timeout=UP_TIMEOUT):
    """The update `up` sends for each tunnel it set up, each bounded by timeout: [(name, record)].

    tunnels: router.read_config's list; built: router.build_plans' (same order), whose plans hold the
    local address the sit device now has."""
    from sixbroker.core import addr
    out = []
    for (name, o, _), (p, _) in zip(tunnels, built):
        if not o.update:
            continue
        local = addr.Address.parse(p["tunnel"]["local"], 4)
        path = record_path(name, netns)
        prev = records(netns).get(name) or {}
        out.append((name, send(name, o.update, local, path, prev.get("fails") or 0, timeout, netns)))
    return out


def line(name, rec):
    """The one log line of an update, the words of update.sh's."""
    return "%s: update: %s%s (%s, next in %d s)" % (name, rec["word"], " " + rec["address"] if rec["address"] else "",
                                                   rec["kind"], rec["delay"])
