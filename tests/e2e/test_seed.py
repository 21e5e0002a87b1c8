"""The seed scenario on a real kernel: the broker's end (apply_kernel + apply_nft) in `vps`, the home end
(`sixbroker router`) in `home`, IPv6 across the tunnel, and what apply, re-apply, change and down do to the
kernel's and nftables' state, compared as the full `ip` and `nft` dumps."""

import errno
import os
import socket
import subprocess
import sys

import pytest

import topo
from sixbroker.core import addr, plan
from sixbroker.linux import apply_kernel, apply_nft, kernel_status, nft_table
from sixbroker.linuxrouter import router as standalone
from sixbroker.core.errors import CODES, SixbrokerError

ROUTER_CONFIG = """
config tunnel 'wan6'
\toption peeraddr '%s'
\toption ip6addr '2001:db8:5b10::b/127'
\tlist ip6prefix '2001:db8:5b11::/64'
\tlist lan 'lan0'
%s
""" % (topo.X, "%s")


def vps_plan(mtu=1480, routed=(topo.ROUTED,), remote=topo.Y, name="home", device="sittun"):
    return plan.broker(name, device, addr.Address.parse(topo.X), addr.Address.parse(remote),
                       addr.Network.parse(topo.TRANSFER), [addr.Network.parse(r) for r in routed], mtu=mtu,
                       uplink="v-vps")


def vps_up(plans):
    k = apply_kernel.apply(plans, netns="vps", scope="broker")
    n = apply_nft.apply(plans, netns="vps", exempt=k.foreign_tunnels)
    return k, n


def router_config(tmp_path, extra=""):
    path = os.path.join(str(tmp_path), "router")
    with open(path, "w") as f:
        f.write(ROUTER_CONFIG % extra)
    return path


def router(*args):
    return standalone.main(list(args) + ["--netns", "home"])


def both_up(tmp_path, extra=""):
    vps_up([vps_plan()])
    path = router_config(tmp_path, extra)
    assert router("up", "--config", path) == 0
    return path


def test_seed_tunnel_carries_ipv6_both_ways(clean, tmp_path, capsys):
    both_up(tmp_path)
    # the router's own traffic, then the LAN's through it, then the VPS reaching into the LAN (ICMPv6 is let in)
    assert topo.ping("home", topo.VPS6)
    assert topo.ping("lanhost", topo.VPS6)
    assert topo.ping("vps", topo.LANHOST6)
    capsys.readouterr()
    assert router("status", "--json") == 0
    st = __import__("json").loads(capsys.readouterr().out)
    dev = st["devices"][0]
    assert (dev["device"], dev["up"], dev["local"], dev["remote"], dev["mtu"]) == ("sb-wan6", True, topo.Y,
                                                                                    topo.X, 1480)
    assert dev["addresses"] == ["2001:db8:5b10::b/127"]
    assert dev["routes"] == ["::/0 via 2001:db8:5b10::a dev sb-wan6 metric 1024"]
    assert dev["counters"]["rx_packets"] >= 3 and dev["counters"]["tx_packets"] >= 3
    assert st["lan_addresses"] == ["2001:db8:5b11::1/64 dev lan0"]
    peers = st["firewall"]["counters"]["peers"]
    assert peers[topo.Y + " . " + topo.X]["packets"] >= 3


