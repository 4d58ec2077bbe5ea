"""End-to-end test of vipctl (scenario `vipctl` of scripts/e2e): ipvsadm's commands against a
real vipd in the LB namespace, the tables checked line by line, `--json` parsed, `save`
accepted by `vipd --check` and reloaded as vipd's file, errors in one line, and vipctl against
a stopped vipd.
"""

import json
import os
import re
import subprocess
import time

from downloads import paced
from vipdbed import API_PORT, PREFIX, TARGET_DIR, VIP4, VIPD, Vipd, check, load, log, netns

VIPCTL = os.environ.get("VIPCTL_BIN", os.path.join(TARGET_DIR, "debug", "vipctl"))
TOKEN = "e2e-vipctl-token-0123456789"
TITLE = [
    "Prot LocalAddress:Port Scheduler Flags",
    "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn  Health",
]


class Ctl:
    """vipctl in the LB namespace, pointed at the scenario's vipd."""

    def __init__(self, token_file):
        self.token_file = token_file

    def run(self, *args, token=True):
        env = {**os.environ, "VIPCTL_API": f"127.0.0.1:{API_PORT}"}
        env.pop("VIPCTL_TOKEN_FILE", None)
        extra = ["--token-file", self.token_file] if token else []
        r = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-lb", VIPCTL, *args, *extra],
                           capture_output=True, text=True, timeout=60, env=env)
        return r.returncode, r.stdout, r.stderr

    def ok(self, *args):
        rc, out, err = self.run(*args)
        check(rc == 0 and err == "", f"vipctl {' '.join(args)}: rc {rc}, stderr {err!r}")
        return out

    def fails(self, *args, token=True, rc=1):
        got, out, err = self.run(*args, token=token)
        lines = err.splitlines()
        check(got == rc and out == "" and len(lines) == 1 and lines[0].startswith("vipctl: "),
              f"vipctl {' '.join(args)}: rc {got}, stdout {out!r}, stderr {err!r}: wanted one line, exit {rc}")
        return lines[0]


def rs_line(addr, fwd, weight, active, inactive, health):
    return f"  -> {addr:<28} {fwd:<7} {weight:<6} {active:<10} {inactive:<10} {health}"


def listing(ctl, *args):
    out = ctl.ok("-L", "-n", *args)
    lines = out.splitlines()
    m = re.fullmatch(r"vipd version \S+ \(size=65536, generation=(\d+)(, (\d+) change\(s\) not saved)?\)", lines[0])
    check(m is not None, f"heading: {lines[0]!r}")
    check(lines[1:3] == TITLE, f"title lines: {lines[1:3]}")
    return int(m.group(1)), int(m.group(3) or 0), lines[3:]


def build_table(ctl):
    """The ipvsadm way: -A then -a, checked line by line."""
    gen0, _, body = listing(ctl)
    check(body == [], f"vipd started without services, yet -L shows {body}")
    ctl.ok("-A", "-t", f"{VIP4}:80", "-s", "wrr")
    ctl.ok("-a", "-t", f"{VIP4}:80", "-r", "10.77.0.21:8080", "-m", "-w", "1")
    ctl.ok("-a", "-t", f"{VIP4}:80", "-r", "10.77.0.22:8080", "-m", "-w", "2")
    ctl.ok("-a", "-t", f"{VIP4}:80", "-r", "10.77.0.23:8080", "-w", "1")
    ctl.ok("-A", "-u", f"{VIP4}:53", "-s", "rr", "--mode", "nat", "--dead-flows", "keep")
    ctl.ok("-a", "-u", f"{VIP4}:53", "-r", "10.77.0.21:5353")
    # A service whose checks fail fast in this bed (or pass, once the port has a kernel
    # interface): its health column and `vipctl health` show the verdict.
    ctl.ok("-A", "-t", f"{VIP4}:8081", "-s", "rr", "--check", "tcp", "--check-port", "8080",
           "--check-interval", "0.2", "--check-timeout", "0.1", "--rise", "1", "--fall", "1")
    ctl.ok("-a", "-t", f"{VIP4}:8081", "-r", "10.77.0.21:8080", "--check", "none")
    ctl.ok("-a", "-t", f"{VIP4}:8081", "-r", "10.77.0.22:8080")
    gen, unsaved, body = listing(ctl)
    check(unsaved == 9, f"9 changes not saved, heading says {unsaved}")
    check(gen >= gen0 + 9, f"9 changes, generation {gen0} -> {gen}")
    check(body[:7] == [
        f"TCP  {VIP4}:80 wrr",
        rs_line("10.77.0.21:8080", "Masq", 1, 0, 0, "-"),
        rs_line("10.77.0.22:8080", "Masq", 2, 0, 0, "-"),
        rs_line("10.77.0.23:8080", "Masq", 1, 0, 0, "-"),
        f"UDP  {VIP4}:53 rr keep-dead-flows",
        rs_line("10.77.0.21:5353", "Masq", 1, 0, 0, "-"),
        f"TCP  {VIP4}:8081 rr",
    ], "-L -n after -A/-a:\n" + "\n".join(body))
    check(body[7] == rs_line("10.77.0.21:8080", "Masq", 1, 0, 0, "-"), f"exempt real server: {body[7]!r}")
    check(re.fullmatch(re.escape(rs_line("10.77.0.22:8080", "Masq", 1, 0, 0, "")) + "(up|down)", body[8]),
          f"checked real server: {body[8]!r}")
    log(f"    -A/-a x9: -L -n line by line ({len(body)} lines), generation {gen0} -> {gen}")


