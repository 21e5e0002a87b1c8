"""sixbroker.core.uci (the reader, the batch writer) and tests/uci_edit.py (the editor on top of it)
against libuci's rules (openwrt/uci file.c, list.c, util.c, cli.c).  uci_edit.parse checks every file it
reads against sixbroker.core.uci.parse.

The expected values below were worked out from the libuci sources, not from this module: each test
names the upstream function whose behaviour it pins.  Runs under pytest and under MicroPython
(tests/mprun.py).
"""
import os

import pytest

import uci_edit as uci
from sixbroker.core.errors import CODES
from uci_edit import UciError, parse

_HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
DATA = _HERE + "/../data/uci/"


def _read(name):
    # bytes, so that CPython does not translate line endings and the round trip is really byte for byte
    with open(DATA + name, "rb") as f:
        return f.read().decode("utf-8")


def _values(text, package="test"):
    return [(s.type, s.name, s.options) for s in parse(text, package).sections]


def _export(pkg):
    """libuci's own writer (file.c uci_export_package, header off): what `uci commit` leaves on disk."""
    out = []
    for s in pkg.sections:
        out.append("\nconfig " + s.type)
        if s.name:
            out.append(" '" + s.name.replace("'", "'\\''") + "'")
        out.append("\n")
        for name, v in s.options:
            for item in (v if isinstance(v, list) else [v]):
                kind = "list" if isinstance(v, list) else "option"
                out.append("\t%s %s '%s'\n" % (kind, name, item.replace("'", "'\\''")))
    out.append("\n")
    return "".join(out)


# ---- lexing (file.c: uci_parse_line, next_arg, parse_str, parse_*_quote, parse_backslash) ----------


def test_named_and_anonymous_sections():
    p = parse("config interface 'lan'\n\toption proto static\n\nconfig rule\n\toption name x\n", "network")
    assert p.name == "network"
    assert [(s.type, s.name) for s in p.sections] == [("interface", "lan"), ("rule", None)]
    assert p.get("lan").get("proto") == "static"
    assert p.find("rule")[0].get("name") == "x"
    assert p.get("nothere") is None and p.find("zone") == []


def test_quoted_and_unquoted_pieces_glue_into_one_argument():
    text = ("config t s\n"
            "\toption a 'x'\"y\"z\n"
            "\toption b \"a b\"\n"
            "\toption c 'a\"b'\n"
            "\toption d \"a'b\"\n"
            "\toption e pre'mid dle'post\n")
    s = parse(text).get("s")
    assert s.options == [("a", "xyz"), ("b", "a b"), ("c", 'a"b'), ("d", "a'b"), ("e", "premid dlepost")]


def test_backslash_escapes():
    # outside quotes and inside "..." a backslash takes the next character as it is (no \n decoding);
    # inside '...' nothing is special
    text = ("config t s\n"
            "\toption a a\\ b\n"
            "\toption b \"x\\\"y\\\\z\\n\"\n"
            "\toption c 'x\\y'\n"
            "\toption d \\'q\\'\n")
    s = parse(text).get("s")
    assert s.get("a") == "a b"
    assert s.get("b") == 'x"y\\zn'
    assert s.get("c") == "x\\y"
    assert s.get("d") == "'q'"


def test_shell_style_quote_in_single_quotes():
    s = parse("config t s\n\toption a 'it'\\''s'\n").get("s")
    assert s.get("a") == "it's"


def test_comments_end_the_line_outside_quotes():
    text = ("# first line\n"
            "   \t# indented\n"
            "config rule # anonymous, then a comment\n"
            "\toption a b # comment\n"
            "\toption b x#y\n"
            "\toption c 'p#q' # kept inside quotes\n"
            "\toption d \"v\"#right after a quote\n"
            "#\toption e commented\n")
    assert _values(text) == [("rule", None, [("a", "b"), ("b", "x"), ("c", "p#q"), ("d", "v")])]


