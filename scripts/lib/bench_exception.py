#!/usr/bin/env python3
"""What the kernel exception path costs (prints figures, asserts nothing): ping RTT and bulk
TCP between the box's kernel and a real server through vipd's kernel interface, against the
same between the router's kernel and the real server on the bridge (no vipd in between); and
the CPU the vipd-kernel thread uses idle and under the bulk transfer.

  VIPD_BED_PREFIX=vexc python3 scripts/lib/bench_exception.py [--mb 200] [--idle-s 20]

Builds its own test bed (PREFIX) and removes it afterwards. Uses target/release/vipd when it
exists (VIPD_BIN overrides).
"""

import argparse
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vipdbed  # noqa: E402

RELEASE = os.path.join(vipdbed.TARGET_DIR, "release", "vipd")
if "VIPD_BIN" not in os.environ and os.access(RELEASE, os.X_OK):
    vipdbed.VIPD = RELEASE

from e2e_exception import INGRESS_TABLE, ExceptionVipd  # noqa: E402
from vipdbed import PREFIX, bash, log, netns, remove_temp_dirs  # noqa: E402

RS = "10.77.0.21"


def ping(ns, count, interval):
    out = netns(ns, "ping", "-q", "-c", str(count), "-i", str(interval), "-W", "2", RS)
    m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", out)
    loss = re.search(r"([\d.]+)% packet loss", out).group(1)
    return f"min/avg/max {m.group(1)}/{m.group(2)}/{m.group(3)} ms, loss {loss}%"


def download(ns, mb):
    t0 = time.time()
    n = int(netns(ns, "sh", "-c", f"curl -s -m 120 http://{RS}:8080/bytes/{mb * 1000000} | wc -c", timeout=180).strip())
    dt = time.time() - t0
    return n, n / dt / 1e6


def upload(ns, mb):
    f = f"/tmp/vipd-bench-{PREFIX}-up"
    netns(ns, "sh", "-c", f"head -c {mb * 1000000} /dev/zero > {f}")
    t0 = time.time()
    out = netns(ns, "curl", "-s", "-m", "120", "-H", "Expect:", "--data-binary", f"@{f}", f"http://{RS}:8080/upload", timeout=180)
    dt = time.time() - t0
    netns(ns, "rm", "-f", f)
    n = int(re.search(r"received=(\d+)", out).group(1))
    return n, n / dt / 1e6


def thread_cpu_ns(pid):
    """Time on CPU (ns, from schedstat) of each named thread of pid."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                ns = int(f.read().split()[0])
            out[name] = out.get(name, 0) + ns
        except OSError:
            pass
    return out


def cpu_share(pid, seconds, during=None):
    before, t0 = thread_cpu_ns(pid), time.time()
    result = during() if during else time.sleep(seconds)
    after, dt = thread_cpu_ns(pid), time.time() - t0
    return {k: (after.get(k, 0) - v) / 1e9 / dt * 100 for k, v in before.items()}, result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--idle-s", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    log(f"vipd: {vipdbed.VIPD}")
    bash(f"vipd_testbed_down {PREFIX} >/dev/null 2>&1 || true; vipd_testbed_up {PREFIX} 3 nat")
    for i in (1, 2, 3):
        bash(f"vipd_rs_start {PREFIX} {i} 8080")
    lb = f"{PREFIX}-lb"
    netns(lb, "nft", "add", "table", "netdev", INGRESS_TABLE)
    netns(lb, "nft", "add", "chain", "netdev", INGRESS_TABLE, "ingress",
          f'{{ type filter hook ingress device "{PREFIX}-lb0" priority 0; policy drop; }}')
    v = ExceptionVipd("bench")
    v.router_check = v.checks = False  # idle means idle: no health checks either
    v.write_config([])
    try:
        v.start()
        pid = v.proc.pid  # `ip netns exec` execs vipd: the Popen pid is vipd's
        time.sleep(2)
        idle, _ = cpu_share(pid, args.idle_s)
        log(f"idle {args.idle_s} s, CPU % of one core by thread: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(idle.items()) if v > 0.005 or k == "vipd-kernel"))
        log(f"  (workers sleep idle_sleep_us = {v.idle_sleep_us} after an empty poll)")
        for r in range(args.rounds):
            log(f"-- round {r + 1}")
            log(f"  ping, 50 x 0.2 s apart   via vipd (box kernel -> exception path -> RS): {ping(lb, 50, 0.2)}")
            log(f"  ping, 50 x 0.2 s apart   no vipd (router kernel -> bridge -> RS):      {ping(f'{PREFIX}-router', 50, 0.2)}")
            log(f"  ping, 500 x 0.002 s apart via vipd:                                     {ping(lb, 500, 0.002)}")
            log(f"  ping, 500 x 0.002 s apart no vipd:                                      {ping(f'{PREFIX}-router', 500, 0.002)}")
            busy, (n, rate) = cpu_share(pid, 0, lambda: download(lb, args.mb))
            log(f"  download {n / 1e6:.0f} MB via vipd: {rate:.0f} MB/s (vipd-kernel {busy.get('vipd-kernel', 0):.0f}% of a core, worker {busy.get('vipd-w0', 0):.0f}%)")
            n, rate = download(f"{PREFIX}-router", args.mb)
            log(f"  download {n / 1e6:.0f} MB no vipd:  {rate:.0f} MB/s")
            busy, (n, rate) = cpu_share(pid, 0, lambda: upload(lb, args.mb // 2))
            log(f"  upload {n / 1e6:.0f} MB via vipd: {rate:.0f} MB/s (vipd-kernel {busy.get('vipd-kernel', 0):.0f}% of a core, worker {busy.get('vipd-w0', 0):.0f}%)")
            n, rate = upload(f"{PREFIX}-router", args.mb // 2)
            log(f"  upload {n / 1e6:.0f} MB no vipd:  {rate:.0f} MB/s")
        k = v.stats()["kernel"][0]
        log("exception counters: " + ", ".join(f"{a} {b}" for a, b in k.items() if isinstance(b, int) and b))
    finally:
        if v.stop(signal.SIGTERM) == 0:
            remove_temp_dirs()
        bash(f"vipd_testbed_down {PREFIX}", check=False)


if __name__ == "__main__":
    main()
