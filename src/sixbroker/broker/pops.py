"""Points of presence telling each other: a change for PoP X is announced on X's channel (PostgreSQL
NOTIFY), and X's `serve` listens there and reconciles its kernel within moments (Follower).

Only the news travels this way, never the state: the database stays the truth, a notification only says
"look again".  A command run on PoP X applies X's own change itself and announces it on X's channel
only when that failed (then X's `serve` tries again); a crash between its commit and its apply is
repaired, as on SQLite, by the next `apply` or `serve` start.  So a lost one costs nothing but time:
the follower reconciles in full whenever its connection (re)starts, which is also how a PoP catches up after the database was away.  While the
database is away the follower touches nothing: the kernel keeps forwarding with what was last applied.
On SQLite there is one broker and nobody to tell: notify() does nothing.
"""

import threading
import time

from sixbroker.broker import db, pg

PREFIX = "sixbroker_pop_"
RETRY_SECONDS = 2.0


def channel(pop):
    """The LISTEN/NOTIFY channel of a PoP: an identifier (quoted where it is one), PoP names being
    letters, digits, '-', '_' and '.'."""
    return PREFIX + pop


def notify(conn, pops):
    """Announce a committed change to the PoPs `pops` (best effort: the change is saved already)."""
    if not db.is_postgresql(conn):
        return
    for pop in sorted(set(p for p in pops if p)):
        try:
            conn.execute("SELECT pg_notify(?, '')", (channel(pop),))
        except Exception:
            pass


def _generation(conn):
    return conn.execute("SELECT n FROM generation WHERE id = 1").fetchone()[0]


class Follower:
    """A thread that reconciles this PoP whenever its channel says so, and at every (re)connection.

    reconcile(): the caller's full reconcile, run under its writer lock; log(line): what happened."""

    def __init__(self, url, pop, reconcile, log, retry=RETRY_SECONDS):
        self.url = url
        self.pop = pop
        self.reconcile = reconcile
        self.log = log
        self.retry = retry
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sixbroker-follower", daemon=True)
        self.reconciled = 0         # how many times (the tests wait for it)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()

    def _reconcile(self, why):
        try:
            self.reconcile()
            self.reconciled += 1
            self.log("reconciled PoP %s (%s)" % (self.pop, why))
        except Exception as e:
            self.log("reconcile of PoP %s failed (%s): %s" % (self.pop, why, getattr(e, "text", None) or e))

    def _run(self):
        down = False
        while not self.stopping.is_set():
            try:
                conn = pg.Connection(self.url)
            except Exception as e:
                if not down:
                    self.log("database unreachable, the kernel keeps what was last applied: %s"
                             % (getattr(e, "text", None) or e))
                    down = True
                self.stopping.wait(self.retry)
                continue
            try:
                pending = threading.Event()
                conn.execute('LISTEN "%s"' % channel(self.pop))
                # what changed while nobody listened (a start, the database away)
                why = "database back" if down else "listening"
                down = False
                pending.set()
                while not self.stopping.is_set():
                    if not pending.is_set():
                        # returns at the timeout, so stop() is seen within a second
                        for _ in conn.raw.notifies(timeout=1.0, stop_after=1):
                            pending.set()
                        continue
                    time.sleep(0.05)            # a burst of changes is one reconcile
                    pending.clear()
                    before = _generation(conn)
                    self._reconcile(why)
                    why = "notified"
                    # a change committed while the reconcile ran, whose news may have come and gone
                    # before this connection read it: once more
                    if _generation(conn) != before:
                        pending.set()
            except Exception as e:
                if not self.stopping.is_set():
                    self.log("database connection lost, the kernel keeps what was last applied: %s"
                             % (getattr(e, "text", None) or e))
                    down = True
            finally:
                conn.close()
            self.stopping.wait(self.retry if down else 0)
