"""End to end in the namespace bed (scripts/lib/netns.sh): short HTTP connections per second
with wrk (`Connection: close`) against nginx real servers, through vipd NAT (net_af_packet and
net_af_xdp on the LB's veth), through nftables DNAT in the same LB namespace, and direct to a
real server (the ceiling: the same client, router and servers without a load balancer).
Also the latency of an echo answered by vipd's worker at a low rate, with the default idle
back-off (50 us sleep when a poll finds nothing) and with busy polling, next to the kernel's
echo from a real server over the same path.

Everything runs on this machine, in namespaces made here, and is removed afterwards."""

import os
import re
import subprocess
import sys
import time

from common import ROOT, TARGET, log, median_spread

sys.path.insert(0, os.path.join(ROOT, "scripts", "lib"))
os.environ.setdefault("VIPD_BED_PREFIX", "vbench")
from vipdbed import PREFIX, VIP4, Vipd, bash, netns  # noqa: E402

RS = ["10.77.0.21", "10.77.0.22", "10.77.0.23"]
SERVICES = [{"vip": VIP4, "proto": "tcp", "port": 80, "scheduler": "maglev", "rs": [(ip, 8080, 1) for ip in RS]}]
NGINX_CONF = """worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_timeout 0;
  client_body_temp_path {dir};
  proxy_temp_path {dir};
  fastcgi_temp_path {dir};
  uwsgi_temp_path {dir};
  scgi_temp_path {dir};
  server {{ listen 8080 reuseport; location / {{ return 200 "ok\\n"; }} }}
}}
"""
WRK_SECONDS = 8


class VipdOn(Vipd):
    """vipd in the bed on a given PMD (af_packet or af_xdp), release build, default back-off."""

    def __init__(self, name, pmd, idle_sleep_us=50):
        super().__init__(name, services=SERVICES, binary=os.path.join(TARGET, "release", "vipd"),
                         idle_sleep_us=idle_sleep_us)
        if pmd == "af_xdp":
            with open(self.config) as f:
                text = f.read()
            text = text.replace(f'device = "net_af_packet0,iface={PREFIX}-lb0"',
                                f'device = "net_af_xdp0,iface={PREFIX}-lb0,start_queue=0,queue_count=1"')
            with open(self.config, "w") as f:
                f.write(text)


def nginx_up():
    for i, ip in enumerate(RS, 1):
        d = f"/tmp/vipd-bench-nginx-{PREFIX}-{i}"
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/nginx.conf", "w") as f:
            f.write(NGINX_CONF.format(dir=d))
        bash(f"vipd_spawn {PREFIX} nginx{i} {PREFIX}-rs{i} nginx -c {d}/nginx.conf")
    deadline = time.time() + 10
    for ip in RS:
        while subprocess.run(["ip", "netns", "exec", f"{PREFIX}-router", "curl", "-s", "-m", "1", f"http://{ip}:8080/"],
                             capture_output=True).returncode != 0:
            if time.time() > deadline:
                raise RuntimeError(f"nginx on {ip} does not answer")
            time.sleep(0.2)


def wrk(url):
    out = netns(f"{PREFIX}-client", "wrk", "-t1", "-c32", f"-d{WRK_SECONDS}s", "-H", "Connection: close", url,
                timeout=WRK_SECONDS + 30)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    return float(m.group(1)) if m else 0.0, (errs.group(0) if errs else "")


def measure(res, key, url):
    rate, err = wrk(url)
    res[key].append(rate)
    if err:
        res["errors"].append(f"{key}: wrk: {err}")


