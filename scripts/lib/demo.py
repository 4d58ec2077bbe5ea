"""The body of scripts/demo (see there). Python for the bookkeeping; the bed is netns.sh."""

import os
import signal
import sys

os.environ.setdefault("VIPD_BED_PREFIX", "vdemo")
from vipdbed import PREFIX, TARGET_DIR, VIP4, Vipd, bash, load, log, netns, remove_temp_dirs  # noqa: E402

REQUESTS = int(os.environ.get("VIPD_DEMO_REQUESTS", "600"))
WEIGHTS = [("rs1", "10.77.0.21", 1), ("rs2", "10.77.0.22", 2), ("rs3", "10.77.0.23", 3)]
SERVICES = [
    {"vip": VIP4, "proto": "tcp", "port": 80, "scheduler": "maglev",
     "rs": [(ip, 8080, w) for _, ip, w in WEIGHTS]},
]


def main():
    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    binary = os.path.join(TARGET_DIR, "release", "vipd")
    vipd = None
    try:
        log("== test bed: client -- router -- segment 10.77.0.0/24 with vipd (10.77.0.10) and 3 real servers")
        bash(f"vipd_testbed_down {PREFIX} >/dev/null 2>&1 || true; vipd_testbed_up {PREFIX} 3 nat")
        for i in (1, 2, 3):
            bash(f"vipd_rs_start {PREFIX} {i} 8080")
        vipd = Vipd("demo", services=SERVICES, binary=binary)
        log(f"== vipd: VIP {VIP4}:80/tcp, NAT, maglev; configuration {vipd.config}")
        st = vipd.start()
        for n in st["neighbours"]:
            log(f"   neighbour {n['ip']:<12} {n['mac']}  ({n['state']})")
        out = netns(f"{PREFIX}-client", "curl", "-s", "-m", "5", f"http://{VIP4}/").strip()
        log(f"== one request: curl http://{VIP4}/ -> {out}")
        log(f"== {REQUESTS} requests from 9 client addresses, 16 in parallel")
        r = load(url=f"http://{VIP4}/", connections=REQUESTS, parallel=16)
        wsum = sum(w for _, _, w in WEIGHTS)
        log(f"   answered {r['ok']}/{r['total']} ({r['conn_per_s']:.0f} conn/s, p50 {r['latency_ms']['p50']:.1f} ms)")
        log(f"   {'real server':<24}{'weight':>8}{'expected':>10}{'got':>8}{'share':>9}")
        for name, ip, w in WEIGHTS:
            got = r["servers"].get(name, 0)
            log(f"   {name + ' ' + ip + ':8080':<24}{w:>8}{w / wsum:>10.1%}{got:>8}{got / max(r['ok'], 1):>9.1%}")
        log(f"   client addresses the real servers saw: {', '.join(r['client_ips'])} (the clients' own)")
        s = vipd.stats()
        t = s["total"]
        log("== vipd counters (vipctl stats)")
        for k in ("rx_packets", "tx_packets", "forwarded", "nat_replies", "flows_created", "arp_replies", "to_control"):
            log(f"   {k:<22}{t[k]:>10}")
        drops = {k: v for k, v in t.items() if k.startswith("drop_") and v}
        log(f"   {'drops':<22}{s['drops']:>10}  {drops if drops else ''}")
        log(f"   {'flows_active':<22}{s['flows_active']:>10}")
        metrics = vipd.api("/metrics")
        lines = [ln for ln in metrics.splitlines() if ln.startswith(("vipd_forwarded_total", "vipd_nat_replies_total"))]
        log("== Prometheus /metrics (excerpt)")
        for ln in lines:
            log(f"   {ln}")
        return 0 if r["ok"] == r["total"] else 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if vipd is not None:
            rc = vipd.stop()
            log(f"== vipd stopped (exit {rc})")
            if rc == 0:
                remove_temp_dirs()
        bash(f"vipd_testbed_down {PREFIX}", check=False)
        log("== test bed removed")


if __name__ == "__main__":
    sys.exit(main())
