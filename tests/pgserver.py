"""A throw-away PostgreSQL for the tests: Debian's postgresql-15 binaries, initdb into a temporary directory.

No system service and no system cluster: one `postgres` process of our own, listening on 127.0.0.1 at a
free port and on a unix socket in its own directory, fsync off (the data dies with the test run).
A test's database is a copy of a template (CREATE DATABASE ... TEMPLATE): of template0 (empty), or of one
the session migrated once (make_template), which saves every test the broker's migrations.  The tests'
server keeps its data in memory (memory_base(): a tmpfs) and drops each database after its test: copying
a 7 MB database onto a loaded disk was most of a PostgreSQL test's cost.
PostgreSQL refuses to run as root, so as root (a fresh CI machine) initdb and postgres run as the
`postgres` system user that the package made, through setpriv: setpriv execs, so the process we hold is
postgres itself and a signal to it is a signal to the server.  Not root: they run as ourselves.

initdb under the QEMU guest's TCG took 57 s where copying its 39 MB result took 4 s, and both e2e guests
start a server: `make e2e-pyc` runs initdb once on the host (`python3 tests/pgserver.py seed`, into
.cache/pg-seed) and every server starts from a copy of that cluster when it is there.
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

BIN = "/usr/lib/postgresql/15/bin"
USER = "postgres"       # the cluster's superuser role (initdb -U), whoever runs the processes
SEED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "pg-seed")


def available():
    """None when a server can be started here, else why not."""
    if not os.path.exists(os.path.join(BIN, "postgres")):
        return "postgresql-15 is not installed (scripts/bootstrap installs it)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run the server as"
    return None


def memory_base():
    """A tmpfs directory to keep a throw-away cluster in (/dev/shm), or None (the default temp dir)."""
    d = "/dev/shm"
    try:
        with open("/proc/mounts") as f:
            tmpfs = any(line.split()[1] == d and line.split()[2] == "tmpfs" for line in f)
    except OSError:
        tmpfs = False
    return d if tmpfs and os.access(d, os.W_OK | os.X_OK) else None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One server; dsn(dbname) for a client; create_db() for a fresh, empty database."""

    def __init__(self, base=None, durable=False):
        """durable: fsync and synchronous commits on, as a real deployment runs (the benchmarks); the
        tests' data dies with them, so they go without."""
        self.durable = durable
        self.dir = tempfile.mkdtemp(prefix="sixbroker-pg-", dir=base)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "log")
        self.port = None
        self.proc = None
        self.count = 0
        self.as_user = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.as_user = ["setpriv", "--reuid", str(pw.pw_uid), "--regid", str(pw.pw_gid), "--init-groups", "--"]

    def _env(self):
        env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
        env.pop("PGDATA", None)
        return env

    def initdb(self):
        subprocess.run(self.as_user + [os.path.join(BIN, "initdb"), "-D", self.data, "-U", USER, "-A", "trust",
                                       "-E", "UTF8", "--no-sync", "--no-instructions"],
                       check=True, capture_output=True, env=self._env(), cwd=self.dir)

    def _from_seed(self):
        """Copy the host's initdb'd cluster (module docstring); False when there is none for these binaries."""
        seed = os.path.join(SEED, "data")
        try:
            with open(os.path.join(seed, "PG_VERSION")) as f:
                if f.read().strip() != os.path.basename(os.path.dirname(BIN)):
                    return False
        except OSError:
            return False
        shutil.copytree(seed, self.data, symlinks=True)
        if self.as_user:
            pw = pwd.getpwnam("postgres")
            for top, dirs, files in os.walk(self.data):
                for name in [top] + [os.path.join(top, n) for n in dirs + files]:
                    os.lchown(name, pw.pw_uid, pw.pw_gid)
        os.chmod(self.data, 0o700)       # postgres refuses a data directory others may read
        return True

    def start(self, timeout=60):
        if not os.path.exists(os.path.join(self.data, "PG_VERSION")) and not self._from_seed():
            self.initdb()
        self.port = self.port or _free_port()
        with open(self.log, "ab") as log:
            if self.as_user:
                os.chown(self.log, pwd.getpwnam("postgres").pw_uid, -1)
            self.proc = subprocess.Popen(
                self.as_user + [os.path.join(BIN, "postgres"), "-D", self.data, "-p", str(self.port),
                                "-k", self.dir, "-c", "listen_addresses=127.0.0.1",
                                "-c", "max_connections=200", "-c", "shared_buffers=16MB"]
                + ([] if self.durable else ["-c", "fsync=off", "-c", "synchronous_commit=off",
                                            "-c", "full_page_writes=off"]),
                stdout=log, stderr=subprocess.STDOUT, env=self._env(), cwd=self.dir)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited %s: %s" % (self.proc.returncode, self.log_text()))
            r = subprocess.run([os.path.join(BIN, "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"])
            if r.returncode == 0:
                return self
            if time.monotonic() > deadline:
                raise RuntimeError("postgres did not come up: " + self.log_text())
            time.sleep(0.1)

    def stop(self):
        """Fast shutdown (SIGINT: every session ends, a clean checkpoint), the directory kept for a restart."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def dsn(self, dbname="postgres"):
        return "postgresql://%s@127.0.0.1:%d/%s" % (USER, self.port, dbname)

    def _admin(self, sql):
        import psycopg
        with psycopg.connect(self.dsn(), autocommit=True) as c:
            c.execute(sql)

    def create_db(self, template="template0", options=""):
        """The URL of a new database, a copy of `template` (template0, the default: empty, nothing a test
        left in template1); options: more of CREATE DATABASE (a locale).  FILE_COPY: a whole-directory
        copy, faster than PostgreSQL 15's default WAL_LOG for databases this small."""
        self.count += 1
        name = "t%d_%d" % (os.getpid(), self.count)
        self._admin("CREATE DATABASE %s TEMPLATE %s STRATEGY file_copy %s" % (name, template, options))
        return self.dsn(name)

    def make_template(self, name, prepare):
        """A database `name` that prepare(url) fills once (the broker's schema), for create_db(name).
        prepare must close its connections: a template with a session open cannot be copied."""
        self._admin("CREATE DATABASE %s TEMPLATE template0" % name)
        prepare(self.dsn(name))
        return name

    def drop_db(self, url):
        """Drop a test's database, ending whatever sessions it left (a server stopped: nothing to drop)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self._admin('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % url.rsplit("/", 1)[1])


def seed():
    """Make SEED (`make e2e-pyc`): one initdb here, for the servers of the QEMU guests to copy.  Not made
    again while it is there; nothing when postgresql-15 is not installed (the tests then skip)."""
    if available() or os.path.exists(os.path.join(SEED, "data", "PG_VERSION")):
        return
    shutil.rmtree(SEED, ignore_errors=True)
    os.makedirs(os.path.dirname(SEED), exist_ok=True)
    server = Server(base=os.path.dirname(SEED))
    server.initdb()
    os.rename(server.dir, SEED)


if __name__ == "__main__":
    import sys
    if sys.argv[1:] != ["seed"]:
        sys.exit("usage: tests/pgserver.py seed")
    seed()