def test_empty_option_is_ignored_but_empty_list_item_is_kept():
    # list.c uci_set: an empty value on a pointer that was never looked up returns without a change,
    # so `option a ''` neither sets nor deletes; uci_add_list adds '' like any other item
    text = "config t s\n\toption a x\n\toption a ''\n\toption b ''\n\tlist l ''\n\tlist l z\n"
    s = parse(text).get("s")
    assert s.options == [("a", "x"), ("l", ["", "z"])]
    assert "b" not in s and "a" in s


def test_redefinitions_follow_libuci_order():
    # list.c: uci_set with a new value frees the option and appends it again; uci_add_list on a string
    # option makes a list at the end; the same value again changes nothing
    text = ("config t s\n"
            "\toption a 1\n\toption b 2\n\toption c 3\n"
            "\toption a 1\n"
            "\toption b 20\n"
            "\tlist c 4\n"
            "\tlist d 5\n\toption d 6\n")
    assert parse(text).get("s").options == [("a", "1"), ("b", "20"), ("c", ["3", "4"]), ("d", "6")]
    same = "config t s\n\toption a 1\n\toption b 2\n\toption a 1\n"
    assert parse(same).get("s").options == [("a", "1"), ("b", "2")]
    other = "config t s\n\toption a 1\n\toption b 2\n\toption a 3\n"
    assert parse(other).get("s").options == [("b", "2"), ("a", "3")]


def test_line_continuations_and_multiline_quotes():
    text = ("config t s\n"
            "\toption a foo\\\nbar\n"
            "\toption b \"x\\\ny\"\n"
            "\toption c 'one\ntwo'\n"
            "\toption d \"three\nfour\"\n"
            "\toption e crlf\\\r\njoined\r\n")
    s = parse(text).get("s")
    assert s.options == [("a", "foobar"), ("b", "xy"), ("c", "one\ntwo"), ("d", "three\nfour"),
                         ("e", "crlfjoined")]
    assert parse(text).dumps() == text


def test_semicolon_separates_commands():
    text = "config t 'n'; option a 'x'; option b y\nconfig t m\n\toption c x;option d y\n"
    p = parse(text)
    assert p.get("n").options == [("a", "x"), ("b", "y")]
    # an unquoted word that stops at ';' is terminated in place over the ';' (parse_str writes the NUL
    # at its target), so libuci never sees the second command: d is not set
    assert p.get("m").options == [("c", "x")]


def test_one_letter_commands():
    p = parse("p net\nc interface lan\no proto static\nl dns 2001:db8::1\n")
    assert p.name == "net"
    assert p.get("lan").options == [("proto", "static"), ("dns", ["2001:db8::1"])]


def test_same_name_reopens_the_section():
    text = "config interface lan\n\toption a 1\nconfig zone z\nconfig interface lan\n\toption b 2\n"
    p = parse(text)
    assert [(s.type, s.name) for s in p.sections] == [("interface", "lan"), ("zone", "z")]
    assert p.get("lan").options == [("a", "1"), ("b", "2")]
    assert p.dumps() == text


def test_package_statement_and_argument():
    assert parse("package network\n\nconfig a b\n").name == "network"
    assert parse("package network\nconfig a b\n", "other").name == "other"
    assert parse("config a b\n").name is None


def test_crlf_file():
    text = "config interface 'lan'\r\n\toption proto static\r\n\r\nconfig rule\r\n"
    p = parse(text)
    assert p.get("lan").get("proto") == "static"
    assert p.dumps() == text
    p.get("lan").set("mtu", "1480")
    assert p.dumps() == ("config interface 'lan'\r\n\toption proto static\r\n\toption mtu '1480'\r\n"
                         "\r\nconfig rule\r\n")


