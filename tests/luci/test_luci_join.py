"""The LuCI paste field's join-line decoder (luci-app/.../sixbroker/joinline.js) is core/joinline.py's twin.

node runs the JS file as LuCI loads it (tests/luci/luci_harness.js `join`); every line of the shared
vectors (tests/data/join/vectors.json), then lines hypothesis makes, go to both decoders, which must
accept the same lines with the same fields and refuse the others with the same code (and detail).
The generated lines are damaged good lines (cut, a character changed, dropped, doubled, swapped, white
space put in) and well-framed lines around other JSON (a good checksum over fields of the wrong type, a
float MTU, NaN, v as 1.0 or true, nested values...), which reach the JSON reading and check() behind it.
"""
import binascii
import hashlib
import json
import os
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sixbroker.core import joinline
from sixbroker.core.errors import SixbrokerError
from test_luci_form import Loop

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HARNESS = os.path.join(ROOT, "tests", "luci", "luci_harness.js")
with open(os.path.join(ROOT, "tests", "data", "join", "vectors.json")) as f:
    VECTORS = json.load(f)
GOOD = [v["line"] for v in VECTORS["good"]]


@pytest.fixture(scope="module")
def js():
    loop = Loop("join")
    yield loop
    loop.close()


def python(text):
    try:
        return {"fields": joinline.decode(text)}
    except SixbrokerError as e:
        return {"code": e.code, "detail": e.detail}


def agree(js, text):
    py, mine = python(text), js(text)
    if "fields" in py:
        assert mine == py, text
    else:
        assert mine.get("code") == py["code"], (text, mine, py)
        # the words after the code too, but where they spell a value the Python way (repr() of a stray
        # character, str() of a v, the first of several unknown keys in dict order)
        if not str(py["detail"]).startswith(("a character", "unknown field")) and \
                not (py["code"] == "JOIN_VERSION" and not py["detail"].startswith("this sixbroker")):
            assert mine["detail"] == str(py["detail"]), (text, mine, py)
    return mine


def test_every_good_vector_decodes_to_its_fields(js):
    assert len(VECTORS["good"]) >= 4
    for v in VECTORS["good"]:
        assert js(v["line"]) == {"fields": v["fields"]}, v["why"]
        assert js(v["pasted"]) == {"fields": v["fields"]}, v["why"]
        agree(js, v["pasted"])


def test_every_bad_vector_is_refused_with_its_code(js):
    assert len(VECTORS["bad"]) >= 20
    for v in VECTORS["bad"]:
        assert agree(js, v["line"])["code"] == v["code"], v["why"]


def test_sha256_is_the_standard_one():
    # the FIPS 180-4 examples, and lengths around the 55/56/64-byte padding edges
    texts = [b"", b"abc", b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"] + \
        [bytes([i % 251 for i in range(n)]) for n in (55, 56, 57, 63, 64, 65, 119, 120, 1000, 70000)]
    p = subprocess.run(["node", HARNESS, "sha256"], input="\n".join(json.dumps(list(t)) for t in texts) + "\n",
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [hashlib.sha256(t).hexdigest() for t in texts]


def test_every_cut_and_every_single_change_of_a_good_line(js):
    line = GOOD[1]
    for n in range(len(line) + 1):
        agree(js, line[:n])
    for i in range(4, len(line), 7):
        for ch in "A_-z9 \t=+/:":
            agree(js, line[:i] + ch + line[i + 1:])


def frame(body):
    """A well-framed line around any bytes: length, body, the right checksum."""
    data = bytes([len(body) >> 8, len(body) & 255]) + body
    text = binascii.b2a_base64(data + hashlib.sha256(data).digest()[:8]).decode().strip()
    return "sb1:" + text.replace("+", "-").replace("/", "_").rstrip("=")


B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@st.composite
def damaged(draw):
    line = draw(st.sampled_from(GOOD + [v["pasted"] for v in VECTORS["good"]]))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(line)))
        how = draw(st.sampled_from(["cut", "change", "drop", "double", "swap", "space", "insert"]))
        if how == "cut":
            line = line[:i]
        elif how == "change":
            line = line[:i] + draw(st.sampled_from(B64URL + ":=+/ \u201c\u00e9")) + line[i + 1:]
        elif how == "drop":
            line = line[:i] + line[i + 1:]
        elif how == "double":
            line = line[:i] + line[i:i + 1] + line[i:]
        elif how == "swap":
            line = line[:i] + line[i + 1:i + 2] + line[i:i + 1] + line[i + 2:]
        elif how == "space":
            line = line[:i] + draw(st.sampled_from([" ", "\n", "\r\n", "\t", "\u00a0", "\x0b"])) + line[i:]
        else:
            line = line[:i] + draw(st.text(max_size=4)) + line[i:]
    return line


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=damaged())
def test_generated_damaged_lines_agree(js, line):
    agree(js, line)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10 ** 6, 10 ** 6) | st.integers(1270, 65530) |
    st.floats(allow_nan=True) | st.text(max_size=8) | st.sampled_from(["", "2001:db8::/64", "AAAA", "AA==", "é"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)


@st.composite
def framed(draw):
    fields = dict(draw(st.sampled_from(VECTORS["good"]))["fields"])
    for _ in range(draw(st.integers(0, 3))):
        k = draw(st.sampled_from(list(joinline.FIELDS) + ["extra", "__proto__", "1"]))
        if draw(st.booleans()):
            fields.pop(k, None)
        else:
            fields[k] = draw(JSON_VALUES | st.sampled_from([1.0, True, 1480.0, 2, "1", None]))
    text = json.dumps(fields, separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])),
                      ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):
        text = draw(st.sampled_from(["", " ", "\ufeff", "x", "[", "\t\n"])) + text + \
            draw(st.sampled_from(["", " ", "\n", "}", ",", "x"]))
    return frame(text.encode("utf-8", "surrogatepass"))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=framed())
def test_generated_framed_lines_agree(js, line):
    agree(js, line)


@pytest.mark.parametrize("body", [b'{"v":1.0}', b'[1]', b'1', b'"x"', b'null', b'{"v":NaN}', b'\xff', b'\xed\xa0\x80',
                                  b'{"v":1, "v":2}', b'{"v":true}', b"", b'{"v":-Infinity}', b'{"a":"\x01"}',
                                  b'{"v":01}', b'{"v":1e5}', b'{"v":"\\ud800"}'])
def test_odd_json_agrees(js, body):
    agree(js, frame(body))
    good = json.loads(json.dumps(VECTORS["good"][1]["fields"]))
    for k, v in (("mtu", 1480.0), ("mtu", True), ("v", 1.0), ("v", True), ("fp", None), ("cert", None),
                 ("ip6prefix", []), ("mtu", 10 ** 5000)):
        f = dict(good, **{k: v})
        agree(js, frame(json.dumps(f).encode()) if k != "mtu" or v != 10 ** 5000 else
              frame(json.dumps(dict(good, mtu=0)).replace('"mtu": 0', '"mtu": ' + "9" * 5000).encode()))
