"""What the soak and fault scenarios read from a running vipd: its RSS, one metric from
/metrics, the mbuf pool's use, health states; and the wait for the pool to be back at its
idle value (the mbuf leak check)."""

import time

from vipdbed import check


def rss_kib(v):
    """vipd's resident memory (the Popen child is `ip netns exec`, which execs vipd)."""
    with open(f"/proc/{v.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def metric(v, name, labels=None):
    """The value of `name` (with exactly `labels`, a '{k="v",...}' string, when given)."""
    for line in v.api("/metrics").splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == name or (labels is None and key.startswith(name + "{")) or key == f"{name}{labels}":
            return float(value)
    raise AssertionError(f"/metrics has no {name}{labels or ''}")


def mbufs_in_use(v):
    return int(metric(v, "vipd_mempool_mbufs_in_use"))


def idle_mbufs(v, samples=4):
    """The pool's in-use count at rest: the same value `samples` times in a row, 0.6 s apart
    (the gauge is republished every 0.5 s)."""
    seen = []
    deadline = time.time() + 20
    while time.time() < deadline:
        seen.append(mbufs_in_use(v))
        if len(seen) >= samples and len(set(seen[-samples:])) == 1:
            return seen[-1]
        time.sleep(0.6)
    raise AssertionError(f"mbufs in use never settled: {seen}")


def wait_mbufs_back(v, idle, seconds=20):
    """Seconds until the pool's in-use count is back at `idle` or below (no mbuf leaked; a
    PMD may hold a few less than when idle was sampled), or fail."""
    t0 = time.time()
    seen = []
    while time.time() - t0 < seconds:
        n = mbufs_in_use(v)
        seen.append(n)
        if n <= idle:
            return time.time() - t0
        time.sleep(0.5)
    raise AssertionError(f"mbufs in use not back at the idle {idle} after {seconds} s: {seen[-8:]} (leak?)")


def health_states(v, hosts):
    """{(service, real_server): state} for every real server whose address is in `hosts`."""
    out = {}
    for h in v.api("/api/v1/health")["real_servers"]:
        host = h["real_server"].rsplit(":", 1)[0].strip("[]")
        if host in hosts:
            out[(h["service"], h["real_server"])] = h["health"]["state"]
    return out


def wait_health(v, hosts, state, seconds):
    """Seconds until every health entry of `hosts` is `state`, or fail."""
    t0 = time.time()
    states = {}
    while time.time() - t0 < seconds:
        states = health_states(v, hosts)
        if states and all(s == state for s in states.values()):
            return time.time() - t0
        time.sleep(0.05)
    check(False, f"{hosts} not all {state} after {seconds} s: {states}")
