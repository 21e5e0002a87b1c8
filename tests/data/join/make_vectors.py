"""Writes tests/data/join/vectors.json (run once by hand when the format gains a case; the file is the
contract, this only saves typing it): python3 tests/data/join/make_vectors.py CERT.pem"""
import base64
import hashlib
import json
import os
import ssl
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "src"))
from sixbroker.core import joinline as j  # noqa: E402

der = ssl.PEM_cert_to_DER_cert(open(sys.argv[1]).read())
cert = base64.b64encode(der).decode()
fp = hashlib.sha256(der).hexdigest()
base = {"name": "home", "peer": "203.0.113.10", "ip6addr": "2001:db8:5b00::3/127", "ip6gw": "2001:db8:5b00::2",
        "ip6prefix": ["2001:db8:5b00:1::/64"], "mtu": 1480, "url": "https://203.0.113.10:8443/nic/update",
        "key": "q3J7mZ0xV9cTn2Lw8bYhKa"}
good = []


def g(why, f, pasted=None):
    line = j.encode(f)
    good.append({"why": why, "fields": dict(f, v=1), "line": line, "pasted": pasted(line) if pasted else line})


g("fingerprint and certificate (a self-signed broker)", dict(base, fp=fp, cert=cert))
g("no certificate (a broker with a CA-signed one)",
  dict(base, name="cottage", ip6prefix=["2001:db8:5b00:10::/60", "2001:db8:5b00:20::/64"], mtu=1472,
       peer="vps.example.net", url="https://vps.example.net/nic/update"))
g("the whole printed command, wrapped by a terminal", dict(base, fp=fp),
  lambda s: "  sixbroker join " + "\n".join(s[i:i + 60] for i in range(0, len(s), 60)) + "\n")
g("a /64 broker prefix: no ip6prefix for the LAN", dict(base, name="flat", ip6prefix=[]),
  lambda s: "sixbroker router join\t" + s)
line = good[0]["line"]
body = line[4:]
bad = []


def b(why, text, code):
    try:
        j.decode(text)
        raise SystemExit("accepted: " + why)
    except j.SixbrokerError as e:
        assert e.code == code, (why, e.code, code)
    bad.append({"why": why, "line": text, "code": code})


def raw(obj_text):
    data = bytes([len(obj_text) >> 8, len(obj_text) & 255]) + obj_text
    return "sb1:" + j._b64url(data + j._checksum(data))


b("cut in the middle", line[:len(line) // 2], "JOIN_TRUNCATED")
b("last 3 characters lost", line[:-3], "JOIN_TRUNCATED")
b("last character lost", line[:-1], "JOIN_TRUNCATED")
b("only the prefix", "sb1:", "JOIN_TRUNCATED")
b("one character changed", line[:40] + ("A" if line[40] != "A" else "B") + line[41:], "JOIN_DAMAGED")
b("two characters swapped", line[:50] + line[51] + line[50] + line[52:], "JOIN_DAMAGED")
b("a character outside base64url", line[:30] + "+" + line[31:], "JOIN_DAMAGED")
b("a typographic quote from a mail client", line[:30] + "\u201c" + line[31:], "JOIN_DAMAGED")
b("something appended", line + "AAAA", "JOIN_DAMAGED")
b("one character appended", line + "A", "JOIN_DAMAGED")
b("empty", "", "JOIN_FOREIGN")
b("a Hurricane Electric tunnel id", "123456", "JOIN_FOREIGN")
b("a uci batch line", "set network.home.proto='sixbroker'", "JOIN_FOREIGN")
b("a URL", "https://203.0.113.10:8443/nic/update?hostname=home", "JOIN_FOREIGN")
b("a newer format", "sb2:" + body, "JOIN_VERSION")
b("upper case prefix", "SB1:" + body, "JOIN_FOREIGN")
b("valid frame, not JSON", raw(b"hello"), "JOIN_INVALID")
b("valid frame, no key", raw(json.dumps({k: v for k, v in dict(base, v=1).items() if k != "key"}).encode()),
  "JOIN_INVALID")
b("valid frame, mtu as text", raw(json.dumps(dict(base, v=1, mtu="1480")).encode()), "JOIN_INVALID")
b("valid frame, version 2 inside", raw(json.dumps(dict(base, v=2)).encode()), "JOIN_VERSION")
b("valid frame, certificate not matching fp", raw(json.dumps(dict(base, v=1, fp="0" * 64, cert=cert)).encode()),
  "JOIN_INVALID")
b("valid frame, an unknown field", raw(json.dumps(dict(base, v=1, extra=1)).encode()), "JOIN_INVALID")
out = {"about": "Shared join-line vectors (src/sixbroker/core/joinline.py): each `good` line is exactly what "
       "encode(fields) makes and decodes to `fields`, as does `pasted` (what a user may paste); each `bad` line "
       "is refused with `code`. Read by the Python tests (CPython and MicroPython), the router's join and the "
       "LuCI paste field.", "good": good, "bad": bad}
with open(os.path.join(os.path.dirname(__file__), "vectors.json"), "w") as f:
    json.dump(out, f, indent=1, ensure_ascii=True)
    f.write("\n")
print(len(good), "good,", len(bad), "bad; first line", len(line), "characters")
