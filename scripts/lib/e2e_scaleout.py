"""Scale-out end to end (registered by scripts/e2e as `scaleout`): vipd boxes behind a bird2
router with ECMP, each announcing the VIPs over BGP (with BFD) through its kernel interface;
clients behind the router download from DR and TUN real servers while boxes fail, join, are
drained and stop. scripts/lib/scaleout.sh builds the bed (prefix: the run's prefix + "so").

What it proves, with figures printed as it goes:
- every box builds the same consistent-hash tables (fingerprints compared through the API);
- for each failure kind (SIGKILL, SIGSTOP, link down, silent drop) every download completes
  byte for byte, and the time from the failure to the router's new route is measured;
- a box joining moves only the flows ECMP moves, and none breaks;
- drain (`vipctl drain --box`) and SIGTERM withdraw first: measured from the command to the
  router's route, downloads intact;
- a VIP whose real servers all fail their health checks is withdrawn by every box;
- the negative control: boxes whose real-server lists differ build different tables, and
  losing a box then breaks downloads (otherwise the test would prove nothing).
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import e2e_control
from vipdbed import LIB, PREFIX, VIPD, check, log, netns

SO = PREFIX[:6] + "so"
STATE = os.path.join(os.environ.get("VIPD_TESTBED_STATE", "/tmp/vipd-testbed"), SO)
VIPCTL = os.path.join(os.path.dirname(VIPD), "vipctl")
VIP_DR, VIP_TUN, PORT = "10.77.100.1", "10.77.100.2", 8080
VIPS = (VIP_DR, VIP_TUN)
RS = ["10.77.0.21", "10.77.0.22", "10.77.0.23"]
CLIENTS = [f"192.168.77.{i}" for i in range(2, 11)]
API_PORT = 19280
N_BED_BOXES = 4  # three run from the start, the fourth joins
# Each download is paced by its real server (rs_server.py ?rate=), so it lasts at least
# SIZE / PACE = 10 s however loaded the machine is: curl's --limit-rate lets bursts through,
# and under load a 2 MB download limited to 250k by curl ended within 2 s.
SIZE, PACE, DOWNLOADS = 2_000_000, 200_000, 24


def sbash(script, check_rc=True, capture=False, timeout=120):
    """bash with the scale-out library (and netns.sh) sourced."""
    full = f"set -euo pipefail; source {LIB}/scaleout.sh; {script}"
    r = subprocess.run(["bash", "-c", full], capture_output=capture, text=True, timeout=timeout)
    if check_rc and r.returncode != 0:
        raise RuntimeError(f"bash failed ({r.returncode}): {script}\n{r.stderr if capture else ''}")
    return r.stdout if capture else r.returncode


def box_addr(k):
    return f"10.77.0.{10 + k}"


class Box:
    """vipd in box K's namespace, with [bgp] driving the box's bird."""

    def __init__(self, k, real_servers=None):
        self.k = k
        self.ns = f"{SO}-box{k}"
        self.addr = box_addr(k)
        self.dir = os.path.join(STATE, f"box{k}")
        self.tmp = tempfile.mkdtemp(prefix=f"vipd-e2e-scaleout-box{k}-")
        self.config = os.path.join(self.tmp, "vipd.toml")
        self.log_path = os.path.join(self.tmp, "vipd.log")
        self.real_servers = real_servers or RS
        self.proc = None
        self.write_config()

    def write_config(self):
        text = f"""
[eal]
file_prefix = "vipd-{SO}-box{self.k}"
hugepages = false
memory_mb = 192

[dataplane]
worker_cores = [1]
control_core = 0
idle_sleep_us = 200
rx_descriptors = 512
tx_descriptors = 512

[flows]
capacity_per_worker = 65536

[api]
listen = "127.0.0.1:{API_PORT}"

[state]
file = "{self.tmp}/state.json"

