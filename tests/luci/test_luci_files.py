"""luci-app-sixbroker's files, as LuCI, rpcd and luci.mk read them.

- Every JavaScript file parses as ES2017 (acorn, pinned in package-lock.json), in the plain style the
  upstream files it sits beside use: no template literals or arrow functions (luci.mk's JS minifier has
  broken template literals), no classes, `var` only.
- The menu entry opens a view that exists, behind an ACL that exists.
- Every ubus call a view declares (rpc.declare in the JS AST) is granted by our ACL, and nothing more
  is; every such method exists in the plugin's `list` (shell and Python alike) with the parameters the
  view sends.
"""
import glob
import json
import os
import subprocess

import pytest

from sixbroker.openwrt import rpcd

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
APP = os.path.join(ROOT, "luci-app")
RESOURCES = os.path.join(APP, "htdocs", "luci-static", "resources")
HARNESS = os.path.join(ROOT, "tests", "luci", "luci_harness.js")
PLUGIN = os.path.join(ROOT, "files", "usr", "libexec", "rpcd", "luci.sixbroker")
MENU = os.path.join(APP, "root", "usr", "share", "luci", "menu.d", "luci-app-sixbroker.json")
ACL = os.path.join(APP, "root", "usr", "share", "rpcd", "acl.d", "luci-app-sixbroker.json")
JS = sorted(glob.glob(os.path.join(RESOURCES, "**", "*.js"), recursive=True))

# modules luci-base (and luci-mod-network for tools.widgets) ship; anything else must be ours
LUCI_MODULES = {"baseclass", "dom", "form", "fs", "network", "poll", "rpc", "uci", "ui", "view", "tools.widgets"}


