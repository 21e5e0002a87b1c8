"""Our nftables table into the kernel: `nft` run to load it whole, change it by set elements, list it
and read its counters.

CPython only (it runs `nft`).  The table's text comes from nft_table.py; the proof that it is still as we
left it, without running nft, from nft_token.py.

Idempotence: the loaded table is compared with the desired one (after nft_table.normalise()) and nothing
is loaded when they are equal; counters keep counting.
"""

import json
import os
import subprocess
import tempfile

from sixbroker.linux import nft_table, nft_token
from sixbroker.linux.netns import InNetns
from sixbroker.linux.nft_table import FAMILY, PEERS, SPOOFED, SPOOFED4, TABLE, check_name, normalise
from sixbroker.core.errors import SixbrokerError


class Result:
    """What one apply did: `changed` is whether a transaction was loaded (0 or 1 of them)."""

    def __init__(self, changed, text=None):
        self.changed = changed
        self.transactions = 1 if changed else 0
        self.text = text

    def __repr__(self):
        return "apply_nft.Result(changed=%r)" % self.changed


# ---- running nft -------------------------------------------------------------------------------

def run(args, netns=None, stdin=None):
    """nft with args in the namespace, in the C locale; the finished process (its output as text)."""
    # the child inherits the namespace of the thread that forks it: no `ip netns exec` (which also
    # remounts /sys, ~10x the cost of nft itself under TCG)
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    # Output into files, not pipes: nft writes a listing in many small pieces, and a pipe costs Python one
    # wake-up per piece (25,000 of them for our table at 10,000 tunnels, seconds); a file costs none.
    try:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            with InNetns(netns):
                p = subprocess.run(["nft"] + args, input=None if stdin is None else stdin.encode(),
                                   stdout=out, stderr=err, env=env)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(p.args, p.returncode, out.read().decode(errors="replace"),
                                               err.read().decode(errors="replace"))
    except FileNotFoundError as e:
        raise SixbrokerError("NFT_MISSING", str(e))


def error_line(stderr):
    """The line of nft's stderr that says what went wrong."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        if "Error:" in ln:
            return ln
    return lines[0] if lines else "no message"


def loaded(table=TABLE, netns=None):
    """Our table as `nft -s list` prints it, or None when there is none."""
    check_name(table)
    p = run(["-s", "list", "table", FAMILY, table], netns)
    if p.returncode == 0:
        return p.stdout
    if "No such file or directory" in p.stderr:
        return None
    raise SixbrokerError("NFT_FAIL", error_line(p.stderr))


def _load(text, netns):
    p = run(["-f", "-"], netns, stdin=text)
    if p.returncode != 0:
        raise SixbrokerError("NFT_FAIL", error_line(p.stderr))


def _replace_text(table, body):
    # declaring the table first makes the delete valid when it does not exist yet; all of it is one
    # transaction, so the old table is never half gone and no packet passes without one of them
    head = "table " + FAMILY + " " + table + "\ndelete table " + FAMILY + " " + table + "\n"
    return head + (body or "")


def apply(plans, netns=None, table=TABLE, exempt=(), mss_clamp=True, shared=None):
    """Make our table exactly what the plans want; load nothing when it already is.  shared: the shared
    device's name when the tunnels run over one (nft_table.py)."""
    desired = nft_table.ruleset(plans, table, exempt, mss_clamp, shared)
    current = loaded(table, netns)
    if normalise(current) == normalise(desired):
        return Result(False, desired)
    _load(_replace_text(table, desired), netns)
    return Result(True, desired)


def change(before, after, other, netns=None, table=TABLE, mss_clamp=True, shared=None):
    """Apply nft_table.change_text() as one transaction; a Result, or None when it cannot be done by elements or
    the table refused it (not there, an element already gone): the caller applies the whole table.
    The Result's `delta` is what the change adds to the table's digest (see nft_token.token()), None when an
    element's kernel form is not known here."""
    parts = nft_table.change_parts(before, after, other, table, mss_clamp, shared)
    if parts is None:
        return None
    text, moves = parts
    if not text:
        return Result(False, text)
    p = run(["-f", "-"], netns, stdin=text)
    if p.returncode != 0:
        return None
    result = Result(True, text)
    result.delta = nft_token.delta(moves)
    return result


def remove(table=TABLE, netns=None):
    """Delete our table; True when there was one."""
    if loaded(table, netns) is None:
        return False
    _load(_replace_text(table, None), netns)
    return True


def _element_counters(s):
    """{key: {packets, bytes}} of one set as `nft -j` lists it; a concatenated key joined by " . "."""
    out = {}
    for e in s.get("elem", []):
        el = e.get("elem", e) if isinstance(e, dict) else e
        val = el.get("val") if isinstance(el, dict) else el
        cnt = (el.get("counter") if isinstance(el, dict) else None) or {}
        if isinstance(val, dict) and "concat" in val:
            val = " . ".join(str(v) for v in val["concat"])
        out[str(val)] = {"packets": cnt.get("packets", 0), "bytes": cnt.get("bytes", 0)}
    return out


def _listed_json(args, netns):
    p = run(["-j", "list"] + args, netns)
    if p.returncode != 0:
        if "No such file or directory" in p.stderr:
            return None
        raise SixbrokerError("NFT_FAIL", error_line(p.stderr))
    return json.loads(p.stdout).get("nftables", [])


def counters(table=TABLE, netns=None):
    """Counters of our table: {"peers": {"local . peer": {packets, bytes}}, "spoofed": {device: {...}},
    "rules": {name: {...}}}.  A rule over a set is named for the set."""
    check_name(table)
    items = _listed_json(["table", FAMILY, table], netns)
    if items is None:
        return None
    out = {"peers": {}, "spoofed": {}, "rules": {}}
    index = {}
    for item in items:
        s = item.get("set")
        if s and s.get("name") == PEERS:
            out["peers"] = dict((k, v) for k, v in _element_counters(s).items() if " . " in k)
        elif s and s.get("name") in (SPOOFED, SPOOFED4):
            out["spoofed"].update(_element_counters(s))
        r = item.get("rule")
        if r:
            chain = r.get("chain")
            index[chain] = index.get(chain, 0) + 1
            cnt = None
            for stmt in r.get("expr", []):
                if isinstance(stmt, dict) and "counter" in stmt:
                    cnt = stmt["counter"]
            if cnt is not None:
                name = r.get("comment") or chain + ":" + str(index[chain])
                out["rules"][name] = {"packets": cnt.get("packets", 0), "bytes": cnt.get("bytes", 0)}
    return out


def spoofed(table=TABLE, netns=None, shared=False):
    """Packets dropped for an inner source outside the tunnel's prefixes: {device: {packets, bytes}}, or
    with shared, {peer IPv4: {...}} (the shared device's check is on the outer packet), from one set
    (cheaper than counters()); {} when there is no table or no guarded tunnel."""
    check_name(table)
    items = _listed_json(["set", FAMILY, table, SPOOFED4 if shared else SPOOFED], netns)
    for item in items or []:
        if "set" in item:
            return _element_counters(item["set"])
    return {}