def test_home_firewall_rejects_new_connections_from_the_tunnel(clean, tmp_path):
    # the home end's tunnel MTU lower than the VPS's, so only its MSS clamping can explain a 1340 MSS
    both_up(tmp_path, "\toption mtu '1400'")
    server = topo.ns_socket("lanhost", socket.AF_INET6, socket.SOCK_STREAM)
    server.bind(("::", 8080))
    server.listen(1)
    vserver = topo.ns_socket("vps", socket.AF_INET6, socket.SOCK_STREAM)
    vserver.bind(("::", 8081))
    vserver.listen(1)
    try:
        # inward: rejected by the home end's forward policy (ICMPv6 admin-prohibited: EACCES at once)
        c = topo.ns_socket("vps", socket.AF_INET6, socket.SOCK_STREAM)
        c.settimeout(5)
        with pytest.raises(OSError) as e:
            c.connect((topo.LANHOST6, 8080))
        assert e.value.errno in (errno.EACCES, errno.EHOSTUNREACH), e.value
        c.close()
        # outward from the LAN: allowed, and the replies come back as established
        c = topo.ns_socket("lanhost", socket.AF_INET6, socket.SOCK_STREAM)
        c.settimeout(5)
        c.connect((topo.VPS6, 8081))
        conn, _ = vserver.accept()
        conn.sendall(b"hello")
        assert c.recv(5) == b"hello"
        # lanhost offered 1440 (its 1500 link); the SYN left home through its 1400 tunnel: clamped to
        # 1400 - 60 = 1340 (unclamped, the VPS's own 1480 tunnel would give 1420); TCP_MAXSEG reports it
        # less the 12 bytes of the timestamp option
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG) == 1340 - 12
        conn.close()
        c.close()
    finally:
        server.close()
        vserver.close()


def test_second_apply_changes_nothing(clean, tmp_path, capsys):
    path = both_up(tmp_path)
    assert topo.ping("lanhost", topo.VPS6)          # counters are not zero: a reload would show
    before = {ns: topo.dumps(ns) for ns in ("vps", "home")}
    k, n = vps_up([vps_plan()])
    assert k.changes == [] and not n.changed
    capsys.readouterr()
    assert router("up", "--config", path, "--json") == 0
    r = __import__("json").loads(capsys.readouterr().out)
    assert r["kernel_changes"] == [] and r["firewall_changed"] is False
    after = {ns: topo.dumps(ns) for ns in ("vps", "home")}
    assert after == before
    assert "counter packets 0 " not in before["vps"]["nft"].split("peers6in4")[1].split("}")[0]


def test_down_leaves_no_trace(clean, tmp_path, capsys):
    before = {ns: topo.dumps(ns) for ns in ("vps", "home")}
    path = both_up(tmp_path)
    assert topo.ping("lanhost", topo.VPS6)
    assert topo.dumps("home") != before["home"]
    capsys.readouterr()
    assert router("down") == 0
    out = capsys.readouterr().out
    assert "link del sb-wan6" in out and "addr del 2001:db8:5b11::1/64 dev lan0" in out
    k = apply_kernel.remove_all("vps", scope="broker")
    assert k.changes == ["link del sittun"]
    assert apply_nft.remove(nft_table.TABLE, "vps")
    after = {ns: topo.dumps(ns) for ns in ("vps", "home")}
    assert after == before
    # down twice: nothing left to do, still success
    assert router("down") == 0
    assert "0 kernel changes" in capsys.readouterr().out
    assert path


def _foreign_tunnel():
    """A 6in4 tunnel that is not ours, between home (Y) and the VPS's second address (X2)."""
    topo.batch("home", ["tunnel add he-ipv6 mode sit local %s remote %s ttl 64" % (topo.Y, topo.X2),
                        "link set he-ipv6 mtu 1480 up", "addr add 2001:db8:ffff::2/64 dev he-ipv6"])
    topo.batch("vps", ["tunnel add he-vps mode sit local %s remote %s ttl 64" % (topo.X2, topo.Y),
                       "link set he-vps mtu 1480 up", "addr add 2001:db8:ffff::1/64 dev he-vps"])
    topo.nft("home", "-f", "-", stdin="table inet other {\n chain input {\n"
             "  type filter hook input priority 0; policy accept;\n  meta l4proto ipv6 counter\n }\n}\n")


def _foreign_state():
    return (topo.ip("home", "-d", "link", "show", "he-ipv6").stdout, topo.ip("home", "addr", "show", "he-ipv6").stdout,
            topo.ip("vps", "-d", "link", "show", "he-vps").stdout,
            topo.nft("home", "-s", "list", "table", "inet", "other").stdout)


