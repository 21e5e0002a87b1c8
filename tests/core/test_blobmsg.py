"""ubus wire encoding (blobmsg.py) against bytes written out by hand from the upstream layouts (not a
round trip).

Layouts (openwrt/libubox blob.h, blobmsg.h, blobmsg.c blobmsg_new; openwrt/ubus ubusmsg.h,
libubus-io.c ubus_send_msg, libubus-req.c ubus_invoke):
  blob attr   be32 id<<24 | length (header + payload, padding not counted), payload, zeros to 4
  blobmsg     same with bit 31 set; payload starts with be16 name length, name, NUL, zeros to 4
  message     u8 0, u8 type, be16 seq, be32 peer, blob(id 0) of ubus attributes
Runs under CPython and MicroPython.
"""
import pytest

from sixbroker.openwrt import blobmsg, ubus


def h(text):
    """Bytes from spaced hex, so each field of a layout stays visible."""
    return bytes(int(x, 16) for x in text.split())


# one-member tables: their bytes do not depend on dict order (MicroPython's dicts have none)
CASES = [
    # INT32 (type 5), name "a": header 4 bytes (00 01 'a' 00), length 4+4+4 = 12
    ({"a": 1}, h("85 00 00 0c  00 01 61 00  00 00 00 01")),
    ({"a": -1}, h("85 00 00 0c  00 01 61 00  ff ff ff ff")),
    ({"a": 2147483647}, h("85 00 00 0c  00 01 61 00  7f ff ff ff")),
    ({"a": -2147483648}, h("85 00 00 0c  00 01 61 00  80 00 00 00")),
    # past int32: INT64 (type 4), as blobmsg_json.c does for json-c's int64
    ({"big": 2147483648},
     h("84 00 00 14  00 03 62 69 67 00 00 00  00 00 00 00 80 00 00 00")),
    ({"a": -2147483649}, h("84 00 00 10  00 01 61 00  ff ff ff ff 7f ff ff ff")),
    # BOOL is INT8 (type 7): 1 byte, length 4+12+1 = 17, then 3 bytes of padding; the name
    # "link-up" (7) makes a 2+7+1 = 10 byte header, padded to 12
    ({"link-up": True},
     h("87 00 00 11  00 07") + b"link-up" + h("00 00 00  01  00 00 00")),
    ({"b": False}, h("87 00 00 09  00 01 62 00  00  00 00 00")),
    # STRING (type 3) keeps its NUL: "6in4-wan\0" is 9 bytes, length 4+12+9 = 25, padded to 28
    ({"ifname": "6in4-wan"},
     h("83 00 00 19  00 06") + b"ifname" + h("00 00 00 00") + b"6in4-wan" + h("00  00 00 00")),
    ({"s": ""}, h("83 00 00 09  00 01 73 00  00  00 00 00")),
    ({"u": "\u00fc"}, h("83 00 00 0b  00 01 75 00  c3 bc 00  00")),
    # a 2-letter name needs 2+2+1 = 5 header bytes, padded to 8
    ({"ab": 7}, h("85 00 00 10  00 02 61 62 00 00 00 00  00 00 00 07")),
    # null -> UNSPEC (type 0) with no payload
    ({"n": None}, h("80 00 00 08  00 01 6e 00")),
    # real -> DOUBLE (type 8), IEEE 754 big-endian
    ({"d": 1.5}, h("88 00 00 10  00 01 64 00  3f f8 00 00 00 00 00 00")),
    # TABLE (type 2) around one BOOL member: 4 + 4 + 12 (the padded member) = 20
    ({"t": {"b": False}},
     h("82 00 00 14  00 01 74 00  87 00 00 09 00 01 62 00 00 00 00 00")),
    # ARRAY (type 1); members are named "" (00 00 00 + 1 pad); "x\0" is a 10-byte attribute
    # padded to 12, then an INT32 of 12: 4 + 4 + 12 + 12 = 32
    ({"l": ["x", 2]},
     h("81 00 00 20  00 01 6c 00  83 00 00 0a 00 00 00 00 78 00 00 00"
       "  85 00 00 0c 00 00 00 00 00 00 00 02")),
    ({"l": []}, h("81 00 00 08  00 01 6c 00")),
    ({"e": {}}, h("82 00 00 08  00 01 65 00")),
    # a tuple is an array too
    ({"l": (True,)}, h("81 00 00 14  00 01 6c 00  87 00 00 09 00 00 00 00 01 00 00 00")),
]


@pytest.mark.parametrize("data,wire", CASES)
def test_encode_matches_hand_built_bytes(data, wire):
    assert blobmsg.encode_table(data) == wire


@pytest.mark.parametrize("data,wire", CASES)
def test_decode_hand_built_bytes(data, wire):
    want = {}
    for k in data:
        v = data[k]
        want[k] = list(v) if isinstance(v, tuple) else v
    assert blobmsg.decode_table(wire) == want


