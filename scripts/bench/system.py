"""System benchmark: vipd against ceilings measured on the same virtual device, core and
mbuf count, one worker core, alternating rounds.

The device is `net_pcap0,rx_pcap=F,infinite_rx=1`: the PMD replays the capture from memory
forever and drops what is transmitted (no tx_pcap), so the generator costs one copy per
frame on the worker's own core and nothing else. On that port and core, in the same rounds:

- testpmd `5tswap` (swaps MACs, IPs and L4 ports: it parses and writes the headers a NAT
  does): THE system ceiling; testpmd `macswap`: the I/O ceiling; testpmd `rxonly`: the
  generator's own cost per packet (the replay's copy into a fresh mbuf, and the free).
- at the cases that name them: DPDK's l3fwd `--lookup=em` on the same capture with one
  exact-match rule per flow of it (l3fwd.py), and testpmd `noisy` with lookup memory the
  size of vipd's flow table for the case (testpmd.py says what noisy really touches).

vipd's figure is the same frames through classification, flow lookup, scheduling and
rewrite.
"""

import json
import os
import subprocess
import time
import urllib.request

from common import ROOT, TARGET, cpu_seconds, log, median_spread, remove_runtime_dir, stop
import l3fwd
import testpmd

PCAP_DIR = os.path.join(TARGET, "bench", "pcap")
MKPCAP = os.path.join(ROOT, "scripts", "bench", "mkpcap.py")
PREFIX = os.environ.get("VIPD_BED_PREFIX", "vbench")
API_PORT = 19381
MBUF_BYTES = 2432  # one mbuf of DPDK's default data room with its header and mempool overhead


# (name, capture case, flows, flow table capacity, what it measures)
CASES = [
    ("nat-1k", "nat", 1000, 1 << 20, "NAT, established, 1k flows"),
    ("nat-100k", "nat", 100_000, 1 << 20, "NAT, established, 100k flows"),
    ("nat-1m", "nat-acks", 1_000_000, 1 << 21, "NAT, established, 1M flows (ACKs, sloppy TCP)"),
    ("dr-1k", "dr", 1000, 1 << 20, "DR, established, 1k flows"),
    ("tun-1k", "tun", 1000, 1 << 20, "TUN 4in4, established, 1k flows"),
    ("nat-reply-1k", "nat-reply", 1000, 1 << 20, "NAT both directions (1/2 replies), 1k flows"),
    ("syn-flood", "syn-flood", 262_144, 16384, "all-new flows: 262k distinct SYNs, table of 16k"),
    ("nat-junk-1k", "nat-junk", 1000, 1 << 20, "NAT 1k flows + 1 % junk"),
]
QUICK_CASES = ["nat-1k"]
# The ceilings every case runs (testpmd modes), and those only some do.
CEILINGS = ["5tswap", "macswap", "rxonly"]
EXTRA_CEILINGS = {"nat-1k": ["l3fwd-em"], "nat-1m": ["l3fwd-em", "noisy"]}


def pcap(case, flows, queues=0):
    """The capture of a case (made once, cached): its path and frame count; with `queues`,
    the paths of its per-queue split instead (mkpcap.py --queues)."""
    os.makedirs(PCAP_DIR, exist_ok=True)
    path = os.path.join(PCAP_DIR, f"{case}-{flows}.pcap")
    import mkpcap
    parts = [mkpcap.queue_path(path, q) for q in range(queues)] if queues > 1 else []
    if not os.path.exists(path) or any(not os.path.exists(p) for p in parts):
        args = ["--queues", str(queues)] if queues > 1 else []
        subprocess.run(["python3", MKPCAP, case, str(flows), path, *args], check=True, timeout=1800)
    frames = (os.path.getsize(path) - 24) // 76
    return (parts if parts else path), frames


def l3fwd_rules(case, flows, port=1):
    """l3fwd's exact-match rules for the capture's flows (mkpcap.py --l3fwd-rules), cached."""
    path, _ = pcap(case, flows)
    rules = os.path.join(PCAP_DIR, f"{case}-{flows}.l3fwd-rules")
    if not os.path.exists(rules):
        import mkpcap
        frames = read_pcap(path)
        mkpcap.write_l3fwd_rules(rules, frames, port)
    return rules


