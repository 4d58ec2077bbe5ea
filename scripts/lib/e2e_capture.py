"""End-to-end scenario of packet capture the DPDK way: dpdk-dumpcap and dpdk-pdump attach to a
running vipd as secondary processes, capture a curl through the VIP, and tcpdump reads the
files back; dpdk-telemetry.py queries the same vipd. Registered by scripts/e2e."""

import json
import os
import re
import select
import signal
import subprocess
import tempfile
import time

from vipdbed import PREFIX, VIP4, Vipd, check, log, netns

CLIENT = "192.168.77.2"
OTHER_CLIENT = "192.168.77.3"
RS = ["10.77.0.21", "10.77.0.22", "10.77.0.23"]
SERVICES = [{"vip": VIP4, "proto": "tcp", "port": 80, "scheduler": "maglev",
             "rs": [(ip, 8080, 1) for ip in RS]}]
DEVICE = "net_af_packet0"


class Secondary:
    """A DPDK secondary process (dumpcap, pdump) in the LB namespace, stopped by SIGINT."""

    def __init__(self, *cmd):
        # dumpcap tells on stderr ("Packets captured: ") once its capture is enabled; pdump on
        # stdout (" capture for N tuples"), line-buffered here.
        self.proc = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-lb", "stdbuf", "-oL", *cmd],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.out = ""

    def wait_for(self, text, timeout=15.0):
        """True once `text` is in its output (it says when it captures), False if it exits
        or `timeout` passes first."""
        deadline = time.time() + timeout
        while time.time() < deadline and text not in self.out:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    return False
                self.out += chunk.decode(errors="replace")
        return text in self.out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.out += self.proc.communicate(timeout=15)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.out += self.proc.communicate()[0].decode(errors="replace")
        return self.proc.returncode


def tcpdump(path, flt=""):
    """The packets of a capture file as tcpdump prints them (tcpdump is the independent reader)."""
    r = subprocess.run(["tcpdump", "-nn", "-r", path, *flt.split()], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"tcpdump cannot read {path}: {r.stderr.strip()}")
    return r.stdout.splitlines()


def curl(source):
    out = netns(f"{PREFIX}-client", "curl", "-s", "-m", "5", "--interface", source, f"http://{VIP4}/")
    m = re.match(r"server=(rs\d) client=([\d.]+):(\d+)", out)
    check(m and m.group(2) == source, f"curl from {source} through the VIP: {out!r}")
    return m.group(1), int(m.group(3))


def syns(lines, sport):
    """{(src, dst): line} of the SYNs (not SYN-ACKs) from the client port `sport`."""
    found = {}
    for ln in lines:
        m = re.search(r" IP ([\d.]+)\.(\d+) > ([\d.]+)\.(\d+): Flags \[S\]", ln)
        if m and int(m.group(2)) == sport:
            found[(m.group(1), f"{m.group(3)}:{m.group(4)}")] = ln
    return found


def telemetry(prefix, query):
    out = netns(f"{PREFIX}-lb", "sh", "-c", f"echo '{query}' | dpdk-telemetry.py -f {prefix}", timeout=20)
    answers = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    check(answers, f"dpdk-telemetry.py gave no JSON for {query}: {out!r}")
    return answers[-1][query.split(",")[0]]


def hugepage_files(prefix):
    """vipd's hugepage files (`<prefix>map_<n>`) on every hugetlbfs mount."""
    with open("/proc/mounts") as f:
        mounts = [ln.split()[1] for ln in f if ln.split()[2] == "hugetlbfs"]
    return [f for d in mounts for f in os.listdir(d) if re.fullmatch(re.escape(prefix) + r"map_\d+", f)]


