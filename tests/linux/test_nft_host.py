"""The nftables applier against the host's real nftables, in throwaway network namespaces.

The host kernel has no sit, but nftables does not care what kind a device is: a veth named like the tunnel
stands in for it, and protocol 41 is sent and received with raw sockets.  So the firewall's behaviour (who
gets through, MSS clamping, counters, atomic replacement, never touching other tables) is tested here on
packets, and the whole tunnel again in the QEMU guest (tests/e2e)."""

import errno
import os
import socket
import subprocess
import time
import uuid

import pytest

from sixbroker.core import addr, plan

from sixbroker.linux import apply_nft, nft_table, nft_token
from sixbroker.linux.netns import InNetns
from sixbroker.core.errors import SixbrokerError
from netns_world import Namespaces, X, Y, nets, run, send41, vps  # noqa: F401  (nets is a fixture)

THIRD = "203.0.113.99"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


def home(lan=("br-lan",), device="sittun", mtu=None):
    cfg = {"peeraddr": X, "ip6addr": "2001:db8:5b10::b/127", "ip6prefix": ["2001:db8:5b11::/64"]}
    if mtu:
        cfg["mtu"] = str(mtu)
    from sixbroker.core import options
    o = options.validate(cfg)
    return plan.router(o, "wan6", addr.Address.parse(X), addr.Address.parse(Y), device, lan=list(lan))