def test_odd_but_valid_text_comes_back_byte_for_byte():
    text = ("\n\n# header\n"
            "package test\n"
            "config   t   'n'   # tail\n"
            "    option a \"x\"'y'z\n"
            "\t\tlist  l  'multi\nline'\n"
            "\toption b foo\\\nbar\n"
            "o c 'it'\\''s'; o d \"q\"\n"
            "config t\n"
            "\toption e ''\n"
            "\t# inner comment\n"
            "\n\n"
            "config u 'last'")
    p = parse(text)
    assert p.dumps() == text
    assert [s.name for s in p.sections] == ["n", None, "last"]
    assert p.get("n").options == [("a", "xyz"), ("l", ["multi\nline"]), ("b", "foobar"), ("c", "it's"),
                                  ("d", "q")]


# ---- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,line,reason", [
    ("\n\nbogus x\n", 3, "invalid command (bogus)"),
    ("config\n", 1, "invalid command (config)"),  # strtok splits on space and tab only
    ("config \n", 1, "insufficient arguments"),
    ("config a\n\toption \n", 2, "insufficient arguments"),
    ("config a\n\toption\n", 2, "invalid command (option)"),
    ("config a b\n\tlist", 2, "option without name"),
    ("config", 1, "config without name"),
    ("option a b\n", 1, "option/list command found before the first section"),
    ("config a b c\n", 1, "too many arguments"),
    ("config a b\n\toption x y z\n", 2, "too many arguments"),
    ("config a\n\toption x 'abc\n\n", 2, "EOF with unterminated '"),
    ("config a\n\toption x \"abc\n", 2, 'EOF with unterminated "'),
    ("config a b\nconfig c b\n", 2, "section of different type overwrites prior section with same name"),
    ("config a b.c\n", 1, "invalid character in name field (b.c)"),
    ("config a\n\toption a-b y\n", 2, "invalid character in name field (a-b)"),
    ("config 'a b' c\n", 1, "invalid character in type field (a b)"),
    ("package 'a b'\n", 1, "invalid character in name field (a b)"),
])
def test_parse_errors_carry_the_line(text, line, reason):
    with pytest.raises(UciError) as exc:
        parse(text, "network")
    assert exc.value.line == line
    assert exc.value.reason == reason
    assert exc.value.code == "UCI_PARSE"


def test_error_message_names_file_and_line():
    with pytest.raises(UciError) as exc:
        parse("config a\n\tbogus\n", "network", "/etc/config/network")
    assert str(exc.value) == "/etc/config/network line 2: invalid command (bogus)"
    with pytest.raises(UciError) as exc:
        parse("config a\n\tbogus\n", "network")
    assert str(exc.value) == "network line 2: invalid command (bogus)"


def test_uci_error_is_a_value_error_with_registered_codes():
    assert "UCI_PARSE" in CODES and "UCI_INVALID" in CODES
    with pytest.raises(ValueError):
        parse("nonsense\n")
    with pytest.raises(UciError) as exc:
        parse("config a b\n").get("b").set("bad-name", "x")
    assert exc.value.code == "UCI_INVALID" and exc.value.line is None


# ---- edits ----------------------------------------------------------------------------------------

SMALL = ("config interface 'lan'\n"
         "\toption proto static   # the LAN\n"
         "\toption ipaddr 192.0.2.1\n"
         "\tlist dns '2001:db8::1'\n"
         "\tlist dns '2001:db8::2'\n"
         "\n"
         "# the rule\n"
         "config rule\n"
         "\toption name 'Allow-Ping'\n")


def test_set_new_option_is_written_after_the_last_option():
    p = parse(SMALL)
    p.get("lan").set("mtu", "1480")
    assert p.dumps() == SMALL.replace("'2001:db8::2'\n", "'2001:db8::2'\n\toption mtu '1480'\n")


def test_change_option_rewrites_only_its_line_and_keeps_its_comment():
    p = parse(SMALL)
    p.get("lan").set("proto", "dhcp")
    assert p.dumps() == SMALL.replace("\toption proto static   # the LAN\n",
                                      "\toption proto 'dhcp' # the LAN\n")
    assert parse(p.dumps()).get("lan").get("proto") == "dhcp"


