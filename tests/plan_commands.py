"""A plan as the iproute2 commands a person would type: the seed scenario is written as such commands, so
tests compare plans with it (tests/core/test_plan.py), and the broker bench feeds them to `ip -batch` as
its raw baseline (bench/broker/vs_raw.py).  No applier runs them.  Runs under CPython and MicroPython."""


def to_commands(plan):
    """The plan as argument lists."""
    t = plan["tunnel"]
    dev = t["device"]
    cmds = [["ip", "tunnel", "add", dev, "mode", t["mode"], "local", t["local"], "remote", t["remote"],
             "ttl", str(t["ttl"])]]
    if t.get("tos") and t["tos"] != "0":
        cmds[0] += ["tos", t["tos"]]
    cmds.append(["ip", "link", "set", dev, "mtu", str(t["mtu"]), "up"])
    for a in plan["addresses"]:
        cmds.append(["ip", "addr", "add", "dev", dev, a["address"] + "/" + str(a["length"])])
    for r in plan["routes"]:
        target = "default" if r["length"] == 0 else r["target"] + "/" + str(r["length"])
        c = ["ip", "-6", "route", "add", target]
        if r["source"]:
            c += ["from", r["source"]]
        if r["gateway"]:
            c += ["via", r["gateway"]]
        c += ["dev", dev]
        if r["metric"] is not None:
            c += ["metric", str(r["metric"])]
        cmds.append(c)
    for key, value in plan["sysctls"]:
        cmds.append(["sysctl", "-qw", key + "=" + value])
    return cmds
