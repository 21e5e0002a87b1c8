#!/usr/bin/env python3
"""A real Linux kernel with sit, one command away.

The host's kernel has no sit (nor fou, gre, dummy, wireguard); Debian's kernel under QEMU has them all.
This boots that kernel with the host's / as the guest's root (9p, read-only, under a tmpfs overlay whose
writes are thrown away), so the guest runs the host's iproute2, nft and .venv, in the caller's directory:

    python3 tests/guest.py fetch [--refresh]       # kernel, modules, initramfs into .cache/guest/
    python3 tests/guest.py run [--timeout S] [--mem 1G] [--env NAME=VALUE] [--times] -- CMD ARGS...

`run` streams the command's output (stdout and stderr, both on the guest's console) and exits with its
status; 125 and a "guest: ..." line on stderr when there is no status to give (boot failure, kernel
panic, timeout).  From Python: `guest.ensure()`, `guest.run(argv, timeout=..., env=...)` ->
(returncode, output), and `guest.run_many([argv, ...])` for several commands in one boot; failures to
get a status raise GuestError.

A boot costs several seconds and user-space CPU is 10-20x slower under TCG, so run a whole session per
boot (`.venv/bin/python -m pytest tests/e2e`), not one boot per check.  The guest's /tmp and /run are
its own, fresh tmpfs: what a command needs from the host must be elsewhere (the repo, .cache/).  Inside,
SIXBROKER_GUEST=1, and files written to $SIXBROKER_GUEST_RESULTS come back with run(results=DIR).

Stdlib only: it runs before the venv exists as well as from it.  Recipe and measurements:
shared/qemu.md.  The guest's PID 1 is tests/guest_init.sh.
"""

# The one pin: the kernel is whatever Debian's `linux-image-amd64` depends on when the cache is filled.
# Debian's archive keeps only the current linux-image-6.1.0-NN-amd64, so naming NN here would break the
# day the mirrors move on.  fetch resolves the meta package once (apt-cache depends), keeps that kernel
# in the cache and records its package and version there (manifest.json); every later run uses it until
# `fetch --refresh` or `make clean`.  Not the -cloud- flavour: it has no 9p.
KERNEL_META_PACKAGE = "linux-image-amd64"

import argparse
import hashlib
import json
import lzma
import os
import re
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(REPO, ".cache", "guest")
INIT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guest_init.sh")

# Bumped when the cache layout or the way it is built changes, so an old cache is rebuilt.
CACHE_FORMAT = 2

# Loaded by the initramfs (dependencies are added and ordered from modules.dep): enough for virtio-pci,
# the two 9p shares and the overlay root.
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")

# The module tree the guest gets: what network tests can ask for (tunnels, veth, bridges, netfilter,
# qdiscs, wireguard, ...), the crypto that xfrm and wireguard request by name at run time, and the boot
# modules.  Anything these need is kept too (closure over modules.dep).  Hardware drivers, wireless,
# sound, GPUs and storage are dropped: 400 MB unpacked becomes ~40 MB.
KEEP_MODULES = (
    "kernel/net/",
    "kernel/drivers/net/*.ko",
    "kernel/drivers/net/bonding/",
    "kernel/drivers/net/ipvlan/",
    "kernel/drivers/net/ppp/",
    "kernel/drivers/net/team/",
    "kernel/drivers/net/vxlan/",
    "kernel/drivers/net/wireguard/",
    "kernel/drivers/virtio/",
    "kernel/fs/9p/",
    "kernel/fs/overlayfs/",
    "kernel/crypto/",
    "kernel/arch/x86/crypto/",
    "kernel/lib/",
)
DROP_MODULES = (
    # Transports for hardware and other hypervisors: they would drag in InfiniBand, Hyper-V, VMware
    # and Thunderbolt bus drivers.
    "kernel/drivers/net/mhi_net.ko",
    "kernel/drivers/net/sb1000.ko",
    "kernel/drivers/net/thunderbolt-net.ko",
    "kernel/drivers/net/xen-netfront.ko",
    "kernel/net/9p/9pnet_rdma.ko",
    "kernel/net/9p/9pnet_xen.ko",
    "kernel/net/smc/",
    "kernel/net/vmw_vsock/hv_sock.ko",
    "kernel/net/vmw_vsock/vmw_vsock_vmci_transport.ko",
    "kernel/net/atm/",
    "kernel/net/bluetooth/",
    "kernel/net/can/",
    "kernel/net/ceph/",
    "kernel/net/ieee802154/",
    "kernel/net/mac80211/",
    "kernel/net/mac802154/",
    "kernel/net/nfc/",
    "kernel/net/rds/",
    "kernel/net/rxrpc/",
    "kernel/net/sunrpc/",
    "kernel/net/wireless/",
)

