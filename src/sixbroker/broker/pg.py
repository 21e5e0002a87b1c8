"""A PostgreSQL database (psycopg 3) behind the same calls db.py makes on SQLite's connections.

The broker's queries are written once, in SQLite's parameter styles (`?` and `:name`); this connection
rewrites them to psycopg's (`%s`, `%(name)s`) once per distinct text.  Rows answer row[0], row["name"]
and dict(row), as sqlite3.Row does.  The connection runs in autocommit mode and db.transaction() says
BEGIN/COMMIT itself, as it does on SQLite; every write transaction first takes one transaction-level
advisory lock (WRITER_KEY), PostgreSQL's counterpart of BEGIN IMMEDIATE: the writers of every PoP
sharing the database allocate one after the other, so two never see the same free prefix.

psycopg is imported only here, and only for a postgresql:// database: a SQLite broker needs none of it.
"""

import re

from sixbroker.core.errors import SixbrokerError

SCHEMES = ("postgresql://", "postgres://")
# pg_advisory_xact_lock's key for "one writer at a time" (any number; this one spells "sixb")
WRITER_KEY = 0x73697862
CONNECT_TIMEOUT = 10


def is_url(path):
    return isinstance(path, str) and path.startswith(SCHEMES)


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise SixbrokerError("PG_NEEDS_EXTRA")
    return psycopg


class Row(tuple):
    """A result row: by index, by column name, and dict(row)."""

    def __new__(cls, values, names):
        r = tuple.__new__(cls, values)
        r._names = names
        return r

    def keys(self):
        return list(self._names)

    def __getitem__(self, key):
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._names.index(key))
            except ValueError:
                raise IndexError("no column " + key)
        return tuple.__getitem__(self, key)


def _whole_numeric(psycopg):
    """numeric's loader giving int for a whole number: SUM() and arithmetic over bigint are numeric in
    PostgreSQL and integers in SQLite, and the broker's numbers are all whole (/64 counts, indexes)."""
    from psycopg.types.numeric import NumericLoader

    class WholeNumericLoader(NumericLoader):
        def load(self, data):
            d = NumericLoader.load(self, data)
            return int(d) if d.is_finite() and d == d.to_integral_value() else d
    return WholeNumericLoader


def _row_factory(cursor):
    names = [d.name for d in cursor.description or ()]
    return lambda values: Row(values, names)


_POSITIONAL = re.compile(r"\?")
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_translated = {}


def translate(sql, named):
    """SQLite's `?` / `:name` placeholders as psycopg's; a literal % doubled (psycopg reads % itself)."""
    key = (sql, named)
    out = _translated.get(key)
    if out is None:
        out = sql.replace("%", "%%")
        out = _NAMED.sub(r"%(\1)s", out) if named else _POSITIONAL.sub("%s", out)
        _translated[key] = out
    return out


def errors():
    """(integrity errors, read-only errors, connection-gone errors) as psycopg's exception classes."""
    psycopg = _psycopg()
    return (psycopg.IntegrityError, psycopg.errors.ReadOnlySqlTransaction,
            (psycopg.OperationalError, psycopg.InterfaceError))


def url_for_humans(url):
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


class Connection:
    """An open PostgreSQL database with the parts of sqlite3.Connection the broker uses."""

    dialect = "postgresql"

    def __init__(self, url, read_only=False):
        psycopg = _psycopg()
        self.url = url
        self.notices = []
        try:
            self.raw = psycopg.connect(url, autocommit=True, row_factory=_row_factory,
                                       connect_timeout=CONNECT_TIMEOUT, application_name="sixbroker")
            self.raw.adapters.register_loader("numeric", _whole_numeric(psycopg))
            if read_only:
                self.raw.execute("SET default_transaction_read_only = on")
        except psycopg.Error as e:
            raise gone(e, url)

    def execute(self, sql, params=()):
        named = isinstance(params, dict)
        cur = self.raw.cursor()
        try:
            if params:
                cur.execute(translate(sql, named), params)
            else:
                cur.execute(sql)
        except errors()[2] as e:
            raise gone(e, self.url)
        return cur

    def executemany(self, sql, seq):
        seq = list(seq)
        if not seq:
            return None
        cur = self.raw.cursor()
        try:
            cur.executemany(translate(sql, isinstance(seq[0], dict)), seq)
        except errors()[2] as e:
            raise gone(e, self.url)
        return cur

    def in_transaction(self):
        return self.raw.info.transaction_status != 0      # pq.TransactionStatus.IDLE

    def close(self):
        try:
            self.raw.close()
        except Exception:
            pass


def gone(e, url):
    """A connection that failed or broke: DB_UNAVAILABLE (the kernel keeps what it last applied)."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return SixbrokerError("DB_UNAVAILABLE", "%s: %s" % (url_for_humans(url), first))
