"""Schedulers and persistence end to end (scenarios `wlc` and `persistence` of scripts/e2e).

wlc: three real servers of unequal response time (GET /slow waits 800, 200 and 100 ms, from
rs_server.py's --delay-file) and weights 1:1:2, 24 clients in parallel issuing short
connections. vipd's per-real-server active connections are sampled through the API while the
load runs. Under wrr (the control) the slow server piles up connections; under wlc the mean
active connections follow the weights, within a stated tolerance.

persistence: a service set up with vipctl the ipvsadm way (`-A -s wlc -p 60`, then `-a`), two
workers on two queue pairs (a client's connections arrive on both cores): 100 connections
from one client land on one real server, ten clients are spread over several and each keeps
its own; `-L -n` and `--persistent-conn` print what ipvsadm prints; the mapping survives a
reload of the saved configuration; a drained real server lets its clients go; `-M
255.255.255.0` groups the ten clients of 192.168.77.0/24 on one real server.
"""

import os
import re
import subprocess
import threading
import time

from vipdbed import API_PORT, CLIENTS4, PREFIX, TARGET_DIR, VIP4, Vipd, check, load, log, netns

STATE = os.path.join(os.environ.get("VIPD_TESTBED_STATE", "/tmp/vipd-testbed"), PREFIX)
VIPCTL = os.environ.get("VIPCTL_BIN", os.path.join(TARGET_DIR, "debug", "vipctl"))
RS = {"rs1": "10.77.0.21", "rs2": "10.77.0.22", "rs3": "10.77.0.23"}
# Response times (ms) and weights of the wlc scenario.
DELAYS = {"rs1": 800, "rs2": 200, "rs3": 100}
WEIGHTS = {"rs1": 1, "rs2": 1, "rs3": 2}
# Largest distance, in points of share, between a real server's mean active connections and
# its weight share under wlc.
WLC_TOLERANCE = 0.08


def set_delays(delays):
    for name, ms in delays.items():
        path = os.path.join(STATE, f"{name}.delay")
        if ms is None:
            if os.path.exists(path):
                os.remove(path)
        else:
            with open(path, "w") as f:
                f.write(f"{ms}\n")


def active_by_rs(v):
    svc = next(s for s in v.api("/api/v1/services")["services"] if s["port"] == 80)
    by_ip = {r["ip"]: r["active_conns"] for r in svc["real_servers"]}
    return {name: by_ip.get(ip, 0) for name, ip in RS.items()}