[[ports]]
name = "lan"
device = "net_af_packet0,iface={SO}-b{self.k}"
ipv4 = "{self.addr}/24"
gateway = "10.77.0.1"
kernel_interface = "{SO}-k{self.k}"

# Every real server of a VIP failing must withdraw it (no_healthy_real_server): the
# mass-transition guard, which would hold all but one of those verdicts, is off here.
[health]
max_down_percent = 100

[bgp]
socket = "{self.dir}/bird.ctl"
protocols_file = "{self.dir}/vips.conf"
withdraw_wait = 0.5
reconcile_interval = 2
"""
        for vip, mode, check_kind in ((VIP_DR, "dr", "http"), (VIP_TUN, "tunnel", "tcp")):
            path = 'path = "/health", ' if check_kind == "http" else ""
            text += f"""
[[services]]
vip = "{vip}"
proto = "tcp"
port = {PORT}
mode = "{mode}"
health_check = {{ type = "{check_kind}", {path}interval = 1, timeout = 0.9, rise = 1, fall = 3 }}
"""
            for ip in self.real_servers:
                text += f'\n[[services.real_servers]]\nip = "{ip}"\n'
        with open(self.config, "w") as f:
            f.write(text)

    def start(self):
        logf = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, VIPD, "--config", self.config],
            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        logf.close()

    def wait_api(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"box {self.k}: vipd exited {self.proc.returncode}:\n{self.tail()}")
            try:
                return self.box()
            except (RuntimeError, json.JSONDecodeError):
                time.sleep(0.2)
        raise RuntimeError(f"box {self.k}: API not answering after {timeout} s:\n{self.tail()}")

    def api(self, path, method="GET"):
        json_type = [] if method in ("GET", "HEAD") else ["-H", "Content-Type: application/json"]
        out = netns(self.ns, "curl", "-s", "-m", "20", "-X", method, *json_type, f"http://127.0.0.1:{API_PORT}{path}")
        return json.loads(out)

    def box(self):
        return self.api("/api/v1/box")

    def vipctl(self, *args):
        return subprocess.run(["ip", "netns", "exec", self.ns, VIPCTL, "--api", f"127.0.0.1:{API_PORT}", *args],
                              capture_output=True, text=True, timeout=30)

    def flows(self):
        return self.api("/api/v1/stats")["flows_active"]

    def send(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGCONT)
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9

    def tail(self, n=30):
        try:
            with open(self.log_path) as f:
                return f"--- box {self.k} vipd log ---\n" + "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


class RouteWatch:
    """route_watch.py in the router's namespace: the router's VIP routes as they change."""

    def __init__(self):
        self.path = os.path.join(tempfile.mkdtemp(prefix="vipd-e2e-scaleout-routes-"), "routes.jsonl")
        self.out = open(self.path, "w")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", f"{SO}-router", "python3", "-u", os.path.join(LIB, "route_watch.py"),
             "10.77.100.0/24"], stdout=self.out, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline and not any(e["event"] == "ready" for e in self.events()):
            time.sleep(0.05)

    def events(self):
        with open(self.path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def first(self, since, test, timeout=20):
        """The first event after `since` for which test(event) holds: its time."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for e in self.events():
                if e["event"] in ("new", "del") and e["t"] >= since and test(e):
                    return e["t"]
            time.sleep(0.02)
        return None

    def close(self):
        self.proc.terminate()
        self.proc.wait()
        self.out.close()
        shutil.rmtree(os.path.dirname(self.path), ignore_errors=True)


def nexthops(vip):
    out = sbash(f"vipd_scaleout_nexthops {SO} {vip}", capture=True, check_rc=False)
    return sorted(out.split())


def wait_routes(boxes, timeout=60):
    """Until the router routes every VIP over exactly these boxes."""
    want = sorted(box_addr(k) for k in boxes)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(nexthops(v) == want for v in VIPS):
            return
        time.sleep(0.1)
    raise AssertionError(f"router routes {[(v, nexthops(v)) for v in VIPS]}, expected {want} for both VIPs")


