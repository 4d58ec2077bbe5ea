"""End-to-end scenario for a VLAN's own kernel interface (issue 19, section 2), registered by
scripts/e2e.

vlan_kernel (with one worker, then two): the trunk of vlan_trunk (scripts/lib/e2e_vlan.py: the tc BPF switch, VLAN 200's
access segment with a real server in its own namespace), and VLAN 200 with
`kernel_interface` (a tap vipd creates in the LB namespace, carrying the VLAN's address
untagged; vipd removes the tag on the way in and adds it on the way out). The real server is
reachable only in VLAN 200: the LB namespace's kernel reaches it through that interface alone.
From the box's own stack: the kernel resolves the server by ARP and Neighbour Discovery (vipd
passes the tagged reply on, untagged), pings it over IPv4 and IPv6, downloads from it over TCP;
the server connects to the box's VLAN address (ssh-like TCP echo); the service's HTTP health
check of the server works (up, then down when the server stops), and clients still reach it
through the VIP. A SIGHUP moves the VLAN's IPv4 address: the kernel interface follows, and
back. The interface's counters count both ways, with no drops.

Everything the scenario creates is removed at its end, also on failure.
"""

import json
import os
import shutil
import signal
import tempfile
import time

from e2e_vlan import VS, segment, switch, teardown
from vipdbed import VIP4, LIB, PREFIX, Vipd, bash, check, check_drops, isolated_lb_kernel, log, netns

KIF = f"{PREFIX}-k200"  # VLAN 200's kernel interface (15 characters at most)
LB_MAC = "02:77:00:00:00:0a"
ECHO_PORT = 2223
SVC = f"tcp/{VIP4}/80"
RS = "10.77.200.21:8080"
VLAN_KEYS = f"""
[[ports.vlans]]
id = 100
ipv4 = "10.77.150.10/24"

[[ports.vlans]]
id = 200
ipv4 = "10.77.200.10/24"
ipv6 = "fd00:200::10/64"
kernel_interface = "{KIF}"
"""


def lb(*cmd, check_rc=True):
    return netns(f"{PREFIX}-lb", *cmd, check=check_rc)


def health(v):
    return {(h["service"], h["real_server"]): h["health"]["state"]
            for h in v.api("/api/v1/health")["real_servers"]}


