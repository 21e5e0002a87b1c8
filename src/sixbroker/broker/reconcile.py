"""Database -> plans -> kernel and firewall.

A full reconcile starts from the whole database and ends with the kernel and the nftables table holding
exactly what it says (the appliers add what is missing, fix what differs and remove what the broker owns
and no longer wants), so it is safe to run at any time, any number of times: at boot
(files/broker/sixbroker.service), by hand after a crash, and after `init`.

Two shortcuts keep the common cases from costing what the whole database costs:
- add, remove and set change one tunnel: only its device (apply_kernel.apply(only=...)) and its nftables
  set elements (apply_nft.change) are touched, when the record below shows that everything else was in
  line after the previous change;
- `apply` with nothing to do: the `applied` record (db.py) holds the database generation last applied,
  the kernel's fingerprint (apply_kernel.fingerprint: a sum of one hash per device of ours, so one tunnel's
  change updates it exactly) and the nftables token (boot, namespace, ruleset generation, and a digest
  of our table alone: nft_token.token).  When all three still hold, the kernel and the firewall are as
  they were when they last matched this very database: one dump and no plan.  Another nftables user's
  change (fail2ban, Docker) moves the generation but not our table's digest, so it costs one netlink
  read of our table, not the full path.  Anything else (a reboot, a device deleted by hand, our table
  changed or gone, an upgrade of sixbroker) fails one of them and the full reconcile runs.
A record is written after every reconcile that ran to its end; an incremental change carries it forward
only from a record of the generation just before it.

One tunnel never takes the others down: the kernel applier reconciles each device on its own, and what
it could not do for a tunnel (its error code and words) is kept in the `faults` table, shown by `list`
and `show`, reported by the command (`failed`) and tried again by every `apply` (no "nothing to do"
while a fault is recorded).  The firewall step runs whatever the kernel step did, so our table is
loaded even when the kernel step failed as a whole.

The appliers are reached through one object (`kernel(state)`, `firewall(state)`, and optionally the
incremental and fingerprint methods of KernelAndNft), so tests give a fake one (module hook APPLIER, or
the `applier` argument), which then always gets the full reconcile.

The tunnel mode (db.tunnel_mode: a sit device per tunnel, or one shared NBMA device: linux/sit.py) is
part of the desired state: the appliers map the same plans either way.  switch_mode() changes it for a
broker with tunnels: the kernel moves every tunnel one at a time (apply_kernel.migrate, each one's
switch timed), then the full reconcile runs in the new mode.

Fault injection: SIXBROKER_CRASH_AFTER=commit kills the process (SIGKILL, no clean-up of any kind) right
after a change is committed, before the kernel is touched; =kernel after the kernel is changed, before
the firewall.  The real-kernel tests use it to show that `apply` repairs either.
"""

import os
import signal

from sixbroker import VERSION
from sixbroker.broker import db, service
from sixbroker.core.errors import SixbrokerError

CRASH_ENV = "SIXBROKER_CRASH_AFTER"
CRASH_POINTS = ("commit", "kernel")

# Tests set this to an object with kernel(state) and firewall(state); None means the real appliers.
APPLIER = None


def crash_point(name):
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def desired(conn):
    """The whole desired state, plain data: what the appliers get."""
    server, plans = service.plans(conn)
    return _state(server, plans, len(plans))


def _state(server, plans, count):
    return {
        "netns": server["netns"],
        "tunnel_mode": db.tunnel_mode(server),
        "shared_device": service.SHARED_DEVICE,
        "device_prefix": service.DEVICE_PREFIX,
        "sysctls": service.base_sysctls(server, count),
        "plans": plans,
    }


def mapping(state, mode=None):
    """The kernel mapping (linux/sit.py) of a state's tunnel mode, or of `mode`."""
    from sixbroker.linux import sit
    if (mode or state.get("tunnel_mode")) == "shared":
        return sit.SharedSit(state.get("shared_device") or service.SHARED_DEVICE)
    return sit.PerTunnelSit()


def shared_device(state):
    """The shared device's name in shared mode, else None (what the firewall needs to know)."""
    return state.get("shared_device") or service.SHARED_DEVICE if state.get("tunnel_mode") == "shared" else None


