#!/bin/sh
# The updater of one sixbroker tunnel, netifd's proto task: see src/sixbroker/openwrt/updater.py (how
# netifd runs it) and src/sixbroker/core/dyndns.py (the kinds and delays mirrored here; a test holds them).
# It must never end by itself: netifd reads a proto task's end as a lost link.

iface="${SIXBROKER_IFACE:?}"
interval="${SIXBROKER_INTERVAL:-300}"
record="${SIXBROKER_RECORD:?}"
FIRST=30 LONG=3600 IDLE=86400

# traps set a flag (checked before every wait) and end the child waited for
sleeper="" fetcher="" woken="" stop=""
trap 'woken=1; [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null' HUP
trap 'stop=1; [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null; [ -n "$fetcher" ] && kill "$fetcher" 2>/dev/null' TERM INT

mkdir -p "${record%/*}" 2>/dev/null
cr=$(printf '\r')
fails=0 said=""

while [ -z "$stop" ]; do
	woken=""
	# a subshell records the exit status: a wake-up interrupts this shell's wait, whose status is then the signal's
	rm -f "$record.st"
	(
		trap '[ -n "$c" ] && kill "$c" 2>/dev/null' TERM
		c=""
		"$@" "--password=$SIXBROKER_KEY" "$SIXBROKER_URL" > "$record.out" 2> "$record.err" &
		c=$!
		wait "$c"
		echo "$?" > "$record.st"
	) &
	fetcher=$!
	[ -n "$stop" ] && kill "$fetcher" 2>/dev/null
	while kill -0 "$fetcher" 2>/dev/null; do
		wait "$fetcher"
	done
	fetcher=""
	[ -n "$stop" ] && break
	status=1
	read -r status < "$record.st"

	word="" address="" rest=""
	read -r word address rest < "$record.out"
	word="${word%$cr}" address="${address%$cr}"
	case "$word" in
		good|nochg) kind=ok ;;
		badauth|nohost|notfqdn|numhost|'!yours'|'!donator'|badagent|badip) kind=config address="" ;;
		abuse) kind=abuse address="" ;;
		911|dnserr) kind=later address="" ;;
		*)
			address=""
			case "$status" in
				0) word=badresponse kind=later ;;
				127) word=nofetch kind=config ;;
				5) word=badcert kind=config ;;
				4) word=unreachable kind=later ;;
				6) word=unauthorized kind=config ;;
				*)
					if grep -q ' 401' "$record.err" 2>/dev/null; then
						word=unauthorized kind=config
					elif [ "$status" = 8 ]; then
						word=httperror kind=later
					else
						word=unreachable kind=later
					fi ;;
			esac ;;
	esac
	case "$address" in
		*[!0-9.]*) address="" ;;
	esac

	timer="$interval"
	[ "$timer" -gt 0 ] || timer=$IDLE
	case "$kind" in
		ok) fails=0 delay=$timer ;;
		config|abuse)
			fails=$((fails + 1)) delay=$LONG
			[ "$interval" -gt "$delay" ] && delay=$interval ;;
		*)
			fails=$((fails + 1)) delay=$FIRST n=1
			while [ "$n" -lt "$fails" ] && [ "$n" -le 20 ]; do
				delay=$((delay * 2)) n=$((n + 1))
			done
			cap=$timer
			[ "$interval" -gt 0 ] || cap=$LONG
			[ "$delay" -gt "$cap" ] && delay=$cap ;;
	esac

	# the log line first: whoever sees the record may stop the task at once
	if [ "$word $address" != "$said" ] || [ "$kind" != ok ]; then
		echo "sixbroker: $iface: update: $word${address:+ $address} ($kind, next in ${delay} s)"
		said="$word $address"
	fi

	now=$(date +%s)
	{
		echo "time=$now"
		echo "word=$word"
		echo "address=$address"
		echo "kind=$kind"
		echo "status=$status"
		echo "fails=$fails"
		echo "next=$((now + delay))"
		echo "interval=$interval"
		echo "follow=$SIXBROKER_FOLLOW"
		echo "url=${SIXBROKER_URL%%\?*}"
	} > "$record.new" && mv -f "$record.new" "$record"
	rm -f "$record.out" "$record.err" "$record.st"


	# woken during the request: it may have left from the old address, so again at once
	[ -n "$woken" ] && continue
	sleep "$delay" &
	sleeper=$!
	# a wake-up between the check above and here found no sleeper to kill: it is seen here
	[ -n "$woken$stop" ] || wait "$sleeper"
	kill "$sleeper" 2>/dev/null
	sleeper=""
done
rm -f "$record.out" "$record.err" "$record.st" "$record.new"
exit 0
