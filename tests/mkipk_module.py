"""scripts/mkipk.py loaded as a module (it is a script, not part of the package), for the tests that
call its functions."""

import importlib.util
import os

MKIPK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "mkipk.py")


def load():
    spec = importlib.util.spec_from_file_location("mkipk", MKIPK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
