"""Shared pieces of vipd's demo and end-to-end tests: the namespace test bed (netns.sh),
a vipd process in the LB namespace with its configuration, the load client, checks."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIB = os.path.join(ROOT, "scripts", "lib")
# Cargo's output directory: CARGO_TARGET_DIR when set (relative to the workspace), else target/.
TARGET_DIR = os.path.join(ROOT, os.environ.get("CARGO_TARGET_DIR", "target"))
VIPD = os.environ.get("VIPD_BIN", os.path.join(TARGET_DIR, "debug", "vipd"))
PREFIX = os.environ.get("VIPD_BED_PREFIX", "ve2e")
VIP4 = "10.77.100.1"
VIP6 = "fd00:77:100::1"
API_PORT = 19280
CLIENTS4 = ",".join(f"192.168.77.{i}" for i in range(2, 11))
CLIENTS6 = ",".join(f"fd77::{i:x}" for i in range(2, 11))

# Drops that are traffic not meant for vipd on a shared segment (broadcasts, other hosts'
# unicast flooded by the bridge, IPv6 multicast, other hosts' neighbour discovery): counted, explained, harmless.
EXPLAINED_DROPS = {
    "drop_not_local",
    "drop_not_our_mac",
    "drop_arp_ignored",
    "drop_local_unhandled",
    "drop_unsupported_ethertype",
    "drop_nd_ignored",
    "drop_link_multicast",  # MLD reports and other multicast IP on the segment
}


def log(msg):
    print(msg, flush=True)


def bash(script, check=True, capture=False, timeout=120):
    """Run bash with the test bed library sourced."""
    full = f"set -euo pipefail; source {LIB}/netns.sh; {script}"
    r = subprocess.run(["bash", "-c", full], capture_output=capture, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"bash failed ({r.returncode}): {script}\n{r.stderr if capture else ''}")
    return r.stdout if capture else r.returncode


def netns(ns, *cmd, timeout=120, check=True):
    r = subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{ns}: {' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[:500]}")
    return r.stdout


# Every Vipd's directory (configuration, log, token): removed by remove_temp_dirs() at the end of
# a run that passed; a failed run keeps them for inspection.
TEMP_DIRS = []


def remove_temp_dirs():
    while TEMP_DIRS:
        shutil.rmtree(TEMP_DIRS.pop(), ignore_errors=True)


class Vipd:
    """One vipd process in the LB namespace (or, with `ns` and `api_port`, in another box's)."""

    def __init__(self, name, workers=1, qpairs=1, services=None, timeouts=None, binary=None, idle_sleep_us=200, token=None,
                 hugepages=False, kernel_interface=None, api_keys=(), cacert=None, extra="", ns=None,
                 api_port=API_PORT, device=None, port_keys=""):
        self.name = name
        # The port's device string (default: net_af_packet on the LB's veth), and further
        # TOML of the port after its own keys (a [ports.bond] table, say).
        self.device = device
        self.port_keys = port_keys
        self.ns = ns or f"{PREFIX}-lb"
        self.api_port = api_port
        # The port's kernel interface (exception path): health checks need it in this bed, the
        # LB namespace has no other way to the real servers. See isolate_lb_kernel().
        self.kernel_interface = kernel_interface
        # Hugepages make vipd a primary that dpdk-dumpcap can join (memory grows on demand);
        # without, it runs alone on 256 MiB of ordinary memory.
        self.hugepages = hugepages
        self.binary = binary or VIPD
        self.idle_sleep_us = idle_sleep_us
        self.dir = tempfile.mkdtemp(prefix=f"vipd-e2e-{name}-")
        TEMP_DIRS.append(self.dir)
        self.config = os.path.join(self.dir, "vipd.toml")
        self.log_path = os.path.join(self.dir, "vipd.log")
        self.workers = workers
        self.qpairs = qpairs
        self.services = services
        self.timeouts = timeouts or {}
        self.proc = None
        # With a token, the API requires `Authorization: Bearer <token>` (api.token_file).
        self.token = token
        self.token_file = os.path.join(self.dir, "token")
        # Further [api] keys as TOML lines (read_token_file, socket, tls_*, timeouts), further
        # sections as TOML text; with TLS, `cacert` is the CA api() trusts.
        self.api_keys = list(api_keys)
        self.extra = extra
        self.cacert = cacert
        if token:
            # vipd refuses a token file its group or others may read.
            with open(os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                f.write(token + "\n")
        self.write_config(services)

    def write_config(self, services):
        cores = "[1]" if self.workers == 1 else "[0, 1]"
        dev = self.device or (f"net_af_packet0,iface={PREFIX}-lb0" + (f",qpairs={self.qpairs}" if self.qpairs > 1 else ""))
        t = {"tcp_syn": 10, "tcp_established": 60, "tcp_fin": 3, "tcp_time_wait": 3, "tcp_close": 3, "udp": 3}
        t.update(self.timeouts)
        text = f"""
[eal]
file_prefix = "{self.file_prefix}"
hugepages = {str(self.hugepages).lower()}
memory_mb = {0 if self.hugepages else 256}

[dataplane]
worker_cores = {cores}
control_core = 0
idle_sleep_us = {self.idle_sleep_us}
rx_descriptors = 512
tx_descriptors = 512

[flows]
capacity_per_worker = 65536

[flows.timeouts]
{chr(10).join(f"{k} = {v}" for k, v in t.items())}

[api]
listen = "127.0.0.1:{self.api_port}"
{f'token_file = "{self.token_file}"' if self.token else ""}
{chr(10).join(self.api_keys)}

[state]
file = "{self.dir}/state.json"

[[ports]]
name = "lan"
device = "{dev}"
ipv4 = "10.77.0.10/24"
gateway = "10.77.0.1"
ipv6 = "fd00:77::10/64"
gateway6 = "fd00:77::1"
{f'kernel_interface = "{self.kernel_interface}"' if self.kernel_interface else ""}
{self.port_keys}
"""
        for s in services:
            text += f"""
[[services]]
vip = "{s['vip']}"
proto = "{s['proto']}"
port = {s['port']}
scheduler = "{s.get('scheduler', 'maglev')}"
mode = "{s.get('mode', 'nat')}"
"""
            # Further service keys as TOML lines, e.g. 'health_check = { type = "http" }'.
            for line in s.get("keys", []):
                text += line + "\n"
            for ip, port, weight, *mode in s["rs"]:
                text += f"""
[[services.real_servers]]
ip = "{ip}"
port = {port}
weight = {weight}
"""
                if mode:
                    text += f'mode = "{mode[0]}"\n'
        text += self.extra
        with open(self.config, "w") as f:
            f.write(text)

    @property
    def url(self):
        """The API's base URL (https with a CA)."""
        return f"{'https' if self.cacert else 'http'}://127.0.0.1:{self.api_port}"

    @property
    def pid(self):
        """vipd's process id (`ip netns exec` execs it)."""
        return self.proc.pid

    @property
    def file_prefix(self):
        return f"vipd-{PREFIX}-{self.name}"

    def start(self):
        logf = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, self.binary, "--config", self.config],
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vipd exited {self.proc.returncode}:\n{self.tail()}")
            try:
                st = self.api("/api/v1/status")
                # null until the control loop has published its first view
                if st and st.get("neighbours") and all(n["mac"] for n in st["neighbours"]):
                    return st
            except (RuntimeError, json.JSONDecodeError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"vipd not ready (neighbours unresolved?) after 20 s:\n{self.tail()}")

    def api(self, path, method="GET"):
        auth = ["-H", f"Authorization: Bearer {self.token}"] if self.token else []
        # Every change carries the JSON type, with a body or without (docs/api.md).
        if method not in ("GET", "HEAD"):
            auth += ["-H", "Content-Type: application/json"]
        if self.cacert:
            auth += ["--cacert", self.cacert]
        out = netns(self.ns, "curl", "-s", "-m", "40", *auth, "-X", method, f"{self.url}{path}")
        return json.loads(out) if path.startswith("/api") else out

    def stats(self):
        return self.api("/api/v1/stats")

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9

    def tail(self, n=25):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def load(url=None, connections=1000, parallel=32, sources=CLIENTS4, udp=None, count=0, rate=None, timeout=5):
    args = ["python3", os.path.join(LIB, "load_client.py"), "--timeout", str(timeout), "--deadline", "120"]
    if rate:
        args += ["--rate", str(rate)]
    if udp:
        args += ["--udp", udp, "--count", str(count)]
    else:
        args += ["--url", url, "--connections", str(connections), "--parallel", str(parallel)]
    if sources:
        args += ["--source-addrs", sources]
    return json.loads(netns(f"{PREFIX}-client", *args, timeout=180))


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def check_drops(stats, allow=()):
    bad = {k: v for k, v in stats["total"].items() if k.startswith("drop_") and v and k not in EXPLAINED_DROPS and k not in allow}
    check(not bad, f"unexplained drops: {bad}")
    explained = {k: v for k, v in stats["total"].items() if k.startswith("drop_") and v}
    return explained


def check_spread(servers, weights, total, tolerance):
    wsum = sum(weights.values())
    report = []
    for name, w in weights.items():
        share = servers.get(name, 0) / total
        want = w / wsum
        report.append(f"{name}: {servers.get(name, 0)} ({share:.1%}, weight share {want:.1%})")
        check(abs(share - want) <= tolerance, f"spread outside ±{tolerance:.0%}: " + "; ".join(report))
    return "; ".join(report)




class isolated_lb_kernel:
    """Keep the LB namespace's kernel off the veth DPDK owns (a netdev ingress drop; af_packet
    still receives, it sees frames before the hook), so with a kernel interface the kernel
    gets only what vipd hands it. A box whose NIC DPDK owns outright needs nothing of the kind
    (docs/operations.md, exception path)."""

    def __init__(self, table=None):
        self.table = table or f"{PREFIX}_iso"

    def __enter__(self):
        ns = f"{PREFIX}-lb"
        netns(ns, "nft", "add", "table", "netdev", self.table)
        netns(ns, "nft", "add", "chain", "netdev", self.table, "ingress",
              f'{{ type filter hook ingress device "{PREFIX}-lb0" priority 0; policy drop; }}')
        return self

    def __exit__(self, *exc):
        netns(f"{PREFIX}-lb", "nft", "delete", "table", "netdev", self.table, check=False)
        return False