def test_setting_the_same_value_changes_nothing():
    p = parse(SMALL)
    p.get("lan").set("ipaddr", "192.0.2.1")
    p.get("lan").set("dns", ["2001:db8::1", "2001:db8::2"])
    assert p.dumps() == SMALL


def test_list_add_and_remove_touch_only_their_lines():
    p = parse(SMALL)
    lan = p.get("lan")
    lan.add_list("dns", "2001:db8::3")
    assert p.dumps() == SMALL.replace("'2001:db8::2'\n", "'2001:db8::2'\n\tlist dns '2001:db8::3'\n")
    lan.del_list("dns", "2001:db8::1")
    assert lan.get("dns") == ["2001:db8::2", "2001:db8::3"]
    assert p.dumps() == SMALL.replace("\tlist dns '2001:db8::1'\n", "").replace(
        "'2001:db8::2'\n", "'2001:db8::2'\n\tlist dns '2001:db8::3'\n")
    lan.set("dns", ["2001:db8::0", "2001:db8::2", "2001:db8::9"])
    assert "\tlist dns '2001:db8::0'\n\tlist dns '2001:db8::2'\n\tlist dns '2001:db8::9'\n" in p.dumps()
    assert parse(p.dumps()).get("lan").get("dns") == ["2001:db8::0", "2001:db8::2", "2001:db8::9"]


def test_option_becomes_list_and_back():
    p = parse(SMALL)
    lan = p.get("lan")
    lan.add_list("ipaddr", "192.0.2.2")
    assert lan.get("ipaddr") == ["192.0.2.1", "192.0.2.2"]
    assert "\tlist ipaddr '192.0.2.1'\n\tlist ipaddr '192.0.2.2'\n" in p.dumps()
    lan.set("dns", "2001:db8::53")
    lan.set("ipaddr", "192.0.2.3")
    text = p.dumps()
    assert parse(text).get("lan").options == lan.options
    assert text == SMALL.replace("\toption ipaddr 192.0.2.1\n", "\toption ipaddr '192.0.2.3'\n").replace(
        "\tlist dns '2001:db8::1'\n\tlist dns '2001:db8::2'\n", "\toption dns '2001:db8::53'\n")


def test_unset_removes_every_line_of_the_option():
    text = "config t s\n\toption a 1\n\toption b 2\n\toption a 3 # again\n\toption a ''\n"
    p = parse(text)
    s = p.get("s")
    assert s.options == [("b", "2"), ("a", "3")]
    s.unset("a")
    assert p.dumps() == "config t s\n\toption b 2\n"
    s.set("b", "")  # `uci set x.y.z=` deletes
    assert p.dumps() == "config t s\n" and s.options == []


def test_change_of_a_redefined_option_leaves_one_line():
    p = parse("config t s\n\toption a 1\n\toption b 2\n\toption a 3\n")
    p.get("s").set("a", "4")
    assert p.dumps() == "config t s\n\toption a '4'\n\toption b 2\n"
    assert p.get("s").options == [("a", "4"), ("b", "2")]


def test_add_section_is_appended_as_uci_commit_writes_it():
    p = parse(SMALL)
    s = p.add("interface", "wan6")
    s.set("proto", "sixbroker")
    s.set("ip6prefix", ["2001:db8:1::/48", "2001:db8:2::/48"])
    assert p.dumps() == SMALL + ("\nconfig interface 'wan6'\n\toption proto 'sixbroker'\n"
                                 "\tlist ip6prefix '2001:db8:1::/48'\n\tlist ip6prefix '2001:db8:2::/48'\n")
    assert p.sections[-1] is s
    with pytest.raises(UciError):
        p.add("interface", "wan6")


def test_add_to_an_empty_package():
    p = uci.Package("network")
    s = p.add("interface", "lan")
    s.set("proto", "static")
    p.add("rule").set("name", "x")
    assert p.dumps() == "config interface 'lan'\n\toption proto 'static'\n\nconfig rule\n\toption name 'x'\n"
    assert parse(p.dumps()).sections[1].options == [("name", "x")]


