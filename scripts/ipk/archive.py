"""tar and gzip, byte for byte as GNU tar --format=gnu --sort=name and gzip -n write them."""

import gzip
import io
import tarfile

from ipk import PackError

NAME_FIELD = 100             # a tar header's name field


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
