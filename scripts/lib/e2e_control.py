"""End-to-end scenarios of the control plane: live weight changes and drain during long
downloads, reload honesty (what SIGHUP applies, what it refuses). Registered by scripts/e2e."""

import hashlib
import json
import os
import signal
import subprocess
import time

from downloads import paced
from vipdbed import (
    API_PORT, CLIENTS4, CLIENTS6, PREFIX, VIP4, VIP6, Vipd, check, check_spread, load, log, netns,
)

PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-\n"


def pattern_sha256(n):
    """sha256 of rs_server.py's /bytes/N body (its repeating pattern)."""
    reps = n // len(PATTERN) + 1
    return hashlib.sha256((PATTERN * reps)[:n]).hexdigest()


def api(method, path, body=None, token=None):
    """(status, parsed JSON body) of one API request made from the LB namespace."""
    cmd = ["curl", "-s", "-m", "40", "-o", "-", "-w", "\n%{http_code}", "-X", method]
    if method not in ("GET", "HEAD"):
        cmd += ["-H", "Content-Type: application/json"]
    if body is not None:
        cmd += ["--data-binary", json.dumps(body)]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    out = netns(f"{PREFIX}-lb", *cmd, f"http://127.0.0.1:{API_PORT}{path}")
    text, _, code = out.rpartition("\n")
    try:
        parsed = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        parsed = text
    return int(code), parsed


