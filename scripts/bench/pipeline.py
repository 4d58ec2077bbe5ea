"""Pipeline micro-benchmarks (dataplane/examples/pipeline_bench): ns per packet through
process_burst in memory at 1k, 1M and 10M flows, bytes per flow, and two ceilings measured
in the same process: an in-memory macswap over the same frames, and a dependent random
cache-line read in an array the size of the flow table. Optionally callgrind instruction
counts per packet (deterministic, for before/after of code changes)."""

import json
import os
import re
import subprocess

from common import TARGET, log, median_spread

EXAMPLE = os.path.join(TARGET, "release", "examples", "pipeline_bench")


def run_once(flows):
    out = subprocess.run([EXAMPLE, "--json", str(flows)], capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def instructions(flows, case):
    """Instructions per packet of one case under callgrind (only the timed bursts count)."""
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--toggle-collect=pipeline_bench::timed_burst",
         "--callgrind-out-file=/dev/null", EXAMPLE, "--json", "--only", case, str(flows)],
        capture_output=True, text=True, check=True, timeout=1800)
    m = re.search(r"Collected : (\d+)", out.stderr)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    packets = next(c["packets"] for c in res["cases"] if c["case"] == case)
    return int(m.group(1)) / packets


def run(flow_counts, rounds, callgrind_cases=()):
    results = []
    for flows in flow_counts:
        runs = []
        for r in range(rounds):
            runs.append(run_once(flows))
            log(f"  pipeline {flows} flows round {r + 1}: " + ", ".join(f"{c['case']} {c['ns_per_packet']:.0f}" for c in runs[-1]["cases"]) + " ns")
        cases = {}
        for c in runs[0]["cases"]:
            name = c["case"]
            ns = [next(x["ns_per_packet"] for x in rr["cases"] if x["case"] == name) for rr in runs]
            cases[name] = {"ns": median_spread(ns)}
        macswap = median_spread([rr["macswap_ns"] for rr in runs])
        line = median_spread([rr["random_line_ns"] for rr in runs])
        for name in cases:
            cases[name]["per_macswap"] = median_spread([
                next(x["ns_per_packet"] for x in rr["cases"] if x["case"] == name) / rr["macswap_ns"] for rr in runs])
            cases[name]["per_random_line"] = median_spread([
                next(x["ns_per_packet"] for x in rr["cases"] if x["case"] == name) / rr["random_line_ns"] for rr in runs])
        if flows <= 1_000_000:
            for case in callgrind_cases:
                if case in cases:
                    cases[case]["instructions_per_packet"] = instructions(min(flows, 100_000), case)
        results.append({
            "flows": flows, "table_capacity": runs[0]["table_capacity"], "table_bytes": runs[0]["table_bytes"],
            "bytes_per_flow": runs[0]["bytes_per_flow"], "macswap_ns": macswap, "random_line_ns": line,
            "cases": cases, "rounds": rounds,
        })
    return results


def table(results, goals):
    rows = ["| flows | case | ns/packet | in-memory macswap ns (ceiling) | ratio to macswap | random line read ns | instr/packet | goal |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for name, c in r["cases"].items():
            ns, m, l = c["ns"], r["macswap_ns"], r["random_line_ns"]
            ipp = c.get("instructions_per_packet")
            rows.append(f"| {r['flows']:,} | {name} | {ns['median']:.1f} ({ns['min']:.1f}-{ns['max']:.1f}) "
                        f"| {m['median']:.1f} | {c['per_macswap']['median']:.0f} | {l['median']:.0f} "
                        f"| {f'{ipp:.0f}' if ipp else '-'} | {goals.get((r['flows'], name), '')} |")
    rows.append("")
    rows.append("| flows | table capacity | table MB | bytes per flow slot |")
    rows.append("|---|---|---|---|")
    for r in results:
        rows.append(f"| {r['flows']:,} | {r['table_capacity']:,} | {r['table_bytes'] / 2**20:.0f} | {r['bytes_per_flow']:.1f} |")
    return "\n".join(rows)
