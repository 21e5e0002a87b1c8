"""The router's interface section for one tunnel, made from a join line's fields: its options, its text.

One definition for the three places that write it: the broker's printout (broker/routerconf), `sixbroker
join` on OpenWrt (openwrt/join prints a `uci batch` script for /usr/bin/sixbroker to feed to `uci batch`)
and `sixbroker router join` (linuxrouter/join, a section of /etc/sixbroker/router).  Runs on CPython and
MicroPython: the router package ships this, while core/uci.py (the whole reader and writer) stays home,
so the few lines of batch text are written here, quoted as libuci quotes (file.c uci_escape).
"""

PROTO = "sixbroker"


def options(fields, cert_path=None):
    """[(option, value)] of the section, in the order printed.  fields: joinline's names (name, peer,
    ip6addr, ip6gw, ip6prefix, mtu, and url and key for the updater); cert_path: where the broker's
    certificate is (updatecert), or None."""
    opts = [("proto", PROTO), ("peeraddr", fields["peer"]), ("ip6addr", fields["ip6addr"]),
            ("ip6gw", fields["ip6gw"]), ("ip6prefix", list(fields["ip6prefix"])),
            # the broker's MTU, which the router takes as its most (plan.tunnel_mtu): behind PPPoE it
            # still uses 1472, and the broker's larger packets meet "fragmentation needed" (DF is set)
            ("mtu", str(fields["mtu"]))]
    if fields.get("key"):
        # the stock 6in4 names: tunnelid + updatekey turn the updater on (core/options)
        opts += [("tunnelid", fields["name"]), ("updatekey", fields["key"]), ("updateurl", fields["url"])]
    if cert_path:
        opts.append(("updatecert", cert_path))
    return opts


def quote(value):
    return "'" + value.replace("'", "'\\''") + "'"


def batch(name, opts, package="network", typ="interface"):
    """`uci batch` input that replaces PACKAGE.NAME with these options and commits.  `set x=''` removes
    a section that exists and does nothing otherwise (list.c uci_set), where `delete` would complain."""
    ref = package + "." + name
    out = ["set %s=''" % ref, "set %s=%s" % (ref, quote(typ))]
    for opt, value in opts:
        for v in (value if isinstance(value, list) else [value]):
            out.append("%s %s.%s=%s" % ("add_list" if isinstance(value, list) else "set", ref, opt, quote(v)))
    out.append("commit " + package)
    return "\n".join(out) + "\n"


def pem(der_base64):
    """The certificate of a join line's `cert` (DER, standard base64) as a PEM file's text."""
    b = der_base64.strip()
    return ("-----BEGIN CERTIFICATE-----\n" + "".join(b[i:i + 64] + "\n" for i in range(0, len(b), 64))
            + "-----END CERTIFICATE-----\n")
