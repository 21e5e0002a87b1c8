"""Talk to netifd over ubus, without starting the `ubus` program.

The protocol handler runs on every `ifup`, under CPython or MicroPython.  MicroPython cannot start
programs, and on a slow router starting one per call is what makes the stock handler slow, so this
module speaks ubusd's own protocol over its Unix socket.  When the python3-ubus C extension is
importable (CPython on the router) `call()` uses it instead.

Every byte below was read off upstream (openwrt/ubus, openwrt/libubox); the files are named where
each rule is used.  The shape of one request and its answers:

    message   = header(8) + blob(id 0, the attributes below)                  libubus-io.c
    header    = u8 version 0, u8 type, be16 seq, be32 peer                   ubusmsg.h, ubusd.c
    blob attr = be32 (id << 24 | length incl. these 4 bytes), payload,
                zero padding to 4 bytes (not counted in length)              blob.h, blob.c
    blobmsg   = blob attr with bit 31 (extended) set, payload = be16 name length, name, NUL,
                zero padding to 4, then the value                            blobmsg.h, blobmsg.c

    -> LOOKUP  peer 0       {OBJPATH "network.interface"}                   libubus.c ubus_lookup_id
    <- DATA    peer 0       {OBJPATH, OBJID, OBJTYPE, SIGNATURE}            ubusd_proto.c ubusd_send_obj
    <- STATUS  peer 0       {STATUS 0}
    -> INVOKE  peer objid   {OBJID, METHOD "notify_proto", DATA blobmsg}    libubus-req.c ubus_invoke
    <- DATA    peer objid   {OBJID, DATA blobmsg}     (0..n of them)         libubus-req.c ubus_send_reply
    <- STATUS  peer objid   {STATUS n, OBJID}                                ubus_complete_deferred_request

Multi-byte integers are big-endian throughout, the header's seq and peer included: ubusd converts
them with cpu_to_be16/cpu_to_be32 (ubusd.c ubus_msg_writev, ubusd_main.c client_cb) and so does
current libubus (libubus-io.c ubus_send_msg, get_next_msg).
"""

import os
import select
import struct
import sys
import time

from sixbroker.core.errors import SixbrokerError

try:
    # CPython: the C module itself; socket.py on top of it imports enum and selectors, which a handler
    # started on every ifup does not need
    import _socket as socket
except ImportError:
    import socket  # MicroPython: socket is the C module

_MICROPYTHON = sys.implementation.name == "micropython"

# ubusmsg.h enum ubus_msg_type
MSG_HELLO = 0
MSG_STATUS = 1
MSG_DATA = 2
MSG_PING = 3
MSG_LOOKUP = 4
MSG_INVOKE = 5

# ubusmsg.h enum ubus_msg_attr
ATTR_STATUS = 1
ATTR_OBJPATH = 2
ATTR_OBJID = 3
ATTR_METHOD = 4
ATTR_OBJTYPE = 5
ATTR_SIGNATURE = 6
ATTR_DATA = 7

# ubusmsg.h enum ubus_msg_status, with the words libubus.c (__ubus_strerror) and so the ubus CLI
# print for each.
STATUS_OK = 0
STATUS_INVALID_COMMAND = 1
STATUS_INVALID_ARGUMENT = 2
STATUS_METHOD_NOT_FOUND = 3
STATUS_NOT_FOUND = 4
STATUS_NO_DATA = 5
STATUS_PERMISSION_DENIED = 6
STATUS_TIMEOUT = 7
STATUS_NOT_SUPPORTED = 8
STATUS_UNKNOWN_ERROR = 9
STATUS_CONNECTION_FAILED = 10
STATUS_TEXT = (
    "Success",
    "Invalid command",
    "Invalid argument",
    "Method not found",
    "Not found",
    "No response",
    "Permission denied",
    "Request timed out",
    "Operation not supported",
    "Unknown error",
    "Connection failed",
)

# blobmsg.h enum blobmsg_type.  BOOL is the same number as INT8.
UNSPEC, ARRAY, TABLE, STRING, INT64, INT32, INT16, INT8, DOUBLE = range(9)
BOOL = INT8

