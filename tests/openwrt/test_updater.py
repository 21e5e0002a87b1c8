"""The router's updater: files/usr/lib/sixbroker/update.sh (netifd's proto task) against a real HTTPS dyndns2
server on loopback, its uclient-fetch command line against uclient-fetch's own option table, and its
answer kinds and delays against core/dyndns.py.

uclient-fetch does not exist on this Debian machine.  The stand-in is GNU wget under the very same argv
(a `uclient-fetch` in PATH that execs wget "$@"): for the options the updater uses (-4, -O -, -T N,
--user=, --password=, --ca-certificate=) both take the same spellings, both send credentials only after a
401 challenge, and both exit 4 for a network failure, 5 for a certificate refused and 8 for an HTTP
error status (wget: 6 for refused credentials).  The script runs under busybox sh, the router's shell.
"""

import os
import shutil
import signal
import subprocess
import time

import pytest

from sixbroker.core import dyndns, options, updaterecord
from sixbroker.openwrt import updater

from tests import dyndns_server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "files/usr/lib/sixbroker/update.sh")
SH = shutil.which("busybox")

pytestmark = pytest.mark.skipif(not SH or not shutil.which("wget") or not shutil.which("openssl"),
                                reason="needs busybox, wget and openssl")


# ---- the command line, parsed the way uclient-fetch parses it ---------------------------------------

# openwrt/uclient uclient-fetch.c main(): getopt_long(argc, argv, "46cO:P:qsT:U:vY:", longopts, ...), and
# `static const struct option longopts[]` (L_NO_CHECK_CERTIFICATE ... L_HEADER): name -> has an argument
UCLIENT_SHORT = "46cO:P:qsT:U:vY:"
UCLIENT_LONG = {"no-check-certificate": False, "ca-certificate": True, "ciphers": True, "user": True,
                "password": True, "user-agent": True, "post-data": True, "post-file": True, "method": True,
                "body-data": True, "body-file": True, "spider": False, "timeout": True, "continue": False,
                "proxy": True, "no-proxy": False, "quiet": False, "verbose": False, "header": True}


def getopt_long(argv, short, longs):
    """(options [(name, value)], operands) as glibc/musl getopt_long would take them; raises on an option
    the table does not know or one missing its argument (uclient-fetch prints usage and exits 1 then)."""
    opts, operands, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--") and len(a) > 2:
            name, eq, value = a[2:].partition("=")
            if name not in longs:
                raise ValueError("unknown option --" + name)
            if longs[name] and not eq:
                i += 1
                if i == len(argv):
                    raise ValueError("--" + name + " needs an argument")
                value = argv[i]
            elif not longs[name] and eq:
                raise ValueError("--" + name + " takes no argument")
            opts.append((name, value if longs[name] else None))
        elif a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                c = a[j]
                k = short.find(c)
                if k < 0 or c == ":":
                    raise ValueError("unknown option -" + c)
                if short[k + 1:k + 2] == ":":
                    value = a[j + 1:]
                    if not value:
                        i += 1
                        if i == len(argv):
                            raise ValueError("-" + c + " needs an argument")
                        value = argv[i]
                    opts.append((c, value))
                    break
                opts.append((c, None))
                j += 1
        else:
            operands.append(a)
        i += 1
    return opts, operands


def full_argv(user="home", cert=None, url="https://203.0.113.10:8443/nic/update?hostname=home"):
    # what update.sh runs: the task's command after the script, then --password and the URL
    return dyndns.fetch_argv(user, cert) + ["--password=k", url]


def test_the_command_line_is_uclient_fetchs():
    opts, operands = getopt_long(full_argv(cert="/etc/sixbroker/broker.pem")[1:], UCLIENT_SHORT, UCLIENT_LONG)
    assert operands == ["https://203.0.113.10:8443/nic/update?hostname=home"]
    assert ("4", None) in opts                      # IPv4 only: the tunnel may be what is broken
    assert ("O", "-") in opts and ("T", "20") in opts
    assert ("user", "home") in opts and ("password", "k") in opts
    assert ("ca-certificate", "/etc/sixbroker/broker.pem") in opts
    # not quiet: "HTTP error 401" on stderr is all a refusal leaves (uclient-fetch.c header_done_cb)
    assert ("q", None) not in opts and ("quiet", None) not in opts
    with pytest.raises(ValueError):
        getopt_long(["--auth-no-challenge", "x"], UCLIENT_SHORT, UCLIENT_LONG)   # a wget-only option


