"""Other firewalls' rule shapes as nft text, as `nft list ruleset` shows them on a host running them (the
sources each is transcribed from are named in tests/broker/test_hostfw.py); shared by the host tests of
broker/hostfw.py and the real-kernel tests of the broker beside them."""

Y = "198.51.100.20"     # the home router's address in both worlds (test_nft_host.Y, topo.Y)

UFW = """
table ip filter {
\tchain INPUT {
\t\ttype filter hook input priority filter; policy drop;
\t\tcounter jump ufw-before-logging-input
\t\tcounter jump ufw-before-input
\t\tcounter jump ufw-after-input
\t\tcounter jump ufw-after-logging-input
\t\tcounter jump ufw-reject-input
\t\tcounter jump ufw-track-input
\t}
\tchain ufw-before-logging-input {
\t}
\tchain ufw-before-input {
\t\tiifname "lo" counter accept
\t\tct state related,established counter accept
\t\tct state invalid counter drop
\t\ticmp type { destination-unreachable, time-exceeded, parameter-problem, echo-request } counter accept
\t\tudp sport 67 udp dport 68 counter accept
\t\tcounter jump ufw-not-local
\t\tip daddr 224.0.0.251 udp dport 5353 counter accept
\t\tcounter jump ufw-user-input
\t}
\tchain ufw-not-local {
\t\tfib daddr type local counter return
\t\tfib daddr type multicast counter return
\t\tfib daddr type broadcast counter return
\t\tcounter drop
\t}
\tchain ufw-user-input {
\t\ttcp dport 22 counter accept
\t}
\tchain ufw-after-input {
\t\tudp dport 137 counter jump ufw-skip-to-policy-input
\t\ttcp dport 139 counter jump ufw-skip-to-policy-input
\t}
\tchain ufw-skip-to-policy-input {
\t\tcounter drop
\t}
\tchain ufw-after-logging-input {
\t\tlimit rate 3/minute burst 10 packets counter log prefix "[UFW BLOCK] "
\t}
\tchain ufw-reject-input {
\t}
\tchain ufw-track-input {
\t}
}
table ip6 filter {
\tchain FORWARD {
\t\ttype filter hook forward priority filter; policy drop;
\t\tcounter jump ufw6-before-logging-forward
\t\tcounter jump ufw6-before-forward
\t\tcounter jump ufw6-after-forward
\t\tcounter jump ufw6-after-logging-forward
\t\tcounter jump ufw6-reject-forward
\t\tcounter jump ufw6-track-forward
\t}
\tchain ufw6-before-logging-forward {
\t}
\tchain ufw6-before-forward {
\t\trt type 0 counter drop
\t\tct state related,established counter accept
\t\ticmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, echo-request } counter accept
\t\tcounter jump ufw6-user-forward
\t}
\tchain ufw6-user-forward {
\t}
\tchain ufw6-after-forward {
\t}
\tchain ufw6-after-logging-forward {
\t\tlimit rate 3/minute burst 10 packets counter log prefix "[UFW BLOCK] "
\t}
\tchain ufw6-reject-forward {
\t}
\tchain ufw6-track-forward {
\t}
}
"""

# the documented fixes (files/broker/README.md), as ufw writes them from before.rules / before6.rules
UFW_FIXED = UFW.replace('\t\tiifname "lo" counter accept\n', '\t\tiifname "lo" counter accept\n'
                        '\t\tip protocol ipv6 ip saddr %s counter accept\n' % Y, 1) \
    .replace('\t\trt type 0 counter drop\n', '\t\trt type 0 counter drop\n\t\tiifname "sbs-*" counter accept\n'
             '\t\toifname "sbs-*" counter accept\n', 1)

DOCKER_20 = """
table ip6 filter {
\tchain FORWARD {
\t\ttype filter hook forward priority filter; policy drop;
\t\tcounter jump DOCKER-USER
\t\tcounter jump DOCKER-ISOLATION-STAGE-1
\t\toifname "docker0" ct state related,established counter accept
\t\toifname "docker0" counter jump DOCKER
\t\tiifname "docker0" oifname != "docker0" counter accept
\t\tiifname "docker0" oifname "docker0" counter accept
\t}
\tchain DOCKER {
\t}
\tchain DOCKER-ISOLATION-STAGE-1 {
\t\tiifname "docker0" oifname != "docker0" counter jump DOCKER-ISOLATION-STAGE-2
\t\tcounter return
\t}
\tchain DOCKER-ISOLATION-STAGE-2 {
\t\toifname "docker0" counter drop
\t\tcounter return
\t}
\tchain DOCKER-USER {
\t\tcounter return
\t}
}
"""