_EXTENDED = 0x80000000  # blob.h BLOB_ATTR_EXTENDED: a blobmsg attribute (it has a name)
_LEN_MASK = 0x00FFFFFF  # blob.h BLOB_ATTR_LEN_MASK
_MAX_MSGLEN = 1048576  # ubus CMakeLists.txt UBUS_MAX_MSGLEN; ubusd drops a client that sends more
_MSG_NOSIGNAL = 0x4000  # Linux <sys/socket.h>; MicroPython's socket module does not name it
_INT32_MIN = -(2 ** 31)
_INT32_MAX = 2 ** 31 - 1
_INT64_MIN = -(2 ** 63)
_INT64_MAX = 2 ** 63 - 1

# ubusd's socket: OpenWrt has built ubus with the first since 2021; older images used the second.
SOCKET_PATHS = ("/var/run/ubus/ubus.sock", "/var/run/ubus.sock")
SOCKET_ENV = "SIXBROKER_UBUS_SOCKET"
DEFAULT_TIMEOUT = 30  # seconds, the ubus CLI's default (cli.c, `-t`)
CONNECT_TIMEOUT = 5  # seconds for connect() and ubusd's HELLO: a live ubusd answers at once


class UbusError(SixbrokerError):
    """A ubus call failed.  `.status` is the ubus status number when there is one (UBUS_STATUS_*)."""

    def __init__(self, detail, status=None, errno=None):
        super().__init__("UBUS_FAIL", detail)
        self.status = status
        self.errno = errno  # the OS error number when connecting failed


def status_text(status):
    if status is not None and 0 <= status < len(STATUS_TEXT):
        return STATUS_TEXT[status]
    return "Unknown error: " + str(status)


def _failed(what, status):
    return UbusError(what + ": " + status_text(status) + " (ubus status " + str(status) + ")", status)


# ---------------------------------------------------------------------------------------------------
# Encoding.  Python values map to blobmsg exactly as the ubus CLI maps JSON
# (libubox blobmsg_json.c, blobmsg_add_json_element, the version with 64-bit and double support):
#   object -> TABLE, array -> ARRAY (members named ""), string -> STRING (NUL-terminated),
#   true/false -> BOOL (INT8, one byte 1/0), integer -> INT32 when it fits, else INT64,
#   real -> DOUBLE, null -> UNSPEC with no payload.
# netifd's policies are typed and it drops a mistyped attribute without a word, so this must hold.


def _pad(n):
    return (n + 3) & ~3


def _zeros(n):
    return b"\0" * n


def blob_attr(attr_id, payload):
    """One plain (not blobmsg) attribute: what blob_put() writes (blob.c)."""
    n = 4 + len(payload)
    if n > _LEN_MASK:
        raise UbusError("ubus message too large")
    return struct.pack(">I", ((attr_id << 24) & 0x7F000000) | n) + payload + _zeros(_pad(n) - n)


def blobmsg_attr(blob_type, name, payload):
    """One named attribute: what blobmsg_add_field() writes (blobmsg.c blobmsg_new)."""
    raw_name = name.encode()
    if len(raw_name) > 0xFFFF:
        raise UbusError("ubus attribute name too long")
    head = struct.pack(">H", len(raw_name)) + raw_name + b"\0"
    head += _zeros(_pad(len(head)) - len(head))  # blobmsg_hdrlen()
    n = 4 + len(head) + len(payload)
    if n > _LEN_MASK:
        raise UbusError("ubus message too large")
    return (struct.pack(">I", _EXTENDED | (blob_type << 24) | n) + head + payload
            + _zeros(_pad(n) - n))


def _encode(name, value, out):
    if value is None:
        out.append(blobmsg_attr(UNSPEC, name, b""))
    elif value is True or value is False:
        out.append(blobmsg_attr(BOOL, name, b"\x01" if value else b"\x00"))
    elif isinstance(value, int):
        if _INT32_MIN <= value <= _INT32_MAX:
            out.append(blobmsg_attr(INT32, name, struct.pack(">i", value)))
        elif _INT64_MIN <= value <= _INT64_MAX:
            out.append(blobmsg_attr(INT64, name, struct.pack(">q", value)))
        else:
            raise UbusError("integer " + repr(name) + " does not fit in 64 bits")
    elif isinstance(value, float):
        out.append(blobmsg_attr(DOUBLE, name, struct.pack(">d", value)))
    elif isinstance(value, str):
        if "\0" in value:
            # json-c would cut the string at the NUL; refuse rather than send something else
            raise UbusError("string " + repr(name) + " contains a NUL character")
        out.append(blobmsg_attr(STRING, name, value.encode() + b"\0"))
    elif isinstance(value, dict):
        out.append(blobmsg_attr(TABLE, name, encode_table(value)))
    elif isinstance(value, (list, tuple)):
        members = []
        for item in value:
            _encode("", item, members)
        out.append(blobmsg_attr(ARRAY, name, b"".join(members)))
    else:
        raise UbusError("cannot send a " + type(value).__name__ + " over ubus (" + repr(name) + ")")


