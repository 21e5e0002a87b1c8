"""What the home router needs for one tunnel: its `network` interface section, as a `uci batch` script to
paste into the router's shell, and as JSON.

The options are the router's protocol options (sixbroker.core.options.SCHEMA), filled with this tunnel's
facts; a test reads the printed script back with sixbroker.core.uci and validates it with
sixbroker.core.options.validate, so the router is known to accept what we print.  The LAN needs nothing: the
default OpenWrt LAN has `ip6assign 60`, and netifd shrinks an assignment that does not fit the delegated
prefix until it does (netifd interface-ip.c, interface_update_prefix_assignments), so a /64 reaches the
LAN as a /64.
"""

from sixbroker.core import addr, tunnelconf, uci

PACKAGE = "network"
SECTION_TYPE = "interface"
PROTO = tunnelconf.PROTO


def fields(tunnel):
    """The tunnel's part of a join line's fields (core/joinline names): what options() and the join line
    are both made from.  tunnel: the view of broker.model.view()."""
    return {"name": tunnel["name"], "peer": tunnel["peeraddr"],
            "ip6addr": tunnel["router_address"] + "/" + str(tunnel["transfer_length"]),
            "ip6gw": tunnel["server_address"],
            "ip6prefix": [p for p in tunnel["routed"] if not _longer_than_64(p)], "mtu": tunnel["mtu"]}


CERT_DIR = "/etc/sixbroker"     # where `sixbroker join` writes the broker's certificate (openwrt/join.py)


def cert_path(tunnel):
    return CERT_DIR + "/" + tunnel["name"] + ".pem"


def options(tunnel, updater=None):
    """[(option, value)] for the router's interface section, in the order they are printed (the same
    section `sixbroker join` writes: core/tunnelconf).  updater: the join line's fields (with the key,
    known only when `add` or `key --rotate` made it), so the printed section keeps its broker informed as
    the join line's does; without it the section has no updater."""
    f = updater or fields(tunnel)
    return tunnelconf.options(f, cert_path(tunnel) if f.get("cert") else None)


def _longer_than_64(prefix):
    return addr.Network.parse(prefix).length > 64


def lan_script(tunnel):
    """The LAN's part when a routed prefix is longer than /64 (a /64 broker prefix), else None.

    netifd takes an ip6prefix of /1 to /64 only (proto.c parse_prefix_option: `length < 1 || length >
    64` is refused, and with it the interface's whole update), so such a prefix cannot be delegated:
    the LAN gets its ::1 as a plain address, and odhcpd hands hosts addresses from it by stateful DHCPv6
    (dhcpv6-ia.c: an address prefix longer than /64 is always offered for IA_NA) with the RA's managed
    flag set; SLAAC needs a /64 (RFC 4862 5.5.3), so there is none."""
    lines = []
    for p in tunnel["routed"]:
        if _longer_than_64(p):
            net = addr.Network.parse(p)
            value = "%s/%d" % (net.host(1), net.length)
            lines += ["del_list network.lan.ip6addr='%s'" % value, "add_list network.lan.ip6addr='%s'" % value]
    if not lines:
        return None
    return "\n".join(lines + ["set dhcp.lan.dhcpv6='server'", "del_list dhcp.lan.ra_flags='managed-config'",
                              "add_list dhcp.lan.ra_flags='managed-config'", "commit network", "commit dhcp"]) + "\n"


def batch_script(tunnel, updater=None):
    """The `uci batch` input: replaces network.NAME and commits."""
    return tunnelconf.batch(tunnel["name"], options(tunnel, updater), PACKAGE, SECTION_TYPE)


def _cert_script(tunnel, updater):
    # the same file `sixbroker join` writes; a quoted here-document, so the shell expands nothing in it
    path = cert_path(tunnel)
    return ("# the broker's self-signed certificate (SHA-256 %s), which the updater checks the broker by\n"
            "mkdir -p %s\ncat >%s <<'EOF'\n%sEOF\n" % (updater.get("fp", "?"), CERT_DIR, tunnelconf.quote(path),
                                                      tunnelconf.pem(updater["cert"])))


def shell(tunnel, updater=None):
    """Ready to paste into the router's shell: the batch, then bring the interface up."""
    out = "# sixbroker tunnel '%s': run on the OpenWrt router (package sixbroker installed)\n" % tunnel["name"]
    if updater is None:
        out += ("# no updater in this section: the update key is stored only as a hash; `sixbroker server key %s "
                "--rotate` prints a new one\n" % tunnel["name"])
    elif updater.get("cert"):
        out += _cert_script(tunnel, updater)
    out += uci.batch_heredoc(batch_script(tunnel, updater))
    lan = lan_script(tunnel)
    if lan is not None:
        out += ("# the routed prefix is longer than /64: no SLAAC on the LAN, hosts get addresses by DHCPv6\n"
                + uci.batch_heredoc(lan) + "/etc/init.d/odhcpd reload\nifup lan\n")
    return out + "ifup " + tunnel["name"] + "\n"


def as_json(tunnel, updater=None):
    opts = {}
    for name, value in options(tunnel, updater):
        opts[name] = value
    out = {
        "interface": tunnel["name"],
        "package": PACKAGE,
        "type": SECTION_TYPE,
        "options": opts,
        "uci_batch": batch_script(tunnel, updater),
        "shell": shell(tunnel, updater),
    }
    if updater is not None and updater.get("cert"):
        out["cert_file"] = {"path": cert_path(tunnel), "pem": tunnelconf.pem(updater["cert"])}
    lan = lan_script(tunnel)
    if lan is not None:
        out["lan_uci_batch"] = lan
    return out
