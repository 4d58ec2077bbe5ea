"""The box's own faults end to end (scenario `local_faults` of scripts/e2e; issue 20 item 1).
One vipd whose health checks leave through its kernel interface, three real servers, a paced
load of short connections through the VIP during each phase:

- descriptors exhausted: vipd's soft RLIMIT_NOFILE lowered with prlimit to a few above what it
  holds, then 300 connections held to its API (api.header_timeout = 60 keeps the accepted
  ones): accept(2) and the checks' socket(2) fail with EMFILE. A connection opened before
  watches vipd's own series meanwhile: the `descriptors` local fault counted, no real server
  down, no transition; afterwards no connection of the load failed, the fault was logged when
  it appeared and when it cleared, vipd_api_accept_errors_total moved;
- the kernel interface set down: the checks' connect(2) finds no route (`no_route`), the same;
- a mass down the kernel does not report: every check of the service dropped at the real
  servers (nft), so all three time out within one interval: the guard
  (health.max_down_percent = 50) applies one verdict and holds two (vipd_health_held_*,
  `vipctl health` over the local socket says so); the holds end by themselves when the checks
  pass again; held again, `vipctl health --release` applies them.
"""

import json
import os
import select
import subprocess
import threading
import time

from vipdbed import (
    API_PORT, LIB, PREFIX, TARGET_DIR, VIP4, Vipd, check, isolated_lb_kernel, load, log, netns,
)

VIPCTL = os.environ.get("VIPCTL_BIN", os.path.join(TARGET_DIR, "debug", "vipctl"))
CLIENT = os.path.join(LIB, "api_client.py")
RS4 = ["10.77.0.21", "10.77.0.22", "10.77.0.23"]
SERVICE = f"{VIP4}:80/tcp"
RATE = 40


