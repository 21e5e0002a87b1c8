"""Read and write OpenWrt UCI files (/etc/config/*) without disturbing the lines nobody changed.

Runs unchanged on CPython and MicroPython: the router end edits its own configuration with it, the broker
uses it to print configuration for a router.

The lexer follows libuci (openwrt/uci, file.c) step by step, because a file libuci reads differently
from us is a file we would silently corrupt:
- `uci_parse_line`: the command word is cut out with strtok(" \\t") and must be `package`, `config`,
  `option` or `list`, or the one-letter forms `p`, `c`, `o`, `l`; a word starting with `#` ends the line.
  After a command, parsing goes on in the same line, so `;` separates commands.
- `next_arg` / `parse_str`: an argument is a run of unquoted text, '...' and "..." pieces, glued together
  until whitespace (`'it'\\''s'` is `it's`). `#` outside quotes ends the line; `;` ends the argument.
  `\\` outside quotes or inside "..." takes the next character literally; nothing is special inside '...'.
- `parse_backslash`: a backslash at the end of a line joins the next line (the newline is dropped); a
  quoted value that reaches the end of the line goes on in the next line (the newline is kept).
- `uci_parse_config` / `uci_parse_option`: names are [A-Za-z0-9_] (`-` also in package names, util.c
  `uci_validate_str`), section types any printable ASCII; extra arguments are an error (libuci's default
  context is strict, libuci.c `uci_alloc_context`).
The meaning of the commands follows list.c: `option x ''` does nothing at all (`uci_set` with an empty
value and a pointer that was never looked up); setting an option again with another value moves it to the
end; `list` after `option` turns the option into a list, moved to the end; a second `config` with the
same name reopens the section, an error if the type differs (strict mode).

Writing follows `uci_export_package` (file.c): `config TYPE 'NAME'`, then `\\toption NAME 'VALUE'` and
`\\tlist NAME 'VALUE'`, with `'` written as `'\\''` (`uci_escape`). Only lines that were edited, and new
ones, are written that way; every other line is given back byte for byte.

`show()` prints what `uci show` prints and `uci_batch_script()` what `uci batch` reads (openwrt/uci cli.c:
`uci_show_package`, `uci_print_value`, `uci_batch_cmd`, which splits a line with the same `next_arg`).
"""

_WS = " \t\n\r\v\f"  # C isspace() in the C locale
_BATCH_KEY_SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.@[]"


class UciError(ValueError):
    """A UCI file that cannot be read, or a name or value that cannot be written.

    .code is a stable code from sixbroker.core.errors.CODES, .line the 1-based line (None when not about a
    file), .reason what is wrong, str() all of it with the file name.
    """

    def __init__(self, reason, line=None, where=None, code="UCI_PARSE"):
        if line is not None:
            text = "%s line %d: %s" % (where or "uci", line, reason)
        elif where:
            text = "%s: %s" % (where, reason)
        else:
            text = reason
        super().__init__(text)
        self.code = code
        self.line = line
        self.reason = reason
        self.where = where
        self.text = text

    def __str__(self):
        return self.text


def _invalid(reason):
    return UciError(reason, code="UCI_INVALID")


def _isspace(c):
    return c != "" and c in _WS


def _valid(s, name, package=False):
    """util.c uci_validate_str: names alnum and '_' ('-' too for packages), types printable ASCII."""
    if not s:
        return False
    for c in s:
        o = ord(c)
        if 48 <= o <= 57 or 65 <= o <= 90 or 97 <= o <= 122 or c == "_":
            continue
        if c == "-" and package:
            continue
        if name or o < 33 or o > 126:
            return False
    return True


def _valid_text(s):
    """util.c uci_validate_text: what `uci set` / `uci batch` accept as a value."""
    for c in s:
        if ord(c) < 32 and c not in "\t\n\r":
            return False
    return True


def _q(value):
    """A value as libuci writes it (file.c uci_escape, cli.c uci_print_value)."""
    return "'" + value.replace("'", "'\\''") + "'"


def _type_text(typ):
    # libuci writes the type bare; a type holding a character the lexer treats specially would not
    # read back, so such a type is quoted instead.
    for c in typ:
        if c in "'\"\\#;":
            return _q(typ)
    return typ


