"""System benchmark: vipd against dpdk-testpmd --forward-mode=macswap on the same virtual
device and core, one worker core, alternating rounds.

The device is `net_pcap0,rx_pcap=F,infinite_rx=1`: the PMD replays the capture from memory
forever and drops what is transmitted (no tx_pcap), so the generator costs one memcpy per
frame on the worker's own core and nothing else. testpmd's macswap (read the frame, swap its
MACs, transmit) on that port and core is the I/O ceiling a forwarder can reach there; vipd's
figure is the same frames through classification, flow lookup, scheduling and rewrite.
"""

import json
import os
import signal
import subprocess
import time
import urllib.request

from common import ROOT, TARGET, log, median_spread

PCAP_DIR = os.path.join(TARGET, "bench", "pcap")
MKPCAP = os.path.join(ROOT, "scripts", "bench", "mkpcap.py")
PREFIX = os.environ.get("VIPD_BED_PREFIX", "vbench")
API_PORT = 19381
MBUF_BYTES = 2432  # one mbuf of DPDK's default data room with its header and mempool overhead


# (name, capture case, flows, flow table capacity, what it measures)
CASES = [
    ("nat-1k", "nat", 1000, 1 << 20, "NAT, established, 1k flows"),
    ("nat-100k", "nat", 100_000, 1 << 20, "NAT, established, 100k flows"),
    ("nat-1m", "nat", 1_000_000, 1 << 21, "NAT, established, 1M flows"),
    ("dr-1k", "dr", 1000, 1 << 20, "DR, established, 1k flows"),
    ("tun-1k", "tun", 1000, 1 << 20, "TUN 4in4, established, 1k flows"),
    ("nat-reply-1k", "nat-reply", 1000, 1 << 20, "NAT both directions (1/2 replies), 1k flows"),
    ("syn-flood", "syn-flood", 262_144, 16384, "all-new flows: 262k distinct SYNs, table of 16k"),
    ("nat-junk-1k", "nat-junk", 1000, 1 << 20, "NAT 1k flows + 1 % junk"),
]
QUICK_CASES = ["nat-1k"]


def pcap(case, flows):
    os.makedirs(PCAP_DIR, exist_ok=True)
    path = os.path.join(PCAP_DIR, f"{case}-{flows}.pcap")
    if not os.path.exists(path):
        subprocess.run(["python3", MKPCAP, case, str(flows), path], check=True)
    frames = (os.path.getsize(path) - 24) // 76
    return path, frames


def bench_config(path, pcap_path, mbufs, capacity, case, busy=True, hugepages=True):
    """The vipd configuration of a case: one pcap port, static neighbours, three services."""
    one_rs = case == "nat-reply"
    rs = range(1, 2 if one_rs else 101)
    text = f"""
[eal]
file_prefix = "{PREFIX}-sys"
hugepages = {str(hugepages).lower()}
{"" if hugepages else "memory_mb = " + str(mbufs * MBUF_BYTES // (1 << 20) + 512)}
extra_args = ["--no-pci"]

[dataplane]
worker_cores = [1]
control_core = 0
idle_sleep_us = {0 if busy else 50}
mbufs = {mbufs}

[flows]
capacity_per_worker = {capacity}

[api]
listen = "127.0.0.1:{API_PORT}"

[[ports]]
name = "bench"
device = "net_pcap0,rx_pcap={pcap_path},infinite_rx=1"
mac = "02:00:00:00:00:10"
ipv4 = "10.0.0.10/16"
gateway = "10.0.0.1"

[[neighbours]]
ip = "10.0.0.1"
mac = "02:00:00:00:00:01"
"""
    for i in rs:
        text += f'\n[[neighbours]]\nip = "10.0.1.{i}"\nmac = "02:00:00:01:00:{i - 1:02x}"\n'
    for port, mode, rs_port in ((80, "nat", 8080), (443, "dr", 443), (8443, "tunnel", 8443)):
        text += f'\n[[services]]\nvip = "10.100.0.1"\nproto = "tcp"\nport = {port}\nscheduler = "maglev"\nmode = "{mode}"\n'
        for i in rs:
            text += f'\n[[services.real_servers]]\nip = "10.0.1.{i}"\nport = {rs_port}\nweight = 1\n'
    with open(path, "w") as f:
        f.write(text)