def parse_metrics(text):
    """{'name{labels}': value} of a /metrics text."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def metrics(v):
    return parse_metrics(v.api("/metrics"))


def up_real_servers(m):
    return {k: val for k, val in m.items() if k.startswith("vipd_real_server_up{") and f'service="{SERVICE}"' in k}


class Observer:
    """A kept-alive API connection opened before the fault: it reads vipd's series while no
    new connection can be accepted."""

    def __init__(self):
        self.p = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-lb", "python3", CLIENT, "observe", str(API_PORT)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        check(self.p.stdout.readline().strip() == "ready", "observer did not connect")

    def get(self, path):
        self.p.stdin.write(path + "\n")
        self.p.stdin.flush()
        ready, _, _ = select.select([self.p.stdout], [], [], 15)
        check(ready, f"observer: no answer to {path} in 15 s")
        answer = json.loads(self.p.stdout.readline())
        check(answer["status"] == 200, f"observer: GET {path}: {answer}")
        return answer["body"]

    def metrics(self):
        return parse_metrics(self.get("/metrics"))

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=10)


class Background:
    """The paced load in a thread."""

    def __init__(self, seconds):
        self.result = {}
        self.thread = threading.Thread(target=lambda: self.result.update(
            load(url=f"http://{VIP4}/", connections=RATE * seconds, parallel=16, rate=RATE, timeout=2)))
        self.thread.start()

    def join(self):
        self.thread.join(timeout=180)
        check(not self.thread.is_alive(), "the load client did not finish")
        return self.result


def wait_for(what, probe, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


def failing_locally(m, reason):
    return m.get(f'vipd_health_failing_locally{{reason="{reason}"}}', 0)


def log_lines(v, needle):
    with open(v.log_path) as f:
        return [ln for ln in f if needle in ln]


def nofile(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no descriptor limit in /proc/PID/limits")


def descriptors_exhausted(v):
    base = metrics(v)
    obs = Observer()
    pid = v.pid
    soft, hard = nofile(pid)
    held = len(os.listdir(f"/proc/{pid}/fd"))
    bg = Background(14)
    time.sleep(1.5)
    holder = None
    try:
        subprocess.run(["prlimit", "--pid", str(pid), f"--nofile={held + 12}:{hard}"], check=True)
        holder = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-lb", "python3", CLIENT, "hold", str(API_PORT), "300"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        check(holder.stdout.readline().startswith("held 300"), "the holder did not connect")
        t0 = time.time()
        m = wait_for("the descriptors fault counted",
                     lambda: (lambda m: m if m.get('vipd_health_local_faults_total{reason="descriptors"}', 0) > 0 else None)(obs.metrics()))
        seen_after = time.time() - t0
        time.sleep(3)  # six check intervals with the fault
        m = obs.metrics()
        check(m['vipd_health_local_faults_total{reason="descriptors"}'] > 0, "no descriptors fault")
        ups = up_real_servers(m)
        check(len(ups) == 3 and all(x == 1 for x in ups.values()), f"a real server went down: {ups}")
        check(m["vipd_health_transitions_total"] == base["vipd_health_transitions_total"], "a health transition happened")
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        during = {k: m[k] for k in ('vipd_health_local_faults_total{reason="descriptors"}',
                                    'vipd_health_failing_locally{reason="descriptors"}',
                                    'vipd_api_accept_errors_total{listener="tcp"}')}
    finally:
        if holder:
            holder.stdin.close()
            holder.wait(timeout=20)
        subprocess.run(["prlimit", "--pid", str(pid), f"--nofile={soft}:{hard}"], check=False)
    # The held connections are closed; the checks run again and the fault clears.
    wait_for("the descriptors fault cleared", lambda: failing_locally(metrics(v), "descriptors") == 0)
    obs.close()
    r = bg.join()
    check(r["failed"] == 0 and r["ok"] == RATE * 14, f"connections failed during the fault: {r['failed']} {r['errors']}")
    after = metrics(v)
    check(after["vipd_health_transitions_total"] == base["vipd_health_transitions_total"], "a health transition happened")
    appeared = log_lines(v, "health checks fail on the box itself (descriptors")
    cleared = log_lines(v, "the box's descriptors fault cleared")
    check(appeared and len(appeared) == len(cleared), f"logged {len(appeared)} appearance(s), {len(cleared)} clearing(s)")
    accept_logged = log_lines(v, "api: cannot accept connections on")
    log(f"    descriptors exhausted (soft limit {held + 12}, {fds} open, 300 connections held): the fault counted "
        f"{seen_after:.1f} s later; during it {during}; 3/3 real servers up, 0 transitions; {r['ok']}/{r['ok'] + r['failed']} "
        f"connections through the VIP ok; logged {len(appeared)}x appeared + {len(cleared)}x cleared, accept failures logged "
        f"{len(accept_logged)}x")


def interface_down(v):
    base = metrics(v)
    bg = Background(10)
    time.sleep(1.5)
    k0 = f"{PREFIX}-k0"
    netns(f"{PREFIX}-lb", "ip", "link", "set", k0, "down")
    try:
        t0 = time.time()
        wait_for("the no_route fault", lambda: failing_locally(metrics(v), "no_route") > 0)
        seen_after = time.time() - t0
        time.sleep(2.5)
        m = metrics(v)
        ups = up_real_servers(m)
        check(len(ups) == 3 and all(x == 1 for x in ups.values()), f"a real server went down: {ups}")
        check(m["vipd_health_transitions_total"] == base["vipd_health_transitions_total"], "a health transition happened")
        h = v.api("/api/v1/health")
        outcomes = {r["real_server"]: r["health"]["local_fault"] for r in h["real_servers"]}
        check(all(o and o.startswith("no_route:") for o in outcomes.values()), f"local faults: {outcomes}")
    finally:
        netns(f"{PREFIX}-lb", "ip", "link", "set", k0, "up")
    wait_for("the no_route fault cleared", lambda: failing_locally(metrics(v), "no_route") == 0)
    r = bg.join()
    check(r["failed"] == 0, f"connections failed with the kernel interface down: {r['failed']} {r['errors']}")
    after = metrics(v)
    check(after["vipd_health_transitions_total"] == base["vipd_health_transitions_total"], "a health transition happened")
    counted = after['vipd_health_local_faults_total{reason="no_route"}']
    log(f"    kernel interface down 2.5+ s: no_route counted {seen_after:.1f} s later "
        f"({counted:.0f} checks in all); 3/3 up, 0 transitions; "
        f"{r['ok']}/{r['ok'] + r['failed']} connections ok; {outcomes[RS4[0] + ':8080']}")


def drop_checks(on):
    """Drop the checks (from the kernel interface's address) at every real server."""
    for i in (1, 2, 3):
        ns = f"{PREFIX}-rs{i}"
        if on:
            netns(ns, "nft", "add", "table", "inet", f"{PREFIX}_guard")
            netns(ns, "nft", "add", "chain", "inet", f"{PREFIX}_guard", "in",
                  "{ type filter hook input priority 0; policy accept; }")
            netns(ns, "nft", "add", "rule", "inet", f"{PREFIX}_guard", "in", "ip", "saddr", "10.77.0.10",
                  "tcp", "dport", "8080", "drop")
        else:
            netns(ns, "nft", "delete", "table", "inet", f"{PREFIX}_guard", check=False)


def states(v):
    return {r["real_server"]: ("held" if r["health"]["held"] else r["health"]["state"])
            for r in v.api("/api/v1/health")["real_servers"]}


def held_gauge(v):
    return metrics(v).get(f'vipd_health_held_real_servers{{service="{SERVICE}"}}', 0)


def vipctl(sock, *args):
    r = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-lb", VIPCTL, "--socket", sock, *args],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"vipctl --socket {' '.join(args)}: rc {r.returncode} {r.stderr}")
    return r.stdout


def mass_down(v, sock):
    base = metrics(v)
    bg = Background(8)
    time.sleep(1.5)
    try:
        drop_checks(True)
        t0 = time.time()
        wait_for("two verdicts held", lambda: held_gauge(v) == 2)
        held_after = time.time() - t0
        time.sleep(1.5)  # three more intervals: nothing else moves
        st = states(v)
        check(sorted(st.values()) == ["down", "held", "held"], f"states with every check dropped: {st}")
        table = vipctl(sock, "health")
        check(table.startswith("Held: 2 down verdict(s)") and table.count(" held ") == 2, f"vipctl health:\n{table}")
        m = metrics(v)
        check(m[f'vipd_health_held_total{{service="{SERVICE}"}}'] == base.get(f'vipd_health_held_total{{service="{SERVICE}"}}', 0) + 2,
              "vipd_health_held_total did not count two")
        r = bg.join()
        # The one applied verdict drops the next packet of its connections (dead_flows =
        # "drop"): at most what was in flight then fails; the held two carry on.
        check(r["failed"] <= 5, f"{r['failed']} connections failed while two of three were held")
        drop_checks(False)
        wait_for("the holds ending by recovery", lambda: held_gauge(v) == 0 and set(states(v).values()) == {"up"})
        ended = log_lines(v, "ends: its checks pass again")
        check(len(ended) == 2, f"{len(ended)} hold(s) logged as ended")
        # Held again, then released by the operator over the local socket.
        drop_checks(True)
        wait_for("two verdicts held again", lambda: held_gauge(v) == 2)
        out = vipctl(sock, "health", "--release", "-t", f"{VIP4}:80")
        check(out.startswith("vipd: 2 held down verdict(s) applied: "), f"release: {out!r}")
        wait_for("every real server down after the release", lambda: set(states(v).values()) == {"down"})
    finally:
        drop_checks(False)
    wait_for("every real server back", lambda: set(states(v).values()) == {"up"})
    held_logged = log_lines(v, "is held: more than health.max_down_percent")
    log(f"    every check dropped at the real servers: 1 down, 2 held {held_after:.1f} s later (held gauge 2, "
        f"VipdHealthVerdictsHeld's series), {r['ok']}/{r['ok'] + r['failed']} connections ok meanwhile; checks back: "
        f"both holds ended, all up; held again, `vipctl --socket health --release` applied them; {len(held_logged)} holds logged")


def scenario_local_faults():
    """The box's own faults (descriptors exhausted, kernel interface down) take no real server down; the guard holds a mass down."""
    hc = 'health_check = { type = "http", path = "/health", interval = 0.5, timeout = 0.4, rise = 1, fall = 2 }'
    services = [{"vip": VIP4, "proto": "tcp", "port": 80, "scheduler": "maglev", "keys": [hc],
                 "rs": [(ip, 8080, 1) for ip in RS4]}]
    sock_dir = f"/tmp/vipd-e2e-{PREFIX}-lfault"
    sock = f"{sock_dir}/api.sock"
    v = Vipd("lfault", services=services, kernel_interface=f"{PREFIX}-k0",
             api_keys=["header_timeout = 60", f'socket = "{sock}"'])
    try:
        with isolated_lb_kernel():
            v.start()
            wait_for("3 real servers up", lambda: set(states(v).values()) == {"up"})
            descriptors_exhausted(v)
            interface_down(v)
            mass_down(v, sock)
    except Exception:
        log(v.tail())
        raise
    finally:
        rc = v.stop()
        drop_checks(False)
        netns(f"{PREFIX}-lb", "ip", "link", "set", f"{PREFIX}-k0", "up", check=False)
        subprocess.run(["rm", "-rf", sock_dir], check=False)
    check(rc == 0, f"vipd exit code {rc}")


SCENARIOS = {"local_faults": scenario_local_faults}
