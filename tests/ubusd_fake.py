"""A small ubusd for tests, written from openwrt/ubus ubusd_proto.c, ubusd.c and ubusd_main.c.

It serves a Unix socket in a temporary directory, greets each client with HELLO and a client id,
answers LOOKUP for the objects it was given and answers INVOKE on their behalf, recording every call
with its data decoded twice: plainly, and as a typed tree that keeps the exact blobmsg type of every
value (`("int32", 5)`, `("int8", 1)`, `("table", {...})`), which is what netifd's typed policies see.

It shares no code with src/sixbroker/openwrt/ubus.py on purpose: the client is checked against a second,
independent reading of the same upstream files.  It is stricter than ubusd where a real ubusd or
netifd would silently drop or misread something (bad padding, a nameless table member, a top blob
that is not id 0...): such problems land in `.errors`, and a test asserts that list is empty.

    with FakeUbusd(objects={"network.interface": {"notify_proto": None},
                            "network.interface.wan": {"status": {"up": True}}}) as ub:
        env = dict(os.environ, **ub.env())        # SIXBROKER_UBUS_SOCKET for a child process
        ...
        ub.calls[0].typed["action"] == ("int32", 0)

An object's handler is a dict (method name -> answer) or a callable(call) -> answer, where an
answer is None (status 0, no data), a dict (one DATA reply, then status 0), an int (that status,
no data) or a Reply (anything else: several replies, a status, a delay, or silence).
Reply data may hold T("int16", 3)-style values to send a type the JSON mapping never produces.

Run as a program (`python tests/ubusd_fake.py SOCKET [objects.json]`) it serves until killed and
prints each call as a JSON line; objects.json maps object path -> {method: reply data}.
"""

import json
import os
import random
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time

# ubusmsg.h
HELLO, STATUS, DATA, PING, LOOKUP, INVOKE = range(6)
A_STATUS, A_OBJPATH, A_OBJID, A_METHOD, A_OBJTYPE, A_SIGNATURE, A_DATA = range(1, 8)
A_USER, A_GROUP = 12, 13
OK, INVALID_COMMAND, INVALID_ARGUMENT, METHOD_NOT_FOUND, NOT_FOUND = range(5)
UNKNOWN_ERROR = 9
MAX_MSGLEN = 1048576  # CMakeLists.txt UBUS_MAX_MSGLEN

# blobmsg.h enum blobmsg_type
TYPES = ("unspec", "array", "table", "string", "int64", "int32", "int16", "int8", "double")
SIZES = {"int8": 1, "int16": 2, "int32": 4, "int64": 8, "double": 8}
PACK = {"int16": ">h", "int32": ">i", "int64": ">q", "double": ">d"}


def pad4(n):
    return (n + 3) // 4 * 4


class T:
    """A reply value with an explicit blobmsg type: T("int64", 5), T("int16", -1)."""

    def __init__(self, type_name, value):
        assert type_name in TYPES, type_name
        self.type = type_name
        self.value = value


class Reply:
    """Full control over an answer: data (a dict, or a list of dicts for several DATA messages),
    status, a delay in seconds before answering, or silent=True for no answer at all."""

    def __init__(self, data=None, status=OK, delay=0.0, silent=False):
        self.data = data
        self.status = status
        self.delay = delay
        self.silent = silent


class Call:
    """One INVOKE as the object saw it."""

    def __init__(self, **kw):
        self.object = kw["object"]
        self.method = kw["method"]
        self.objid = kw["objid"]
        self.data = kw["data"]  # plain: ints, bools (int8), str, float, None, dict, list
        self.typed = kw["typed"]  # the same with every value as (type name, value)
        self.raw = kw["raw"]  # the UBUS_ATTR_DATA payload, byte for byte
        self.seq = kw["seq"]
        self.client = kw["client"]
        self.time = kw["time"]

    def __repr__(self):
        return "Call(%s %s %r)" % (self.object, self.method, self.typed)


class ProtocolError(Exception):
    pass


# ---------------------------------------------------------------------------------------------------
# blob / blobmsg, read off libubox blob.h, blob.c, blobmsg.h, blobmsg.c