def parse(files):
    p = subprocess.run(["node", HARNESS, "parse"] + files, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    return dict((os.path.relpath(f["file"], RESOURCES), f) for f in json.loads(p.stdout))


@pytest.fixture(scope="module")
def facts():
    return parse(JS)


def test_the_app_has_the_files_luci_needs():
    assert sorted(os.path.relpath(f, RESOURCES) for f in JS) == [
        "protocol/sixbroker.js", "sixbroker/joinline.js", "sixbroker/options.js", "view/sixbroker/status.js"]
    assert os.path.isfile(MENU) and os.path.isfile(ACL)
    assert os.access(PLUGIN, os.X_OK)


def test_acorn_is_the_pinned_one():
    with open(os.path.join(ROOT, "package-lock.json")) as f:
        lock = json.load(f)
    with open(os.path.join(ROOT, "node_modules", "acorn", "package.json")) as f:
        installed = json.load(f)
    assert installed["version"] == lock["packages"]["node_modules/acorn"]["version"]


@pytest.mark.parametrize("name", [os.path.relpath(f, RESOURCES) for f in JS])
def test_plain_es2017(facts, name):
    f = facts[name]
    assert f.get("syntaxError") is None
    assert f["forbidden"] == []
    assert f["requires"][0] == "use strict"


def test_acorn_check_catches_what_it_should(tmp_path):
    # the check itself: a template literal, an arrow, a const and ES2018 object spread are all caught
    bad = tmp_path / "bad.js"
    bad.write_text("'use strict';\nvar a = `x${1}`;\nvar f = (x) => x;\nconst c = 1;\n")
    (f,) = parse([str(bad)]).values()
    assert sorted((x["type"], x["line"]) for x in f["forbidden"]) == [
        ("ArrowFunctionExpression", 3), ("TemplateLiteral", 2), ("VariableDeclaration:const", 4)]
    spread = tmp_path / "spread.js"
    spread.write_text("var o = { ...{ a: 1 } };\n")
    (f,) = parse([str(spread)]).values()
    assert f["syntaxError"]


def test_requires_name_luci_modules_or_ours(facts):
    for name, f in facts.items():
        for directive in f["requires"][1:]:
            assert directive.startswith("require "), (name, directive)
            module = directive.split()[1]
            if module not in LUCI_MODULES:
                # LuCI loads 'require a.b' from luci-static/resources/a/b.js
                assert os.path.isfile(os.path.join(RESOURCES, *module.split(".")) + ".js"), (name, module)


def test_menu_opens_our_view_behind_our_acl():
    with open(MENU) as f:
        menu = json.load(f)
    with open(ACL) as f:
        acl = json.load(f)
    assert list(menu) == ["admin/status/sixbroker"]
    entry = menu["admin/status/sixbroker"]
    assert entry["action"]["type"] == "view"
    assert os.path.isfile(os.path.join(RESOURCES, "view", entry["action"]["path"] + ".js"))
    assert entry["depends"]["acl"] == ["luci-app-sixbroker"] and list(acl) == ["luci-app-sixbroker"]
    assert isinstance(entry["title"], str) and isinstance(entry["order"], int)


def test_acl_grants_exactly_what_the_views_call(facts):
    with open(ACL) as f:
        acl = json.load(f)["luci-app-sixbroker"]
    assert set(acl) <= {"description", "read", "write"}
    granted = {}
    for level in ("read", "write"):
        assert set(acl.get(level, {})) <= {"ubus", "uci", "file"}
        for obj, methods in acl.get(level, {}).get("ubus", {}).items():
            granted.setdefault(obj, set()).update(methods)
    declared = {}
    for f in facts.values():
        for d in f["declares"]:
            declared.setdefault(d["object"], set()).add(d["method"])
    # session.access is every login's (luci-base's ACL), so ours grants it not
    assert declared.pop("session") == {"access"}
    assert declared == {"luci.sixbroker": {"status", "diagnose"}}
    assert granted == declared
    # the status changes nothing: read access; diagnose sends pings and protocol-41 probes, so only a
    # login that may change settings gets it (issue 11 item 13)
    assert acl["read"] == {"ubus": {"luci.sixbroker": ["status"]}}
    # and the join line's certificate (protocol/sixbroker.js fs.write()): rpcd's file.write on our
    # certificate files only, nothing to read or run
    assert acl["write"] == {"ubus": {"luci.sixbroker": ["diagnose"]}, "file": {"/etc/sixbroker/*.pem": ["write"]}}


def test_every_declared_call_exists_in_the_plugin(facts):
    listed = json.loads(subprocess.run(["busybox", "sh", PLUGIN, "list"], capture_output=True, text=True,
                                       stdin=subprocess.DEVNULL, timeout=30).stdout)
    assert listed == rpcd.METHODS
    for f in facts.values():
        for d in f["declares"]:
            if d["object"] != "luci.sixbroker":
                continue
            assert d["method"] in listed
            assert set(d.get("params", [])) <= set(listed[d["method"]])


def test_status_view_knows_every_diagnose_check(facts):
    from sixbroker.openwrt import diagnose
    checks = facts["view/sixbroker/status.js"]["tables"]["CHECKS"]
    assert list(checks) == [n for n, _ in diagnose.CHECKS]
    assert [checks[n]["_"] for n, _ in diagnose.CHECKS] == [t for _, t in diagnose.CHECKS]


def render(answers):
    p = subprocess.run(["node", HARNESS, "view"], input=json.dumps(answers), capture_output=True,
                       text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_status_view_without_tunnels_and_without_backend():
    v = render({"status": {"tunnels": []}})
    assert "No interface uses the protocol sixbroker" in v["before"] and v["buttons"] == []
    v = render({"status": {"error": "Could not talk to netifd over ubus: gone", "code": "UBUS_FAIL"}})
    assert "Could not talk to netifd over ubus" in v["before"]
    v = render({})      # the call itself fails: rpcd not answering, or the plugin missing
    assert "No answer from the sixbroker backend" in v["before"]


def test_status_view_shows_a_down_tunnel_with_its_errors_in_words():
    from sixbroker.openwrt import status
    from sixbroker.core.errors import CODES
    st = {"interface": "wan6", "proto": "sixbroker", "up": False, "autostart": True,
          "errors": [{"subsystem": "sixbroker", "code": "MISSING_PEER_ADDRESS", "data": ["INVALID_TTL"]}]}
    answer = {"tunnels": status.tunnels({"interface": [st]})}
    p = subprocess.run(["node", HARNESS, "view"], input=json.dumps({"status": answer}), capture_output=True,
                       text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    shown = json.loads(p.stdout)["before"]
    assert "wan6\n" in shown and "Down" in shown and "Round-trip time" not in shown
    assert "%s (MISSING_PEER_ADDRESS); %s (INVALID_TTL)" % (CODES["MISSING_PEER_ADDRESS"], CODES["INVALID_TTL"]) \
        in shown


# what rpcd's `uci get` answers for each section (rpcd uci.c rpc_uci_dump_section: the options, lists as
# arrays, and .anonymous/.type/.name)
SECTIONS = {
    "wan6": {".anonymous": False, ".type": "interface", ".name": "wan6", "proto": "sixbroker",
             "peeraddr": "broker.example", "ip6addr": "2001:db8:5b10::b/127",
             "ip6prefix": ["2001:db8:5b11::/64", "2001:db8:5b12::/64"], "mtu": "1472"},
    "home_tunnel_b": {".anonymous": False, ".type": "interface", ".name": "home_tunnel_b", "proto": "sixbroker"},
}


def down_tunnels(tmp_path):
    from sixbroker.openwrt import status
    dump = {"interface": [{"interface": n, "proto": "sixbroker", "up": False, "autostart": True}
                          for n in ("wan6", "home_tunnel_b")]}
    out = status.tunnels(dump)
    for t in out:
        values = SECTIONS[t["interface"]]
        t["config"] = status.configured(t["interface"], dict((k, v) for k, v in values.items() if k[0] != "."))
    return out


def test_a_down_tunnel_shows_what_is_configured(tmp_path):
    from sixbroker.core import options
    shown = render({"status": {"tunnels": down_tunnels(tmp_path)}})["before"]
    wan6 = shown[shown.index("wan6\n"):]
    for row in ("Broker | broker.example", "Tunnel address | 2001:db8:5b10::b/127",
                "Broker tunnel address | 2001:db8:5b10::a (derived)",
                "Routed prefixes | 2001:db8:5b11::/64, 2001:db8:5b12::/64", "MTU | 1472",
                "Local IPv4 address | from the tunnel link", "Tunnel link | the route to the broker",
                "Device | sb-wan6"):
        assert row in wan6, (row, wan6)
    # nothing set: the view says so, and names the device the handler would make
    other = shown[shown.index("home_tunnel_b\n"):shown.index("wan6\n")]
    assert "Broker | not set" in other and "Device | " + options.device_name("home_tunnel_b") in other


def test_diagnose_is_offered_to_who_may_change_settings(tmp_path):
    answer = {"status": {"tunnels": down_tunnels(tmp_path)},
              "diagnose": {"interface": "wan6", "ok": False, "summary": "Failed: x", "checks": []}}
    v = render(dict(answer, session="write"))
    assert v["buttons"] == ["Diagnose", "Diagnose"] and "Failed: x" in v["after"]
    # a read-only login: rpcd would refuse the call (our ACL grants diagnose with write only), so the
    # view asks session.access first and offers no button
    v = render(dict(answer, session="read"))
    assert v["buttons"] == [] and "Diagnose needs the right to change the network settings" in v["before"]
    assert {"object": "session", "method": "access", "args": ["ubus", "luci.sixbroker", "diagnose"]} in v["calls"]
    assert not [c for c in v["calls"] if c["method"] == "diagnose"]


def test_several_errors_show_each_once():
    # the handler sends one action-3 error per mistake; netifd keeps each as an entry (proto-shell.c
    # proto_shell_notify_error -> interface.c interface_add_error, appended, flushed only on IFEV_UP),
    # so a retried setup repeats them
    from sixbroker.openwrt import status
    from sixbroker.core.errors import CODES
    errs = [{"subsystem": "sixbroker", "code": c} for c in ("PEER_NOT_RESOLVED", "INVALID_TTL") * 3]
    st = {"interface": "wan6", "proto": "sixbroker", "up": False, "errors": errs}
    shown = render({"status": {"tunnels": status.tunnels({"interface": [st]})}})["before"]
    want = "%s (PEER_NOT_RESOLVED); %s (INVALID_TTL)" % (CODES["PEER_NOT_RESOLVED"], CODES["INVALID_TTL"])
    assert want in shown and shown.count("(INVALID_TTL)") == 1


def test_status_view_knows_every_update_answer_in_words(facts):
    from sixbroker.core import dyndns
    table = facts["view/sixbroker/status.js"]["tables"]["UPDATE_WORDS"]
    both = list(dyndns.ANSWERS.items()) + list(dyndns.FAILURES.items())
    # (as a dict: JavaScript lists an integer-like key such as '911' first)
    assert dict((w, v["_"]) for w, v in table.items()) == dict((w, words) for w, (k, words) in both)
    marks = facts["view/sixbroker/status.js"]["tables"]["UPDATE_MARKS"]
    assert set(marks) == set(k for _, (k, _) in both)


def test_status_view_shows_the_last_update(tmp_path):
    # the record as update.sh writes it, read by status.py as the rpcd plugin does
    from sixbroker.core import updaterecord
    from sixbroker.openwrt import status
    st = {"interface": "wan6", "proto": "sixbroker", "up": True, "l3_device": "sb-wan6"}
    t = status.tunnels({"interface": [st]})[0]
    t["update"] = updaterecord.parse("time=1700000000\nword=good\naddress=198.51.100.20\nstatus=0\nfails=0\n"
                                     "next=1700000300\ninterval=300\nfollow=wan\n")
    shown = render({"status": {"tunnels": [t]}})["before"]
    assert "Last update | " in shown and "Next update | " in shown
    assert "Broker's answer | The broker took the new address (good)" in shown
    assert "Address the broker saw | 198.51.100.20" in shown
    # a refusal: its words, no address, the failures counted; a tunnel that is down shows no next try
    t["update"] = updaterecord.parse("time=1700000000\nword=badauth\nfails=2\nnext=1700003600\n")
    shown = render({"status": {"tunnels": [t]}})["before"]
    assert "Broker's answer | The broker refused the tunnel name or the update key (badauth)" in shown
    assert "Address the broker saw" not in shown and "2 failures in a row" in shown
    t["up"] = False
    assert "Next update" not in render({"status": {"tunnels": [t]}})["before"]
    # no updater, or no request yet: no rows
    t["update"] = None
    assert "Last update" not in render({"status": {"tunnels": [t]}})["before"]
