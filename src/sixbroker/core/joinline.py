"""The one-paste join line: everything a router needs for one tunnel, in one checksummed, versioned token.

    sixbroker join sb1:<base64url, no padding>

The base64url body decodes to:  2 bytes  N, the length of the JSON that follows (big-endian)
                                N bytes  the JSON object (ASCII, keys in FIELDS order, no spaces)
                                8 bytes  the first 8 bytes of SHA-256 over the 2 + N bytes before
The length comes first so that a cut line is told apart from a changed one (JOIN_TRUNCATED, not
JOIN_DAMAGED): terminals and mail wrap long lines and drop their ends.  White space anywhere in the line
is ignored for the same reason, and a leading `sixbroker join ` (or `sixbroker router join `) is taken
off, so the whole printed command may be pasted.  64 bits of checksum make a damaged line that still
passes one in 2^64; it guards against accidents, not an attacker (the line carries a secret key and is
to be sent only over a channel one trusts).

JSON fields (FIELDS): v (1), name, peer (the broker's IPv4 or host name), ip6addr (the router's /127
address with its length), ip6gw, ip6prefix (list), mtu (int), url (the update service's /nic/update),
key (the tunnel's update key), and optionally fp (SHA-256 of the broker's certificate, 64 hex digits)
and cert (the certificate itself, DER in standard base64: a self-signed one, which the router writes out
as PEM for uclient-fetch --ca-certificate).

Runs on CPython and MicroPython alike (binascii, hashlib, json only).  Errors are SixbrokerError with
the codes JOIN_FOREIGN, JOIN_VERSION, JOIN_TRUNCATED, JOIN_DAMAGED, JOIN_INVALID.
"""

import binascii
import hashlib
import json

from sixbroker.core.errors import SixbrokerError

VERSION = 1
PREFIX = "sb1:"
CHECK_BYTES = 8
# what a pasted line may carry before the token: the command itself
COMMANDS = ("sixbroker router join", "sixbroker join")
REQUIRED = ("name", "peer", "ip6addr", "ip6gw", "ip6prefix", "mtu", "url", "key")
OPTIONAL = ("fp", "cert")
FIELDS = ("v",) + REQUIRED + OPTIONAL
MAX_JSON = 65535
_WS = " \t\r\n"
_HEX = "0123456789abcdef"


def _checksum(data):
    return hashlib.sha256(data).digest()[:CHECK_BYTES]


def _json_value(v):
    # lists by hand: CPython and MicroPython differ in json.dumps' separators, and the line must be the
    # same bytes on both (the shared vectors compare encode() to the expected line)
    if isinstance(v, list):
        return "[" + ",".join(_json_value(x) for x in v) + "]"
    return json.dumps(v)


def _b64url(data):
    text = binascii.b2a_base64(data).decode().strip()
    return text.replace("+", "-").replace("/", "_").rstrip("=")


def _unb64url(text):
    for ch in text:
        if not (("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9") or ch in "-_"):
            raise SixbrokerError("JOIN_DAMAGED", "a character that is not base64url: %r" % ch)
    if len(text) % 4 == 1:
        # no byte string encodes to this length: a line cut there (or one with a character too many,
        # which the length check in decode() then finds); its last character carries no whole byte
        text = text[:-1]
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return binascii.a2b_base64(text)
    except Exception:
        raise SixbrokerError("JOIN_DAMAGED", "not base64url")