def many(n):
    """n broker tunnels, distinct (local, remote) pairs of documentation addresses: remotes from
    192.0.2.0/24 and 198.51.100.0/24, one more local address of the VPS's per 500 tunnels."""
    remotes = [net + str(host) for net in ("192.0.2.", "198.51.100.") for host in range(1, 251)]
    out = []
    for i in range(n):
        p = vps(i, remote=remotes[i % 500], device="sbs-t%d" % i)
        p["tunnel"]["local"] = "203.0.113.%d" % (10 + i // 500)
        out.append(p)
    return out


# ---- the text and its round trip ---------------------------------------------------------------

CASES = {
    "home": lambda: [home()],
    "vps": lambda: [vps()],
    "both scopes": lambda: [home(device="sb-wan6"), vps()],
    "two lans": lambda: [home(lan=("br-lan", "br-guest"))],
    "1000 tunnels": lambda: many(1000),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_written_as_nft_prints_it_so_a_second_apply_loads_nothing(nets, case):
    n = nets("fw")
    plans = CASES[case]()
    exempt = [(Y, "192.0.2.99"), ("0.0.0.0", "192.0.2.98")]
    r = apply_nft.apply(plans, netns=n["fw"], exempt=exempt)
    assert r.changed
    listed = apply_nft.loaded(netns=n["fw"])
    assert nft_table.normalise(listed) == nft_table.normalise(r.text)
    assert not apply_nft.apply(plans, netns=n["fw"], exempt=exempt).changed


def test_aggregation_keeps_the_rule_count_flat():
    def rules(text):
        return [ln for ln in text.splitlines() if ln.startswith("\t\t") and not ln.startswith("\t\ttype")
                and "elements" not in ln and not ln.startswith("\t\t\t") and ln.strip() not in ("counter", "flags interval")
                and ln.split()[0] not in ("size", "flags", "timeout")]
    two, thousand = nft_table.ruleset(many(2)), nft_table.ruleset(many(1000))
    assert rules(two) == rules(thousand)
    # 6in4 accept and drop, clamp, source check, forward in and out; the packets sent
    assert len(rules(thousand)) == 7
    # two counters per peer (received, sent) and one per tunnel's source check
    assert thousand.count(" counter,") + thousand.count(" counter }") == 3000


def test_the_seed_home_ruleset():
    text = nft_table.ruleset([home()])
    assert "elements = { 198.51.100.20 . 203.0.113.10 counter }" in text
    forward = text.split("chain forward {")[1].split("chain output {")[0]
    lines = [ln.strip() for ln in forward.splitlines()[2:] if ln.strip() not in ("}", "")]
    assert lines == [
        "oifname @tunnels tcp flags syn tcp option maxseg size set rt mtu",
        'meta nfproto ipv6 ct state established,related counter accept comment "sixbroker-wan6-established"',
        'meta l4proto ipv6-icmp counter accept comment "sixbroker-wan6-icmpv6"',
        'meta nfproto ipv6 iifname @forward_iif6 counter accept comment "forward_iif6"',
        'meta nfproto ipv6 iifname "sittun" counter reject with icmpx admin-prohibited comment "sixbroker-wan6-reject"',
    ]
    assert "policy accept;" in forward and "policy drop" not in text


def test_an_accept_after_a_deny_in_one_plan_is_refused():
    p = home()
    p["firewall"]["rules"].append(plan.rule("late", "forward", "ACCEPT", "ipv6", iif="eth1"))
    with pytest.raises(ValueError):
        nft_table.ruleset([p])


def test_no_rules_means_no_table(nets):
    n = nets("fw")
    apply_nft.apply([vps()], netns=n["fw"])
    assert nft_table.ruleset([]) is None
    assert apply_nft.apply([], netns=n["fw"]).changed
    assert apply_nft.loaded(netns=n["fw"]) is None
    assert not apply_nft.apply([], netns=n["fw"]).changed


def test_nft_refusing_is_one_line_with_a_code(nets):
    n = nets("fw")
    bad = vps()
    bad["tunnel"]["local"] = "203.0.113.300"
    with pytest.raises(SixbrokerError) as e:
        apply_nft.apply([bad], netns=n["fw"])
    assert e.value.code == "NFT_FAIL" and "\n" not in str(e.value) and "Error" in str(e.value)
    assert apply_nft.loaded(netns=n["fw"]) is None        # nothing half loaded


def test_missing_namespace_is_not_created():
    with pytest.raises(SixbrokerError) as e:
        apply_nft.apply([vps()], netns="sbt-nowhere")
    assert e.value.code == "NETNS_NOT_FOUND" and not os.path.exists("/run/netns/sbt-nowhere")


# ---- other tables ------------------------------------------------------------------------------

OTHER = """table inet other {
\tset blocked { type ipv4_addr; elements = { 192.0.2.66 } }
\tchain input {
\t\ttype filter hook input priority -10; policy accept;
\t\tip saddr @blocked counter drop
\t\tmeta l4proto ipv6 counter
\t}
}
table ip legacy {
\tchain c {
\t\ttype filter hook forward priority 0; policy accept;
\t}
}
"""


def test_other_tables_are_never_touched(nets):
    n = nets("fw")
    n.nft("fw", "-f", "-", stdin=OTHER)
    before = n.nft("fw", "-s", "list", "ruleset").stdout
    apply_nft.apply([home()], netns=n["fw"])
    apply_nft.apply([vps()], netns=n["fw"])
    mine = n.nft("fw", "-s", "list", "table", "inet", "sixbroker").stdout
    assert n.nft("fw", "-s", "list", "ruleset").stdout == before + mine
    assert apply_nft.remove(netns=n["fw"])
    assert not apply_nft.remove(netns=n["fw"])
    assert n.nft("fw", "-s", "list", "ruleset").stdout == before


# ---- packets -----------------------------------------------------------------------------------

def received41(sock):
    """Sources of the protocol-41 packets the raw socket got (they passed every input chain)."""
    got = []
    while True:
        try:
            data = sock.recv(2048)
        except BlockingIOError:
            return got
        got.append(socket.inet_ntoa(data[12:16]))


@pytest.fixture
def wan(nets):
    """vps (X) with the peer (Y) and a third host on one link (a bridge in `sw`)."""
    n = nets("vps", "peer", "third", "sw")
    n.ip("sw", "link", "add", "br0", "type", "bridge")
    n.ip("sw", "link", "set", "br0", "up")
    for name, a in (("vps", X), ("peer", Y), ("third", THIRD)):
        n.veth("sw", "p-" + name, name, "eth0")
        n.ip("sw", "link", "set", "p-" + name, "master", "br0")
        n.ip(name, "addr", "add", a + "/32", "dev", "eth0")
        n.ip(name, "route", "add", "default", "dev", "eth0")      # everyone is on this one link
    listener = n.socket("vps", socket.AF_INET, socket.SOCK_RAW, 41)
    listener.setblocking(False)
    yield n, listener
    listener.close()


def _settle(sock, want, timeout=2.0):
    got, end = [], time.time() + timeout
    while time.time() < end:
        got += received41(sock)
        if sorted(got) == sorted(want):
            time.sleep(0.05)
            return got + received41(sock)
        time.sleep(0.02)
    return got


def test_protocol_41_only_from_the_peer_to_its_endpoint(wan):
    n, listener = wan
    apply_nft.apply([vps()], netns=n["vps"])
    send41(n, "peer", Y, X)
    send41(n, "third", THIRD, X)
    assert _settle(listener, [Y]) == [Y]
    c = apply_nft.counters(netns=n["vps"])
    assert c["peers"][X + " . " + Y]["packets"] == 1
    assert c["rules"]["locals6in4"]["packets"] == 1
    # the drop is for our endpoints only: protocol 41 to another address of this host is not ours to judge
    n.ip("vps", "addr", "add", "203.0.113.50/32", "dev", "eth0")
    send41(n, "third", THIRD, "203.0.113.50")
    assert _settle(listener, [THIRD]) == [THIRD]


def test_a_foreign_tunnels_peer_is_exempt_from_the_drop(wan):
    n, listener = wan
    apply_nft.apply([vps()], netns=n["vps"], exempt=[(X, THIRD)])
    send41(n, "third", THIRD, X)
    assert _settle(listener, [THIRD]) == [THIRD]
    # a foreign device listening on X for anyone (local only): then X is not ours to guard at all
    apply_nft.apply([vps()], netns=n["vps"], exempt=[(X, "0.0.0.0")])
    assert "locals6in4" not in apply_nft.loaded(netns=n["vps"])
    send41(n, "third", THIRD, X)
    assert _settle(listener, [THIRD]) == [THIRD]


def test_our_accept_never_overrides_a_drop_elsewhere(wan):
    n, listener = wan
    apply_nft.apply([vps()], netns=n["vps"])
    n.nft("vps", "-f", "-", stdin="table ip guard {\n chain input {\n  type filter hook input priority 10;"
          " policy accept;\n  ip saddr %s meta l4proto 41 drop\n }\n}\n" % Y)
    send41(n, "peer", Y, X)
    assert _settle(listener, [], timeout=0.5) == []
    assert apply_nft.counters(netns=n["vps"])["peers"][X + " . " + Y]["packets"] == 1   # we saw it pass


def test_second_apply_keeps_the_counters(wan):
    n, listener = wan
    apply_nft.apply([vps()], netns=n["vps"])
    for _ in range(3):
        send41(n, "peer", Y, X)
    send41(n, "third", THIRD, X)
    _settle(listener, [Y, Y, Y])
    before = n.nft("vps", "list", "ruleset").stdout
    assert "packets 3 " in before and "packets 1 " in before
    assert not apply_nft.apply([vps()], netns=n["vps"]).changed
    # the peer's last-packet element stays too, its expiry only older
    assert _no_expiry(n.nft("vps", "list", "ruleset").stdout) == _no_expiry(before)
    assert " expires " in before


def _no_expiry(text):
    import re
    return re.sub(r" expires [0-9dhms]+", "", text)


# ---- the home end's forward policy and MSS clamping --------------------------------------------

@pytest.fixture
def homenet(nets):
    """lanhost -- (br-lan) router (sittun) -- far: a veth named like the tunnel stands in for it."""
    n = nets("lanhost", "router", "far")
    n.veth("router", "br-lan", "lanhost", "eth0")
    n.veth("router", "sittun", "far", "eth0")
    for name in ("lanhost", "router", "far"):
        for dev in ("all", "default", "eth0", "br-lan", "sittun"):
            try:
                n.sysctl(name, "net.ipv6.conf.%s.accept_dad" % dev, "0")
            except OSError:
                pass
    n.sysctl("router", "net.ipv6.conf.all.forwarding", "1")
    n.ip("router", "link", "set", "sittun", "mtu", "1400")
    n.ip("router", "addr", "add", "2001:db8:5b11::1/64", "dev", "br-lan")
    n.ip("router", "addr", "add", "2001:db8:5b10::b/127", "dev", "sittun")
    n.ip("lanhost", "addr", "add", "2001:db8:5b11::100/64", "dev", "eth0")
    n.ip("lanhost", "-6", "route", "add", "default", "via", "2001:db8:5b11::1")
    n.ip("far", "addr", "add", "2001:db8:5b10::a/127", "dev", "eth0")
    n.ip("far", "-6", "route", "add", "2001:db8:5b11::/64", "via", "2001:db8:5b10::b")
    n.ip("router", "-6", "route", "add", "default", "via", "2001:db8:5b10::a")
    time.sleep(0.2)
    return n


def _listen(n, ns, port):
    s = n.socket(ns, socket.AF_INET6, socket.SOCK_STREAM)
    s.bind(("::", port))
    s.listen(4)
    s.settimeout(5)
    return s


def _connect(n, ns, target, port):
    c = n.socket(ns, socket.AF_INET6, socket.SOCK_STREAM)
    c.settimeout(5)
    c.connect((target, port))
    return c


def test_home_forward_policy_on_packets(homenet):
    n = homenet
    lan_server, far_server = _listen(n, "lanhost", 8080), _listen(n, "far", 8081)
    try:
        # before our table: the far side reaches into the LAN
        _connect(n, "far", "2001:db8:5b11::100", 8080).close()
        lan_server.accept()[0].close()
        apply_nft.apply([home(mtu=1400)], netns=n["router"])
        with pytest.raises(OSError) as e:
            _connect(n, "far", "2001:db8:5b11::100", 8080)
        assert e.value.errno == errno.EACCES     # ICMPv6 administratively prohibited, at once
        c = _connect(n, "lanhost", "2001:db8:5b10::a", 8081)
        conn = far_server.accept()[0]
        conn.sendall(b"through")
        assert c.recv(7) == b"through"           # replies pass as established
        # the SYN left through the 1400-byte "tunnel": MSS 1440 clamped to 1340 (TCP_MAXSEG less timestamps)
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG) == 1340 - 12
        conn.close()
        c.close()
        ping = run(["ping", "-6", "-c", "1", "-W", "2", "2001:db8:5b11::100"], ns=n["far"], check=False)
        assert ping.returncode == 0              # ICMPv6 is let in
        counters = apply_nft.counters(netns=n["router"])["rules"]
        # the SYN (and maybe the tail of the connection made before the table: it was never tracked)
        assert counters["sixbroker-wan6-reject"]["packets"] >= 1
        assert counters["forward_iif6"]["packets"] >= 1                 # the LAN's SYN
        assert counters["sixbroker-wan6-established"]["packets"] >= 3    # the rest of it, both ways
    finally:
        lan_server.close()
        far_server.close()


def test_without_clamping_the_mss_is_the_lans(homenet):
    # the control for the clamp above: same path, mss_clamp off
    n = homenet
    far_server = _listen(n, "far", 8082)
    try:
        apply_nft.apply([home(mtu=1400)], netns=n["router"], mss_clamp=False)
        c = _connect(n, "lanhost", "2001:db8:5b10::a", 8082)
        conn = far_server.accept()[0]
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG) == 1440 - 12
        conn.close()
        c.close()
    finally:
        far_server.close()


