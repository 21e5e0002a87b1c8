"""`sixbroker server`: the broker end (the VPS).

db.py the SQLite state, alloc.py what is handed out, service.py the operations, reconcile.py database ->
plans -> kernel and firewall, routerconf.py the router's configuration, cli.py the command line,
hostfacts.py what `init` reads from the host.
"""