def test_foreign_device_and_table_survive_and_keep_working(clean, tmp_path):
    _foreign_tunnel()
    assert topo.ping("home", "2001:db8:ffff::1")
    state = _foreign_state()
    both_up(tmp_path)
    # our drop of protocol 41 to Y from non-peers spares the foreign tunnel's pair (exempt)
    assert "198.51.100.20 . 203.0.113.11" in topo.nft("home", "list", "table", "inet", standalone.TABLE).stdout
    assert topo.ping("home", "2001:db8:ffff::1")
    assert topo.ping("lanhost", topo.VPS6)
    assert _foreign_state() == state
    # without the exemption the same drop would cut it: the exemption is what keeps it alive
    plans = standalone.build_plans(standalone.read_config(router_config(tmp_path)), "home")
    apply_nft.apply([p for p, _ in plans], netns="home", table=standalone.TABLE)
    assert not topo.ping("home", "2001:db8:ffff::1", wait=1)
    assert router("up", "--config", router_config(tmp_path)) == 0
    assert topo.ping("home", "2001:db8:ffff::1")
    assert router("down") == 0
    apply_kernel.remove_all("vps", scope="broker")
    assert _foreign_state() == state
    assert topo.ping("home", "2001:db8:ffff::1")


def test_a_foreign_device_with_our_name_is_refused_and_untouched(clean, tmp_path, capsys):
    _foreign_tunnel()
    state = _foreign_state()
    capsys.readouterr()
    assert router("up", "--config", router_config(tmp_path, "\toption device 'he-ipv6'")) == 1
    err = capsys.readouterr().err
    assert err.startswith("sixbroker router: DEVICE_NOT_OURS: ") and err.count("\n") == 1, err
    assert _foreign_state() == state
    assert kernel_status.status("home", scope=standalone.SCOPE)["devices"] == []


def _only_changed_lines(before, after):
    b, a = before.splitlines(), after.splitlines()
    return [line for line in b if line not in a], [line for line in a if line not in b]


def test_changing_the_mtu_changes_only_the_mtu(clean):
    vps_up([vps_plan()])
    before = topo.dumps("vps")
    k, n = vps_up([vps_plan(mtu=1400)])
    assert k.changes == ["link set sittun mtu 1400"] and not n.changed
    after = topo.dumps("vps")
    gone, new = _only_changed_lines(before["link"], after["link"])
    assert len(gone) == 1 and len(new) == 1 and "mtu 1480" in gone[0] and new[0] == gone[0].replace("mtu 1480",
                                                                                                      "mtu 1400")
    assert [after[key] == before[key] for key in ("route6", "nft", "route4")] == [True, True, True]
    # the addresses dump shows the MTU in each device line; nothing else in it moved
    gone, new = _only_changed_lines(before["addr"], after["addr"])
    assert [g.replace("mtu 1480", "mtu 1400") for g in gone] == new


def test_changing_a_route_changes_only_that_route(clean):
    vps_up([vps_plan()])
    before = topo.dumps("vps")
    k, n = vps_up([vps_plan(routed=(topo.ROUTED, "2001:db8:5b20::/60"))])
    assert k.changes == ["route add 2001:db8:5b20::/60 via 2001:db8:5b10::b dev sittun metric 1024"]
    # the firewall gains the prefix as an allowed inner source of the tunnel, nothing else
    assert n.changed
    element = ', "sittun" . 2001:db8:5b20::/60'
    now = nft_table.normalise(topo.dumps("vps")["nft"])
    assert element in now and now.replace(element, "", 1) == nft_table.normalise(before["nft"])
    after = topo.dumps("vps")
    gone, new = _only_changed_lines(before["route6"], after["route6"])
    assert gone == [] and new == ["2001:db8:5b20::/60 via 2001:db8:5b10::b dev sittun proto 91 metric 1024 pref medium"]
    assert [after[key] == before[key] for key in ("link", "addr")] == [True, True]
    k, _ = vps_up([vps_plan()])
    assert k.changes == ["route del 2001:db8:5b20::/60 via 2001:db8:5b10::b dev sittun metric 1024"]
    assert topo.dumps("vps") == before


