"""The shared core: what both interpreters run (CPython on the VPS and the router, MicroPython on the router)."""
