"""Full-NAT end to end (scenario `fnat` of scripts/e2e).

The real servers sit in another subnet (10.78.0.0/24, behind the router: their addresses on
the box's segment are taken away for the scenario) and their default routes point at the
router, not at vipd: under half-NAT their replies to the clients would bypass the box. Under
full-NAT they answer the local address 10.77.0.100 through the router (vipd answers the
router's ARP for it), so the replies come back through vipd anyway. Checked: the real servers see the local address, never the client; 20 concurrent
rate-limited downloads through the VIP arrive byte-exact; every real server's four steps are
counted; `vipctl -L -c` shows client and local address; a pool of 40 local ports (per real
server) is exhausted by a bounded spoofed SYN flood (drop_fnat_pool_exhausted counts it)
while the established downloads carry on to the last byte.
"""

import json
import os
import subprocess
import time
import tomllib

from e2e_control import Downloads
from e2e_sched import VIPCTL, ctl
from vipdbed import API_PORT, LIB, PREFIX, VIP4, Vipd, check, check_drops, log, netns, bash

LOCAL = "10.77.0.100"
SECOND_LOCAL = "10.77.0.101"
PORTS = (40000, 40039)
# The real servers' subnet for the scenario, routed by the router (its bridge gets .1).
RS_NET, RS_GW = "10.78.0.0/24", "10.78.0.1"
RS = {"rs1": "10.78.0.21", "rs2": "10.78.0.22", "rs3": "10.78.0.23"}
BED_RS = {"rs1": "10.77.0.21", "rs2": "10.77.0.22", "rs3": "10.77.0.23"}


def move_real_servers(there):
    """Put the real servers in RS_NET behind the router (`there`), or back on the segment.
    The router sends no redirects meanwhile: the box and the real servers share its bridge,
    and a redirect would tell the box a shorter way the scenario means to leave closed."""
    router, br = f"{PREFIX}-router", f"{PREFIX}-br0"
    for i, (name, ip) in enumerate(RS.items(), 1):
        ns, dev, bed = f"{PREFIX}-{name}", f"{PREFIX}-rs{i}", BED_RS[name]
        if there:
            netns(ns, "ip", "addr", "del", f"{bed}/24", "dev", dev, check=False)
            netns(ns, "ip", "addr", "replace", f"{ip}/24", "dev", dev)
            netns(ns, "ip", "route", "replace", "default", "via", RS_GW, "dev", dev)
        else:
            netns(ns, "ip", "addr", "del", f"{ip}/24", "dev", dev, check=False)
            netns(ns, "ip", "addr", "replace", f"{bed}/24", "dev", dev, check=False)
    if there:
        netns(router, "sysctl", "-qw", "net.ipv4.conf.all.send_redirects=0", f"net.ipv4.conf.{br}.send_redirects=0")
        netns(router, "ip", "addr", "replace", f"{RS_GW}/24", "dev", br)
    else:
        netns(router, "ip", "addr", "del", f"{RS_GW}/24", "dev", br, check=False)
        netns(router, "sysctl", "-qw", "net.ipv4.conf.all.send_redirects=1", f"net.ipv4.conf.{br}.send_redirects=1",
              check=False)


def metrics(v):
    """{(metric, real server): value} of the real servers' step counters."""
    text = netns(f"{PREFIX}-lb", "curl", "-s", "-m", "10", f"http://127.0.0.1:{API_PORT}/metrics")
    out = {}
    for line in text.splitlines():
        if not line.startswith("vipd_real_server_") or "{" not in line:
            continue
        name, rest = line.split("{", 1)
        labels, value = rest.rsplit("} ", 1)
        rs = labels.split('real_server="', 1)[1].split('"', 1)[0] if 'real_server="' in labels else ""
        out[(name, rs)] = out.get((name, rs), 0) + float(value)
    return out


