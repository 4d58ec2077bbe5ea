"""The soak (scenario `soak` of scripts/e2e, 60 s; scripts/soak runs it for 10 minutes): mixed
traffic through vipd for VIPD_SOAK_SECONDS while real servers fail and come back and the
configuration changes through the API.

Traffic (scripts/lib/soak_client.py in the client namespace, scripts/lib/junk.py on the
server segment): short TCP connections over IPv4 and IPv6 (40/s), three bulk download loops
(4 MB each, read at 2 MB/s, checked byte for byte), UDP exchanges (20/s, a new flow each),
junk frames (300/s, 14 classes that must be dropped or answered).

Faults, every 12 s in turn: rs3's server process killed (health checks see `connection
refused`) and restarted; rs2's link down (`timeout`) and up. Between them one API change in
turn: a weight changed and back, a service added then deleted, a timeout changed, a reload
from the file.

What counts as a failed request to a healthy server (must be 0): any failed request except one
that was in flight during a fault window, [the moment the fault began, the moment vipd's
health checks had marked that server down in every service + 1 s], and that was not known to be
served by another real server. A request that started after the verdict, or ended before the
fault, or was answered by a healthy server and then broke, counts.

Memory: vipd's RSS and the mbuf pool's in-use count sampled through the run; flat means RSS at
the end within 4 MiB of RSS after the first quarter; no mbuf leak means the pool back at its
idle value once the traffic stopped.
"""

import json
import os
import subprocess
import threading
import time

from vipdbed import (
    CLIENTS4, CLIENTS6, LIB, PREFIX, VIP4, VIP6, Vipd, bash, check, check_drops, isolated_lb_kernel,
    log, netns,
)
from vipd_probe import idle_mbufs, mbufs_in_use, metric, rss_kib, wait_health, wait_mbufs_back

INTERVAL, TIMEOUT, RISE, FALL = 0.5, 0.4, 2, 2
FAULT_PERIOD = 12.0
RS4 = ["10.77.0.21", "10.77.0.22", "10.77.0.23"]
RS6 = ["fd00:77::21", "fd00:77::22", "fd00:77::23"]
WEB = f"/api/v1/services/tcp/{VIP4}/80"
LB_MAC = "02:77:00:00:00:0a"
# What junk.py sends is dropped under these counters (and the bed's usual explained drops).
JUNK_DROPS = {
    "drop_eth_malformed", "drop_vlan_tagged", "drop_unknown_vlan", "drop_arp_invalid", "drop_ipv4_malformed",
    "drop_ipv4_bad_checksum", "drop_fragment_unknown", "drop_fragment_invalid", "drop_ipv6_malformed",
    "drop_ipv6_mapped", "drop_martian_source", "drop_ttl_zero", "drop_tcp_bad_flags",
    "drop_icmp_error_no_flow", "drop_icmp_quote_malformed", "drop_l4_malformed", "drop_no_service",
    "drop_unsupported_protocol", "drop_ipv6_ext_header", "drop_nat_reply_no_flow",
}
# A killed or unplugged real server: its connections' next packets are dropped (dead_flows),
# it is not resolved while unplugged, af_packet's TX ring can fill under the bulk load.
FAULT_DROPS = {"drop_real_server_down", "drop_neighbour_unresolved", "drop_backend_gone", "drop_tx_full"}


def api_send(method, path, body=None):
    """One API write from the LB namespace: the parsed JSON answer."""
    args = ["curl", "-s", "-m", "10", "-X", method, "-H", "Content-Type: application/json"]
    if body is not None:
        args += ["--data-binary", json.dumps(body)]
    out = netns(f"{PREFIX}-lb", *args, f"http://127.0.0.1:19280{path}")
    return json.loads(out)


def services():
    check_keys = (f'health_check = {{ type = "http", path = "/health", port = 8080, interval = {INTERVAL}, '
                  f'timeout = {TIMEOUT}, rise = {RISE}, fall = {FALL} }}')
    return [
        {"vip": VIP4, "proto": "tcp", "port": 80, "scheduler": "maglev", "keys": [check_keys],
         "rs": [(ip, 8080, 1) for ip in RS4]},
        {"vip": VIP6, "proto": "tcp", "port": 80, "scheduler": "maglev", "keys": [check_keys],
         "rs": [(ip, 8080, 1) for ip in RS6]},
        {"vip": VIP4, "proto": "udp", "port": 53, "scheduler": "maglev", "keys": [check_keys],
         "rs": [(ip, 5353, 1) for ip in RS4]},
    ]


