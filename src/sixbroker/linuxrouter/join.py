"""`sixbroker router join LINE`: the join line's tunnel written into /etc/sixbroker/router, and brought up.

The section holds core/tunnelconf's options (the same the broker prints and OpenWrt's `sixbroker join`
writes) as a `config tunnel 'NAME'` section, with `--lan DEV` (repeatable) and the certificate beside the
file as NAME.pem.  A new tunnel is appended to the file as it is; one of the same name is replaced, and
then the file is written again from what libuci reads of it (its comments go).  Everything is checked
(the line, the section as `up` will read it) before anything is written: a refusal writes nothing.
"""

import os
import sys

from sixbroker.core import joinline, options, tunnelconf, uci
from sixbroker.core.errors import SixbrokerError
from sixbroker.linuxrouter import router

PROG = "sixbroker router join"
USAGE = ("usage: sixbroker router join LINE [--interface NAME] [--lan DEV]... [--config PATH] [--netns NAME]"
         " [--no-up]   (no LINE: read from stdin)")


def section_text(name, opts):
    out = ["config tunnel " + tunnelconf.quote(name)]
    for opt, value in opts:
        for v in (value if isinstance(value, list) else [value]):
            out.append("\t%s %s %s" % ("list" if isinstance(value, list) else "option", opt, tunnelconf.quote(v)))
    return "\n".join(out) + "\n"


def new_text(old, name, opts):
    """The configuration file's text with tunnel `name` set to opts."""
    pkg = uci.parse(old or "", filename="router")
    if not [s for s in pkg.find("tunnel") if s.name == name]:
        return (old.rstrip("\n") + "\n\n" if old and old.strip() else "") + section_text(name, opts)
    parts = []
    for s in pkg._sections:
        if s.name == name:
            parts.append(section_text(name, opts))
        else:
            parts.append(("config %s %s" % (s.type, tunnelconf.quote(s.name)) if s.name else "config " + s.type)
                         + "\n" + section_text("x", s.options).split("\n", 1)[1])
    return "\n".join(parts)


def join(words, name=None, lan=(), config=router.DEFAULT_CONFIG):
    """Write the tunnel and its certificate; (name, config path).  SixbrokerError when refused."""
    fields = joinline.decode(" ".join(words))
    name = name or fields["name"]
    if len(name) > 32 or not options._is_name(name, "_"):
        raise SixbrokerError("INVALID_NAME", name)
    cert_path = os.path.join(os.path.dirname(os.path.abspath(config)), name + ".pem")
    opts = tunnelconf.options(fields, cert_path if fields.get("cert") else None)
    opts = [(k, v) for k, v in opts if k != "proto"]
    if lan:
        opts.append(("lan", list(lan)))
    try:
        with open(config) as f:
            old = f.read()
    except FileNotFoundError:
        old = ""
    except OSError as e:
        raise SixbrokerError("CONFIG_NOT_FOUND", "%s: %s" % (config, e.strerror))
    try:
        text = new_text(old, name, opts)
    except uci.UciError as e:
        raise SixbrokerError(e.code, str(e))
    # read back as `up` reads it: what is written is known to be taken
    check = uci.parse(text, filename=config)
    [sec] = [s for s in check.find("tunnel") if s.name == name]
    try:
        options.validate(dict(sec.options), strict=True, extra=("lan",))
    except SixbrokerError as e:
        raise SixbrokerError("JOIN_INVALID", str(e))
    os.makedirs(os.path.dirname(os.path.abspath(config)), exist_ok=True)
    if fields.get("cert"):
        _write(cert_path, tunnelconf.pem(fields["cert"]), 0o644)
    # the key is in the file: root's alone
    _write(config, text, 0o600)
    return name, config


def _write(path, text, mode):
    tmp = path + ".new"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        raise SixbrokerError("JOIN_CERT_WRITE" if path.endswith(".pem") else "CONFIG_NOT_FOUND",
                             "%s: %s" % (path, e.strerror))


def main(argv):
    words, lan, args = [], [], {"interface": None, "config": router.DEFAULT_CONFIG, "netns": None}
    up = True
    argv = list(argv)
    while argv:
        a = argv.pop(0)
        if a in ("--interface", "--config", "--netns", "--lan"):
            if not argv:
                sys.stderr.write("%s: %s needs a value; %s\n" % (PROG, a, USAGE))
                return 2
            v = argv.pop(0)
            if a == "--lan":
                lan.append(v)
            else:
                args[a[2:]] = v
        elif a == "--no-up":
            up = False
        elif a in ("-h", "--help"):
            sys.stdout.write(USAGE + "\n")
            return 0
        elif a.startswith("--"):
            sys.stderr.write("%s: unknown argument '%s'; %s\n" % (PROG, a, USAGE))
            return 2
        else:
            words.append(a)
    if not words:
        words = [sys.stdin.read()]
    try:
        name, config = join(words, args["interface"], lan, args["config"])
    except SixbrokerError as e:
        sys.stderr.write("%s: %s: %s\n" % (PROG, e.code, e))
        return 1
    sys.stdout.write("%s: tunnel '%s' written to %s\n" % (PROG, name, config))
    if not up:
        return 0
    rest = ["up", "--config", config] + (["--netns", args["netns"]] if args["netns"] else [])
    return router.main(rest)
