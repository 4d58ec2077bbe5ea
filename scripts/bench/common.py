"""Helpers shared by scripts/bench's parts."""

import os
import shutil
import signal
import statistics
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Cargo's output directory: CARGO_TARGET_DIR when set (relative to the workspace), else target/.
TARGET = os.path.join(ROOT, os.environ.get("CARGO_TARGET_DIR", "target"))


def log(msg):
    print(msg, flush=True)


def median_spread(xs):
    """Median, min and max of a list of figures (the table prints `median (min-max)`)."""
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "all": list(xs)}


def stop(proc, timeout=30):
    """SIGINT a process we started (DPDK programs clean up their hugepages on it); kill it
    if it has not exited after `timeout` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid, comm_prefix):
    """CPU time (user + system, seconds) of the threads of `pid` whose name starts with
    `comm_prefix`: what the forwarding threads really got of their cores, which a machine
    shared with other work shows (a ratio of two programs that got unequal shares is not a
    ratio of their costs)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if comm.startswith(comm_prefix):
            total += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def remove_runtime_dir(prefix):
    """Remove the DPDK runtime directory (/var/run/dpdk/<prefix>) a process we started and
    stopped left behind (EAL creates it even with --in-memory)."""
    shutil.rmtree(os.path.join("/var/run/dpdk", prefix), ignore_errors=True)
