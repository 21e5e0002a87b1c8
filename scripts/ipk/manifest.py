"""The files a package installs: packaging/<pkg>.files read, Python modules and shell scripts stripped of
what does not run (comments, docstrings, indentation: half the router package's size), checked the same code."""

import ast
import io
import os
import re
import shutil
import stat
import subprocess
import tokenize

from ipk import PackError, packaging_path, read_text

MODE_RE = re.compile(r"^0[0-7]{3}$")
# package-pack.mk deletes these from every package before packing.
JUNK_RE = re.compile(r"^(CVS|\.svn|\.#.*|.*~)$")


def parse_manifest(repo, pkg):
    """packaging/<pkg>.files -> {installed path without the leading '/': (source file, mode)}.

    One entry a line: `SOURCE  DEST  MODE`, SOURCE relative to the repository.
      - a file:  DEST is the installed path, or a directory ending in '/' to keep the file's name;
                 MODE is 0644 or 0755 (as OpenWrt's INSTALL_DATA / INSTALL_BIN); a missing file is an error.
      - a tree:  SOURCE ends in '/', DEST is a directory ending in '/', MODE is '-': every file below is
                 installed, 0755 if its owner-execute bit is set else 0644 (git's two modes), as luci.mk
                 copies htdocs/ and root/.  A missing tree installs nothing, as in luci.mk.
    """
    path = packaging_path(repo, pkg, ".files")
    text = read_text(path, "MANIFEST_MISSING")
    where_of = {}
    files = {}
    missing = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = "packaging/%s.files:%d" % (pkg, lineno)
        parts = line.split()
        if len(parts) != 3:
            raise PackError("MANIFEST_SYNTAX", "%s: want 'SOURCE DEST MODE', got %r" % (where, line))
        src, dest, mode = parts
        if src.startswith("/") or ".." in src.split("/"):
            raise PackError("MANIFEST_SYNTAX", "%s: SOURCE %r must be a path inside the repository" % (where, src))
        if not dest.startswith("/") or ".." in dest.split("/") or "//" in dest:
            raise PackError("MANIFEST_SYNTAX", "%s: DEST %r must be an absolute path" % (where, dest))
        src_abs = os.path.join(repo, src)
        if src.endswith("/"):
            if not dest.endswith("/") or mode != "-":
                raise PackError("MANIFEST_SYNTAX", "%s: a tree (SOURCE ending in '/') wants DEST ending in '/' "
                                                   "and MODE '-'" % where)
            found = _walk_tree(src_abs, where) if os.path.isdir(src_abs) else []
            for rel, abs_path, file_mode in found:
                _add(files, where_of, (dest + rel).lstrip("/"), abs_path, file_mode, where)
            continue
        if not MODE_RE.match(mode):
            raise PackError("MANIFEST_SYNTAX", "%s: MODE %r: want an octal mode like 0644 or 0755" % (where, mode))
        if dest.endswith("/"):
            dest += src.rsplit("/", 1)[-1]
        if dest == "/":
            raise PackError("MANIFEST_SYNTAX", "%s: DEST must name a file" % where)
        if not os.path.isfile(src_abs):
            missing.append("%s: %s does not exist" % (where, src))
            continue
        _add(files, where_of, dest.lstrip("/"), src_abs, int(mode, 8), where)
    if missing:
        raise PackError("MANIFEST_MISSING_FILE", "files listed for %s are missing:\n  %s" % (pkg, "\n  ".join(missing)))
    return files


def _walk_tree(top, where):
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not JUNK_RE.match(d))
        for name in sorted(filenames):
            if JUNK_RE.match(name):
                continue
            abs_path = os.path.join(dirpath, name)
            st = os.lstat(abs_path)
            if not stat.S_ISREG(st.st_mode):
                raise PackError("MANIFEST_UNSUPPORTED", "%s: %s is not a regular file (links and devices are "
                                                        "not packed)" % (where, os.path.relpath(abs_path)))
            mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
            found.append((os.path.relpath(abs_path, top).replace(os.sep, "/"), abs_path, mode))
    return found


def _add(files, where_of, path, src, mode, where):
    if path in files:
        raise PackError("MANIFEST_DUPLICATE", "%s: /%s is already installed by %s" % (where, path, where_of[path]))
    files[path] = (src, mode)
    where_of[path] = where


