"""The ubus wire format: blob and blobmsg attributes, and a ubus message's header and attributes.

Written and read without libubox (MicroPython has no C extension for it); ubus.py sends and receives
these over ubusd's socket.  Every byte below was read off upstream (openwrt/ubus, openwrt/libubox); the
files are named where each rule is used:

    message   = header(8) + blob(id 0, the attributes below)                  libubus-io.c
    header    = u8 version 0, u8 type, be16 seq, be32 peer                   ubusmsg.h, ubusd.c
    blob attr = be32 (id << 24 | length incl. these 4 bytes), payload,
                zero padding to 4 bytes (not counted in length)              blob.h, blob.c
    blobmsg   = blob attr with bit 31 (extended) set, payload = be16 name length, name, NUL,
                zero padding to 4, then the value                            blobmsg.h, blobmsg.c

Multi-byte integers are big-endian throughout, the header's seq and peer included (ubusd.c
ubus_msg_writev, libubus-io.c ubus_send_msg).
"""

import struct

from sixbroker.core.errors import SixbrokerError

# ubusmsg.h enum ubus_msg_attr
ATTR_STATUS = 1
ATTR_OBJPATH = 2
ATTR_OBJID = 3
ATTR_METHOD = 4
ATTR_OBJTYPE = 5
ATTR_SIGNATURE = 6
ATTR_DATA = 7

# blobmsg.h enum blobmsg_type.  BOOL is the same number as INT8.
UNSPEC, ARRAY, TABLE, STRING, INT64, INT32, INT16, INT8, DOUBLE = range(9)
BOOL = INT8

_EXTENDED = 0x80000000  # blob.h BLOB_ATTR_EXTENDED: a blobmsg attribute (it has a name)
LEN_MASK = 0x00FFFFFF  # blob.h BLOB_ATTR_LEN_MASK
_INT32_MIN = -(2 ** 31)
_INT32_MAX = 2 ** 31 - 1
_INT64_MIN = -(2 ** 63)
_INT64_MAX = 2 ** 63 - 1


class UbusError(SixbrokerError):
    """A ubus message could not be made or read, or a call failed.  `.status` is the ubus status number
    when there is one (UBUS_STATUS_*)."""

    def __init__(self, detail, status=None, errno=None):
        super().__init__("UBUS_FAIL", detail)
        self.status = status
        self.errno = errno  # the OS error number when connecting failed


# ---------------------------------------------------------------------------------------------------
# Encoding.  Python values map to blobmsg exactly as the ubus CLI maps JSON
# (libubox blobmsg_json.c, blobmsg_add_json_element, the version with 64-bit and double support):
#   object -> TABLE, array -> ARRAY (members named ""), string -> STRING (NUL-terminated),
#   true/false -> BOOL (INT8, one byte 1/0), integer -> INT32 when it fits, else INT64,
#   real -> DOUBLE, null -> UNSPEC with no payload.
# netifd's policies are typed and it drops a mistyped attribute without a word, so this must hold.


def pad(n):
    return (n + 3) & ~3


def _zeros(n):
    return b"\0" * n


def blob_attr(attr_id, payload):
    """One plain (not blobmsg) attribute: what blob_put() writes (blob.c)."""
    n = 4 + len(payload)
    if n > LEN_MASK:
        raise UbusError("ubus message too large")
    return struct.pack(">I", ((attr_id << 24) & 0x7F000000) | n) + payload + _zeros(pad(n) - n)


def blobmsg_attr(blob_type, name, payload):
    """One named attribute: what blobmsg_add_field() writes (blobmsg.c blobmsg_new)."""
    raw_name = name.encode()
    if len(raw_name) > 0xFFFF:
        raise UbusError("ubus attribute name too long")
    head = struct.pack(">H", len(raw_name)) + raw_name + b"\0"
    head += _zeros(pad(len(head)) - len(head))  # blobmsg_hdrlen()
    n = 4 + len(head) + len(payload)
    if n > LEN_MASK:
        raise UbusError("ubus message too large")
    return (struct.pack(">I", _EXTENDED | (blob_type << 24) | n) + head + payload
            + _zeros(pad(n) - n))


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
        raw = word & LEN_MASK
        if raw < 4 or pos + pad(raw) > end:
            raise _malformed("attribute length " + str(raw))
        yield word, pos + 4, pos + raw
        pos += pad(raw)


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
        data = start + pad(2 + namelen + 1)
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
