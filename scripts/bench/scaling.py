"""Scaling: vipd with 2 workers over 1 worker, NAT at 1M flows, software steering on.

One net_pcap port. With 1 worker (core 1) it has one RX queue replaying the whole capture;
with 2 workers (cores 0 and 1) two RX queues, each replaying half of the flows
(`mkpcap.py --queues 2`: a flow's frames stay on one queue, chosen by a hash that knows
nothing of which worker owns the flow, as RSS would). vipd owns a NAT connection by a hash of
the client endpoint, so about half of each queue's frames belong to the other worker and
cross over its steering ring: the configuration every NAT service gets (docs/configuration.md),
not a switch of the benchmark. Same frames, same mbuf count, same table capacity per worker.
The capture is ACKs only (`mkpcap.py nat-acks`, sloppy TCP opens the flows on the first
replay): the established path, as system.py's nat-1m case.

On a 2-core machine the 2-worker run shares core 0 with vipd's control thread (idle but for
its loop and the API reads of this script) and with everything else the machine runs, while
the 1-worker run has core 1 to itself and leaves core 0 to the rest: the ratio is a lower
bound of what 2 dedicated cores give. The generator (the pcap replay) runs inside each
worker's receive call, on that worker's core, so it scales with the workers and is not the
shared part.
"""

import os

from common import log, median_spread
import system

FLOWS = 1_000_000
QUICK_FLOWS = 1000
CAPACITY = 1 << 21


def run(vipd, rounds, warmup, duration, quick, outdir):
    flows = QUICK_FLOWS if quick else FLOWS
    capacity = (1 << 20) if quick else CAPACITY
    whole, frames = system.pcap("nat-acks", flows)
    halves, _ = system.pcap("nat-acks", flows, queues=2)
    mbufs = system.pool_mbufs(frames)
    cfgs = {}
    for workers, cores, pcaps in ((1, (1,), whole), (2, (0, 1), halves)):
        cfgs[workers] = os.path.join(outdir, f"scaling-{workers}w.toml")
        system.bench_config(cfgs[workers], pcaps, mbufs, capacity, "nat-acks", worker_cores=cores)
    rates = {1: [], 2: []}
    windows = {1: [], 2: []}
    for r in range(rounds):
        for workers in ((1, 2) if r % 2 == 0 else (2, 1)):
            logp = os.path.join(outdir, f"scaling-{workers}w-{r}.log")
            rx_rate, window = system.run_vipd(vipd, cfgs[workers], system.warmup_of("nat-acks", warmup), duration, logp)
            # Throughput is what is forwarded: a frame dropped on a full steering ring was
            # received but is not throughput.
            rx = window.get("rx_packets", 0)
            rates[workers].append(rx_rate * window.get("tx_packets", 0) / rx if rx else 0.0)
            windows[workers].append(window)
        log(f"  scaling {flows} flows round {r + 1}: 1 worker {rates[1][-1] / 1e6:.2f} Mpps, "
            f"2 workers {rates[2][-1] / 1e6:.2f} Mpps")
    cpu = {w: median_spread([x.get("worker_cpu_share", 0.0) for x in windows[w]]) for w in (1, 2)}
    last = windows[2][-1]
    rx = last.get("rx_packets", 0)
    return {
        "flows": flows, "frames": frames, "table_per_worker": capacity, "rounds": rounds,
        "pps_1": median_spread(rates[1]), "pps_2": median_spread(rates[2]),
        "ratio": median_spread([b / a for a, b in zip(rates[1], rates[2]) if a]),
        # The ratio if each worker had had its whole core (rates over each round's per-worker
        # core share): what a box with dedicated cores would show, to the extent the rate
        # is linear in CPU time.
        "ratio_per_cpu": median_spread([
            (b / cb) / (a / ca) for a, ca, b, cb in zip(rates[1], [x.get("worker_cpu_share", 0) for x in windows[1]],
                                                        rates[2], [x.get("worker_cpu_share", 0) for x in windows[2]])
            if a and ca and cb]),
        # What each worker got of its core (1.0 = all of it), per configuration.
        "worker_cpu_share_1": cpu[1], "worker_cpu_share_2": cpu[2],
        # The share of received frames the 2-worker run handed to the other worker.
        "steered_share": last.get("steered", 0) / rx if rx else 0.0,
        "forwarded_share_2": last.get("tx_packets", 0) / rx if rx else 0.0,
        "counters_last_window_2": last, "counters_last_window_1": windows[1][-1],
    }


def table(res, goal):
    f = system._fig
    return "\n".join([
        "| flows | 1 worker Mpps forwarded | 2 workers Mpps forwarded | 2 / 1 | goal | 2 / 1 per core-second "
        "| steered share (2 workers) "
        "| forwarded / received (2 workers) | core share per worker, 1 / 2 workers |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {res['flows']:,} | {f(res['pps_1'])} | {f(res['pps_2'])} | {f(res['ratio'], 1)} | {goal} "
        f"| {f(res['ratio_per_cpu'], 1)} "
        f"| {res['steered_share'] * 100:.0f} % | {res['forwarded_share_2'] * 100:.1f} % "
        f"| {res['worker_cpu_share_1']['median']:.2f} / {res['worker_cpu_share_2']['median']:.2f} |",
    ])
