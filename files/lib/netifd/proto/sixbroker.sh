#!/bin/sh
# netifd protocol handler "sixbroker": IPv6 over a 6in4 tunnel to your own broker.
#
# netifd runs every handler with "'' dump" at start-up, synchronously and one after another: answer from
# here, with no interpreter start.  The declaration is tests/shim_dump.py's netifd_dump() (from
# options.SCHEMA); a test holds the two together.  Teardown too is answered here.  Setup is the Python handler's
# (src/sixbroker/openwrt/netifd.py, through run.py).

if [ "$2" = dump ]; then
	echo '{"name": "sixbroker", "config": [["peeraddr", 3], ["ipaddr", 3], ["ip6addr", 3], ["ip6gw", 3], ["ip6prefix", 1], ["tunlink", 3], ["mtu", 3], ["ttl", 3], ["tos", 3], ["sourcerouting", 3], ["zone", 3], ["device", 3], ["tunnelid", 3], ["username", 3], ["password", 3], ["updatekey", 3], ["updateurl", 3], ["updatecert", 3], ["updateinterval", 3]], "no-device": true, "available": true}'
	exit 0
fi

# Teardown: after every ifdown, every failed setup and every down of the WAN the tunnel depends on
# (proto-shell.c proto_shell_handler, proto_shell_setup_failed, proto_shell_if_down_cb).  netifd deletes
# the sit device it created from the update, with its addresses and routes; the handler adds nothing
# else.  What is left is the record setup wrote for the hotplug script (src/sixbroker/openwrt/hotplug.py record):
# a tunnel that is down follows no WAN.
if [ "$2" = teardown ]; then
	case "$3" in
		""|*/*) ;;
		*) rec="${SIXBROKER_RUN_DIR:-/var/run/sixbroker}/$3.follows"; [ -e "$rec" ] && rm -f "$rec" ;;
	esac
	exit 0
fi

lib="${SIXBROKER_LIB:-/usr/lib/sixbroker}"
# The config JSON travels in the environment: MicroPython's Unix port as packaged on PyPI aborts
# ("FATAL: uncaught NLR") on an argument longer than 255 bytes, and a config with a few prefixes is longer.
if [ $# -ge 4 ]; then
	export SIXBROKER_CONFIG="$4"
	set -- "$1" "$2" "$3" - ${5:+"$5"}
fi
for py in $SIXBROKER_PYTHON /usr/bin/python3 /usr/bin/micropython; do
	[ -x "$py" ] && exec "$py" "$lib/sixbroker/run.py" netifd "$@"
done
echo "sixbroker: neither python3 nor micropython is installed" >&2
exit 1
