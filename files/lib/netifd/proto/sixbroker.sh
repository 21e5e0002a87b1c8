#!/bin/sh
# netifd protocol handler "sixbroker": IPv6 over a 6in4 tunnel to your own broker.
#
# netifd runs every handler with "'' dump" at start-up, synchronously and one after another: answer from
# here, with no interpreter start.  The declaration is src/sixbroker/options.py's netifd_dump(); a test
# holds the two together.  Everything else is the Python handler's (src/sixbroker/netifd.py, through run.py).

if [ "$2" = dump ]; then
	echo '{"name": "sixbroker", "config": [["peeraddr", 3], ["ipaddr", 3], ["ip6addr", 3], ["ip6gw", 3], ["ip6prefix", 1], ["tunlink", 3], ["mtu", 3], ["ttl", 3], ["tos", 3], ["sourcerouting", 3], ["zone", 3], ["device", 3]], "no-device": true, "available": true}'
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