def wait_health(v, state, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if health(v).get((SVC, RS)) == state:
            return
        time.sleep(0.1)
    raise AssertionError(f"{RS} not {state} after {timeout} s: {health(v)}")


def scenario_vlan_kernel():
    """A VLAN's own kernel interface: the box pings, downloads from and health-checks a real
    server only reachable in VLAN 200, which connects back to the box's VLAN address. With one
    worker, then two on two queue pairs (both hand frames to the exception path)."""
    for workers in (1, 2):
        one(workers)


def one(workers):
    log(f"    {workers} worker(s):")
    teardown()
    tmp = tempfile.mkdtemp(prefix=f"vipd-{PREFIX}-vlank-")
    v = Vipd(f"vlank{workers}", workers=workers, qpairs=workers, services=[{
        "vip": VIP4, "proto": "tcp", "port": 80, "scheduler": "rr",
        "keys": ['health_check = { type = "http", path = "/", interval = 0.5, timeout = 0.4, rise = 1, fall = 2 }'],
        "rs": [("10.77.200.21", 8080, 1)]}], extra=VLAN_KEYS)
    try:
        with isolated_lb_kernel(f"{PREFIX}_vlank"):
            segment(200, VS, "10.77.200.21", "default via 10.77.200.10")
            # The server speaks IPv6 in VLAN 200 too (segment() turns IPv6 off).
            bash(f"""
ip netns exec {VS} sysctl -qw net.ipv6.conf.{PREFIX}-e200.accept_dad=0 net.ipv6.conf.{PREFIX}-e200.disable_ipv6=0
ip -n {VS} addr add fd00:200::21/64 dev {PREFIX}-e200 nodad
""")
            switch(tmp, (200,))
            bash(f"vipd_spawn {PREFIX} vrs {VS} python3 -u {LIB}/rs_server.py --name vrs --port 8080"
                 f" --health-file /nonexistent --delay-file /nonexistent")
            bash(f"vipd_spawn {PREFIX} vkecho {PREFIX}-lb python3 -u {LIB}/tcp_echo.py serve {ECHO_PORT}")
            bash(f"for i in $(seq 1 100); do grep -q '^listening' $(_vipd_state {PREFIX})/vrs.log && exit 0;"
                 f" sleep 0.05; done; exit 1")
            v.start()
            run(v)
    except Exception:
        log(v.tail())
        raise
    finally:
        rc = v.stop()
        bash(f"vipd_kill {PREFIX} vkecho", check=False)
        teardown()
        shutil.rmtree(tmp, ignore_errors=True)
    check(rc == 0, f"vipd exit code {rc}")


def run(v):
    # The interface: the port's MAC, the VLAN's address (untagged, no link-local), no other.
    link = json.loads(lb("ip", "-j", "-d", "link", "show", KIF))[0]
    check(link["address"] == LB_MAC and link.get("linkinfo", {}).get("info_kind") == "tun",
          f"{KIF}: {link}")
    addrs = json.loads(lb("ip", "-j", "addr", "show", KIF))[0]["addr_info"]
    have = sorted(f"{a['local']}/{a['prefixlen']}" for a in addrs)
    check(have == ["10.77.200.10/24", "fd00:200::10/64"], f"{KIF} addresses {have} (no link-local expected)")
    route = lb("ip", "route", "get", "10.77.200.21")
    check(f"dev {KIF}" in route, f"the box's route to the real server: {route!r}")
    log(f"    {KIF}: MAC {LB_MAC}, {' '.join(have)}; route {route.splitlines()[0].strip()}")

    # The health check runs in the box's kernel: only VLAN 200's interface reaches the server.
    wait_health(v, "up")
    out = netns(f"{PREFIX}-client", "curl", "-s", "-m", "5", f"http://{VIP4}/")
    check(out.startswith("server=vrs"), f"client -> VIP -> VLAN 200 real server: {out!r}")

    out = lb("ping", "-c", "3", "-i", "0.2", "-W", "2", "10.77.200.21")
    check(" 0% packet loss" in out and "DUP" not in out, f"ping from the box in VLAN 200: {out!r}")
    out6 = lb("ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", "fd00:200::21")
    check(" 0% packet loss" in out6 and "DUP" not in out6, f"ping -6 from the box in VLAN 200: {out6!r}")
    neigh6 = lb("ip", "-6", "neigh", "show", "fd00:200::21", "dev", KIF)
    check("lladdr" in neigh6 and "FAILED" not in neigh6, f"the box's ND entry for the server: {neigh6!r}")
    c6 = lb("curl", "-s", "-m", "5", "http://[fd00:200::21]:8080/")
    check("client=fd00:200::10:" in c6, f"curl -6 from the box: {c6!r}")
    neigh = lb("ip", "neigh", "show", "10.77.200.21", "dev", KIF)
    check("lladdr" in neigh and "FAILED" not in neigh, f"the box's ARP entry for the server: {neigh!r}")
    peer = netns(VS, "ip", "neigh", "show", "10.77.200.10")
    check(LB_MAC in peer, f"the server's ARP entry for the box: {peer!r}")
    c = lb("curl", "-s", "-m", "5", "http://10.77.200.21:8080/")
    check("client=10.77.200.10:" in c, f"curl from the box: {c!r}")
    n = lb("sh", "-c", "curl -s -m 30 http://10.77.200.21:8080/bytes/2000000 | wc -c").strip()
    check(n == "2000000", f"2 MB download from the box through VLAN 200: {n} bytes")
    e = netns(VS, "python3", os.path.join(LIB, "tcp_echo.py"), "send", "10.77.200.10", str(ECHO_PORT), "200000")
    check("echoed=200000 sha256_match=True" in e, f"TCP echo server -> box's VLAN address: {e!r}")
    log(f"    from the box: ping and ping -6 answered, ARP both ways and ND ({neigh.split()[2]}), curl v4 and v6"
        f" {c.split()[0]}, 2 MB download; 200 kB TCP echo from the server to 10.77.200.10")

    # The check is real: the server stops, it goes down; back, up.
    bash(f"vipd_kill {PREFIX} vrs")
    wait_health(v, "down")
    bash(f"vipd_spawn {PREFIX} vrs {VS} python3 -u {LIB}/rs_server.py --name vrs --port 8080"
         f" --health-file /nonexistent --delay-file /nonexistent")
    wait_health(v, "up")
    log("    health check through the VLAN's kernel interface: up, down with the server stopped, up again")

    # SIGHUP: the VLAN's IPv4 address moves; its kernel interface follows, and back.
    for old, new in (("10.77.200.10", "10.77.200.11"), ("10.77.200.11", "10.77.200.10")):
        v.extra = v.extra.replace(f'ipv4 = "{old}/24"', f'ipv4 = "{new}/24"')
        v.write_config(v.services)
        v.send_signal(signal.SIGHUP)
        deadline = time.time() + 5
        while time.time() < deadline and f"{new}/24" not in lb("ip", "-4", "addr", "show", KIF):
            time.sleep(0.1)
        a4 = lb("ip", "-4", "addr", "show", KIF)
        check(f"{new}/24" in a4 and f"{old}/24" not in a4, f"after SIGHUP: {a4!r}")
        c = lb("curl", "-s", "-m", "5", "http://10.77.200.21:8080/")
        check(f"client={new}:" in c, f"curl from the VLAN's new address: {c!r}")
    log("    SIGHUP: the VLAN's address moved to 10.77.200.11 and back, the kernel interface with it")

    s = v.stats()
    k = [i for i in s["kernel"] if i["interface"] == KIF]
    check(len(k) == 1 and k[0]["vlan"] == 200, f"kernel counters: {s['kernel']}")
    k = k[0]
    check(k["to_kernel_bytes"] > 2_000_000 and k["from_kernel_bytes"] > 200_000, f"{KIF} counters: {k}")
    drops = {n: c for n, c in k.items() if n.startswith("drop_") and c}
    check(not drops, f"{KIF} drops: {drops}")
    check_drops(s)
    log(f"    {KIF}: {k['to_kernel_packets']} frames to the kernel, {k['from_kernel_packets']} from it, no drops")


SCENARIOS = {"vlan_kernel": scenario_vlan_kernel}