DOCKER_28 = """
table ip6 filter {
\tchain FORWARD {
\t\ttype filter hook forward priority filter; policy drop;
\t\tcounter jump DOCKER-USER
\t\tcounter jump DOCKER-FORWARD
\t}
\tchain DOCKER-USER {
\t}
\tchain DOCKER-FORWARD {
\t\tcounter jump DOCKER-CT
\t\tcounter jump DOCKER-ISOLATION-STAGE-1
\t\tcounter jump DOCKER-BRIDGE
\t\tiifname "docker0" counter accept
\t}
\tchain DOCKER-CT {
\t\toifname "docker0" ct state related,established counter accept
\t}
\tchain DOCKER-BRIDGE {
\t\toifname "docker0" counter jump DOCKER
\t}
\tchain DOCKER {
\t\tiifname != "docker0" oifname "docker0" counter drop
\t}
\tchain DOCKER-ISOLATION-STAGE-1 {
\t\tiifname "docker0" oifname != "docker0" counter jump DOCKER-ISOLATION-STAGE-2
\t}
\tchain DOCKER-ISOLATION-STAGE-2 {
\t\toifname "docker0" counter drop
\t}
}
"""

# `ip6tables -I DOCKER-USER -i sbs-+ -j ACCEPT` and `-o sbs-+`, as iptables-nft writes them
DOCKER_FIX = ('\tchain DOCKER-USER {\n\t\tiifname "sbs-*" counter accept\n\t\toifname "sbs-*" counter accept\n')

FIREWALLD = """
table inet firewalld {
\tchain filter_INPUT {
\t\ttype filter hook input priority filter + 10; policy accept;
\t\tct state { established, related } accept
\t\tct status dnat accept
\t\tiifname "lo" accept
\t\tct state { invalid } drop
\t\tjump filter_INPUT_POLICIES
\t\treject with icmpx admin-prohibited
\t}
\tchain filter_FORWARD {
\t\ttype filter hook forward priority filter + 10; policy accept;
\t\tct state { established, related } accept
\t\tct status dnat accept
\t\tiifname "lo" accept
\t\tct state { invalid } drop
\t\tip6 daddr { ::/96, ::ffff:0.0.0.0/96, 2002::/24, 2002:a00::/24, 2002:7f00::/24 } reject with icmpv6 addr-unreachable
\t\tjump filter_FORWARD_POLICIES
\t\treject with icmpx admin-prohibited
\t}
\tchain filter_INPUT_POLICIES {
\t\tiifname "eth0" jump filter_IN_public
\t\tiifname "eth0" reject with icmpx admin-prohibited
\t\tjump filter_IN_public
\t\treject with icmpx admin-prohibited
\t}
\tchain filter_IN_public {
\t\tjump filter_IN_public_allow
\t\tmeta l4proto { icmp, ipv6-icmp } accept
\t}
\tchain filter_IN_public_allow {
\t\ttcp dport 22 accept
\t\tip6 daddr fe80::/64 udp dport 546 accept
\t}
\tchain filter_FORWARD_POLICIES {
\t\tiifname "eth0" oifname "eth0" jump filter_FWD_public
\t\tiifname "eth0" oifname "eth0" reject with icmpx admin-prohibited
\t\tiifname "eth0" jump filter_FWD_public
\t\tiifname "eth0" reject with icmpx admin-prohibited
\t\toifname "eth0" jump filter_FWD_public
\t\toifname "eth0" reject with icmpx admin-prohibited
\t\tjump filter_FWD_public
\t\treject with icmpx admin-prohibited
\t}
\tchain filter_FWD_public {
\t\tjump filter_FWD_public_allow
\t}
\tchain filter_FWD_public_allow {
\t}
}
"""

# the documented fix: the tunnels in a zone `sixbroker` with target ACCEPT, a policy from ANY into it,
# and protocol 41 from the peer in the uplink's zone (firewalld puts a zone's interfaces before the
# catch-all in the *_POLICIES chains, and ACCEPT-target zones end in `accept`)
FIREWALLD_FIXED = FIREWALLD.replace(
    '\tchain filter_INPUT_POLICIES {\n',
    '\tchain filter_INPUT_POLICIES {\n\t\tiifname "sbs-*" accept\n', 1).replace(
    '\t\ttcp dport 22 accept\n', '\t\ttcp dport 22 accept\n\t\tip saddr %s meta l4proto ipv6 accept\n' % Y, 1).replace(
    '\tchain filter_FORWARD_POLICIES {\n',
    '\tchain filter_FORWARD_POLICIES {\n\t\tiifname "sbs-*" accept\n\t\toifname "sbs-*" accept\n', 1)

# Debian 12's /etc/nftables.conf as shipped, and a hand-written input chain that lets in ssh only
DEBIAN_DEFAULT = """
table inet filter {
\tchain input {
\t\ttype filter hook input priority filter;
\t}
\tchain forward {
\t\ttype filter hook forward priority filter;
\t}
\tchain output {
\t\ttype filter hook output priority filter;
\t}
}
"""
SSH_ONLY = """
table inet filter {
\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tct state established,related accept
\t\tiif "lo" accept
\t\ttcp dport 22 accept
\t}
}
"""
