"""Properties of sixbroker.core.uci and its editor tests/uci_edit.py over generated files and edits (CPython only: hypothesis).

- any text either parses or raises UciError, never anything else;
- a file that parses is given back byte for byte;
- after any sequence of edits the text we write reads back (as libuci would read it) to exactly the
  sections and options we hold;
- every value survives the quoting of `uci batch` scripts.
"""
from hypothesis import given, settings, strategies as st

import uci_edit as uci

NAMES = st.sampled_from(["a", "b", "c", "proto", "ip6prefix", "x_1"])
SEC_NAMES = st.sampled_from(["lan", "wan", "wan6", "s1"])
TYPES = st.sampled_from(["interface", "rule", "zone"])
VALUES = st.text(alphabet="ab '\"\\#;\t\n=x$", max_size=8)
SAFE_VALUES = st.text(st.characters(min_codepoint=9, max_codepoint=0x2FF, blacklist_categories=["Cs"]),
                      max_size=12).filter(lambda v: uci._valid_text(v))


def _quote(style, v):
    if style == 0:
        return "'" + v.replace("'", "'\\''") + "'"
    if style == 1:
        return '"' + "".join("\\" + c if c in '"\\' else c for c in v) + '"'
    # unquoted with backslashes where needed (not for newlines: a backslash-newline joins lines)
    out = ""
    for c in v:
        if c == "\n":
            return _quote(0, v)
        out += "\\" + c if c in " \t'\"\\#;" else c
    return out


@st.composite
def files(draw):
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        lines.append(draw(st.sampled_from(["", "# c", "  \t", "#config x y"])))
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.one_of(st.none(), SEC_NAMES))
        typ = draw(TYPES)
        head = "config " + typ + ("" if name is None else " " + _quote(draw(st.integers(0, 2)), name))
        lines.append(head + draw(st.sampled_from(["", " # tail", "   "])))
        for _ in range(draw(st.integers(0, 5))):
            kind = draw(st.sampled_from(["option", "list"]))
            indent = draw(st.sampled_from(["\t", "    ", ""]))
            v = draw(VALUES)
            lines.append(indent + kind + " " + draw(NAMES) + " " + _quote(draw(st.integers(0, 2)), v)
                         + draw(st.sampled_from(["", " # note", "\t"])))
        lines.append(draw(st.sampled_from(["", "# between"])))
    text = "\n".join(lines)
    if draw(st.booleans()):
        text += "\n"
    return text


def _model(p):
    return [(s.type, s.name, s.options) for s in p.sections]


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="co pl'\"\\#;\n\tn1x=", max_size=40))
def test_any_text_parses_or_raises_uci_error(text):
    try:
        p = uci.parse(text, "t")
    except uci.UciError as e:
        assert e.code == "UCI_PARSE" and e.line >= 1
        return
    assert p.dumps() == text


@settings(max_examples=300, deadline=None)
@given(files())
def test_generated_files_round_trip(text):
    try:
        p = uci.parse(text, "t")
    except uci.UciError as e:
        # only a reopened section of another type may be refused here
        assert "different type" in e.reason, (e, text)
        return
    assert p.dumps() == text


EDITS = st.lists(st.tuples(
    st.sampled_from(["set", "setlist", "unset", "add_list", "del_list", "add", "remove", "rename", "retype"]),
    st.integers(0, 9), NAMES, st.lists(VALUES, min_size=1, max_size=3)), max_size=8)


@settings(max_examples=300, deadline=None)
@given(files(), EDITS)
def test_edits_read_back_as_held(text, edits):
    try:
        p = uci.parse(text, "t")
    except uci.UciError:
        return
    for op, n, opt, vals in edits:
        secs = p.sections
        if op == "add":
            name = "n%d" % n
            if n % 2 and p.get(name) is None:
                p.add("interface", name)
            else:
                p.add("rule")
            continue
        if not secs:
            continue
        s = secs[n % len(secs)]
        if op == "set":
            s.set(opt, vals[0])
            assert s.get(opt) == (vals[0] or None)
        elif op == "setlist":
            s.set(opt, vals)
            assert s.get(opt) == vals
        elif op == "unset":
            s.unset(opt)
            assert opt not in s
        elif op == "add_list":
            s.add_list(opt, vals[0])
        elif op == "del_list":
            s.del_list(opt, vals[0])
        elif op == "remove":
            p.remove(s)
        elif op == "retype":
            s.type = ["interface", "rule", "zone"][n % 3]
        elif op == "rename":
            name = "r%d" % n
            if p.get(name) is None:
                s.rename(name)
        again = uci.parse(p.dumps(), "t")
        assert _model(again) == _model(p), (text, edits, p.dumps())
        assert again.dumps() == p.dumps()


@settings(max_examples=300, deadline=None)
@given(SAFE_VALUES.filter(lambda v: v != ""), st.lists(SAFE_VALUES, min_size=1, max_size=3))
def test_batch_scripts_carry_any_value(value, items):
    s = uci.new_section("interface", "t", [("v", value), ("l", items)])
    cmds = uci.batch_commands(uci.batch("network", s))
    assert cmds == ([["set", "network.t="], ["set", "network.t=interface"], ["set", "network.t.v=" + value]]
                    + [["add_list", "network.t.l=" + i] for i in items] + [["commit", "network"]])
