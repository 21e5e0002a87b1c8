"""tests/guest.py: the QEMU guest with a real kernel (sit and all) that the e2e suite runs in.

One boot runs most checks (guest.run_many: one command after another in the same guest); the timeout,
the panic and the CLI need a boot each.  Nothing here is skipped: if the harness cannot run (no QEMU, no
kernel in the cache and no apt), every test fails with the reason.
"""
import os
import re
import secrets
import subprocess
import shutil
import sys
import tempfile
import time

import pytest

import guest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUEST_PY = os.path.join(REPO, "tests", "guest.py")
TRICKY_ARGS = ["a b", "", "two\nlines\n", "$HOME", "*", "'\"\\", "-n"]


def _marker_dir():
    # Under the repo, not /tmp: the guest's /tmp is its own tmpfs.
    path = os.path.join(REPO, ".cache", "test-guest-" + secrets.token_hex(4))
    os.makedirs(path)
    return path


@pytest.fixture(scope="module")
def booted(tmp_path_factory):
    """One boot running every command below; {name: (returncode, output)} plus the host-side files."""
    try:
        guest.ensure()
    except guest.GuestError as e:
        pytest.fail("the guest harness cannot run: %s" % e)
    marker = _marker_dir()
    with open(os.path.join(marker, "keep"), "w") as f:
        f.write("host\n")
    with open(os.path.join(marker, "gone"), "w") as f:
        f.write("host\n")
    results = str(tmp_path_factory.mktemp("results"))
    commands = {
        "true": ["true"],
        "exit3": ["sh", "-c", "exit 3"],
        "missing": ["sixbroker-no-such-program"],
        "output": ["sh", "-c", "printf 'line one\\nline two\\n'; echo err >&2; printf tail"],
        "args": ["printf", "[%s]\\n"] + TRICKY_ARGS,
        "where": ["sh", "-c", 'pwd; echo "$SIXBROKER_GUEST|$HOME|$EXTRA"; uname -r'],
        "sit": ["sh", "-c",
                "ip netns add t && "
                "ip -n t tunnel add s0 mode sit local 192.0.2.1 remote 192.0.2.2 ttl 64 && "
                "ip -n t -d link show s0"],
        "write": ["sh", "-c",
                  'cd "$1" && echo guest > keep && rm gone && echo new > new && cat keep && ls -1',
                  "sh", marker],
        "mounts": ["cat", "/proc/mounts"],
        "rofs": ["touch", guest.HOST_ROOT_IN_GUEST + marker + "/new"],
        "results": ["sh", "-c", 'echo from-guest > "$SIXBROKER_GUEST_RESULTS/r.txt"'],
    }
    names = list(commands)
    started = time.monotonic()
    try:
        out = guest.run_many([commands[n] for n in names], timeout=300, cwd=REPO,
                             env={"EXTRA": "x y"}, results=results)
    except guest.GuestError as e:
        pytest.fail("the guest did not run the commands: %s\n%s" % (e, e.output))
    finally:
        seconds = time.monotonic() - started
    res = dict(zip(names, out))
    res["_marker"] = marker
    res["_results"] = results
    res["_seconds"] = seconds
    yield res
    for name in ("keep", "gone", "new"):
        if os.path.exists(os.path.join(marker, name)):
            os.unlink(os.path.join(marker, name))
    os.rmdir(marker)


def test_exit_status_zero(booted):
    assert booted["true"] == (0, "")


def test_exit_status_three(booted):
    assert booted["exit3"][0] == 3


def test_missing_program_is_127(booted):
    rc, out = booted["missing"]
    assert rc == 127
    assert "sixbroker-no-such-program" in out


def test_output_captured_without_crlf(booted):
    # stdout and stderr both reach the console, in order; no \r from the tty; no trailing newline added.
    assert booted["output"] == (0, "line one\nline two\nerr\ntail")


def test_arguments_reach_the_program_unchanged(booted):
    assert booted["args"] == (0, "".join("[%s]\n" % a for a in TRICKY_ARGS))


def test_cwd_env_and_kernel(booted):
    rc, out = booted["where"]
    assert rc == 0
    pwd, env, release = out.rstrip("\n").split("\n")
    assert pwd == REPO
    assert env == "1|/root|x y"
    assert release == guest.ensure()["kernel_release"]
    assert release != os.uname().release


def test_sit_works_in_the_guest(booted):
    rc, out = booted["sit"]
    assert rc == 0, out
    assert "link/sit 192.0.2.1 peer 192.0.2.2" in out
    # `ip -d` names the link kind on the line after link/...: "sit ip6ip remote ... local ...".
    assert re.search(r"^\s+sit\s+ip6ip\s+remote 192\.0\.2\.2 local 192\.0\.2\.1 ttl 64\b", out, re.M), out


