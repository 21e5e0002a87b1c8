"""broker/hostfw.py against the rule shapes ufw, Docker and firewalld really install, loaded into a real
nftables (a throwaway namespace of the host's kernel) and read back with `nft -j list ruleset`, as
`apply` and `info` read them.

The shapes are written as nft text the way `nft list ruleset` shows them (iptables-nft writes ufw's and
Docker's rules into `table ip filter` / `table ip6 filter`, native expressions where nft has them):
- ufw 0.36 (Debian 12): the chain layout of src/backend_iptables.py (INPUT/FORWARD jump to
  ufw[6]-before-logging-*, -before-*, -after-*, -after-logging-*, -reject-*, -track-*; policies from
  /etc/default/ufw: DEFAULT_INPUT_POLICY="DROP", DEFAULT_FORWARD_POLICY="DROP"), conf/before.rules and
  conf/before6.rules (loopback, RH0 drop, ct state, ICMP, DHCP, mDNS/UPnP), `ufw allow 22/tcp`.
- Docker: 20.10 (Debian 12's docker.io; its iptables-save: FORWARD policy DROP, -j DOCKER-USER,
  -j DOCKER-ISOLATION-STAGE-1, the docker0 accepts) and 28 (docs.docker.com engine/network/
  firewall-iptables: DOCKER-USER, DOCKER-FORWARD, DOCKER-CT, DOCKER-BRIDGE, DOCKER), IPv6 with
  ip6tables on, so in `table ip6 filter`.
- firewalld 1.3 (nftables backend): src/firewall/core/nftables.py build_default_rules (filter_INPUT and
  filter_FORWARD at priority filter + 10, policy accept: ct state, ct status dnat, lo, invalid drop, jump
  *_POLICIES, then `reject with icmpx admin-prohibited`), the public zone with ssh and dhcpv6-client,
  the uplink eth0 in it.
"""

import uuid

import pytest

from sixbroker.broker import hostfacts, hostfw
from host_firewalls import (DEBIAN_DEFAULT, DOCKER_20, DOCKER_28, DOCKER_FIX, FIREWALLD, FIREWALLD_FIXED,
                             SSH_ONLY, UFW, UFW_FIXED)
from netns_world import nets, vps, Y  # noqa: F401  (nets is a fixture)

@pytest.fixture
def host(nets):  # noqa: F811
    return nets("fw")


def _load(n, text):
    n.nft("fw", "-f", "-", stdin=text)


def _found(n, uplink="eth0", plans=None):
    plans = plans or [vps(1, device="sbs-a"), vps(2, remote="192.0.2.7", device="sbs-b")]
    return hostfw.describe(hostfw.check(plans, uplink, netns=n["fw"]), n["fw"])


def _summary(found):
    return sorted((f["table"], f["chain"], f["rule"], f["kind"], tuple(f["tunnels"])) for f in found)


BOTH = ("sbs-a", "sbs-b")


def test_ufw_drops_protocol_41_and_forwarding_and_its_fix_passes(host):
    _load(host, UFW)
    found = _found(host)
    assert _summary(found) == [
        ("ip filter", "INPUT", "policy drop", "in", BOTH),
        ("ip6 filter", "FORWARD", "policy drop", "from", BOTH),
        ("ip6 filter", "FORWARD", "policy drop", "to", BOTH),
    ]
    assert all(f["code"] == "HOST_FIREWALL_DROPS" and f["owner"] == "ufw" for f in found)
    assert "before6.rules" in [f for f in found if f["kind"] == "from"][0]["fix"]
    assert "ip filter INPUT (policy drop) drops protocol 41 from the peers (2 tunnels: sbs-a, sbs-b)" in \
        [f for f in found if f["kind"] == "in"][0]["message"]
    host.nft("fw", "flush", "ruleset")
    _load(host, UFW_FIXED)
    # the fix lets Y's protocol 41 in; the other peer (192.0.2.7) is still dropped, and named
    assert _summary(_found(host)) == [("ip filter", "INPUT", "policy drop", "in", ("sbs-b",))]


