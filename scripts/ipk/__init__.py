"""scripts/mkipk.py's parts, standard library only (it runs on any OpenWrt build host): the packages'
layout and the errors every part raises; manifest (the files and their stripped Python), mpy (the
MicroPython add-on), archive (tar and gzip), control (version, control fields, maintainer scripts)."""

import os

PACKAGES = ("sixbroker", "sixbroker-micropython", "luci-app-sixbroker")
# The router packages' budget: they share a few MB of flash with everything else on the router.  sixbroker
# held 40 KB up to the house (issue 13: 38.1 KB); the updater and the one-paste join (issue 14) add ~5 KB
# of what the router runs, so its budget is 44 KB.
SIZE_LIMITS = {"sixbroker": 44 * 1024, "sixbroker-micropython": 40 * 1024}

# Add-on -> (the package whose modules it compiles, the modules whose imports it follows).  Only these
# two run on every ifup and every interface event; run.py's MPY_COMMANDS names the same ones.
MPY_ADDONS = {"sixbroker-micropython": ("sixbroker", ("openwrt/netifd", "openwrt/hotplug"))}
MODULE_DIR = "usr/lib/sixbroker/sixbroker/"
MPY_DIR = "usr/lib/sixbroker/mpy/sixbroker/"


class PackError(Exception):
    """A build input is wrong.  `code` is stable (tests and scripts match on it), the text says where."""

    def __init__(self, code, message):
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self):
        return "%s: %s" % (self.code, self.message)


def packaging_path(repo, pkg, suffix):
    return os.path.join(repo, "packaging", pkg + suffix)


def read_text(path, code):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise PackError(code, "cannot read %s: %s" % (os.path.relpath(path), e.strerror))


def read_optional(path):
    if not os.path.exists(path):
        return None
    return read_text(path, "PACKAGING_UNREADABLE")
