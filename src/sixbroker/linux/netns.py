"""Entering a network namespace for a while: the thread's sockets, children and /proc/sys/net are then its.

CPython only.  A namespace is a name under /run/netns (what `ip netns add` makes) or a path to one; None is
our own.  A netlink socket stays in the namespace it was made in, and a child process starts in the one of
the thread that forks it, so entering is only needed while a socket is made, a process started or a sysctl
read or written.
"""

import errno
import os

from sixbroker.core.errors import SixbrokerError

CLONE_NEWNET = 0x40000000


def netns_path(netns):
    """The file of a namespace given by name (under /run/netns) or by path."""
    return netns if "/" in netns else "/run/netns/" + netns


def os_error(e, what):
    """A refusal of the kernel (an OSError, or a netlink error code) as our error: NOT_PERMITTED when
    we lack the right, else NETLINK_FAIL with the kernel's words."""
    code = getattr(e, "code", None) or getattr(e, "errno", None)
    if code in (errno.EPERM, errno.EACCES):
        return SixbrokerError("NOT_PERMITTED", what)
    return SixbrokerError("NETLINK_FAIL", what + ": " + os.strerror(code) if code else what + ": " + str(e))


def setns(fd):
    """Move this thread into the network namespace of the open file fd."""
    if hasattr(os, "setns"):            # Python 3.12+
        os.setns(fd, CLONE_NEWNET)
        return
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


class InNetns:
    """Run this thread in another network namespace for a while: sockets made meanwhile stay there, and
    /proc/sys/net is that namespace's."""

    def __init__(self, netns):
        self.netns = netns
        self.saved = None

    def __enter__(self):
        if self.netns is None:
            return self
        try:
            fd = os.open(netns_path(self.netns), os.O_RDONLY)
        except OSError:
            raise SixbrokerError("NETNS_NOT_FOUND", self.netns)
        try:
            self.saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            setns(fd)
        except OSError as e:
            if self.saved is not None:
                os.close(self.saved)
                self.saved = None
            raise os_error(e, "enter network namespace " + self.netns)
        finally:
            os.close(fd)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            try:
                setns(self.saved)
            finally:
                os.close(self.saved)
                self.saved = None
        return False