class _Lexer:
    """libuci's parse context over a str.

    libuci reads one line into a buffer and appends the next line in place when a quote or a trailing
    backslash needs it (uci_getln).  Here `pos` is an index into the text, `end` where the buffer stops
    (it is cut short where libuci writes a NUL: at `#`, and at a `;` that ends an unquoted word) and
    `filled` where the physical data read so far ends.
    """

    def __init__(self, text, where):
        self.text = text
        self.n = len(text)
        self.where = where
        self.pos = self.end = self.filled = self.start = 0
        self.comment = None
        self.in_section = False

    def begin(self, start):
        self.start = self.pos = start
        e = self.text.find("\n", start)
        self.end = self.filled = self.n if e < 0 else e + 1
        self.comment = None

    def cur(self):
        return self.text[self.pos] if self.pos < self.end else ""

    def _at(self, i):
        return self.text[i] if i < self.end else ""

    def getln(self):
        # uci_getln(ctx, pos): the next line overwrites the buffer from the cursor on; at the end of the
        # file fgets() leaves a NUL there.
        if self.filled >= self.n:
            self.end = self.pos
            return
        nxt = self.filled
        e = self.text.find("\n", nxt)
        self.pos = nxt
        self.end = self.filled = self.n if e < 0 else e + 1

    def error(self, reason, at=None):
        if at is None:
            at = min(self.pos, self.filled - 1)
        line = 1
        i = self.text.find("\n")
        while 0 <= i < at:
            line += 1
            i = self.text.find("\n", i + 1)
        raise UciError(reason, line=line, where=self.where)

    def skip_ws(self):
        while _isspace(self.cur()):
            self.pos += 1

    def backslash(self):
        """parse_backslash: False when it joined the next line instead of escaping a character."""
        self.pos += 1
        c = self.cur()
        if c == "" or c == "\n" or (c == "\r" and self._at(self.pos + 1) == "\n"
                                    and self._at(self.pos + 2) == ""):
            self.getln()
            return False
        return True

    def single_quote(self, out):
        opened = self.pos
        self.pos += 1
        while True:
            c = self.cur()
            if c == "'":
                self.pos += 1
                return
            if c == "":
                self.getln()
                if self.cur() == "":
                    self.error("EOF with unterminated '", opened)
                continue
            out.append(c)
            self.pos += 1

    def double_quote(self, out):
        opened = self.pos
        self.pos += 1
        while True:
            c = self.cur()
            if c == '"':
                self.pos += 1
                return
            if c == "":
                self.getln()
                if self.cur() == "":
                    self.error('EOF with unterminated "', opened)
                continue
            if c == "\\":
                if not self.backslash():
                    continue
                c = self.cur()
            out.append(c)
            self.pos += 1

    def parse_str(self):
        out = []
        # libuci terminates the argument in place; when nothing was skipped (no quote, no backslash)
        # and the word stopped at ';', that NUL lands on the ';' and hides the rest of the line.
        shifted = False
        nxt = True
        while True:
            c = self.cur()
            if c == "'":
                shifted = True
                self.single_quote(out)
            elif c == '"':
                shifted = True
                self.double_quote(out)
            elif c == "#":
                self.comment = self.pos
                self.end = self.pos
                break
            elif c == "":
                break
            elif c == ";":
                nxt = False
                break
            elif c == "\\":
                shifted = True
                if self.backslash():
                    out.append(self.cur())
                    self.pos += 1
            else:
                out.append(c)
                self.pos += 1
            c = self.cur()
            if c == "" or _isspace(c):
                break
        if self.cur() != "" and nxt:
            self.pos += 1
        if not shifted and not nxt:
            self.end = self.pos
        return "".join(out)

    def next_arg(self):
        self.skip_ws()
        if self.cur() == ";":
            self.pos += 1
            return ""
        return self.parse_str()

    def arg(self, required, name, package=False):
        v = self.next_arg()
        if v == "":
            if required:
                self.error("insufficient arguments")
            return v
        if name and not _valid(v, True, package):
            self.error("invalid character in name field (%s)" % v)
        return v

    def assert_eol(self):
        self.skip_ws()
        if self.next_arg() != "":
            self.error("too many arguments")

    def strtok(self):
        i = self.pos
        t = self.text
        while i < self.end and t[i] in " \t":
            i += 1
        if i >= self.end:
            return None, i
        j = i
        while j < self.end and t[j] not in " \t":
            j += 1
        return t[i:j], j

    def parse_line(self):
        """uci_parse_line: the commands of one logical line as (kind, args)."""
        cmds = []
        self.skip_ws()
        while True:
            word, j = self.strtok()
            if word is None:
                return cmds
            c0 = word[0]
            rest = word[1:]
            if c0 == "#":
                self.comment = j - len(word)
                return cmds
            if c0 == "p" and (rest == "" or rest == "ackage"):
                kind = "package"
            elif c0 == "c" and (rest == "" or rest == "onfig"):
                kind = "config"
            elif c0 == "o" and (rest == "" or rest == "ption"):
                kind = "option"
            elif c0 == "l" and (rest == "" or rest == "ist"):
                kind = "list"
            else:
                self.pos = j - len(word)
                self.error("invalid command (%s)" % word.rstrip(_WS))
            if kind != "package" and kind != "config" and not self.in_section:
                self.error("option/list command found before the first section")
            if j + 1 > self.filled:
                self.pos = j
                self.error("%s without name" % ("option" if kind == "list" else kind))
            self.pos = j + 1
            if kind == "package":
                args = [self.arg(True, True, True)]
            elif kind == "config":
                typ = self.arg(True, False)
                if not _valid(typ, False):
                    self.error("invalid character in type field (%s)" % typ)
                args = [typ, self.arg(False, True)]
                self.in_section = True
            else:
                args = [self.arg(True, True), self.arg(False, False)]
            self.assert_eol()
            cmds.append((kind, args))


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