def test_the_task_message_keeps_the_key_out_of_the_command_line():
    o = options.validate({"peeraddr": "203.0.113.10", "ip6addr": "2001:db8::b/127", "tunnelid": "home",
                          "updatekey": "s3cret-key"})
    from sixbroker.core import addr
    m = updater.task_message("wan6", o.update, addr.Address.parse("198.51.100.20", 4), "wan", "/var/run/sixbroker/wan6.update")
    assert m["action"] == 1 and m["command"][:2] == ["/bin/sh", "/usr/lib/sixbroker/update.sh"]
    assert not any("s3cret" in a for a in m["command"])
    env = dict(e.split("=", 1) for e in m["env"])
    assert env["SIXBROKER_KEY"] == "s3cret-key"
    assert env["SIXBROKER_URL"] == "https://203.0.113.10:8443/nic/update?hostname=home&myip=198.51.100.20"
    # behind NAT the broker takes the source address: no myip
    m = updater.task_message("wan6", o.update, addr.Address.parse("192.168.1.2", 4), "wan", "/r/wan6.update")
    assert dict(e.split("=", 1) for e in m["env"])["SIXBROKER_URL"].endswith("?hostname=home")
    # netifd's limits (proto-shell.c proto_shell_run_command: argv[64], env[32])
    assert len(m["command"]) < 63 and len(m["env"]) < 31


# ---- the script against a real HTTPS dyndns2 server -------------------------------------------------

@pytest.fixture
def world(tmp_path):
    cert, key = dyndns_server.make_cert(tmp_path)
    srv = dyndns_server.Server({"home": "s3cret-key"}, cert, key)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fetch = bindir / "uclient-fetch"
    # the documented stand-in: GNU wget under uclient-fetch's argv
    fetch.write_text('#!/bin/sh\nexec wget "$@"\n')
    fetch.chmod(0o755)
    yield {"tmp": tmp_path, "cert": cert, "srv": srv, "path": str(bindir) + ":" + os.environ["PATH"]}
    srv.close()


