"""The router's dyndns2 update: the request it sends, the answer's meaning, and when to send the next one.

Both router ends use it: the plain-Linux router (linuxrouter/update.py) directly, and OpenWrt through the
ash loop files/usr/lib/sixbroker/update.sh that netifd runs as the tunnel's proto task (MicroPython cannot
start uclient-fetch).  That script carries ANSWERS' kinds and next_delay() as a `case` and a doubling;
tests/openwrt/test_updater.py holds the two together, word by word and failure by failure.

The answers are dyndns2's words as ddclient's nic_dyndns2_update and inadyn's dyndns plugin read them:
the first word of the body's first line; `good A` and `nochg A` carry the address the server now has.
"""

from sixbroker.core import addr

# word -> (kind, what it means to a user).  kinds:
#   ok       the broker has this end's address; the next update after the interval
#   config   the request itself is wrong (the key, the tunnel's name, the URL): retrying soon cannot help,
#            try again after LONG_DELAY in case the broker's side was fixed
#   abuse    the broker asks for fewer requests: wait LONG_DELAY
#   later    the broker or the network failed: retry with backoff from FIRST_DELAY
ANSWERS = {
    "good": ("ok", "The broker took the new address"),
    "nochg": ("ok", "The broker already had this address"),
    "badauth": ("config", "The broker refused the tunnel name or the update key"),
    "nohost": ("config", "The broker has no tunnel of this name (tunnelid)"),
    "notfqdn": ("config", "The broker did not accept the tunnel name (tunnelid) as a name"),
    "numhost": ("config", "The broker says the request named several tunnels"),
    "!yours": ("config", "The tunnel belongs to another account"),
    "!donator": ("config", "The broker refused an option this account may not use"),
    "badagent": ("config", "The broker refused the request as malformed"),
    "badip": ("config", "The broker refused the address (not a public IPv4 address)"),
    "abuse": ("abuse", "The broker is refusing updates for a while: too many requests"),
    "911": ("later", "The broker has a problem of its own; trying again later"),
    "dnserr": ("later", "The broker has a problem of its own; trying again later"),
}

# What the updater records when no dyndns2 word came back: the client's failure, by its exit status
# (uclient-fetch.c main()/handle_uclient_error(): 4 connect or time-out, 5 certificate, 8 an HTTP error
# status; GNU wget, the tests' stand-in: 4 network, 5 certificate, 6 authentication, 8 HTTP error).
FAILURES = {
    "unauthorized": ("config", "The broker refused the tunnel name or the update key (HTTP 401)"),
    "httperror": ("later", "The broker answered with an HTTP error"),
    "unreachable": ("later", "The broker could not be reached over IPv4"),
    "badcert": ("config", "The broker's certificate was not accepted (updatecert, or its name or address)"),
    "badresponse": ("later", "The broker's answer is not a dyndns2 answer (check updateurl)"),
    "nofetch": ("config", "uclient-fetch is not installed (opkg install uclient-fetch, and a libustream TLS library for https)"),
}

FIRST_DELAY = 30        # seconds, after a first failure of kind later; doubling from there
LONG_DELAY = 3600       # after config and abuse: dyndns2 asks clients not to repeat refused requests
DEFAULT_INTERVAL = 300  # the timer: a NAT box's new public address is caught within it
IDLE = 86400            # interval 0 (no timer): the loop still sleeps, to be woken by hotplug

# HE: https://forums.he.net "Tunnelbroker.net update API"; stock 6in4.sh builds the same URL
HE_URL = "https://ipv4.tunnelbroker.net/nic/update"
# our broker's `sixbroker server serve` (broker/update.py DEFAULT_PORT, the path dyndns2 clients use)
BROKER_PORT = 8443
BROKER_PATH = "/nic/update"


def kind(word):
    """The kind of a recorded word (ANSWERS or FAILURES); an unknown word is a bad response."""
    entry = ANSWERS.get(word) or FAILURES.get(word) or FAILURES["badresponse"]
    return entry[0]