# API changes made between faults, in turn: (what, [(method, path, body)]), each answered ok.
CHANGES = [
    ("weight of rs1 2, then back to 1", [("PATCH", f"{WEB}/real_servers/10.77.0.21/8080", {"weight": 2}),
                                         ("PATCH", f"{WEB}/real_servers/10.77.0.21/8080", {"weight": 1})]),
    ("service tcp/8080 added, then deleted", [
        ("POST", "/api/v1/services", {"vip": VIP4, "proto": "tcp", "port": 8080, "scheduler": "rr",
                                      "real_servers": [{"ip": "10.77.0.21", "port": 8080}]}),
        ("DELETE", f"/api/v1/services/tcp/{VIP4}/8080", None)]),
    ("udp timeout 5, then 3", [("PATCH", "/api/v1/timeouts", {"udp": 5}), ("PATCH", "/api/v1/timeouts", {"udp": 3})]),
    ("reload from the file", [("POST", "/api/v1/reload", None)]),
]


class Faults:
    """The fault windows and changes made, for classifying failures afterwards."""

    def __init__(self):
        self.windows = []  # (start, end, rs name, what, detect s)
        self.changes = 0

    def kill(self, v, i):
        hosts = {RS4[i - 1], RS6[i - 1]}
        t0 = time.time()
        bash(f"vipd_rs_stop {PREFIX} {i}")
        wait_health(v, hosts, "down", 6)
        down = time.time() - t0
        self.windows.append((t0, time.time() + 1.0, f"rs{i}", "process killed", down))
        time.sleep(2)
        bash(f"vipd_rs_start {PREFIX} {i} 8080 5353")
        wait_health(v, hosts, "up", 6)
        return down

    def unplug(self, v, i):
        hosts = {RS4[i - 1], RS6[i - 1]}
        t0 = time.time()
        netns(f"{PREFIX}-router", "ip", "link", "set", f"{PREFIX}-brs{i}", "down")
        try:
            wait_health(v, hosts, "down", 6)
            down = time.time() - t0
            self.windows.append((t0, time.time() + 1.0, f"rs{i}", "link down", down))
            time.sleep(2)
        finally:
            netns(f"{PREFIX}-router", "ip", "link", "set", f"{PREFIX}-brs{i}", "up")
        wait_health(v, hosts, "up", 8)
        return down

    def change(self, k):
        what, calls = CHANGES[k % len(CHANGES)]
        for method, path, body in calls:
            answer = api_send(method, path, body)
            check(answer.get("ok") is True, f"API change `{what}`: {method} {path} answered {answer}")
            time.sleep(0.5)
        self.changes += 1
        return what

    def excuses(self, failure):
        """The window that explains `failure`, if one does."""
        for start, end, rs, what, _ in self.windows:
            overlaps = failure["start"] <= end and failure["end"] >= start
            if overlaps and failure["server"] in ("", rs):
                return what
        return None


class Sampler:
    """vipd's RSS, mbufs in use, active flows and received packets every `period` s."""

    def __init__(self, v, period):
        self.v, self.period = v, period
        self.rows = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.t0 = time.time()
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                s = self.v.stats()
                self.rows.append((time.time() - self.t0, rss_kib(self.v), mbufs_in_use(self.v),
                                  s["flows_active"], s["total"]["rx_packets"]))
            except Exception as e:  # noqa: BLE001 - a sample lost is reported, not fatal
                self.rows.append((time.time() - self.t0, None, None, None, str(e)[:60]))
            self.stop.wait(self.period)

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=30)
        return self.rows