class KernelAndNft:
    """The real appliers: netlink for the kernel, one nftables table of our own."""

    SCOPE = "broker"        # apply_kernel marks our devices `sixbroker:broker` (their alias)

    def __init__(self):
        self.foreign = ()
        self.fingerprint = None

    def kernel(self, state):
        from sixbroker.linux import apply_kernel, sysctl
        try:
            result = apply_kernel.apply(state["plans"], netns=state["netns"], scope=self.SCOPE,
                                        prefix=state["device_prefix"], isolate=True, mapping=mapping(state))
        except SixbrokerError:
            # the firewall is loaded all the same (reconcile()): it still needs the foreign pairs
            try:
                self.foreign = apply_kernel.foreign_tunnels(state["netns"], self.SCOPE)
            except SixbrokerError:
                pass
            raise
        # the plans carry the sysctls too, but a broker with no tunnel yet must forward all the same
        sysctl.apply(state["sysctls"], state["netns"], result)
        # sit devices that are not ours: the firewall must not drop their protocol 41
        self.foreign = list(result.foreign_tunnels)
        self.fingerprint = result.fingerprint
        return {"changes": list(result.changes), "foreign_tunnels": ["%s -> %s" % p for p in self.foreign],
                "failed": _failures(result)}

    def firewall(self, state):
        from sixbroker.linux import apply_nft
        result = apply_nft.apply(state["plans"], netns=state["netns"], exempt=self.foreign,
                                 shared=shared_device(state))
        return {"changed": bool(result.changed)}

    # ---- one tunnel, and the record -------------------------------------------------------------------

    def kernel_change(self, state, devices):
        """Apply state["plans"] (of the named devices only); the fingerprint's change."""
        from sixbroker.linux import apply_kernel, sysctl
        result = apply_kernel.apply(state["plans"], netns=state["netns"], scope=self.SCOPE,
                                    prefix=state["device_prefix"], only=devices, isolate=True,
                                    mapping=mapping(state), before=state.get("before"))
        sysctl.apply(state["sysctls"], state["netns"], result)
        return {"changes": list(result.changes), "failed": _failures(result)}, result.fingerprint

    def firewall_text(self, before, after, other, shared=None):
        from sixbroker.linux import nft_table
        return nft_table.change_text(before, after, other, shared=shared)

    def firewall_change(self, netns, before, after, other, shared=None):
        from sixbroker.linux import apply_nft
        result = self.nft_change = apply_nft.change(before, after, other, netns=netns, shared=shared)
        return None if result is None else {"changed": bool(result.changed)}

    def sysctls(self, state):
        from sixbroker.linux import sysctl
        return list(sysctl.apply(state["sysctls"], state["netns"]).changes)

    def kernel_fingerprint(self, netns):
        from sixbroker.linux import apply_kernel
        return apply_kernel.fingerprint(netns, scope=self.SCOPE, prefix=service.DEVICE_PREFIX)

    def nft_token(self, netns, known=None):
        from sixbroker.linux import nft_token
        return nft_token.token(netns, known=known)

    def host_firewall(self, plans, uplink, netns, shared=None):
        from sixbroker.broker import hostfacts, hostfw
        if shared:
            # every tunnel's IPv6 comes and goes through the one device: that is what other tables see
            plans = [dict(p, tunnel=dict(p["tunnel"], device=shared)) for p in plans]
        if uplink is None and plans:
            uplink = hostfacts.default_route_device4(netns)
        return hostfw.describe(hostfw.check(plans, uplink, netns=netns), netns)

    def spoofed(self, netns, shared=False):
        from sixbroker.linux import apply_nft
        return apply_nft.spoofed(netns=netns, shared=shared)

    def migrate(self, state, old_mode, new_mode):
        """Move the kernel's tunnels from one mode's devices to the other's: {device: seconds}, failures."""
        from sixbroker.linux import apply_kernel
        result, outage = apply_kernel.migrate(state["plans"], mapping(state, old_mode), mapping(state, new_mode),
                                              netns=state["netns"], scope=self.SCOPE, prefix=state["device_prefix"])
        return outage, _failures(result)

    def traffic(self, netns):
        from sixbroker.linux import traffic
        return traffic.read(netns)

    def nft_token_same(self, a, b):
        from sixbroker.linux import nft_token
        return nft_token.token_same(a, b)

    def nft_token_after(self, netns, before):
        """The token after the last firewall_change, from the one before it."""
        from sixbroker.linux import nft_token
        return nft_token.token_after(before, self.nft_change, netns)

    def ndp(self, state):
        from sixbroker.linux import apply_ndp
        return {"changes": apply_ndp.apply(state).changes}


