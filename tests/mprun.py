"""Run the core tests under MicroPython: micropython tests/mprun.py tests/core/test_*.py

Collects every top-level function named test_* (expanding pytest.mark.parametrize cases), runs it,
and closes with the line 'N passed, N failed' that CI reads.
"""
import sys

here = sys.argv[0].rsplit("/", 1)[0] if "/" in sys.argv[0] else "."
sys.path.insert(0, here)  # helpers the tests share (uci_edit)
sys.path.insert(0, here + "/mp")
sys.path.insert(0, here + "/core")
sys.path.insert(0, here + "/../src")

import pytest  # noqa: E402  (the shim in tests/mp)


def main(paths):
    passed = failed = skipped = 0
    for path in paths:
        name = path.rsplit("/", 1)[-1][:-3]
        try:
            mod = __import__(name)
        except Exception as e:
            print("ERROR importing", path, repr(e))
            failed += 1
            continue
        for attr in sorted(dir(mod)):
            if not attr.startswith("test_"):
                continue
            fn = getattr(mod, attr)
            if not callable(fn):
                continue
            for kwargs in pytest.cases_of(fn) or [{}]:
                label = name + "::" + attr + ("" if not kwargs else str(sorted(kwargs.items())))
                try:
                    fn(**kwargs)
                    passed += 1
                except pytest._Skipped:
                    skipped += 1
                except Exception as e:
                    failed += 1
                    print("FAILED", label, "-", type(e).__name__, e)
    print("{} passed, {} failed, {} skipped".format(passed, failed, skipped))
    return failed


if __name__ == "__main__":
    sys.exit(1 if main(sys.argv[1:]) else 0)
