"""Read OpenWrt UCI files as libuci reads them, and write `uci batch` scripts.

Runs on CPython and MicroPython.  `sixbroker router` (linuxrouter) reads /etc/sixbroker/router with parse();
the broker prints a router's configuration as a `uci batch` script (new_section, uci_batch_script,
batch_heredoc).  Nothing here writes a UCI file: the byte-preserving editor the tests use to build files
and to read printed scripts back is tests/uci_edit.py, on top of this reader.

The lexer follows libuci (openwrt/uci, file.c) step by step, because a file libuci reads differently
from us is a file we would silently misread:
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

`uci_batch_script()` writes what `uci batch` reads (openwrt/uci cli.c `uci_batch_cmd`, which splits a line
with the same `next_arg`), values quoted as libuci quotes them (file.c `uci_escape`).
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


def _checked(opt, value):
    """The value `uci set` stores for option `opt`: a str, a list of str, or None (the option goes)."""
    if not isinstance(opt, str) or not _valid(opt, True):
        raise _invalid("invalid option name %r" % (opt,))
    if value is None or value == "" or (isinstance(value, (list, tuple)) and not value):
        return None
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
    return new


def _check_section(typ, name):
    if not isinstance(typ, str) or not _valid(typ, False):
        raise _invalid("invalid section type %r" % (typ,))
    if name is not None and (not isinstance(name, str) or not _valid(name, True)):
        raise _invalid("invalid section name %r" % (name,))


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


class Section:
    """A `config` section.  .name is None for an anonymous section; .options [(name, str or list)]."""

    def __init__(self, typ, name):
        self._type = typ
        self._name = name
        self._opts = []  # [name, str or list] in libuci's order

    def __repr__(self):
        return "<Section %s %s>" % (self._type, self._name or "(anonymous)")

    @property
    def name(self):
        return self._name

    @property
    def type(self):
        return self._type

    @property
    def options(self):
        return [(n, list(v) if isinstance(v, list) else v) for n, v in self._opts]


class Package:
    """The sections of one UCI file, in libuci's order."""

    def __init__(self, name=None):
        self.name = name
        self._sections = []

    def find(self, typ):
        return [s for s in self._sections if s.type == typ]


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


def _lines(text, where):
    """Each logical line of `text` as (start, end, where its comment starts or None, [(kind, args)]).

    UciError (code UCI_PARSE, .line) where libuci would refuse the text.
    """
    if not isinstance(text, str):
        raise UciError("not text", where=where)
    if "\x00" in text:
        lx = _Lexer(text, where)
        lx.filled = len(text)
        lx.error("NUL character in file", text.find("\x00"))
    lx = _Lexer(text, where)
    types = {}
    start = 0
    n = len(text)
    while start < n:
        lx.begin(start)
        cmds = lx.parse_line()
        for kind, args in cmds:
            if kind == "config" and args[1]:
                typ = types.get(args[1])
                if typ is None:
                    types[args[1]] = args[0]
                elif typ != args[0]:
                    lx.error("section of different type overwrites prior section with same name")
        yield start, lx.filled, lx.comment, cmds
        start = lx.filled


def parse(text, package=None, filename=None):
    """The Package in `text`; UciError (code UCI_PARSE, .line) where libuci would refuse it."""
    pkg = Package(package)
    named = {}
    cur = None
    for _start, _end, _comment, cmds in _lines(text, filename or package or "uci"):
        for kind, args in cmds:
            if kind == "config":
                name = args[1] or None
                cur = named.get(name) if name else None
                if cur is None:
                    cur = Section(args[0], name)
                    pkg._sections.append(cur)
                    if name:
                        named[name] = cur
            elif kind == "package":
                if pkg.name is None:
                    pkg.name = args[0]
            else:
                _apply(cur._opts, kind, args[0], args[1])
    return pkg


def new_section(typ, name=None, options=None):
    """A section outside any file, to print with uci_batch_script(): options is a list of (name, value),
    each set as `uci set` sets it ('' , [] or None removes)."""
    _check_section(typ, name)
    sec = Section(typ, name)
    opts = sec._opts
    for opt, value in options or []:
        new = _checked(opt, value)
        for i in range(len(opts)):
            if opts[i][0] == opt:
                if new is None:
                    del opts[i]
                else:
                    opts[i][1] = new
                break
        else:
            if new is not None:
                opts.append([opt, new])
    return sec


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