XZ_MAGIC = b"\xfd7zXZ\x00"
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Host directories the guest does not see as they are (fresh tmpfs or its own kernel's view).
HIDDEN_IN_GUEST = ("/run", "/proc", "/sys", "/dev")
# /tmp is the guest's own tmpfs too, but a working directory under it is laid over from the host's copy
# (guest_init.sh show_host_dir): CI may clone there.
SHARE_IN_GUEST = "/run/guest"
HOST_ROOT_IN_GUEST = "/run/guest-init/host"  # the overlay's lower layer, read-only
DEFAULT_TIMEOUT = 600
DEFAULT_MEM = "1G"
HOST_TOOLS = ("qemu-system-x86_64", "busybox", "cpio", "depmod", "apt-get", "apt-cache", "dpkg")


class GuestError(Exception):
    """The harness could not give a command's exit status: no kernel, boot failure, panic, timeout."""

    def __init__(self, message, output=""):
        Exception.__init__(self, message)
        self.output = output


class Result(tuple):
    """(returncode, output), with how long the boot and the whole run took, in seconds."""

    def __new__(cls, returncode, output, boot_seconds=None, run_seconds=None):
        self = tuple.__new__(cls, (returncode, output))
        self.boot_seconds = boot_seconds
        self.run_seconds = run_seconds
        return self

    @property
    def returncode(self):
        return self[0]

    @property
    def output(self):
        return self[1]


def _say(message):
    print("guest: " + message, file=sys.stderr, flush=True)


def _check_call(argv, **kwargs):
    try:
        return subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
    except FileNotFoundError:
        raise GuestError("%s is not installed (scripts/bootstrap installs it)" % argv[0])
    except subprocess.CalledProcessError as e:
        detail = (e.stderr or b"").decode(errors="replace").strip()
        raise GuestError("%s failed (exit %d): %s" % (" ".join(argv), e.returncode, detail))


def _check_host_tools():
    missing = [t for t in HOST_TOOLS if shutil.which(t) is None]
    if missing:
        raise GuestError("missing host programs %s: run scripts/bootstrap (apt-get install)" % ", ".join(missing))


# ---------------------------------------------------------------------------------------------- fetch


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _initramfs_fingerprint():
    # The init script and the code that packs it: an edit to either rebuilds the initramfs (~1 s).
    return _sha256(INIT_SCRIPT) + _sha256(os.path.abspath(__file__))


def _manifest_path():
    return os.path.join(CACHE, "manifest.json")


def _read_manifest():
    try:
        with open(_manifest_path()) as f:
            m = json.load(f)
    except (OSError, ValueError):
        return None
    if m.get("format") != CACHE_FORMAT:
        return None
    for key in ("vmlinux", "initramfs", "moddir"):
        if not os.path.exists(os.path.join(CACHE, m.get(key, "\0"))):
            return None
    return m


def _write_manifest(m):
    tmp = _manifest_path() + ".tmp"
    with open(tmp, "w") as f:
        json.dump(m, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, _manifest_path())


def resolve_kernel_package():
    """The linux-image-6.1.0-NN-amd64 that the meta package depends on now (apt-get update if needed)."""
    for attempt in (1, 2):
        out = _check_call(["apt-cache", "depends", KERNEL_META_PACKAGE]).stdout.decode()
        names = re.findall(r"^\s*Depends:\s*(linux-image-\S+)\s*$", out, re.M)
        names = [n for n in names if "-cloud-" not in n and not n.startswith("linux-image-amd64")]
        if names:
            return names[0]
        if attempt == 1:
            _say("apt lists do not know %s: apt-get update" % KERNEL_META_PACKAGE)
            _check_call(["apt-get", "update", "-qq"])
    raise GuestError("apt-cache depends %s names no linux-image package" % KERNEL_META_PACKAGE)


def _extract_vmlinux(bzimage, out_path):
    # Debian's bzImage carries the ELF vmlinux as one xz stream; QEMU boots the ELF through PVH, which
    # skips the BIOS and the guest's own (slow under TCG) decompression.
    with open(bzimage, "rb") as f:
        data = f.read()
    start = data.find(XZ_MAGIC)
    if start < 0:
        raise GuestError("%s has no xz stream: not a Debian x86 kernel?" % bzimage)
    try:
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
    except lzma.LZMAError as e:
        raise GuestError("cannot decompress the kernel in %s: %s" % (bzimage, e))
    if elf[:4] != b"\x7fELF":
        raise GuestError("the xz stream in %s is not an ELF kernel" % bzimage)
    with open(out_path, "wb") as f:
        f.write(elf)


def _read_modules_dep(moddir):
    deps = {}
    with open(os.path.join(moddir, "modules.dep")) as f:
        for line in f:
            name, _, rest = line.partition(":")
            deps[name.strip()] = rest.split()
    return deps


def _module_name(path):
    base = os.path.basename(path)
    return base[: base.index(".ko")].replace("-", "_")


def _wanted(path):
    if any(path.startswith(p) for p in DROP_MODULES):
        return False
    for pattern in KEEP_MODULES:
        if pattern.endswith("*.ko"):
            head = pattern[:-4]
            if path.startswith(head) and "/" not in path[len(head):]:
                return True
        elif path.startswith(pattern):
            return True
    return False


def _prune_modules(base, kver):
    """Delete the modules no network test needs; keep everything the kept ones depend on."""
    moddir = os.path.join(base, "lib", "modules", kver)
    # The .deb ships no modules.dep.
    _check_call(["depmod", "-b", base, kver])
    deps = _read_modules_dep(moddir)
    keep = set()
    todo = [m for m in deps if _wanted(m)]
    by_name = {_module_name(m): m for m in deps}
    todo += [by_name[n] for n in BOOT_MODULES if n in by_name]
    while todo:
        m = todo.pop()
        if m not in keep:
            keep.add(m)
            todo.extend(deps[m])
    for m in deps:
        if m not in keep:
            os.unlink(os.path.join(moddir, m))
    for root, dirs, files in os.walk(os.path.join(moddir, "kernel"), topdown=False):
        if not os.listdir(root):
            os.rmdir(root)
    _check_call(["depmod", "-b", base, kver])
    return moddir


def _boot_module_files(moddir):
    """The initramfs's modules, dependencies first; built-in ones need no file."""
    deps = _read_modules_dep(moddir)
    by_name = {_module_name(m): m for m in deps}
    with open(os.path.join(moddir, "modules.builtin")) as f:
        builtin = {_module_name(line.strip()) for line in f if line.strip()}
    order = []

    def visit(m):
        if m in order:
            return
        for d in deps[m]:
            visit(d)
        order.append(m)

    for name in BOOT_MODULES:
        if name in by_name:
            visit(by_name[name])
        elif name not in builtin:
            raise GuestError("kernel module %s is neither a module nor built in" % name)
    for m in order:
        if not m.endswith(".ko"):
            raise GuestError("compressed module %s: busybox insmod loads plain .ko only" % m)
    return [os.path.join(moddir, m) for m in order]


def _is_static_elf(path):
    # A dynamically linked ELF has a PT_INTERP program header; the initramfs has no loader for one.
    import struct

    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


def _build_initramfs(moddir, out_path):
    busybox = shutil.which("busybox")
    if busybox is None or not _is_static_elf(os.path.realpath(busybox)):
        raise GuestError("no static busybox on the host: apt-get install busybox-static")
    stage = tempfile.mkdtemp(prefix="initramfs-", dir=CACHE)
    try:
        os.makedirs(os.path.join(stage, "bin"))
        os.makedirs(os.path.join(stage, "lib", "boot-modules"))
        shutil.copy(busybox, os.path.join(stage, "bin", "busybox"))
        # The kernel runs /init through its #! line.
        os.symlink("busybox", os.path.join(stage, "bin", "sh"))
        shutil.copy(INIT_SCRIPT, os.path.join(stage, "init"))
        os.chmod(os.path.join(stage, "init"), 0o755)
        for i, path in enumerate(_boot_module_files(moddir)):
            shutil.copy(path, os.path.join(stage, "lib", "boot-modules", "%02d-%s" % (i, os.path.basename(path))))
        names = []
        for root, dirs, files in os.walk(stage):
            for name in dirs + files:
                names.append(os.path.relpath(os.path.join(root, name), stage))
        listing = "".join(n + "\n" for n in sorted(names)).encode()
        tmp = out_path + ".tmp"
        with open(tmp, "wb") as out:
            try:
                subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0", "--reproducible"],
                               input=listing, stdout=out, stderr=subprocess.PIPE, cwd=stage, check=True)
            except subprocess.CalledProcessError as e:
                raise GuestError("cpio failed: %s" % e.stderr.decode(errors="replace").strip())
        os.replace(tmp, out_path)
    finally:
        shutil.rmtree(stage)


