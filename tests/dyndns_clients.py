"""The real ddclient and inadyn run once, in the foreground, with files/broker/README.md's configuration.

Shared by tests/broker/test_update_clients.py (the service on loopback) and tests/e2e/test_update_clients.py
(the service in the guest's vps namespace, the client in home's).  The address is always given to the
client (ddclient's `usev4=ipv4`, inadyn's `checkip-command`): no client ever asks a service on the
Internet.  Each client's cache lives in the test's directory.
"""
import subprocess

from sixbroker.linux import netns


def _run(argv, ns):
    # the child inherits the namespace of the thread that forks it
    with netns.InNetns(ns):
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    return p.stdout + p.stderr


def ddclient(tmp, server, cert, password, address, *extra, ns=None):
    """ddclient 3.10's output for one run against SERVER (host:port), the address given."""
    conf = tmp / "ddclient.conf"
    conf.write_text("ssl=yes\n"
                    "ssl_ca_file=%s\n"
                    "usev4=ipv4, ipv4=%s\n"
                    "protocol=dyndns2\n"
                    "server=%s\n"
                    "login=home\n"
                    "password='%s'\n"
                    "home\n" % (cert, address, server, password))
    conf.chmod(0o600)       # ddclient warns about a password file others can read
    return _run(["ddclient", "-daemon=0", "-foreground", "-verbose", "-file", str(conf),
                 "-cache", str(tmp / "ddclient.cache")] + list(extra), ns)


def age_ddclient_cache(tmp, seconds=600):
    """ddclient skips a changed address within min-interval (30 s) of its last update: move that update
    back in time, as the minutes between two real address changes would."""
    path = tmp / "ddclient.cache"
    lines = []
    for ln in path.read_text().splitlines():
        if not ln.startswith("#") and "mtime=" in ln:
            ln = ",".join(("mtime=%d" % (int(f[6:]) - seconds)) if f.startswith("mtime=") else f
                          for f in ln.split(","))
        lines.append(ln)
    path.write_text("\n".join(lines) + "\n")


def inadyn(tmp, server, cert, password, address, *extra, ns=None):
    """inadyn 2.10's output for one run (--once) against SERVER, the address printed by a checkip-command."""
    script = tmp / "my-public-ipv4"
    script.write_text("#!/bin/sh\necho %s\n" % address)
    script.chmod(0o755)
    conf = tmp / "inadyn.conf"
    conf.write_text("ca-trust-file = %s\n"
                    "custom sixbroker {\n"
                    "    ssl            = true\n"
                    "    ddns-server    = %s\n"
                    "    ddns-path      = \"/nic/update?hostname=%%h&myip=%%i\"\n"
                    "    username       = home\n"
                    "    password       = %s\n"
                    "    hostname       = home\n"
                    "    checkip-command = \"%s\"\n"
                    "}\n" % (cert, server, password, script))
    conf.chmod(0o600)
    cache = tmp / "inadyn-cache"
    if not cache.exists():
        # with no cache file inadyn seeds it with a DNS lookup of the hostname (troglobit/inadyn
        # src/cache.c, read_one -> nslookup): an empty one keeps the test off the resolver
        cache.mkdir()
        (cache / "home.cache").write_text("")
    return _run(["inadyn", "--once", "--foreground", "--no-pidfile", "-l", "debug", "-f", str(conf),
                 "--cache-dir", str(cache)] + list(extra), ns)
