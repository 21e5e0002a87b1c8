"""The rules of the house (docs/ARCHITECTURE.md), read from the source: which room may import which, and
no circle of imports, counting the imports made inside functions too (a lazy import is still a
dependency: status <-> diagnose was one).

A room is a sub-package of sixbroker, named for where its code runs:
  core         both interpreters (the router's MicroPython too): imports nothing of sixbroker but core
  openwrt      the OpenWrt router end: core and itself; never the appliers or the broker
  linux        the Linux appliers: core and itself; they take plans, so never core.options
  linuxrouter  the plain-Linux router end: core, linux and itself
  broker       the VPS: core, linux and itself
The two entry points may go anywhere: run.py (the router's shell wrappers) and cli.py (`sixbroker`).
"""

import ast
import os

import pytest

from pyimports import TOP, imports, modules

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(ROOT, "src", "sixbroker")

ALLOWED = {
    "core": {"core"},
    "openwrt": {"core", "openwrt"},
    "linux": {"core", "linux"},
    "linuxrouter": {"core", "linux", "linuxrouter"},
    "broker": {"core", "linux", "broker"},
}
ENTRY_POINTS = {"sixbroker.run", "sixbroker.cli"}
# what a room may never import even where its neighbours may (the module, not the room)
FORBIDDEN = {"linux": {"sixbroker.core.options"}}


def room(name):
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else None


def broken_rules(top):
    """Every broken rule under `top`, as sentences (empty: the house is in order)."""
    src = modules(top)
    known = set(src)
    graph = {name: imports(name, text, known) for name, text in src.items()}
    problems = []
    for name, deps in sorted(graph.items()):
        if name in ENTRY_POINTS or name == TOP:
            continue
        r = room(name)
        if r not in ALLOWED:
            problems.append("%s is in no room (%s)" % (name, ", ".join(sorted(ALLOWED))))
            continue
        for dep in sorted(deps):
            if dep == TOP:
                continue
            if room(dep) not in ALLOWED[r]:
                problems.append("%s (room %s) imports %s (room %s)" % (name, r, dep, room(dep)))
            elif dep in FORBIDDEN.get(r, ()):
                problems.append("%s (room %s) imports %s, which that room may not" % (name, r, dep))
    for cycle in cycles(graph):
        problems.append("import circle: " + " -> ".join(cycle + [cycle[0]]))
    return problems


def cycles(graph):
    """One representative circle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


# ---------------------------------------------------------------------------------------------------


def test_the_house_keeps_its_rules():
    assert broken_rules(PACKAGE) == []


def test_every_room_is_a_package_with_a_docstring():
    for r in ALLOWED:
        init = os.path.join(PACKAGE, r, "__init__.py")
        assert os.path.isfile(init), r
        with open(init, encoding="utf-8") as f:
            assert ast.get_docstring(ast.parse(f.read())), init


def test_every_module_names_its_one_thing_in_its_first_line():
    for name, text in modules(PACKAGE).items():
        doc = ast.get_docstring(ast.parse(text))
        assert doc and doc.split("\n")[0].strip(), name


# The check itself must be able to fail: a small house with each kind of broken rule.
BAD_HOUSES = {
    "core imports the router end": {"core/a.py": "from sixbroker.openwrt import b\n", "openwrt/b.py": ""},
    "router end imports an applier": {"openwrt/a.py": "def f():\n    from sixbroker.linux import k\n",
                                      "linux/k.py": ""},
    "router end imports the broker": {"openwrt/a.py": "import sixbroker.broker.db\n", "broker/db.py": ""},
    "applier takes options": {"linux/a.py": "from sixbroker.core import options\n", "core/options.py": ""},
    "broker imports the router end": {"broker/a.py": "from sixbroker.openwrt.b import x\n", "openwrt/b.py": "x = 1\n"},
    "a circle inside a room": {"openwrt/a.py": "from sixbroker.openwrt import b\n",
                               "openwrt/b.py": "def f():\n    from sixbroker.openwrt import a\n"},
    "a module in no room": {"stray.py": "from sixbroker.core import a\n", "core/a.py": ""},
}


@pytest.mark.parametrize("case", sorted(BAD_HOUSES))
def test_the_check_finds_a_broken_rule(tmp_path, case):
    top = tmp_path / "sixbroker"
    files = {"__init__.py": 'VERSION = "0"\n', "run.py": "", "cli.py": ""}
    files.update({r + "/__init__.py": '"""%s"""\n' % r for r in ALLOWED})
    files.update(BAD_HOUSES[case])
    for rel, text in files.items():
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_text(text)
    assert broken_rules(str(top)), case


def test_a_house_in_order_passes(tmp_path):
    top = tmp_path / "sixbroker"
    files = {"__init__.py": 'VERSION = "0"\n', "run.py": "from sixbroker.openwrt import a\n",
             "core/x.py": "from sixbroker import VERSION\n", "openwrt/a.py": "from sixbroker.core import x\n",
             "linux/k.py": "from sixbroker.core.x import VERSION\n",
             "broker/b.py": "from sixbroker.linux import k\nfrom sixbroker.core import x\n"}
    files.update({r + "/__init__.py": '"""%s"""\n' % r for r in ALLOWED})
    for rel, text in files.items():
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_text(text)
    assert broken_rules(str(top)) == []
