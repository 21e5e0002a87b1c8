"""The lab's world: the seed's topology grown to the far side, with a second home behind NAT.

    lanhost --(eth0|lan0)-- home --(wan|isp-home)--+
                                                    isp = inet --(to-vps|v-vps)-- vps --(v-far|eth0)-- far
    lan2 --(eth0|lan0)-- home2 --(wan|lan)-- nat --(wan|isp-nat)--+

inet is the IPv4 internet and knows nothing of IPv6: its only IPv6 is what crosses it as protocol 41.  The
ISP's access network is a bridge (isp), so home (Y) and the NAT's public side share 198.51.100.0/24; without
the NAT home (with_nat=False) home's cable goes straight to inet.  vps is the
broker (X); far is an IPv6 host beyond it (FAR6, "the IPv6 internet").  nat masquerades home2's private
address (192.0.2.0/26: a documentation range standing in for RFC 1918) and forwards protocol 41 to it, so
home2's tunnel runs from its private address and the VPS sees the NAT's public one.

IPv4 also runs natively from lanhost (192.0.2.64/26) to far (192.0.2.128/26), routed by home, inet and vps
over the same links: the baseline bench/dataplane measures the tunnel against.

inet counts protocol 41 per direction in its own table (`ip lab`, named counters), and also full-size
(1500-byte) and fragmented protocol-41 packets, and any that carry a private source.

Every namespace name is `prefix + role`, so the real-kernel suite (prefix "dp-") and the seed's world
(topo.py, plain names) live side by side in one guest.  The helpers (run, ip, batch, nft, sysctl, ping,
sockets) and the seed's addresses are topo.py's.
"""

import json
import os

import topo

X = topo.X                      # the VPS
Y = topo.Y                      # home
ISP_GW = "198.51.100.1"         # inet on the access network
VPS_GW = "203.0.113.1"          # inet towards the VPS
NAT_PUBLIC = "198.51.100.30"
NAT_PRIVATE_GW = "192.0.2.1"
HOME2_PRIVATE = "192.0.2.2"     # home2's tunnel runs from here
NAT_PRIVATE_NET = "192.0.2.0/26"
LAN4_NET, LAN4_GW, LANHOST4 = "192.0.2.64/26", "192.0.2.65", "192.0.2.66"
FAR4_NET, FAR4_GW, FAR4 = "192.0.2.128/26", "192.0.2.129", "192.0.2.130"
FAR6 = "2001:db8:ffff::1"
FAR6_GW = "2001:db8:ffff::a"    # the VPS on far's link
LAN_HOST_ID = "100"             # LAN hosts are <routed /64>::100, the router <routed /64>::1

ROLES = ("inet", "vps", "far", "home", "lanhost", "nat", "home2", "lan2")
COUNTERS = ("home_to_vps", "vps_to_home", "nat_to_vps", "vps_to_nat", "private_source", "full_size",
            "fragments")


