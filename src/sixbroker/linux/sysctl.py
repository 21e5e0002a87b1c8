"""Sysctls from plans into a namespace: each written only when it differs, never reverted.

CPython only.  Never reverted, because the old value is not known, and forwarding is what a router wants.
/proc/sys/net shows the namespace of the thread that reads it, so it is read and written from inside.
"""

import errno

from sixbroker.core.errors import SixbrokerError
from sixbroker.linux.kernel import Changes
from sixbroker.linux.netns import InNetns


def _sysctl_path(key):
    parts = key.split(".")
    # net.ipv6.conf.<device>.<setting>: a device name may itself hold dots (eth0.2)
    if len(parts) > 5 and parts[0] == "net" and parts[2] in ("conf", "neigh"):
        parts = parts[:3] + [".".join(parts[3:-1]), parts[-1]]
    for p in parts:
        if not p or p in (".", "..") or "/" in p:
            raise SixbrokerError("SYSCTL_FAIL", key + ": not a sysctl name")
    return "/proc/sys/" + "/".join(parts)


def apply(sysctls, netns=None, result=None):
    """Set each [key, value] that differs (read first, so an unchanged one is no change); `result` (a
    Changes, or a new one) with a line for each write."""
    result = result if result is not None else Changes()
    want = []
    for key, value in sysctls:
        if (key, str(value)) not in want:
            want.append((key, str(value)))
    if not want:
        return result
    with InNetns(netns):
        for key, value in want:
            path = _sysctl_path(key)
            try:
                with open(path) as f:
                    current = f.read()
                if current.split() == value.split():
                    continue
                with open(path, "w") as f:
                    f.write(value)
            except OSError as e:
                if e.errno in (errno.EPERM, errno.EACCES):
                    raise SixbrokerError("NOT_PERMITTED", key)
                raise SixbrokerError("SYSCTL_FAIL", key + "=" + value + ": " + (e.strerror or str(e)))
            result.add("sysctl " + key + "=" + value)
    return result