def test_remove_section_takes_its_comments_and_one_blank_line():
    p = parse(SMALL)
    rule = p.find("rule")[0]
    p.remove(rule)
    assert p.dumps() == SMALL[:SMALL.index("\n# the rule")]
    assert rule.package is None
    with pytest.raises(UciError):
        rule.set("a", "b")
    p = parse(SMALL)
    p.remove(p.get("lan"))
    assert p.dumps() == "# the rule\nconfig rule\n\toption name 'Allow-Ping'\n"


def test_rename_section():
    p = parse(SMALL)
    p.get("lan").rename("home")
    p.find("rule")[0].rename("ping")
    assert p.dumps() == SMALL.replace("config interface 'lan'", "config interface 'home'").replace(
        "config rule\n", "config rule 'ping'\n")
    assert p.get("lan") is None and p.get("home").get("ipaddr") == "192.0.2.1"
    with pytest.raises(UciError):
        p.get("home").rename("ping")


def test_assigning_type_and_name_rewrites_the_config_line():
    p = parse(SMALL)
    p.find("rule")[0].type = "redirect"
    p.get("lan").name = "home"
    assert p.dumps() == SMALL.replace("config rule\n", "config redirect\n").replace(
        "config interface 'lan'", "config interface 'home'")
    assert [(s.type, s.name) for s in parse(p.dumps()).sections] == [("interface", "home"),
                                                                     ("redirect", None)]
    with pytest.raises(UciError):
        p.get("home").type = "bad type"


def test_value_with_quotes_is_written_as_libuci_does():
    p = parse(SMALL)
    p.get("lan").set("description", "Bob's \"home\" net")
    assert "\toption description 'Bob'\\''s \"home\" net'\n" in p.dumps()
    assert parse(p.dumps()).get("lan").get("description") == "Bob's \"home\" net"
    p.get("lan").set("multi", "one\ntwo")
    assert parse(p.dumps()).get("lan").get("multi") == "one\ntwo"


@pytest.mark.parametrize("opt,value", [
    ("bad-name", "x"), ("", "x"), ("ok", "bell\x07"), ("ok", 5), ("ok", ["a", None]),
])
def test_invalid_edits_are_refused(opt, value):
    p = parse(SMALL)
    with pytest.raises(UciError) as exc:
        p.get("lan").set(opt, value)
    assert exc.value.code == "UCI_INVALID"
    assert p.dumps() == SMALL


def test_invalid_section_names_and_types_are_refused():
    p = parse(SMALL)
    for typ, name in [("interface", "lan"), ("interface", "a.b"), ("a b", None), ("", None)]:
        with pytest.raises(UciError):
            p.add(typ, name)
    assert p.dumps() == SMALL


# ---- show and batch (cli.c) ---------------------------------------------------------------------


def test_show_prints_like_uci_show():
    text = ("config rule 'named'\n"
            "config interface 'lan'\n\toption proto 'static'\n\tlist dns '2001:db8::1'\n\tlist dns \"it's\"\n"
            "config rule\n\toption name x\n")
    # cli.c uci_lookup_section_ref counts every section of a type, named ones too
    assert uci.show(parse(text, "network")) == (
        "network.named=rule\n"
        "network.lan=interface\n"
        "network.lan.proto='static'\n"
        "network.lan.dns='2001:db8::1' 'it'\\''s'\n"
        "network.@rule[1]=rule\n"
        "network.@rule[1].name='x'\n")


def test_lookup_by_extended_reference():
    p = parse(_read("firewall"), "firewall")
    assert p.lookup("@rule[0]").get("name") == "Allow-DHCP-Renew"
    assert p.lookup("@rule[-1]").get("name") == "Allow-ISAKMP"
    assert p.lookup("@zone[1]").get("name") == "wan"
    assert p.lookup("@[0]").type == "defaults"
    assert p.lookup("@rule[99]") is None and p.lookup("@rule[x]") is None