@pytest.mark.parametrize("shape", ["docker-20.10", "docker-28"])
def test_docker_drops_forwarding_and_docker_user_lets_it_through(host, shape):
    text = {"docker-20.10": DOCKER_20, "docker-28": DOCKER_28}[shape]
    _load(host, text)
    found = _found(host)
    assert _summary(found) == [("ip6 filter", "FORWARD", "policy drop", "from", BOTH),
                               ("ip6 filter", "FORWARD", "policy drop", "to", BOTH)]
    assert found[0]["owner"] == "docker" and "DOCKER-USER -i sbs-+" in found[0]["fix"]
    host.nft("fw", "flush", "ruleset")
    fixed = text.replace("\tchain DOCKER-USER {\n", DOCKER_FIX, 1)
    assert fixed != text
    _load(host, fixed)
    assert _found(host) == []


def test_firewalld_rejects_and_its_zone_and_policy_let_it_through(host):
    _load(host, FIREWALLD)
    found = _found(host)
    # the uplink's zone (public) dispatch: in by eth0, out by eth0, each ends in its zone's reject
    assert _summary(found) == [
        ("inet firewalld", "filter_FORWARD_POLICIES", 'iifname "eth0" reject with icmpx admin-prohibited', "to", BOTH),
        ("inet firewalld", "filter_FORWARD_POLICIES", 'oifname "eth0" reject with icmpx admin-prohibited', "from",
         BOTH),
        ("inet firewalld", "filter_INPUT_POLICIES", 'iifname "eth0" reject with icmpx admin-prohibited', "in", BOTH),
    ]
    assert all(f["owner"] == "firewalld" for f in found)
    host.nft("fw", "flush", "ruleset")
    _load(host, FIREWALLD_FIXED)
    assert _summary(_found(host)) == [
        ("inet firewalld", "filter_INPUT_POLICIES", 'iifname "eth0" reject with icmpx admin-prohibited', "in",
         ("sbs-b",))]


def test_without_the_uplinks_name_only_certain_drops_are_reported(host):
    # firewalld dispatches on the uplink's name: unknown, the catch-all reject is still certain
    _load(host, FIREWALLD)
    kinds = sorted((f["chain"], f["kind"]) for f in _found(host, uplink=None))
    assert kinds == [("filter_FORWARD_POLICIES", "from"), ("filter_FORWARD_POLICIES", "to"),
                     ("filter_INPUT_POLICIES", "in")]


def test_an_input_chain_for_ssh_only_drops_protocol_41(host):
    _load(host, SSH_ONLY)
    assert _summary(_found(host)) == [("inet filter", "input", "policy drop", "in", BOTH)]


def test_debians_default_ruleset_and_our_own_table_drop_nothing(host):
    from sixbroker.linux import apply_nft
    _load(host, DEBIAN_DEFAULT)
    plans = [vps(1, device="sbs-a")]
    apply_nft.apply(plans, netns=host["fw"])       # ours drops protocol 41 from strangers: not a finding
    assert _found(host, plans=plans) == []
    assert hostfw.check([], "eth0", netns=host["fw"]) == []


def test_a_rule_that_may_accept_is_no_warning(host):
    # rules the probes certainly miss (another device, UDP only): the policy drop is certain
    chain = ("table ip6 filter {\n chain FORWARD {\n  type filter hook forward priority 0; policy drop;\n"
             "  iifname \"docker0\" accept\n  udp dport 53 accept\n%s }\n}\n")
    _load(host, chain % "")
    assert _summary(_found(host)) == [("ip6 filter", "FORWARD", "policy drop", "from", BOTH),
                                      ("ip6 filter", "FORWARD", "policy drop", "to", BOTH)]
    # a port or a mark the probes cannot know: maybe accepted, so no warning
    for maybe in ("  tcp dport 443 accept\n", "  meta mark 0x1 accept\n"):
        host.nft("fw", "flush", "ruleset")
        _load(host, chain % maybe)
        assert _found(host) == [], maybe


def test_a_namespace_that_is_gone_is_an_error_with_a_code():
    from sixbroker.core.errors import SixbrokerError
    with pytest.raises(SixbrokerError) as e:
        hostfw.check([vps(1)], "eth0", netns="sbt-nowhere-" + uuid.uuid4().hex[:6])
    assert e.value.code == "NETNS_NOT_FOUND"


def test_an_unconfigured_uplink_is_the_default_routes_device(nets):  # noqa: F811
    n = nets("fw", "peer")
    n.veth("fw", "up0", "peer", "eth0")
    assert hostfacts.default_route_device4(n["fw"]) is None
    n.ip("fw", "addr", "add", "192.0.2.2/24", "dev", "up0")
    n.ip("fw", "route", "add", "default", "via", "192.0.2.1")
    assert hostfacts.default_route_device4(n["fw"]) == "up0"