def read_pcap(path):
    """The frames of one of our captures (fixed 60-byte records after the 24-byte header)."""
    import struct
    frames = []
    with open(path, "rb") as f:
        f.read(24)
        while True:
            hdr = f.read(16)
            if len(hdr) < 16:
                return frames
            n = struct.unpack("<IIII", hdr)[2]
            frames.append(f.read(n))


_TABLE_BYTES_PER_SLOT = []


def flow_table_bytes(capacity):
    """vipd's flow table memory for `capacity` connection slots: bytes per slot as
    pipeline_bench reports it (`table_bytes / table_capacity` of a small run), times the
    capacity."""
    if not _TABLE_BYTES_PER_SLOT:
        exe = os.path.join(TARGET, "release", "examples", "pipeline_bench")
        out = subprocess.run([exe, "--json", "--only", "nat-new", "1000"], capture_output=True, text=True,
                             check=True, timeout=600)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        _TABLE_BYTES_PER_SLOT.append(res["table_bytes"] / res["table_capacity"])
    return int(_TABLE_BYTES_PER_SLOT[0] * capacity)


def bench_config(path, pcap_path, mbufs, capacity, case, busy=True, hugepages=True, worker_cores=(1,)):
    """The vipd configuration of a case: one pcap port (one RX queue per capture when
    `pcap_path` is a list, one per worker), static neighbours, three services."""
    device = testpmd.device(pcap_path if isinstance(pcap_path, list) else [pcap_path])
    one_rs = case == "nat-reply"
    rs = range(1, 2 if one_rs else 101)
    text = f"""
[eal]
file_prefix = "{PREFIX}-sys"
hugepages = {str(hugepages).lower()}
{"" if hugepages else "memory_mb = " + str(mbufs * MBUF_BYTES // (1 << 20) + 512)}
extra_args = ["--no-pci"]

[dataplane]
worker_cores = [{", ".join(str(c) for c in worker_cores)}]
control_core = 0
idle_sleep_us = {0 if busy else 50}
mbufs = {mbufs}

[flows]
capacity_per_worker = {capacity}
sloppy_tcp = {str(case == "nat-acks").lower()}

[api]
listen = "127.0.0.1:{API_PORT}"

[[ports]]
name = "bench"
device = "{device}"
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


def run_vipd(vipd, cfg, warmup, duration, logpath, during=None):
    """vipd's rate over `duration` seconds after `warmup`: received frames per second, from
    its worker counters, and the counters of the window (with `worker_cpu_share`: the CPU
    its worker threads got over the window, per worker, 1.0 = a whole core each).
    `during(pid, duration)`, when given, runs in place of the window's sleep (a profiler
    attached to vipd)."""
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
        a, ta, ca = api("/api/v1/stats")["total"], time.monotonic(), cpu_seconds(proc.pid, "rte-worker")
        if during is None:
            time.sleep(duration)
        else:
            during(proc.pid, duration)
        b, tb, cb = api("/api/v1/stats")["total"], time.monotonic(), cpu_seconds(proc.pid, "rte-worker")
        workers = max(1, len(api("/api/v1/stats")["workers"]))
    finally:
        stop(proc)
    dt = tb - ta
    delta = {k: b[k] - a.get(k, 0) for k in b if isinstance(b[k], (int, float))}
    window = {k: v for k, v in delta.items() if v}
    window["worker_cpu_share"] = (cb - ca) / dt / workers
    return delta["rx_packets"] / dt, window


def pool_mbufs(frames):
    # The capture's frames live in the pool for the whole run, plus descriptors and bursts.
    return ((frames + 8192) | 4095)


def hugepages_needed(quick):
    """2 MiB pages for the largest case: its mbufs, plus the largest of l3fwd's hashes and
    noisy's memory (the programs run one at a time), plus headroom."""
    frames_max = 2_000_000 if not quick else 40_000
    extra = max(l3fwd.HASH_BYTES, 300 << 20)
    return (pool_mbufs(frames_max) * MBUF_BYTES + extra) // (2 << 20) + 128