def test_a_thousand_tunnels_load_in_one_transaction(nets):
    n = nets("fw")
    plans = many(1000)
    t = time.time()
    r = apply_nft.apply(plans, netns=n["fw"])
    first = time.time() - t
    t = time.time()
    again = apply_nft.apply(plans, netns=n["fw"])
    second = time.time() - t
    assert r.transactions == 1 and again.transactions == 0
    print("nft: 1000 tunnels: first apply %.2f s, second %.2f s" % (first, second))


# ---- one tunnel at a time ----------------------------------------------------------------------

def _loaded_is(ns, plans):
    return nft_table.normalise(apply_nft.loaded(netns=ns)) == nft_table.normalise(nft_table.ruleset(plans))


def test_element_changes_make_the_same_table_as_loading_it_whole(nets):
    ns = nets("v")["v"]
    ps = many(600)          # two local addresses: the second one's LOCALS element is shared by 100
    apply_nft.apply(ps[:599], netns=ns)
    # add one tunnel, then re-key one (new remote), then remove two, by elements
    assert apply_nft.change([], [ps[599]], ps[0], netns=ns).changed
    assert _loaded_is(ns, ps)
    moved = vps(7, remote="192.0.2.251", device="sbs-t7")
    assert apply_nft.change([ps[7]], [moved], ps[0], netns=ns).changed
    assert _loaded_is(ns, ps[:7] + [moved] + ps[8:])
    # the second local address: ps[0] (on the first) cannot tell whether another tunnel still has it
    assert nft_table.change_text([ps[598]], [], ps[0]) is None
    assert apply_nft.change([ps[598]], [], ps[500], netns=ns).changed
    assert apply_nft.change([ps[599]], [], ps[500], netns=ns).changed
    assert _loaded_is(ns, ps[:7] + [moved] + ps[8:598])
    assert "203.0.113.11" in apply_nft.loaded(netns=ns)