class Section:
    """A `config` section.  .name is None for an anonymous section."""

    def __init__(self, package, typ, name):
        self.package = package
        self._type = typ
        self._name = name
        self._opts = []  # [name, str or list] in libuci's order
        self._heads = []  # config statements that open this section
        self._stmts = []  # its option/list statements, in file order
        self._last = None  # its last statement in the file
        self._gen = 0

    def __repr__(self):
        return "<Section %s %s>" % (self._type, self._name or "(anonymous)")

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

    @property
    def options(self):
        return [(n, list(v) if isinstance(v, list) else v) for n, v in self._opts]

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


class Package:
    """The sections of one UCI file and the text they came from."""

    def __init__(self, name=None):
        self.name = name
        self._lines = []
        self._sections = []
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

    def find(self, typ):
        return [s for s in self._sections if s.type == typ]

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
        if not isinstance(typ, str) or not _valid(typ, False):
            raise _invalid("invalid section type %r" % (typ,))
        if name is not None:
            if not isinstance(name, str) or not _valid(name, True):
                raise _invalid("invalid section name %r" % (name,))
            if self.get(name) is not None:
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
        if not isinstance(opt, str) or not _valid(opt, True):
            raise _invalid("invalid option name %r" % (opt,))
        if value is None or value == "" or (isinstance(value, (list, tuple)) and not value):
            return self._unset(sec, opt)
        if isinstance(value, str):
            new = value
            items = [value]
        elif isinstance(value, (list, tuple)):
            new = list(value)
            items = new
        else:
            raise _invalid("option %s: a value is a str or a list of str, not %r" % (opt, value))
        for v in items:
            if not isinstance(v, str) or not _valid_text(v):
                raise _invalid("option %s: invalid value %r" % (opt, v))
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
                    _apply(cur._opts, k, st.args[0], st.args[1])
        self._sections = secs


def _apply(opts, kind, name, value):
    """One option/list command, with list.c's uci_set / uci_add_list semantics."""
    idx = None
    for i in range(len(opts)):
        if opts[i][0] == name:
            idx = i
            break
    if kind == "option":
        if value == "":
            return
        if idx is not None:
            old = opts[idx][1]
            if not isinstance(old, list) and old == value:
                return
            del opts[idx]
        opts.append([name, value])
        return
    if idx is None:
        opts.append([name, [value]])
        return
    old = opts[idx][1]
    if isinstance(old, list):
        old.append(value)
        return
    del opts[idx]
    opts.append([name, [old, value]])