def scenario_fnat():
    """Full-NAT: real servers routed past the box still answer through it; 20 byte-exact downloads; four steps; pool exhaustion under a flood spares established flows."""
    services = [{"vip": VIP4, "proto": "tcp", "port": 80, "scheduler": "rr", "mode": "fnat",
                 "keys": [f'local_addresses = ["{LOCAL}"]', f'local_ports = "{PORTS[0]}-{PORTS[1]}"'],
                 "rs": [(ip, 8080, 1) for ip in RS.values()]}]
    move_real_servers(True)
    v = Vipd("fnat", services=services)
    try:
        for name in RS:
            route = netns(f"{PREFIX}-{name}", "ip", "route", "get", LOCAL)
            check(f"via {RS_GW}" in route, f"{name} should reach {LOCAL} through the router: {route!r}")
        log(f"    real servers in {RS_NET}, default route via the router {RS_GW}, not the box")
        v.start()
        out = netns(f"{PREFIX}-client", "curl", "-s", "-m", "5", "--interface", "192.168.77.2", f"http://{VIP4}/")
        check(out.startswith("server=rs") and f"client={LOCAL}:" in out,
              f"the real server should see the local address, not the client: {out!r}")
        port = int(out.split(f"client={LOCAL}:", 1)[1].split()[0])
        check(PORTS[0] <= port <= PORTS[1], f"local port {port} outside the pool {PORTS}")
        log(f"    curl through the VIP: {out.strip()} (the real server sees {LOCAL}:{port})")

        downloads = Downloads(20, 3_000_000, "500K", "fnat")
        time.sleep(1.5)  # every download established before the flood
        listing = ctl("-L", "-c", "-n", "--limit", "200")
        rows = [ln for ln in listing.splitlines() if f" local {LOCAL}:" in ln]
        check(len(rows) >= 20, f"-L -c: {len(rows)} rows with a local address, want >= 20:\n{listing}")
        check(all("192.168.77." in r and f"{VIP4}:80" in r for r in rows), f"-L -c rows: {rows[:3]}")
        log(f"    -L -c: {len(rows)} full-NAT rows, e.g. {rows[0]!r}")

        # 40 ports x 3 real servers = 120 local endpoints; 20 held by the downloads. A bounded
        # flood of 3000 spoofed SYNs (3000 flows, at most 4 s) takes the rest and overflows.
        # The client's kernel may drop part of a burst of raw sends (its qdisc): at most three
        # floods, until the pool overflows.
        sent, exhausted, t = 0, 0, {}
        for _ in range(3):
            flood = subprocess.run(
                ["ip", "netns", "exec", f"{PREFIX}-client", "python3", os.path.join(LIB, "synflood.py"),
                 "--dst", VIP4, "--port", "80", "--flows", "3000", "--count", "3000", "--seconds", "4"],
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
        log(f"    20 downloads of 3 MB (still running during the flood: {running}): 20 byte-exact, {r['servers']}")

        m = metrics(v)
        steps = {
            "step 1": "vipd_real_server_step1_packets_total",
            "step 2": "vipd_real_server_in_packets_total",
            "step 3": "vipd_real_server_step3_packets_total",
            "step 4": "vipd_real_server_out_packets_total",
        }
        for name, ip in RS.items():
            got = {s: m.get((metric, f"{ip}:8080"), 0) for s, metric in steps.items()}
            check(all(n > 0 for n in got.values()), f"{name}: a step not counted: {got}")
            # Only client data packets carry the download: replies (step 3/4) outnumber none.
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
            out = netns(f"{PREFIX}-client", "curl", "-s", "-m", "3", f"http://{VIP4}/", check=False)
            if f"client={LOCAL}:" in out:
                break
            time.sleep(1)
        check(f"client={LOCAL}:" in out, f"no new connection 30 s after the flood: {out!r}")
        log("    after the flood's entries expired: new connections served again")

        # The pool from vipctl, as DPVS's ipvsadm sets it (-z): a second local address.
        ctl("-E", "-t", f"{VIP4}:80", "-z", LOCAL, "-z", SECOND_LOCAL)
        config = netns(f"{PREFIX}-lb", "curl", "-s", "-m", "10", f"http://127.0.0.1:{API_PORT}/api/v1/config")
        pool = next(s.get("local_addresses") for s in tomllib.loads(config)["services"])
        check(pool == [LOCAL, SECOND_LOCAL], f"vipctl -E -z: the service's pool is {pool}")
        seen = set()
        for _ in range(20):
            out = netns(f"{PREFIX}-client", "curl", "-s", "-m", "3", f"http://{VIP4}/", check=False)
            seen |= {a for a in (LOCAL, SECOND_LOCAL) if f"client={a}:" in out}
        check(seen, f"no answer from the new pool: {out!r}")
        bad = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-lb", VIPCTL, "-E", "-t", f"{VIP4}:80", "-z", "10.77.0.10"],
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "VIPCTL_API": f"127.0.0.1:{API_PORT}"})
        check(bad.returncode != 0 and "local_addresses[0]" in bad.stderr and "port address" in bad.stderr,
              f"a port address as local address: rc {bad.returncode}, {bad.stderr!r}")
        log(f"    vipctl -E -z {LOCAL} -z {SECOND_LOCAL}: pool {pool}, connections from {sorted(seen)}; "
            f"a port address refused: {bad.stderr.strip()}")
    except Exception:
        log(v.tail())
        raise
    finally:
        rc = v.stop()
        move_real_servers(False)
        for i in (1, 2, 3):
            bash(f"vipd_rs_gateway {PREFIX} {i} lb", check=False)
            # The flood's half-open connections keep the real servers' kernels retransmitting
            # SYN-ACKs to the local address for a minute: the next scenario's vipd would take
            # them for replies without a flow. A blackhole route ends them on the real server
            # (the bed, torn down by scripts/e2e, takes it along).
            for local in (LOCAL, SECOND_LOCAL):
                netns(f"{PREFIX}-rs{i}", "ip", "route", "replace", "blackhole", f"{local}/32", check=False)
    check(rc == 0, f"vipd exit code {rc}")


SCENARIOS = {"fnat": scenario_fnat}