def test_element_changes_refuse_what_only_the_whole_table_can_do(nets):
    ns = nets("v")["v"]
    ps = many(3)
    assert nft_table.change_text([], [ps[0]], None) is None         # the first tunnel: the rules come
    assert nft_table.change_text([ps[0]], [], None) is None         # the last one: the table goes
    assert nft_table.change_text([], [home(device="sb-wan6")], ps[0]) is None   # a different shape
    # no table, or an element already gone: refused (None), the caller loads the whole table
    assert apply_nft.change([], [ps[1]], ps[0], netns=ns) is None
    apply_nft.apply(ps[:2], netns=ns)
    assert apply_nft.change([ps[2]], [], ps[0], netns=ns) is None
    assert _loaded_is(ns, ps[:2])
    assert apply_nft.change([ps[1]], [ps[1]], ps[0], netns=ns).changed is False


def test_the_token_moves_with_every_nftables_transaction_and_only_then(nets):
    n = nets("a", "b")
    a = nft_token.token(n["a"])
    assert a is not None and a == nft_token.token(n["a"])
    assert not nft_token.token_same(a, nft_token.token(n["b"]))     # another namespace
    apply_nft.apply(many(2), netns=n["a"])
    b = nft_token.token(n["a"])
    assert int(b.split("/")[2]) == int(a.split("/")[2]) + 1 and not nft_token.token_same(a, b)
    apply_nft.apply(many(2), netns=n["a"])               # equal: nothing loaded, nothing counted
    assert nft_token.token(n["a"]) == b
    run(["nft", "add", "table", "inet", "someone_else"], ns=n["a"])
    assert nft_token.token(n["a"]) != b


