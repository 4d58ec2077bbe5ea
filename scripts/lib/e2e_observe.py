"""The four steps end to end (scripts/e2e trace, step3): `vipctl trace` shows a live
connection's four steps with the test bed's own addresses and MACs in NAT, DR and TUN; the
step-3 detector names a NAT real server whose default route bypasses vipd, and stays silent
for the others."""

import json
import os
import subprocess
import time

from e2e_control import Downloads
from vipdbed import (
    API_PORT, PREFIX, TARGET_DIR, VIP4, Vipd, bash, check, load, log, netns,
)

VIPCTL = os.environ.get("VIPCTL_BIN", os.path.join(TARGET_DIR, "debug", "vipctl"))
ROUTER_MAC = "02:77:00:00:00:01"
LB_MAC = "02:77:00:00:00:0a"
RS_MAC = {f"10.77.0.2{i}": f"02:77:00:00:00:{0x14 + i:02x}" for i in (1, 2, 3)}
CLIENT = "192.168.77.2"


def vipctl(*args):
    r = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-lb", VIPCTL, "--api", f"127.0.0.1:{API_PORT}", *args],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, f"vipctl {' '.join(args)}: {r.stdout}{r.stderr}")
    return r.stdout


def traced(*filters, port=80):
    """`vipctl trace` during a slow download from CLIENT: (table text, JSON answer)."""
    d = Downloads(1, 2_000_000, "400k", "trace", port=port)
    try:
        time.sleep(0.5)
        answer = json.loads(vipctl("trace", *filters, "--seconds", "1.5", "--json"))
        text = vipctl("trace", *filters, "--seconds", "1")
    finally:
        res = d.finish()
    check(res["ok"] == 1, f"the traced download failed: {res}")
    return text, answer


def one_connection(answer, vip):
    conns = [c for c in answer["connections"] if c["client"].startswith(CLIENT + ":") and c["vip"] == vip]
    check(conns, f"no traced connection from {CLIENT} to {vip}: {answer}")
    return conns[0]


def steps_of(conn):
    return {s["step"]: s for s in conn["steps"]}


def scenario_trace():
    """vipctl trace: a connection's four steps with the bed's addresses and MACs (NAT, DR, TUN)."""
    services = [
        {"vip": VIP4, "proto": "tcp", "port": 80, "scheduler": "rr", "rs": [("10.77.0.21", 8080, 1)]},
        {"vip": VIP4, "proto": "tcp", "port": 8080, "scheduler": "rr", "mode": "dr", "rs": [("10.77.0.22", 8080, 1)]},
        {"vip": VIP4, "proto": "tcp", "port": 8081, "scheduler": "rr", "mode": "tunnel", "rs": [("10.77.0.23", 8081, 1)]},
    ]
    bash(f"vipd_rs_dr_setup {PREFIX} 2 {VIP4}; vipd_rs_tun_setup {PREFIX} 3 {VIP4}; vipd_rs_start {PREFIX} 3 8081")
    v = Vipd("trace", services=services)
    try:
        v.start()
        # NAT: all four steps through vipd.
        text, answer = traced("--client", CLIENT, "-t", f"{VIP4}:80")
        c = one_connection(answer, f"{VIP4}:80")
        st = steps_of(c)
        check(sorted(st) == [1, 2, 3, 4] and c["real_server"] == "10.77.0.21:8080" and c["forward"] == "Masq", f"NAT trace: {c}")
        client = c["client"]
        want = {
            1: (client, f"{VIP4}:80", ROUTER_MAC, LB_MAC),
            2: (client, "10.77.0.21:8080", LB_MAC, RS_MAC["10.77.0.21"]),
            3: ("10.77.0.21:8080", client, RS_MAC["10.77.0.21"], LB_MAC),
            4: (f"{VIP4}:80", client, LB_MAC, ROUTER_MAC),
        }
        for n, (src, dst, smac, dmac) in want.items():
            got = (st[n]["source"], st[n]["destination"], st[n]["source_mac"], st[n]["destination_mac"])
            check(got == (src, dst, smac, dmac), f"NAT step {n}: {got}, expected {(src, dst, smac, dmac)}")
        rows = [ln for ln in text.splitlines() if ln.strip()[:1] in "1234" and "Load balancer" in ln or "Client to" in ln or "Server to" in ln]
        check(len(rows) >= 4, f"vipctl trace table:\n{text}")
        log("    NAT, vipctl trace --client 192.168.77.2 -t 10.77.100.1:80:")
        for ln in text.splitlines()[:8]:
            log(f"      {ln}")
        # DR: steps 1 and 2; only the destination MAC changes; steps 3-4 bypass vipd.
        _, answer = traced("--client", CLIENT, "-t", f"{VIP4}:8080", port=8080)
        c = one_connection(answer, f"{VIP4}:8080")
        st = steps_of(c)
        check(sorted(st) == [1, 2] and c["forward"] == "Route" and c["real_server"] == "10.77.0.22:8080", f"DR trace: {c}")
        check(st[2]["destination"] == f"{VIP4}:8080" and st[2]["destination_mac"] == RS_MAC["10.77.0.22"], f"DR step 2: {st[2]}")
        check(any("do not pass through vipd" in n for n in c["notes"]), f"DR note: {c['notes']}")
        log(f"    DR: steps 1-2 only; step 2 {st[2]['source']} -> {st[2]['destination']} to MAC {st[2]['destination_mac']}")
        # TUN: step 2 carries the outer header to the real server.
        _, answer = traced("-r", "10.77.0.23", port=8081)
        c = one_connection(answer, f"{VIP4}:8081")
        st = steps_of(c)
        outer = st[2]["outer"] or {}
        check(outer.get("destination") == "10.77.0.23" and outer.get("source") == "10.77.0.10", f"TUN outer header: {st[2]}")
        check(st[2]["destination"] == f"{VIP4}:8081" and c["forward"] == "Tunnel", f"TUN step 2: {c}")
        log(f"    TUN: step 2 inner {st[2]['source']} -> {st[2]['destination']}, outer {outer['source']} -> {outer['destination']}")
    except Exception:
        log(v.tail())
        raise
    finally:
        rc = v.stop()
        bash(f"vipd_rs_tun_detach {PREFIX} 3; vipd_rs_start {PREFIX} 3 8080 5353; for i in 2 3; do vipd_rs_gateway {PREFIX} $i lb; done", check=False)
        for i in (2, 3):
            netns(f"{PREFIX}-rs{i}", "ip", "addr", "del", f"{VIP4}/32", "dev", "lo", check=False)
    check(rc == 0, f"vipd exit code {rc}")