def test_batch_for_a_named_section():
    s = uci.new_section("interface", "wan6", [
        ("proto", "sixbroker"), ("peeraddr", "203.0.113.1"), ("ip6prefix", ["2001:db8:1::/48"])])
    assert uci.batch("network", s) == (
        "set network.wan6=''\n"
        "set network.wan6='interface'\n"
        "set network.wan6.proto='sixbroker'\n"
        "set network.wan6.peeraddr='203.0.113.1'\n"
        "add_list network.wan6.ip6prefix='2001:db8:1::/48'\n"
        "commit network\n")
    assert uci.batch("network", s, replace=False, commit=False) == (
        "set network.wan6='interface'\n"
        "set network.wan6.proto='sixbroker'\n"
        "set network.wan6.peeraddr='203.0.113.1'\n"
        "set network.wan6.ip6prefix=''\n"
        "add_list network.wan6.ip6prefix='2001:db8:1::/48'\n")


def test_batch_for_anonymous_sections():
    p = parse(_read("firewall"), "firewall")
    rules = p.find("rule")
    assert uci.uci_batch_script("firewall", [rules[1], rules[4]]) == (
        "add firewall rule\n"
        "set firewall.@rule[-1].name='Allow-Ping'\n"
        "set firewall.@rule[-1].src='wan'\n"
        "set firewall.@rule[-1].proto='icmp'\n"
        "set firewall.@rule[-1].icmp_type='echo-request'\n"
        "set firewall.@rule[-1].family='ipv4'\n"
        "set firewall.@rule[-1].target='ACCEPT'\n"
        "add firewall rule\n"
        "set firewall.@rule[-1].name='Allow-MLD'\n"
        "set firewall.@rule[-1].src='wan'\n"
        "set firewall.@rule[-1].proto='icmp'\n"
        "set firewall.@rule[-1].src_ip='fe80::/10'\n"
        "add_list firewall.@rule[-1].icmp_type='130/0'\n"
        "add_list firewall.@rule[-1].icmp_type='131/0'\n"
        "add_list firewall.@rule[-1].icmp_type='132/0'\n"
        "add_list firewall.@rule[-1].icmp_type='143/0'\n"
        "set firewall.@rule[-1].family='ipv6'\n"
        "set firewall.@rule[-1].target='ACCEPT'\n"
        "commit firewall\n")


def test_batch_reader_matches_upstream_batch_tests():
    # openwrt/uci tests/shunit2/tests.d/060_batch: the lines it feeds to `uci batch` and the values
    # its reference files expect
    script = ("# first line comment\n"
              "set batch_set.SEC0='section'\n"
              "set batch_set.SEC0.option1='\"Hello,\n'\"  World\\\"\"\n"
              "set batch_comments.SEC1='section' # comment at end of line\n"
              "set batch_set.SEC1.option0=\"value1\"\n"
              "\n \t # comment line starts with spaces.\n"
              "commit\n")
    assert uci.batch_commands(script) == [
        ["set", "batch_set.SEC0=section"],
        ["set", "batch_set.SEC0.option1=\"Hello,\n  World\""],
        ["set", "batch_comments.SEC1=section"],
        ["set", "batch_set.SEC1.option0=value1"],
        ["commit"],
    ]


@pytest.mark.parametrize("value", [
    "it's", "say \"hi\"", "a;b", "#x", "back\\slash", "two\nlines", "  padded  ", "'", "''", "\\'",
    "$(reboot)", "tab\there", "x=y.z",
])
def test_batch_quoting_reads_back_through_uci_batch(value):
    s = uci.new_section("interface", "t", [("v", value), ("l", ["a", value])])
    cmds = uci.batch_commands(uci.batch("network", s, commit=False))
    assert cmds == [
        ["set", "network.t="],
        ["set", "network.t=interface"],
        ["set", "network.t.v=" + value],
        ["add_list", "network.t.l=a"],
        ["add_list", "network.t.l=" + value],
    ]


