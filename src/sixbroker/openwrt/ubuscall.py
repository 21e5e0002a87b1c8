"""One `ubus call`: on the python3-ubus C extension when it is importable (CPython on the router), else
on a connection of our own (ubus.py) opened for the call.

Neither the protocol handler nor hotplug imports this: they keep one connection (ubus.connect) for all
their calls, and stay off this module's code on every ifup.
"""

import os
import sys

from sixbroker.openwrt import blobmsg, ubus
from sixbroker.openwrt.ubus import (CONNECT_TIMEOUT, DEFAULT_TIMEOUT, STATUS_CONNECTION_FAILED,
                                    STATUS_NOT_FOUND, STATUS_TEXT, UbusError)

_PY_UBUS = []  # [module or None] once looked for


def _python_ubus():
    """The python3-ubus C extension (openwrt/packages lang/python/python-ubus), or None."""
    if not _PY_UBUS:
        mod = None
        if sys.implementation.name != "micropython":
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
        path = ubus.socket_paths()[0]
        for p in ubus.socket_paths():
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
        raise ubus.failed(what, status)
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
        blobmsg.encode_table(data)  # the same refusals on either path, before anything is sent
    mod = _python_ubus()
    if mod is not None and not (mod.get_connected() and socket_path
                                and mod.get_socket_path() != socket_path):
        return _call_python_ubus(mod, object_path, method, data, timeout, socket_path)
    conn = ubus.connect(socket_path, min(timeout, CONNECT_TIMEOUT))
    try:
        return conn.call(object_path, method, data, timeout)
    finally:
        conn.close()
