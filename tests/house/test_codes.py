"""Each room carries the words of the error codes its code raises: core/errors.py holds the core's and the
router end's, and linux/, linuxrouter/ and broker/ add theirs when imported (so the router package ships
only words it can show).  A code raised by a room whose words are elsewhere would reach the user as a bare
code: this test imports each room alone, in a fresh interpreter, and looks for such codes."""

import ast
import json
import os
import subprocess
import sys

import pytest

from pyimports import modules

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(ROOT, "src")
ROOMS = ("core", "openwrt", "linux", "linuxrouter", "broker")


def codes_after_importing(names):
    program = ("import json, sys\nsys.path.insert(0, %r)\n" % SRC + "".join("import %s\n" % n for n in names)
               + "from sixbroker.core.errors import CODES\nprint(json.dumps(sorted(CODES)))\n")
    r = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stdout))


def constants(source):
    return {n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def test_every_room_has_the_words_of_the_codes_it_raises():
    found = modules(os.path.join(SRC, "sixbroker"))
    everything = codes_after_importing(sorted(n for n in found if n.count(".") >= 2))
    for room in ROOMS:
        names = sorted(n for n in found if n.startswith("sixbroker.%s." % room) or n == "sixbroker." + room)
        mine = set().union(*(constants(found[n]) for n in names)) & everything
        have = codes_after_importing(names)
        assert mine <= have, (room, sorted(mine - have))


def test_the_router_end_carries_no_broker_words():
    router = codes_after_importing(["sixbroker.openwrt.netifd", "sixbroker.openwrt.statuscli", "sixbroker.openwrt.rpcd",
                                    "sixbroker.openwrt.join", "sixbroker.cli"])
    broker = codes_after_importing(["sixbroker.broker.cli", "sixbroker.linux"])
    assert "BROKER_NOT_INITIALISED" in broker - router and "SIT_PAIR_IN_USE" in broker - router


@pytest.mark.parametrize("room", ["linux", "linuxrouter", "broker"])
def test_a_rooms_codes_are_new_words_not_changed_ones(room):
    core = codes_after_importing(["sixbroker.core.errors"])
    program = ("import sys\nsys.path.insert(0, %r)\nfrom sixbroker.core import errors\nbefore = dict(errors.CODES)\n"
               "import sixbroker.%s\nchanged = [c for c in before if errors.CODES[c] != before[c]]\n"
               "print(len(changed))\n" % (SRC, room))
    r = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True)
    assert r.stdout.strip() == "0" and core
