"""Edit UCI files byte for byte, as the tests need: the editor over sixbroker.core.uci's reader.

The product only reads UCI (sixbroker.core.uci.parse) and prints `uci batch` scripts; the tests also
build router files, replay printed scripts the way `uci batch` would, and pin libuci's writing rules, so
this editor lives with them.  It runs under pytest and under MicroPython (tests/mprun.py puts tests/ on
the path).

Writing follows `uci_export_package` (file.c): `config TYPE 'NAME'`, then `\\toption NAME 'VALUE'` and
`\\tlist NAME 'VALUE'`, with `'` written as `'\\''` (`uci_escape`). Only lines that were edited, and new
ones, are written that way; every other line is given back byte for byte.  `show()` prints what
`uci show` prints and `batch_commands()` splits a script as `uci batch` does (openwrt/uci cli.c:
`uci_show_package`, `uci_print_value`, `uci_batch_cmd`).
"""

from sixbroker.core import uci
from sixbroker.core.uci import (  # noqa: F401  (the product's half, for the tests that use both)
    UciError, _invalid, _q, _valid, _valid_text, batch_heredoc, new_section, uci_batch_script)


def _type_text(typ):
    # libuci writes the type bare; a type holding a character the lexer treats specially would not
    # read back, so such a type is quoted instead.
    for c in typ:
        if c in "'\"\\#;":
            return _q(typ)
    return typ


class _Stmt:
    """One command: package, config, option or list."""

    def __init__(self, kind, args, line=None, section=None):
        self.kind = kind
        self.args = args
        self.line = line
        self.section = section  # config: the Section it opens; option/list: set by Package._replay
        self.deleted = False

    def render(self):
        k = self.kind
        if k == "config":
            s = "config " + _type_text(self.args[0])
            if self.args[1]:
                s += " " + _q(self.args[1])
            return s
        if k == "package":
            return "package " + self.args[0]
        return "\t" + k + " " + self.args[0] + " " + _q(self.args[1])


class _Line:
    """The text of one logical line (a line, or several joined by a backslash or an open quote)."""

    def __init__(self, raw, eol="\n"):
        self.raw = raw
        self.stmts = []
        self.comment = None
        self.dirty = raw is None
        self.removed = False
        self.eol = "\r\n" if raw is not None and raw.endswith("\r\n") else eol

    def gone(self):
        if self.removed:
            return True
        if not self.stmts:
            return False
        for st in self.stmts:
            if not st.deleted:
                return False
        return True

    def blank(self):
        return not self.stmts and self.raw is not None and self.raw.strip() == ""

    def comment_only(self):
        return not self.stmts and self.raw is not None and self.raw.strip() != ""

    def text(self):
        if self.removed:
            return ""
        if not self.dirty:
            return self.raw
        parts = [st.render() for st in self.stmts if not st.deleted]
        if not parts:
            return ""
        s = self.eol.join(parts)
        if self.comment:
            s += " " + self.comment
        return s + self.eol


class Section(uci.Section):
    """A `config` section that edits its file's lines.  .name is None for an anonymous section."""

    def __init__(self, package, typ, name):
        super().__init__(typ, name)
        self.package = package
        self._heads = []  # config statements that open this section
        self._stmts = []  # its option/list statements, in file order
        self._last = None  # its last statement in the file
        self._gen = 0

    @property
    def name(self):
        return self._name

    @name.setter
    def name(self, name):
        self.rename(name)

    @property
    def type(self):
        return self._type

    @type.setter
    def type(self, typ):
        self._pkg()._retype(self, typ)

    def _find(self, opt):
        for pair in self._opts:
            if pair[0] == opt:
                return pair
        return None

    def get(self, opt, default=None):
        pair = self._find(opt)
        if pair is None:
            return default
        v = pair[1]
        return list(v) if isinstance(v, list) else v

    def __contains__(self, opt):
        return self._find(opt) is not None

    def __getitem__(self, opt):
        pair = self._find(opt)
        if pair is None:
            raise KeyError(opt)
        return self.get(opt)

    def set(self, opt, value):
        """A str sets an option, a list sets a list; '' , [] or None removes it (as `uci set` does)."""
        self._pkg()._set(self, opt, value)

    def unset(self, opt):
        self._pkg()._unset(self, opt)

    def add_list(self, opt, value):
        """`uci add_list`: append; an option that held a string becomes a list."""
        cur = self.get(opt)
        if cur is None:
            cur = []
        elif not isinstance(cur, list):
            cur = [cur]
        self.set(opt, cur + [value])

    def del_list(self, opt, value):
        """`uci del_list`: drop every item equal to value; a plain option is left alone."""
        cur = self.get(opt)
        if isinstance(cur, list):
            self.set(opt, [v for v in cur if v != value])

    def rename(self, name):
        self._pkg()._rename(self, name)

    def _pkg(self):
        if self.package is None:
            raise _invalid("section %s was removed from its package" % (self._name or self._type))
        return self.package