def test_batch_heredoc_picks_a_free_delimiter():
    s = uci.new_section("interface", "t", [("v", "x\nEOF\ny")])
    script = uci.batch("network", s)
    cmd = uci.batch_heredoc(script)
    assert cmd.startswith("uci batch <<'EOF1'\n") and cmd.endswith("\ncommit network\nEOF1\n")
    assert uci.batch_heredoc("commit network\n") == "uci batch <<'EOF'\ncommit network\nEOF\n"


def test_batch_refuses_a_bad_package_name():
    with pytest.raises(UciError):
        uci.batch("net work", uci.new_section("interface", "x"))


# ---- real-world files (tests/data/uci, shaped like OpenWrt's defaults) ------------------------


@pytest.mark.parametrize("name", ["network", "firewall", "dhcp"])
def test_default_files_come_back_byte_for_byte(name):
    text = _read(name)
    p = parse(text, name)
    assert p.dumps() == text
    # and a change undone leaves no trace
    s = p.sections[0]
    first = s.options[0]
    s.set(first[0], "changed")
    s.set(first[0], first[1])
    assert parse(p.dumps(), name).sections[0].options == s.options


def test_default_network():
    p = parse(_read("network"), "network")
    assert [(s.type, s.name) for s in p.sections] == [
        ("interface", "loopback"), ("globals", "globals"), ("device", None), ("interface", "lan"),
        ("interface", "wan"), ("interface", "wan6")]
    assert p.find("device")[0].get("ports") == ["lan1", "lan2", "lan3", "lan4"]
    assert p.get("lan").get("ip6assign") == "60"
    assert p.get("wan6").options == [("device", "wan"), ("proto", "dhcpv6")]
    # the file is what `uci commit` writes, so libuci's exporter gives it back
    assert _export(p) == _read("network")


def test_default_firewall():
    p = parse(_read("firewall"), "firewall")
    assert [s.type for s in p.sections] == ["defaults", "zone", "zone", "forwarding"] + ["rule"] * 9
    assert [r.get("name") for r in p.find("rule")] == [
        "Allow-DHCP-Renew", "Allow-Ping", "Allow-IGMP", "Allow-DHCPv6", "Allow-MLD", "Allow-ICMPv6-Input",
        "Allow-ICMPv6-Forward", "Allow-IPSec-ESP", "Allow-ISAKMP"]
    assert "disable_ipv6" not in p.sections[0]
    wan = p.find("zone")[1]
    assert wan.get("network") == ["wan", "wan6"] and wan.get("masq") == "1"
    assert len(p.find("rule")[5].get("icmp_type")) == 11
    assert p.find("redirect") == []


def test_default_dhcp():
    p = parse(_read("dhcp"), "dhcp")
    d = p.find("dnsmasq")[0]
    assert d.get("filterwin2k") == "0" and d.get("rebind_protection") == "1"
    assert d.get("nonwildcard") == "1" and d.get("local") == "/lan/"
    assert "rebind_domain" not in d and "server" not in d
    assert p.get("lan").get("ra_flags") == ["managed-config", "other-config"]
    assert p.get("wan").get("ignore") == "1"
    assert p.get("odhcpd").get("leasetrigger") == "/usr/sbin/odhcpd-update"


def test_network_add_sixbroker_interface_and_change_lan():
    text = _read("network")
    p = parse(text, "network")
    p.get("lan").set("ip6assign", "64")
    s = p.add("interface", "sixbroker")
    s.set("proto", "sixbroker")
    s.set("peeraddr", "203.0.113.1")
    s.set("ip6addr", "2001:db8::2/127")
    s.set("ip6prefix", ["2001:db8:100::/48"])
    out = p.dumps()
    assert out == text.replace("\toption ip6assign '60'\n", "\toption ip6assign '64'\n")[:-1] + (
        "\nconfig interface 'sixbroker'\n"
        "\toption proto 'sixbroker'\n"
        "\toption peeraddr '203.0.113.1'\n"
        "\toption ip6addr '2001:db8::2/127'\n"
        "\tlist ip6prefix '2001:db8:100::/48'\n"
        "\n")
    again = parse(out, "network")
    assert again.get("sixbroker").options == s.options
    assert again.get("lan").get("ip6assign") == "64"
    # still exactly what libuci itself would have written
    assert out == _export(again)
    assert "network.sixbroker.ip6prefix='2001:db8:100::/48'\n" in uci.show(again)


