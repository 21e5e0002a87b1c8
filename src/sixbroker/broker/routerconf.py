"""What the home router needs for one tunnel: its `network` interface section, as a `uci batch` script to
paste into the router's shell, and as JSON.

The options are the router's protocol options (sixbroker.options.SCHEMA), filled with this tunnel's
facts; a test reads the printed script back with sixbroker.uci and validates it with
sixbroker.options.validate, so the router is known to accept what we print.  The LAN needs nothing: the
default OpenWrt LAN has `ip6assign 60`, and netifd shrinks an assignment that does not fit the delegated
prefix until it does (netifd interface-ip.c, interface_update_prefix_assignments), so a /64 reaches the
LAN as a /64.
"""

from sixbroker import uci

PACKAGE = "network"
SECTION_TYPE = "interface"
PROTO = "sixbroker"


def options(tunnel):
    """[(option, value)] for the router's interface section, in the order they are printed.

    tunnel: the view of broker.model.view().
    """
    return [
        ("proto", PROTO),
        ("peeraddr", tunnel["peeraddr"]),
        ("ip6addr", tunnel["router_address"] + "/" + str(tunnel["transfer_length"])),
        ("ip6gw", tunnel["server_address"]),
        ("ip6prefix", list(tunnel["routed"])),
        # the broker's MTU, which the router takes as its most (plan.tunnel_mtu): behind PPPoE it still
        # uses 1472, and the broker's larger packets meet the ISP's "fragmentation needed" (DF is set)
        ("mtu", str(tunnel["mtu"])),
    ]


def batch_script(tunnel):
    """The `uci batch` input: replaces network.NAME and commits."""
    section = uci.new_section(SECTION_TYPE, tunnel["name"], options(tunnel))
    return uci.uci_batch_script(PACKAGE, [section], replace=True, commit=True)


def shell(tunnel):
    """Ready to paste into the router's shell: the batch, then bring the interface up."""
    return ("# sixbroker tunnel '%s': run on the OpenWrt router (package sixbroker installed)\n"
            % tunnel["name"]) + uci.batch_heredoc(batch_script(tunnel)) + "ifup " + tunnel["name"] + "\n"


def as_json(tunnel):
    opts = {}
    for name, value in options(tunnel):
        opts[name] = value
    return {
        "interface": tunnel["name"],
        "package": PACKAGE,
        "type": SECTION_TYPE,
        "options": opts,
        "uci_batch": batch_script(tunnel),
        "shell": shell(tunnel),
    }