def encode_table(data):
    """The members of a table, as the payload of UBUS_ATTR_DATA (blob_data of the CLI's blob_buf)."""
    out = []
    for key in data:
        if not isinstance(key, str):
            raise UbusError("ubus table keys must be strings, not " + repr(key))
        _encode(key, data[key], out)
    return b"".join(out)


def message(msg_type, seq, peer, attrs):
    """A whole message: header, then a blob of id 0 around the attributes (libubus-io.c)."""
    body = b"".join(attrs)
    return struct.pack(">BBHI", 0, msg_type, seq & 0xFFFF, peer & 0xFFFFFFFF) + blob_attr(0, body)


# ---------------------------------------------------------------------------------------------------
# Decoding.


def _malformed(what):
    return UbusError("malformed ubus message: " + what)


def _attrs(buf, start, end):
    """(id_len word, payload start, payload end) of each attribute in buf[start:end] (blob.h
    blob_for_each_attr: each one padded to 4 bytes, the padding inside the container)."""
    pos = start
    while pos < end:
        if end - pos < 4:
            raise _malformed("trailing bytes")
        word = struct.unpack_from(">I", buf, pos)[0]
        raw = word & _LEN_MASK
        if raw < 4 or pos + _pad(raw) > end:
            raise _malformed("attribute length " + str(raw))
        yield word, pos + 4, pos + raw
        pos += _pad(raw)


_FIXED = {INT8: 1, INT16: 2, INT32: 4, INT64: 8, DOUBLE: 8}


def _blobmsg(word, buf, start, end):
    """(name, value, known) of one blobmsg attribute; known is False for a type newer than ours."""
    name = ""
    data = start
    if word & _EXTENDED:
        if end - start < 3:
            raise _malformed("blobmsg header")
        namelen = struct.unpack_from(">H", buf, start)[0]
        if start + 2 + namelen >= end or buf[start + 2 + namelen] != 0:
            raise _malformed("blobmsg name")
        name = _text(buf[start + 2:start + 2 + namelen])
        data = start + _pad(2 + namelen + 1)
        if data > end:
            raise _malformed("blobmsg header length")
    kind = (word >> 24) & 0x7F
    size = end - data
    if kind in _FIXED and size != _FIXED[kind]:
        raise _malformed(repr(name) + " has " + str(size) + " bytes")
    if kind == UNSPEC:
        return name, None, True
    if kind == INT8:
        return name, buf[data] != 0, True
    if kind == INT16:
        return name, struct.unpack_from(">h", buf, data)[0], True
    if kind == INT32:
        return name, struct.unpack_from(">i", buf, data)[0], True
    if kind == INT64:
        return name, struct.unpack_from(">q", buf, data)[0], True
    if kind == DOUBLE:
        return name, struct.unpack_from(">d", buf, data)[0], True
    if kind == STRING:
        if size < 1 or buf[end - 1] != 0:
            raise _malformed(repr(name) + " is not NUL-terminated")
        raw = buf[data:end - 1]
        cut = raw.find(b"\0")
        return name, _text(raw if cut < 0 else raw[:cut]), True
    if kind == TABLE:
        return name, decode_table(buf, data, end), True
    if kind == ARRAY:
        return name, _decode_array(buf, data, end), True
    # a type this module does not know: the CLI skips it too (blobmsg_json.c blobmsg_format_element)
    return name, None, False


def _text(raw):
    try:
        return bytes(raw).decode()
    except UnicodeError:
        raise _malformed("text is not UTF-8")


def decode_table(buf, start=0, end=None):
    """A blobmsg table's members as a dict (ints signed, BOOL as bool, UNSPEC as None)."""
    if end is None:
        end = len(buf)
    out = {}
    for word, s, e in _attrs(buf, start, end):
        name, value, known = _blobmsg(word, buf, s, e)
        if known and name not in out:
            out[name] = value  # netifd's blobmsg_parse also takes the first of a repeated name
    return out


