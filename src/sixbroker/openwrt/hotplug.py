"""Re-run setup of the sixbroker interfaces whose local address went stale.

netifd re-runs a handler's setup when the WAN goes down and up (the host dependency), but not when the
WAN's address changes without a down event (a new DHCP lease, a PPPoE re-dial that keeps the link):
the tunnel would keep sending from the old address.  files/etc/hotplug.d/iface/95-sixbroker calls this on
ifup/ifupdate of an interface a tunnel follows, once that tunnel's local address is no longer one of the
router's; it restarts only the tunnels whose derived local address differs from what they would get now.
Run as: run.py hotplug <interface that changed>

hotplug-call runs its scripts for every interface event, one after another, so the script decides in the
shell from what each tunnel's setup recorded here (record()): one file per tunnel, removed by the shim's
teardown.
"""

import sys

from sixbroker.core import addr
from sixbroker.core.errors import SixbrokerError


def stale(dump, route_device=None):
    """Names of up sixbroker interfaces whose derived local address is no longer the current one."""
    from sixbroker.openwrt import hostinfo

    route_device = route_device or hostinfo.route_device
    ifaces = dump.get("interface") or []
    by_name = dict((i.get("interface"), i) for i in ifaces)
    out = []
    for i in ifaces:
        if i.get("proto") != "sixbroker" or not i.get("up"):
            continue
        sb = (i.get("data") or {}).get("sixbroker") or {}
        src = sb.get("local_from")
        if src not in ("tunlink", "route"):
            continue        # pinned by ipaddr: nothing to follow
        now = None
        if src == "tunlink":
            now = _first_ipv4(by_name.get(sb.get("tunlink")) or {})
        else:
            dev = route_device(addr.Address.parse(sb["remote"], 4))
            for st in ifaces:
                if st.get("up") and st.get("l3_device") == dev:
                    now = _first_ipv4(st)
                    if now:
                        break
        if now and now != sb.get("local"):
            out.append(i["interface"])
    return sorted(out)


# The handler's one run directory (a tmpfs on OpenWrt: nothing outlives a reboot), a file per tunnel and kind:
#  <tunnel>.follows  "<interface the tunnel follows> <local IPv4 it uses>\n", read by the hotplug script with
#                    the shell's `read` and removed by the shim's teardown (files/lib/netifd/proto/sixbroker.sh);
#  <tunnel>.failures the failures in a row that set the next retry's delay (netifd.py).
RUN_DIR = "/var/run/sixbroker"


def run_path(interface, kind):
    import os
    from sixbroker.core import options
    # a dynamic interface's name is whatever the ubus caller chose: keep it inside the directory
    name = interface if options.is_file_name(interface) else "%04x" % options.name_hash(interface)
    return (os.getenv("SIXBROKER_RUN_DIR") or RUN_DIR) + "/" + name + "." + kind


def make_run_dir(path):
    import os
    try:
        os.mkdir(path.rsplit("/", 1)[0])
    except OSError:
        pass        # there already (or not creatable: the open that follows says so)


def record(interface, msgs):
    """After a setup sent msgs (the host dependency, then the update): what the hotplug script follows.

    A local address pinned by ipaddr follows nothing, so it leaves no record.  A record that cannot be
    written costs only the following of this tunnel, never the tunnel: said in the log."""
    import os
    follow = msgs[0].get("ifname")
    sb = msgs[1]["data"]["sixbroker"]     # the update (an updater's task may follow it)
    if sb["local_from"] == "option" or not follow:
        return
    path = run_path(interface, "follows")
    new = path + ".new"
    make_run_dir(path)
    try:
        # written aside (a name the script's glob skips), then renamed: it never reads half a line
        with open(new, "w") as f:
            f.write(follow + " " + sb["local"] + "\n")
        os.rename(new, path)
    except OSError as e:
        sys.stderr.write("sixbroker: " + interface + ": cannot record the WAN to follow in " + path + ": " +
                         str(e) + "\n")


def _first_ipv4(st):
    for a in st.get("ipv4-address") or []:
        if a.get("address"):
            return a["address"]
    return None


def main(argv):
    from sixbroker.openwrt import ubus
    try:
        bus = ubus.connect()
        try:
            names = stale(bus.call("network.interface", "dump", {}) or {})
            for name in names:
                sys.stderr.write("sixbroker: " + name + ": local address changed, restarting the tunnel\n")
                # what /sbin/ifup does: down, then up
                bus.call("network.interface", "down", {"interface": name})
                bus.call("network.interface", "up", {"interface": name})
        finally:
            bus.close()
    except SixbrokerError as e:
        sys.stderr.write("sixbroker: hotplug: " + e.code + ": " + e.text + "\n")
        return 1
    return 0

