"""vipd's kernel exception path end to end (scripts/e2e exception): the LB namespace's kernel
talks through the DPDK port via the kernel interface vipd creates, while vipd keeps
balancing the VIP.

The LB namespace also holds the veth DPDK owns through net_af_packet; the kernel would take
frames for the port address from it as well (it does not care which interface a packet for a
local address comes in by), and answer or count them twice. A netdev ingress drop on that veth
keeps the kernel to what vipd hands it; af_packet still receives (it sees frames before the
ingress hook). A box whose NIC DPDK owns outright (vfio-pci) needs nothing of the kind.
"""

import json
import os
import signal
import threading
import time

from vipdbed import (
    CLIENTS4, LIB, PREFIX, VIP4, Vipd, bash, check, check_drops, load, log, netns,
)

KIF = f"{PREFIX}-k0"  # the kernel interface (15 characters at most)
LB_MAC = "02:77:00:00:00:0a"
ECHO_PORT = 2222
ROUTER_HTTP = ("192.168.77.1", 8099)  # off-link from the port: reached via its gateway
INGRESS_TABLE = f"{PREFIX}_exc"


class ExceptionVipd(Vipd):
    """vipd with `kernel_interface` on its port and HTTP health checks."""

    def __init__(self, name, **kw):
        self.ipv6 = "fd00:77::10/64"
        self.router_check = True
        self.checks = True
        super().__init__(name, services=[], **kw)

    def write_config(self, services):
        super().write_config([])
        with open(self.config) as f:
            text = f.read()
        text = text.replace('ipv6 = "fd00:77::10/64"', f'ipv6 = "{self.ipv6}"')
        text = text.replace('gateway6 = "fd00:77::1"\n', f'gateway6 = "fd00:77::1"\nkernel_interface = "{KIF}"\n', 1)
        text += f"""
[[services]]
vip = "{VIP4}"
proto = "tcp"
port = 80
scheduler = "rr"
"""
        if self.checks:
            text += 'health_check = { type = "http", path = "/", interval = 0.5, timeout = 0.4, rise = 1, fall = 2 }\n'
        for i in (1, 2, 3):
            text += f"""
[[services.real_servers]]
ip = "10.77.0.2{i}"
port = 8080
"""
        if self.router_check:
            # A check whose address is behind the port's gateway: it needs the host route vipd
            # puts on the kernel interface (the LB namespace has no other route there).
            text += f"""
[[services]]
vip = "{VIP4}"
proto = "tcp"
port = 8080
scheduler = "rr"

[[services.real_servers]]
ip = "10.77.0.21"
port = 8080
health_check = {{ type = "http", path = "/", interval = 0.5, timeout = 0.4, rise = 1, fall = 2, address = "{ROUTER_HTTP[0]}", port = {ROUTER_HTTP[1]} }}
"""
        with open(self.config, "w") as f:
            f.write(text)


def lb(*cmd, check_rc=True):
    return netns(f"{PREFIX}-lb", *cmd, check=check_rc)


def health(v):
    return {(h["service"], h["real_server"]): h["health"]["state"] for h in v.api("/api/v1/health")["real_servers"]}


