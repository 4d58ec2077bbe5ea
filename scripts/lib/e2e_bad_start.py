"""vipd never starts half-configured (scenario `bad_start` of scripts/e2e, issue 11 item 8): a
configuration `vipd --check` accepts but the machine cannot honour (a device that is not there,
a kernel interface name already taken, the API's address in use) makes vipd exit non-zero
with the problem named, before it forwards anything, and leave nothing behind: no process,
no API listening, no interface it created."""

import subprocess
import time

from vipdbed import API_PORT, PREFIX, VIP4, Vipd, check, log, netns

SERVICES = [{"vip": VIP4, "proto": "tcp", "port": 80, "scheduler": "maglev",
             "rs": [("10.77.0.21", 8080, 1)]}]


def links():
    return set(netns(f"{PREFIX}-lb", "ip", "-o", "link", "show").split("\n"))


def link_names():
    return {ln.split(":")[1].strip().split("@")[0] for ln in links() if ln.strip()}


WHAT = {"dev": "device not there", "kif": "kernel interface name taken"}


def start_fails(name, edit, want, prepare=None):
    v = Vipd(f"bad-{name}", services=SERVICES)
    with open(v.config) as f:
        text = edit(f.read())
    with open(v.config, "w") as f:
        f.write(text)
    r = subprocess.run([v.binary, "--check", v.config], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"{name}: vipd --check refused it already ({r.stderr.strip()}); the test needs a file it accepts")
    before = link_names()
    t0 = time.time()
    p = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-lb", v.binary, "--config", v.config],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    took = time.time() - t0
    out = (p.stdout + p.stderr).strip()
    check(p.returncode != 0, f"{name}: vipd started (exit {p.returncode}): {out[-300:]}")
    check(want in out, f"{name}: the error does not say `{want}`: {out[-400:]}")
    check(link_names() == before, f"{name}: interfaces left behind: {link_names() - before}")
    listening = netns(f"{PREFIX}-lb", "ss", "-Htln", f"( sport = :{API_PORT} )")
    check(not listening.strip(), f"{name}: something still listens on the API port: {listening}")
    last = [ln for ln in out.splitlines() if want in ln][-1]
    log(f"    {WHAT[name]}: exit {p.returncode} after {took:.1f} s: {last.strip()[-150:]}")


def scenario_bad_start():
    """Start-up refusals: a missing device, a kernel interface name in use, the API address in
    use: vipd exits with the problem named and leaves nothing behind."""
    start_fails("dev",
                lambda t: t.replace(f"iface={PREFIX}-lb0", f"iface={PREFIX}-none"),
                "ports[0]")
    start_fails("kif",
                lambda t: t.replace('gateway6 = "fd00:77::1"', f'gateway6 = "fd00:77::1"\nkernel_interface = "{PREFIX}-lb0"'),
                f"{PREFIX}-lb0")
    holder = subprocess.Popen(
        ["ip", "netns", "exec", f"{PREFIX}-lb", "python3", "-c",
         f"import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
         f"s.bind(('127.0.0.1', {API_PORT})); s.listen(); print('up', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        check(holder.stdout.readline().strip() == "up", "the port holder did not start")
        v = Vipd("bad-api", services=SERVICES)
        p = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-lb", v.binary, "--config", v.config],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
        try:
            out, _ = p.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            p.terminate()
            out, _ = p.communicate(timeout=15)
            check(False, f"api-address-in-use: vipd kept running without its API: {out[-400:]}")
        check(p.returncode != 0 and "127.0.0.1:19280" in out, f"api-address-in-use: exit {p.returncode}: {out[-400:]}")
        last = [ln for ln in out.splitlines() if "19280" in ln][-1]
        log(f"    api-address-in-use: exit {p.returncode}: {last.strip()[-150:]}")
    finally:
        holder.kill()
        holder.wait()


SCENARIOS = {"bad_start": scenario_bad_start}