def test_guest_writes_stay_in_the_guest(booted):
    rc, out = booted["write"]
    marker = booted["_marker"]
    # Inside the guest the write, the delete and the new file all happened...
    assert rc == 0, out
    assert out == "guest\nkeep\nnew\n"
    # ...and none of it reached the host.
    with open(os.path.join(marker, "keep")) as f:
        assert f.read() == "host\n"
    assert os.path.exists(os.path.join(marker, "gone"))
    assert not os.path.exists(os.path.join(marker, "new"))


def test_root_is_an_overlay_on_a_read_only_share(booted):
    rc, out = booted["mounts"]
    assert rc == 0
    mounts = {}
    for line in out.splitlines():
        dev, point, fstype, opts = line.split()[:4]
        mounts[point] = (dev, fstype, opts.split(","))
    assert mounts["/"][:2] == ("overlay", "overlay")
    assert mounts["/tmp"][1] == "tmpfs"
    assert mounts["/run"][1] == "tmpfs"
    assert mounts[guest.SHARE_IN_GUEST][:2] == ("run", "9p")
    # The overlay's lower layer, the host's /, is read-only: a direct write fails.
    dev, fstype, opts = mounts[guest.HOST_ROOT_IN_GUEST]
    assert (dev, fstype) == ("hostroot", "9p") and "ro" in opts
    rc, out = booted["rofs"]
    assert rc == 1 and "Read-only file system" in out


def test_results_are_copied_out(booted):
    with open(os.path.join(booted["_results"], "r.txt")) as f:
        assert f.read() == "from-guest\n"


def test_timeout_kills_the_guest():
    started = time.monotonic()
    with pytest.raises(guest.GuestError) as e:
        guest.run(["sleep", "600"], timeout=3)
    assert "timed out after 3 s" in str(e.value)
    assert time.monotonic() - started < 15


def test_kernel_panic_is_a_failure_not_a_hang():
    with pytest.raises(guest.GuestError) as e:
        guest.run(["sh", "-c", "echo c > /proc/sysrq-trigger; sleep 600"], timeout=300)
    assert "kernel panic" in str(e.value)


def test_cli_streams_output_and_exits_with_the_status():
    p = subprocess.run([sys.executable, GUEST_PY, "run", "--", "sh", "-c", "echo out; echo err >&2; exit 3"],
                       cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    assert p.returncode == 3, p.stderr
    assert p.stdout == b"out\nerr\n"


def test_cli_harness_failure_is_125_with_a_message():
    p = subprocess.run([sys.executable, GUEST_PY, "run", "--", "true"], cwd="/run",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 125
    assert p.stderr.startswith(b"guest: cannot run in /run")


def test_a_working_directory_under_tmp_is_the_hosts():
    # CI may clone the repository under /tmp, which in the guest is a tmpfs of its own
    d = tempfile.mkdtemp(prefix="sixbroker-guest-cwd-", dir="/tmp")
    try:
        with open(os.path.join(d, "marker"), "w") as f:
            f.write("from the host\n")
        rc, out = guest.run(["sh", "-c", "cat marker && echo new > written && cat written"], cwd=d, timeout=300)
        assert (rc, out) == (0, "from the host\nnew\n")
        assert not os.path.exists(os.path.join(d, "written"))     # the guest's writes stay in the guest
    finally:
        shutil.rmtree(d)


@pytest.mark.parametrize("chunk", [1, 2, 7, 1000])
def test_splitter_cuts_at_markers_in_any_chunking(chunk):
    token = "0123abcd"
    stream = (b"kernel noise\r\n\n" + token.encode() + b":0:start\n"
              b"first\n\n" + token.encode() + b":0:end\n"
              b"\n" + token.encode() + b":1:start\n"
              b"no newline, a foreign \n99999999:0:end\n and our token mid-line " + token.encode() + b":0:end"
              b"\n" + token.encode() + b":1:end\n[ 9.1] reboot: Power down\r\n")
    s = guest._Splitter(token, 2, echo=False)
    for i in range(0, len(stream), chunk):
        s.feed(stream[i:i + chunk])
    s.close()
    assert bytes(s.outputs[0]) == b"first\n"
    assert bytes(s.outputs[1]) == (b"no newline, a foreign \n99999999:0:end\n and our token mid-line "
                                   + token.encode() + b":0:end")
    assert bytes(s.console) == b"kernel noise\r\n[ 9.1] reboot: Power down\r\n"


def test_bad_input_is_refused_before_booting():
    with pytest.raises(guest.GuestError):
        guest.run("ip link")
    with pytest.raises(guest.GuestError):
        guest.run(["true"], env={"BAD NAME": "x"})
    with pytest.raises(guest.GuestError):
        guest.run(["true"], cwd="/proc")
    with pytest.raises(guest.GuestError):
        guest.run_many([])