class World:
    def __init__(self, prefix="", with_nat=True):
        self.prefix = prefix
        self.with_nat = with_nat
        for role in ROLES:
            setattr(self, role, prefix + role)

    def namespaces(self):
        roles = ROLES if self.with_nat else ROLES[:5]
        return [self.prefix + r for r in roles]

    # ---- building ---------------------------------------------------------------------------------

    def build(self):
        self.teardown()
        for ns in self.namespaces():
            topo.run(["ip", "netns", "add", ns])
        inet = ["link add isp-home type veth peer name wan netns " + self.home,
                "link add to-vps type veth peer name v-vps netns " + self.vps,
                "addr add %s/24 dev to-vps" % VPS_GW]
        if self.with_nat:
            inet += ["link add isp type bridge", "addr add %s/24 dev isp" % ISP_GW, "link set isp-home master isp",
                     "link add isp-nat type veth peer name wan netns " + self.nat, "link set isp-nat master isp",
                     "link set isp up", "link set isp-nat up"]
        else:
            # no bridge without a second access host: a bridge segments the tunnel's GSO packets on their
            # way to home (it offers no IPIP segmentation offload) where a veth passes them whole, which
            # would charge the tunnel for the bridge in bench/dataplane
            inet.append("addr add %s/24 dev isp-home" % ISP_GW)
        inet += ["link set lo up", "link set isp-home up", "link set to-vps up"]
        # routes last: a gateway is reachable only once its link is up
        inet += ["route add %s via %s" % (LAN4_NET, Y), "route add %s via %s" % (FAR4_NET, X)]
        topo.batch(self.inet, inet)
        topo.sysctl(self.inet, "net.ipv4.ip_forward", "1")
        topo.nft(self.inet, "-f", "-", stdin=self._counting_table())

        topo.batch(self.vps, [
            "link add v-far type veth peer name eth0 netns " + self.far,
            "addr add %s/24 dev v-vps" % X, "addr add %s/64 dev v-far" % FAR6_GW, "addr add %s/26 dev v-far" % FAR4_GW,
            "link set lo up", "link set v-vps up", "link set v-far up", "route add default via " + VPS_GW,
        ])
        topo.batch(self.far, [
            "addr add %s/64 dev eth0" % FAR6, "addr add %s/26 dev eth0" % FAR4,
            "link set lo up", "link set eth0 up", "route add ::/0 via " + FAR6_GW,
            "route add default via " + FAR4_GW,
        ])
        topo.batch(self.home, [
            "link add lan0 type veth peer name eth0 netns " + self.lanhost,
            "addr add %s/24 dev wan" % Y, "addr add %s/26 dev lan0" % LAN4_GW,
            "link set lo up", "link set wan up", "link set lan0 up", "route add default via " + ISP_GW,
        ])
        topo.batch(self.lanhost, [
            "addr add %s/26 dev eth0" % LANHOST4, "link set lo up", "link set eth0 up",
            "route add default via " + LAN4_GW,
        ])
        # v-far and far's eth0 are one cable: DAD would only hold the addresses tentative for a while
        self._no_dad([(self.vps, "v-far"), (self.far, "eth0"), (self.home, "lan0"), (self.lanhost, "eth0")])
        for ns in (self.home, self.vps):
            topo.sysctl(ns, "net.ipv4.ip_forward", "1")
        if self.with_nat:
            self._build_nat()
        return self

    def _build_nat(self):
        topo.batch(self.nat, [
            "link add lan type veth peer name wan netns " + self.home2,
            "addr add %s/24 dev wan" % NAT_PUBLIC, "addr add %s/26 dev lan" % NAT_PRIVATE_GW,
            "link set lo up", "link set wan up", "link set lan up", "route add default via " + ISP_GW,
        ])
        topo.sysctl(self.nat, "net.ipv4.ip_forward", "1")
        # what a home NAT does for 6in4: masquerade on the way out, and protocol 41 arriving unasked
        # (the VPS speaking first) forwarded to the tunnel host, as a "DMZ host" or protocol forward does
        topo.nft(self.nat, "-f", "-", stdin="""table ip nat {
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tiifname "wan" ip protocol 41 counter dnat to %s
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\toifname "wan" ip saddr %s counter masquerade
\t}
}
""" % (HOME2_PRIVATE, NAT_PRIVATE_NET))
        topo.batch(self.home2, [
            "link add lan0 type veth peer name eth0 netns " + self.lan2,
            "addr add %s/26 dev wan" % HOME2_PRIVATE, "link set lo up", "link set wan up", "link set lan0 up",
            "route add default via " + NAT_PRIVATE_GW,
        ])
        topo.batch(self.lan2, ["link set lo up", "link set eth0 up"])
        self._no_dad([(self.home2, "lan0"), (self.lan2, "eth0")])

    def _no_dad(self, pairs):
        for ns, dev in pairs:
            topo.sysctl(ns, "net.ipv6.conf.%s.accept_dad" % dev, "0")

    def _counting_table(self):
        rules = [
            ("home_to_vps", "ip saddr %s ip daddr %s" % (Y, X)),
            ("vps_to_home", "ip saddr %s ip daddr %s" % (X, Y)),
            ("nat_to_vps", "ip saddr %s ip daddr %s" % (NAT_PUBLIC, X)),
            ("vps_to_nat", "ip saddr %s ip daddr %s" % (X, NAT_PUBLIC)),
            ("private_source", "ip saddr " + NAT_PRIVATE_NET),
            ("full_size", "ip length 1500"),
            ("fragments", "ip frag-off & 0x3fff != 0"),
        ]
        out = ["table ip lab {"]
        out += ["\tcounter %s {\n\t}" % name for name, _ in rules]
        out += ["\tchain forward {", "\t\ttype filter hook forward priority filter; policy accept;"]
        # separate rules, not a verdict map: one packet may count in several (a full-size one is also
        # home_to_vps)
        out += ['\t\tip protocol 41 %s counter name "%s"' % (match, name) for name, match in rules]
        out += ["\t}", "}"]
        return "\n".join(out) + "\n"

    def teardown(self):
        for ns in self.namespaces():
            if os.path.exists("/run/netns/" + ns):
                topo.run(["ip", "netns", "del", ns], check=False)

    # ---- after the tunnels are up ------------------------------------------------------------------

    def lan_host(self, ns, routed):
        """Give the LAN host behind a router its address in the routed /64 (no RA daemon here):
        <prefix>::100/64, default route via the router's <prefix>::1.  Returns the address."""
        base = routed.split("/")[0]
        if not base.endswith("::"):
            raise ValueError("expected a /64 written as <prefix>::/64, got " + routed)
        topo.batch(ns, ["addr add %s%s/64 dev eth0" % (base, LAN_HOST_ID), "route add ::/0 via %s1" % base])
        return base + LAN_HOST_ID

    def counters(self):
        """inet's protocol-41 packet counts: {name: packets}."""
        p = topo.nft(self.inet, "-j", "list", "counters", "table", "ip", "lab")
        out = {}
        for item in json.loads(p.stdout)["nftables"]:
            c = item.get("counter")
            if c:
                out[c["name"]] = c["packets"]
        return out

    def nat_counters(self):
        """{"dnat": packets, "masquerade": packets}: connections the NAT box set up each way."""
        rules = json.loads(topo.nft(self.nat, "-j", "list", "table", "ip", "nat").stdout)["nftables"]
        out = {}
        for item in rules:
            r = item.get("rule")
            if not r:
                continue
            n = None
            for e in r["expr"]:
                if "counter" in e:
                    n = e["counter"]["packets"]
                if "dnat" in e:
                    out["dnat"] = n
                if "masquerade" in e:
                    out["masquerade"] = n
        return out


def router_config(name, options, lan):
    """The standalone router's file for one tunnel: a `config tunnel` section holding the options (the
    broker's printed ones, or a test's) and the LAN devices."""
    import uci_edit as uci
    pkg = uci.parse("", "router")
    sec = pkg.add("tunnel", name)
    for opt in sorted(options):
        sec.set(opt, options[opt])
    sec.set("lan", list(lan))
    return pkg.dumps()


def sit_missing():
    """Why this kernel cannot run the world (None when it can): it needs root and sit devices."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    ns = "sb-lab-probe"
    topo.run(["ip", "netns", "add", ns], check=False)
    try:
        p = topo.run(["ip", "-n", ns, "tunnel", "add", "probe", "mode", "sit", "local", "192.0.2.1",
                      "remote", "192.0.2.2"], check=False)
        return None if p.returncode == 0 else "this kernel cannot make sit devices (%s)" % p.stderr.strip()
    finally:
        topo.run(["ip", "netns", "del", ns], check=False)