def wait_settled(bed, tables=True, timeout=30):
    """Until every running box announces every VIP with all its real servers ready, and
    all boxes show the same tables (a box just back must not start a round half-healthy)."""
    deadline = time.time() + timeout
    while True:
        states = {b.k: b.box() for b in bed.running()}
        settled = all(v["announce"] and v["real_servers_ready"] == v["real_servers"]
                      for st in states.values() for v in st["vips"])
        if settled and (not tables or same_tables(bed.running())[0]):
            return
        if time.time() > deadline:
            raise AssertionError(f"boxes not settled after {timeout} s: "
                                 f"{ {k: [(v['vip'], v['reason']) for v in st['vips']] for k, st in states.items()} }")
        time.sleep(0.2)


def gone(addr):
    return lambda e: e["event"] == "del" or addr not in e["via"]


def route_left(watch, since, k, what):
    """When the router's routes for both VIPs stopped naming box k (after `since`)."""
    times = [watch.first(since, lambda e, v=v: e["dst"] == f"{v}/32" and gone(box_addr(k))(e)) for v in VIPS]
    check(all(t is not None for t in times), f"{what}: the router still routes to box {k}: {[(v, nexthops(v)) for v in VIPS]}")
    return max(times)


class Downloads(e2e_control.Downloads):
    """Slow downloads through the VIPs, half DR and half TUN, each its own curl with a fixed
    source address and port (so the router's choice of box can be predicted), each paced by
    its real server (at least SIZE / PACE seconds long)."""

    def __init__(self, tag, base_port, n=DOWNLOADS):
        self.size = SIZE
        self.dir = tempfile.mkdtemp(prefix=f"vipd-e2e-scaleout-{tag}-")
        self.procs, self.flows = [], []
        self.t0 = time.time()
        for i in range(n):
            vip, src, sport = VIPS[i % 2], CLIENTS[i % len(CLIENTS)], base_port + i
            out, hdr = f"{self.dir}/{i}.body", f"{self.dir}/{i}.head"
            self.flows.append((i, vip, src, sport))
            self.procs.append((i, out, hdr, subprocess.Popen(
                ["ip", "netns", "exec", f"{SO}-client", "curl", "-s", "-m", "90", "--interface", src,
                 "--local-port", str(sport), "-D", hdr, "-o", out,
                 f"http://{vip}:{PORT}/bytes/{SIZE}?rate={PACE}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))

    def flowing(self, at_least=1.0, timeout=30):
        """Wait (at least `at_least` s, at most `timeout` s from the start) until every download
        has received body bytes or ended; the seconds since the start. Replaces a fixed sleep:
        under load the curls start late."""
        def receiving(out):
            try:
                return os.path.getsize(out) > 0
            except OSError:
                return False
        deadline = self.t0 + timeout
        while time.time() < deadline:
            if time.time() - self.t0 >= at_least and all(
                    p.poll() is not None or receiving(out) for _, out, _, p in self.procs):
                break
            time.sleep(0.1)
        return time.time() - self.t0

    def ended(self):
        """The downloads that ended already: '#i src:port -> vip: curl exit N'."""
        return [f"#{i} {src}:{sport} -> {vip}: curl exit {p.returncode}"
                for (i, vip, src, sport), (*_, p) in zip(self.flows, self.procs) if p.poll() is not None]

    def carriers(self):
        """Download index -> the box address the router sends it to now."""
        out = {}
        for i, vip, src, sport in self.flows:
            r = netns(f"{SO}-router", "ip", "route", "get", vip, "from", src, "iif", f"{SO}-rc0",
                      "ipproto", "tcp", "sport", str(sport), "dport", str(PORT), check=False)
            words = r.split()
            out[i] = words[words.index("via") + 1] if "via" in words else "?"
        return out

    def finish(self):
        res = super().finish()
        res["total"] = len(self.procs)
        return res


def same_tables(boxes):
    prints = {b.k: [(t["service"], t["fingerprint"]) for t in b.box()["tables"]] for b in boxes}
    first = next(iter(prints.values()))
    return all(p == first for p in prints.values()), prints


class Bed:
    """The scale-out bed, its boxes and the route watcher; everything torn down on close."""

    def __init__(self):
        sbash(f"vipd_scaleout_down {SO} >/dev/null 2>&1 || true; vipd_scaleout_up {SO} {N_BED_BOXES} 3")
        for i in (1, 2, 3):
            sbash(f"vipd_rs_start {SO} {i} {PORT}; vipd_rs_tun_setup {SO} {i} {VIP_DR},{VIP_TUN}")
        self.boxes = {}
        self.watch = RouteWatch()

    def start(self, ks, real_servers=None):
        for k in ks:
            self.boxes[k] = Box(k, (real_servers or {}).get(k))
            self.boxes[k].start()
        for k in ks:
            self.boxes[k].wait_api()

    def running(self):
        return [self.boxes[k] for k in sorted(self.boxes)]

    def stop_all(self):
        codes = {}
        for k, b in list(self.boxes.items()):
            codes[k] = b.stop()
        return codes

    def close(self):
        try:
            self.stop_all()
            self.watch.close()
        finally:
            for b in self.boxes.values():
                b.cleanup()
            sbash(f"vipd_scaleout_down {SO}", check_rc=False)

    def tails(self):
        return "\n".join(b.tail() for b in self.running())


def downloads_round(bed, label, base_port, victim, inject, restore):
    """Downloads, then `inject` on box `victim` 2 s in (it may return a note for the log);
    every download must complete byte for byte. Then `restore` (after the downloads; it may
    return a note too) and wait until the box is back and settled. Returns the figures:
    intact/total, downloads the victim carried, from `inject` to the router's new route."""
    d = Downloads(label.replace(" ", "-").replace("/", ""), base_port)
    waited = d.flowing()
    check(d.running() == len(d.procs), f"{label}: downloads ended before it ({waited:.1f} s in, "
          f"each paced to last >= {SIZE / PACE:.0f} s): {d.ended()}")
    carried = sum(1 for a in d.carriers().values() if a == box_addr(victim))
    flows = bed.boxes[victim].flows()
    check(carried > 0 and flows > 0,
          f"{label}: box {victim} carries no download (router says {carried}, its flow table {flows}): it would prove nothing")
    t0 = time.time()
    note = inject()
    t_route = route_left(bed.watch, t0, victim, label)
    res = d.finish()
    check(res["ok"] == res["total"], f"{label}: downloads broken: {res['bad']}")
    ms = (t_route - t0) * 1e3
    after = restore()
    log(f"    {label} on box {victim}: {res['ok']}/{res['total']} downloads intact (sha256), {carried} were on it; "
        f"router's route without it {ms:.0f} ms later{'; ' + note if note else ''}{'; ' + after if after else ''}")
    wait_routes(sorted(bed.boxes))
    wait_settled(bed)
    return {"kind": label, "intact": res["ok"], "total": res["total"], "on_victim": carried, "route_ms": round(ms)}


def run(*cmds):
    """Run each command (an argv list), failing on the first that fails."""
    for c in cmds:
        subprocess.run(c, check=True)


def restart(box):
    """Start a box's vipd again (after SIGKILL or SIGTERM)."""
    box.proc.wait()
    box.start()
    box.wait_api()


def failures(bed):
    """Each failure kind in turn, each on a box carrying downloads, each repaired after."""
    box = bed.boxes
    tc = ["ip", "netns", "exec", f"{SO}-router", "tc"]
    port = f"{SO}-bb1"
    # Silent drop: the link stays up, every frame to or from the box is lost (a classic BPF
    # program returning TC_ACT_SHOT on both directions of its bridge port; this kernel has no
    # gact action).
    drop = ["bpf", "da", "bytecode", "1,6 0 0 2,"]
    silent = [tc + ["qdisc", "add", "dev", port, "clsact"],
              tc + ["filter", "add", "dev", port, "ingress"] + drop,
              tc + ["filter", "add", "dev", port, "egress"] + drop]
    link = ["ip", "netns", "exec", f"{SO}-box3", "ip", "link", "set", f"{SO}-b3"]
    return [
        downloads_round(bed, "SIGKILL", 41000, 1, lambda: box[1].send(signal.SIGKILL), lambda: restart(box[1])),
        downloads_round(bed, "SIGSTOP", 41100, 2, lambda: box[2].send(signal.SIGSTOP),
                        lambda: box[2].send(signal.SIGCONT)),
        downloads_round(bed, "link down", 41200, 3, lambda: run(link + ["down"]), lambda: run(link + ["up"])),
        downloads_round(bed, "silent drop", 41300, 1, lambda: run(*silent),
                        lambda: run(tc + ["qdisc", "del", "dev", port, "clsact"])),
    ]


def join(bed):
    """A fourth box joins during the downloads: only the flows ECMP moves change box, and none
    of them breaks."""
    d = Downloads("join", 41400)
    d.flowing()
    before = d.carriers()
    t0 = time.time()
    bed.start([4])
    wait_routes([1, 2, 3, 4])
    routed = time.time() - t0
    after = d.carriers()
    moved = sum(1 for i in before if before[i] != after[i])
    to_new = sum(1 for a in after.values() if a == box_addr(4))
    res = d.finish()
    check(res["ok"] == res["total"], f"join: downloads broken: {res['bad']}")
    check(to_new > 0, "join: no download moved to the new box: the join proved nothing")
    same, prints = same_tables(bed.running())
    check(same, f"the new box builds other tables: {prints}")
    log(f"    box 4 joins: routed {routed:.1f} s after its vipd started; ECMP moved {moved}/{res['total']} downloads "
        f"({to_new} to box 4), {res['ok']}/{res['total']} intact; its tables equal the others'")
    return {"kind": "join", "intact": res["ok"], "total": res["total"], "moved": moved, "routed_s": round(routed, 1)}


def planned(bed):
    """Withdrawals the operator asks for: `vipctl drain --box` (measured from the command) and
    SIGTERM (from the signal; vipd stops only after the router moved the flows)."""
    box = bed.boxes

    def drain():
        r = box[2].vipctl("drain", "--box")
        check(r.returncode == 0 and "box drained" in r.stdout, f"vipctl drain --box: {r.returncode} {r.stdout} {r.stderr}")
        st = box[2].box()
        check(st["drained"] and not any(v["announce"] for v in st["vips"]), f"box 2 not drained: {st}")
        return f"`{r.stdout.strip()}`"

    def resume():
        r = box[2].vipctl("resume", "--box")
        check(r.returncode == 0 and "box resumed" in r.stdout, f"vipctl resume --box: {r.stdout} {r.stderr}")

    exited = []

    def sigterm():
        t0 = time.time()
        box[3].send(signal.SIGTERM)
        threading.Thread(target=lambda: exited.append((box[3].proc.wait(), time.time() - t0)), daemon=True).start()

    def back():
        while not exited:
            time.sleep(0.05)
        rc, t = exited[0]
        check(rc == 0, f"vipd exit code {rc} after SIGTERM")
        restart(box[3])
        return f"vipd exited 0 {t * 1e3:.0f} ms after the signal"

    rounds = [downloads_round(bed, "vipctl drain --box", 41500, 2, drain, resume),
              downloads_round(bed, "SIGTERM", 41600, 3, sigterm, back)]
    check(rounds[1]["route_ms"] < exited[0][1] * 1e3, "vipd stopped before the router moved the flows")
    return rounds


def no_healthy_real_server(bed):
    """Every real server of the DR service fails its HTTP check: every box withdraws that VIP
    and keeps the other; they come back when the checks pass again."""
    t0 = time.time()
    for i in (1, 2, 3):
        with open(os.path.join(STATE, f"rs{i}.health"), "w") as f:
            f.write("503\n")
    t_gone = bed.watch.first(t0, lambda e: e["dst"] == f"{VIP_DR}/32" and e["event"] == "del", timeout=20)
    check(t_gone is not None, f"{VIP_DR} still routed with every real server failing: {nexthops(VIP_DR)}")
    check(len(nexthops(VIP_TUN)) == len(bed.boxes), f"{VIP_TUN} lost next hops: {nexthops(VIP_TUN)}")
    why = {v["vip"]: v["reason"] for v in bed.boxes[1].box()["vips"]}
    for i in (1, 2, 3):
        os.unlink(os.path.join(STATE, f"rs{i}.health"))
    wait_routes(sorted(bed.boxes))
    wait_settled(bed)
    log(f"    every DR real server answers 503: {VIP_DR} withdrawn by all {len(bed.boxes)} boxes {(t_gone - t0) * 1e3:.0f} ms "
        f"later (checks every 1 s, fall 3; box 1 says \"{why[VIP_DR]}\"), {VIP_TUN} kept; both back when they answer 200")
    return {"kind": "no healthy real server", "route_ms": round((t_gone - t0) * 1e3)}


def negative_control(bed):
    """Boxes whose real-server lists differ build different tables: losing a box must then
    break downloads, or the rest of the scenario proves nothing."""
    codes = bed.stop_all()
    check(all(c == 0 for c in codes.values()), f"vipd exit codes {codes}")
    for b in bed.boxes.values():
        b.cleanup()
    bed.boxes = {}
    perturbed = {1: RS, 2: RS[1:], 3: [RS[0], RS[2]]}
    bed.start([1, 2, 3], perturbed)
    wait_routes([1, 2, 3])
    wait_settled(bed, tables=False)
    same, prints = same_tables(bed.running())
    check(not same, f"perturbed boxes build equal tables: {prints}")
    d = Downloads("control", 41700)
    d.flowing()
    carriers = d.carriers()
    victim = max((1, 2, 3), key=lambda k: sum(1 for a in carriers.values() if a == box_addr(k)))
    carried = sum(1 for a in carriers.values() if a == box_addr(victim))
    bed.boxes[victim].send(signal.SIGKILL)
    res = d.finish()
    broken = res["total"] - res["ok"]
    log(f"    negative control (real servers {[len(v) for v in perturbed.values()]} per box, fingerprints differ): "
        f"box {victim} killed with {carried} downloads on it: {broken}/{res['total']} broken")
    check(broken > 0, "different tables on the boxes broke nothing: the scale-out test cannot tell right from wrong")
    return {"kind": "negative control", "broken": broken, "total": res["total"], "on_victim": carried}


def scenario_scaleout():
    """Scale-out: 3 vipd boxes behind a bird2 router (ECMP, BGP, BFD): failures, join, drain, stop, negative control."""
    t_start = time.time()
    bed = Bed()
    try:
        t0 = time.time()
        bed.start([1, 2, 3])
        wait_routes([1, 2, 3])
        wait_settled(bed)
        same, prints = same_tables(bed.running())
        check(same, f"boxes build different tables: {prints}")
        log(f"    3 boxes announced and routed over 3 next hops {time.time() - t0:.1f} s after their vipd started "
            f"(first health checks, BGP session, BFD); tables equal on the 3 boxes ({prints[1][0][1][:12]}..)")
        figures = failures(bed)
        figures.append(join(bed))
        figures += planned(bed)
        figures.append(no_healthy_real_server(bed))
        figures.append(negative_control(bed))
        log(f"    scale-out figures: {json.dumps(figures)}")
        log(f"    scenario time {time.time() - t_start:.0f} s")
    except Exception:
        log(bed.tails())
        raise
    finally:
        bed.close()


SCENARIOS = {
    "scaleout": scenario_scaleout,
}
