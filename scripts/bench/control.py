"""Control-side costs: the Maglev table build (dataplane/examples/maglev_build)."""

import os
import re
import subprocess

from common import TARGET

MAGLEV = os.path.join(TARGET, "release", "examples", "maglev_build")


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
    return res


def table(res):
    rows = ["| figure | measured | reference | goal |", "|---|---|---|---|"]
    if "maglev_65537x1000_ms" in res:
        m = res["maglev_65537x1000_ms"]
        rows.append(f"| Maglev build, M = 65537, 1000 backends | {m['median']:.2f} ms median, {m['min']:.2f} min | Maglev paper 1.8 ms | <= 1 ms |")
    if "maglev_655373x1000_ms" in res:
        m = res["maglev_655373x1000_ms"]
        rows.append(f"| Maglev build, M = 655373, 1000 backends | {m['median']:.1f} ms median | - | - |")
    return "\n".join(rows)
