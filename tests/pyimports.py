"""Which sixbroker modules a module imports, read from its source (not by importing it): the tests' own
reading, apart from scripts/mkipk.py's, so that each checks the other.  Used by the house rules
(tests/house) and the packages' closure checks (tests/packaging)."""

import ast
import os

TOP = "sixbroker"


def modules(top):
    """{dotted module name: source} of every module under `top` (a directory holding package `sixbroker`)."""
    found = {}
    base = os.path.dirname(top)
    for d, dirs, names in os.walk(top):
        dirs[:] = [n for n in dirs if n != "__pycache__"]
        for n in names:
            if n.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, n), base)[:-3].split(os.sep)
                name = ".".join(rel[:-1] if rel[-1] == "__init__" else rel)
                with open(os.path.join(d, n), encoding="utf-8") as f:
                    found[name] = f.read()
    return found


def imports(name, source, known):
    """The sixbroker modules `name` imports, anywhere in its text.  `from a.b import c` is module a.b.c
    when that is a module, else a.b (c is a name in it)."""
    out = set()
    package = name if name in known and _is_package(name, known) else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == TOP)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = base + ("." + node.module if node.module else "")
            else:
                mod = node.module or ""
            if mod.split(".")[0] != TOP:
                continue
            subs = [mod + "." + a.name for a in node.names if mod + "." + a.name in known]
            out.update(subs)
            if len(subs) < len(node.names):
                out.add(mod)
    out.discard(name)
    return out


def _is_package(name, known):
    return any(k.startswith(name + ".") for k in known)


def closure(found, entries):
    """The modules `entries` import, directly or not, with every package on their way (Python runs a
    package's __init__ before its module): {dotted names}.  `found` is modules()'s answer."""
    known = set(found)
    wanted, todo = set(), list(entries)
    while todo:
        name = todo.pop()
        if name in wanted or name not in known:
            continue
        wanted.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(imports(name, found[name], known))
    return wanted