def put(attr_id, payload, extended=False):
    """blob.c blob_put / blob_nest_end: header counts itself and the payload, not the padding."""
    length = 4 + len(payload)
    word = (attr_id & 0x7F) << 24 | length | (0x80000000 if extended else 0)
    return struct.pack(">I", word) + payload + b"\0" * (pad4(length) - length)


def put_msg(type_name, name, payload):
    """blobmsg.c blobmsg_new: be16 name length, name, NUL, zeros up to a multiple of 4."""
    raw = name.encode()
    head = struct.pack(">H", len(raw)) + raw + b"\0"
    head += b"\0" * (pad4(len(head)) - len(head))
    return put(TYPES.index(type_name), head + payload, extended=True)


def encode_value(name, value):
    """A Python value the way the ubus CLI encodes its JSON (blobmsg_json.c)."""
    if isinstance(value, T):
        if value.type in ("table", "array"):
            return encode_value(name, value.value)
        if value.type == "int8":
            return put_msg("int8", name, struct.pack(">B", value.value & 0xFF))
        if value.type == "string":
            return put_msg("string", name, value.value.encode() + b"\0")
        if value.type == "unspec":
            return put_msg("unspec", name, b"")
        return put_msg(value.type, name, struct.pack(PACK[value.type], value.value))
    if value is None:
        return put_msg("unspec", name, b"")
    if isinstance(value, bool):
        return put_msg("int8", name, bytes([1 if value else 0]))
    if isinstance(value, int):
        if -2 ** 31 <= value < 2 ** 31:
            return put_msg("int32", name, struct.pack(">i", value))
        return put_msg("int64", name, struct.pack(">q", value))
    if isinstance(value, float):
        return put_msg("double", name, struct.pack(">d", value))
    if isinstance(value, str):
        return put_msg("string", name, value.encode() + b"\0")
    if isinstance(value, dict):
        return put_msg("table", name, encode_members(value))
    if isinstance(value, (list, tuple)):
        return put_msg("array", name, b"".join(encode_value("", v) for v in value))
    raise TypeError("cannot encode %r" % (value,))


def encode_members(table):
    return b"".join(encode_value(k, v) for k, v in table.items())


def walk(buf, where):
    """Each attribute in buf as (id, extended, payload), per blob.h blob_for_each_attr; problems
    a real peer would trip over or silently skip raise ProtocolError."""
    pos = 0
    out = []
    while pos < len(buf):
        if len(buf) - pos < 4:
            raise ProtocolError("%s: %d stray bytes at the end" % (where, len(buf) - pos))
        (word,) = struct.unpack_from(">I", buf, pos)
        length = word & 0xFFFFFF
        if length < 4 or pos + pad4(length) > len(buf):
            raise ProtocolError("%s: attribute at %d claims %d bytes of %d" % (where, pos, length,
                                                                             len(buf) - pos))
        padding = buf[pos + length:pos + pad4(length)]
        if padding.strip(b"\0"):
            raise ProtocolError("%s: padding is not zero" % where)
        out.append(((word >> 24) & 0x7F, bool(word & 0x80000000), buf[pos + 4:pos + length]))
        pos += pad4(length)
    return out


