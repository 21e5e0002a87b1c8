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
  change updates it exactly) and the nftables token (boot, namespace, ruleset generation).  When all three
  still hold, the kernel and the firewall are as they were when they last matched this very database:
  one dump and no plan.  Anything else (a reboot, a device deleted by hand, another table loaded, an
  upgrade of sixbroker) fails one of them and the full reconcile runs.
A record is written only after a reconcile succeeded; an incremental change carries it forward only from a
record of the generation just before it.

The appliers are reached through one object (`kernel(state)`, `firewall(state)`, and optionally the
incremental and fingerprint methods of KernelAndNft), so tests give a fake one (module hook APPLIER, or
the `applier` argument), which then always gets the full reconcile.

Fault injection: SIXBROKER_CRASH_AFTER=commit kills the process (SIGKILL, no clean-up of any kind) right
after a change is committed, before the kernel is touched; =kernel after the kernel is changed, before
the firewall.  The real-kernel tests use it to show that `apply` repairs either.
"""

import os
import signal

from sixbroker import VERSION
from sixbroker.broker import db, service

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
        "device_prefix": service.DEVICE_PREFIX,
        "sysctls": service.base_sysctls(server, count),
        "plans": plans,
    }


class KernelAndNft:
    """The real appliers: netlink for the kernel, one nftables table of our own."""

    SCOPE = "broker"        # apply_kernel marks our devices `sixbroker:broker` (their alias)

    def __init__(self):
        self.foreign = ()
        self.fingerprint = None

    def kernel(self, state):
        from sixbroker import apply_kernel
        result = apply_kernel.apply(state["plans"], netns=state["netns"], scope=self.SCOPE,
                                    prefix=state["device_prefix"])
        # the plans carry the sysctls too, but a broker with no tunnel yet must forward all the same
        apply_kernel.apply_sysctls(state["sysctls"], state["netns"], result)
        # sit devices that are not ours: the firewall must not drop their protocol 41
        self.foreign = list(result.foreign_tunnels)
        self.fingerprint = result.fingerprint
        return {"changes": list(result.changes), "foreign_tunnels": ["%s -> %s" % p for p in self.foreign]}

    def firewall(self, state):
        from sixbroker import apply_nft
        result = apply_nft.apply(state["plans"], netns=state["netns"], exempt=self.foreign)
        return {"changed": bool(result.changed)}

    # ---- one tunnel, and the record -------------------------------------------------------------------

    def kernel_change(self, state, devices):
        """Apply state["plans"] (of the named devices only); the fingerprint's change."""
        from sixbroker import apply_kernel
        result = apply_kernel.apply(state["plans"], netns=state["netns"], scope=self.SCOPE,
                                    prefix=state["device_prefix"], only=devices)
        apply_kernel.apply_sysctls(state["sysctls"], state["netns"], result)
        return {"changes": list(result.changes)}, result.fingerprint

    def firewall_text(self, before, after, other):
        from sixbroker import apply_nft
        return apply_nft.change_text(before, after, other)

    def firewall_change(self, netns, before, after, other):
        from sixbroker import apply_nft
        result = apply_nft.change(before, after, other, netns=netns)
        return None if result is None else {"changed": bool(result.changed)}

    def sysctls(self, state):
        from sixbroker import apply_kernel
        return list(apply_kernel.apply_sysctls(state["sysctls"], state["netns"]).changes)

    def kernel_fingerprint(self, netns):
        from sixbroker import apply_kernel
        return apply_kernel.fingerprint(netns, scope=self.SCOPE, prefix=service.DEVICE_PREFIX)

    def nft_token(self, netns):
        from sixbroker import apply_nft
        return apply_nft.token(netns)

    def host_firewall(self, plans, uplink, netns):
        from sixbroker.broker import hostfw
        if uplink is None and plans:
            uplink = hostfw.uplink_of(netns)
        return hostfw.describe(hostfw.check(plans, uplink, netns=netns), netns)

    def spoofed(self, netns):
        from sixbroker import apply_nft
        return apply_nft.spoofed(netns=netns)

    def nft_token_follows(self, before, after):
        from sixbroker import apply_nft
        return apply_nft.token_follows(before, after)


