"""Database -> plans -> kernel and firewall.

Reconciling always starts from the whole database and ends with the kernel and the nftables table
holding exactly what it says (the appliers add what is missing, fix what differs and remove what the
broker owns and no longer wants), so it is safe to run at any time, any number of times: after every
change, at boot (files/broker/sixbroker.service), and by hand after a crash.

The appliers are reached through one object with two methods, `kernel(state)` and `firewall(state)`, so
tests give a fake one (module hook APPLIER, or the `applier` argument) and the kernel mapping can change
(a shared NBMA device, DESIGN.md "Scale facts") without touching the rest.

Fault injection: SIXBROKER_CRASH_AFTER=commit kills the process (SIGKILL, no clean-up of any kind) right
after a change is committed, before the kernel is touched; =kernel after the kernel is changed, before
the firewall.  The real-kernel tests use it to show that `apply` repairs either.
"""

import os
import signal

from sixbroker.broker import service

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
    return {
        "netns": server["netns"],
        "device_prefix": service.DEVICE_PREFIX,
        "sysctls": service.base_sysctls(server, len(plans)),
        "plans": plans,
    }


class KernelAndNft:
    """The real appliers: netlink (pyroute2) for the kernel, one atomically replaced nftables table."""

    SCOPE = "broker"        # apply_kernel marks our devices `sixbroker:broker` (their alias)

    def __init__(self):
        self.foreign = ()

    def kernel(self, state):
        from sixbroker import apply_kernel
        result = apply_kernel.apply(state["plans"], netns=state["netns"], scope=self.SCOPE,
                                    prefix=state["device_prefix"])
        # the plans carry the sysctls too, but a broker with no tunnel yet must forward all the same
        apply_kernel.apply_sysctls(state["sysctls"], state["netns"], result)
        # sit devices that are not ours: the firewall must not drop their protocol 41
        self.foreign = list(result.foreign_tunnels)
        return {"changes": list(result.changes), "foreign_tunnels": ["%s -> %s" % p for p in self.foreign]}

    def firewall(self, state):
        from sixbroker import apply_nft
        result = apply_nft.apply(state["plans"], netns=state["netns"], exempt=self.foreign)
        return {"changed": bool(result.changed)}


def applier():
    return APPLIER if APPLIER is not None else KernelAndNft()


def reconcile(conn, using=None):
    """Bring the kernel and the firewall in line with the database; a report of what each applier did."""
    state = desired(conn)
    a = using or applier()
    kernel = a.kernel(state)
    crash_point("kernel")
    firewall = a.firewall(state)
    return {"tunnels": len(state["plans"]), "kernel": kernel, "firewall": firewall}


def abandon(netns, using=None):
    """Remove everything of ours from a namespace the broker no longer uses (init --netns moved it)."""
    state = {"netns": netns, "device_prefix": service.DEVICE_PREFIX, "sysctls": [], "plans": []}
    a = using or applier()
    return {"kernel": a.kernel(state), "firewall": a.firewall(state)}
