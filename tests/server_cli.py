"""`sixbroker server` called in-process, as the tests of both worlds drive it (the host suites with a fake
applier, tests/e2e with the real kernel): its exit status, output, and never a traceback."""

import json

from sixbroker.broker import cli


class ServerCLI:
    def __init__(self, path, capsys):
        self.path = path
        self.capsys = capsys

    def run(self, *args):
        """(exit status, stdout, stderr) of `sixbroker server ARGS` with --db."""
        self.capsys.readouterr()
        rc = cli.main(list(args) + ["--db", self.path]) if args and args[0] not in ("-h", "--help") \
            else cli.main(list(args))
        out, err = self.capsys.readouterr()
        assert "Traceback" not in out + err
        return rc, out, err

    def ok(self, *args):
        rc, out, err = self.run(*args)
        assert rc == 0, (args, out, err)
        return out

    def json(self, *args):
        rc, out, err = self.run(*(list(args) + ["--json"]))
        assert rc == 0, (args, out, err)
        body = json.loads(out)
        # stderr carries nothing but the notices the JSON carries too (e.g. a renumbered VPS's new certificate)
        assert err == "".join("%s: notice %s: %s\n" % (cli.PROG, n["code"], n["message"])
                              for n in body.get("notices", [])), err
        return body