def start(world, key="s3cret-key", user="home", interval=300, cert=True, myip=None, tunnel="home"):
    record = str(world["tmp"] / "run" / "wan6.update")
    env = {"PATH": world["path"], "SIXBROKER_IFACE": "wan6", "SIXBROKER_KEY": key,
           "SIXBROKER_URL": dyndns.request_url(world["srv"].url, tunnel, myip),
           "SIXBROKER_INTERVAL": str(interval), "SIXBROKER_FOLLOW": "wan", "SIXBROKER_RECORD": record,
           "HOME": str(world["tmp"])}     # wget reads ~/.wgetrc and ~/.netrc: none
    argv = [SH, "sh"] + (["-x"] if os.getenv("R14X") else []) + [SCRIPT] + dyndns.fetch_argv(user, world["cert"] if cert else None)
    p = subprocess.Popen(argv[1:], executable=SH, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return p, record


def wait_record(record, pred, timeout=15):
    end = time.time() + timeout
    rec = None
    while time.time() < end:
        rec = updaterecord.read(record)
        if rec and pred(rec):
            return rec
        time.sleep(0.05)
    raise AssertionError("record never matched: %r" % (rec,))


def stop(p):
    # KNOWN RACE (left open, see the report): a TERM in the instant between the record's rename and the
    # `sleep &` that follows can leave that sleep running; netifd's 5 s SIGKILL ends the script, not it
    time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    out = p.communicate(timeout=10)[0].decode()
    assert p.returncode == 0
    return out


def test_good_then_nochg_on_a_wake_up_then_gone_on_term(world):
    p, record = start(world, myip="198.51.100.20")
    try:
        rec = wait_record(record, lambda r: r["word"] == "good")
        assert rec["address"] == "198.51.100.20" and rec["kind"] == "ok" and rec["fails"] == 0
        assert rec["next"] - rec["time"] == 300 and rec["follow"] == "wan"
        assert rec["url"] == world["srv"].url and rec["words"] == dyndns.meaning("good")
        # hotplug's wake-up (netifd action 2 with signal 1): at once, not after the interval
        p.send_signal(signal.SIGHUP)
        wait_record(record, lambda r: r["word"] == "nochg")
    finally:
        out = stop(p)
    # one log line per change of answer, for logread
    assert out.splitlines() == ["sixbroker: wan6: update: good 198.51.100.20 (ok, next in 300 s)",
                                "sixbroker: wan6: update: nochg 198.51.100.20 (ok, next in 300 s)"]
    # the credentials go only after a 401 challenge (uclient-fetch and wget alike), the key never in a URL
    reqs = world["srv"].requests
    assert [r[1] for r in reqs] == [None, "home", None, "home"]     # each run: challenge, then the key
    assert all("s3cret" not in r[0] for r in reqs)
    assert not os.path.exists(record + ".new") and not os.path.exists(record + ".out")


def test_behind_nat_the_broker_takes_the_source_address(world):
    p, record = start(world)
    try:
        rec = wait_record(record, lambda r: r["word"] == "good")
        assert rec["address"] == "127.0.0.1"
    finally:
        stop(p)


@pytest.mark.parametrize("case", ["badauth", "nohost", "badcert", "unreachable"])
def test_refusals_and_failures_are_recorded_with_their_delay(world, case):
    kw = {"badauth": {"key": "wrong"}, "nohost": {"tunnel": "other"}, "badcert": {"cert": False},
          "unreachable": {}}[case]
    if case == "unreachable":
        world["srv"].close()
    want = {"badauth": "unauthorized", "nohost": "nohost", "badcert": "badcert",
            "unreachable": "unreachable"}[case]
    p, record = start(world, **kw)
    try:
        rec = wait_record(record, lambda r: r["word"] is not None)
        assert rec["word"] == want, rec
        assert rec["next"] - rec["time"] == dyndns.next_delay(dyndns.kind(want), 1, 300)
        assert rec["fails"] == 1
    finally:
        out = stop(p)
    assert ("update: " + want) in out
    if case == "unreachable":
        world["srv"] = dyndns_server.Server({}, None, None)     # the fixture closes one


# ---- the shell's kinds and delays are the Python's ----------------------------------------------------

def test_every_word_has_the_pythons_kind():
    text = open(SCRIPT).read()
    for word, (kind, _) in dyndns.ANSWERS.items():
        line = [l for l in text.splitlines() if "kind=" in l and
                ("|" + word + "|") in "|" + l.strip().split(")")[0].replace("'", "") + "|"]
        assert len(line) == 1, word
        assert ("kind=" + kind) in line[0], (word, line)
    for word, (kind, _) in dyndns.FAILURES.items():
        assert ("word=%s kind=%s" % (word, kind)) in text, word


def test_the_shells_delays_are_the_pythons(world):
    """A fake client answers a sequence; after each answer the record must hold Python's word, failures
    in a row and delay.  Woken by SIGHUP between answers."""
    answers = [("", 4), ("", 4), ("", 4), ("911", 0), ("good 198.51.100.7", 0), ("", 8), ("abuse", 0),
               ("", 4), ("nochg 198.51.100.7\r", 0), ("garbage", 0), ("", 127), ("", 5)] + [("", 4)] * 9
    d = world["tmp"] / "fake"
    d.mkdir()
    for i, (body, status) in enumerate(answers):
        (d / str(i)).write_text(body + "\n" + str(status) + "\n")
    fetch = world["tmp"] / "bin" / "uclient-fetch"
    fetch.write_text('#!/bin/sh\nn=$(cat %s/n 2>/dev/null || echo 0); echo $((n + 1)) > %s/n\n'
                     '{ read -r body; read -r st; } < %s/$n\nprintf "%%s\\n" "$body"; exit $st\n' % (d, d, d))
    for interval in (300, 0):
        (d / "n").write_text("0")
        p, record = start(world, interval=interval)
        fails = 0
        try:
            for i, (body, status) in enumerate(answers):
                word, address = dyndns.parse(body, status)
                k = dyndns.kind(word)
                fails = 0 if k == "ok" else fails + 1
                delay = dyndns.next_delay(k, fails, interval)
                want = (word, address, fails, delay)
                if i:
                    p.send_signal(signal.SIGHUP)
                wait_record(record, lambda r: (r["word"], r["address"], r["fails"], r["next"] - r["time"]) == want)
        finally:
            stop(p)


def test_a_wan_address_change_sends_the_new_address_at_once(world):
    # No wake-up is wired for a WAN address change, because none is needed: 95-sixbroker sees the tunnel's
    # recorded local address gone, hotplug.py takes the tunnel down and up (tests/core/test_hotplug.py),
    # netifd kills the old task (proto_shell_handler, teardown) and the new setup's task message carries
    # the new address, whose update.sh sends it before anything else.  That chain, from the message on:
    o = options.validate({"peeraddr": "203.0.113.10", "ip6addr": "2001:db8::b/127", "tunnelid": "home",
                          "updatekey": "s3cret-key", "updateurl": world["srv"].url})
    from sixbroker.core import addr
    record = str(world["tmp"] / "run" / "wan6.update")
    for local in ("198.51.100.20", "198.51.100.77"):
        m = updater.task_message("wan6", o.update, addr.Address.parse(local, 4), "wan", record, SCRIPT)
        env = dict(e.split("=", 1) for e in m["env"])
        env.update(PATH=world["path"], HOME=str(world["tmp"]))
        argv = m["command"][2:] + ["--ca-certificate=" + world["cert"]]        # the test broker's own
        began = time.time()
        p = subprocess.Popen([SH, "sh", SCRIPT] + argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            rec = wait_record(record, lambda r: r["address"] == local)
            assert rec["word"] == "good" and time.time() - began < 5      # at once, not after the interval
        finally:
            stop(p)
    assert [r[0].split("myip=")[1] for r in world["srv"].requests if r[1]] == ["198.51.100.20", "198.51.100.77"]