def parse(text, package=None, filename=None):
    """The Package in `text`; UciError (code UCI_PARSE, .line) where libuci would refuse it."""
    where = filename or package or "uci"
    if not isinstance(text, str):
        raise UciError("not text", where=where)
    if "\x00" in text:
        lx = _Lexer(text, where)
        lx.filled = len(text)
        lx.error("NUL character in file", text.find("\x00"))
    pkg = Package(package)
    e = text.find("\n")
    if e > 0 and text[e - 1] == "\r":
        pkg._eol = "\r\n"
    lx = _Lexer(text, where)
    named = {}
    start = 0
    n = len(text)
    while start < n:
        lx.begin(start)
        cmds = lx.parse_line()
        line = _Line(text[start:lx.filled])
        if lx.comment is not None:
            line.comment = text[lx.comment:lx.filled].rstrip("\r\n")
        for kind, args in cmds:
            st = _Stmt(kind, args, line)
            if kind == "config":
                name = args[1] or None
                sec = named.get(name) if name else None
                if sec is None:
                    sec = Section(pkg, args[0], name)
                    if name:
                        named[name] = sec
                elif sec.type != args[0]:
                    lx.error("section of different type overwrites prior section with same name")
                st.section = sec
            elif kind == "package" and pkg.name is None:
                pkg.name = args[0]
            line.stmts.append(st)
        pkg._lines.append(line)
        start = lx.filled
    pkg._replay()
    return pkg


def batch_commands(script):
    """The commands `uci batch` reads from a script, each as its list of arguments.

    cli.c uci_batch_cmd: every command starts on a new line and its arguments are cut with next_arg,
    the file lexer, so it stops at the end of the line, at `;` (the rest of that line is lost) or at
    `#`; a quoted value that runs past the end of the line takes the following lines.  Lines without
    an argument (blank, comment) are skipped, as uci does.
    """
    lx = _Lexer(script, "uci batch")
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


def _batch_key(key):
    for c in key:
        if c not in _BATCH_KEY_SAFE:
            return _q(key)
    return key


def uci_batch_script(package_name, sections, replace=True, commit=True):
    """A `uci batch` script that creates the given sections in package `package_name`.

    A named section is first removed if it exists (replace=True) with `set pkg.name=''`: uci_set with an
    empty value deletes what exists and silently does nothing otherwise (list.c), where `delete` would
    print "Entry not found" on a router that never had the section.  With replace=False the section is
    updated in place and each list is cleared the same way before its items are added.  Anonymous
    sections are added with `add` and filled through `@type[-1]`.
    """
    if not isinstance(package_name, str) or not _valid(package_name, True, True):
        raise _invalid("invalid package name %r" % (package_name,))
    if isinstance(sections, Section):
        sections = [sections]
    out = []
    for sec in sections:
        if sec.name:
            ref = package_name + "." + sec.name
            if replace:
                out.append("set %s=''" % _batch_key(ref))
            out.append("set %s=%s" % (_batch_key(ref), _q(sec.type)))
        else:
            out.append("add %s %s" % (package_name, _batch_key(sec.type)))
            ref = "%s.@%s[-1]" % (package_name, sec.type)
        for opt, v in sec._opts:
            key = _batch_key(ref + "." + opt)
            if isinstance(v, list):
                if sec.name and not replace:
                    out.append("set %s=''" % key)
                for item in v:
                    out.append("add_list %s=%s" % (key, _q(item)))
            else:
                out.append("set %s=%s" % (key, _q(v)))
    if commit:
        out.append("commit " + package_name)
    return "\n".join(out) + "\n"


def batch(package_name, section, replace=True, commit=True):
    """The `uci batch` script for one section (see uci_batch_script)."""
    return uci_batch_script(package_name, [section], replace, commit)


def batch_heredoc(script):
    """A shell command that feeds `script` to `uci batch`; the quoted delimiter stops expansion."""
    lines = script.split("\n")
    tag = "EOF"
    i = 0
    while tag in lines:
        i += 1
        tag = "EOF%d" % i
    if not script.endswith("\n"):
        script += "\n"
    return "uci batch <<'%s'\n%s%s\n" % (tag, script, tag)


def new_section(typ, name=None, options=None):
    """A section outside any file, e.g. to print with batch(): options is a list of (name, value)."""
    sec = Package().add(typ, name)
    for opt, value in options or []:
        sec.set(opt, value)
    return sec


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
