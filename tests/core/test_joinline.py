"""core/joinline.py against the shared vectors (tests/data/join/vectors.json), on CPython and MicroPython:
every good line is exactly what encode() makes and decodes back; every damaged, cut or foreign one is
refused with its code.  The router's `join` and the LuCI paste field read the same file."""
import json

import pytest

from sixbroker.core import joinline
from sixbroker.core.errors import CODES, SixbrokerError

_HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
with open(_HERE + "/../data/join/vectors.json") as _f:
    VECTORS = json.load(_f)


def _code(text):
    try:
        joinline.decode(text)
    except SixbrokerError as e:
        return e.code
    return None


def test_good_lines_encode_and_decode_exactly():
    assert len(VECTORS["good"]) >= 3
    for v in VECTORS["good"]:
        fields = dict(v["fields"])
        assert joinline.encode(fields) == v["line"], v["why"]
        assert joinline.decode(v["line"]) == v["fields"], v["why"]
        assert joinline.decode(v["pasted"]) == v["fields"], v["why"]


def test_bad_lines_are_refused_with_their_code():
    assert len(VECTORS["bad"]) >= 15
    for v in VECTORS["bad"]:
        assert v["code"] in CODES, v["code"]
        assert _code(v["line"]) == v["code"], (v["why"], _code(v["line"]))


def test_every_cut_of_a_line_is_truncated_never_accepted():
    line = VECTORS["good"][1]["line"]
    for n in range(len("sb1:"), len(line)):
        assert _code(line[:n]) == "JOIN_TRUNCATED", n


def test_every_single_character_change_is_refused():
    line = VECTORS["good"][1]["line"]
    alphabet = "AZaz09-_"
    for i in range(len("sb1:"), len(line), 3):
        for ch in alphabet:
            if ch == line[i]:
                continue
            code = _code(line[:i] + ch + line[i + 1:])
            # the last character's low bits carry no data: a change there may decode to the same bytes
            assert code in ("JOIN_DAMAGED", "JOIN_TRUNCATED", None if i == len(line) - 1 else "x"), (i, ch, code)


def test_encode_refuses_what_a_router_could_not_use():
    good = dict(VECTORS["good"][1]["fields"])
    for change in ({"mtu": 99}, {"mtu": "1480"}, {"key": ""}, {"ip6prefix": "2001:db8::/64"}, {"fp": "AB"}):
        f = dict(good)
        f.update(change)
        with pytest.raises(SixbrokerError) as e:
            joinline.encode(f)
        assert e.value.code == "JOIN_INVALID"
    f = dict(good)
    del f["url"]
    with pytest.raises(SixbrokerError):
        joinline.encode(f)


def test_the_command_may_be_pasted_with_the_line():
    line = VECTORS["good"][1]["line"]
    fields = VECTORS["good"][1]["fields"]
    for text in ("sixbroker join " + line, "sixbroker  router   join " + line, "\n" + line + "\r\n"):
        assert joinline.decode(text) == fields, text
    assert _code("sixbroker joinx " + line) == "JOIN_FOREIGN"