class Package(uci.Package):
    """The sections of one UCI file and the text they came from."""

    def __init__(self, name=None):
        super().__init__(name)
        self._lines = []
        self._gen = 0
        self._eol = "\n"

    @property
    def sections(self):
        return list(self._sections)

    def __iter__(self):
        return iter(list(self._sections))

    def get(self, name):
        for s in self._sections:
            if s.name == name:
                return s
        return None

    def lookup(self, ref):
        """A section by name or by libuci's `@type[index]` (negative counts from the end)."""
        if not ref.startswith("@"):
            return self.get(ref)
        b = ref.find("[")
        if b < 0 or not ref.endswith("]"):
            return None
        try:
            idx = int(ref[b + 1:-1])
        except ValueError:
            return None
        typ = ref[1:b]
        secs = self.find(typ) if typ else self.sections
        if idx < 0:
            idx += len(secs)
        return secs[idx] if 0 <= idx < len(secs) else None

    def dumps(self):
        out = []
        for line in self._lines:
            s = line.text()
            if not s:
                continue
            if out and not out[-1].endswith("\n"):
                out.append(self._eol)
            out.append(s)
        return "".join(out)

    # ---- edits -------------------------------------------------------------------------------

    def add(self, typ, name=None):
        """A new empty section at the end of the file, written as `uci commit` would write it."""
        uci._check_section(typ, name)
        if name is not None and self.get(name) is not None:
            raise _invalid("section %s already exists" % name)
        sec = Section(self, typ, name)
        head = _Stmt("config", [typ, name or ""], section=sec)
        at = len(self._lines)
        while at > 0 and (self._lines[at - 1].blank() or self._lines[at - 1].gone()):
            at -= 1
        new = []
        if at > 0:
            sep = _Line(self._eol, self._eol)
            new.append(sep)
        line = _Line(None, self._eol)
        head.line = line
        line.stmts.append(head)
        new.append(line)
        self._lines[at:at] = new
        self._replay()
        return sec

    def remove(self, section):
        """Delete a section, the comment lines right above it and the comments inside it."""
        section._pkg()
        if section.package is not self:
            raise _invalid("section belongs to another package")
        mine = section._heads + section._stmts
        index = {}
        for i, line in enumerate(self._lines):
            index[id(line)] = i
        own = []
        for st in mine:
            st.deleted = True
            st.line.dirty = True
            i = index[id(st.line)]
            if i not in own:
                own.append(i)
        own.sort()
        lines = self._lines
        heads = [index[id(h.line)] for h in section._heads]
        # comment and blank lines between two lines of the section go with it
        for a, b in zip(own, own[1:]):
            between = lines[a + 1:b]
            if all(not ln.stmts or ln.gone() for ln in between):
                for ln in between:
                    ln.removed = True
        for h in heads:
            if not lines[h].gone():
                continue
            k = h - 1
            while k >= 0 and lines[k].comment_only() and (k not in own):
                lines[k].removed = True
                k -= 1
        # where the section stood, one blank line stays between its neighbours (none at either end
        # of the file)
        gaps = []
        for i in own:
            if not lines[i].gone():
                continue
            a = i - 1
            while a >= 0 and lines[a].gone():
                a -= 1
            b = i + 1
            while b < len(lines) and lines[b].gone():
                b += 1
            if (a, b) not in gaps:
                gaps.append((a, b))
        for a, b in gaps:
            before = lines[a] if a >= 0 else None
            after = lines[b] if b < len(lines) else None
            if after is not None and after.blank() and (before is None or before.blank()):
                after.removed = True
            elif after is None and before is not None and before.blank():
                before.removed = True
        self._replay()
        section.package = None

    def rename(self, section, name):
        self._rename(section, name)

    def _rename(self, sec, name):
        if not isinstance(name, str) or not _valid(name, True):
            raise _invalid("invalid section name %r" % (name,))
        other = self.get(name)
        if other is not None and other is not sec:
            raise _invalid("section %s already exists" % name)
        if sec.name == name:
            return
        for h in sec._heads:
            self._rewrite(h, "config", [h.args[0], name])
        sec._name = name
        self._replay()

    def _retype(self, sec, typ):
        if not isinstance(typ, str) or not _valid(typ, False):
            raise _invalid("invalid section type %r" % (typ,))
        for h in sec._heads:
            self._rewrite(h, "config", [typ, h.args[1]])
        self._replay()

    def _unset(self, sec, opt):
        for st in sec._stmts:
            if st.args[0] == opt:
                self._delete(st)
        self._replay()

    def _set(self, sec, opt, value):
        new = uci._checked(opt, value)
        if new is None:
            return self._unset(sec, opt)
        if sec.get(opt) == new:
            return
        stmts = [st for st in sec._stmts if st.args[0] == opt]
        if isinstance(new, str):
            if stmts:
                self._rewrite(stmts[0], "option", [opt, new])
            else:
                self._insert_after(sec._last, [_Stmt("option", [opt, new])])
            for st in stmts[1:]:
                self._delete(st)
        elif not stmts:
            self._insert_after(sec._last, [_Stmt("list", [opt, v]) for v in new])
        elif all(st.kind == "list" for st in stmts):
            self._diff_list(opt, stmts, new)
        else:
            self._rewrite(stmts[0], "list", [opt, new[0]])
            self._insert_after(stmts[0], [_Stmt("list", [opt, v]) for v in new[1:]])
            for st in stmts[1:]:
                self._delete(st)
        self._replay()
        if sec.get(opt) != new:
            raise UciError("option %s did not take its new value" % opt, code="INTERNAL_ERROR")

    def _diff_list(self, opt, olds, new):
        # keep the list lines whose items survive, in order; delete the others, add the new ones
        i = 0
        anchor = None
        for v in new:
            k = i
            while k < len(olds) and olds[k].args[1] != v:
                k += 1
            if k < len(olds):
                for st in olds[i:k]:
                    self._delete(st)
                anchor = olds[k]
                i = k + 1
                continue
            st = _Stmt("list", [opt, v])
            if anchor is None:
                self._insert_before(olds[0], st)
            else:
                self._insert_after(anchor, [st])
            anchor = st
        for st in olds[i:]:
            self._delete(st)

    def _rewrite(self, st, kind, args):
        if st.kind == kind and st.args == args:
            return
        st.kind = kind
        st.args = args
        st.line.dirty = True

    def _delete(self, st):
        st.deleted = True
        st.line.dirty = True

    def _insert_after(self, anchor, stmts):
        if not stmts:
            return
        line = anchor.line
        k = line.stmts.index(anchor)
        if any(not s.deleted for s in line.stmts[k + 1:]):
            # another command follows on the same line: split the line rather than reorder
            for j, st in enumerate(stmts):
                st.line = line
                line.stmts.insert(k + 1 + j, st)
            line.dirty = True
            return
        at = self._lines.index(line) + 1
        new = []
        for st in stmts:
            ln = _Line(None, self._eol)
            st.line = ln
            ln.stmts.append(st)
            new.append(ln)
        self._lines[at:at] = new

    def _insert_before(self, target, st):
        line = target.line
        k = line.stmts.index(target)
        if any(not s.deleted for s in line.stmts[:k]):
            st.line = line
            line.stmts.insert(k, st)
            line.dirty = True
            return
        ln = _Line(None, self._eol)
        st.line = ln
        ln.stmts.append(st)
        at = self._lines.index(line)
        self._lines[at:at] = [ln]

    def _replay(self):
        """Recompute every section from the statements in file order, as libuci would read them."""
        self._gen += 1
        gen = self._gen
        secs = []
        cur = None
        for line in self._lines:
            if line.removed:
                continue
            for st in line.stmts:
                if st.deleted:
                    continue
                k = st.kind
                if k == "config":
                    cur = st.section
                    if cur._gen != gen:
                        cur._gen = gen
                        cur._opts = []
                        cur._heads = []
                        cur._stmts = []
                        secs.append(cur)
                    cur._type = st.args[0]
                    cur._heads.append(st)
                    cur._last = st
                elif k == "option" or k == "list":
                    st.section = cur
                    cur._stmts.append(st)
                    cur._last = st
                    uci._apply(cur._opts, k, st.args[0], st.args[1])
        self._sections = secs