def run_one(who, vipd, cfg, path, name, flows, capacity, mbufs, warmup, duration, logp):
    """One program's rate on the case; (pps, details)."""
    if who == "vipd":
        return run_vipd(vipd, cfg, warmup, duration, logp)
    if who == "l3fwd-em":
        return l3fwd.run(path, l3fwd_rules(case_of(name), flows), mbufs, warmup, duration, logp)
    if who == "noisy":
        table = flow_table_bytes(capacity)
        mode = testpmd.noisy_mode(table)
        pps, cpu = testpmd.run([path], mbufs, mode, warmup, duration, logp)
        return pps, {"table_bytes": table, "args": mode, "worker_cpu_share": cpu}
    pps, cpu = testpmd.run([path], mbufs, testpmd.MODES[who], warmup, duration, logp)
    return pps, {"worker_cpu_share": cpu}


def warmup_of(case, warmup):
    """The warm-up of a capture case: three times the usual for the ACK capture, whose
    first replay opens its flows on the general path (about a second at 1M flows), so
    that the measured window holds established frames only; the same for every program
    of the case."""
    return warmup * 3 if case == "nat-acks" else warmup


def case_of(name):
    return next(c[1] for c in CASES if c[0] == name)


def run(vipd, rounds, warmup, duration, quick, outdir, only=None):
    """Every case (or those named in `only`): vipd and its ceilings in alternating rounds
    (the order rotates each round, so a drift of the machine's load is spread over all)."""
    unknown = set(only or []) - {c[0] for c in CASES}
    if unknown:
        raise ValueError(f"unknown system case(s) {sorted(unknown)}; the cases: {[c[0] for c in CASES]}")
    cases = [c for c in CASES if (not quick or c[0] in QUICK_CASES) and (only is None or c[0] in only)]
    results = []
    unavailable = {}
    for name, case, flows, capacity, what in cases:
        path, frames = pcap(case, flows)
        mbufs = pool_mbufs(frames)
        cfg = os.path.join(outdir, f"{name}.toml")
        bench_config(cfg, path, mbufs, capacity, case)
        # The quick run exercises every ceiling on its one case.
        extra = ["l3fwd-em", "noisy"] if quick else EXTRA_CEILINGS.get(name, [])
        programs = ["vipd", *CEILINGS, *extra]
        case_warmup = warmup_of(case, warmup)
        rates = {p: [] for p in programs}
        details = {p: [] for p in programs}
        for r in range(rounds):
            order = programs[r % len(programs):] + programs[:r % len(programs)]
            for who in order:
                if who in unavailable:
                    continue
                logp = os.path.join(outdir, f"{name}-{who}-{r}.log")
                try:
                    rate, det = run_one(who, vipd, cfg, path, name, flows, capacity, mbufs, case_warmup, duration, logp)
                except l3fwd.Unavailable as e:
                    unavailable[who] = str(e)
                    log(f"  {who}: cannot run here: {e}")
                    continue
                rates[who].append(rate)
                details[who].append(det)
            log(f"  {name} round {r + 1}: " + ", ".join(
                f"{p} {rates[p][-1] / 1e6:.2f}" for p in order if rates[p]) + " Mpps")
        res = {"case": name, "what": what, "flows": flows, "frames": frames, "table": capacity, "rounds": rounds,
               "pps": {p: median_spread(v) for p, v in rates.items() if v},
               "counters_last_window": details["vipd"][-1] if details["vipd"] else {}}
        # Ratios per round (vipd and the ceiling of the same round), then their median.
        res["ratio"] = {p: median_spread([v / c for v, c in zip(rates["vipd"], rates[p]) if c])
                        for p in programs if p not in ("vipd", "rxonly") and rates[p] and rates["vipd"]}
        if rates["rxonly"]:
            res["generator_ns"] = median_spread([1e9 / x for x in rates["rxonly"] if x])
        if rates["vipd"]:
            res["vipd_ns"] = median_spread([1e9 / x for x in rates["vipd"] if x])
        if details.get("l3fwd-em"):
            res["l3fwd_hit_share"] = min(d["hit_share"] for d in details["l3fwd-em"])
        if details.get("noisy"):
            res["noisy"] = details["noisy"][0]
        # The same ratios per second of CPU the forwarding threads got (rate / core share):
        # on a machine shared with other work, a program that got less of its core is not
        # slower for it.
        cpu_of = {p: [d.get("worker_cpu_share", 0.0) for d in details[p]] for p in programs}
        res["ratio_per_cpu"] = {
            p: median_spread([(v / cv) / (c / cc) for v, cv, c, cc in zip(rates["vipd"], cpu_of["vipd"], rates[p], cpu_of[p])
                              if cv and c and cc])
            for p in res["ratio"] if len(cpu_of[p]) == len(rates[p]) and all(cpu_of[p]) and all(cpu_of["vipd"])}
        # What each program's forwarding thread got of its core over the window, per round.
        res["worker_cpu_share"] = {p: median_spread([d.get("worker_cpu_share", 0.0) for d in details[p]])
                                   for p in programs if details[p]}
        results.append(res)
    return {"cases": results, "unavailable": unavailable}