# What fail2ban, Docker and a firewall manager do to their own tables between two broker commands.
NEIGHBOUR = [
    "add table inet f2b",
    "add chain inet f2b input { type filter hook input priority -1; policy accept; }",
    "add set inet f2b ban { type ipv4_addr; flags timeout; }",
    "add element inet f2b ban { 192.0.2.99 timeout 1h }",
    "add rule inet f2b input ip saddr @ban counter drop",
    "flush chain inet f2b input",
    "add table ip nat",
    "add chain ip nat POSTROUTING { type nat hook postrouting priority 100; }",
    "add rule ip nat POSTROUTING oifname \"eth0\" masquerade",
    "delete table inet f2b",
]


def test_the_token_proves_our_table_whatever_the_neighbours_do(nets):
    """Issue 12, defect 6: the generation moves with every table's change; the token's proof (token_same)
    holds while our own table is as it was, and fails on any change to it."""
    n = nets("a")
    ns = n["a"]
    ps = many(3)
    apply_nft.apply(ps, netns=ns)
    t = nft_token.token(ns)
    for line in NEIGHBOUR:
        n.nft("a", "-f", "-", stdin=line + "\n")
        now = nft_token.token(ns, known=t)
        assert now.split("/")[2] != t.split("/")[2] and nft_token.token_same(t, now), line
    # a counter moving is no change
    n.nft("a", "reset", "counters", "table", "inet", "sixbroker")
    assert nft_token.token_same(t, nft_token.token(ns))
    # nor is a peer's packet adding its last-packet element (nft_table.SEEN)
    peer = "%s . %s" % (ps[0]["tunnel"]["local"], ps[0]["tunnel"]["remote"])
    n.nft("a", "-f", "-", stdin="add element inet sixbroker seen6in4 { %s }\n" % peer)
    assert nft_token.token_same(t, nft_token.token(ns)) and not apply_nft.apply(ps, netns=ns).changed
    # every kind of change to our table is seen; apply loads the table again (new handles: a new digest)
    ours = [
        "delete element inet sixbroker peers6in4 { %s }" % peer,
        "add element inet sixbroker locals6in4 { 192.0.2.250 }",
        "flush set inet sixbroker tunnels",
        "add rule inet sixbroker input counter accept",
        "add chain inet sixbroker input { type filter hook input priority filter; policy drop; }",
        "flush chain inet sixbroker forward",
        "add set inet sixbroker extra { type ipv4_addr; }",
        "delete table inet sixbroker",
    ]
    for line in ours:
        n.nft("a", "-f", "-", stdin=line + "\n")
        assert not nft_token.token_same(t, nft_token.token(ns)), line
        assert apply_nft.apply(ps, netns=ns).changed
        t = nft_token.token(ns)
        n.nft("a", "add", "table", "inet", "f2b")
        assert nft_token.token_same(t, nft_token.token(ns)), line
    # a rule replaced in place keeps its handle: its expressions are in the digest all the same
    handle = [ln for ln in n.nft("a", "-a", "list", "chain", "inet", "sixbroker", "input").stdout.splitlines()
              if "@locals6in4" in ln][0].rsplit("# handle ", 1)[1]
    n.nft("a", "replace", "rule", "inet", "sixbroker", "input", "handle", handle,
          "meta", "l4proto", "ipv6", "ip", "daddr", "@locals6in4", "counter", "accept")
    assert not nft_token.token_same(t, nft_token.token(ns))


