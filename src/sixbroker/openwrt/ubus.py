"""A connection to ubusd, to talk to netifd without starting the `ubus` program.

The protocol handler runs on every `ifup`, under CPython or MicroPython.  MicroPython cannot start
programs, and on a slow router starting one per call is what makes the stock handler slow, so this
module speaks ubusd's own protocol over its Unix socket (the bytes: blobmsg.py).  One request and its
answers (openwrt/ubus):

    -> LOOKUP  peer 0       {OBJPATH "network.interface"}                   libubus.c ubus_lookup_id
    <- DATA    peer 0       {OBJPATH, OBJID, OBJTYPE, SIGNATURE}            ubusd_proto.c ubusd_send_obj
    <- STATUS  peer 0       {STATUS 0}
    -> INVOKE  peer objid   {OBJID, METHOD "notify_proto", DATA blobmsg}    libubus-req.c ubus_invoke
    <- DATA    peer objid   {OBJID, DATA blobmsg}     (0..n of them)         libubus-req.c ubus_send_reply
    <- STATUS  peer objid   {STATUS n, OBJID}                                ubus_complete_deferred_request

The header's seq and peer are big-endian: ubusd converts them with cpu_to_be16/cpu_to_be32 (ubusd.c
ubus_msg_writev, ubusd_main.c client_cb) and so does current libubus (libubus-io.c ubus_send_msg,
get_next_msg).
"""

import os
import select
import struct
import sys
import time

from sixbroker.openwrt import blobmsg
from sixbroker.openwrt.blobmsg import (ATTR_DATA, ATTR_METHOD, ATTR_OBJID, ATTR_OBJPATH, ATTR_STATUS,
                                       UbusError)

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

_MAX_MSGLEN = 1048576  # ubus CMakeLists.txt UBUS_MAX_MSGLEN; ubusd drops a client that sends more
_MSG_NOSIGNAL = 0x4000  # Linux <sys/socket.h>; MicroPython's socket module does not name it

# ubusd's socket: OpenWrt has built ubus with the first since 2021; older images used the second.
SOCKET_PATHS = ("/var/run/ubus/ubus.sock", "/var/run/ubus.sock")
SOCKET_ENV = "SIXBROKER_UBUS_SOCKET"
DEFAULT_TIMEOUT = 30  # seconds, the ubus CLI's default (cli.c, `-t`)
CONNECT_TIMEOUT = 5  # seconds for connect() and ubusd's HELLO: a live ubusd answers at once


def status_text(status):
    if status is not None and 0 <= status < len(STATUS_TEXT):
        return STATUS_TEXT[status]
    return "Unknown error: " + str(status)


def failed(what, status):
    return UbusError(what + ": " + status_text(status) + " (ubus status " + str(status) + ")", status)


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
                raise failed(what, STATUS_TIMEOUT)
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
        raw = word & blobmsg.LEN_MASK
        if version != 0 or raw < 4 or blobmsg.pad(raw) > _MAX_MSGLEN:
            # ubus_validate_hdr() refuses these and libubus stops reading: the stream is lost
            self.close()
            raise UbusError(what + ": not a ubus message (version " + str(version)
                            + ", length " + str(raw) + ")")
        body = self._recv_exact(raw - 4, deadline, what) if raw > 4 else b""
        try:
            return msg_type, seq, peer, blobmsg.parse_attrs(body)
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
        self._send(blobmsg.message(msg_type, seq, peer, attrs), what)
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
            MSG_LOOKUP, 0, [blobmsg.blob_attr(ATTR_OBJPATH, object_path.encode() + b"\0")], deadline, what)
        objid = None
        for tb in replies:
            if ATTR_OBJID in tb:
                objid = struct.unpack(">I", tb[ATTR_OBJID])[0]
        if status == STATUS_OK and objid is None:
            status = STATUS_NOT_FOUND
        if status != STATUS_OK:
            raise failed(what, status)
        return objid

    def invoke(self, objid, method, data=None, deadline=None, what=None):
        """Call method on object objid; the list of DATA replies, each decoded to a dict."""
        if deadline is None:
            deadline = _deadline(DEFAULT_TIMEOUT)
        if what is None:
            what = "ubus call " + str(objid) + " " + method
        if data is not None and not isinstance(data, dict):
            raise UbusError(what + ": the message must be a table (a dict)")
        payload = blobmsg.encode_table(data) if data else b""
        # the CLI always sends UBUS_ATTR_DATA, empty when it was given no message (cli.c)
        attrs = [blobmsg.blob_attr(ATTR_OBJID, struct.pack(">I", objid)),
                 blobmsg.blob_attr(ATTR_METHOD, method.encode() + b"\0"),
                 blobmsg.blob_attr(ATTR_DATA, payload)]
        status, replies = self._request(MSG_INVOKE, objid, attrs, deadline, what)
        if status != STATUS_OK:
            raise failed(what, status)
        out = []
        for tb in replies:
            if ATTR_DATA in tb:  # a DATA message without UBUS_ATTR_DATA carries nothing (cli.c)
                try:
                    out.append(blobmsg.decode_table(tb[ATTR_DATA]))
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