def traffic_and_statistics(ctl):
    r = load(url=f"http://{VIP4}/", connections=200, parallel=8)
    check(r["ok"] == 200, f"200 connections: {r['ok']} ok, {r['error_samples'][:3]}")
    served = [r["servers"].get(f"rs{i}", 0) for i in (1, 2, 3)]
    check(abs(served[1] / 200 - 0.5) <= 0.05, f"wrr 1:2:1 spread: {served}")
    out = ctl.ok("-L", "-n", "--stats", "--exact", "-t", f"{VIP4}:80")
    lines = out.splitlines()
    check(lines[0] == f"{'Prot LocalAddress:Port':<33} {'Conns':>8} {'InPkts':>8} {'OutPkts':>8} {'InBytes':>8} {'OutBytes':>8}"
          and lines[1] == "  -> RemoteAddress:Port", f"--stats title: {lines[:2]}")
    cols = [ln.split() for ln in lines[2:]]
    check(cols[0][:2] == ["TCP", f"{VIP4}:80"] and int(cols[0][2]) == 200, f"--stats service line: {lines[2]!r}")
    for i, c in enumerate(cols[1:]):
        check(c[0] == "->" and c[1] == f"10.77.0.2{i + 1}:8080" and int(c[2]) == served[i],
              f"--stats: {lines[3 + i]!r}, the server saw {served[i]} connections")
        check(int(c[3]) >= 3 * served[i] and int(c[4]) >= 2 * served[i], f"--stats packets: {lines[3 + i]!r}")
    as_json = json.loads(ctl.ok("-L", "-n", "--json"))
    api = {s["address"] + "/" + s["proto"]: s for s in as_json["services"]}
    check([r["stats"]["conns"] for r in api[f"{VIP4}:80/tcp"]["real_servers"]] == served,
          f"--json conns {[r['stats']['conns'] for r in api[f'{VIP4}:80/tcp']['real_servers']]} != {served}")
    rate = ctl.ok("-L", "-n", "--rate").splitlines()
    check(rate[1].split()[-5:] == ["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"], f"--rate title: {rate[1]!r}")
    check(any(ln.startswith(f"TCP  {VIP4}:80 ") for ln in rate), f"--rate lists no service line: {rate}")
    log(f"    200 connections (wrr {served}); --stats --exact per real server equals what each served; --json agrees")