def meaning(word):
    entry = ANSWERS.get(word) or FAILURES.get(word)
    return entry[1] if entry else FAILURES["badresponse"][1]


def next_delay(k, fails, interval):
    """Seconds until the next update after an answer of kind k, the fails-th failure in a row (1 = the
    first; 0 after a success).  interval 0 means no timer: sleep IDLE, waiting for a wake-up."""
    timer = interval if interval > 0 else IDLE
    if k == "ok":
        return timer
    if k in ("config", "abuse"):
        return max(LONG_DELAY, interval)
    delay = FIRST_DELAY
    for _ in range(min(max(fails, 1) - 1, 20)):
        delay *= 2
    # the timer is the most a retry waits: never later than a success would
    return min(delay, timer) if interval > 0 else min(delay, LONG_DELAY)


def parse(body, status=0, errors=""):
    """(word, address or None) from what the client printed: body (stdout), its exit status and stderr.

    A dyndns2 word on the first line wins whatever the status (a server may send `badauth` with 401 and a
    client may print it).  Without one, the exit status and stderr say what failed."""
    line = (body or "").strip().split("\n")[0].strip()
    words = line.split()
    if words and words[0] in ANSWERS:
        w = words[0]
        a = None
        if w in ("good", "nochg") and len(words) > 1:
            a = _ipv4(words[1])
        return w, a
    if status == 0:
        return "badresponse", None
    if status == 127:
        return "nofetch", None
    if status == 5:
        return "badcert", None
    if status == 4:
        return "unreachable", None
    if status == 6 or " 401" in (errors or ""):
        return "unauthorized", None
    if status == 8:
        return "httperror", None
    return "unreachable", None


def _ipv4(text):
    try:
        return str(addr.Address.parse(text, 4))
    except (addr.AddressError, ValueError):
        return None


def is_public(a):
    """Whether an IPv4 address is worth sending as myip: not private (RFC 1918), shared (CGNAT, RFC 6598),
    loopback or link-local.  Behind NAT the router's own address is private, and the broker takes the
    request's source instead.  The same test as stock 6in4.sh's test_6in4_rfc1918 (plus loopback and
    link-local), so documentation addresses pass, as in the tests."""
    return a.is_unicast and not (a.is_private or a.is_cgnat or a.is_loopback or a.is_link_local)


def _quote(text):
    # RFC 3986 unreserved characters pass; everything else as %XX of its UTF-8 bytes
    out = []
    for b in text.encode("utf-8"):
        c = chr(b)
        if ("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9") or c in "-._~":
            out.append(c)
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def default_url(tunnelid, peer_host):
    """The update URL when updateurl is empty: Hurricane Electric's for a numeric tunnel ID (HE's tunnels
    are numbered; our broker's names start with a letter), else our broker's at the peer."""
    if tunnelid.isdigit():
        return HE_URL
    return "https://%s:%d%s" % (peer_host, BROKER_PORT, BROKER_PATH)


def request_url(base, tunnelid, myip=None):
    """base?hostname=TUNNELID[&myip=A] (or &... when base has a query already)."""
    url = base + ("&" if "?" in base else "?") + "hostname=" + _quote(tunnelid)
    if myip is not None:
        url += "&myip=" + str(myip)
    return url


def fetch_argv(user, cert=None, timeout=20):
    """The uclient-fetch command line but its last two words, every option from its getopt table
    (uclient-fetch.c main(): "46cO:P:qsT:U:vY:" and longopts[]); tests/openwrt/test_updater.py parses it
    with that table.  update.sh appends --password=$SIXBROKER_KEY and the URL from its environment, so the
    key never sits in the proto task's command line (uclient-fetch overwrites its own copy with '*').

    -4: over IPv4 only, the tunnel itself may be what is broken.  Not -q: without it uclient-fetch names
    the HTTP status of a refusal on stderr ("HTTP error 401"), all there is of a refused request."""
    argv = ["uclient-fetch", "-4", "-O", "-", "-T", str(timeout), "--user=" + user]
    if cert:
        argv.append("--ca-certificate=" + cert)
    return argv
