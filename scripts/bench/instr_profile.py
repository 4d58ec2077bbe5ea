#!/usr/bin/env python3
"""Where a pipeline_bench case's instructions go: callgrind's count of every instruction of
the timed region, per packet, by the project source file (or line) its code comes from.

The release build inlines the whole fast path into one function, so callgrind's own
per-function view says only "process_burst_hashed". Each instruction's address is mapped
back through its inlining chain (`addr2line -i`) to the innermost frame in the project's own
sources: a bounds check inlined from `core` into `flow/cuckoo.rs` counts for cuckoo.rs.

Usage: scripts/bench/instr_profile.py CASE [--flows N] [--by line] [--top K] [--min X]
  (build first: cargo build --release -p vipd-dataplane --no-default-features --example pipeline_bench)
Deterministic: the same build and case give the same counts, on any load.
"""

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, TARGET  # noqa: E402

def instruction_counts(path):
    """Instruction address -> executions, from a callgrind file written with
    --dump-instr=yes --compress-pos=no (a cost line after `calls=` is a call's inclusive
    cost, not the caller's own, and is skipped)."""
    counts = collections.Counter()
    after_call = False
    with open(path) as f:
        for line in f:
            if line.startswith("calls="):
                after_call = True
                continue
            m = re.match(r"^(0x[0-9a-f]+) \d+ (\d+)", line)
            if m and not after_call:
                counts[int(m.group(1), 16)] += int(m.group(2))
            after_call = False
    return counts


def project_frames(binary, addrs):
    """Address -> (file, line) of the innermost inlined frame in the project's sources."""
    out = subprocess.run(["addr2line", "-e", binary, "-i", "-a", *[hex(a) for a in addrs]],
                         capture_output=True, text=True, check=True).stdout
    where, cur = {}, None
    for line in out.splitlines():
        if line.startswith("0x"):
            cur = int(line, 16)
            continue
        path, _, num = line.rpartition(":")
        if cur is not None and cur not in where and path.startswith(ROOT + os.sep):
            where[cur] = (os.path.relpath(path, ROOT), num.split()[0] if num else "?")
    return where


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case")
    ap.add_argument("--flows", type=int, default=1000)
    ap.add_argument("--by", choices=["file", "line"], default="file")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--min", type=float, default=0.0, help="hide rows below this many instructions per packet")
    a = ap.parse_args()
    binary = os.path.join(TARGET, "release", "examples", "pipeline_bench")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        run = subprocess.run(["valgrind", "--tool=callgrind", "--dump-instr=yes", "--compress-pos=no",
                        "--compress-strings=no", "--toggle-collect=pipeline_bench::timed_burst",
                        f"--callgrind-out-file={out}", binary, "--json", "--only", a.case, str(a.flows)],
                             check=True, capture_output=True, text=True, timeout=1800)
        counts = instruction_counts(out)
    # The packets of the timed region, as pipeline_bench reports them.
    packets = json.loads(run.stdout.strip().splitlines()[-1])["cases"][0]["packets"]
    where = project_frames(binary, sorted(counts))
    rows = collections.Counter()
    for addr, n in counts.items():
        file, line = where.get(addr, ("(outside the project)", "?"))
        rows[file if a.by == "file" else f"{file}:{line}"] += n / packets
    total = sum(counts.values()) / packets
    print(f"{a.case}, {a.flows} flows: {total:.1f} instructions per packet")
    for key, n in rows.most_common(a.top):
        if n >= a.min:
            print(f"{n:8.1f}  {key}")


if __name__ == "__main__":
    main()