def _lock():
    import fcntl

    os.makedirs(CACHE, exist_ok=True)
    fd = os.open(os.path.join(CACHE, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def fetch(refresh=False):
    """Fill the cache (kernel, pruned modules, initramfs); quick and offline when it is already there.

    The initramfs is rebuilt alone when guest_init.sh changed.  Returns the manifest.
    """
    _check_host_tools()
    fd = _lock()
    try:
        m = None if refresh else _read_manifest()
        if m is None:
            m = _fetch_kernel()
        init_hash = _initramfs_fingerprint()
        if m.get("initramfs_fingerprint") != init_hash or not os.path.exists(os.path.join(CACHE, m["initramfs"])):
            _build_initramfs(os.path.join(CACHE, m["moddir"]), os.path.join(CACHE, m["initramfs"]))
            m["initramfs_fingerprint"] = init_hash
            _write_manifest(m)
        return m
    finally:
        os.close(fd)


def _download(work):
    package = resolve_kernel_package()
    _say("downloading %s (apt-get download, not installed)" % package)
    try:
        _check_call(["apt-get", "download", "-q", package], cwd=work)
    except GuestError as e:
        # Old apt lists name a kernel the mirrors no longer have: update and resolve again.
        _say("%s; apt-get update and try again" % e)
        _check_call(["apt-get", "update", "-qq"])
        package = resolve_kernel_package()
        _check_call(["apt-get", "download", "-q", package], cwd=work)
    return package


def _fetch_kernel():
    work = tempfile.mkdtemp(prefix="fetch-", dir=CACHE)
    try:
        package = _download(work)
        debs = [n for n in os.listdir(work) if n.endswith(".deb")]
        if len(debs) != 1:
            raise GuestError("apt-get download %s left %r" % (package, debs))
        deb = os.path.join(work, debs[0])
        version = _check_call(["dpkg-deb", "-f", deb, "Version"]).stdout.decode().strip()
        unpacked = os.path.join(work, "root")
        _check_call(["dpkg", "-x", deb, unpacked])
        os.unlink(deb)
        kvers = os.listdir(os.path.join(unpacked, "lib", "modules"))
        if len(kvers) != 1:
            raise GuestError("%s holds module trees %r, expected one" % (package, kvers))
        kver = kvers[0]
        _say("pruning modules of %s %s" % (kver, version))
        _prune_modules(unpacked, kver)
        _extract_vmlinux(os.path.join(unpacked, "boot", "vmlinuz-" + kver), os.path.join(work, "vmlinux"))
        shutil.copy(os.path.join(unpacked, "boot", "config-" + kver), os.path.join(work, "config"))
        shutil.rmtree(os.path.join(unpacked, "boot"))
        shutil.rmtree(os.path.join(unpacked, "usr"), ignore_errors=True)
        # Swap the new kernel in whole: a half-built cache must never look complete.
        for name in ("vmlinux", "config", "modules", "initramfs.cpio", "manifest.json"):
            path = os.path.join(CACHE, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.unlink(path)
        os.replace(os.path.join(work, "vmlinux"), os.path.join(CACHE, "vmlinux"))
        os.replace(os.path.join(work, "config"), os.path.join(CACHE, "config"))
        os.replace(unpacked, os.path.join(CACHE, "modules"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    m = {
        "format": CACHE_FORMAT,
        "meta_package": KERNEL_META_PACKAGE,
        "package": package,
        "version": version,
        "kernel_release": kver,
        "vmlinux": "vmlinux",
        "initramfs": "initramfs.cpio",
        "moddir": os.path.join("modules", "lib", "modules", kver),
        "config": "config",
        "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_manifest(m)
    return m


def ensure():
    """The cache's manifest, fetching first if the cache is empty or stale."""
    m = _read_manifest()
    if m is not None and m.get("initramfs_fingerprint") == _initramfs_fingerprint():
        return m
    return fetch()


# ------------------------------------------------------------------------------------------------ run


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _guest_env(env):
    merged = {
        "PATH": GUEST_PATH,
        "HOME": "/root",
        "LANG": "C.UTF-8",
        # pytest and friends colour their output for a terminal; the console is one, the log is not.
        "TERM": "dumb",
        "SIXBROKER_GUEST": "1",
        "SIXBROKER_GUEST_RESULTS": SHARE_IN_GUEST + "/results",
    }
    merged.update(env or {})
    for name, value in merged.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise GuestError("bad environment variable name %r" % name)
    return merged


def _items(values):
    # guest_init.sh's format: each value as its number of lines, then the lines.
    out = []
    for v in values:
        if not isinstance(v, str):
            raise GuestError("arguments and environment values must be strings, not %r" % (v,))
        if "\0" in v:
            raise GuestError("%r holds a NUL byte" % v)
        lines = v.split("\n")
        out.append("%d\n%s\n" % (len(lines), "\n".join(lines)))
    return "".join(out)


def _line(path, value):
    if "\n" in value:
        raise GuestError("%r holds a newline" % value)
    _write(path, value + "\n")


def _prepare_share(share, commands, env, cwd, token, moddir):
    _line(os.path.join(share, "moddir"), moddir)
    _line(os.path.join(share, "cwd"), cwd)
    _line(os.path.join(share, "token"), token)
    _write(os.path.join(share, "env"), _items("%s=%s" % kv for kv in sorted(_guest_env(env).items())))
    for n, argv in enumerate(commands):
        if not argv:
            raise GuestError("empty command")
        _write(os.path.join(share, "cmd", str(n), "argv"), _items(argv))
    os.makedirs(os.path.join(share, "results"))


def qemu_argv(manifest, share, mem=DEFAULT_MEM, smp=2):
    return [
        "qemu-system-x86_64",
        "-machine", "q35",
        # KVM on these machines cannot run a stock kernel (it hangs silently): TCG only.
        "-accel", "tcg",
        # max gives RDRAND, so the kernel's RNG is ready at once (CONFIG_RANDOM_TRUST_CPU).
        "-cpu", os.environ.get("GUEST_CPU", "max"),
        "-smp", str(smp),
        "-m", mem,
        "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
        "-kernel", os.path.join(CACHE, manifest["vmlinux"]),
        "-initrd", os.path.join(CACHE, manifest["initramfs"]),
        "-append", "console=ttyS0 quiet loglevel=1 panic=-1 8250.nr_uarts=1",
        "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
        "-fsdev", "local,id=run,path=%s,security_model=none" % share,
        "-device", "virtio-9p-pci,fsdev=run,mount_tag=run",
    ]


def _die_with_parent():
    # QEMU must not outlive the harness (killed by a signal, say): nothing would watch its clock.
    # PR_SET_PDEATHSIG fires when the thread that started QEMU ends: call run() from a thread that
    # waits for it, as run() itself does.
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


class _Splitter:
    """Cuts the console stream at the guest's marker lines into each command's output, live."""

    def __init__(self, token, ncommands, echo, echo_console=False):
        self.sep = b"\n" + token.encode() + b":"
        self.outputs = [bytearray() for _ in range(ncommands)]
        self.console = bytearray()  # everything outside the commands: kernel messages, panics
        self.current = None
        self.started = []
        self.buf = b""
        self.echo = echo
        self.echo_console = echo_console

    def _emit(self, data):
        if not data:
            return
        if self.current is None:
            self.console += data
            if self.echo_console:
                sys.stderr.buffer.write(data)
                sys.stderr.buffer.flush()
        else:
            self.outputs[self.current] += data
            if self.echo:
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()

    def feed(self, data):
        self.buf += data
        while True:
            at = self.buf.find(self.sep)
            if at < 0:
                # Hold back only a tail that may be the start of a marker.
                keep = 0
                for k in range(min(len(self.sep) - 1, len(self.buf)), 0, -1):
                    if self.buf.endswith(self.sep[:k]):
                        keep = k
                        break
                self._emit(self.buf[: len(self.buf) - keep])
                self.buf = self.buf[len(self.buf) - keep :]
                return
            end = self.buf.find(b"\n", at + len(self.sep))
            if end < 0:
                self._emit(self.buf[:at])
                self.buf = self.buf[at:]
                return
            self._emit(self.buf[:at])
            marker = self.buf[at + len(self.sep) : end].decode(errors="replace")
            self.buf = self.buf[end + 1 :]
            n, _, what = marker.partition(":")
            if what == "start" and n.isdigit() and int(n) < len(self.outputs):
                self.current = int(n)
                self.started.append(time.monotonic())
            else:
                self.current = None

    def close(self):
        self._emit(self.buf)
        self.buf = b""


def _tail(data, lines=40):
    text = bytes(data).decode(errors="replace").replace("\r\n", "\n")
    return "\n".join(text.rstrip("\n").split("\n")[-lines:])


def run_many(commands, timeout=DEFAULT_TIMEOUT, env=None, cwd=None, mem=DEFAULT_MEM, echo=False,
             results=None, console=False):
    """Run several commands one after the other in ONE boot; a list of Result (returncode, output).

    Each command runs whatever the previous one's status.  `env` adds to (or overrides) the guest's
    environment, `cwd` defaults to the caller's.  `echo` copies the commands' output to stdout as it
    comes, `console` copies the rest of the console (kernel and init messages) to stderr.  Files the commands write to $SIXBROKER_GUEST_RESULTS are copied to the host directory
    `results` if given.  Raises GuestError when there is no exit status to give: no kernel, a failed
    boot, a panic, the timeout.
    """
    if not commands or any(isinstance(c, str) for c in commands):
        raise GuestError("commands must be a non-empty list of argument lists")
    commands = [list(c) for c in commands]
    cwd = os.path.abspath(cwd or os.getcwd())
    for hidden in HIDDEN_IN_GUEST:
        if cwd == hidden or cwd.startswith(hidden + "/"):
            raise GuestError("cannot run in %s: %s is the guest's own, not the host's" % (cwd, hidden))
    manifest = ensure()
    token = secrets.token_hex(12)
    share = tempfile.mkdtemp(prefix="sixbroker-guest-")
    proc = None
    try:
        _prepare_share(share, commands, env, cwd, token, os.path.join(CACHE, manifest["moddir"]))
        splitter = _Splitter(token, len(commands), echo, console)
        stderr = bytearray()
        started = time.monotonic()
        deadline = started + timeout
        try:
            proc = subprocess.Popen(qemu_argv(manifest, share, mem), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    preexec_fn=_die_with_parent)
        except FileNotFoundError:
            raise GuestError("qemu-system-x86_64 is not installed (scripts/bootstrap installs it)")
        timed_out = False
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ, splitter.feed)
            sel.register(proc.stderr, selectors.EVENT_READ, stderr.extend)
            while sel.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                for key, _ in sel.select(left):
                    data = os.read(key.fd, 65536)
                    if data:
                        key.data(data)
                    else:
                        sel.unregister(key.fileobj)
        if timed_out:
            proc.kill()
        qemu_status = proc.wait()
        splitter.close()
        ended = time.monotonic()
        boot_seconds = splitter.started[0] - started if splitter.started else None

        out = []
        for n in range(len(commands)):
            cmd_dir = os.path.join(share, "cmd", str(n))
            try:
                with open(os.path.join(cmd_dir, "status")) as f:
                    status = int(f.read().strip())
            except (OSError, ValueError):
                status = None
            if status is None:
                problem = _why_no_status(cmd_dir, commands[n], timed_out, timeout, qemu_status,
                                         splitter.console + splitter.outputs[n], stderr)
                raise GuestError(problem, bytes(splitter.outputs[n]).decode(errors="replace"))
            out.append(Result(status, bytes(splitter.outputs[n]).decode(errors="replace"),
                              boot_seconds, ended - started))
        if results:
            shutil.copytree(os.path.join(share, "results"), results, dirs_exist_ok=True)
        return out
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(share, ignore_errors=True)


def _why_no_status(cmd_dir, argv, timed_out, timeout, qemu_status, console, stderr):
    what = "%r gave no exit status: " % (argv,)
    console = bytes(console).decode(errors="replace").replace("\r\n", "\n")
    if timed_out:
        return what + "timed out after %g s (QEMU killed)" % timeout
    try:
        with open(os.path.join(cmd_dir, "error")) as f:
            return what + f.read().strip()
    except OSError:
        pass
    lines = console.split("\n")
    for i, line in enumerate(lines):
        if "Kernel panic" in line:
            return what + "kernel panic:\n" + "\n".join(lines[max(0, i - 3) : i + 1])
    detail = _tail(stderr) or _tail(console.encode()) or "(no console output)"
    return what + "QEMU exited with status %d before the command finished:\n%s" % (qemu_status, detail)


def run(argv, timeout=DEFAULT_TIMEOUT, env=None, cwd=None, mem=DEFAULT_MEM, echo=False, results=None,
        console=False):
    """Boot, run one command (an argument list), power off: Result (returncode, output)."""
    if isinstance(argv, str):
        raise GuestError("argv must be a list of arguments, not a string")
    return run_many([argv], timeout=timeout, env=env, cwd=cwd, mem=mem, echo=echo, results=results,
                    console=console)[0]


# ------------------------------------------------------------------------------------------------ CLI


def _env_arg(text):
    name, eq, value = text.partition("=")
    if not eq:
        raise argparse.ArgumentTypeError("expected NAME=VALUE, got %r" % text)
    return name, value


def main(argv=None):
    p = argparse.ArgumentParser(prog="guest.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="action", required=True)
    f = sub.add_parser("fetch", help="fill .cache/guest (kernel, modules, initramfs) if needed")
    f.add_argument("--refresh", action="store_true", help="resolve and fetch the current kernel again")
    r = sub.add_parser("run", help="boot and run CMD ARGS..., exit with its status")
    r.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds (default %(default)s)")
    r.add_argument("--mem", default=DEFAULT_MEM, help="guest memory (default %(default)s)")
    r.add_argument("--env", type=_env_arg, action="append", default=[], metavar="NAME=VALUE")
    r.add_argument("--results", metavar="DIR", help="copy $SIXBROKER_GUEST_RESULTS here afterwards")
    r.add_argument("--times", action="store_true", help="print the boot and run times to stderr")
    r.add_argument("--console", action="store_true", help="show kernel and init messages on stderr")
    r.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    # SIGTERM (make, a CI timeout) unwinds like ^C: QEMU is killed and the run's share removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        if args.action == "fetch":
            m = fetch(refresh=args.refresh)
            _say("%s %s (kernel %s) in %s" % (m["package"], m["version"], m["kernel_release"], CACHE))
            return 0
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            p.error("run needs a command: guest.py run -- CMD ARGS...")
        res = run(command, timeout=args.timeout, env=dict(args.env), mem=args.mem, echo=True,
                  results=args.results, console=args.console)
        if args.times:
            _say("command started %.2f s after QEMU started; whole run %.2f s" % (res.boot_seconds, res.run_seconds))
        return res.returncode
    except GuestError as e:
        sys.stdout.flush()
        _say(str(e))
        return 125
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # The reader went away (`... | head`): QEMU is already killed; say nothing more on that pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