def test_rekeying_a_tunnel_keeps_its_device_and_mtu(clean, tmp_path):
    vps_up([vps_plan(mtu=1400)])
    idx = topo.ip("vps", "-o", "link", "show", "sittun").stdout.split(":")[0]
    k, n = vps_up([vps_plan(mtu=1400, remote="198.51.100.21")])
    assert k.changes[0].startswith("link set sittun local 203.0.113.10 remote 198.51.100.21 ")
    assert n.changed            # the peer set follows the remote
    assert topo.ip("vps", "-o", "link", "show", "sittun").stdout.split(":")[0] == idx
    assert "mtu 1400" in topo.ip("vps", "link", "show", "sittun").stdout
    vps_up([vps_plan(mtu=1400)])
    assert router("up", "--config", router_config(tmp_path, "\toption mtu '1400'")) == 0
    assert topo.ping("lanhost", topo.VPS6)


def test_protocol_41_from_a_third_host_reaches_neither_end(clean, tmp_path):
    both_up(tmp_path)
    assert topo.ping("home", topo.VPS6)
    vps_rx, home_rx = topo.rx_packets("vps", "sittun"), topo.rx_packets("home", "sb-wan6")
    drops = apply_nft.counters(nft_table.TABLE, "vps")["rules"]["locals6in4"]["packets"]
    # control: the same packet with the peer's source is decapsulated, so the check below can fail
    topo.send_6in4("inet", topo.Y, topo.X, topo.echo6(topo.HOME6, topo.VPS6))
    assert topo.eventually(lambda: topo.rx_packets("vps", "sittun"), vps_rx + 1) == vps_rx + 1
    for dst in (topo.X, topo.Y):
        topo.send_6in4("inet", topo.THIRD, dst, topo.echo6(topo.HOME6, topo.VPS6, seq=2))
    assert topo.eventually(lambda: apply_nft.counters(nft_table.TABLE, "vps")["rules"]["locals6in4"]["packets"],
                           drops + 1) == drops + 1
    assert topo.eventually(lambda: apply_nft.counters(standalone.TABLE, "home")["rules"]["locals6in4"]["packets"],
                           1) == 1
    assert topo.rx_packets("vps", "sittun") == vps_rx + 1
    assert topo.rx_packets("home", "sb-wan6") == home_rx


def test_scopes_keep_the_broker_and_the_router_apart(clean, tmp_path):
    # a broker tunnel and a router tunnel in one namespace: each scope's apply and down leave the other's
    vps_up([vps_plan()])
    other = plan.broker("x", "sbs-x", addr.Address.parse(topo.X), addr.Address.parse("192.0.2.7"),
                        addr.Network.parse("2001:db8:5b10::10/127"), [])
    r = apply_kernel.apply([other], netns="vps", scope="router")
    assert r.changes[0] == "link add sbs-x"
    assert ("203.0.113.10", "198.51.100.20") in r.foreign_tunnels
    k, _ = vps_up([vps_plan()])
    assert k.changes == []
    assert apply_kernel.remove_all("vps", scope="router").changes == ["link del sbs-x"]
    assert "sittun" in topo.ip("vps", "link").stdout


def test_many_tunnels_second_apply_is_free(clean, capsys):
    n = int(os.environ.get("SIXBROKER_E2E_TUNNELS", "100"))
    net = addr.Network.parse("2001:db8:6000::/48")
    pairs = [topo.doc_pair(i) for i in range(n)]
    plans = [plan.broker("t%d" % i, "sbs-t%d" % i, addr.Address.parse(pairs[i][0]), addr.Address.parse(pairs[i][1]),
                         net.subnet(127, i), [addr.Network.parse("2001:db8:7%03x::/48" % i)]) for i in range(n)]
    import time
    t = time.time()
    k, f = vps_up(plans)
    first = time.time() - t
    # per tunnel: add, set (alias, up), address, route
    kinds = [" ".join(c.split()[:2]) for c in k.changes if not c.startswith("sysctl")]
    assert sorted(set(kinds)) == ["addr add", "link add", "link set", "route add"] and len(kinds) == 4 * n
    t = time.time()
    k2, f2 = vps_up(plans)
    second = time.time() - t
    assert k2.changes == [] and not f2.changed
    t = time.time()
    k3 = apply_kernel.remove_all("vps", scope="broker")
    gone = time.time() - t
    assert len(k3.changes) == n
    with capsys.disabled():
        print("\ne2e scale: %d tunnels: first apply %.1f s (%d changes), second %.2f s (0 changes), remove %.1f s"
              % (n, first, len(k.changes), second, gone))


