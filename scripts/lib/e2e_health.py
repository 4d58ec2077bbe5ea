"""Health checks end to end (scripts/e2e health): a paced load of short HTTP connections across
three real servers while one of them fails in turn in three ways: its HTTP process killed
(checks see `connection refused`), its link down (`timeout`), its health URL answering 503.
Each time: after `fall` checks no new connection goes to it, failures happen only inside the
detection window, and after `rise` good checks it takes traffic again. Checks run from the LB
namespace's kernel through vipd's kernel interface (the exception path)."""

import os
import threading
import time

from vipdbed import (
    CLIENTS4, PREFIX, VIP4, Vipd, bash, check, isolated_lb_kernel, load, log, netns,
)

INTERVAL, TIMEOUT, RISE, FALL = 0.5, 0.4, 2, 2
# Detection takes at most FALL checks, the last one possibly a full timeout, plus the polling
# of this test and the time the first check waits (up to one interval).
DETECT_BOUND = FALL * INTERVAL + TIMEOUT + INTERVAL + 0.5
RATE, SECONDS = 100, 12
STATE = os.path.join(os.environ.get("VIPD_TESTBED_STATE", "/tmp/vipd-testbed"), PREFIX)


def health_of(v, rs):
    for h in v.api("/api/v1/health")["real_servers"]:
        if h["service"] == f"tcp/{VIP4}/80" and h["real_server"] == f"{rs}:8080":
            return h["health"]
    raise AssertionError(f"{rs} has no health entry")


def wait_state(v, rs, state, since, bound):
    """Seconds from `since` until `rs` is in `state` (polled every 50 ms), failing past `bound`."""
    deadline = since + bound + 5
    while time.time() < deadline:
        h = health_of(v, rs)
        if h["state"] == state:
            took = time.time() - since
            check(took <= bound, f"{rs} {state} after {took:.2f} s, more than {bound:.2f} s")
            return took, h
        time.sleep(0.05)
    raise AssertionError(f"{rs} not {state} {bound + 5:.0f} s after the change: {health_of(v, rs)}")


class PacedLoad:
    """The load client in the background: RATE connections per second for SECONDS."""

    def __init__(self):
        self.result = {}
        self.t0 = time.time()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self):
        self.result.update(load(url=f"http://{VIP4}/", connections=RATE * SECONDS, parallel=32,
                                sources=CLIENTS4, rate=RATE, timeout=2))

    def join(self):
        self.thread.join(timeout=SECONDS + 60)
        check(not self.thread.is_alive(), "the load client did not finish")
        return self.result


def per_second(r, name):
    lines = []
    for b in r["timeline"]:
        s = b["servers"]
        lines.append(f"{b['second']:>2}s {s.get('rs1', 0):>3} {s.get('rs2', 0):>3} {s.get('rs3', 0):>3} {b['failed']:>3}")
    log(f"      per second (rs1 rs2 rs3 failed), {name}:")
    for i in range(0, len(lines), 4):
        log("      " + " | ".join(lines[i:i + 4]))


def phase(v, rs, name, fail, heal, want_reason):
    """One failure of `rs` during a paced load; returns what was measured."""
    idx = rs[-1]
    target = f"10.77.0.2{idx}"
    L = PacedLoad()
    time.sleep(3)
    t_fail = time.time()
    fail()
    # Detection counts from when the failure is complete (stopping a server takes a moment);
    # the window for failed connections opens when it began.
    t_failed = time.time()
    down_after, h = wait_state(v, target, "down", t_failed, DETECT_BOUND)
    check(want_reason in h["last_transition_reason"], f"{name}: reason {h['last_transition_reason']!r}, expected {want_reason!r}")
    time.sleep(3)
    t_heal = time.time()
    heal()
    up_after, _ = wait_state(v, target, "up", t_heal, RISE * INTERVAL + INTERVAL + 1.0)
    r = L.join()
    t0 = r["started_at"]  # the timeline's clock (the namespaces share the host's clock)
    f0, d0, h0 = t_fail - t0, t_failed - t0 + down_after, t_heal - t0 + up_after
    per_second(r, name)
    # Failures only inside the detection window (connections that started between the failure
    # and the verdict, plus a second of clock slack between the load client and this test).
    late = [b for b in r["timeline"] if b["failed"] and not (int(f0) <= b["second"] <= d0 + 1)]
    check(not late, f"{name}: failures outside the detection window [{f0:.1f}, {d0:.1f}] s: {late}")
    # After the verdict, no new connection goes to it until it is back.
    to_down = [b for b in r["timeline"] if d0 + 1 <= b["second"] <= t_heal - t0 - 1 and b["servers"].get(rs)]
    check(not to_down, f"{name}: {rs} got connections while down: {to_down}")
    back = sum(b["servers"].get(rs, 0) for b in r["timeline"] if b["second"] >= h0 + 1)
    check(back > 0, f"{name}: {rs} got no connection after coming back up ({h0:.1f} s)")
    total = r["ok"] + r["failed"]
    check(total == RATE * SECONDS, f"{name}: {total} of {RATE * SECONDS} connections ran")
    began = t_failed - t_fail + down_after
    log(f"    {name}: {rs} down {began:.2f} s after the failure began ({down_after:.2f} s after it was complete; {h['last_transition_reason']}), "
        f"up {up_after:.2f} s after the repair; {r['ok']}/{total} ok, {r['failed']} failed {r['errors'] or ''}, all inside "
        f"[{f0:.1f} s, {d0:.1f} s]; {back} connections to {rs} after it came back")
    return {"down_s": began, "up_s": up_after, "failed": r["failed"], "ok": r["ok"]}