def _failures(result):
    return dict((dev, [e.code, e.text]) for dev, e in result.failures.items())


def ndp(conn, a, report, state=None):
    """Proxy NDP on the uplink (an on-link /64: apply_ndp.py) after the kernel and the firewall; an
    applier without it (the tests' fakes) skips it.  Not in the record: its own dump is its proof."""
    if hasattr(a, "ndp"):
        report["ndp"] = a.ndp(state or service.ndp_state(conn))
    return report


def applier():
    return APPLIER if APPLIER is not None else KernelAndNft()


def _by_tunnel(conn, failed):
    """{device: [code, message]} from an applier as {tunnel: (code, message)}; a device that is no
    tunnel's (one of ours that could not be deleted) under its own name."""
    if not failed:
        return {}           # the common case reads no tunnel at all
    names = dict((r[1], r[0]) for r in conn.execute("SELECT name, device FROM tunnels WHERE pop = ?", (conn.pop,)))
    return dict((names.get(dev, dev), (c, m)) for dev, (c, m) in failed.items())


def _with_faults(conn, report):
    """The report with `failed`: every tunnel the database knows to be out of line now."""
    report["failed"] = [{"tunnel": name, "device": service.device_of(name), "code": f["code"],
                         "message": f["message"]} for name, f in sorted(db.faults(conn).items())]
    return report


def _recorded(conn, gen):
    """The `applied` record when it is for generation gen of this very sixbroker, else None."""
    rec = db.applied(conn)
    if rec is None or rec["generation"] != gen or rec["version"] != VERSION:
        return None
    return rec


def _fp_text(kernel_fp):
    from sixbroker.linux.apply_kernel import FP_MOD
    return "%032x" % (kernel_fp % FP_MOD)


def _record(conn, gen, kernel_fp, token, foreign):
    """Generation gen is what the kernel and the table now hold.  Never the generation read after the
    apply: a writer that holds no lock of ours (another PoP's host) may have committed meanwhile, and a
    record naming its generation would make every later apply skip its change as done."""
    db.record_applied(conn, gen, VERSION, _fp_text(kernel_fp), token, "\n".join(foreign))


def _recorded_foreign(rec):
    return [f for f in rec["foreign_tunnels"].split("\n") if f]


def reconcile(conn, using=None):
    """Bring the kernel and the firewall in line with the database; a report of what each applier did."""
    # the plans kept on a connection (service.plans) serve one apply and its host-firewall check, never a
    # later reconcile: a long-lived connection (serve's follower) must not trust a generation number to
    # name one state (a transaction that rolled back, or commits lost with the database, can reuse one)
    conn.plans_memo = None
    a = using or applier()
    incremental = hasattr(a, "kernel_fingerprint")
    if incremental:
        report = _unchanged(conn, a)
        if report is not None:
            return ndp(conn, a, report)
    # read before the desired state: a commit between the two is then applied but not recorded, which
    # costs the next apply a full compare, never a change skipped
    gen = db.generation(conn)
    state = desired(conn)
    kernel_error = None
    try:
        kernel = a.kernel(state)
    except Exception as e:
        # the firewall does not depend on the kernel step: our table is loaded whatever it says
        kernel_error = e
    crash_point("kernel")
    try:
        firewall = a.firewall(state)
    except Exception:
        if kernel_error is not None:
            raise kernel_error
        raise
    if kernel_error is not None:
        raise kernel_error
    db.record_faults(conn, _by_tunnel(conn, kernel.pop("failed", None) or {}))
    if incremental:
        _record(conn, gen, a.fingerprint, a.nft_token(state["netns"]), kernel["foreign_tunnels"])
    else:
        # no proof for a later shortcut (nft None), only that this generation was applied (list's state)
        db.record_applied(conn, gen, VERSION, "", None, "")
    return ndp(conn, a, _with_faults(conn, {"tunnels": len(state["plans"]), "kernel": kernel, "firewall": firewall}))


def _unchanged(conn, a):
    """The report of an apply with nothing to do, when the record proves it; else None."""
    rec = _recorded(conn, db.generation(conn))
    if rec is None or rec["nft"] is None or db.faults(conn):
        return None         # (a tunnel that failed is tried again by every apply)
    server = db.server(conn)
    count = db.tunnel_count(conn, active=True)
    state = _state(server, [], count)
    if _fp_text(a.kernel_fingerprint(state["netns"])) != rec["kernel"]:
        return None
    if not a.nft_token_same(a.nft_token(state["netns"], rec["nft"]), rec["nft"]):
        return None
    # sysctls are not in the fingerprint: read (and set) every time, a few small files
    changes = a.sysctls(state)
    return {"tunnels": count, "kernel": {"changes": changes, "foreign_tunnels": _recorded_foreign(rec)},
            "firewall": {"changed": False}, "unchanged": True, "failed": []}