def test_a_route_in_the_way_is_not_taken_over(clean):
    topo.ip("vps", "-6", "route", "add", "2001:db8:5b20::/60", "dev", "v-vps", "metric", "1024")
    before = topo.dumps("vps")["route6"]
    vps_up([vps_plan()])
    with pytest.raises(SixbrokerError) as e:
        vps_up([vps_plan(routed=(topo.ROUTED, "2001:db8:5b20::/60"))])
    assert e.value.code == "ROUTE_NOT_OURS"
    assert "2001:db8:5b20::/60 dev v-vps metric 1024" in topo.dumps("vps")["route6"]
    apply_kernel.remove_all("vps", scope="broker")
    assert topo.dumps("vps")["route6"] == before
    topo.ip("vps", "-6", "route", "del", "2001:db8:5b20::/60", "dev", "v-vps")


def _cli(capsys, *args):
    capsys.readouterr()
    code = standalone.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("config,codes", [
    (None, "CONFIG_NOT_FOUND"),
    ("config tunnel 'wan6'\n\toption mtu 'abc'\n", "MISSING_PEER_ADDRESS,MISSING_IP6ADDR,INVALID_MTU"),
    ("config tunnel 'wan6'\n\toption peeraddr '203.0.113.10'\n\toption ip6adr '2001:db8::b/127'\n",
     "UNKNOWN_OPTION,MISSING_IP6ADDR"),
    ("config tunnel 'wan6'\n\toption peeraddr '203.0.113.10\n", "UCI_PARSE"),
    ("config interface 'lan'\n", "NO_TUNNELS"),
    (ROUTER_CONFIG % "\toption tunlink 'eth9'", "TUNLINK_NOT_UP"),
    (ROUTER_CONFIG.replace("lan0", "lan9") % "", "LAN_DEVICE_MISSING"),
])
def test_router_errors_are_one_line_with_a_code(clean, tmp_path, capsys, config, codes):
    path = os.path.join(str(tmp_path), "router")
    if config is not None:
        with open(path, "w") as f:
            f.write(config)
    before = topo.dumps("home")
    code, out, err = _cli(capsys, "up", "--config", path, "--netns", "home")
    assert (code, out) == (1, "")
    assert err.startswith("sixbroker router: " + codes + ": ") and err.count("\n") == 1, err
    assert topo.dumps("home") == before       # nothing half done


def test_router_usage_and_namespace_errors(clean, capsys):
    assert _cli(capsys, "sideways")[0] == 2
    code, out, err = _cli(capsys, "up", "--config")
    assert code == 2 and err.startswith("sixbroker router: --config needs a value; usage: ")
    code, out, err = _cli(capsys, "status", "--netns", "nowhere")
    assert (code, err) == (1, "sixbroker router: NETNS_NOT_FOUND: %s: nowhere\n" % CODES["NETNS_NOT_FOUND"])
    assert not os.path.exists("/run/netns/nowhere")       # looked for, never made
    code, out, err = _cli(capsys, "status", "--netns", "home")
    assert (code, err) == (0, "") and "no tunnel is up" in out


def test_the_command_line_entry_point(clean, tmp_path):
    # the real console path, as a user runs it: no traceback, one line, exit 1
    env = dict(os.environ, PYTHONPATH=os.path.join(os.getcwd(), "src"))
    p = subprocess.run([sys.executable, "-m", "sixbroker.cli", "router", "up", "--config",
                        os.path.join(str(tmp_path), "missing")], capture_output=True, text=True, env=env)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith("sixbroker router: CONFIG_NOT_FOUND: ") and p.stderr.count("\n") == 1
