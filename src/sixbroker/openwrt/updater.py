"""Starting a tunnel's updater: the netifd proto task that runs files/usr/lib/sixbroker/update.sh.

After a successful setup the handler asks netifd to run the updater as the interface's proto task
(notify_proto action 1; proto-shell.c proto_shell_run_command, allowed once the update made the state
S_IDLE).  netifd owns it from then on: it logs its output, and kills it on ifdown, teardown and before
every next setup (netifd_start_process kills the previous task; proto_shell_handler SIGTERMs it).  The
setup itself returns at once: the first request runs in the task, never in ifup's way.

update.sh and netifd (proto-shell.c, main.c):
- it must never end by itself: a proto task that exits while the interface is up is a lost link
  (proto_shell_task_finish, S_IDLE: IFPEV_LINK_LOST, then teardown); it loops request / sleep;
- ifdown and teardown SIGTERM it (proto_shell_handler, S_TEARDOWN), SIGKILL after 5 s; netifd starts it in
  no process group of its own (netifd_start_process), so on TERM it ends its running child itself;
- its stdout and stderr are netifd's log, "netifd: <iface> (<pid>): ..." in logread: one line per change of
  the broker's answer and per failure (a repeated nochg says nothing);
- a WAN IPv4 change needs no wake-up: files/etc/hotplug.d/iface/95-sixbroker sees the tunnel's local
  address gone and hotplug.py restarts the tunnel, so netifd kills this task and the new setup starts one
  that sends the new address at once.  A change the router cannot see (the NAT box's public address) waits
  for the timer.  SIGHUP (one number on every Linux architecture, unlike SIGUSR1) wakes it at once, for
  a person (kill -HUP) or a later caller (notify_proto action 2, signal 1);
- the key travels in the task's environment (env[], readable by root only), never its command line; the
  script hands it to uclient-fetch as --password=..., which uclient-fetch overwrites with '*' at once.
"""

from sixbroker.core import dyndns

SCRIPT = "/usr/lib/sixbroker/update.sh"
SHELL = "/bin/sh"
RUN_TASK = 1        # netifd.RUN_TASK (not imported: netifd imports this module)


def task_message(interface, update, local, via, record, script=None):
    """The action-1 message for options.Options.update (None: no updater, no message).

    myip goes along only when the local address is public: behind NAT the broker must take the request's
    source address, the NAT's (stock 6in4.sh does the same).  record: the file of core/updaterecord.py."""
    if not update:
        return None
    myip = local if local is not None and dyndns.is_public(local) else None
    url = dyndns.request_url(update["url"], update["tunnelid"], myip)
    env = ["SIXBROKER_IFACE=" + interface, "SIXBROKER_URL=" + url, "SIXBROKER_KEY=" + update["key"],
           "SIXBROKER_INTERVAL=" + str(update["interval"]), "SIXBROKER_FOLLOW=" + (via or ""),
           "SIXBROKER_RECORD=" + record]
    return {"action": RUN_TASK, "interface": interface,
            "command": [SHELL, script or SCRIPT] + dyndns.fetch_argv(update["user"], update["cert"]),
            "env": env}