def scenario_capture():
    """dpdk-dumpcap (with a filter) and dpdk-pdump capture a curl through a running vipd; tcpdump finds the SYN before and after the NAT rewrite; dpdk-telemetry.py answers."""
    v = Vipd("capture", services=SERVICES, hugepages=True)
    work = tempfile.mkdtemp(prefix=f"vipd-e2e-{PREFIX}-capture-")
    caps = []
    try:
        v.start()
        with open(v.log_path) as f:
            text = f.read()
        check("--proc-type primary" in text and "--in-memory" not in text, "vipd did not start as a joinable primary")
        hint = next((ln for ln in text.splitlines() if "capture port lan:" in ln), "")
        check(f"dpdk-dumpcap --file-prefix {v.file_prefix} -i {DEVICE}" in hint, f"no capture command logged: {hint!r}")
        check(hugepage_files(v.file_prefix), "vipd runs on hugepages but has no hugepage files")

        # A second vipd on the same file prefix is refused before DPDK starts, naming the first.
        r = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-lb", v.binary, "--config", v.config],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 1 and f"another DPDK primary process (pid {v.proc.pid})" in r.stderr,
              f"second vipd on prefix {v.file_prefix}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
        log(f"    second vipd on the same prefix refused: {r.stderr.strip().splitlines()[-1][:150]}")

        # 1. dpdk-dumpcap with a capture filter (compiled by libpcap, run by vipd's ports as BPF).
        pcapng = os.path.join(work, "lan.pcapng")
        dumpcap = Secondary("dpdk-dumpcap", "--file-prefix", v.file_prefix, "-i", DEVICE,
                            "-f", f"tcp and host {CLIENT}", "-w", pcapng)
        caps.append(dumpcap)
        if not dumpcap.wait_for("Packets captured: "):
            raise AssertionError(f"dpdk-dumpcap did not start: exit {dumpcap.stop()}: {dumpcap.out[-500:]}")
        server, sport = curl(CLIENT)
        curl(OTHER_CLIENT)  # outside the filter
        netns(f"{PREFIX}-client", "ping", "-c", "1", "-W", "2", VIP4)  # outside the filter
        time.sleep(0.5)
        rc = dumpcap.stop()
        m = re.search(r"Packets received/dropped on interface '[^']+': (\d+)/(\d+)", dumpcap.out)
        check(rc == 0 and m, f"dpdk-dumpcap: exit {rc}: {dumpcap.out[-500:]}")
        lines = tcpdump(pcapng)
        # The running count: "Packets captured: " then each new total after backspaces.
        counts = re.findall(r"\d+", dumpcap.out.rpartition("Packets captured: ")[2].split("\n")[0])
        written = int(counts[-1]) if counts else -1
        check(written == len(lines) > 0 and m.group(2) == "0",
              f"dumpcap wrote {written} packets (received/dropped {m.group(1)}/{m.group(2)}), tcpdump read {len(lines)}")
        stray = [ln for ln in lines if f" {CLIENT}." not in ln and f"> {CLIENT}." not in ln]
        check(not stray, f"the capture filter let other packets through: {stray[:3]}")
        rs_ip = RS[int(server[2:]) - 1]
        found = syns(lines, sport)
        before, after = (CLIENT, f"{VIP4}:80"), (CLIENT, f"{rs_ip}:8080")
        check(before in found and after in found, f"SYN before/after the rewrite not both in the capture: {found}")
        seq = lambda ln: re.search(r"seq (\d+)", ln).group(1)  # noqa: E731
        check(seq(found[before]) == seq(found[after]), "the two SYNs are not the same segment")
        log(f"    dpdk-dumpcap -f 'tcp and host {CLIENT}': {m.group(1)} packets seen, {len(lines)} matched and written, read back by tcpdump, none outside the filter, 0 dropped")
        for ln in lines[:4]:
            log(f"      {ln[16:120]}")

        # 2. dpdk-pdump: one file per direction, so the direction is proven by the file.
        rx, tx = os.path.join(work, "rx.pcap"), os.path.join(work, "tx.pcap")
        pdump = Secondary("dpdk-pdump", "-l", "0", "--no-pci", "--file-prefix", v.file_prefix, "--",
                          "--pdump", f"device_id={DEVICE},queue=*,rx-dev={rx},tx-dev={tx}")
        caps.append(pdump)
        if not pdump.wait_for("capture for"):
            raise AssertionError(f"dpdk-pdump did not start: exit {pdump.stop()}: {pdump.out[-500:]}")
        server, sport = curl(CLIENT)
        time.sleep(0.5)
        pdump.stop()
        rs_ip = RS[int(server[2:]) - 1]
        rx_syns, tx_syns = syns(tcpdump(rx), sport), syns(tcpdump(tx), sport)
        check(list(rx_syns) == [(CLIENT, f"{VIP4}:80")], f"rx capture: SYNs {list(rx_syns)}, want only client -> VIP")
        check(list(tx_syns) == [(CLIENT, f"{rs_ip}:8080")], f"tx capture: SYNs {list(tx_syns)}, want only client -> {rs_ip}")
        log(f"    dpdk-pdump: rx has the SYN {CLIENT}:{sport} -> {VIP4}:80, tx has it rewritten to {rs_ip}:8080 ({len(tcpdump(rx))} rx / {len(tcpdump(tx))} tx packets)")

        # 3. dpdk-telemetry.py against the same process.
        check(telemetry(v.file_prefix, "/ethdev/list") == [0], "telemetry /ethdev/list")
        rx_packets = v.stats()["total"]["rx_packets"]
        st = telemetry(v.file_prefix, "/ethdev/stats,0")
        check(st["ipackets"] >= rx_packets > 0 and st["opackets"] > 0, f"telemetry /ethdev/stats,0 {st} vs vipd rx_packets {rx_packets}")
        log(f"    dpdk-telemetry.py /ethdev/stats,0: ipackets {st['ipackets']} (vipd rx_packets {rx_packets}), opackets {st['opackets']}, imissed {st['imissed']}")
    except Exception:
        log(v.tail())
        raise
    finally:
        for c in caps:
            c.stop()
        rc = v.stop()
        for name in os.listdir(work):
            os.unlink(os.path.join(work, name))
        os.rmdir(work)
    check(rc == 0, f"vipd exit code {rc}")
    left = hugepage_files(v.file_prefix)
    check(not left and not os.path.exists(f"/var/run/dpdk/{v.file_prefix}"), f"vipd left hugepage files {left[:3]} or its runtime directory")
    log("    stopped: no hugepage file or runtime directory left behind")


SCENARIOS = {
    "capture": scenario_capture,
}