def decode_member(attr_id, extended, payload, where, named):
    """(name, typed value) of one blobmsg attribute, checked like blobmsg.c blobmsg_check_attr_len
    (name NUL-terminated; table members need a name) and blob.c blob_check_type (exact sizes)."""
    if not extended:
        raise ProtocolError("%s: attribute without the blobmsg (extended) bit" % where)
    if len(payload) < 3:
        raise ProtocolError("%s: blobmsg header cut short" % where)
    (namelen,) = struct.unpack_from(">H", payload, 0)
    if 2 + namelen >= len(payload) or payload[2 + namelen] != 0:
        raise ProtocolError("%s: name not NUL-terminated" % where)
    name = payload[2:2 + namelen].decode()
    head = pad4(2 + namelen + 1)
    if payload[2 + namelen:head].strip(b"\0"):
        raise ProtocolError("%s: name padding is not zero" % where)
    if named and not name:
        raise ProtocolError("%s: table member without a name" % where)
    if not named and name:
        raise ProtocolError("%s: array member named %r (the CLI names them \"\")" % (where, name))
    if attr_id >= len(TYPES):
        raise ProtocolError("%s: unknown blobmsg type %d" % (where, attr_id))
    kind = TYPES[attr_id]
    data = payload[head:]
    here = "%s.%s" % (where, name) if named else where + "[]"
    if kind in SIZES and len(data) != SIZES[kind]:
        raise ProtocolError("%s: %s with %d bytes" % (here, kind, len(data)))
    if kind == "unspec":
        if data:
            raise ProtocolError("%s: unspec (null) with a payload" % here)
        return name, (kind, None)
    if kind == "int8":
        return name, (kind, data[0])
    if kind in PACK:
        return name, (kind, struct.unpack(PACK[kind], data)[0])
    if kind == "string":
        if not data or data[-1] != 0 or 0 in data[:-1]:
            raise ProtocolError("%s: string not NUL-terminated exactly once" % here)
        return name, (kind, data[:-1].decode())
    if kind == "table":
        return name, (kind, decode_members(data, here))
    return name, (kind, [decode_member(i, e, p, here, False)[1] for i, e, p in walk(data, here)])


def decode_members(buf, where="data"):
    out = {}
    for attr_id, extended, payload in walk(buf, where):
        name, typed = decode_member(attr_id, extended, payload, where, True)
        if name in out:
            raise ProtocolError("%s: %r twice" % (where, name))
        out[name] = typed
    return out


def plain(typed):
    kind, value = typed
    if kind == "int8":
        return bool(value)
    if kind == "table":
        return {k: plain(v) for k, v in value.items()}
    if kind == "array":
        return [plain(v) for v in value]
    return value


def jsonable(typed_members):
    def conv(t):
        kind, value = t
        if kind == "table":
            return [kind, {k: conv(v) for k, v in value.items()}]
        if kind == "array":
            return [kind, [conv(v) for v in value]]
        return [kind, value]

    return {k: conv(v) for k, v in typed_members.items()}


# ubusd_proto.c ubus_policy, applied with blob_parse_untrusted: a mistyped attribute is dropped
_POLICY = {A_OBJTYPE: "int32", A_OBJPATH: "string", A_OBJID: "int32", A_STATUS: "int32",
           A_METHOD: "string", A_USER: "string", A_GROUP: "string", A_SIGNATURE: "nested"}


def parse_ubus_attrs(body, errors):
    tb = {}
    for attr_id, extended, payload in walk(body, "message"):
        kind = _POLICY.get(attr_id)
        bad = ((kind == "int32" and len(payload) != 4)
               or (kind == "string" and (not payload or payload[-1] != 0)) or extended)
        if bad:
            errors.append("ubus attribute %d malformed: %r" % (attr_id, payload))
            continue
        tb[attr_id] = payload
    return tb


# ---------------------------------------------------------------------------------------------------


class _Object:
    def __init__(self, path, handler, objid, typeid):
        self.path = path
        self.handler = handler
        self.id = objid
        self.type_id = typeid