def test_a_one_tunnel_change_moves_the_digest_by_its_own_elements(nets):
    """token_after: the digest after change() computed from its delta equals the table read again."""
    n = nets("a")
    ns = n["a"]
    ps = many(4)
    apply_nft.apply(ps[:3], netns=ns)
    t = nft_token.token(ns)
    for before, after in (([], [ps[3]]), ([ps[1]], []), ([ps[2]], [vps(2, remote="192.0.2.250", device="sbs-t2")])):
        r = apply_nft.change(before, after, ps[0], netns=ns)
        # the source check's interval set (sources6) too: its element's first and last key (pipapo)
        assert r is not None and r.changed and r.delta is not None
        moved = nft_token.token_after(t, r, ns)
        read = nft_token.token(ns)
        assert moved == read, (before, after)
        t = read
    # a neighbour's transaction in between: the table is read again, and still agrees
    n.nft("a", "add", "table", "inet", "f2b")
    r = apply_nft.change([], [ps[1]], ps[0], netns=ns)
    assert nft_token.token_after(t, r, ns) == nft_token.token(ns)


# ---- the inner source check ----------------------------------------------------------------------

@pytest.fixture
def spoofnet(nets):
    """vps with two tunnels (veths named like them) to homes a and b, and an uplink host `up`.

    a holds its own addresses, one of b's routed prefix and one of nobody's: each is a source a home
    could send from."""
    n = nets("vps", "a", "b", "up")
    for name in ("vps", "a", "b", "up"):
        for dev in ("all", "default"):
            n.sysctl(name, "net.ipv6.conf.%s.accept_dad" % dev, "0")
    n.sysctl("vps", "net.ipv6.conf.all.forwarding", "1")
    n.veth("vps", "sbs-a", "a", "eth0")
    n.veth("vps", "sbs-b", "b", "eth0")
    n.veth("vps", "up0", "up", "eth0")
    pa, pb = vps(1, device="sbs-a"), vps(2, remote="192.0.2.7", device="sbs-b")
    for p, ns in ((pa, "a"), (pb, "b")):
        dev = p["tunnel"]["device"]
        a = p["addresses"][0]
        n.ip("vps", "addr", "add", "%s/%d" % (a["address"], a["length"]), "dev", dev, "nodad")
        router = str(addr.Network.parse("%s/%d" % (a["address"], a["length"])).host(1))
        n.ip(ns, "addr", "add", router + "/127", "dev", "eth0", "nodad")
        n.ip(ns, "-6", "route", "add", "default", "via", a["address"])
        for r in p["routes"]:
            n.ip("vps", "-6", "route", "add", "%s/%d" % (r["target"], r["length"]), "via", router)
            n.ip(ns, "addr", "add", r["target"] + "1/128", "dev", "eth0", "nodad")
    n.ip("a", "addr", "add", "2001:db8:7002::66/128", "dev", "eth0", "nodad")      # b's prefix
    n.ip("a", "addr", "add", "2001:db8:9999::66/128", "dev", "eth0", "nodad")      # nobody's
    n.ip("vps", "addr", "add", "2001:db8:ffff::1/64", "dev", "up0", "nodad")
    n.ip("up", "addr", "add", "2001:db8:ffff::2/64", "dev", "eth0", "nodad")
    n.ip("up", "-6", "route", "add", "default", "via", "2001:db8:ffff::1")
    sink = n.socket("up", socket.AF_INET6, socket.SOCK_DGRAM)
    sink.bind(("::", 9999))
    sink.setblocking(False)
    yield n, [pa, pb], sink
    sink.close()


