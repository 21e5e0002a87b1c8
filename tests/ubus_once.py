"""One `ubus call` on a connection opened for it: the tests' shorthand for connect, call, close (the
router's code keeps one connection for all its calls).  Runs under CPython and MicroPython."""

from sixbroker.openwrt import blobmsg, ubus


def call(object_path, method, data=None, timeout=ubus.DEFAULT_TIMEOUT, socket_path=None):
    """The reply as a dict (None when the method sent none); UbusError otherwise."""
    if data is not None and not isinstance(data, dict):
        raise ubus.UbusError("ubus call " + object_path + " " + method + ": the message must be a table (a dict)")
    if data:
        blobmsg.encode_table(data)  # refused before a connection is opened
    conn = ubus.connect(socket_path, min(timeout, ubus.CONNECT_TIMEOUT))
    try:
        return conn.call(object_path, method, data, timeout)
    finally:
        conn.close()