def scenario_health():
    """Health checks: a real server killed, unplugged and answering 503 under a paced load."""
    check_keys = (f'health_check = {{ type = "http", path = "/health", interval = {INTERVAL}, '
                  f'timeout = {TIMEOUT}, rise = {RISE}, fall = {FALL} }}')
    services = [{"vip": VIP4, "proto": "tcp", "port": 80, "scheduler": "maglev", "keys": [check_keys],
                 "rs": [("10.77.0.21", 8080, 1), ("10.77.0.22", 8080, 1), ("10.77.0.23", 8080, 1)]}]
    v = Vipd("health", services=services, kernel_interface=f"{PREFIX}-k0")
    health_file = os.path.join(STATE, "rs3.health")
    try:
        with isolated_lb_kernel():
            v.start()
            for i in (1, 2, 3):
                wait_state(v, f"10.77.0.2{i}", "up", time.time(), 5)
            results = {}
            results["kill"] = phase(
                v, "rs2", "HTTP process killed",
                lambda: bash(f"vipd_rs_stop {PREFIX} 2"),
                lambda: bash(f"vipd_rs_start {PREFIX} 2 8080 5353"),
                "connection refused")
            results["link"] = phase(
                v, "rs1", "link down",
                lambda: netns(f"{PREFIX}-router", "ip", "link", "set", f"{PREFIX}-brs1", "down"),
                lambda: netns(f"{PREFIX}-router", "ip", "link", "set", f"{PREFIX}-brs1", "up"),
                "timeout")
            results["503"] = phase(
                v, "rs3", "health URL answers 503",
                lambda: open(health_file, "w").write("503\n"),
                lambda: os.unlink(health_file),
                "HTTP 503, expected 200")
            # rs3 still serves / while its health URL says 503: the only failures possible are
            # connections in flight at the verdict, whose next packet dead_flows = "drop" drops.
            check(results["503"]["failed"] <= 5, f"503 phase: {results['503']['failed']} failures")
            t = v.stats()
            metrics = v.api("/metrics")
            transitions = int(float(next(ln.split()[-1] for ln in metrics.splitlines() if ln.startswith("vipd_health_transitions_total"))))
            check(transitions == 6, f"6 transitions expected (3 down, 3 up), vipd counted {transitions}")
            log(f"    transitions counted: {transitions}; drops {({k: n for k, n in t['total'].items() if k.startswith('drop_') and n})}")
            logged = [ln for ln in v.tail(400).splitlines() if "real server down" in ln or "real server up" in ln]
            check(len(logged) == 6, f"each transition logged once: {logged}")
    except Exception:
        log(v.tail())
        raise
    finally:
        rc = v.stop()
        if os.path.exists(health_file):
            os.unlink(health_file)
        netns(f"{PREFIX}-router", "ip", "link", "set", f"{PREFIX}-brs1", "up", check=False)
        bash(f"vipd_rs_start {PREFIX} 2 8080 5353", check=False)
    check(rc == 0, f"vipd exit code {rc}")


SCENARIOS = {"health": scenario_health}
