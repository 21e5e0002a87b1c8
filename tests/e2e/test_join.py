"""One-paste join on a real kernel (the QEMU guest): `sixbroker server add` on the VPS prints its join line,
`sixbroker router join LINE --lan lan0` on the standalone home router writes /etc/sixbroker/router (here a
temporary file) and brings the tunnel up, and IPv6 works from the router and its LAN through the tunnel."""

import os

import topo
from sixbroker.linux import apply_kernel, apply_nft, nft_table
from sixbroker.linuxrouter import join as rjoin, router as standalone
from test_broker import Server, _add_home, homes  # noqa: F401  (the fixture)

PREFIX = "2001:db8:5b00::/56"


def test_server_add_then_router_join(homes, broker_db, tmp_path, capsys):  # noqa: F811
    server = Server(broker_db, capsys)
    try:
        server.json("init", "--prefix", PREFIX, "--uplink", "v-vps", "--netns", "vps")
        body = server.json("add", "r1", "--remote", topo.Y)
        t = body["tunnel"]
        cfg = str(tmp_path / "etc" / "router")
        assert rjoin.main([body["join"], "--lan", "lan0", "--config", cfg, "--netns", "home"]) == 0
        assert os.path.exists(cfg)
        # the router reaches the broker's end, and the VPS the router's LAN address, over the tunnel
        assert topo.ping("home", t["server_address"])
        assert topo.ping("vps", t["routed"][0].split("/")[0] + "1")
    finally:
        standalone.main(["down", "--netns", "home"])
        apply_kernel.remove_all("vps", scope="broker")
        apply_nft.remove(nft_table.TABLE, "vps")
