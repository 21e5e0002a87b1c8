"""The part of pytest's API the core tests use, for the MicroPython runner (tests/mprun.py).

Core tests (tests/core) run unchanged under CPython's pytest and under MicroPython; under MicroPython
this module stands in for pytest.  Keep the core tests to what is here.
"""


class _Raises:
    def __init__(self, exc):
        self.exc = exc
        self.value = None

    def __enter__(self):
        return self

    def __exit__(self, etype, value, tb):
        if etype is None:
            raise AssertionError("DID NOT RAISE " + self.exc.__name__)
        if not issubclass(etype, self.exc):
            return False
        self.value = value
        return True


def raises(exc):
    return _Raises(exc)


class _Skipped(Exception):
    pass


def skip(reason=""):
    raise _Skipped(reason)


class _Mark:
    def parametrize(self, names, values):
        names = [n.strip() for n in names.split(",")]

        def deco(fn):
            cases = []
            for v in values:
                if len(names) == 1:
                    v = (v,)
                cases.append(dict(zip(names, v)))
            # stacked parametrize decorators multiply, as in pytest
            prev = getattr(fn, "_mp_cases", None) or [{}]
            merged = []
            for c in cases:
                for p in prev:
                    d = dict(p)
                    d.update(c)
                    merged.append(d)
            try:
                fn._mp_cases = merged
            except AttributeError:
                _CASES[id(fn)] = merged
            return fn

        return deco


_CASES = {}
mark = _Mark()


def cases_of(fn):
    return getattr(fn, "_mp_cases", None) or _CASES.get(id(fn))