def measure(v, connections, parallel):
    """Run the load; sample active connections every 0.2 s after a 2 s ramp. Returns the load
    result and the mean active connections per real server."""
    result = {}

    def run():
        result.update(load(url=f"http://{VIP4}/slow", connections=connections, parallel=parallel,
                           sources=CLIENTS4, timeout=10))

    t = threading.Thread(target=run)
    t.start()
    time.sleep(2)
    samples = []
    while t.is_alive():
        samples.append(active_by_rs(v))
        time.sleep(0.2)
    t.join()
    # The tail, when the last connections drain, is not steady state.
    samples = samples[: max(1, len(samples) * 4 // 5)]
    mean = {n: sum(s[n] for s in samples) / len(samples) for n in RS}
    return result, mean, len(samples)


def shares(mean):
    total = sum(mean.values()) or 1
    return {n: mean[n] / total for n in mean}


def worst_gap(mean):
    wsum = sum(WEIGHTS.values())
    sh = shares(mean)
    return max(abs(sh[n] - WEIGHTS[n] / wsum) for n in RS)


def fmt(mean):
    sh = shares(mean)
    return ", ".join(f"{n} {mean[n]:.1f} ({sh[n]:.0%}, weight {WEIGHTS[n] / sum(WEIGHTS.values()):.0%})" for n in RS)


def scenario_wlc():
    """wlc: mean active connections follow the weights though the real servers' response times differ (wrr as the control)."""
    services = [{"vip": VIP4, "proto": "tcp", "port": 80, "scheduler": "wrr",
                 "rs": [(ip, 8080, WEIGHTS[n]) for n, ip in RS.items()]}]
    set_delays(DELAYS)
    v = Vipd("wlc", services=services)
    try:
        v.start()
        r, wrr_mean, n = measure(v, connections=300, parallel=24)
        check(r["ok"] == r["requested"], f"wrr load: ok {r['ok']} of {r['requested']}, errors {r['errors']}")
        log(f"    wrr (control), {n} samples: mean active {fmt(wrr_mean)}")
        v.write_config([{**services[0], "scheduler": "wlc"}])
        answer = v.api("/api/v1/reload", method="POST")
        check(answer.get("ok") is True, f"reload to wlc refused: {answer}")
        time.sleep(4)  # the wrr connections' TIME_WAIT entries (3 s) leave the counts
        r, wlc_mean, n = measure(v, connections=1400, parallel=24)
        check(r["ok"] == r["requested"], f"wlc load: ok {r['ok']} of {r['requested']}, errors {r['errors']}")
        gap, control = worst_gap(wlc_mean), worst_gap(wrr_mean)
        log(f"    wlc, {n} samples: mean active {fmt(wlc_mean)}; worst gap {gap:.1%} (tolerance {WLC_TOLERANCE:.0%}), wrr's {control:.1%}")
        log(f"    new connections under wlc: {r['servers']}, {r['conn_per_s']:.0f} conn/s")
        check(control > 2 * WLC_TOLERANCE, f"the control proves nothing: wrr's active connections already follow the weights ({fmt(wrr_mean)})")
        check(gap <= WLC_TOLERANCE, f"wlc: mean active connections off their weight share by {gap:.1%}: {fmt(wlc_mean)}")
        # Fewer new connections to the slow one: wlc balanced by load, not by count.
        check(r["servers"].get("rs1", 0) < r["servers"].get("rs2", 0) < r["servers"].get("rs3", 0),
              f"wlc new connections do not favour the fast servers: {r['servers']}")
    except Exception:
        log(v.tail())
        raise
    finally:
        set_delays({n: None for n in RS})
        rc = v.stop()
    check(rc == 0, f"vipd exit code {rc}")


def ctl(*args):
    env = {**os.environ, "VIPCTL_API": f"127.0.0.1:{API_PORT}"}
    env.pop("VIPCTL_TOKEN_FILE", None)
    r = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-lb", VIPCTL, *args],
                       capture_output=True, text=True, timeout=60, env=env)
    check(r.returncode == 0 and r.stderr == "", f"vipctl {' '.join(args)}: rc {r.returncode}, {r.stderr!r}")
    return r.stdout


def one_client(ip, connections, parallel=4):
    r = load(url=f"http://{VIP4}/", connections=connections, parallel=parallel, sources=ip)
    check(r["ok"] == connections, f"{ip}: ok {r['ok']} of {connections}, errors {r['errors']}")
    check(r["client_ip_mismatch"] == 0, f"{ip}: client address not preserved")
    return r["servers"]


def sticky(clients, connections):
    """Each client's real server (all its connections on one)."""
    got = {}
    for ip in clients:
        servers = one_client(ip, connections)
        check(len(servers) == 1, f"{ip}: {connections} connections spread over {servers}")
        got[ip] = next(iter(servers))
    return got


def scenario_persistence():
    """Persistence (-p, -M) set with vipctl over two workers: one client one real server, ten clients several, kept through a reload, let go by a drain."""
    extra = "192.168.77.11"
    clients = CLIENTS4.split(",") + [extra]
    dev = f"{PREFIX}-c0"
    netns(f"{PREFIX}-client", "ip", "addr", "add", f"{extra}/24", "dev", dev)
    v = Vipd("persist", workers=2, qpairs=2, services=[])
    try:
        v.start()
        ctl("-A", "-t", f"{VIP4}:80", "-s", "wlc", "-p", "60")
        for ip in RS.values():
            ctl("-a", "-t", f"{VIP4}:80", "-r", f"{ip}:8080", "-m")
        lines = ctl("-L", "-n").splitlines()
        check(f"TCP  {VIP4}:80 wlc persistent 60" in lines, f"-L -n: {lines}")
        log(f"    -L -n: {lines[3]!r}")

        servers = one_client(clients[0], 100, parallel=8)
        check(len(servers) == 1, f"100 connections of one client spread over {servers}")
        log(f"    one client, 100 connections: {servers}")
        before = sticky(clients, 10)
        distinct = set(before.values())
        check(len(distinct) >= 2, f"ten clients all on one real server: {before}")
        log(f"    ten clients x 10 connections, each on one: {sorted(before.values())}")
        t = v.stats()["total"]
        check(t["steered"] > 0, "no connection arrived on the other worker: the test proved nothing about cores")
        check(t["persistence_hits"] >= 100 + 10 * 9, f"persistence hits {t['persistence_hits']}")
        log(f"    steered between workers: {t['steered']}, persistence hits {t['persistence_hits']}")

        lines = ctl("-L", "-n", "--persistent-conn").splitlines()
        check(lines[1].split() == ["Prot", "LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn"],
              f"--persistent-conn title: {lines[1]!r}")
        persist = sum(int(ln.split()[3]) for ln in lines if ln.startswith("  -> ") and ":8080" in ln)
        check(persist == 10, f"PersistConn column sums to {persist}, not 10 client entries: {lines}")
        for ln in lines:
            log(f"      | {ln}")
        entries = ctl("-L", "-c", "--persistent-conn", "--limit", "100").splitlines()
        for ln in entries[:5]:
            log(f"      | {ln}")
        rows = [ln for ln in entries[2:] if ln.strip()]
        check(len(rows) == 10 and all(" NONE " in r and ":0 " in r for r in rows), f"-L -c --persistent-conn: {entries}")
        log(f"    --persistent-conn: PersistConn {persist}; entries e.g. {rows[0]!r}")

        # A reload of the saved configuration (what -p set through the API is in it).
        saved = ctl("-S")
        check("persistence_timeout = 60" in saved, f"-S lacks the persistence: {saved}")
        with open(v.config, "w") as f:
            f.write(saved)
        gen = v.api("/api/v1/status")["generation"]
        out = ctl("reload")
        check("reloaded" in out and v.api("/api/v1/status")["generation"] > gen, f"reload: {out!r}")
        after = sticky(clients, 5)
        check(after == before, f"persistence lost in the reload: {before} -> {after}")
        log("    reload of the saved configuration: every client kept its real server")

        # Drain the first client's real server: its clients go elsewhere and stay there.
        rs = before[clients[0]]
        ctl("drain", "-t", f"{VIP4}:80", "-r", f"{RS[rs]}:8080")
        moved = one_client(clients[0], 20)
        check(len(moved) == 1 and rs not in moved, f"after draining {rs}: {moved}")
        check(v.stats()["total"]["persistence_moved"] >= 1, "no persistence entry moved")
        log(f"    drain {rs}: its client moved to {next(iter(moved))} and stays")
        ctl("-e", "-t", f"{VIP4}:80", "-r", f"{RS[rs]}:8080", "-w", "1")

        # One entry per /24: the ten clients of 192.168.77.0/24 share a real server.
        ctl("-E", "-t", f"{VIP4}:80", "-M", "255.255.255.0")
        lines = ctl("-L", "-n").splitlines()
        check(f"TCP  {VIP4}:80 wlc persistent 60 mask 255.255.255.0" in lines, f"-L -n: {lines}")
        grouped = sticky(clients, 3)
        check(len(set(grouped.values())) == 1, f"-M 255.255.255.0: clients of one /24 on {grouped}")
        log(f"    -M 255.255.255.0: all ten clients on {next(iter(grouped.values()))}")
        # Thresholds only after: a real server over its upper threshold (active + inactive
        # connections, TIME_WAIT included, as IPVS counts) lets its persistence entries go,
        # which the check above would take for a split group.
        ctl("-e", "-t", f"{VIP4}:80", "-r", f"{RS['rs2']}:8080", "-x", "100", "-y", "50")
        for ln in ctl("-L", "-n", "--thresholds").splitlines():
            log(f"      | {ln}")
        s = v.stats()
        drops = {k: n for k, n in s["total"].items() if k.startswith("drop_") and n and k not in (
            "drop_not_local", "drop_not_our_mac", "drop_arp_ignored", "drop_local_unhandled",
            "drop_unsupported_ethertype", "drop_nd_ignored", "drop_link_multicast")}
        check(not drops, f"unexplained drops: {drops}")
    except Exception:
        log(v.tail())
        raise
    finally:
        rc = v.stop()
        netns(f"{PREFIX}-client", "ip", "addr", "del", f"{extra}/24", "dev", dev, check=False)
    check(rc == 0, f"vipd exit code {rc}")


SCENARIOS = {"wlc": scenario_wlc, "persistence": scenario_persistence}