def test_lookup_message_bytes():
    # `ubus call network.interface.wan status` begins with LOOKUP (4), seq 1, peer 0;
    # "network.interface.wan\0" is 22 bytes: attribute length 26, padded to 28; blob 4 + 28 = 32
    msg = blobmsg.message(ubus.MSG_LOOKUP, 1, 0,
                          [blobmsg.blob_attr(blobmsg.ATTR_OBJPATH, b"network.interface.wan\0")])
    assert msg == (h("00 04 00 01  00 00 00 00  00 00 00 20  02 00 00 1a")
                   + b"network.interface.wan" + h("00  00 00"))


def test_invoke_message_bytes():
    # INVOKE (5), seq 2, peer = the object's id; OBJID (3), METHOD (4) "status\0" (11, padded to
    # 12) and an empty DATA (7), which the CLI sends when it has no message: blob 4+8+12+4 = 28
    msg = blobmsg.message(ubus.MSG_INVOKE, 2, 0x0A0B0C0D, [
        blobmsg.blob_attr(blobmsg.ATTR_OBJID, h("0a 0b 0c 0d")),
        blobmsg.blob_attr(blobmsg.ATTR_METHOD, b"status\0"),
        blobmsg.blob_attr(blobmsg.ATTR_DATA, blobmsg.encode_table({})),
    ])
    assert msg == h("00 05 00 02  0a 0b 0c 0d  00 00 00 1c"
                    "  03 00 00 08 0a 0b 0c 0d"
                    "  04 00 00 0b") + b"status" + h("00 00  07 00 00 04")


def test_header_is_big_endian_whatever_the_host():
    msg = blobmsg.message(ubus.MSG_STATUS, 0x1234, 0x89ABCDEF, [])
    assert msg == h("00 01 12 34  89 ab cd ef  00 00 00 04")


def test_status_reply_decodes_nested_tables_and_arrays():
    # what netifd's `status` sends, trimmed: {"up": true, "ipv4-address": [{"address":
    # "192.0.2.2", "mask": 24}]}, laid out by hand
    address = (h("83 00 00 1a  00 07") + b"address" + h("00 00 00") + b"192.0.2.2" + h("00  00 00")
               + h("85 00 00 10  00 04") + b"mask" + h("00 00  00 00 00 18"))
    entry = h("82 00 00 34  00 00 00 00") + address  # 4 + 4 + 28 + 16
    wire = (h("87 00 00 0d  00 02 75 70 00 00 00 00  01  00 00 00")
            + h("81 00 00 48  00 0c") + b"ipv4-address" + h("00 00") + entry)  # 4 + 16 + 52
    assert blobmsg.decode_table(wire) == {
        "up": True, "ipv4-address": [{"address": "192.0.2.2", "mask": 24}]}


def test_decode_int16_and_int64_signed():
    wire = (h("86 00 00 0a  00 01 61 00  ff fe  00 00")
            + h("84 00 00 10  00 01 62 00  ff ff ff ff ff ff ff ff"))
    assert blobmsg.decode_table(wire) == {"a": -2, "b": -1}


def test_decode_skips_unknown_type_as_the_cli_does():
    wire = h("89 00 00 0c  00 01 7a 00  00 00 00 01") + h("85 00 00 0c  00 01 61 00  00 00 00 05")
    assert blobmsg.decode_table(wire) == {"a": 5}


def test_decode_keeps_first_of_a_repeated_name():
    wire = h("85 00 00 0c  00 01 61 00  00 00 00 01") + h("85 00 00 0c  00 01 61 00  00 00 00 02")
    assert blobmsg.decode_table(wire) == {"a": 1}


@pytest.mark.parametrize("wire", [
    h("85 00 00 0c  00 01 61 00  00 00 00"),  # cut short
    h("85 00 00 0b  00 01 61 00  00 00 00 00"),  # INT32 with 3 bytes
    h("83 00 00 09  00 01 73 00  78  00 00 00"),  # STRING without its NUL
    h("85 00 00 02"),  # length below the header's own 4
    h("85 00 00 0c  00 05 61 00  00 00 00 01"),  # name runs past the attribute
    h("00 00"),  # stray bytes
])
def test_decode_refuses_malformed(wire):
    with pytest.raises(blobmsg.UbusError) as e:
        blobmsg.decode_table(wire)
    assert e.value.code == "UBUS_FAIL"


@pytest.mark.parametrize("data", [
    {"a": 2 ** 63},
    {"a": -(2 ** 63) - 1},
    {"a": object()},
    {"a": {1: "x"}},
    {"a": "nul\0inside"},
    {"a": b"bytes"},
])
def test_encode_refuses_what_json_cannot_carry(data):
    with pytest.raises(blobmsg.UbusError) as e:
        blobmsg.encode_table(data)
    assert e.value.code == "UBUS_FAIL" and e.value.status is None


def test_int64_edges_encode():
    assert blobmsg.encode_table({"a": 2 ** 63 - 1})[-8:] == h("7f ff ff ff ff ff ff ff")
    assert blobmsg.encode_table({"a": -(2 ** 63)})[-8:] == h("80 00 00 00 00 00 00 00")


def test_status_words_follow_libubus():
    assert ubus.status_text(ubus.STATUS_NOT_FOUND) == "Not found"
    assert ubus.status_text(ubus.STATUS_TIMEOUT) == "Request timed out"
    assert ubus.status_text(42) == "Unknown error: 42"
