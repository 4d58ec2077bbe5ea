"""IPv6 full-NAT end to end (scenario `fnat6` of scripts/e2e): `fnat` over IPv6.

The real servers sit in another IPv6 subnet (fd00:78::/64, behind the router: their segment
addresses are taken away for the scenario, they accept no redirects) and their default routes
point at the router, not at vipd. Under full-NAT they answer the local address fd00:77::100
through the router, which finds it by Neighbour Discovery (vipd answers for it), so the
replies come back through vipd. Checked: the router resolved the local address to vipd's MAC;
the real servers see the local address, never the client; 20 concurrent rate-limited
downloads over IPv6 arrive byte-exact; every real server's four steps are counted;
`vipctl -L -c` shows client and local endpoint; a pool of 40 local ports (per real server) is
exhausted by a bounded spoofed IPv6 SYN flood (drop_fnat_pool_exhausted) while the downloads
carry on to the last byte; an IPv4 local address for the IPv6 service is refused by the API.
"""

import json
import os
import subprocess
import time

from e2e_control import Downloads
from e2e_fnat import metrics
from e2e_sched import VIPCTL, ctl
from vipdbed import API_PORT, LIB, PREFIX, VIP6, Vipd, check, check_drops, log, netns, bash

LOCAL = "fd00:77::100"
PORTS = (40000, 40039)
RS_NET, RS_GW = "fd00:78::/64", "fd00:78::1"
RS = {"rs1": "fd00:78::21", "rs2": "fd00:78::22", "rs3": "fd00:78::23"}
BED_RS = {"rs1": "fd00:77::21", "rs2": "fd00:77::22", "rs3": "fd00:77::23"}


def move_real_servers(there):
    """Put the real servers in RS_NET behind the router, or back on the segment. They accept
    no redirects meanwhile: the router shares one bridge with the box and would tell them a
    shorter way to the local address (IPv6 has no switch to stop the router sending them)."""
    router, br = f"{PREFIX}-router", f"{PREFIX}-br0"
    for i, (name, ip) in enumerate(RS.items(), 1):
        ns, dev, bed = f"{PREFIX}-{name}", f"{PREFIX}-rs{i}", BED_RS[name]
        if there:
            netns(ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_redirects=0",
                  f"net.ipv6.conf.{dev}.accept_redirects=0")
            netns(ns, "ip", "-6", "addr", "del", f"{bed}/64", "dev", dev, check=False)
            netns(ns, "ip", "-6", "addr", "replace", f"{ip}/64", "dev", dev, "nodad")
            netns(ns, "ip", "-6", "route", "replace", "default", "via", RS_GW, "dev", dev)
        else:
            netns(ns, "ip", "-6", "addr", "del", f"{ip}/64", "dev", dev, check=False)
            netns(ns, "ip", "-6", "addr", "replace", f"{bed}/64", "dev", dev, "nodad", check=False)
            netns(ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_redirects=1",
                  f"net.ipv6.conf.{dev}.accept_redirects=1", check=False)
    if there:
        netns(router, "ip", "-6", "addr", "replace", f"{RS_GW}/64", "dev", br, "nodad")
    else:
        netns(router, "ip", "-6", "addr", "del", f"{RS_GW}/64", "dev", br, check=False)


def curl6(timeout="5", source=None):
    args = ["curl", "-s", "-m", timeout]
    if source:
        args += ["--interface", source]
    return netns(f"{PREFIX}-client", *args, f"http://[{VIP6}]/", check=False)


