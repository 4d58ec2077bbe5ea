"""DPDK's own l3fwd with `--lookup=em` (an exact-match hash of the 5-tuple, rte_hash with
CRC32) as a ceiling of the system part: a forwarder that parses each packet, looks its flow
up in a hash table of the capture's flows, rewrites the MACs, decrements the TTL and
transmits, on the same net_pcap replay, core and mbuf count as vipd.

Built from the examples Debian ships in `dpdk-doc` (/usr/share/dpdk/examples/l3fwd), copied
under target/bench/l3fwd/ and compiled there with its own Makefile (pkg-config libdpdk);
nothing of it is committed. `l3fwd_shim.c` (LD_PRELOAD) gives it the pool size and drops
an RX offload request the virtual device lacks (see that file).

The rules (`--rule_ipv4`, 22.11's em_route_parse.c format) are the capture's own 5-tuples
(`mkpcap.py --l3fwd-rules`), all to port 1, a net_null port; the capture comes in on port 0.
l3fwd sends a hit out of the rule's port and a miss back out of the port it came from, so
port 1's transmitted packets over port 0's received ones is the share of hits, measured in
every run (from the telemetry socket; l3fwd prints no counters)."""

import os
import shutil
import subprocess
import threading
import time

from common import ROOT, TARGET, cpu_seconds, log, remove_runtime_dir, stop
import telemetry

EXAMPLES = "/usr/share/dpdk/examples"
BUILD = os.path.join(TARGET, "bench", "l3fwd")
BINARY = os.path.join(BUILD, "l3fwd", "build", "l3fwd")
SHIM = os.path.join(BUILD, "l3fwd_shim.so")
SHIM_SRC = os.path.join(ROOT, "scripts", "bench", "l3fwd_shim.c")
RULES_V6 = os.path.join(EXAMPLES, "l3fwd", "em_default_v6.cfg")
PREFIX = os.environ.get("VIPD_BED_PREFIX", "vbench") + "-l3fwd"
# Hugepage memory l3fwd takes besides the mbufs: its IPv4 and IPv6 hashes of 4M entries each
# (keys, buckets, free-slot rings), ~520 MB measured here.
HASH_BYTES = 640 << 20


class Unavailable(Exception):
    """l3fwd cannot be built or run here; the message says why."""


def build():
    """Build l3fwd and the shim when missing or older than their sources; their paths."""
    src = os.path.join(EXAMPLES, "l3fwd")
    if not os.path.isdir(src) or not os.path.isdir(os.path.join(EXAMPLES, "common")):
        raise Unavailable(f"{src} (and {EXAMPLES}/common) missing: Debian's dpdk-doc package ships them")
    newest_src = max(os.path.getmtime(os.path.join(src, f)) for f in os.listdir(src))
    if not os.path.exists(BINARY) or os.path.getmtime(BINARY) < newest_src:
        log("bench: building DPDK's l3fwd example under target/bench/l3fwd (make, pkg-config libdpdk)")
        shutil.rmtree(BUILD, ignore_errors=True)
        os.makedirs(BUILD)
        # The Makefile includes ../common: the same layout as in the examples directory.
        shutil.copytree(src, os.path.join(BUILD, "l3fwd"))
        shutil.copytree(os.path.join(EXAMPLES, "common"), os.path.join(BUILD, "common"))
        r = subprocess.run(["make", "-s", "-C", os.path.join(BUILD, "l3fwd")], capture_output=True, text=True,
                           timeout=600)
        if r.returncode != 0 or not os.path.exists(BINARY):
            raise Unavailable(f"l3fwd did not build: {(r.stdout + r.stderr).strip()[-2000:]}")
    if not os.path.exists(SHIM) or os.path.getmtime(SHIM) < os.path.getmtime(SHIM_SRC):
        cflags = subprocess.run(["pkg-config", "--cflags", "libdpdk"], capture_output=True, text=True, check=True).stdout.split()
        libs = subprocess.run(["pkg-config", "--libs", "libdpdk"], capture_output=True, text=True, check=True).stdout.split()
        r = subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-Wall", "-Werror", *cflags, SHIM_SRC, "-o", SHIM, *libs, "-ldl"],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise Unavailable(f"the l3fwd shim did not build: {(r.stdout + r.stderr).strip()[-2000:]}")
    return BINARY, SHIM


def _filter_output(pipe, logf, seen):
    """Copy l3fwd's output to the log without its line per inserted rule (a million at 1M
    flows); remember what says it started."""
    for line in pipe:
        if line.startswith("EM: Adding route"):
            continue
        logf.write(line)
        logf.flush()
        if "entering main loop" in line:
            seen.set()


def run(pcap, rules, mbufs, warmup, duration, logpath):
    """l3fwd-em's rate (frames received per second on port 0) over `duration` seconds after
    `warmup`, and the share of them that hit a rule."""
    binary, shim = build()
    args = [binary, "-l", "1", "--in-memory", "--file-prefix", PREFIX, "--no-pci",
            "--vdev", f"net_pcap0,rx_pcap={pcap},infinite_rx=1", "--vdev", "net_null0",
            "--", "-p", "0x3", "--config=(0,0,1)", "--lookup=em", "--parse-ptype",
            f"--rule_ipv4={rules}", f"--rule_ipv6={RULES_V6}"]
    env = {**os.environ, "LD_PRELOAD": shim, "BENCH_POOL_MBUFS": str(mbufs)}
    started = threading.Event()
    with open(logpath, "w") as logf:
        logf.write(" ".join(args) + "\n")
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, text=True, errors="replace")
        reader = threading.Thread(target=_filter_output, args=(proc.stdout, logf, started), daemon=True)
        reader.start()
        try:
            deadline = time.time() + 300
            while not started.is_set():
                if proc.poll() is not None:
                    raise Unavailable(f"l3fwd exited {proc.returncode} before forwarding: see {logpath}")
                if time.time() > deadline:
                    raise Unavailable(f"l3fwd did not start forwarding in 300 s: see {logpath}")
                time.sleep(0.2)
            if not telemetry.wait_for(PREFIX, proc, 30):
                raise Unavailable(f"l3fwd's telemetry socket {telemetry.path(PREFIX)} does not answer")
            time.sleep(warmup)
            # With `-l 1` the forwarding loop is l3fwd's main thread (named after the binary).
            a0, a1, ta = telemetry.port_stats(PREFIX, 0), telemetry.port_stats(PREFIX, 1), time.monotonic()
            ca = cpu_seconds(proc.pid, "l3fwd")
            time.sleep(duration)
            b0, b1, tb = telemetry.port_stats(PREFIX, 0), telemetry.port_stats(PREFIX, 1), time.monotonic()
            cb = cpu_seconds(proc.pid, "l3fwd")
        finally:
            stop(proc)
            reader.join(timeout=30)
            remove_runtime_dir(PREFIX)
    rx = b0["ipackets"] - a0["ipackets"]
    # The shares from the totals since start: port 0's and port 1's counters are read one
    # after the other, which skews a window's figures by the packets of that gap.
    total = b0["ipackets"]
    return rx / (tb - ta), {"rx": rx, "hit_share": b1["opackets"] / total if total else 0.0,
                            "miss_share": b0["opackets"] / total if total else 0.0,
                            "worker_cpu_share": (cb - ca) / (tb - ta)}