def api(path):
    with urllib.request.urlopen(f"http://127.0.0.1:{API_PORT}{path}", timeout=5) as r:
        return json.loads(r.read())


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_vipd(vipd, cfg, warmup, duration, logpath, during=None):
    """vipd's rate over `duration` seconds after `warmup`: received frames per second, from
    its worker counters, and the counters of the window. `during(pid, duration)`, when given,
    runs in place of the window's sleep (a profiler attached to vipd)."""
    with open(logpath, "w") as logf:
        proc = subprocess.Popen([vipd, "--config", cfg], stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, "VIPD_LOG": "warn"})
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vipd exited {proc.returncode}: see {logpath}")
            try:
                if api("/api/v1/stats")["total"]["rx_packets"] > 0:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"vipd received nothing in 120 s: see {logpath}")
            time.sleep(0.2)
        time.sleep(warmup)
        a, ta = api("/api/v1/stats")["total"], time.monotonic()
        if during is None:
            time.sleep(duration)
        else:
            during(proc.pid, duration)
        b, tb = api("/api/v1/stats")["total"], time.monotonic()
    finally:
        stop(proc)
    dt = tb - ta
    delta = {k: b[k] - a.get(k, 0) for k in b if isinstance(b[k], (int, float))}
    return delta["rx_packets"] / dt, {k: v for k, v in delta.items() if v}


