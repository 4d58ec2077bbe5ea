#!/usr/bin/env python3
"""vipd's API under a slowloris attack (issue 20 item 2; docs/benchmarks.md, "The API under
slowloris"). A benchmark, not a test: it prints figures, next to the ceiling measured in the
same run (the GET latency before the attack), and fails on nothing but a broken set-up.

The namespace bed (scripts/lib/netns.sh, prefix $VIPD_BED_PREFIX, default `vslow`) with three
real servers; vipd (target/release/vipd if built, else target/debug/vipd; $VIPD_BIN) with its
API's defaults (api.header_timeout 10 s, api.max_connections 1024), a read-only token, and
HTTP health checks of the three real servers every 0.5 s through its kernel interface. From
the LB namespace (scripts/lib/slowloris_client.py): 5 s of GETs alone, then 5,000 slowloris
connections (half a head, a header line every 2 s) while the GETs go on, one on a kept-alive
connection every 50 ms and one on a new connection every 100 ms. Reported: how long each
slowloris connection lived before vipd closed it, the GETs' p50/p99/max before and during,
vipd's API counters (evicted, header timeouts, refused) and its health transitions (the goal:
none).

Usage (root): scripts/bench/slowloris.py [--connections N]   (about a minute)"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "scripts", "lib"))
os.environ.setdefault("VIPD_BED_PREFIX", "vslow")
from vipdbed import (  # noqa: E402
    API_PORT, LIB, PREFIX, TARGET_DIR, VIP4, Vipd, bash, isolated_lb_kernel, log, netns, remove_temp_dirs,
)
import tls_certs  # noqa: E402

READ = "bench-slowloris-read-0123456789"
RS4 = ["10.77.0.21", "10.77.0.22", "10.77.0.23"]


def counters(v):
    want = ("vipd_health_transitions_total", 'vipd_api_connections_evicted_total{listener="tcp"}',
            'vipd_api_header_timeouts_total{listener="tcp"}', 'vipd_api_connections_refused_total{listener="tcp"}',
            'vipd_api_idle_timeouts_total{listener="tcp"}', 'vipd_api_accept_errors_total{listener="tcp"}',
            'vipd_api_connections_accepted_total{listener="tcp"}')
    out = {}
    for line in v.api("/metrics").splitlines():
        key, _, value = line.rpartition(" ")
        if key in want:
            out[key.split("{")[0].removeprefix("vipd_")] = float(value)
    return out


def thread_cpu(pid, name):
    """CPU seconds (user + system) the thread `name` of `pid` has used."""
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() != name:
                    continue
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            continue
    return 0.0


def fmt(s):
    if not s or s.get("n", 0) == 0:
        return "-"
    return f"{s['p50']:.1f} / {s['p99']:.1f} / {s['max']:.1f} ({s['n']})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=5000)
    a = ap.parse_args()
    release = os.path.join(TARGET_DIR, "release", "vipd")
    binary = os.environ.get("VIPD_BIN") or (release if os.access(release, os.X_OK) else os.path.join(TARGET_DIR, "debug", "vipd"))
    hc = 'health_check = { type = "http", path = "/health", interval = 0.5, timeout = 0.4, rise = 2, fall = 2 }'
    services = [{"vip": VIP4, "proto": "tcp", "port": 80, "scheduler": "maglev", "keys": [hc],
                 "rs": [(ip, 8080, 1) for ip in RS4]}]
    bash(f"vipd_testbed_down {PREFIX} >/dev/null 2>&1 || true; vipd_testbed_up {PREFIX} 3 nat")
    v = None
    try:
        for i in (1, 2, 3):
            bash(f"vipd_rs_start {PREFIX} {i} 8080 5353")
        v = Vipd("slowloris", services=services, binary=binary, kernel_interface=f"{PREFIX}-k0",
                 token="bench-slowloris-admin-0123456789")
        read_file = tls_certs.private_file(os.path.join(v.dir, "read.token"), READ + "\n")
        v.api_keys = [f'read_token_file = "{read_file}"']
        v.write_config(services)
        with isolated_lb_kernel():
            v.start()
            deadline = time.time() + 15
            while time.time() < deadline:
                states = {r["health"]["state"] for r in v.api("/api/v1/health")["real_servers"]}
                if states == {"up"}:
                    break
                time.sleep(0.3)
            before = counters(v)
            cpu0 = thread_cpu(v.pid, "vipd-api")
            t0 = time.time()
            log(f"slowloris: vipd {binary}, api.header_timeout 10 s, api.max_connections 1024, {a.connections} connections")
            out = netns(f"{PREFIX}-lb", "python3", os.path.join(LIB, "slowloris_client.py"), "--port", str(API_PORT),
                        "--token-file", read_file, "--connections", str(a.connections), timeout=300)
            r = json.loads(out)
            wall = time.time() - t0
            cpu = thread_cpu(v.pid, "vipd-api") - cpu0
            after = counters(v)
            states = {r_["real_server"]: r_["health"]["state"] for r_ in v.api("/api/v1/health")["real_servers"]}
    finally:
        if v:
            v.stop()
        bash(f"vipd_testbed_down {PREFIX}", check=False)
    delta = {k: after[k] - before.get(k, 0) for k in after}
    lt = r["lifetime_s"]
    log("")
    log("| figure | value |")
    log("|---|---|")
    log(f"| slowloris connections opened (connect failures) | {r['opened']} ({r['connect_failed']}) in {r['opening_s']:.1f} s |")
    log(f"| closed by vipd / still open {20} s after the last opened | {r['closed_by_vipd']} / {r['still_open']} |")
    if lt["n"]:
        log(f"| lifetime of a slowloris connection, p50 / p99 / max | {lt['p50']:.2f} / {lt['p99']:.2f} / {lt['max']:.2f} s |")
    log(f"| vipd: evicted / header timeouts / refused / accept errors | {delta['api_connections_evicted_total']:.0f} / "
        f"{delta['api_header_timeouts_total']:.0f} / {delta['api_connections_refused_total']:.0f} / {delta['api_accept_errors_total']:.0f} |")
    for kind in ("kept_alive", "fresh"):
        base = r["get_ms"].get(f"baseline/{kind}")
        attack = r["get_ms"].get(f"attack/{kind}")
        log(f"| GET /api/v1/status, {kind.replace('_', ' ')} connection, ms p50 / p99 / max (n): ceiling before the attack | {fmt(base)} |")
        log(f"| the same during the attack | {fmt(attack)} |")
    log(f"| GET errors | {r['get_errors'] or 'none'} |")
    log(f"| vipd-api thread CPU over the run ({wall:.0f} s) | {cpu:.2f} s, {cpu / max(1, delta['api_connections_accepted_total']) * 1e6:.0f} us per accepted connection |")
    log(f"| health transitions during the run (goal: 0) | {delta['health_transitions_total']:.0f}; real servers {sorted(set(states.values()))} |")
    remove_temp_dirs()


if __name__ == "__main__":
    main()
