"""`sixbroker router update [--loop]`: when a plain-Linux router's tunnels tell their broker where they are.

Once (`update`, for a systemd timer or a person): every tunnel with an updater (tunnelid and updatekey)
sends one update now, whatever its record says.

`--loop` (files/linuxrouter/sixbroker-router-update.service) never ends by itself:
- every POLL seconds it reads each tunnel's local IPv4 address from the kernel (one netlink dump: the
  tunlink device's first address, else the source of the route to the peer).  When it differs from the one
  the tunnel was last set up with (a new DHCP lease, a PPPoE reconnect, an address replaced by hand: no
  link event needed), it runs `up` again, which moves the sit device to the new address, and sends the
  update at once.  Nothing else on a Debian router would move the tunnel (no netifd, no hotplug);
- otherwise a tunnel sends when its record says (core/dyndns.next_delay: the interval after an answer,
  backoff after a failure), so that a NAT box's new public address, which this host cannot see, is
  caught within `updateinterval`.
The configuration is read again when the file changes; a file that no longer validates keeps the last good
one running (and says so once).  After `sixbroker router down` the loop does nothing (no tunnel set up
again on a WAN change, no update sent) until `sixbroker router up`.
"""

import os
import sys
import time

from sixbroker.core import options, resolve
from sixbroker.core.errors import ConfigErrors, SixbrokerError
from sixbroker.linuxrouter import router, update

POLL = 1.0          # seconds between two looks at the WAN address: one netlink dump, ~1 ms
USAGE = "usage: sixbroker router update [--loop] [--config PATH] [--netns NAME]"
PROG = "sixbroker router"


def _log(text):
    sys.stdout.write("%s: %s\n" % (PROG, text))
    sys.stdout.flush()


def local_address(o, peer, netns):
    """This host's IPv4 address for the tunnel now (None when it has none: the WAN is down)."""
    try:
        local, _ = router._facts(o, peer, netns)
    except SixbrokerError:
        return None
    return local


def _updaters(config):
    return [(name, o) for name, o, _ in router.read_config(config) if o.update]


def once(config, netns=None, timeout=update.TIMEOUT):
    """One update of every tunnel with an updater, now: [(name, record)]."""
    out = []
    for name, o in _updaters(config):
        peer = o.peer if o.peer is not None else resolve.resolve_ipv4(o.peer_host)
        path = update.record_path(name, netns)
        prev = update.records(netns).get(name) or {}
        rec = update.send(name, o.update, local_address(o, peer, netns), path, prev.get("fails") or 0, timeout,
                          netns)
        out.append((name, rec))
    return out


class Loop:
    """The state of `update --loop`: per tunnel the address it was set up with and when it next sends."""

    def __init__(self, config, netns=None, clock=time.monotonic):
        self.config, self.netns, self.clock = config, netns, clock
        self.tunnels = {}       # name -> {"o", "peer", "local", "due", "fails"}
        self.mtime = None
        self.warned = None
        self.held = False

    def reload(self):
        try:
            mtime = os.stat(self.config).st_mtime_ns
        except OSError:
            mtime = None
        if mtime == self.mtime and self.tunnels:
            return
        self.mtime = mtime
        try:
            found = _updaters(self.config)
        except (SixbrokerError, ConfigErrors) as e:
            if self.warned != str(e):
                _log("%s (keeping the configuration read before)" % router._error_line(e).strip())
                self.warned = str(e)
            return
        self.warned = None
        old, self.tunnels = self.tunnels, {}
        for name, o in found:
            t = {"o": o, "peer": None, "local": None, "due": 0.0, "fails": 0, "said": None}
            if name in old and old[name]["o"].update == o.update:
                t.update(local=old[name]["local"], due=old[name]["due"], fails=old[name]["fails"])
            self.tunnels[name] = t

    def step(self):
        """One look at every tunnel: re-apply on a new WAN address, send when due.  [(name, record)]."""
        self.reload()
        if router.held_down(self.netns):
            # a person's `sixbroker router down` stands: no tunnel set up again, no update sent for one
            # that is not there, until `up`
            if not self.held:
                _log("tunnels held down (`sixbroker router down`): following again after `sixbroker router up`")
                self.held = True
            return []
        if self.held:
            self.held = False
            for t in self.tunnels.values():
                t.update(local=None, due=0.0)       # `up` set them up anew: look and tell again
        sent = []
        for name, t in sorted(self.tunnels.items()):
            o = t["o"]
            if t["peer"] is None:
                try:
                    t["peer"] = o.peer if o.peer is not None else resolve.resolve_ipv4(o.peer_host)
                except SixbrokerError:
                    continue        # no DNS yet: the next look tries again
            local = local_address(o, t["peer"], self.netns)
            if local is None:
                continue            # no WAN address: nothing to tell, nothing to send it from
            if t["local"] is None:
                t["local"] = self._kernel_local(name, o) or local
            if local != t["local"]:
                _log("%s: local address %s -> %s: setting the tunnel up again" % (name, t["local"], local))
                try:
                    # the update is sent below, with the loop's timeout rather than up's short one
                    began = time.monotonic()
                    router.up(self.config, self.netns, updates=False)
                except (SixbrokerError, ConfigErrors) as e:
                    # tried again at the next look; said once, not every second
                    if t["said"] != str(e):
                        _log(router._error_line(e).strip())
                        t["said"] = str(e)
                    continue
                t["said"] = None
                _log("%s: tunnel set up on %s in %.1f s" % (name, local, time.monotonic() - began))
                t["local"] = local
                t["due"] = 0.0
            if self.clock() < t["due"]:
                continue
            began = time.monotonic()
            rec = update.send(name, o.update, local, update.record_path(name, self.netns),
                              t["fails"], netns=self.netns)
            t["fails"] = rec["fails"]
            t["due"] = self.clock() + rec["delay"]
            _log("%s [%.1f s]" % (update.line(name, rec), time.monotonic() - began))
            sent.append((name, rec))
        return sent

    def _kernel_local(self, name, o):
        """The local address of the tunnel's sit device as the kernel has it (None: no device yet)."""
        from sixbroker.core import addr
        from sixbroker.linux import kernel_status
        device = options.device_name(name, o.device)
        for d in kernel_status.status(self.netns, scope=router.SCOPE, lan=False)["devices"]:
            if d["device"] == device and d["local"]:
                return addr.Address.parse(d["local"], 4)
        return None

    def run(self):
        while True:
            self.step()
            time.sleep(POLL)


def main(argv):
    args = {"loop": False, "config": router.DEFAULT_CONFIG, "netns": None}
    rest = list(argv)
    while rest:
        a = rest.pop(0)
        if a == "--loop":
            args["loop"] = True
        elif a in ("--config", "--netns") and rest and rest[0]:
            args[a[2:]] = rest.pop(0)
        elif a in ("-h", "--help"):
            sys.stdout.write(USAGE + "\n")
            return 0
        else:
            sys.stderr.write("%s: unknown argument '%s'; %s\n" % (PROG, a, USAGE))
            return 2
    try:
        if args["loop"]:
            Loop(args["config"], args["netns"]).run()
            return 0
        done = once(args["config"], args["netns"])
    except (SixbrokerError, ConfigErrors) as e:
        sys.stderr.write(router._error_line(e))
        return 1
    except KeyboardInterrupt:
        return 130
    if not done:
        sys.stderr.write("%s: NO_UPDATER: no tunnel has tunnelid and updatekey\n" % PROG)
        return 1
    for name, rec in done:
        _log(update.line(name, rec))
    return 0 if all(rec["kind"] == "ok" for _, rec in done) else 1
