"""files/broker/sixbroker.service: what systemd reads from it, and what its commands do.

systemd is installed here but is not PID 1 (the build machine's PID 1 is its own process manager), so
no unit can be started or reloaded for real.  Two checks stand in for that:
- `systemd-analyze verify` (systemd 252, Debian 12) parses the unit as PID 1 would and complains about
  unknown or misspelt directives (shown with a misspelt copy: the check is not vacuous);
- the commands systemd would run (ExecStart=, ExecReload=) are run here as systemd runs them: argv split
  by white space, the environment from EnvironmentFile=, the console script from PATH.  The real-kernel
  suite (tests/e2e/test_broker_firewall.py) runs the reload after Debian's `nftables.service` reload.
Propagation itself is systemd's documented behaviour (systemd.unit(5)): ReloadPropagatedFrom=X queues a
reload of this unit whenever X is reloaded; PartOf=X carries X's stop and restart only.
"""

import configparser
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(REPO, "files", "broker", "sixbroker.service")
NFTABLES_UNIT = "/lib/systemd/system/nftables.service"


def unit(path=UNIT):
    u = configparser.ConfigParser(strict=False, interpolation=None)
    u.optionxform = str
    with open(path) as f:
        u.read_file(f)
    return u


def _verify(path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    p = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True)
    return [ln for ln in (p.stdout + p.stderr).splitlines() if os.path.basename(path) in ln]


def _clean_and_a_typo_caught(path, good, typo, tmp_path):
    assert _verify(path) == []
    bad = tmp_path / os.path.basename(path)
    with open(path) as f:
        bad.write_text(f.read().replace(good, typo))
    assert any(typo.rstrip("=") in ln for ln in _verify(str(bad)))


def test_systemd_reads_the_unit_without_a_complaint(tmp_path):
    _clean_and_a_typo_caught(UNIT, "ReloadPropagatedFrom=", "ReloadPropagatedFrum=", tmp_path)


def test_a_reload_of_nftables_reloads_us_and_a_restart_restarts_us():
    u = unit()["Unit"]
    assert u["ReloadPropagatedFrom"] == "nftables.service"
    assert u["PartOf"] == "nftables.service"
    with open(UNIT) as f:
        after = [ln.split("=", 1)[1].strip() for ln in f if ln.startswith("After=")]
    assert "nftables.service" in after            # our reload job runs after nftables' own
    s = unit()["Service"]
    assert s["ExecReload"] == s["ExecStart"]
    if os.path.exists(NFTABLES_UNIT):
        # Debian's reload is the same load as its start: `flush ruleset` first, our table gone
        n = unit(NFTABLES_UNIT)["Service"]
        assert n["ExecReload"] == n["ExecStart"] == "/usr/sbin/nft -f /etc/nftables.conf"


def test_the_unit_follows_the_configured_database_and_has_no_fixed_condition():
    u = unit()
    assert not any(k.startswith("Condition") for k in u["Unit"])
    assert u["Service"]["EnvironmentFile"] == "-/etc/default/sixbroker"     # "-": the file is optional
    assert u["Service"]["ReadWritePaths"].startswith("-")                  # a missing default dir is fine


def _environment_file(path):
    """KEY=VALUE lines as systemd reads an EnvironmentFile (comments and blank lines skipped)."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", ";")):
                k, _, v = line.partition("=")
                env[k.strip()] = v.strip().strip('"')
    return env


def _run_as_systemd(key, env_file):
    argv = unit()["Service"][key].split()
    env = {"PATH": os.path.dirname(sys.executable) + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "LANG": "C.UTF-8"}
    env.update(_environment_file(env_file))
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.skipif(not os.path.exists(os.path.join(os.path.dirname(sys.executable), "sixbroker")),
                    reason="the console script is not installed in this environment (make bootstrap)")
@pytest.mark.parametrize("key", ["ExecStart", "ExecReload"])
def test_never_initialised_is_a_message_and_success_not_a_failed_unit(tmp_path, key):
    db = tmp_path / "elsewhere" / "broker.db"
    env_file = tmp_path / "sixbroker"
    env_file.write_text("# /etc/default/sixbroker\nSIXBROKER_DB=%s\n" % db)
    p = _run_as_systemd(key, str(env_file))
    assert p.returncode == 0, p.stderr
    assert p.stdout == "no database at %s: nothing to apply\n" % db and p.stderr == ""
    assert not os.path.exists(str(db)) and not os.path.exists(str(db.parent))   # nothing created


@pytest.mark.skipif(not os.path.exists(os.path.join(os.path.dirname(sys.executable), "sixbroker")),
                    reason="the console script is not installed in this environment (make bootstrap)")
def test_an_empty_postgresql_database_is_a_message_and_success_not_a_failed_unit(tmp_path, pg_url):
    """The PostgreSQL counterpart of "no database yet": the boot-time apply of a PoP whose database the
    operator made but nobody has `init`ed (the environment file as files/broker/README.md writes it)."""
    from test_broker import pg_dump
    env_file = tmp_path / "sixbroker"
    env_file.write_text("SIXBROKER_DB=%s\nSIXBROKER_STATE_DIR=%s\n" % (pg_url, tmp_path / "state"))
    p = _run_as_systemd("ExecStart", str(env_file))
    assert p.returncode == 0, p.stderr
    assert p.stdout == "an empty database at %s: nothing to apply\n" % pg_url and p.stderr == ""
    assert pg_dump(pg_url) == ""            # nothing created in it


@pytest.mark.skipif(not os.path.exists(os.path.join(os.path.dirname(sys.executable), "sixbroker")),
                    reason="the console script is not installed in this environment (make bootstrap)")
def test_the_unit_applies_the_database_the_environment_file_names(tmp_path):
    # an uninitialised broker database at a non-default path: the unit's command reaches it (and says
    # what is wrong with it) instead of looking at the default path
    db = tmp_path / "broker.db"
    db.write_bytes(b"")
    env_file = tmp_path / "sixbroker"
    env_file.write_text("SIXBROKER_DB=%s\n" % db)
    p = _run_as_systemd("ExecStart", str(env_file))
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "no database at" not in p.stdout


SERVE_UNIT = os.path.join(REPO, "files", "broker", "sixbroker-serve.service")


def test_systemd_reads_the_serve_unit_without_a_complaint(tmp_path):
    _clean_and_a_typo_caught(SERVE_UNIT, "RestartSec=", "RestartSek=", tmp_path)


def test_the_serve_unit_runs_serve_after_the_apply_unit():
    u = unit(SERVE_UNIT)
    assert "sixbroker.service" in u["Unit"]["After"].split()
    argv = u["Service"]["ExecStart"].split()
    assert argv[:4] == ["/usr/bin/env", "sixbroker", "server", "serve"]
    assert u["Service"]["Restart"] == "on-failure"