class FakeUbusd:
    def __init__(self, objects=None, socket_path=None, host_order_header=False):
        # host_order_header: play an old ubusd, which wrote seq and peer little-endian on x86
        self._hdr = "<BBHI" if host_order_header else ">BBHI"
        self._dir = None
        if socket_path is None:
            self._dir = tempfile.mkdtemp(prefix="ubusd-")
            socket_path = os.path.join(self._dir, "ubus.sock")
        self.socket_path = socket_path
        self.calls = []
        self.lookups = []
        self.errors = []
        self.clients = []  # the ids handed out in HELLO, in order
        self._objects = {}
        self._lock = threading.Lock()
        self._rand = random.Random()
        self._conns = []
        self._threads = []
        self._listener = None
        self._stopping = False
        for path, handler in (objects or {}).items():
            self.add_object(path, handler)

    # ubusd_id.c hands out random 32-bit ids; ids below 1024 are ubusd's own objects (ubusmsg.h)
    def _new_id(self):
        return self._rand.randrange(1024, 2 ** 32)

    def add_object(self, path, handler):
        with self._lock:
            obj = _Object(path, handler, self._new_id(), self._new_id())
            self._objects[path] = obj
            return obj.id

    def remove_object(self, path):
        with self._lock:
            self._objects.pop(path, None)

    def object_id(self, path):
        return self._objects[path].id

    def env(self):
        return {"SIXBROKER_UBUS_SOCKET": self.socket_path}

    def calls_to(self, object_path, method=None):
        return [c for c in self.calls if c.object == object_path and method in (None, c.method)]

    # -- life cycle --------------------------------------------------------------------------------

    def start(self):
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.socket_path)
        self._listener.listen(16)
        t = threading.Thread(target=self._accept_loop, name="fake-ubusd", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stopping = True
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(5)
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _accept_loop(self):
        while not self._stopping:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    # -- one client --------------------------------------------------------------------------------

    def _send(self, conn, msg_type, seq, peer, attrs):
        # ubusd.c ubus_msg_writev: seq and peer go out big-endian, then the blob (id 0)
        conn.sendall(struct.pack(self._hdr, 0, msg_type, seq, peer) + put(0, b"".join(attrs)))

    def _recv(self, conn, n):
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def _serve(self, conn):
        with self._lock:
            client = self._new_id()
            self.clients.append(client)
        try:
            # ubusd_proto.c ubusd_send_hello: HELLO, seq 0, peer = the client's id, empty blob
            self._send(conn, HELLO, 0, client, [])
            while True:
                head = self._recv(conn, 12)
                if head is None:
                    return
                version, msg_type, seq, peer = struct.unpack(self._hdr, head[:8])
                (word,) = struct.unpack(">I", head[8:])
                length = word & 0xFFFFFF
                if pad4(length) > MAX_MSGLEN or length < 4:
                    self.errors.append("message length %d: ubusd disconnects" % length)
                    return
                if version != 0 or word >> 24:
                    self.errors.append("header version %d, top blob id/flags %#x (want 0, 0)"
                                       % (version, word >> 24))
                body = self._recv(conn, length - 4) if length > 4 else b""
                if body is None:
                    self.errors.append("client hung up inside a message")
                    return
                try:
                    self._handle(conn, client, msg_type, seq, peer, body)
                except ProtocolError as e:
                    self.errors.append(str(e))
                    return  # as ubusd, drop a client that sends garbage
        except OSError:
            return
        finally:
            conn.close()
            with self._lock:
                if conn in self._conns:
                    self._conns.remove(conn)

    def _status(self, conn, seq, peer, status, objid=None):
        attrs = [put(A_STATUS, struct.pack(">i", status))]
        if objid is not None:  # libubus-req.c ubus_complete_deferred_request: STATUS then OBJID
            attrs.append(put(A_OBJID, struct.pack(">I", objid)))
        self._send(conn, STATUS, seq, peer, attrs)

    def _handle(self, conn, client, msg_type, seq, peer, body):
        tb = parse_ubus_attrs(body, self.errors)
        if msg_type == PING:
            self._send(conn, DATA, seq, peer, [put(i, p) for i, p in tb.items()])
        elif msg_type == LOOKUP:
            self._lookup(conn, seq, peer, tb)
        elif msg_type == INVOKE:
            self._invoke(conn, client, seq, peer, tb)
        else:
            self._status(conn, seq, peer, INVALID_COMMAND)

    def _lookup(self, conn, seq, peer, tb):
        # ubusd_proto.c __ubusd_handle_lookup and ubusd_send_obj
        if peer != 0:
            self.errors.append("LOOKUP with peer %d (libubus sends 0)" % peer)
        with self._lock:
            objects = sorted(self._objects.values(), key=lambda o: o.path)
        if A_OBJPATH not in tb:
            found = objects
        else:
            path = tb[A_OBJPATH][:-1].decode()
            self.lookups.append(path)
            if not path:
                return self._status(conn, seq, peer, INVALID_ARGUMENT)
            if path.endswith("*"):
                found = [o for o in objects if o.path.startswith(path[:-1])]
            else:
                found = [o for o in objects if o.path == path]
            if not found:
                return self._status(conn, seq, peer, NOT_FOUND)
        for obj in found:
            methods = obj.handler.keys() if isinstance(obj.handler, dict) else ()
            signature = b"".join(put_msg("table", m, b"") for m in methods)
            self._send(conn, DATA, seq, peer, [
                put(A_OBJPATH, obj.path.encode() + b"\0"),
                put(A_OBJID, struct.pack(">I", obj.id)),
                put(A_OBJTYPE, struct.pack(">I", obj.type_id)),
                put(A_SIGNATURE, signature),
            ])
        self._status(conn, seq, peer, OK)

    def _invoke(self, conn, client, seq, peer, tb):
        # ubusd_proto.c ubusd_handle_invoke, then the object's side, libubus-obj.c ubus_process_invoke
        if A_METHOD not in tb or A_OBJID not in tb:
            return self._status(conn, seq, peer, INVALID_ARGUMENT)
        (objid,) = struct.unpack(">I", tb[A_OBJID])
        with self._lock:
            obj = next((o for o in self._objects.values() if o.id == objid), None)
        if obj is None:
            return self._status(conn, seq, peer, NOT_FOUND)
        if peer != objid and self._hdr[0] == ">":
            self.errors.append("INVOKE of %d with peer %d (libubus sends the object id)"
                               % (objid, peer))
        method = tb[A_METHOD][:-1].decode()
        raw = tb.get(A_DATA, b"")
        if A_DATA not in tb:
            self.errors.append("INVOKE without UBUS_ATTR_DATA (the CLI always sends it)")
        typed = decode_members(raw, obj.path + " " + method)
        call = Call(object=obj.path, method=method, objid=objid, data=plain(("table", typed)),
                    typed=typed, raw=raw, seq=seq, client=client, time=time.monotonic())
        with self._lock:
            self.calls.append(call)
        # replies travel with peer = the object id (ubusd_proto.c ubusd_handle_response)
        handler = obj.handler
        if isinstance(handler, dict):
            if method not in handler:
                return self._status(conn, seq, objid, METHOD_NOT_FOUND, objid)
            answer = handler[method]
            if callable(answer):
                answer = answer(call)
        else:
            try:
                answer = handler(call)
            except Exception as e:  # a broken handler answers as a C one returning an error
                self.errors.append("handler for %s %s raised %r" % (obj.path, method, e))
                return self._status(conn, seq, objid, UNKNOWN_ERROR, objid)
        if not isinstance(answer, Reply):
            if answer is None:
                answer = Reply()
            elif isinstance(answer, int) and not isinstance(answer, bool):
                answer = Reply(status=answer)
            else:
                answer = Reply(data=answer)
        if answer.silent:
            return
        if answer.delay:
            time.sleep(answer.delay)
        replies = answer.data if isinstance(answer.data, list) else [answer.data]
        for data in replies:
            if data is not None:
                self._send(conn, DATA, seq, objid,
                           [put(A_OBJID, struct.pack(">I", objid)), put(A_DATA, encode_members(data))])
        self._status(conn, seq, objid, answer.status, objid)


def main(argv):
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so the socket file is removed
    sock = argv[1]
    objects = {}
    if len(argv) > 2:
        with open(argv[2]) as f:
            objects = json.load(f)
    fake = FakeUbusd(objects=objects, socket_path=sock).start()
    seen = 0
    try:
        while True:
            time.sleep(0.05)
            while seen < len(fake.calls):
                c = fake.calls[seen]
                seen += 1
                print(json.dumps({"object": c.object, "method": c.method,
                                  "typed": jsonable(c.typed)}), flush=True)
            for e in fake.errors[:]:
                print(json.dumps({"error": e}), flush=True)
                fake.errors.remove(e)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main(sys.argv)