def wait_health(v, key, state, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = health(v).get(key)
        if got == state:
            return time.time()
        time.sleep(0.1)
    raise AssertionError(f"{key} not {state} after {timeout} s: {health(v)}")


def check_interface():
    """The kernel interface carries the port's MAC, MTU and addresses, IPv6 without link-local."""
    link = json.loads(lb("ip", "-j", "-d", "link", "show", KIF))[0]
    check(link["address"] == LB_MAC and link["mtu"] == 1500, f"{KIF}: MAC {link['address']} MTU {link['mtu']}")
    check(link.get("linkinfo", {}).get("info_kind") == "tun", f"{KIF} is not a tap: {link.get('linkinfo')}")
    addrs = json.loads(lb("ip", "-j", "addr", "show", KIF))[0]["addr_info"]
    have = sorted(f"{a['local']}/{a['prefixlen']}" for a in addrs)
    check(have == ["10.77.0.10/24", "fd00:77::10/64"], f"{KIF} addresses {have} (no link-local expected)")
    check(all(a.get("nodad", False) for a in addrs if a["family"] == "inet6"), f"IPv6 address without nodad: {addrs}")
    route = lb("ip", "route", "show", "proto", "252")
    check(f"{ROUTER_HTTP[0]} via 10.77.0.1 dev {KIF}" in route, f"no host route for the off-link check: {route!r}")
    log(f"    {KIF}: MAC {LB_MAC}, MTU 1500, {' '.join(have)} (no link-local); host route {route.strip()}")


def scenario_exception():
    """Kernel exception path: the box pings, curls and health-checks through the port, ssh-like TCP reaches it, NAT keeps working."""
    # Keep the LB namespace's kernel off the DPDK-owned veth (see the module docstring).
    lb("nft", "add", "table", "netdev", INGRESS_TABLE)
    lb("nft", "add", "chain", "netdev", INGRESS_TABLE, "ingress",
       f'{{ type filter hook ingress device "{PREFIX}-lb0" priority 0; policy drop; }}')
    bash(f"vipd_spawn {PREFIX} routerhttp {PREFIX}-router $VIPD_PYTHON -u {LIB}/rs_server.py --name router --bind {ROUTER_HTTP[0]} --port {ROUTER_HTTP[1]}")
    bash(f"vipd_spawn {PREFIX} echo {PREFIX}-lb $VIPD_PYTHON -u {LIB}/tcp_echo.py serve {ECHO_PORT}")
    v = ExceptionVipd("exc")
    stopped_rs3 = False
    try:
        v.start()
        check_interface()
        svc80, svc8080 = f"tcp/{VIP4}/80", f"tcp/{VIP4}/8080"
        for i in (1, 2, 3):
            wait_health(v, (svc80, f"10.77.0.2{i}:8080"), "up")
        wait_health(v, (svc8080, "10.77.0.21:8080"), "up")
        log("    health checks through the kernel interface: 3 real servers and the off-link check up")

        out = lb("ping", "-c", "3", "-i", "0.2", "-W", "2", "10.77.0.21")
        check(" 0% packet loss" in out and "DUP" not in out, f"ping from the box: {out!r}")
        out6 = lb("ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", "fd00:77::21")
        check(" 0% packet loss" in out6 and "DUP" not in out6, f"ping -6 from the box: {out6!r}")
        c4 = lb("curl", "-s", "-m", "5", "http://10.77.0.21:8080/")
        c6 = lb("curl", "-s", "-m", "5", "http://[fd00:77::22]:8080/")
        check("client=10.77.0.10:" in c4 and "client=fd00:77::10:" in c6, f"curl from the box: {c4!r} {c6!r}")
        log(f"    from the box: ping and ping -6 answered (no duplicates), curl v4 {c4.split()[0]}, v6 {c6.split()[0]}")

        # Bulk both ways through the exception path, with NAT load on the VIP at the same time.
        nat = {}
        loader = threading.Thread(target=lambda: nat.update(load(url=f"http://{VIP4}/", connections=300, parallel=16, sources=CLIENTS4)))
        loader.start()
        n = lb("sh", "-c", "curl -s -m 30 http://10.77.0.22:8080/bytes/5000000 | wc -c").strip()
        lb("sh", "-c", f"head -c 2000000 /dev/urandom > /tmp/vipd-e2e-{PREFIX}-exc-up")
        want = lb("sha256sum", f"/tmp/vipd-e2e-{PREFIX}-exc-up").split()[0]
        up = lb("curl", "-s", "-m", "30", "-H", "Expect:", "--data-binary", f"@/tmp/vipd-e2e-{PREFIX}-exc-up", "http://[fd00:77::23]:8080/upload")
        lb("rm", "-f", f"/tmp/vipd-e2e-{PREFIX}-exc-up")
        loader.join(120)
        check(n == "5000000", f"5 MB download through the exception path: {n} bytes")
        check(f"received=2000000 sha256={want}" in up, f"2 MB upload from the box over IPv6: {up!r}")
        check(nat.get("ok") == 300, f"NAT during the exception traffic: {nat.get('ok')} of 300 ok, errors {nat.get('errors')}")
        log(f"    5 MB download (v4) and 2 MB upload (v6, sha256 checked) from the box; 300 NAT connections meanwhile ok, {nat['servers']}")

        for addr in ("10.77.0.10", "fd00:77::10"):
            e = netns(f"{PREFIX}-router", os.environ.get("VIPD_PYTHON", "python3"), os.path.join(LIB, "tcp_echo.py"), "send", addr, str(ECHO_PORT), "200000")
            check("echoed=200000 sha256_match=True" in e, f"TCP echo router -> {addr}: {e!r}")
        log("    ssh-like TCP from the router to the port address (v4 and v6): 200 kB echoed intact")

        # A stopped real server goes down, and comes back.
        key3 = (svc80, "10.77.0.23:8080")
        t0 = time.time()
        bash(f"vipd_rs_stop {PREFIX} 3")
        stopped_rs3 = True
        t_down = wait_health(v, key3, "down")
        t1 = time.time()
        bash(f"vipd_rs_start {PREFIX} 3 8080 5353")
        stopped_rs3 = False
        t_up = wait_health(v, key3, "up")
        log(f"    rs3 stopped: down after {t_down - t0:.1f} s (fall 2 x 0.5 s); restarted: up after {t_up - t1:.1f} s")

        # SIGHUP: the port's IPv6 address moves (the kernel interface follows), the off-link
        # check goes (its host route with it); then back.
        v.ipv6, v.router_check = "fd00:77::11/64", False
        v.write_config([])
        v.send_signal(signal.SIGHUP)
        deadline = time.time() + 5
        while time.time() < deadline and "fd00:77::11/64" not in lb("ip", "-6", "addr", "show", KIF):
            time.sleep(0.1)
        a6 = lb("ip", "-6", "addr", "show", KIF)
        check("fd00:77::11/64" in a6 and "fd00:77::10/64" not in a6, f"after SIGHUP: {a6!r}")
        check(ROUTER_HTTP[0] not in lb("ip", "route", "show", "proto", "252"), "host route of the removed check left behind")
        c6 = lb("curl", "-s", "-m", "5", "http://[fd00:77::21]:8080/")
        check("client=fd00:77::11:" in c6, f"curl from the new IPv6 address: {c6!r}")
        v.ipv6, v.router_check = "fd00:77::10/64", True
        v.write_config([])
        v.send_signal(signal.SIGHUP)
        deadline = time.time() + 5
        while time.time() < deadline and ROUTER_HTTP[0] not in lb("ip", "route", "show", "proto", "252"):
            time.sleep(0.1)
        check_interface()
        log("    SIGHUP: IPv6 address moved to fd00:77::11 and back, host route removed and restored")

        s = v.stats()
        k = s["kernel"][0]
        t = s["total"]
        # At least the 5 MB download came in to the kernel, the 2 MB upload went out of it.
        check(k["to_kernel_bytes"] > 5_000_000 and k["from_kernel_bytes"] > 2_000_000, f"exception counters: {k}")
        # The workers' frames, plus the neighbour answers the control thread passes on.
        check(t["to_kernel"] <= k["to_kernel_packets"] <= t["to_kernel"] + t["to_control"] and t["drop_kernel_ring_full"] == 0,
              f"worker counters: to_kernel {t['to_kernel']} to_control {t['to_control']} ring full {t['drop_kernel_ring_full']}, exception path {k['to_kernel_packets']}")
        drops = {n: c for n, c in k.items() if n.startswith("drop_") and c}
        check(not drops, f"exception path drops: {drops}")
        metrics = v.api("/metrics")
        check(f'vipd_kernel_to_kernel_packets_total{{interface="{KIF}",port="lan"}}' in metrics, "no exception-path metrics")
        check_drops(s)
        log(f"    counters: to kernel {k['to_kernel_packets']} frames / {k['to_kernel_bytes']} B, from kernel {k['from_kernel_packets']} / {k['from_kernel_bytes']} B, no drops")
    except Exception:
        log(v.tail())
        raise
    finally:
        rc = v.stop(signal.SIGTERM)
        if stopped_rs3:
            bash(f"vipd_rs_start {PREFIX} 3 8080 5353", check=False)
        bash(f"vipd_kill {PREFIX} echo; vipd_kill {PREFIX} routerhttp", check=False)
        lb("nft", "delete", "table", "netdev", INGRESS_TABLE, check_rc=False)
    check(rc == 0, f"vipd exit code {rc}")
    gone = lb("ip", "link", "show", KIF, check_rc=False)
    check(gone == "", f"{KIF} left behind after vipd stopped: {gone!r}")
    log(f"    vipd stopped: {KIF} removed")