def _send6(n, ns, source, target="2001:db8:ffff::2"):
    s = n.socket(ns, socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind((source, 0))
    s.sendto(source.encode(), (target, 9999))
    s.close()


def _arrived(sink, want, timeout=2.0):
    got, end = [], time.time() + timeout
    while time.time() < end and sorted(got) != sorted(want):
        try:
            got.append(sink.recv(100).decode())
        except BlockingIOError:
            time.sleep(0.02)
    time.sleep(0.05)
    try:
        got.append(sink.recv(100).decode())
    except BlockingIOError:
        pass
    return sorted(got)


SOURCES_A = ["2001:db8:6000::3", "2001:db8:7001::1", "2001:db8:7002::66", "2001:db8:9999::66"]


def test_without_the_source_check_a_home_forwards_any_source(spoofnet):
    # the control: the same world with the broker's pre-check rules (no `sources` in the plans)
    n, plans, sink = spoofnet
    for p in plans:
        p["firewall"].pop("sources", None)
    apply_nft.apply(plans, netns=n["vps"])
    for src in SOURCES_A:
        _send6(n, "a", src)
    assert _arrived(sink, SOURCES_A) == sorted(SOURCES_A)


def test_a_tunnel_forwards_only_its_own_sources_and_counts_the_rest(spoofnet):
    n, plans, sink = spoofnet
    apply_nft.apply(plans, netns=n["vps"])
    for src in SOURCES_A:
        _send6(n, "a", src)
    _send6(n, "a", "2001:db8:7002::66", target="2001:db8:7002::1")    # spoofed towards the other tunnel
    _send6(n, "b", "2001:db8:7002::1")
    # a's transfer address and routed prefix pass, b's prefix and nobody's from a do not; b is unaffected
    assert _arrived(sink, SOURCES_A[:2] + ["2001:db8:7002::1"]) == sorted(SOURCES_A[:2] + ["2001:db8:7002::1"])
    drops = apply_nft.spoofed(netns=n["vps"])
    assert drops["sbs-a"]["packets"] == 3 and drops["sbs-b"]["packets"] == 0
    assert apply_nft.counters(netns=n["vps"])["spoofed"] == drops


def test_the_source_check_follows_one_tunnels_element_changes(nets):
    ns = nets("v")["v"]
    ps = many(3)
    apply_nft.apply(ps[:2], netns=ns)
    assert apply_nft.change([], [ps[2]], ps[0], netns=ns).changed
    assert _loaded_is(ns, ps)
    assert '"sbs-t2" . 2001:db8:7002::/48' in apply_nft.loaded(netns=ns)
    assert apply_nft.change([ps[1]], [], ps[0], netns=ns).changed
    assert _loaded_is(ns, [ps[0], ps[2]])
    assert '"sbs-t1"' not in apply_nft.loaded(netns=ns)
    assert set(apply_nft.spoofed(netns=ns)) == {"sbs-t0", "sbs-t2"}


def test_no_table_no_spoof_counters(nets):
    assert apply_nft.spoofed(netns=nets("v")["v"]) == {}
