"""Pipeline micro-benchmarks (dataplane/examples/pipeline_bench): ns per packet through
process_burst in memory at 1k, 1M and 10M flows, bytes per flow, and two ceilings measured
in the same process: an in-memory macswap over the same frames, and a dependent random
cache-line read in an array the size of the flow table. Optionally callgrind instruction
counts per packet (deterministic, for before/after of code changes).

The floor, in the same rounds: dataplane/examples/reference_nat, the smallest program that
does the established NAT path's work on the same frames (parse, one lookup in a table of
the same flows, rewrite with incremental checksums, a TX array; checked against etherparse
at start-up). vipd's nat-established ns over the reference's is the "distance to the
floor"; the reference's callgrind instructions per packet stand next to vipd's."""

import json
import os
import re
import subprocess

from common import TARGET, log, median_spread

EXAMPLE = os.path.join(TARGET, "release", "examples", "pipeline_bench")
REFERENCE = os.path.join(TARGET, "release", "examples", "reference_nat")
# The reference covers this case of pipeline_bench (the established NAT path).
FLOOR_CASE = "nat-established"


def run_once(flows):
    out = subprocess.run([EXAMPLE, "--json", str(flows)], capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_reference(flows):
    out = subprocess.run([REFERENCE, "--json", str(flows)], capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def reference_instructions(flows):
    """The reference's instructions per packet under callgrind (its timed bursts, the
    start-up check's included: they go through the same function)."""
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--toggle-collect=reference_nat::timed_burst",
         "--callgrind-out-file=/dev/null", REFERENCE, "--json", str(flows)],
        capture_output=True, text=True, check=True, timeout=1800)
    m = re.search(r"Collected : (\d+)", out.stderr)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return int(m.group(1)) / res["burst_packets"]


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


def run(flow_counts, rounds, callgrind_cases=(), reference_flows=(1000, 1_000_000), reference_callgrind=True):
    results = []
    for flows in flow_counts:
        runs, refs = [], []
        with_ref = flows in reference_flows
        for r in range(rounds):
            # Alternate which runs first, so a drift of the machine's load hits both.
            if with_ref and r % 2 == 1:
                refs.append(run_reference(flows))
            runs.append(run_once(flows))
            if with_ref and r % 2 == 0:
                refs.append(run_reference(flows))
            ref = f", reference {refs[-1]['ns_per_packet']:.0f}" if with_ref else ""
            log(f"  pipeline {flows} flows round {r + 1}: " + ", ".join(f"{c['case']} {c['ns_per_packet']:.0f}" for c in runs[-1]["cases"]) + ref + " ns")
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
        entry = {
            "flows": flows, "table_capacity": runs[0]["table_capacity"], "table_bytes": runs[0]["table_bytes"],
            "bytes_per_flow": runs[0]["bytes_per_flow"], "macswap_ns": macswap, "random_line_ns": line,
            "cases": cases, "rounds": rounds,
        }
        if with_ref:
            vipd_ns = [next(x["ns_per_packet"] for x in rr["cases"] if x["case"] == FLOOR_CASE) for rr in runs]
            ref_ns = [x["ns_per_packet"] for x in refs]
            entry["reference"] = {
                "ns": median_spread(ref_ns), "table_slots": refs[0]["table_slots"], "table_bytes": refs[0]["table_bytes"],
                "verified": refs[0]["verified"],
                # Per round: vipd's and the reference's figure of the same round.
                "distance": median_spread([v / f for v, f in zip(vipd_ns, ref_ns)]),
            }
            if reference_callgrind:
                entry["reference"]["instructions_per_packet"] = reference_instructions(min(flows, 100_000))
        results.append(entry)
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
    rows.append(floor_table(results))
    rows.append("")
    rows.append("| flows | table capacity | table MB | bytes per flow slot |")
    rows.append("|---|---|---|---|")
    for r in results:
        rows.append(f"| {r['flows']:,} | {r['table_capacity']:,} | {r['table_bytes'] / 2**20:.0f} | {r['bytes_per_flow']:.1f} |")
    return "\n".join(rows)


def floor_table(results, goal="<= 1.5"):
    """vipd's established NAT packet against the reference NAT, round by round."""
    rows = ["| flows | vipd nat-established ns | reference NAT ns (floor) | distance to the floor (vipd / reference) "
            "| goal | vipd instr/packet | reference instr/packet | reference table |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        ref = r.get("reference")
        if not ref:
            continue
        v, f, d = r["cases"][FLOOR_CASE]["ns"], ref["ns"], ref["distance"]
        vi = r["cases"][FLOOR_CASE].get("instructions_per_packet")
        ri = ref.get("instructions_per_packet")
        rows.append(f"| {r['flows']:,} | {v['median']:.1f} ({v['min']:.1f}-{v['max']:.1f}) "
                    f"| {f['median']:.1f} ({f['min']:.1f}-{f['max']:.1f}) "
                    f"| {d['median']:.2f} ({d['min']:.2f}-{d['max']:.2f}) | {goal} "
                    f"| {f'{vi:.0f}' if vi else '-'} | {f'{ri:.0f}' if ri else '-'} "
                    f"| {ref['table_slots']:,} slots, {ref['table_bytes'] / 2**20:.0f} MB |")
    return "\n".join(rows)