class Change:
    """What add, remove and set remember before their commit, for applying just that tunnel afterwards."""

    def __init__(self, conn, name):
        self.name = name
        self.generation = db.generation(conn)
        self.before = service.plan_of(conn, name)


def reconcile_change(conn, change, using=None):
    """Apply one tunnel's change (see Change) when the record allows it, else the full reconcile."""
    a = using or applier()
    if not hasattr(a, "kernel_change"):
        return reconcile(conn, a)
    # the generations around this change's own commit (db.transaction track): the record must be of the
    # one it started from, and nobody may have committed between the plan kept in `change` and it
    moved = getattr(conn, "tracked", None)
    if moved is None or moved[0] != change.generation:
        return reconcile(conn, a)
    rec = _recorded(conn, moved[0])
    if rec is None or rec["nft"] is None:
        return reconcile(conn, a)
    server = db.server(conn)
    after = service.plan_of(conn, change.name)
    other = service.another_plan(conn, change.name)
    before = [change.before] if change.before else []
    after_list = [after] if after else []
    count = db.tunnel_count(conn, active=True)
    state = _state(server, after_list, count)
    state["before"] = before
    shared = shared_device(state)
    if a.firewall_text(before, after_list, other, shared=shared) is None:
        return reconcile(conn, a)         # the first or the last tunnel: the table's rules change
    devices = set(p["tunnel"]["device"] for p in before + after_list)
    token = a.nft_token(state["netns"], rec["nft"])
    try:
        kernel, delta = a.kernel_change(state, devices)
    except Exception:
        # not this tunnel's failure but the kernel step's: the full reconcile, which loads the firewall
        # all the same and then says what went wrong
        return reconcile(conn, a)
    db.record_faults(conn, _by_tunnel(conn, kernel.pop("failed", None) or {}), names=[change.name])
    crash_point("kernel")
    firewall = a.firewall_change(state["netns"], before, after_list, other, shared=shared)
    if firewall is None:
        # the table was not as recorded (deleted, an element gone): the whole of it, and a new record
        return reconcile(conn, a)
    if not a.nft_token_same(token, rec["nft"]):
        new_token = None    # our table was not as recorded: the next apply compares it in full
    else:
        new_token = a.nft_token_after(state["netns"], token)
    foreign = _recorded_foreign(rec)
    # fingerprints add up (apply_kernel): the record's plus what this change added
    _record(conn, moved[1], int(rec["kernel"], 16) + delta, new_token, foreign)
    kernel["foreign_tunnels"] = foreign
    return ndp(conn, a, _with_faults(conn, {"tunnels": count, "kernel": kernel, "firewall": firewall, "incremental": True}))


def switch_mode(conn, mode, using=None):
    """Change the tunnel mode: saved, then every tunnel moved (apply_kernel.migrate); the caller runs the
    full reconcile after it, which repairs whatever the move left undone.  {tunnel: seconds of its
    switch}, or None when the mode was this one already."""
    mode = service.check_tunnel_mode(mode)
    old = db.tunnel_mode(db.server(conn))
    if old == mode:
        return None
    db.set_tunnel_mode(conn, mode)
    crash_point("commit")
    a = using or applier()
    outage = {}
    state = desired(conn)
    if state["plans"] and hasattr(a, "migrate"):
        try:
            outage = a.migrate(state, old, mode)[0]
        except SixbrokerError:
            pass            # the full reconcile below does it the slow way and says what failed
    names = dict((r[1], r[0]) for r in conn.execute("SELECT name, device FROM tunnels"))
    return dict((names.get(dev, dev), seconds) for dev, seconds in outage.items())


def abandon(netns, using=None):
    """Remove everything of ours from a namespace the broker no longer uses (init --netns moved it)."""
    state = {"netns": netns, "device_prefix": service.DEVICE_PREFIX, "sysctls": [], "plans": []}
    a = using or applier()
    return ndp(None, a, {"kernel": a.kernel(state), "firewall": a.firewall(state)}, {"netns": netns, "uplink": None})
