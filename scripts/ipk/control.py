"""The control archive's members: the version, the control fields in OpenWrt's order, conffiles and
the maintainer scripts in package-pack.mk's wrappers; and the build's date (SOURCE_DATE_EPOCH)."""

import os
import re
import subprocess

from ipk import MPY_ADDONS, PackError, packaging_path, read_optional, read_text

# Without a SOURCE_DATE_EPOCH and outside git there is no date that two checkouts agree on; 0 is the
# one that cannot be mistaken for a real one.
FALLBACK_EPOCH = 0

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


def control_text(repo, pkg, version, epoch, installed_size):
    template = read_text(packaging_path(repo, pkg, ".control"), "CONTROL_MISSING")
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
    description = read_text(packaging_path(repo, pkg, ".description"), "DESCRIPTION_MISSING")
    if description.endswith("\n"):
        description = description[:-1]
    if not description.strip():
        raise PackError("DESCRIPTION_MISSING", "packaging/%s.description is empty" % pkg)
    # package-pack.mk: printf "Description: "; echo "$DESCRIPTION" | sed -e 's,^[[:space:]]*, ,g'
    body = "".join(" " + line.lstrip(" \t\r\f\v") + "\n" for line in description.split("\n"))
    return "".join(lines) + "Description: " + body


def conffiles_text(repo, pkg, files):
    """ipkg-build keeps the listed conffiles that the package really installs, sorted (LC_ALL=C)."""
    listed = read_optional(packaging_path(repo, pkg, ".conffiles"))
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
        script = read_optional(packaging_path(repo, pkg, suffix))
        if script is None:
            continue
        if not script.startswith("#!/bin/sh\n"):
            raise PackError("SCRIPT_SYNTAX", "packaging/%s%s must start with #!/bin/sh" % (pkg, suffix))
        members[member] = (0o755, script.encode("utf-8"))
    return members