def connection_list(ctl):
    """-c lists live connections with state and expiry; --client, -t, -r and --limit narrow it."""
    clients = ["192.168.77.9", "192.168.77.10"]
    downloads = [subprocess.Popen(
        ["ip", "netns", "exec", f"{PREFIX}-client", "curl", "-s", "-m", "90", "--interface", c,
         "--limit-rate", "50k", "-o", "/dev/null", "-w", "port %{local_port} status %{http_code} got %{size_download}",
         paced(f"http://{VIP4}/bytes/3000000", "50k")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in clients]
    try:
        # The downloads last ~60 s (3 MB at 50 KB/s); a loaded machine makes each listing slow,
        # so the wait is bounded in time, and what every listing saw is kept for the message.
        rows, seen, deadline = [], [], time.monotonic() + 20
        while True:
            out = ctl.ok("-L", "-n", "-c", "-t", f"{VIP4}:80")
            rows = [ln.split() for ln in out.splitlines()[2:] if " ESTABLISHED " in ln]
            seen.append(f"{time.monotonic() - deadline + 20:.1f}s: " + "; ".join(
                " ".join(ln.split()[2:4]) for ln in out.splitlines()[2:]))
            if len(rows) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        check(out.splitlines()[1] == "pro expire state       source             virtual            destination",
              f"-c title: {out.splitlines()[:2]}")
        listed = sorted(r[3].split(":")[0] for r in rows) == sorted(clients) and all(
            r[0] == "TCP" and re.fullmatch(r"\d\d:\d\d", r[1]) and r[4] == f"{VIP4}:80"
            and re.fullmatch(r"10\.77\.0\.2[123]:8080", r[5]) for r in rows)
        if not listed:
            # A connection without an entry still works (stateless): say which counters moved.
            total = json.loads(ctl.ok("stats", "--json"))["total"]
            counters = {k: v for k, v in total.items() if v and any(
                w in k for w in ("flow", "stateless", "clash", "drop"))}
        check(listed, f"-c: the 2 downloads as ESTABLISHED TCP {VIP4}:80 -> a real server:\n{out}"
              + "".join(f"\ndownload from {c}: {'running' if p.poll() is None else p.stdout.read()}"
                        for c, p in zip(clients, downloads))
              + "\nlistings (state, client):\n" + "\n".join(seen[-12:])
              + ("" if listed else f"\ncounters: {counters}"))
        mine = json.loads(ctl.ok("-L", "-c", "--client", clients[0], "--json"))
        conn = [c for c in mine["connections"] if c["state"] == "established"]
        check(len(conn) == 1 and conn[0]["client"].startswith(clients[0] + ":") and 0 < conn[0]["expires_s"] <= 100,
              f"-c --client --json: {mine}")
        rs = conn[0]["real_server"]
        by_rs = json.loads(ctl.ok("-L", "-c", "-t", f"{VIP4}:80", "-r", rs, "--json"))["connections"]
        check(by_rs and all(c["real_server"] == rs for c in by_rs), f"-c -r {rs}: {by_rs}")
        one = ctl.ok("-L", "-n", "-c", "--limit", "1")
        check(len(one.splitlines()) == 3 and "more exist" in one.splitlines()[0], f"-c --limit 1:\n{one}")
        log(f"    -c: 2 slow downloads listed ESTABLISHED with expiry ({rows[0][1]}), --client/--json, -r, --limit 1 (truncated) narrow it")
    finally:
        for p in downloads:
            p.kill()
            p.wait()


def edits(ctl):
    ctl.ok("-e", "-t", f"{VIP4}:80", "-r", "10.77.0.23:8080", "-w", "3")
    ctl.ok("-E", "-t", f"{VIP4}:80", "-s", "maglev")
    ctl.ok("drain", "-t", f"{VIP4}:80", "-r", "10.77.0.22:8080")
    out = ctl.ok("-L", "-n", "-t", f"{VIP4}:80").splitlines()
    check(out[0:2] == TITLE and out[2] == f"TCP  {VIP4}:80 maglev"
          and out[4].startswith(rs_line("10.77.0.22:8080", "Masq", 0, 0, 0, "")[:44])
          and out[5].startswith(rs_line("10.77.0.23:8080", "Masq", 3, 0, 0, "")[:44]),
          "-L -t after -e -w 3, -E -s maglev, drain:\n" + "\n".join(out))
    r = load(url=f"http://{VIP4}/", connections=100, parallel=8)
    check(r["ok"] == 100 and r["servers"].get("rs2", 0) == 0, f"after drain rs2: {r['servers']}")
    ctl.ok("--set", "100", "0", "7")
    check(ctl.ok("-L", "--timeout").splitlines()[0] == "Timeout (tcp tcpfin udp): 100 3 7", "--set 100 0 7")
    t = json.loads(ctl.ok("-L", "--timeout", "--json"))
    check((t["tcp_established"], t["tcp_fin"], t["udp"]) == (100, 3, 7), f"--timeout --json: {t}")
    ctl.ok("-Z", "-t", f"{VIP4}:80")
    zeroed = ctl.ok("-L", "-n", "--stats", "-t", f"{VIP4}:80").splitlines()[2:]
    check(all(ln.split()[-5] == "0" for ln in zeroed), f"-Z left connection counts: {zeroed}")
    ctl.ok("-Z")
    vip6 = "[fd00:77:100::1]:80"
    ctl.ok("-A", "-t", vip6, "-s", "rr")
    ctl.ok("-a", "-t", vip6, "-r", "[fd00:77::21]:8080", "-w", "2")
    ctl.ok("-a", "-t", vip6, "-r", "fd00:77::22")
    six = ctl.ok("-L", "-n", "-t", vip6).splitlines()
    check(six[2:] == [f"TCP  {vip6} rr", rs_line("[fd00:77::21]:8080", "Masq", 2, 0, 0, "-"),
                      rs_line("[fd00:77::22]:80", "Masq", 1, 0, 0, "-")], "IPv6 service:\n" + "\n".join(six))
    # rr alternates between ::21:8080 and ::22:80, where nothing listens (the default port is
    # the VIP's, which -L checked above): one of two connections must be answered.
    outs = [netns(f"{PREFIX}-client", "curl", "-s", "-m", "5", f"http://{vip6}/", check=False)
            for _ in range(2)]
    out = next((o for o in outs if "server=rs" in o), outs[-1])
    if "server=rs" not in out:
        check(False, f"no answer through the IPv6 service added by vipctl: {out!r}\n{ctl.ok('stats')}")
    ctl.ok("-D", "-t", vip6)
    ctl.ok("-d", "-u", f"{VIP4}:53", "-r", "10.77.0.21:5353")
    ctl.ok("-D", "-u", f"{VIP4}:53")
    _, _, body = listing(ctl)
    check(not any(":53" in ln for ln in body), f"-d/-D left the UDP service: {body}")
    log(f"    -e -w, -E -s, drain (100 new connections {r['servers']}), --set, -Z, an IPv6 service (listed, answers), -d, -D: listings follow")


def health_and_views(ctl):
    out = ctl.ok("health", "-t", f"{VIP4}:8081").splitlines()
    # This vipd has no kernel interface: the LB namespace's kernel has no route to the real
    # server, which is the box's fault, said above the table; the server keeps its state (up).
    check(out[0].startswith("The box itself: 1 real server(s) could not be checked: no_route"), f"the box's fault: {out[0]!r}")
    out = out[1:]
    check(out[2] == f"TCP  {VIP4}:8081", f"health service line: {out}")
    check(out[3].startswith("  -> 10.77.0.21:8080") and out[3].endswith("unchecked"), f"exempt: {out[3]!r}")
    check(re.match(r"  -> 10\.77\.0\.22:8080\s+up\s+\d+\s+0\s+0\s+\S+ not run \(the box's fault\): no_route: .+ / tcp 10\.77\.0\.22:8080 every 0\.2s "
                   r"timeout 0\.1s rise 1 fall 1$", out[4]), f"checked: {out[4]!r}")
    h = json.loads(ctl.ok("health", "--json"))
    check(len(h["real_servers"]) == 5, f"health --json: {len(h['real_servers'])} real servers")
    st = ctl.ok("status").splitlines()
    check(st[0].startswith("vipd: generation ") and any(ln.startswith("lan ") for ln in st), f"status: {st[:4]}")
    check(json.loads(ctl.ok("status", "--json"))["workers"] == 1, "status --json")
    stats = ctl.ok("stats")
    check(re.search(r"^rx_packets\s+\d+\s+\d+$", stats, re.M) and "drop_no_service" in stats, "stats table")
    check(json.loads(ctl.ok("stats", "--json"))["total"]["rx_packets"] > 0, "stats --json")
    check("vipd_snapshot_generation" in ctl.ok("metrics"), "metrics")
    log(f"    health (table and --json), status, stats, metrics: {out[4].split()[2]} verdict on the checked server")


def errors(ctl):
    line = ctl.fails("-a", "-t", f"{VIP4}:80", "-r", "10.77.0.24:8080", "-w", "70000")
    check(line == "vipctl: weight: 70000 is out of range 0..=65535", line)
    line = ctl.fails("-e", "-t", f"{VIP4}:80", "-r", "10.77.0.29:8080", "-w", "2")
    check(line.startswith("vipctl: real_server: ") and "10.77.0.29:8080" in line, line)
    line = ctl.fails("-A", "-t", f"{VIP4}:80")
    check(line.startswith("vipctl: port: ") and "exists already" in line, line)
    line = ctl.fails("-a", "-t", f"{VIP4}:80", "-r", "10.77.0.10")
    check(line.startswith("vipctl: ip: "), line)
    line = ctl.fails("-L", "-n", token=False)
    check(line.startswith("vipctl: authorization: ") and "--token-file" in line, line)
    got, out, err = ctl.run("-A", "-t", f"{VIP4}:80", "-w", "2")
    check(got == 2 and "illegal option -w with --add-service" in err, f"usage error: {got} {err!r}")
    log("    refusals: one line naming the field, exit 1 (weight, real_server, port, ip, authorization); usage errors exit 2")


def save_and_reload(ctl, v):
    _, _, before = listing(ctl)
    saved = ctl.ok("-S")
    path = os.path.join(v.dir, "saved.toml")
    with open(path, "w") as f:
        f.write(saved)
    r = subprocess.run([VIPD, "--check", path], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"vipd --check refused vipctl -S: {r.stdout}{r.stderr}")
    check(ctl.ok("save") == saved, "vipctl save and -S differ")
    # ipvsadm-save / restore: the saved configuration becomes vipd's file and is reloaded.
    with open(v.config, "w") as f:
        f.write(saved)
    out = ctl.ok("reload")
    check(out.startswith("vipd: configuration reloaded (generation "), f"reload: {out!r}")
    _, unsaved, after = listing(ctl)

    def config_of(lines):
        # What a reload must keep: services, real servers, forwarding, weights. The connection
        # columns (ActiveConn, InActConn) move on their own meanwhile (TIME_WAIT entries of the
        # traffic above expire), and so may the health column.
        out = []
        for ln in lines:
            ln = re.sub(r"\s+(up|down)$", "", ln)
            ln = re.sub(r"^(\s+-> \S+\s+\S+\s+\d+)\s+\d+\s+\d+", r"\1", ln)
            # The columns' padding follows the widths of the counts taken out.
            out.append(" ".join(ln.split()))
        return out
    check(unsaved == 0 and config_of(after) == config_of(before),
          "after saving and reloading, -L differs:\n" + "\n".join(before) + "\n---\n" + "\n".join(after))
    log(f"    -S: vipd --check accepts it ({r.stdout.strip().split(': ', 1)[-1]}); as the file, reload gives the same table, 0 unsaved")


def scenario_vipctl():
    """vipctl: ipvsadm's commands against a running vipd, tables line by line, --json, save +
    vipd --check + reload, one-line errors, and a stopped vipd."""
    v = Vipd("vipctl", services=[], token=TOKEN)
    ctl = Ctl(v.token_file)
    try:
        v.start()
        build_table(ctl)
        traffic_and_statistics(ctl)
        connection_list(ctl)
        edits(ctl)
        health_and_views(ctl)
        errors(ctl)
        save_and_reload(ctl, v)
    except Exception:
        log(v.tail())
        raise
    finally:
        rc = v.stop()
    check(rc == 0, f"vipd exit code {rc}")
    for args in (["-L", "-n"], ["-a", "-t", f"{VIP4}:80", "-r", "10.77.0.21"], ["reload"]):
        line = ctl.fails(*args)
        check(line.startswith("vipctl: vipd is not running (nothing answers at 127.0.0.1:"), line)
    log("    vipd stopped: -L -n, -a, reload each say `vipd is not running` in one line, exit 1")
