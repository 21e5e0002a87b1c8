"""The broker's writer lock: one change at a time from its commit through the kernel change (CLI and serve).
"""

import os

from sixbroker.core.errors import SixbrokerError


class Lock:
    """One writer at a time from the commit through the kernel change, so two commands never apply
    half of each other's state (SQLite alone serialises only the commits)."""

    def __init__(self, path):
        self.path = path + ".lock"
        self.fd = None

    def __enter__(self):
        import errno
        import fcntl
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), mode=0o700, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            if e.errno != errno.EROFS:
                raise SixbrokerError("DB_ERROR", "%s: %s" % (self.path, e.strerror or e))
            # a read-only file system: flock works on a read-only descriptor; with no lock file at all
            # nobody can commit a change here either, so an apply runs unlocked
            try:
                self.fd = os.open(self.path, os.O_RDONLY)
            except OSError:
                return self
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)
        return False

    def remove(self):
        """Take the lock file away (a refused first init leaves nothing behind), while still holding it."""
        try:
            os.unlink(self.path)
        except OSError:
            pass