def scenario_fnat6():
    """IPv6 full-NAT: real servers in another IPv6 subnet routed past the box still answer through it; 20 byte-exact downloads; four steps; pool exhaustion under a flood spares established flows."""
    services = [{"vip": VIP6, "proto": "tcp", "port": 80, "scheduler": "rr", "mode": "fnat",
                 "keys": [f'local_addresses = ["{LOCAL}"]', f'local_ports = "{PORTS[0]}-{PORTS[1]}"'],
                 "rs": [(ip, 8080, 1) for ip in RS.values()]}]
    move_real_servers(True)
    v = Vipd("fnat6", services=services)
    try:
        for name in RS:
            route = netns(f"{PREFIX}-{name}", "ip", "-6", "route", "get", LOCAL)
            check(f"via {RS_GW}" in route, f"{name} should reach {LOCAL} through the router: {route!r}")
        log(f"    real servers in {RS_NET}, default route via the router {RS_GW}, not the box")
        v.start()
        out = curl6(source="fd77::2")
        check(out.startswith("server=rs") and f"client={LOCAL}:" in out,
              f"the real server should see the local address, not the client: {out!r}")
        port = int(out.split(f"client={LOCAL}:", 1)[1].split()[0])
        check(PORTS[0] <= port <= PORTS[1], f"local port {port} outside the pool {PORTS}")
        log(f"    curl through the VIP: {out.strip()} (the real server sees [{LOCAL}]:{port})")
        neigh = netns(f"{PREFIX}-router", "ip", "-6", "neigh", "show", LOCAL)
        lb_mac = netns(f"{PREFIX}-lb", "cat", f"/sys/class/net/{PREFIX}-lb0/address").strip()
        check(lb_mac in neigh.lower(), f"the router's neighbour entry for {LOCAL}: {neigh!r}, vipd's MAC {lb_mac}")
        log(f"    router's neighbour entry (vipd answered its solicitation): {neigh.strip()}")

        downloads = Downloads(20, 3_000_000, "500K", "fnat6", v6=True)
        time.sleep(1.5)  # every download established before the flood
        listing = ctl("-L", "-c", "-n", "--limit", "200")
        rows = [ln for ln in listing.splitlines() if f" local [{LOCAL}]:" in ln]
        check(len(rows) >= 20, f"-L -c: {len(rows)} rows with a local endpoint, want >= 20:\n{listing}")
        check(all("[fd77::" in r and f"[{VIP6}]:80" in r for r in rows), f"-L -c rows: {rows[:3]}")
        log(f"    -L -c: {len(rows)} full-NAT rows, e.g. {rows[0]!r}")

        # 40 ports x 3 real servers = 120 local endpoints; 20 held by the downloads. A bounded
        # flood of 3000 spoofed SYNs (3000 flows, at most 4 s) takes the rest and overflows; at
        # most three floods, as in `fnat` (the client's qdisc may drop part of a burst).
        sent, exhausted, t = 0, 0, {}
        for _ in range(3):
            flood = subprocess.run(
                ["ip", "netns", "exec", f"{PREFIX}-client", "python3", os.path.join(LIB, "synflood.py"),
                 "--dst", VIP6, "--port", "80", "--flows", "3000", "--count", "3000", "--seconds", "4"],
                capture_output=True, text=True, timeout=60)
            check(flood.returncode == 0, f"synflood: {flood.stderr[-300:]}")
            sent += json.loads(flood.stdout)["sent"]
            time.sleep(0.5)
            t = v.stats()["total"]
            exhausted = t.get("drop_fnat_pool_exhausted", 0)
            if exhausted:
                break
        nonzero = {k: n for k, n in t.items() if n and (k.startswith("drop_") or k in ("rx_packets", "flows_created", "forwarded"))}
        check(exhausted > 0, f"the flood ({sent} SYNs) did not exhaust the pool: {nonzero}")
        log(f"    flood: {sent} SYNs; drop_fnat_pool_exhausted {exhausted}, flows_created {t['flows_created']}")
        running = downloads.running()
        r = downloads.finish()
        check(r["ok"] == 20, f"downloads: {r['ok']} of 20 byte-exact; {r['bad'][:5]}")
        check(len(r["servers"]) == 3, f"downloads not spread over the three real servers: {r['servers']}")
        log(f"    20 IPv6 downloads of 3 MB (still running during the flood: {running}): 20 byte-exact, {r['servers']}")

        m = metrics(v)
        steps = {
            "step 1": "vipd_real_server_step1_packets_total",
            "step 2": "vipd_real_server_in_packets_total",
            "step 3": "vipd_real_server_step3_packets_total",
            "step 4": "vipd_real_server_out_packets_total",
        }
        for name, ip in RS.items():
            got = {s: m.get((metric, f"[{ip}]:8080"), 0) for s, metric in steps.items()}
            check(all(n > 0 for n in got.values()), f"{name}: a step not counted: {got}")
            check(got["step 3"] >= got["step 4"] > 0, f"{name}: steps 3/4 {got}")
            log(f"    {name} ({ip}): " + ", ".join(f"{s} {int(n)}" for s, n in got.items()))
        t = v.stats()["total"]
        check(t["nat_replies_stateless"] == 0, f"replies without a flow: {t['nat_replies_stateless']}")
        explained = check_drops(v.stats(), allow=("drop_fnat_pool_exhausted", "drop_fnat_no_flow",
                                                  "drop_nat_reply_no_flow", "drop_fnat_icmp_error"))
        log(f"    counters: forwarded {t['forwarded']} nat_replies {t['nat_replies']}; drops {explained}")

        # Once the flood's half-open connections time out (tcp_syn 10 s) the pool serves again.
        deadline = time.time() + 30
        out = ""
        while time.time() < deadline:
            out = curl6(timeout="3")
            if f"client={LOCAL}:" in out:
                break
            time.sleep(1)
        check(f"client={LOCAL}:" in out, f"no new connection 30 s after the flood: {out!r}")
        log("    after the flood's entries expired: new connections served again")

        # The API's validator: an IPv4 local address for the IPv6 service is refused.
        bad = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-lb", VIPCTL, "-E", "-t", f"[{VIP6}]:80",
                              "-z", "10.77.0.100"],
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "VIPCTL_API": f"127.0.0.1:{API_PORT}"})
        check(bad.returncode != 0 and "local_addresses[0]" in bad.stderr and "is IPv4 but the VIP" in bad.stderr,
              f"an IPv4 local address for an IPv6 VIP: rc {bad.returncode}, {bad.stderr!r}")
        log(f"    vipctl -E -z 10.77.0.100 on the IPv6 service refused: {bad.stderr.strip()}")
    except Exception:
        log(v.tail())
        raise
    finally:
        rc = v.stop()
        move_real_servers(False)
        for i in (1, 2, 3):
            bash(f"vipd_rs_gateway {PREFIX} {i} lb", check=False)
            # As in `fnat`: the flood's half-open connections would keep the real servers
            # retransmitting SYN-ACKs to the local address into the next scenario's vipd.
            netns(f"{PREFIX}-rs{i}", "ip", "-6", "route", "replace", "blackhole", f"{LOCAL}/128", check=False)
    check(rc == 0, f"vipd exit code {rc}")


SCENARIOS = {"fnat6": scenario_fnat6}