def run_soak(seconds):
    v = Vipd("soak", services=services(), kernel_interface=f"{PREFIX}-k0")
    faults = Faults()
    client = junk = None
    try:
        with isolated_lb_kernel():
            st = v.start()
            for i in (1, 2, 3):
                wait_health(v, {RS4[i - 1], RS6[i - 1]}, "up", 8)
            mac = st["ports"][0].get("mac") or LB_MAC
            idle = idle_mbufs(v)
            rss0 = rss_kib(v)
            log(f"    idle: {idle} mbufs in use of {int(metric(v, 'vipd_mempool_mbufs'))}, RSS {rss0} KiB; "
                f"soaking {seconds} s")
            t_start = time.time()
            client = subprocess.Popen(
                ["ip", "netns", "exec", f"{PREFIX}-client", "python3", os.path.join(LIB, "soak_client.py"),
                 "--seconds", str(seconds), "--vip4", VIP4, "--vip6", VIP6,
                 "--sources4", CLIENTS4, "--sources6", CLIENTS6],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            junk = subprocess.Popen(
                ["ip", "netns", "exec", f"{PREFIX}-rs1", "python3", os.path.join(LIB, "junk.py"),
                 "--dev", f"{PREFIX}-rs1", "--mac", mac, "--vip4", VIP4, "--vip6", VIP6,
                 "--rate", "300", "--seconds", str(seconds)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            sampler = Sampler(v, max(5.0, seconds / 24))
            k = 0
            detect = []
            time.sleep(4)
            while time.time() + FAULT_PERIOD + 2 < t_start + seconds:
                t_cycle = time.time()
                if k % 2 == 0:
                    detect.append(faults.kill(v, 3))
                else:
                    detect.append(faults.unplug(v, 2))
                faults.change(k)
                k += 1
                time.sleep(max(0.0, t_cycle + FAULT_PERIOD - time.time()))
            out, err = client.communicate(timeout=seconds + 120)
            check(client.returncode == 0, f"soak_client failed: {err[-500:]}")
            jout, jerr = junk.communicate(timeout=60)
            check(junk.returncode == 0, f"junk.py failed: {jerr[-500:]}")
            r, j = json.loads(out), json.loads(jout)
            back = wait_mbufs_back(v, idle)
            rows = sampler.finish()
            rss1 = rss_kib(v)
            report(v, seconds, r, j, faults, detect, rows, idle, back, rss0, rss1)
    except Exception:
        for p in (client, junk):
            if p and p.poll() is None:
                p.kill()
                p.wait()
        log(v.tail(40))
        raise
    finally:
        netns(f"{PREFIX}-router", "ip", "link", "set", f"{PREFIX}-brs2", "up", check=False)
        bash(f"vipd_rs_start {PREFIX} 3 8080 5353", check=False)
        rc = v.stop()
    check(rc == 0, f"vipd exit code {rc}")


def report(v, seconds, r, j, faults, detect, rows, idle, back, rss0, rss1):
    kinds = r["kinds"]
    total = sum(k["ok"] + k["failed"] for k in kinds.values())
    excused, counted = {}, []
    for f in r["failures"]:
        why = faults.excuses(f)
        if why:
            excused[why] = excused.get(why, 0) + 1
        else:
            counted.append(f)
    check(r["failure_count"] == len(r["failures"]), f"{r['failure_count']} failures, more than recorded")
    per_kind = ", ".join(f"{n} {k['ok']} ok / {k['failed']} failed" for n, k in sorted(kinds.items()))
    log(f"    requests: {total} ({per_kind}); {r['download_bytes'] / 1e6:.0f} MB downloaded and checked")
    log(f"    faults: {len(faults.windows)} ({sum(1 for w in faults.windows if w[3] == 'process killed')} rs3 killed, "
        f"{sum(1 for w in faults.windows if w[3] == 'link down')} rs2 unplugged), marked down "
        f"in every service {min(detect):.2f}-{max(detect):.2f} s after the fault began; {faults.changes} API changes")
    log(f"    failures: {r['failure_count']}, of which in a fault window to the failing server {sum(excused.values())} "
        f"{excused or ''}; to healthy servers {len(counted)}")
    check(not counted, f"{len(counted)} failed requests to healthy servers, e.g. {counted[:5]}; windows "
          f"{[(round(a, 1), round(b, 1), rs) for a, b, rs, *_ in faults.windows]}")
    for kind in ("tcp4", "tcp6", "download", "udp"):
        check(kinds.get(kind, {}).get("ok", 0) > 0, f"no successful {kind} request: {kinds}")
    log("    memory (s, RSS KiB, mbufs in use, flows active, rx packets):")
    for i in range(0, len(rows), 4):
        log("      " + " | ".join(f"{t:5.0f} {rss} {mb} {fl} {rx}" for t, rss, mb, fl, rx in rows[i:i + 4]))
    warm = [row for row in rows if row[0] >= seconds / 4 and row[1]]
    base = warm[0][1] if warm else rss0
    check(rss1 - base <= 4096, f"RSS grew {rss1 - base} KiB after the first quarter ({base} -> {rss1} KiB)")
    peak = max(row[2] for row in rows if row[2] is not None)
    log(f"    RSS {rss0} KiB at rest, {base} after the first quarter, {rss1} at the end; mbufs in use idle {idle}, "
        f"peak sampled {peak}, back to {idle} {back:.1f} s after the traffic stopped")
    s = v.stats()
    t = s["total"]
    drops = {k: n for k, n in t.items() if k.startswith("drop_") and n}
    log(f"    junk: {j['sent']} frames sent ({len(j['classes'])} classes); vipd counters: rx {t['rx_packets']} "
        f"forwarded {t['forwarded']} nat_replies {t['nat_replies']} flows_created {t['flows_created']}; drops {drops}")
    check_drops(s, allow=JUNK_DROPS | FAULT_DROPS)
    junk_dropped = sum(n for k, n in drops.items() if k in JUNK_DROPS)
    check(junk_dropped >= j["sent"] // 2, f"only {junk_dropped} junk drops counted for {j['sent']} junk frames")


def scenario_soak():
    """Soak: mixed traffic, junk, real servers failing and API changes for VIPD_SOAK_SECONDS
    (60): no failed request to a healthy server, flat memory, no mbuf leak."""
    seconds = int(os.environ.get("VIPD_SOAK_SECONDS", "60"))
    check(30 <= seconds <= 3600, f"VIPD_SOAK_SECONDS {seconds} out of 30..3600")
    run_soak(seconds)


SCENARIOS = {"soak": scenario_soak}
