"""The rpcd exec plugin `luci.sixbroker`: what LuCI's status view calls.

rpcd's contract for an executable in /usr/libexec/rpcd (openwrt/rpcd plugin.c, exec.c):
- `<plugin> list` runs once when rpcd starts, stdin and stderr on /dev/null; stdout is one JSON object,
  method name -> signature, a signature mapping each argument to a value whose JSON type gives its
  blobmsg type ("str" -> string).  rpcd registers the ubus object under the file's name.
- `<plugin> call <method>` gets the ubus arguments as one JSON object on stdin (with the caller's
  `ubus_rpc_session` added when the call came through LuCI), and must print one JSON object on stdout.
  rpcd reads the first JSON value; an object becomes the reply, anything else makes the call fail with
  UBUS_STATUS_INVALID_ARGUMENT, nothing at all with UBUS_STATUS_NO_DATA.  rpcd ignores the exit code and
  kills a call after its exec timeout (120 s by default).
An error is therefore an object too: {"error": words, "code": CODE}, with exit code 1 for a shell
(as upstream's Lua plugins do).  ubus itself never calls a method `list` did not announce.

files/usr/libexec/rpcd/luci.sixbroker answers `list` itself (rpcd waits for every plugin's list at
start-up) and execs this file for `call`.
"""

import sys


import json

from sixbroker.core.errors import SixbrokerError

METHODS = {
    "status": {"interface": "str"},
    "diagnose": {"interface": "str"},
}
REQUIRED = {"diagnose": ("interface",)}


def _error(code, text):
    return {"error": text, "code": code}


def _valid_name(name):
    if not name or len(name) > 15:
        return False
    for ch in name:
        if not (("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9") or ch in "_-."):
            return False
    return True


def check_args(method, args):
    """None when args fit the method's signature, else an error object."""
    if not isinstance(args, dict):
        return _error("USAGE", "Invalid arguments: a JSON object is expected")
    sig = METHODS[method]
    for name in args:
        if name == "ubus_rpc_session":
            continue
        if name not in sig:
            return _error("USAGE", "Invalid argument '" + name + "'")
        if not isinstance(args[name], str):
            return _error("USAGE", "Invalid argument '" + name + "': text expected")
    for name in REQUIRED.get(method, ()):
        if not args.get(name):
            return _error("USAGE", "Missing argument '" + name + "'")
    name = args.get("interface")
    if name and not _valid_name(name):
        return _error("USAGE", "Invalid interface name")
    return None


def call(method, args, bus=None):
    """The reply object for one call; connects to ubusd unless a bus is given."""
    if method not in METHODS:
        return _error("USAGE", "Method not found")
    bad = check_args(method, args)
    if bad:
        return bad
    from sixbroker.openwrt import status

    own = bus is None
    try:
        if own:
            from sixbroker.openwrt import ubus
            bus = ubus.connect()
        try:
            if method == "status":
                return status.collect(bus, args.get("interface") or None)
            from sixbroker.openwrt import diagnose
            return diagnose.diagnose(bus, args["interface"])
        finally:
            if own:
                bus.close()
    except SixbrokerError as e:
        return _error(e.code, e.text)


def main(argv, stdin=None, stdout=None):
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    if len(argv) == 2 and argv[1] == "list":
        stdout.write(json.dumps(METHODS) + "\n")
        return 0
    if len(argv) != 3 or argv[1] != "call":
        stdout.write(json.dumps(_error("USAGE", "usage: luci.sixbroker list | call <method>")) + "\n")
        return 2
    method = argv[2]
    if method not in METHODS:
        stdout.write(json.dumps(_error("USAGE", "Method not found")) + "\n")
        return 1
    text = stdin.read()
    try:
        args = json.loads(text) if text.strip() else {}
    except ValueError:
        stdout.write(json.dumps(_error("USAGE", "Invalid JSON on standard input")) + "\n")
        return 1
    try:
        reply = call(method, args)
    except Exception as e:  # noqa: BLE001 - LuCI shows the words, never a traceback
        reply = _error("INTERNAL_ERROR", type(e).__name__ + ": " + str(e))
    stdout.write(json.dumps(reply) + "\n")
    return 1 if "error" in reply else 0

