"""What the shim's `dump` must print: the protocol's declaration to netifd, from options.SCHEMA.

files/lib/netifd/proto/sixbroker.sh carries it as static text (netifd runs every handler's dump at its
start, one after another: no interpreter starts for it), so nothing on the router computes it; the tests
hold the shim's text to this.  Runs under pytest and MicroPython (tests/mprun.py).
"""

from sixbroker.core.options import NETIFD_OWNS, SCHEMA

# netifd's blobmsg types for a handler's `config` declaration (libubox blobmsg.h)
BLOBMSG_ARRAY = 1
BLOBMSG_STRING = 3


def netifd_dump():
    """The shim's `dump` answer.

    no-device: the handler creates its own device (the sit tunnel, through netifd);
    available: nothing to wait for before setup may run.
    """
    return {
        "name": "sixbroker",
        "config": [[o[0], BLOBMSG_ARRAY if o[1] == "list" else BLOBMSG_STRING] for o in SCHEMA
                   if o[0] not in NETIFD_OWNS],
        "no-device": True,
        "available": True,
    }
