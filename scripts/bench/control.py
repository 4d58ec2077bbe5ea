"""Control-side costs: the Maglev table build (dataplane/examples/maglev_build), and snapshot
publication every 10 ms while a real worker forwards a net_pcap replay at full rate
(dataplane/examples/snapshot_churn): rate, drops and the worker's worst loop gap, quiet vs
churning."""

import os
import re
import subprocess

from common import TARGET

MAGLEV = os.path.join(TARGET, "release", "examples", "maglev_build")
CHURN = os.path.join(TARGET, "release", "examples", "snapshot_churn")
CHURN_RE = re.compile(r"^(quiet|churn): ([\d.]+) Mpps received, (\d+) forwarded of (\d+), drops (.*), worst loop gap ([\d.]+) us, "
                      r"(\d+) snapshots published \(build\+store max ([\d.]+) ms\), freed by the worker (\d+)")


def run(quick, rundir):
    out = subprocess.run([MAGLEV, "3" if quick else "41"], capture_output=True, text=True, check=True, timeout=600).stdout
    with open(os.path.join(rundir, "maglev_build.txt"), "w") as f:
        f.write(out)
    res = {"maglev_raw": out}
    m = re.search(r"build M=65537 N=1000 equal weights:\s+min ([\d.]+) ms, median ([\d.]+) ms", out)
    if m:
        res["maglev_65537x1000_ms"] = {"min": float(m.group(1)), "median": float(m.group(2))}
    m = re.search(r"build M=655373 N=1000 equal weights: min ([\d.]+) ms, median ([\d.]+) ms", out)
    if m:
        res["maglev_655373x1000_ms"] = {"min": float(m.group(1)), "median": float(m.group(2))}
    import system
    pcap, _ = system.pcap("nat", 1000)
    out = subprocess.run([CHURN, pcap, "1" if quick else "3"], capture_output=True, text=True, timeout=300)
    with open(os.path.join(rundir, "snapshot_churn.txt"), "w") as f:
        f.write(out.stdout + out.stderr)
    for line in out.stdout.splitlines():
        m = CHURN_RE.match(line)
        if m:
            res[f"snapshot_{m.group(1)}"] = {"mpps": float(m.group(2)), "forwarded": int(m.group(3)), "rx": int(m.group(4)),
                                             "drops": m.group(5), "worst_gap_us": float(m.group(6)), "published": int(m.group(7)),
                                             "build_ms_max": float(m.group(8)), "freed_by_worker": int(m.group(9))}
    return res


def table(res):
    rows = ["| figure | measured | reference | goal |", "|---|---|---|---|"]
    if "maglev_65537x1000_ms" in res:
        m = res["maglev_65537x1000_ms"]
        rows.append(f"| Maglev build, M = 65537, 1000 backends | {m['median']:.2f} ms median, {m['min']:.2f} min | Maglev paper 1.8 ms | <= 1 ms |")
    if "maglev_655373x1000_ms" in res:
        m = res["maglev_655373x1000_ms"]
        rows.append(f"| Maglev build, M = 655373, 1000 backends | {m['median']:.1f} ms median | - | - |")
    q, c = res.get("snapshot_quiet"), res.get("snapshot_churn")
    if q and c:
        # The counters are read while the worker runs: a burst counted as received in one
        # window can be forwarded in the next, so the difference moves by up to a burst (32).
        diff = c["rx"] - c["forwarded"]
        lost = f"{diff} received but not forwarded" if diff > 32 else f"0 lost (received - forwarded = {diff:+}: a burst in flight at the window's edges)"
        rows.append(f"| forwarding while a snapshot is published every 10 ms ({c['published']} publications) | "
                    f"{c['mpps']:.2f} Mpps, {lost}, drops {c['drops']}, worst loop gap {c['worst_gap_us']:.1f} us | "
                    f"quiet: {q['mpps']:.2f} Mpps, worst gap {q['worst_gap_us']:.1f} us (ratio {c['mpps'] / q['mpps']:.2f}) | no packet lost |")
        rows.append(f"| snapshot build + publish (control thread) | max {c['build_ms_max']:.2f} ms | - | < 10 ms |")
    return "\n".join(rows)