def _decode_array(buf, start, end):
    out = []
    for word, s, e in _attrs(buf, start, end):
        value, known = _blobmsg(word, buf, s, e)[1:]
        if known:
            out.append(value)
    return out


def parse_attrs(body):
    """The ubus attributes of a message body, id -> payload bytes, kept only when they have the type
    ubus policies want (libubus-io.c, ubusd_proto.c ubus_policy; blob_check_type drops others)."""
    tb = {}
    for word, s, e in _attrs(body, 0, len(body)):
        attr_id = (word >> 24) & 0x7F
        payload = body[s:e]
        if attr_id in (ATTR_STATUS, ATTR_OBJID, ATTR_OBJTYPE) and len(payload) != 4:
            continue
        if attr_id in (ATTR_OBJPATH, ATTR_METHOD) and (not payload or payload[-1] != 0):
            continue
        tb[attr_id] = payload  # blob_parse keeps the last one of an id
    return tb


# ---------------------------------------------------------------------------------------------------
# The connection.


def _deadline(seconds):
    if _MICROPYTHON:
        # +1: the ms tick may be about to advance, and a timeout must not end early
        return time.ticks_add(time.ticks_ms(), int(seconds * 1000) + 1)
    return time.monotonic() + seconds


def _left_ms(deadline):
    """Milliseconds to the deadline, rounded up; 0 or less once it has passed."""
    if _MICROPYTHON:
        return time.ticks_diff(deadline, time.ticks_ms())
    left = (deadline - time.monotonic()) * 1000
    return int(left) + 1 if left > 0 else 0


def _sockaddr(path):
    if _MICROPYTHON:
        # MicroPython's socket takes the raw struct sockaddr_un: host-order family, path, NUL
        return struct.pack("H", socket.AF_UNIX) + path.encode() + b"\0"
    return path


def _errno_text(e):
    import errno

    code = e.errno if hasattr(e, "errno") else (e.args[0] if e.args else None)
    names = {errno.ENOENT: "no such socket", errno.ECONNREFUSED: "nobody listening",
             errno.EACCES: "permission denied"}
    if code in names:
        return names[code], code
    return (str(e) or "error " + str(code)), code


