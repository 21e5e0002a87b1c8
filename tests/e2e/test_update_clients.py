"""ddclient and inadyn keep a tunnel current on a real kernel (the QEMU guest): `sixbroker server serve` runs
in the vps namespace on X:8443 with the certificate `init` made for X, each client runs in the home
namespace with files/broker/README.md's configuration (tests/dyndns_clients.py), and after each step the
kernel's sit device and our nftables peer set are read: `good` re-keys, `nochg` and `badauth` change nothing.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

import dyndns_clients
import topo
from server_cli import ServerCLI
from sixbroker.broker import reconcile, tls
from sixbroker.linux import apply_kernel, apply_nft, netns, nft_table

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIX = "2001:db8:5b00::/56"
PORT = 8443
A1, A2, A3 = "198.51.100.77", "198.51.100.99", "198.51.100.111"


def _listening(ns, host, port):
    with netns.InNetns(ns):
        s = socket.socket()
    try:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0
    finally:
        s.close()


@pytest.fixture
def served(clean, tmp_path, capsys):
    pytest.importorskip("uvicorn")
    cli = ServerCLI(str(tmp_path / "state" / "broker.db"), capsys)
    cli.ok("init", "--prefix", PREFIX, "--public-ipv4", topo.X, "--netns", "vps")
    key = cli.json("add", "home", "--remote", topo.Y)["key"]
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "src"))
    env.pop(reconcile.CRASH_ENV, None)
    entry = "import sys\nfrom sixbroker.cli import main\nsys.exit(main())"
    log = open(str(tmp_path / "serve.log"), "w")
    with netns.InNetns("vps"):
        proc = subprocess.Popen([sys.executable, "-c", entry, "server", "serve", "--listen", "%s:%d" % (topo.X, PORT),
                                 "--db", cli.path], stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    deadline = time.time() + 120        # the interpreter and FastAPI's imports under TCG
    while not _listening("home", topo.X, PORT):
        assert proc.poll() is None and time.time() < deadline, open(log.name).read()
        time.sleep(0.5)
    yield cli, key, tls.paths(cli.path)[0], tmp_path, log.name
    proc.terminate()
    proc.wait(30)
    log.close()
    apply_kernel.remove_all("vps", scope="broker")
    apply_nft.remove(nft_table.TABLE, "vps")


def kernel_remote():
    """The remote of sbs-home in the kernel."""
    link = json.loads(topo.ip("vps", "-d", "-j", "link", "show", "sbs-home").stdout)[0]
    return link["linkinfo"]["info_data"]["remote"]


def peers():
    """The (local, remote) elements of our table's protocol-41 peer set."""
    text = topo.nft("vps", "list", "set", "inet", "sixbroker", "peers6in4").stdout
    return sorted(re.findall(r"(\d+\.\d+\.\d+\.\d+) \. (\d+\.\d+\.\d+\.\d+)", text))


def answers(log):
    return [ln.split(" answer=")[1].split()[0] for ln in open(log).read().splitlines() if " answer=" in ln]


def in_line_with(address):
    assert kernel_remote() == address
    assert peers() == [(topo.X, address)]


@pytest.mark.parametrize("client", ["ddclient", "inadyn"])
def test_a_client_keeps_the_tunnel_current(served, client):
    if not shutil.which(client):
        pytest.skip("%s not installed (scripts/bootstrap)" % client)
    cli, key, cert, tmp, log = served
    server = "%s:%d" % (topo.X, PORT)
    run = getattr(dyndns_clients, client)
    force = "-force" if client == "ddclient" else "--force"
    in_line_with(topo.Y)

    out = run(tmp, server, cert, key, A1, ns="home")
    assert answers(log) == ["good"], out
    in_line_with(A1)                    # the answer came after the re-key: nothing to wait for

    out = run(tmp, server, cert, key, A1, force, ns="home")
    assert answers(log) == ["good", "nochg"], out
    in_line_with(A1)

    if client == "ddclient":
        dyndns_clients.age_ddclient_cache(tmp)
    out = run(tmp, server, cert, key, A2, ns="home")
    assert answers(log)[-1] == "good", out
    in_line_with(A2)
    assert cli.json("show", "home")["tunnel"]["remote"] == A2

    if client == "ddclient":
        dyndns_clients.age_ddclient_cache(tmp)
    before = topo.dumps("vps")
    out = run(tmp, server, cert, "x" * 22, A3, ns="home")
    assert answers(log)[-1] == "badauth", out
    in_line_with(A2)
    assert topo.dumps("vps") == before