def nft_up():
    """nftables DNAT in the LB namespace, as a user would set it: the LB veth gets vipd's
    address, the kernel forwards, numgen spreads new connections over the real servers."""
    lb = f"{PREFIX}-lb"
    netns(lb, "ip", "link", "set", f"{PREFIX}-lb0", "arp", "on")
    netns(lb, "ip", "addr", "add", "10.77.0.10/24", "dev", f"{PREFIX}-lb0")
    netns(lb, "ip", "route", "replace", "default", "via", "10.77.0.1")
    netns(lb, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    rules = f"""table ip vipdbench {{
  chain pre {{ type nat hook prerouting priority dstnat; policy accept;
    ip daddr {VIP4} tcp dport 80 dnat to numgen random mod 3 map {{ 0 : {RS[0]}, 1 : {RS[1]}, 2 : {RS[2]} }} : 8080
  }}
  chain post {{ type nat hook postrouting priority srcnat; policy accept; }}
}}
"""
    subprocess.run(["ip", "netns", "exec", lb, "nft", "-f", "-"], input=rules, text=True, check=True)
    # The VIP must be answered for: the router routes it via 10.77.0.10, so no ARP for the VIP.


def nft_down():
    lb = f"{PREFIX}-lb"
    netns(lb, "nft", "delete", "table", "ip", "vipdbench", check=False)
    netns(lb, "ip", "addr", "flush", "dev", f"{PREFIX}-lb0", check=False)
    netns(lb, "ip", "link", "set", f"{PREFIX}-lb0", "arp", "off", check=False)
    netns(lb, "ip", "neigh", "flush", "all", check=False)
    netns("{0}-router".format(PREFIX), "ip", "neigh", "flush", "all", check=False)
    netns(lb, "sysctl", "-qw", "net.ipv4.ip_forward=0", check=False)


def ping(target, count=200):
    out = netns(f"{PREFIX}-client", "ping", "-q", "-c", str(count), "-i", "0.01", "-W", "1", target, timeout=60,
                check=False)
    m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", out)
    loss = re.search(r"([\d.]+)% packet loss", out)
    return {"min_ms": float(m.group(1)), "avg_ms": float(m.group(2)), "max_ms": float(m.group(3)),
            "loss_pct": float(loss.group(1)) if loss else None} if m else {"error": out[-200:]}


def run(rounds, rundir):
    res = {"direct": [], "nftables": [], "vipd_af_packet": [], "vipd_af_xdp": [], "errors": [], "latency": {}}
    bash(f"vipd_testbed_down {PREFIX} >/dev/null 2>&1 || true; vipd_testbed_up {PREFIX} 3 nat")
    try:
        netns(f"{PREFIX}-client", "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1")
        nginx_up()
        for r in range(rounds):
            # Direct: the real server answers through the router, no load balancer.
            for i in (1, 2, 3):
                bash(f"vipd_rs_gateway {PREFIX} {i} router")
            measure(res, "direct", f"http://{RS[0]}:8080/")
            for i in (1, 2, 3):
                bash(f"vipd_rs_gateway {PREFIX} {i} lb")
            nft_up()
            try:
                measure(res, "nftables", f"http://{VIP4}/")
            finally:
                nft_down()
            for pmd in ("af_packet", "af_xdp"):
                v = VipdOn(f"bench-{pmd}", pmd)
                try:
                    v.start()
                    measure(res, f"vipd_{pmd}", f"http://{VIP4}/")
                except RuntimeError as e:
                    res["errors"].append(f"vipd {pmd}: {str(e)[:300]}")
                finally:
                    v.stop()
            log(f"  e2e round {r + 1}: direct {res['direct'][-1]:.0f}, nftables {res['nftables'][-1]:.0f}, "
                f"vipd af_packet {res['vipd_af_packet'][-1] if res['vipd_af_packet'] else 0:.0f}, "
                f"af_xdp {res['vipd_af_xdp'][-1] if res['vipd_af_xdp'] else 0:.0f} conn/s")
        # Latency at a low rate (100 echoes/s): vipd answers echo requests to the VIP itself.
        bash(f"vipd_rs_gateway {PREFIX} 1 router")
        res["latency"]["kernel_rs"] = ping(RS[0])
        bash(f"vipd_rs_gateway {PREFIX} 1 lb")
        for name, sleep in (("vipd_idle_50us", 50), ("vipd_busy_poll", 0)):
            v = VipdOn(f"bench-lat{sleep}", "af_packet", idle_sleep_us=sleep)
            try:
                v.start()
                res["latency"][name] = ping(VIP4)
            finally:
                v.stop()
    finally:
        bash(f"vipd_testbed_down {PREFIX}", check=False)
    return res


def table(res):
    rows = ["| path | conn/s | ratio to direct (ceiling) | ratio to nftables DNAT | goal |", "|---|---|---|---|---|"]
    d = median_spread(res["direct"]) if res["direct"] else None
    n = median_spread(res["nftables"]) if res["nftables"] else None
    for key, label, goal in (("direct", "direct to one nginx (no LB)", ""), ("nftables", "nftables DNAT (numgen)", ""),
                             ("vipd_af_packet", "vipd NAT, net_af_packet", ">= nftables"),
                             ("vipd_af_xdp", "vipd NAT, net_af_xdp", ">= nftables")):
        xs = res.get(key) or []
        if not xs:
            rows.append(f"| {label} | not measured | | | {goal} |")
            continue
        m = median_spread(xs)
        rd = m["median"] / d["median"] if d else 0
        rn = m["median"] / n["median"] if n else 0
        rows.append(f"| {label} | {m['median']:.0f} ({m['min']:.0f}-{m['max']:.0f}) | {rd:.2f} | {rn:.2f} | {goal} |")
    lat = res.get("latency", {})
    if lat:
        rows += ["", "| echo at 100/s | min ms | avg ms | max ms |", "|---|---|---|---|"]
        for key, label in (("kernel_rs", "kernel (a real server), the ceiling"), ("vipd_idle_50us", "vipd, idle back-off 50 us (default)"),
                           ("vipd_busy_poll", "vipd, busy polling")):
            x = lat.get(key, {})
            if "avg_ms" in x:
                rows.append(f"| {label} | {x['min_ms']:.3f} | {x['avg_ms']:.3f} | {x['max_ms']:.3f} |")
    for e in res.get("errors", []):
        rows.append(f"\n{e}")
    return "\n".join(rows)