def parse(text, package=None, filename=None):
    """The editable Package in `text`, read by the core's reader (sixbroker.core.uci._lines).

    Its sections are checked against what sixbroker.core.uci.parse makes of the same text, so every test
    that reads a file through this helper holds the product's reader to the same expectations.
    """
    where = filename or package or "uci"
    pkg = Package(package)
    if isinstance(text, str):
        e = text.find("\n")
        if e > 0 and text[e - 1] == "\r":
            pkg._eol = "\r\n"
    named = {}
    for start, end, comment, cmds in uci._lines(text, where):
        line = _Line(text[start:end])
        if comment is not None:
            line.comment = text[comment:end].rstrip("\r\n")
        for kind, args in cmds:
            st = _Stmt(kind, args, line)
            if kind == "config":
                name = args[1] or None
                sec = named.get(name) if name else None
                if sec is None:
                    sec = Section(pkg, args[0], name)
                    if name:
                        named[name] = sec
                st.section = sec
            elif kind == "package" and pkg.name is None:
                pkg.name = args[0]
            line.stmts.append(st)
        pkg._lines.append(line)
    pkg._replay()
    product = uci.parse(text, package, filename)
    assert product.name == pkg.name and _model(product) == _model(pkg), (_model(product), _model(pkg))
    return pkg


