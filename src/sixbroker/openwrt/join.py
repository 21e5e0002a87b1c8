"""`sixbroker join [LINE] [--interface NAME]` on OpenWrt, the Python half: the line checked, the certificate
written, the `uci batch` script printed.

MicroPython cannot start a process and the router ships no UCI writer, so /usr/bin/sixbroker does the
rest in shell: it passes the interfaces of other protocols (`--taken`, from `uci show network`), pipes
what this prints after the first line (the interface's name) to `uci batch`, and runs `ifup`.  The
section is core/tunnelconf's, the one the broker prints.  Everything is checked (the line, the name,
the options as the handler will validate them) before the certificate is written; a refusal prints its
code and writes nothing.  The wrapper hands the line over on stdin: the key stays out of `ps`.
"""

import os
import sys

from sixbroker.core import joinline, options, tunnelconf
from sixbroker.core.errors import SixbrokerError

CERT_DIR = "/etc/sixbroker"
USAGE = "usage: sixbroker join [LINE] [--interface NAME]   (no LINE: read from stdin)\n"


def prepare(words, iface=None, taken=(), cert_dir=CERT_DIR):
    """(interface, options, PEM text or None) for the pasted words; SixbrokerError when refused."""
    fields = joinline.decode(" ".join(words))
    iface = iface or fields["name"]
    # a UCI section name that netifd also takes as an interface name
    if len(iface) > 32 or not options._is_name(iface, "_"):
        raise SixbrokerError("INVALID_NAME", iface)
    if iface in taken:
        raise SixbrokerError("JOIN_INTERFACE_TAKEN", iface)
    cert = fields.get("cert")
    opts = tunnelconf.options(fields, cert and cert_dir + "/" + iface + ".pem")
    try:
        options.validate(dict((k, v) for k, v in opts if k != "proto"), strict=True)
    except SixbrokerError as e:
        raise SixbrokerError("JOIN_INVALID", str(e))
    return iface, opts, cert and tunnelconf.pem(cert)


def main(argv):
    words, iface, taken = [], None, []
    while argv:
        a = argv.pop(0)
        if a in ("--interface", "--taken") and argv:
            v = argv.pop(0)
            if a == "--taken":
                taken = v.split()
            else:
                iface = v
        elif a.startswith("--"):
            sys.stderr.write(USAGE)
            return 2
        else:
            words.append(a)
    if not words:
        words = [sys.stdin.read()]
    cert_dir = os.getenv("SIXBROKER_CERT_DIR") or CERT_DIR
    try:
        iface, opts, pem = prepare(words, iface, taken, cert_dir)
        if pem:
            try:
                os.mkdir(cert_dir)
            except OSError:
                pass        # it exists (a real failure shows when the file is written)
            path = cert_dir + "/" + iface + ".pem"
            try:
                with open(path, "w") as f:
                    f.write(pem)
            except OSError as e:
                raise SixbrokerError("JOIN_CERT_WRITE", "%s: %s" % (path, e))
    except SixbrokerError as e:
        sys.stderr.write("sixbroker join: %s: %s\n" % (e.code, e))
        return 1
    sys.stdout.write(iface + "\n" + tunnelconf.batch(iface, opts))
    return 0