def scenario_step3():
    """Step-3 detector: a NAT real server whose default route bypasses vipd is named; the others are not."""
    services = [{"vip": VIP4, "proto": "tcp", "port": 80, "scheduler": "rr",
                 "rs": [("10.77.0.21", 8080, 1), ("10.77.0.22", 8080, 1), ("10.77.0.23", 8080, 1)]}]
    v = Vipd("step3", services=services)
    try:
        v.start()
        r = load(url=f"http://{VIP4}/", connections=60, parallel=6, timeout=2)
        check(r["ok"] == 60, f"all routes via vipd: {r['ok']}/60")
        def missing():
            out = {}
            for ln in v.api("/metrics").splitlines():
                if ln.startswith("vipd_real_server_step3_missing_total{"):
                    rs = ln.split('real_server="')[1].split('"')[0]
                    out[rs] = int(float(ln.split()[-1]))
            return out
        check(not any(missing().values()), f"detector fired with every reply through vipd: {missing()}")
        bash(f"vipd_rs_gateway {PREFIX} 1 router")
        r = load(url=f"http://{VIP4}/", connections=30, parallel=6, timeout=3)
        time.sleep(1.5)
        m = missing()
        check(m.get("10.77.0.21:8080", 0) > 0, f"rs1's replies bypass vipd, not detected: {m} (load {r['ok']} ok, {r['errors']})")
        check(m.get("10.77.0.22:8080", 0) == 0 and m.get("10.77.0.23:8080", 0) == 0, f"detector blamed a server whose replies come through vipd: {m}")
        hints = [ln for ln in v.tail(200).splitlines() if "do not return through vipd" in ln]
        check(len(hints) == 1 and "10.77.0.21" in hints[0], f"one hint naming rs1 expected: {hints}")
        log(f"    rs1's default route via the router: {m['10.77.0.21:8080']} connection(s) counted for it, 0 for rs2/rs3")
        log(f"    hint: {hints[0].split('WARN')[-1].strip()[:160]}")
    except Exception:
        log(v.tail())
        raise
    finally:
        bash(f"vipd_rs_gateway {PREFIX} 1 lb", check=False)
        rc = v.stop()
    check(rc == 0, f"vipd exit code {rc}")


SCENARIOS = {"trace": scenario_trace, "step3": scenario_step3}