def applier():
    return APPLIER if APPLIER is not None else KernelAndNft()


def _recorded(conn, gen):
    """The `applied` record when it is for generation gen of this very sixbroker, else None."""
    rec = db.applied(conn)
    if rec is None or rec["generation"] != gen or rec["version"] != VERSION:
        return None
    return rec


def _fp_text(kernel_fp):
    from sixbroker.apply_kernel import FP_MOD
    return "%032x" % (kernel_fp % FP_MOD)


def _record(conn, kernel_fp, token, foreign):
    db.record_applied(conn, db.generation(conn), VERSION, _fp_text(kernel_fp), token, "\n".join(foreign))


def _recorded_foreign(rec):
    return [f for f in rec["foreign_tunnels"].split("\n") if f]


def reconcile(conn, using=None):
    """Bring the kernel and the firewall in line with the database; a report of what each applier did."""
    a = using or applier()
    incremental = hasattr(a, "kernel_fingerprint")
    if incremental:
        report = _unchanged(conn, a)
        if report is not None:
            return report
    state = desired(conn)
    kernel = a.kernel(state)
    crash_point("kernel")
    firewall = a.firewall(state)
    if incremental:
        _record(conn, a.fingerprint, a.nft_token(state["netns"]), kernel["foreign_tunnels"])
    return {"tunnels": len(state["plans"]), "kernel": kernel, "firewall": firewall}


def _unchanged(conn, a):
    """The report of an apply with nothing to do, when the record proves it; else None."""
    rec = _recorded(conn, db.generation(conn))
    if rec is None or rec["nft"] is None:
        return None
    server = db.server(conn)
    count = db.tunnel_count(conn)
    state = _state(server, [], count)
    if _fp_text(a.kernel_fingerprint(state["netns"])) != rec["kernel"] or a.nft_token(state["netns"]) != rec["nft"]:
        return None
    # sysctls are not in the fingerprint: read (and set) every time, a few small files
    changes = a.sysctls(state)
    return {"tunnels": count, "kernel": {"changes": changes, "foreign_tunnels": _recorded_foreign(rec)},
            "firewall": {"changed": False}, "unchanged": True}


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
    rec = _recorded(conn, change.generation)
    if rec is None or rec["nft"] is None:
        return reconcile(conn, a)
    server = db.server(conn)
    after = service.plan_of(conn, change.name)
    other = service.another_plan(conn, change.name)
    before = [change.before] if change.before else []
    after_list = [after] if after else []
    if a.firewall_text(before, after_list, other) is None:
        return reconcile(conn, a)         # the first or the last tunnel: the table's rules change
    count = db.tunnel_count(conn)
    state = _state(server, after_list, count)
    devices = set(p["tunnel"]["device"] for p in before + after_list)
    token = a.nft_token(state["netns"])
    kernel, delta = a.kernel_change(state, devices)
    crash_point("kernel")
    firewall = a.firewall_change(state["netns"], before, after_list, other)
    if firewall is None:
        # the table was not as recorded (deleted, an element gone): the whole of it, and a new record
        return reconcile(conn, a)
    new_token = a.nft_token(state["netns"])
    if token != rec["nft"] or (firewall["changed"] and not a.nft_token_follows(token, new_token)):
        new_token = None    # someone else loaded nftables meanwhile: the next apply compares in full
    elif not firewall["changed"]:
        new_token = token
    foreign = _recorded_foreign(rec)
    # fingerprints add up (apply_kernel): the record's plus what this change added
    _record(conn, int(rec["kernel"], 16) + delta, new_token, foreign)
    kernel["foreign_tunnels"] = foreign
    return {"tunnels": count, "kernel": kernel, "firewall": firewall, "incremental": True}


def abandon(netns, using=None):
    """Remove everything of ours from a namespace the broker no longer uses (init --netns moved it)."""
    state = {"netns": netns, "device_prefix": service.DEVICE_PREFIX, "sysctls": [], "plans": []}
    a = using or applier()
    return {"kernel": a.kernel(state), "firewall": a.firewall(state)}
