"""The "Join line" field of the LuCI protocol form, driven as LuCI 23.05 drives it (tests/luci/luci_form.js):
open the interface dialog, paste a line, look at the fields, Save, read what was staged in UCI and what
file rpcd's file.write was asked to write.

A good line must stage exactly the options `sixbroker join` writes (core/tunnelconf.options(), less the
proto the dialog already has) and write the certificate where updatecert points, as core/tunnelconf.pem()
writes it; a bad one shows its code's words (errors.py) and stages nothing; an empty field is valid and
itself never saved.
"""
import json
import os
import subprocess

import pytest

from sixbroker.core import addr, options, tunnelconf
from sixbroker.core.errors import CODES

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HARNESS = os.path.join(ROOT, "tests", "luci", "luci_harness.js")
RESOURCES = os.path.join(ROOT, "luci-app", "htdocs", "luci-static", "resources")
with open(os.path.join(ROOT, "tests", "data", "join", "vectors.json")) as f:
    VECTORS = json.load(f)
SECTION = "wan6"
JOIN = "_sixbroker_join"
WITH_CERT = [v for v in VECTORS["good"] if "cert" in v["fields"]]
WITHOUT_CERT = [v for v in VECTORS["good"] if "cert" not in v["fields"]]
SEED = {"proto": "sixbroker", "peeraddr": "198.51.100.7", "ip6addr": "2001:db8:77::b/127", "mtu": "1400",
        "updatecert": "/etc/sixbroker/old.pem", "tunlink": "wan"}