class Connection:
    """One connection to ubusd.  Not thread-safe; close() it, or use it as a context manager."""

    def __init__(self, sock, path):
        self.path = path
        self.client_id = None
        self._sock = sock
        self._seq = 0
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def _recv_exact(self, n, deadline, what):
        chunks = []
        while n > 0:
            if self._sock is None:
                raise UbusError(what + ": connection closed")
            left = _left_ms(deadline)
            if left <= 0 or not self._poll.poll(left):
                raise _failed(what, STATUS_TIMEOUT)
            try:
                chunk = self._sock.recv(min(n, 65536))
            except OSError as e:
                raise UbusError(what + ": reading from ubusd failed: " + _errno_text(e)[0])
            if not chunk:
                self.close()
                raise UbusError(what + ": ubusd closed the connection")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _read_message(self, deadline, what):
        """(type, seq, peer, attributes) of the next message (libubus-io.c get_next_msg)."""
        head = self._recv_exact(12, deadline, what)
        version, msg_type, seq, peer, word = struct.unpack(">BBHII", head)
        raw = word & _LEN_MASK
        if version != 0 or raw < 4 or _pad(raw) > _MAX_MSGLEN:
            # ubus_validate_hdr() refuses these and libubus stops reading: the stream is lost
            self.close()
            raise UbusError(what + ": not a ubus message (version " + str(version)
                            + ", length " + str(raw) + ")")
        body = self._recv_exact(raw - 4, deadline, what) if raw > 4 else b""
        try:
            return msg_type, seq, peer, parse_attrs(body)
        except UbusError:
            self.close()
            raise

    def _send(self, msg, what):
        if self._sock is None:
            raise UbusError(what + ": connection closed")
        try:
            while msg:
                # MSG_NOSIGNAL: a MicroPython binary may not ignore SIGPIPE, and a ubusd that went
                # away must give an error, not kill the handler
                msg = msg[self._sock.send(msg, _MSG_NOSIGNAL):]
        except OSError as e:
            self.close()
            raise UbusError(what + ": writing to ubusd failed: " + _errno_text(e)[0])

    def _hello(self, deadline):
        what = "ubusd at " + self.path
        msg_type, seq, peer, tb = self._read_message(deadline, what)
        # libubus-io.c ubus_reconnect: the first message must be HELLO, its peer our non-zero id
        if msg_type != MSG_HELLO or not peer:
            self.close()
            raise UbusError(what + ": no HELLO (message type " + str(msg_type) + ")",
                            STATUS_CONNECTION_FAILED)
        self.client_id = peer

    def _request(self, msg_type, peer, attrs, deadline, what):
        """Send one request; (status, DATA attribute dicts) once its STATUS arrives
        (libubus-req.c ubus_complete_request, ubus_find_request: seq and peer must match)."""
        self._seq = (self._seq + 1) & 0xFFFF
        seq = self._seq
        self._send(message(msg_type, seq, peer, attrs), what)
        # ubus before its header went big-endian wrote seq and peer in host order; ubusd then
        # echoes our seq bytes unchanged but writes an object's id as a number, so on a
        # little-endian router the peer of its answers arrives byte-swapped
        swapped = struct.unpack("<I", struct.pack(">I", peer))[0]
        replies = []
        while True:
            got_type, got_seq, got_peer, tb = self._read_message(deadline, what)
            if got_seq != seq or (got_peer != peer and got_peer != swapped):
                continue  # a late answer to an earlier request that timed out
            if got_type == MSG_DATA:
                replies.append(tb)
            elif got_type == MSG_STATUS:
                # ubus_process_req_status: no STATUS attribute counts as INVALID_ARGUMENT
                status = STATUS_INVALID_ARGUMENT
                if ATTR_STATUS in tb:
                    status = struct.unpack(">i", tb[ATTR_STATUS])[0]
                return status, replies

    def lookup(self, object_path, deadline=None):
        """The id of the object at object_path (libubus.c ubus_lookup_id)."""
        if deadline is None:
            deadline = _deadline(DEFAULT_TIMEOUT)
        what = "ubus object " + object_path
        status, replies = self._request(
            MSG_LOOKUP, 0, [blob_attr(ATTR_OBJPATH, object_path.encode() + b"\0")], deadline, what)
        objid = None
        for tb in replies:
            if ATTR_OBJID in tb:
                objid = struct.unpack(">I", tb[ATTR_OBJID])[0]
        if status == STATUS_OK and objid is None:
            status = STATUS_NOT_FOUND
        if status != STATUS_OK:
            raise _failed(what, status)
        return objid

    def invoke(self, objid, method, data=None, deadline=None, what=None):
        """Call method on object objid; the list of DATA replies, each decoded to a dict."""
        if deadline is None:
            deadline = _deadline(DEFAULT_TIMEOUT)
        if what is None:
            what = "ubus call " + str(objid) + " " + method
        if data is not None and not isinstance(data, dict):
            raise UbusError(what + ": the message must be a table (a dict)")
        payload = encode_table(data) if data else b""
        # the CLI always sends UBUS_ATTR_DATA, empty when it was given no message (cli.c)
        attrs = [blob_attr(ATTR_OBJID, struct.pack(">I", objid)),
                 blob_attr(ATTR_METHOD, method.encode() + b"\0"),
                 blob_attr(ATTR_DATA, payload)]
        status, replies = self._request(MSG_INVOKE, objid, attrs, deadline, what)
        if status != STATUS_OK:
            raise _failed(what, status)
        out = []
        for tb in replies:
            if ATTR_DATA in tb:  # a DATA message without UBUS_ATTR_DATA carries nothing (cli.c)
                try:
                    out.append(decode_table(tb[ATTR_DATA]))
                except UbusError as e:
                    raise UbusError(what + ": " + str(e.detail))
        return out

    def call(self, object_path, method, data=None, timeout=DEFAULT_TIMEOUT):
        """`ubus call object_path method data`: the reply as a dict, or None when there was none.

        netifd's methods reply at most once; should an object reply more than once, the first reply
        is returned.  timeout bounds the whole call, lookup included.
        """
        what = "ubus call " + object_path + " " + method
        deadline = _deadline(timeout)
        objid = self.lookup(object_path, deadline)
        replies = self.invoke(objid, method, data, deadline, what)
        return replies[0] if replies else None


