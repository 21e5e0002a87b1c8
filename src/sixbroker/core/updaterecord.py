"""The record of a tunnel's last update to its broker: one small file, read for every status view.

The updater writes it after each request (OpenWrt: files/usr/lib/sixbroker/update.sh, the proto task; the
plain-Linux router: linuxrouter/update.py), as key=value lines, aside and renamed:
    time=<epoch>  word=<dyndns2 word or failure>  address=<IPv4 the broker saw, on good/nochg>
    kind=ok|config|abuse|later  status=<client exit status>  fails=<failures in a row>  next=<epoch>
    interval=<s>  follow=<interface whose changes wake it>  url=<update URL without its query>
Nothing in it is secret (the key never is), so status may show all of it.
"""

from sixbroker.core import dyndns

FIELDS = ("time", "word", "address", "kind", "status", "fails", "next", "interval", "follow", "url")
NUMBERS = ("time", "status", "fails", "next", "interval")
MAX_BYTES = 4096        # a record is a few hundred bytes: anything bigger is not one


def parse(text):
    """The record as a dict of FIELDS (None where missing or malformed), plus `words`: the answer in words."""
    out = dict((k, None) for k in FIELDS)
    for line in text.split("\n"):
        key, sep, value = line.partition("=")
        if not sep or key not in FIELDS or out[key] is not None:
            continue
        value = value.strip()
        if key in NUMBERS:
            value = int(value) if value and all("0" <= c <= "9" for c in value) else None
        elif key == "address":
            value = dyndns._ipv4(value) if value else None
        else:
            # shown in a terminal and a browser: printable ASCII only, and short
            value = "".join(c for c in value if " " <= c <= "~")[:200] or None
        out[key] = value
    out["kind"] = dyndns.kind(out["word"]) if out["word"] else None
    out["words"] = dyndns.meaning(out["word"]) if out["word"] else None
    return out


def read(path):
    """parse() of the file at path, or None when there is none (no update yet, or no updater)."""
    try:
        with open(path) as f:
            text = f.read(MAX_BYTES + 1)
    except OSError:
        return None
    if len(text) > MAX_BYTES:
        return None
    return parse(text)


def write(path, rec):
    """Write a record (the plain-Linux router; update.sh writes its own in the shell)."""
    import os
    new = path + ".new"
    with open(new, "w") as f:
        for k in FIELDS:
            v = rec.get(k)
            f.write(k + "=" + ("" if v is None else str(v)) + "\n")
    os.rename(new, path)
