"""dpdk-testpmd runs of the system part: the forwarding modes that serve as ceilings, each on
the same `net_pcap` replay, core (lcore 1; the main lcore 0 only prints) and mbuf count as
vipd.

- `5tswap`: swaps MACs, IPv4 addresses and TCP/UDP ports (reads and writes the headers a NAT
  does, parses Ethernet/IP/L4 per packet): THE system ceiling.
- `macswap`: swaps the MACs only: the I/O ceiling.
- `noisy` with `--noisy-lkup-*`: io forwarding plus random reads/writes in a memory area per
  packet: the memory-bound ceiling (see NOISY below for what 22.11's noisy really touches).
- `rxonly`: receive and free: the generator's own cost (the pcap replay's copy into a fresh
  mbuf, and the free), so a case is not read as vipd's cost when it is the replay's.
"""

import os
import subprocess
import time

from common import cpu_seconds, log, remove_runtime_dir, stop

PREFIX = os.environ.get("VIPD_BED_PREFIX", "vbench")

MODES = {
    "5tswap": ["--forward-mode=5tswap"],
    "macswap": ["--forward-mode=macswap"],
    "rxonly": ["--forward-mode=rxonly"],
}

# What one flow-table hit needs from memory, as noisy's per-packet accesses: one read (the
# index bucket holding the key's tag and reference) and one read-modify-write (the
# connection's entry: key compare, then state and expiry written back). vipd's table today
# may also read the second cuckoo bucket (prefetched always) and, for a reply, the reply key
# array; the design is one bucket plus the entry, which is what is asked here.
NOISY_READS, NOISY_WRITES, NOISY_READS_WRITES = 1, 0, 1


def noisy_mode(table_bytes):
    """noisy's arguments for a flow table of `table_bytes`.

    What Debian's 22.11 testpmd really does per access (noisy_vnf.c, and its disassembly):
    the index is `rte_rand() % (bytes / 64)` into a char array, so it only ever touches the
    first 1/64 of `--noisy-lkup-memory` (4 MB of a 250 MB table: cache-resident here); and a
    read's result is unused, so the compiler dropped the load: a "read" is one rte_rand()
    call, a "read-write" two rte_rand(), a division and a one-byte store. So this ceiling is
    the cost of that arithmetic plus a random store into table/64 bytes, not of DRAM
    misses: optimistic (docs/benchmarks.md, "Fair ceilings")."""
    mb = max(1, -(-table_bytes // (1 << 20)))
    return ["--forward-mode=noisy", f"--noisy-lkup-memory={mb}", f"--noisy-lkup-num-reads={NOISY_READS}",
            f"--noisy-lkup-num-writes={NOISY_WRITES}", f"--noisy-lkup-num-reads-writes={NOISY_READS_WRITES}"]


def device(pcaps):
    """The vdev: one rx_pcap (one RX queue) per capture, replayed forever; TX drops."""
    return "net_pcap0," + ",".join(f"rx_pcap={p}" for p in pcaps) + ",infinite_rx=1"


def run(pcaps, mbufs, mode_args, warmup, duration, logpath):
    """The mode's forwarding rate: the mean of testpmd's Rx-pps lines (1 s periods) after
    `warmup`, and the share of its core the forwarding lcore's thread got meanwhile. On
    hugepages (`--in-memory`), like vipd's benchmark configuration."""
    args = ["dpdk-testpmd", "-l", "0,1", "--in-memory", "--file-prefix", f"{PREFIX}-testpmd",
            "--no-pci", "--vdev", device(pcaps), "--", *mode_args, "--stats-period", "1",
            f"--total-num-mbufs={mbufs}", "--no-flush-rx", "--nb-cores=1"]
    with open(logpath, "w") as logf:
        logf.write(" ".join(args) + "\n")
        logf.flush()
        proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while "Rx-pps" not in open(logpath).read():
            if proc.poll() is not None:
                raise RuntimeError(f"testpmd exited {proc.returncode}: see {logpath}")
            if time.time() > deadline:
                raise RuntimeError(f"testpmd did not forward in 180 s: see {logpath}")
            time.sleep(0.2)
        t0 = time.monotonic()
        time.sleep(warmup)
        ca, ta = cpu_seconds(proc.pid, "rte-worker"), time.monotonic()
        time.sleep(duration)
        cb, tb = cpu_seconds(proc.pid, "rte-worker"), time.monotonic()
        time.sleep(max(0.0, t0 + warmup + duration + 0.5 - time.monotonic()))
    finally:
        stop(proc)
        remove_runtime_dir(f"{PREFIX}-testpmd")
    rates = [int(ln.split()[1]) for ln in open(logpath) if ln.strip().startswith("Rx-pps:")]
    skip = max(1, int(warmup))
    window = rates[skip:skip + max(1, int(duration))] or rates[-1:]
    if not window or max(window) == 0:
        log(f"  testpmd {' '.join(mode_args)}: no packets (see {logpath})")
    return sum(window) / len(window), (cb - ca) / (tb - ta)