def _docstring_owners(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                yield node, first


def strip_python(source, where):
    """The module without comments, docstrings and blank lines.  Text is only ever removed (a docstring
    that is a body's only statement becomes `pass`), so MicroPython reads the result as it reads the
    source; the result's syntax tree must equal the source's without those docstrings."""
    if "\r" in source:
        raise PackError("PYTHON_UNSUPPORTED", "%s: carriage returns in a Python file" % where)
    try:
        tree = ast.parse(source)
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (SyntaxError, tokenize.TokenError) as e:
        raise PackError("PYTHON_SYNTAX", "%s: %s" % (where, e))
    lines = source.split("\n")
    drop = set()          # line numbers (1-based) that go entirely
    keep_as_is = set()    # lines inside a multi-line string: every character counts
    cut = {}              # line number -> column where a trailing comment starts being removed
    depth, start = 0, 0
    previous = None
    for tok in tokens:
        name = tokenize.tok_name[tok.type]
        if name == "FSTRING_START":
            depth, start = depth + 1, (tok.start[0] if depth == 0 else start)
        elif name == "FSTRING_END":
            depth -= 1
            if depth == 0:
                keep_as_is.update(range(start, tok.end[0] + 1))
        elif tok.start[0] != tok.end[0] and tok.type == tokenize.STRING:
            keep_as_is.update(range(tok.start[0], tok.end[0] + 1))
        if tok.type == tokenize.COMMENT:
            row = tok.start[0]
            if row == 1 and tok.string.startswith("#!"):
                continue
            on_line = previous is not None and previous.end[0] == row
            cut[row] = previous.end[1] if on_line else 0
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            previous = tok
    expected = ast.parse(source)
    uses_doc = "__doc__" in source
    removed = []
    for node, doc in ([] if uses_doc else list(_docstring_owners(tree))):
        first, last = lines[doc.lineno - 1], lines[doc.end_lineno - 1]
        after = last[doc.end_col_offset:].strip()
        if first[:doc.col_offset].strip() or (after and not after.startswith("#")):
            continue                          # shares its lines with code (`def f(): "doc"`): leave it
        removed.append((node.lineno if not isinstance(node, ast.Module) else 0, doc.lineno))
        rows = range(doc.lineno, doc.end_lineno + 1)
        keep_as_is.difference_update(rows)
        drop.update(rows)
        if len(node.body) == 1:
            drop.discard(doc.lineno)
            lines[doc.lineno - 1] = first[:doc.col_offset] + "pass"
            cut.pop(doc.lineno, None)
    out = []
    for number, line in enumerate(lines, 1):
        if number in drop:
            continue
        if number in keep_as_is:
            # a comment can only follow the string's end here, and the cut is right where that ends
            out.append(line[:cut[number]] if number in cut else line)
            continue
        if number in cut:
            line = line[:cut[number]]
        line = line.rstrip()
        if line:
            out.append(line)
    result = "\n".join(out) + "\n"
    for node, doc in _docstring_owners(expected):
        key = (node.lineno if not isinstance(node, ast.Module) else 0, doc.lineno)
        if key in removed:
            node.body[:1] = [] if len(node.body) > 1 else [ast.Pass()]
    try:
        same = ast.dump(ast.parse(result)) == ast.dump(expected)
    except SyntaxError:
        same = False
    if not same:
        raise PackError("PYTHON_STRIP", "%s: removing its comments and docstrings would change the code "
                                        "(a case scripts/mkipk.py does not handle yet)" % where)
    return result


def reindent_python(source, where):
    """The module with one space per indentation level and continuation lines indented by one more.
    Only the whitespace before a line's first token changes, never inside a string that spans lines, and
    the syntax tree must stay the same (ast.dump leaves out columns)."""
    try:
        expected = ast.dump(ast.parse(source))
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (SyntaxError, tokenize.TokenError) as e:
        raise PackError("PYTHON_SYNTAX", "%s: %s" % (where, e))
    lines = source.split("\n")
    inside = set()        # rows a string spans into: their leading blanks are the string's
    first = {}            # row -> (column of its first token, indentation wanted)
    depth, opened, logical = 0, 0, True
    for tok in tokens:
        name = tokenize.tok_name[tok.type]
        if name == "INDENT":
            depth += 1
            continue
        if name == "DEDENT":
            depth -= 1
            continue
        if name in ("NEWLINE", "NL", "COMMENT", "ENDMARKER"):
            if name == "NEWLINE":
                logical = True
            continue
        if name == "FSTRING_START":
            opened += 1
            if opened == 1:
                fstart = tok.start[0]
        elif name == "FSTRING_END":
            opened -= 1
            if opened == 0:
                inside.update(range(fstart + 1, tok.end[0] + 1))
        elif tok.start[0] != tok.end[0]:
            inside.update(range(tok.start[0] + 1, tok.end[0] + 1))
        row = tok.start[0]
        if row not in first and row not in inside:
            first[row] = (tok.start[1], depth if logical else depth + 1)
        logical = False
    for row, (col, level) in first.items():
        line = lines[row - 1]
        if line[:col].strip(" "):
            raise PackError("PYTHON_UNSUPPORTED", "%s:%d: indentation other than spaces" % (where, row))
        lines[row - 1] = " " * level + line[col:]
    result = "\n".join(lines)
    try:
        same = ast.dump(ast.parse(result)) == expected
    except SyntaxError:
        same = False
    if not same:
        raise PackError("PYTHON_STRIP", "%s: re-indenting it would change the code" % where)
    return result


def is_shell(path, data):
    return not path.endswith(".py") and data.startswith(b"#!/bin/sh\n")


HEREDOC_RE = re.compile(r"<<")


def strip_shell(source, where, bash=None):
    """A /bin/sh script without its full-line comments and blank lines (the shebang stays); nothing else
    changes.  A here-document's text may hold such lines, so a script with `<<` anywhere is refused.  The
    proof: bash re-prints a function's parse tree in one canonical form (`declare -f`), without comments
    and with its own indentation, so the script wrapped as a function body must print the same before and
    after; a line that was not a comment (inside a quoted string, after a backslash-newline) shows there.
    `sh -n` must also accept the result.  OpenWrt's build host has bash (include/prereq-build.mk)."""
    if "\r" in source:
        raise PackError("SHELL_UNSUPPORTED", "%s: carriage returns in a shell script" % where)
    if HEREDOC_RE.search(source):
        raise PackError("SHELL_UNSUPPORTED", "%s: a here-document (or `<<`): its text is not stripped safely; "
                                             "write it without one" % where)
    lines = source.split("\n")
    out = lines[:1] + [line for line in lines[1:] if line.strip() and not line.lstrip().startswith("#")]
    result = "\n".join(out) + "\n"
    if _shell_parse(source, where, bash) != _shell_parse(result, where, bash):
        raise PackError("SHELL_STRIP", "%s: removing its comment lines would change the script" % where)
    return result


def _shell_parse(text, where, bash):
    bash = bash or shutil.which("bash")
    if not bash:
        raise PackError("SHELL_STRIP", "%s: bash is needed to check the stripped script" % where)
    name = "sixbroker_stripped_script"
    wrapped = "%s() {\n:\n%s\n}\ndeclare -f %s\n" % (name, text, name)       # `:`: a script may be empty
    r = subprocess.run([bash, "--norc", "--noprofile", "--posix", "-s"], input=wrapped.encode("utf-8"),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
    n = subprocess.run(["sh", "-n"], input=text.encode("utf-8"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0 or r.stderr or n.returncode != 0 or not r.stdout.startswith(name.encode()):
        raise PackError("SHELL_SYNTAX", "%s: the shell cannot parse it: %s" % (
            where, (r.stderr or n.stderr).decode("utf-8", "replace").strip()))
    return r.stdout


def read_files(manifest):
    files = {}
    for path, (src, mode) in manifest.items():
        with open(src, "rb") as f:
            data = f.read()
        if path.endswith(".py"):
            where = os.path.relpath(src)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise PackError("PYTHON_UNSUPPORTED", "%s is not UTF-8" % where)
            data = reindent_python(strip_python(text, where), where).encode("utf-8")
        elif is_shell(path, data):
            data = strip_shell(data.decode("utf-8"), os.path.relpath(src)).encode("utf-8")
        files[path] = (mode, data)
    return files