def node(*argv, stdin=None):
    p = subprocess.run(["node", HARNESS] + list(argv), input=stdin, capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def session(steps, uci=None, section=SECTION, **facts):
    facts["uci"] = uci or {}
    return node("session", section, stdin=json.dumps({"facts": facts, "steps": steps}))


def staged(result):
    """The UCI writes of a save as {option: value, or None for an unset}."""
    out = {}
    for change in result["changes"]:
        out[change[1]] = change[2] if change[0] == "set" else None
    return out


def expected(fields, section=SECTION, before=None):
    """What `sixbroker join` would make of the section, as the dialog stages it over `before`."""
    opts = dict(tunnelconf.options(fields, fields.get("cert") and "/etc/sixbroker/%s.pem" % section))
    del opts["proto"]
    before = before or {}
    # an empty list is no option at all (tunnelconf.batch() adds no entry)
    want = dict((k, v) for k, v in opts.items() if before.get(k) != v and v != [])
    for k in ("updatecert", "ip6prefix"):
        if opts.get(k) in (None, []) and before.get(k) is not None:
            want[k] = None
    return want


def test_the_field_is_on_the_general_tab_and_optional():
    f = node("form", SECTION)
    (o,) = [o for o in f["options"] if o["name"] == JOIN]
    assert (o["tab"], o["widget"], o["datatype"]) == ("general", "Value", None)
    assert o["optional"] or o["rmempty"]
    assert o["validates"] and o["loads"]
    # first on the tab: the line fills the fields below it
    assert f["options"][0]["name"] == JOIN
    # its words are errors.py's and are not registered as netifd error codes (netifd never sends them)
    assert not [c for c in f["errors"] if c.startswith("JOIN_")]


def test_join_words_are_errors_pys():
    (facts,) = node("parse", os.path.join(RESOURCES, "sixbroker", "options.js"))
    js = dict((k, v["_"]) for k, v in facts["tables"]["JOIN_ERRORS"].items())
    # every code the decoder can give, and the certificate write's; JOIN_INTERFACE_TAKEN is the command
    # line's --interface, which the form has not
    assert set(js) == set(c for c in CODES if c.startswith("JOIN_")) - {"JOIN_INTERFACE_TAKEN"}
    assert js == dict((c, CODES[c]) for c in js)


def test_an_empty_paste_field_is_valid_and_never_saved():
    out = session([["save", None, None]], uci=SEED)
    assert out[0]["fields"][JOIN] is None
    assert out[-1]["result"] == {"ok": True, "changes": []}
    # typed and emptied again: still valid, still nothing staged
    out = session([["type", JOIN, "x"], ["type", JOIN, ""], ["save", None, None]], uci=SEED)
    assert out[1]["fields"][JOIN] == CODES["JOIN_FOREIGN"]
    assert out[2]["fields"][JOIN] is None and out[-1]["result"] == {"ok": True, "changes": []}


def test_luci_hands_the_field_an_empty_value():
    out = node("validate", SECTION, stdin=json.dumps(SEED) + "\n")
    assert "" in out["form"]["calls"][JOIN]


@pytest.mark.parametrize("v", VECTORS["good"], ids=lambda v: v["why"])
@pytest.mark.parametrize("uci", [{}, SEED], ids=["new", "existing"])
@pytest.mark.parametrize("key", ["line", "pasted"])
def test_a_good_line_fills_the_form_and_saves_what_join_writes(v, uci, key):
    out = session([["type", JOIN, v[key]], ["save", None, None]], uci=uci)
    # every field valid once filled (their validators ran again on the new values)
    assert [k for k, w in out[1]["fields"].items() if w is not None] == []
    result = out[-1]["result"]
    assert result["ok"], result
    assert staged(result) == expected(v["fields"], before=uci)
    assert JOIN not in staged(result)
    if "cert" in v["fields"]:
        assert result["files"] == [{"path": "/etc/sixbroker/%s.pem" % SECTION, "mode": None,
                                    "data": tunnelconf.pem(v["fields"]["cert"])}]
    else:
        assert "files" not in result


def test_the_filled_fields_show_the_lines_values_and_can_still_be_changed():
    v = WITH_CERT[0]
    out = session([["type", JOIN, v["line"]], ["placeholder", "ip6gw", None], ["type", "mtu", "1400"],
                   ["save", None, None]], section="home")
    # the gateway's placeholder follows the filled ip6addr, as when it is typed
    assert out[2]["result"] == str(options.derive_gateway(addr.Interface.parse(v["fields"]["ip6addr"], 6)))
    result = out[-1]["result"]
    assert result["ok"]
    s = staged(result)
    assert s["mtu"] == "1400" and s["updatecert"] == "/etc/sixbroker/home.pem"
    assert result["files"][0]["path"] == "/etc/sixbroker/home.pem"


@pytest.mark.parametrize("v", VECTORS["bad"], ids=lambda v: v["why"])
def test_a_bad_line_shows_its_words_and_stages_nothing(v):
    out = session([["type", JOIN, v["line"]], ["save", None, None]], uci=SEED)
    if v["line"] == "":
        # '' is the empty field: valid, nothing to do
        assert out[1]["fields"][JOIN] is None and out[-1]["result"] == {"ok": True, "changes": []}
        return
    assert out[1]["fields"][JOIN] == CODES[v["code"]]
    # the other fields keep what they had
    assert [k for k, w in out[1]["fields"].items() if w is not None] == [JOIN]
    result = out[-1]["result"]
    assert not result["ok"] and CODES[v["code"]] in result["error"] and result["changes"] == []
    assert "files" not in result


def test_a_certificate_that_cannot_be_written_stops_the_save_with_the_way_out():
    v = WITH_CERT[0]
    out = session([["type", JOIN, v["line"]], ["save", None, None]],
                  fsFail="No such file or directory")
    result = out[-1]["result"]
    assert not result["ok"] and result["changes"] == []
    assert CODES["JOIN_CERT_WRITE"] in result["error"] and "/etc/sixbroker/%s.pem" % SECTION in result["error"]
    assert "mkdir -p /etc/sixbroker" in result["error"] and "sixbroker join" in result["error"]
    # a line without a certificate writes no file, so it saves whatever the file system says
    out = session([["type", JOIN, WITHOUT_CERT[0]["line"]], ["save", None, None]],
                  fsFail="No such file or directory")
    assert out[-1]["result"]["ok"]


def test_the_package_makes_the_directory_rpcd_writes_the_certificate_in(tmp_path):
    # rpcd's file.write opens the file and creates no directory: luci-app-sixbroker's postinst makes it,
    # in an image build (IPKG_INSTROOT set) as on a live router
    p = subprocess.run(["sh", os.path.join(ROOT, "packaging", "luci-app-sixbroker.postinst")],
                       env={"PATH": "/usr/bin:/bin", "IPKG_INSTROOT": str(tmp_path)}, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "etc" / "sixbroker").is_dir()
    with open(os.path.join(ROOT, "luci-app", "root", "usr", "share", "rpcd", "acl.d", "luci-app-sixbroker.json")) as f:
        acl = json.load(f)["luci-app-sixbroker"]
    assert acl["write"]["file"] == {"/etc/sixbroker/*.pem": ["write"]}
