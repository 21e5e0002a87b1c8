#!/bin/sh
# PID 1 of the QEMU guest that tests/guest.py boots (busybox ash; this file is the initramfs's /init).
#
# Stage 1 (in the initramfs): load the virtio/9p/overlay modules, mount the host's / (9p, read-only)
# under a tmpfs overlay, give it proc/sys/dev/tmp/run, mount this run's read-write share on /run/guest,
# bind the unpacked module tree onto /lib/modules/$(uname -r), and switch_root into it.
# Stage 2 (PID 1 in the new root): bring up lo, run each command of the share's cmd/N/ in turn with the
# share's env and cwd, write its exit status to cmd/N/status, power off.
#
# The share's layout (written by tests/guest.py): one-line files moddir, cwd, token; env (items
# "NAME=value") and cmd/N/argv (one item per argument).  An item is a line holding its number of lines,
# then those lines, so values may hold newlines and no argument is ever parsed by a shell.  Everything is
# read with builtins: a fork costs tens of milliseconds under TCG.
set -u

SHARE=/run/guest
NINEP_OPTS=trans=virtio,version=9p2000.L,msize=262144

die() {
	echo "guest-init: $*" >/dev/console
	# A panic (panic=-1, QEMU -no-reboot) ends the VM even if power-off is unavailable.
	$BB poweroff -f
	exit 1
}

NL='
'

# Reads a one-line file into REPLY.
readline() {
	IFS= read -r REPLY <"$1" || die "cannot read $1"
}

# Reads the next item (see above) from standard input into REPLY; false at the end.
readitem() {
	IFS= read -r _count || return 1
	REPLY=
	_i=0
	while [ "$_i" -lt "$_count" ]; do
		IFS= read -r _line || die "truncated item"
		if [ "$_i" -eq 0 ]; then REPLY=$_line; else REPLY=$REPLY$NL$_line; fi
		_i=$((_i + 1))
	done
}

stage1() {
	BB=/bin/busybox
	$BB mkdir -p /proc /sys /dev
	$BB mount -t proc proc /proc
	$BB mount -t sysfs sysfs /sys
	$BB mount -t devtmpfs devtmpfs /dev
	exec </dev/console >/dev/console 2>&1
	# guest.py numbered them in dependency order.
	for m in /lib/boot-modules/*.ko; do
		$BB insmod "$m" || die "insmod $m failed"
	done
	$BB mkdir -p /host /rw /newroot
	$BB mount -t 9p -o "$NINEP_OPTS,cache=loose,ro" hostroot /host || die "cannot mount the host's / over 9p"
	$BB mount -t tmpfs -o mode=0755 overlay-rw /rw
	$BB mkdir /rw/upper /rw/work
	$BB mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
		die "cannot mount the overlay root"
	for d in proc sys dev tmp run; do
		$BB mkdir -p "/newroot/$d"
	done
	$BB mount --move /proc /newroot/proc
	$BB mount --move /sys /newroot/sys
	$BB mount --move /dev /newroot/dev
	$BB mkdir -p /newroot/dev/pts /newroot/dev/shm
	$BB mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /newroot/dev/pts
	$BB mount -t tmpfs -o mode=1777 shm /newroot/dev/shm
	$BB mount -t tmpfs -o mode=1777 tmp /newroot/tmp
	$BB mount -t tmpfs -o mode=0755 run /newroot/run
	$BB mkdir -p /newroot$SHARE /newroot/run/guest-init
	# No cache: the status written here must be on the host before power-off.
	$BB mount -t 9p -o "$NINEP_OPTS" run /newroot$SHARE || die "cannot mount the run share"
	$BB cp /bin/busybox /init /newroot/run/guest-init/
	# The overlay's read-only lower layer, in sight so a test can see it is read-only.
	$BB mkdir /newroot/run/guest-init/host
	$BB mount --move /host /newroot/run/guest-init/host
	readline /newroot$SHARE/moddir
	kver=$($BB uname -r)
	$BB mkdir -p "/newroot/lib/modules/$kver"
	# from the read-only lower layer: the tree may live under /tmp, which is the guest's own tmpfs
	$BB mount --bind "/newroot/run/guest-init/host$REPLY" "/newroot/lib/modules/$kver" || die "cannot bind the module tree $REPLY"
	exec $BB switch_root /newroot /run/guest-init/busybox sh /run/guest-init/init stage2
}

# A checkout under /tmp (CI may clone there) is hidden by the guest's own /tmp: lay the host's copy over it,
# writable the way the root is (an overlay with a throw-away upper layer).
show_host_dir() {
	case "$1" in
		/tmp/*) ;;
		*) return 0 ;;
	esac
	[ -d "$1" ] && return 0
	$BB mkdir -p "$1" /run/guest-cwd/upper /run/guest-cwd/work
	$BB mount -t overlay -o "lowerdir=/run/guest-init/host$1,upperdir=/run/guest-cwd/upper,workdir=/run/guest-cwd/work" \
		overlay "$1" || echo "guest: cannot show the host's $1" >&2
}

stage2() {
	BB=/run/guest-init/busybox
	# The console is a tty: without this every \n reaches the host as \r\n.
	$BB stty -F /dev/console -opost -echo
	$BB hostname sixbroker-guest
	$BB ip link set lo up
	unset HOME TERM OLDPWD
	while readitem; do
		export "$REPLY"
	done <"$SHARE/env"
	readline "$SHARE/cwd"
	cwd=$REPLY
	readline "$SHARE/token"
	token=$REPLY
	n=0
	while [ -d "$SHARE/cmd/$n" ]; do
		set --
		while readitem; do
			set -- "$@" "$REPLY"
		done <"$SHARE/cmd/$n/argv"
		# The host cuts each command's output at these lines; the random token keeps a command's own
		# output from ever looking like one.
		printf '\n%s:%d:start\n' "$token" "$n"
		show_host_dir "$cwd"
		if cd "$cwd"; then
			# env(1), not ash's exec: this busybox prefers its own applets to the PATH's programs.
			(exec /usr/bin/env -- "$@") </dev/null
			status=$?
		else
			echo "cannot change to directory $cwd" >"$SHARE/cmd/$n/error"
			status=
		fi
		printf '\n%s:%d:end\n' "$token" "$n"
		cd /
		[ -n "$status" ] && echo "$status" >"$SHARE/cmd/$n/status"
		n=$((n + 1))
	done
	$BB sync
	$BB poweroff -f
	exit 0
}

case "${1:-}" in
stage2) stage2 ;;
*) stage1 ;;
esac