def test_network_remove_interface_as_libuci_writes():
    p = parse(_read("network"), "network")
    p.remove(p.get("wan6"))
    p.remove(p.find("device")[0])
    assert p.dumps() == _export(p)
    assert [s.name for s in parse(p.dumps()).sections] == ["loopback", "globals", "lan", "wan"]


def test_firewall_delete_rule():
    text = _read("firewall")
    p = parse(text, "firewall")
    p.remove(p.find("rule")[0])
    block = ("# DHCP answers from the ISP come in on UDP port 68,\n"
             "# they must be let in for the lease to be renewed\n"
             "config rule\n"
             "\toption name\t\tAllow-DHCP-Renew\n"
             "\toption src\t\twan\n"
             "\toption proto\t\tudp\n"
             "\toption dest_port\t68\n"
             "\toption target\t\tACCEPT\n"
             "\toption family\t\tipv4\n"
             "\n")
    assert block in text
    assert p.dumps() == text.replace(block, "")
    assert [r.get("name") for r in parse(p.dumps()).find("rule")][0] == "Allow-Ping"
    # the last rule: its blank line goes, the two before the examples stay as they were
    p.remove(p.find("rule")[-1])
    assert "\toption proto\t\tesp\n\toption target\t\tACCEPT\n\n\n### EXAMPLES" in p.dumps()


def test_firewall_zone_gets_a_network():
    text = _read("firewall")
    p = parse(text, "firewall")
    wan = [z for z in p.find("zone") if z.get("name") == "wan"][0]
    wan.add_list("network", "sixbroker")
    assert p.dumps() == text.replace("\tlist   network\t\t'wan6'\n",
                                     "\tlist   network\t\t'wan6'\n\tlist network 'sixbroker'\n")
    wan.del_list("network", "wan6")
    assert p.dumps() == text.replace("\tlist   network\t\t'wan6'\n", "\tlist network 'sixbroker'\n")


def test_dhcp_edits_keep_inline_comments():
    text = _read("dhcp")
    p = parse(text, "dhcp")
    d = p.find("dnsmasq")[0]
    d.set("filterwin2k", "1")
    p.get("lan").set("leasetime", "24h")
    p.get("lan").del_list("ra_flags", "other-config")
    assert p.dumps() == text.replace(
        "\toption filterwin2k\t0  # turn on for dial-on-demand links\n",
        "\toption filterwin2k '1' # turn on for dial-on-demand links\n").replace(
        "\toption leasetime\t12h\n", "\toption leasetime '24h'\n").replace(
        "\tlist ra_flags\tother-config\n", "")
    d.set("cachesize", "0")  # a line whose comment is on the next line stays alone
    assert "\toption cachesize '0'\n\toption authoritative\t1\n" in p.dumps()


# ---- files --------------------------------------------------------------------------------------


def test_load_and_save():
    path = "/tmp/sixbroker-test-uci-%d" % id(DATA)
    with open(path, "wb") as f:
        f.write(_read("network").encode("utf-8"))
    try:
        p = uci.load(path)
        assert p.name == path.rsplit("/", 1)[-1]
        p.get("lan").set("ipaddr", "192.0.2.254")
        uci.save(p, path)
        again = uci.load(path, "network")
        assert again.name == "network" and again.get("lan").get("ipaddr") == "192.0.2.254"
        with open(path, "wb") as f:
            f.write(b"config a b\n\toption x '\xff'\n")
        with pytest.raises(UciError):
            uci.load(path)
    finally:
        os.remove(path)