def _open(path, timeout):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = _deadline(timeout)
    try:
        sock.settimeout(timeout)
        sock.connect(_sockaddr(path))
        sock.settimeout(None)
    except OSError as e:
        sock.close()
        text, code = _errno_text(e)
        raise UbusError("cannot connect to ubusd at " + path + ": " + text,
                        STATUS_CONNECTION_FAILED, code)
    conn = Connection(sock, path)
    conn._hello(deadline)
    return conn


def socket_paths(path=None):
    """Where to look for ubusd: the given path, else $SIXBROKER_UBUS_SOCKET, else the two defaults."""
    if path:
        return (path,)
    env = os.getenv(SOCKET_ENV)
    if env:
        return (env,)
    return SOCKET_PATHS


def connect(path=None, timeout=CONNECT_TIMEOUT):
    """A Connection to ubusd; the older default socket is tried only when the newer one is absent."""
    import errno

    paths = socket_paths(path)
    for i, p in enumerate(paths):
        try:
            return _open(p, timeout)
        except UbusError as e:
            if e.errno != errno.ENOENT or len(paths) == 1:
                raise
            if i == len(paths) - 1:
                raise UbusError("cannot connect to ubusd: no socket at " + " or ".join(paths)
                                + " (is ubusd running?)", STATUS_CONNECTION_FAILED, e.errno)


# ---------------------------------------------------------------------------------------------------
# The one-call convenience, on python3-ubus when it is there.

_PY_UBUS = []  # [module or None] once looked for


def _python_ubus():
    """The python3-ubus C extension (openwrt/packages lang/python/python-ubus), or None."""
    if not _PY_UBUS:
        mod = None
        if not _MICROPYTHON:
            try:
                import ubus as mod
            except ImportError:
                mod = None
            # another package also calls itself `ubus` (a JSON-RPC client): take only the extension
            if mod is not None and not all(hasattr(mod, n) for n in
                                           ("connect", "call", "disconnect", "get_connected")):
                mod = None
        _PY_UBUS.append(mod)
    return _PY_UBUS[0]


def _status_of(text):
    # python3-ubus raises RuntimeError("ubus error occured: <ubus_strerror()>") or, when the lookup
    # fails, "Object '...' was not found." (ubus_python.c ubus_python_call)
    if "was not found" in text:
        return STATUS_NOT_FOUND
    for i in range(len(STATUS_TEXT) - 1, -1, -1):
        if text.endswith(STATUS_TEXT[i]):
            return i
    return None


def _call_python_ubus(mod, object_path, method, data, timeout, path):
    what = "ubus call " + object_path + " " + method
    if not path:
        path = socket_paths()[0]
        for p in socket_paths():
            try:
                os.stat(p)
                path = p
                break
            except OSError:
                pass
    own = False
    if not mod.get_connected():
        try:
            mod.connect(socket_path=path)
        except Exception as e:
            raise UbusError("cannot connect to ubusd at " + path + ": " + str(e).strip(),
                            STATUS_CONNECTION_FAILED)
        own = True
    try:
        replies = mod.call(object_path, method, data or {}, timeout=max(1, int(timeout * 1000)))
    except RuntimeError as e:
        status = _status_of(str(e))
        if status is None:
            raise UbusError(what + ": " + str(e))
        raise _failed(what, status)
    finally:
        if own:
            mod.disconnect()
    if not isinstance(replies, list):
        raise UbusError(what + ": python3-ubus returned no result")
    return replies[0] if replies else None


def call(object_path, method, data=None, timeout=DEFAULT_TIMEOUT, socket_path=None):
    """One `ubus call`: the reply as a dict (None when the method sent none); UbusError otherwise.

    Uses python3-ubus when it is importable, else opens its own connection for this call.
    """
    what = "ubus call " + object_path + " " + method
    if data is not None and not isinstance(data, dict):
        raise UbusError(what + ": the message must be a table (a dict)")
    if data:
        encode_table(data)  # the same refusals on either path, before anything is sent
    mod = _python_ubus()
    if mod is not None and not (mod.get_connected() and socket_path
                                and mod.get_socket_path() != socket_path):
        return _call_python_ubus(mod, object_path, method, data, timeout, socket_path)
    conn = connect(socket_path, min(timeout, CONNECT_TIMEOUT))
    try:
        return conn.call(object_path, method, data, timeout)
    finally:
        conn.close()