class Downloads:
    """Slow bulk downloads through the VIP, each its own curl in the client namespace, paced
    by the real server (rs_server.py's `?rate=`) as well as by curl: curl's --limit-rate
    lets bursts through, and a download meant to last seconds can end before the fault or
    the trace it is there for."""

    def __init__(self, n, size, rate, tag, port=80, v6=False):
        self.size = size
        self.dir = f"/tmp/vipd-e2e-{PREFIX}-{tag}"
        os.makedirs(self.dir, exist_ok=True)
        sources = (CLIENTS6 if v6 else CLIENTS4).split(",")
        vip = f"[{VIP6}]" if v6 else VIP4
        self.procs = []
        for i in range(n):
            out, hdr = f"{self.dir}/{i}.body", f"{self.dir}/{i}.head"
            self.procs.append((i, out, hdr, subprocess.Popen(
                ["ip", "netns", "exec", f"{PREFIX}-client", "curl", "-s", "-m", "90",
                 "--interface", sources[i % len(sources)], "--limit-rate", rate,
                 "-D", hdr, "-o", out, paced(f"http://{vip}:{port}/bytes/{size}", rate)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))

    def running(self):
        return sum(1 for *_, p in self.procs if p.poll() is None)

    def finish(self):
        """{"ok": n, "bad": [...], "servers": {name: n}} once every download ended."""
        want = pattern_sha256(self.size)
        ok, bad, servers = 0, [], {}
        for i, out, hdr, p in self.procs:
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            server = "?"
            try:
                with open(hdr) as f:
                    for line in f:
                        if line.lower().startswith("x-server:"):
                            server = line.split(":", 1)[1].strip()
                with open(out, "rb") as f:
                    got = hashlib.sha256(f.read()).hexdigest()
            except OSError as e:
                bad.append(f"#{i}: {e}")
                continue
            servers[server] = servers.get(server, 0) + 1
            if p.returncode == 0 and got == want:
                ok += 1
            else:
                bad.append(f"#{i} from {server}: curl exit {p.returncode}, sha256 {'ok' if got == want else 'wrong'}")
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)
        return {"ok": ok, "bad": bad, "servers": servers}


def scenario_live_weights():
    """Weights changed and a real server drained through the API during long downloads."""
    services = [{"vip": VIP4, "proto": "tcp", "port": 80, "scheduler": "maglev",
                 "rs": [("10.77.0.21", 8080, 1), ("10.77.0.22", 8080, 1), ("10.77.0.23", 8080, 1)]}]
    v = Vipd("weights", services=services)
    # Keep the client's receive buffer small, so a rate-limited curl really holds its TCP
    # connection open for the whole download (with autotuning the real server would push all of
    # it into the client's socket buffer within the first second).
    rmem = netns(f"{PREFIX}-client", "sysctl", "-n", "net.ipv4.tcp_rmem").split()
    netns(f"{PREFIX}-client", "sysctl", "-qw", "net.ipv4.tcp_rmem=4096 65536 131072")
    try:
        v.start()
        gen0 = v.api("/api/v1/status")["generation"]
        d = Downloads(24, 3_000_000, "800k", "weights")
        time.sleep(1.0)
        check(d.running() == 24, f"downloads ended early ({24 - d.running()} of 24)")
        svc = f"/api/v1/services/tcp/{VIP4}/80"
        code, body = api("PATCH", f"{svc}/real_servers/10.77.0.21/8080", {"weight": 3})
        check(code == 200, f"weight change: {code} {body}")
        code, body = api("POST", f"{svc}/real_servers/10.77.0.23/8080/drain")
        check(code == 200, f"drain: {code} {body}")
        gen1 = body["generation"]
        check(gen1 == gen0 + 2, f"two changes, two snapshots: {gen0} -> {gen1}")
        listed = api("GET", svc)[1]
        rs3 = next(r for r in listed["real_servers"] if r["ip"] == "10.77.0.23")
        check(rs3["weight"] == 0, f"rs3 not drained: {rs3}")
        draining = rs3["active_conns"]
        r = load(url=f"http://{VIP4}/", connections=1000, parallel=16)
        check(r["ok"] == 1000, f"new connections during the change: {r['ok']}/1000 {r['errors']}")
        spread = check_spread(r["servers"], {"rs1": 3, "rs2": 1, "rs3": 0}, r["ok"], 0.05)
        check(d.running() > 0, "the downloads ended before the changes: the test proved nothing")
        res = d.finish()
        check(not res["bad"] and res["ok"] == 24, f"downloads broken by the change: {res}")
        check(res["servers"].get("rs3", 0) > 0, f"no download was on the drained server: {res['servers']}")
        log(f"    24 downloads of 3 MB at 800 kB/s: {res['ok']}/24 byte for byte (sha256) across a weight change and a drain; per server {res['servers']}")
        log(f"    rs3 drained with {draining} established download(s) still running on it")
        log(f"    1000 new connections after the change (maglev, ±5 points): {spread}")
        v.stats()
    except Exception:
        log(v.tail())
        raise
    finally:
        rc = v.stop()
        netns(f"{PREFIX}-client", "sysctl", "-qw", f"net.ipv4.tcp_rmem={' '.join(rmem)}", check=False)
    check(rc == 0, f"vipd exit code {rc}")


def scenario_reload_honesty():
    """SIGHUP applies the timeouts and refuses restart-only keys, naming each."""
    services = [{"vip": VIP4, "proto": "tcp", "port": 80,
                 "rs": [("10.77.0.21", 8080, 1), ("10.77.0.22", 8080, 1)]}]
    v = Vipd("reload", services=services, timeouts={"tcp_time_wait": 3})
    try:
        v.start()
        gen = v.api("/api/v1/status")["generation"]
        # Timeouts apply on reload: connections in TIME_WAIT now live 40 s, not 3 s.
        v.timeouts = {"tcp_time_wait": 40}
        v.write_config(services)
        v.send_signal(signal.SIGHUP)
        deadline = time.time() + 5
        while time.time() < deadline and v.api("/api/v1/status")["generation"] == gen:
            time.sleep(0.2)
        gen2 = v.api("/api/v1/status")["generation"]
        check(gen2 > gen, "SIGHUP with new timeouts published nothing")
        r = load(url=f"http://{VIP4}/", connections=20, parallel=4)
        check(r["ok"] == 20, f"load after reload: {r}")
        time.sleep(0.5)
        conns = v.api("/api/v1/connections?limit=50")["connections"]
        waits = [c["expires_s"] for c in conns if c["state"] == "time_wait"]
        check(waits and min(waits) > 30, f"TIME_WAIT entries do not carry the reloaded 40 s timeout: {waits[:5]}")
        log(f"    SIGHUP: tcp_time_wait 3 -> 40 s applied (generation {gen} -> {gen2}; {len(waits)} entries expire in {min(waits):.0f}-{max(waits):.0f} s)")
        # Restart-only keys: refused as a whole, each named; nothing changes.
        v.idle_sleep_us = 20
        v.write_config([{**services[0], "rs": [("10.77.0.21", 8080, 5), ("10.77.0.22", 8080, 1)]}])
        with open(v.config) as f:
            text = f.read().replace("rx_descriptors = 512", "rx_descriptors = 256")
        with open(v.config, "w") as f:
            f.write(text)
        code, body = api("POST", "/api/v1/reload")
        msg = (body or {}).get("error", {}).get("message", "")
        check(code == 422 and "dataplane.idle_sleep_us (200 -> 20)" in msg and "dataplane.rx_descriptors (512 -> 256)" in msg,
              f"restart-only keys not refused by name: {code} {body}")
        w = next(r for r in api("GET", f"/api/v1/services/tcp/{VIP4}/80")[1]["real_servers"] if r["ip"] == "10.77.0.21")
        check(w["weight"] == 1, f"a refused reload changed a weight: {w}")
        check(v.api("/api/v1/status")["generation"] == gen2, "a refused reload published a snapshot")
        log(f"    refused: {msg[msg.index('change(s)') - 2:][:150]}")
    except Exception:
        log(v.tail())
        raise
    finally:
        rc = v.stop()
    check(rc == 0, f"vipd exit code {rc}")


SCENARIOS = {
    "live_weights": scenario_live_weights,
    "reload_honesty": scenario_reload_honesty,
}