def _fig(x, scale=1e6, digits=2):
    if not x:
        return "-"
    return f"{x['median'] / scale:.{digits}f} ({x['min'] / scale:.{digits}f}-{x['max'] / scale:.{digits}f})"


def table(res, goals):
    """The system table: vipd, THE ceiling (5tswap) and its ratio with the goal, macswap, the
    generator's and vipd's ns per packet."""
    rows = ["| case | vipd Mpps | testpmd 5tswap Mpps (ceiling) | vipd / 5tswap | goal | the same per core-second "
            "| testpmd macswap Mpps | vipd / macswap | generator ns/packet (testpmd rxonly) | vipd ns/packet "
            "| core share vipd / 5tswap |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["cases"]:
        p, q, cpu = r["pps"], r["ratio"], r.get("worker_cpu_share", {})
        share = " / ".join(f"{cpu[k]['median']:.2f}" if k in cpu else "-" for k in ("vipd", "5tswap"))
        rows.append(f"| {r['what']} | {_fig(p.get('vipd'))} | {_fig(p.get('5tswap'))} | {_fig(q.get('5tswap'), 1)} "
                    f"| {goals.get(r['case'], '')} | {_fig(r.get('ratio_per_cpu', {}).get('5tswap'), 1)} "
                    f"| {_fig(p.get('macswap'))} | {_fig(q.get('macswap'), 1)} "
                    f"| {_fig(r.get('generator_ns'), 1, 1)} | {_fig(r.get('vipd_ns'), 1, 1)} | {share} |")
    return "\n".join(rows)


def ceilings_table(res, goals):
    """The fair ceilings at 1k and 1M flows: l3fwd-em (with its measured hit share) and noisy."""
    rows = ["| case | vipd Mpps | l3fwd-em Mpps (hits) | vipd / l3fwd-em | goal | the same per core-second "
            "| testpmd noisy Mpps (memory) | vipd / noisy | core share vipd / l3fwd-em / noisy |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in res["cases"]:
        p, q, cpu = r["pps"], r["ratio"], r.get("worker_cpu_share", {})
        share = " / ".join(f"{cpu[k]['median']:.2f}" if k in cpu else "-" for k in ("vipd", "l3fwd-em", "noisy"))
        if "l3fwd-em" not in p and "noisy" not in p:
            continue
        hits = f" ({r['l3fwd_hit_share'] * 100:.1f} %)" if "l3fwd_hit_share" in r else ""
        noisy = ""
        if "noisy" in r:
            noisy = (f" ({r['noisy']['table_bytes'] / 2**20:.0f} MB; per packet {testpmd.NOISY_READS} read, "
                     f"{testpmd.NOISY_WRITES} write, {testpmd.NOISY_READS_WRITES} read-write)")
        rows.append(f"| {r['what']} | {_fig(p.get('vipd'))} | {_fig(p.get('l3fwd-em'))}{hits} "
                    f"| {_fig(q.get('l3fwd-em'), 1)} | {goals.get(r['case'], '')} "
                    f"| {_fig(r.get('ratio_per_cpu', {}).get('l3fwd-em'), 1)} "
                    f"| {_fig(p.get('noisy'))}{noisy if 'noisy' in p else ''} | {_fig(q.get('noisy'), 1)} | {share} |")
    for who, why in res.get("unavailable", {}).items():
        rows.append(f"\n{who} did not run: {why}")
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
        remove_runtime_dir(f"{PREFIX}-flow")


def rte_flow_table(res):
    rows = ["| PMD (runs here) | rte_flow rule `ipv4 src / tcp src -> queue` |", "|---|---|"]
    rows += [f"| {k} | {v} |" for k, v in res.items()]
    return "\n".join(rows)