def _model(pkg):
    return [(s.type, s.name, s.options) for s in pkg._sections]


def batch_commands(script):
    """The commands `uci batch` reads from a script, each as its list of arguments.

    cli.c uci_batch_cmd: every command starts on a new line and its arguments are cut with next_arg,
    the file lexer, so it stops at the end of the line, at `;` (the rest of that line is lost) or at
    `#`; a quoted value that runs past the end of the line takes the following lines.  Lines without
    an argument (blank, comment) are skipped, as uci does.
    """
    lx = uci._Lexer(script, "uci batch")
    cmds = []
    start = 0
    while start < len(script):
        lx.begin(start)
        args = []
        while True:
            a = lx.next_arg()
            if a == "":
                break
            args.append(a)
        if args:
            cmds.append(args)
        start = lx.filled
    return cmds


def show(package, name=None):
    """What `uci show <package>` prints (cli.c uci_show_package, anonymous sections as @type[n])."""
    pname = name or package.name
    if not pname:
        raise _invalid("show() needs a package name")
    counts = {}
    out = []
    for sec in package.sections:
        i = counts.get(sec.type, 0)
        counts[sec.type] = i + 1
        ref = sec.name if sec.name else "@%s[%d]" % (sec.type, i)
        out.append("%s.%s=%s\n" % (pname, ref, sec.type))
        for opt, v in sec._opts:
            if isinstance(v, list):
                val = " ".join([_q(x) for x in v])
            else:
                val = _q(v)
            out.append("%s.%s.%s=%s\n" % (pname, ref, opt, val))
    return "".join(out)


def batch(package_name, section, replace=True, commit=True):
    """The `uci batch` script for one section (see uci_batch_script)."""
    return uci.uci_batch_script(package_name, [section], replace, commit)


def load(path, package=None):
    """Parse a file; the package is named after the file unless given."""
    with open(path, "rb") as f:
        data = f.read()
    name = package or path.rsplit("/", 1)[-1]
    try:
        text = data.decode("utf-8")
    except UnicodeError:
        raise UciError("not UTF-8 text", where=path)
    return parse(text, name, path)


def save(package, path):
    """Write the package to path through a temporary file and a rename, keeping the file's mode."""
    import os

    tmp = path + ".sixbroker-new"
    with open(tmp, "wb") as f:
        f.write(package.dumps().encode("utf-8"))
    chmod = getattr(os, "chmod", None)
    if chmod is not None:
        try:
            chmod(tmp, os.stat(path)[0] & 0o7777)
        except OSError:
            pass
    os.rename(tmp, path)