def check(fields):
    """fields with every required one present and of its type, else JOIN_INVALID naming the field."""
    if not isinstance(fields, dict):
        raise SixbrokerError("JOIN_INVALID", "not an object")
    for k in REQUIRED:
        if k not in fields:
            raise SixbrokerError("JOIN_INVALID", "no " + k)
    for k in fields:
        if k not in FIELDS:
            raise SixbrokerError("JOIN_INVALID", "unknown field " + str(k))
    for k in ("name", "peer", "ip6addr", "ip6gw", "url", "key"):
        if not isinstance(fields[k], str) or not fields[k]:
            raise SixbrokerError("JOIN_INVALID", k + " is not a text")
    mtu = fields["mtu"]
    if not isinstance(mtu, int) or isinstance(mtu, bool) or mtu < 1280 or mtu > 65515:
        raise SixbrokerError("JOIN_INVALID", "mtu is not a number from 1280 to 65515")
    p = fields["ip6prefix"]
    if not isinstance(p, list) or [x for x in p if not isinstance(x, str)]:
        raise SixbrokerError("JOIN_INVALID", "ip6prefix is not a list of texts")
    fp = fields.get("fp")
    if fp is not None and (not isinstance(fp, str) or len(fp) != 64 or [c for c in fp if c not in _HEX]):
        raise SixbrokerError("JOIN_INVALID", "fp is not 64 lowercase hex digits")
    cert = fields.get("cert")
    if cert is not None:
        if not isinstance(cert, str) or not cert:
            raise SixbrokerError("JOIN_INVALID", "cert is not a text")
        try:
            der = binascii.a2b_base64(cert)
        except Exception:
            raise SixbrokerError("JOIN_INVALID", "cert is not base64")
        if fp is not None and binascii.hexlify(hashlib.sha256(der).digest()).decode() != fp:
            raise SixbrokerError("JOIN_INVALID", "cert does not have the fingerprint fp")
    v = fields.get("v", VERSION)
    if v != VERSION:
        raise SixbrokerError("JOIN_VERSION", str(v))
    return fields


def encode(fields):
    """The join line (without the command) of fields: a dict with REQUIRED and any of OPTIONAL."""
    f = dict(fields)
    f["v"] = VERSION
    check(f)
    parts = []
    for k in FIELDS:
        if f.get(k) is not None:
            parts.append(json.dumps(k) + ":" + _json_value(f[k]))
    body = ("{" + ",".join(parts) + "}").encode()
    if len(body) > MAX_JSON:
        raise SixbrokerError("JOIN_INVALID", "too long")
    data = bytes([len(body) >> 8, len(body) & 255]) + body
    return PREFIX + _b64url(data + _checksum(data))


def strip(line):
    """The token of a pasted line: white space anywhere and a leading command taken off."""
    if not isinstance(line, str):
        raise SixbrokerError("JOIN_FOREIGN", "not a text")
    text = line.strip(_WS)
    for cmd in COMMANDS:
        words = cmd.split(" ")
        rest = text
        ok = True
        for w in words:
            if not rest.startswith(w):
                ok = False
                break
            rest = rest[len(w):]
            # at least one space between the words, however many the paste has
            if not rest or rest[0] not in _WS:
                ok = False
                break
            rest = rest.lstrip(_WS)
        if ok:
            text = rest
            break
    return "".join(ch for ch in text if ch not in _WS)


def decode(line):
    """The fields of a join line (with or without the command before it), checked; else SixbrokerError
    JOIN_FOREIGN (not ours), JOIN_VERSION (a newer format), JOIN_TRUNCATED, JOIN_DAMAGED, JOIN_INVALID."""
    token = strip(line)
    if not token.startswith(PREFIX):
        head = token.split(":", 1)[0] if ":" in token else ""
        if len(head) > 2 and head[:2] == "sb" and [c for c in head[2:] if c not in "0123456789"] == []:
            raise SixbrokerError("JOIN_VERSION", "this sixbroker reads %s lines, not %s" % (PREFIX[:-1], head))
        raise SixbrokerError("JOIN_FOREIGN", "it does not start with " + PREFIX)
    data = _unb64url(token[len(PREFIX):])
    if len(data) < 2:
        raise SixbrokerError("JOIN_TRUNCATED", "nothing after " + PREFIX)
    n = data[0] * 256 + data[1]
    want = 2 + n + CHECK_BYTES
    if len(data) < want:
        raise SixbrokerError("JOIN_TRUNCATED", "%d of %d bytes" % (len(data), want))
    if len(data) > want:
        raise SixbrokerError("JOIN_DAMAGED", "%d bytes more than the line says" % (len(data) - want))
    if _checksum(data[:2 + n]) != data[2 + n:]:
        raise SixbrokerError("JOIN_DAMAGED", "the checksum does not match")
    try:
        fields = json.loads(data[2:2 + n].decode())
    except Exception:
        # the checksum matched: a line made by something else that followed the format badly
        raise SixbrokerError("JOIN_INVALID", "not JSON")
    if isinstance(fields, dict) and "v" not in fields:
        raise SixbrokerError("JOIN_INVALID", "no v")
    return check(fields)
