"""A home that moves, on the real kernel: the broker's `serve`, a plain-Linux home router with its update
loop, and the two ways a home's IPv4 address changes (tests/e2e/test_router_follow.py, bench/update_follow).

On topo's world (lanhost -- home -- inet -- vps):
- the broker: `sixbroker server init/add` (the VPS at X), `sixbroker server serve` on X:8443 in vps, as a
  process of its own, with the certificate `init` made;
- the home: `sixbroker router up` with the broker's printed options plus tunnelid, updatekey, updatecert
  and updateinterval, then `sixbroker router update --loop` as a process of its own (the systemd unit's
  command); the LAN host gets an address in the tunnel's routed /64;
- replace_wan(): the home's WAN address replaced in place (a new one added, the old one deleted: no link
  event, as a DHCP renewal with a new lease does it);
- behind_nat() / nat_change(): a NAT box (namespace `natbox`, nftables masquerade) between home and inet;
  its public address replaced, which the home cannot see;
- first_ping(): seconds from a moment to the LAN host's first echo answered by the VPS across the tunnel.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import lab_world
import topo
from sixbroker.linux import apply_kernel, apply_nft, netns, nft_table
from sixbroker.linuxrouter import update
from test_update_clients import _listening

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIX = "2001:db8:5b00::/56"
PORT = 8443
ENTRY = "import sys\nfrom sixbroker.cli import main\nsys.exit(main())"
NAT_IN, NAT_OUT = "10.9.0.1", "192.0.2.1"     # the NAT box's LAN side; inet's side of the NAT box's WAN


def _env():
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "src"))
    env.pop("SIXBROKER_CRASH_AT", None)
    return env


def sixbroker(*args, ns=None):
    with netns.InNetns(ns):
        p = subprocess.run([sys.executable, "-c", ENTRY] + list(args), capture_output=True, text=True, env=_env(),
                           timeout=300)
    if p.returncode != 0:
        raise AssertionError("sixbroker %s: %s%s" % (" ".join(args), p.stdout, p.stderr))
    return p.stdout


class Home:
    def __init__(self, tmp, interval=60):
        self.tmp = str(tmp)
        self.db = os.path.join(self.tmp, "state", "broker.db")
        self.procs = []
        self.wan = topo.Y
        self.nat = None
        sixbroker("server", "init", "--prefix", PREFIX, "--public-ipv4", topo.X, "--netns", "vps", "--db", self.db)
        body = json.loads(sixbroker("server", "add", "home", "--remote", topo.Y, "--db", self.db, "--json"))
        self.key = body["key"]
        self.cert = os.path.join(os.path.dirname(self.db), "tls-cert.pem")
        self.log = os.path.join(self.tmp, "serve.log")
        self.serve = self._start(["server", "serve", "--listen", "%s:%d" % (topo.X, PORT), "--db", self.db],
                                 "vps", self.log)
        deadline = time.time() + 120        # the interpreter and FastAPI's imports under TCG
        while not _listening("home", topo.X, PORT):
            assert self.serve.poll() is None and time.time() < deadline, open(self.log).read()
            time.sleep(0.3)
        view = json.loads(sixbroker("server", "show", "home", "--db", self.db, "--json"))["tunnel"]
        self.vps6 = view["server_address"]
        routed = body["router"]["options"]["ip6prefix"][0]
        self.lanhost6 = routed.split("/")[0] + "100"
        opts = dict(body["router"]["options"])
        del opts["proto"]
        opts.update(tunnelid="home", updatekey=self.key, updatecert=self.cert, updateinterval=str(interval))
        self.config = os.path.join(self.tmp, "router")
        with open(self.config, "w") as f:
            f.write(lab_world.router_config("wan6", opts, ["lan0"]))
        topo.batch("lanhost", ["addr add %s/64 dev eth0" % self.lanhost6,
                               "route replace default via %s1" % routed.split("/")[0]])
        sixbroker("router", "up", "--config", self.config, "--netns", "home")
        self.loop_log = os.path.join(self.tmp, "loop.log")
        self.loop = self._start(["router", "update", "--loop", "--config", self.config, "--netns", "home"], None,
                                self.loop_log)
        # measured changes start from a running loop: its first update sent (the interpreter's start under TCG
        # would otherwise count as following time)
        deadline = time.time() + 120
        while " update: " not in open(self.loop_log).read():
            assert self.loop.poll() is None and time.time() < deadline, open(self.loop_log).read()
            time.sleep(0.2)
        # home's WAN: a replaced primary address must promote the new one, not take it along
        topo.sysctl("home", "net.ipv4.conf.v-home.promote_secondaries", "1")

    def _start(self, args, ns, log):
        out = open(log, "w")
        with netns.InNetns(ns):
            p = subprocess.Popen([sys.executable, "-c", ENTRY] + args, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, env=_env())
        out.close()
        self.procs.append(p)
        return p

    def pings(self):
        return topo.ping("lanhost", self.vps6, count=1, wait=1)

    def first_ping(self, since, timeout=120):
        """Seconds from `since` (time.monotonic) to the first echo answered through the tunnel."""
        while time.monotonic() - since < timeout:
            if self.pings():
                return time.monotonic() - since
        raise AssertionError("no IPv6 through the tunnel %d s after the change; loop: %s" % (
            timeout, open(self.loop_log).read()[-2000:]))

    def remote(self):
        link = json.loads(topo.ip("vps", "-d", "-j", "link", "show", "sbs-home").stdout)[0]
        return link["linkinfo"]["info_data"]["remote"]

    def replace_wan(self, new):
        """The home's WAN address replaced in place; the moment the old one is gone (time.monotonic)."""
        topo.ip("home", "addr", "add", new + "/24", "dev", "v-home")
        topo.ip("home", "addr", "del", self.wan + "/24", "dev", "v-home")
        t0 = time.monotonic()
        topo.ip("home", "route", "replace", "default", "via", "198.51.100.1")
        self.wan = new
        return t0

    def behind_nat(self, public):
        """Put a NAT box between home and inet for the broker's address: natbox, masquerading to public."""
        topo.run(["ip", "netns", "add", "natbox"])
        topo.batch("inet", ["link add to-nat type veth peer name n-out netns natbox",
                            "addr add %s/24 dev to-nat" % NAT_OUT, "link set to-nat up"])
        topo.batch("home", ["link add v-nat type veth peer name n-in netns natbox",
                            "addr add 10.9.0.2/24 dev v-nat", "link set v-nat up"])
        topo.batch("natbox", ["link set lo up", "addr add %s/24 dev n-out" % public, "link set n-out up",
                              "addr add %s/24 dev n-in" % NAT_IN, "link set n-in up",
                              "route add default via %s" % NAT_OUT])
        topo.sysctl("natbox", "net.ipv4.ip_forward", "1")
        topo.sysctl("natbox", "net.ipv4.conf.n-out.promote_secondaries", "1")
        # only its LAN's sources, as a home NAT box forwards: a packet the home sent from its old public
        # address in the moment before `up` moved the tunnel would otherwise take the one mapping a
        # portless protocol 41 has (X -> public) for 600 s, and the new local address's packets clash with it
        topo.nft("natbox", "-f", "-", stdin="table ip nat {\n chain post {\n  type nat hook postrouting priority 100;\n"
                 "  oifname \"n-out\" masquerade\n }\n chain lanonly {\n  type filter hook forward priority 0;\n"
                 "  iifname \"n-in\" ip saddr != 10.9.0.0/24 drop\n }\n}\n")
        # the home reaches its broker through the NAT box: the tunnel's local address is now private
        topo.ip("home", "route", "add", topo.X + "/32", "via", NAT_IN)
        self.nat = public

    def nat_change(self, new):
        """The NAT box's public address replaced (its masquerade forgets the old mappings): the moment."""
        topo.ip("natbox", "addr", "add", new + "/24", "dev", "n-out")
        topo.ip("natbox", "addr", "del", self.nat + "/24", "dev", "n-out")
        t0 = time.monotonic()
        topo.ip("natbox", "route", "replace", "default", "via", NAT_OUT)
        self.nat = new
        return t0

    def close(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.nat is not None:
            topo.run(["ip", "netns", "del", "natbox"], check=False)
            topo.ip("inet", "link", "del", "to-nat", check=False)
            topo.ip("home", "route", "del", topo.X + "/32", check=False)
        if self.wan != topo.Y:
            topo.ip("home", "addr", "add", topo.Y + "/24", "dev", "v-home", check=False)
            topo.ip("home", "addr", "del", self.wan + "/24", "dev", "v-home", check=False)
            topo.ip("home", "route", "replace", "default", "via", "198.51.100.1", check=False)
        topo.ip("lanhost", "addr", "del", self.lanhost6 + "/64", "dev", "eth0", check=False)
        topo.ip("lanhost", "-6", "route", "replace", "default", "via", "2001:db8:5b11::1", check=False)
        apply_kernel.remove_all("vps", scope="broker")
        apply_nft.remove(nft_table.TABLE, "vps")
        sixbroker("router", "down", "--netns", "home")
        # the loop's records: a later test's `router status` must not find this one's
        shutil.rmtree(update.record_dir("home"), ignore_errors=True)