def run_testpmd(pcap_path, mbufs, warmup, duration, logpath, hugepages=True):
    """testpmd macswap's rate: the mean of its Rx-pps lines (1 s periods) after `warmup`."""
    mem = ["--in-memory"] if hugepages else ["--no-huge", "-m", str(mbufs * MBUF_BYTES // (1 << 20) + 512)]
    args = ["dpdk-testpmd", "-l", "0,1", *mem, "--file-prefix", f"{PREFIX}-testpmd", "--no-pci",
            "--vdev", f"net_pcap0,rx_pcap={pcap_path},infinite_rx=1", "--",
            "--forward-mode=macswap", "--stats-period", "1", f"--total-num-mbufs={mbufs}",
            "--no-flush-rx", "--nb-cores=1"]
    with open(logpath, "w") as logf:
        proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while "Rx-pps" not in open(logpath).read():
            if proc.poll() is not None:
                raise RuntimeError(f"testpmd exited {proc.returncode}: see {logpath}")
            if time.time() > deadline:
                raise RuntimeError(f"testpmd did not forward in 120 s: see {logpath}")
            time.sleep(0.2)
        time.sleep(warmup + duration + 0.5)
    finally:
        stop(proc)
    rates = [int(ln.split()[1]) for ln in open(logpath) if ln.strip().startswith("Rx-pps:")]
    skip = max(1, int(warmup))
    window = rates[skip:skip + max(1, int(duration))] or rates[-1:]
    return sum(window) / len(window)


def pool_mbufs(frames):
    # The capture's frames live in the pool for the whole run, plus descriptors and bursts.
    return ((frames + 8192) | 4095)


def run(vipd, rounds, warmup, duration, quick, outdir):
    cases = [c for c in CASES if not quick or c[0] in QUICK_CASES]
    results = []
    for name, case, flows, capacity, what in cases:
        path, frames = pcap(case, flows)
        mbufs = pool_mbufs(frames)
        cfg = os.path.join(outdir, f"{name}.toml")
        bench_config(cfg, path, mbufs, capacity, case)
        vipd_rates, ceil_rates, windows = [], [], []
        for r in range(rounds):
            # Alternate which runs first, so a drift of the machine's load hits both.
            order = ("testpmd", "vipd") if r % 2 == 0 else ("vipd", "testpmd")
            for who in order:
                logp = os.path.join(outdir, f"{name}-{who}-{r}.log")
                if who == "vipd":
                    rate, window = run_vipd(vipd, cfg, warmup, duration, logp)
                    vipd_rates.append(rate)
                    windows.append(window)
                else:
                    ceil_rates.append(run_testpmd(path, mbufs, warmup, duration, logp))
            log(f"  {name} round {r + 1}: vipd {vipd_rates[-1] / 1e6:.2f} Mpps, testpmd {ceil_rates[-1] / 1e6:.2f} Mpps")
        ratios = [v / c for v, c in zip(vipd_rates, ceil_rates)]
        results.append({
            "case": name, "what": what, "flows": flows, "frames": frames, "table": capacity,
            "vipd_pps": median_spread(vipd_rates), "testpmd_pps": median_spread(ceil_rates),
            "ratio": median_spread(ratios), "rounds": rounds, "counters_last_window": windows[-1],
        })
    return results


def table(results, goals):
    rows = ["| case | vipd Mpps | testpmd macswap Mpps (ceiling) | ratio | goal |", "|---|---|---|---|---|"]
    for r in results:
        v, c, q = r["vipd_pps"], r["testpmd_pps"], r["ratio"]
        rows.append(f"| {r['what']} | {v['median'] / 1e6:.2f} ({v['min'] / 1e6:.2f}-{v['max'] / 1e6:.2f}) "
                    f"| {c['median'] / 1e6:.2f} ({c['min'] / 1e6:.2f}-{c['max'] / 1e6:.2f}) "
                    f"| {q['median']:.2f} ({q['min']:.2f}-{q['max']:.2f}) | {goals.get(r['case'], '')} |")
    return "\n".join(rows)


RTE_FLOW_RULE = ("flow validate 0 ingress pattern eth / ipv4 src is 10.0.1.1 / tcp src is 8080 / end "
                 "actions queue index 0 / end")


def rte_flow_support(pcap_path):
    """Which of the PMDs that run here accept the rte_flow rule NIC-side reply steering needs
    (match a real server's source address and port, send to a queue): testpmd's
    `flow validate` on each, in a namespace of our own (veths for af_packet/af_xdp, a tap)."""
    ns = f"{PREFIX}-flow"
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", f"{PREFIX}-fa", "type", "veth", "peer", "name", f"{PREFIX}-fb"], check=True)
        for dev in (f"{PREFIX}-fa", f"{PREFIX}-fb"):
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
        devs = ["net_null0", "net_ring0", f"net_pcap0,rx_pcap={pcap_path}", f"net_tap0,iface={PREFIX}-tap",
                f"net_af_packet0,iface={PREFIX}-fa", f"net_af_xdp0,iface={PREFIX}-fb",
                f"net_memif0,role=server,socket=/tmp/{PREFIX}-flow-memif.sock"]
        out = {}
        for dev in devs:
            r = subprocess.run(["ip", "netns", "exec", ns, "dpdk-testpmd", "-l", "0,1", "--no-huge", "-m", "256", "--no-pci",
                                "--file-prefix", f"{PREFIX}-flow", "--vdev", dev, "--", "-i", "--total-num-mbufs=4096"],
                               input=RTE_FLOW_RULE + "\nquit\n", capture_output=True, text=True, timeout=60)
            text = r.stdout + r.stderr
            name = dev.split(",")[0].rstrip("0")
            out[name] = "yes" if "Flow rule validated" in text else (
                "no (" + ("not implemented" if "not implemented" in text else "refused") + ")")
        return out
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def rte_flow_table(res):
    rows = ["| PMD (runs here) | rte_flow rule `ipv4 src / tcp src -> queue` |", "|---|---|"]
    rows += [f"| {k} | {v} |" for k, v in res.items()]
    return "\n".join(rows)
