"""Where the worker's time goes: `perf record -e cpu-clock` attached to a running vipd for the
window of one extra run per case (after the measured rounds, so sampling never perturbs a
figure), reported as self time per symbol of the worker thread.

cpu-clock (a timer, not a PMU counter) because virtual machines like this one often expose no
hardware counters; on bare metal `-e cycles` gives the same table with finer attribution.
"""

import os
import subprocess

from common import log
import system

# The worker lcore's thread name as DPDK 22.11 sets it (lcore 1 of the bench configuration).
WORKER_COMM = "rte-worker-1"


def record(data_path):
    def during(pid, duration):
        subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", "1999", "-p", str(pid), "-o", data_path,
                        "--", "sleep", str(duration)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return during


def report(data_path, limit):
    """[(percent, symbol)] of the worker thread's samples, largest first."""
    out = subprocess.run(["perf", "report", "-i", data_path, "--stdio", "--no-children", "--comm", WORKER_COMM,
                          "--sort", "dso,sym", "--percent-limit", "0.5"], capture_output=True, text=True).stdout
    rows = []
    for ln in out.splitlines():
        parts = ln.split()
        # "24.60%  vipd  [.] vipd_dataplane::pipeline::classify::by_protocol"
        if len(parts) >= 4 and parts[0].endswith("%") and parts[2].startswith("["):
            dso, sym = parts[1], " ".join(parts[3:])
            if dso != "vipd":
                # A PMD's or libc's code: its library says more than a bare address.
                sym = f"{dso} {sym}" if not sym.startswith("0x") else dso
            if "FnOnce::call_once" in sym:
                # The lcore's entry closure: Worker::run with process_burst's loops inlined.
                sym = "worker loop (Worker::run, process_burst inlined)"
            rows.append((float(parts[0].rstrip("%")), sym.replace("vipd_dataplane::", "")))
    merged = {}
    for pct, sym in rows:
        merged[sym] = merged.get(sym, 0.0) + pct
    return sorted(((p, s) for s, p in merged.items()), reverse=True)[:limit]


def run(vipd, cases, warmup, duration, outdir, limit=12):
    """Profile vipd on each named system case; returns {case: [(percent, symbol)]}."""
    if subprocess.run(["which", "perf"], capture_output=True).returncode != 0:
        log("bench: perf not found (Debian package linux-perf): no profiles")
        return {}
    found = {}
    for name, case, flows, capacity, _ in system.CASES:
        if name not in cases:
            continue
        path, frames = system.pcap(case, flows)
        cfg = os.path.join(outdir, f"{name}-profile.toml")
        system.bench_config(cfg, path, system.pool_mbufs(frames), capacity, case)
        data = os.path.join(outdir, f"{name}.perf.data")
        system.run_vipd(vipd, cfg, warmup, duration, os.path.join(outdir, f"{name}-profile.log"), during=record(data))
        found[name] = report(data, limit)
        log(f"  {name}: " + ", ".join(f"{sym} {pct:.1f} %" for pct, sym in found[name][:4]))
    return found


def table(profiles):
    rows = ["| case | worker self time per symbol (perf record -e cpu-clock), largest first |", "|---|---|"]
    for name, syms in profiles.items():
        rows.append(f"| {name} | " + "; ".join(f"`{sym}` {pct:.1f} %" for pct, sym in syms) + " |")
    return "\n".join(rows)
