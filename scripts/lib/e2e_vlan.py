"""End-to-end scenario for 802.1Q VLANs (issue 19, section 2), registered by scripts/e2e.

vlan_trunk: vipd's port becomes a trunk. The link to it in the router namespace carries VLAN
100 (a client segment, 10.77.150.0/24, its own namespace) and VLAN 200 (a real server segment,
10.77.200.0/24, its own namespace running rs_server.py) tagged, and the bed's own segment with
the router untagged, as before. The switch between them is a tc BPF program
(vlan_switch.bpf.c): this host's kernel has neither the 8021q module (VLAN sub-interfaces)
nor VLAN filtering in its bridge; the kernel's own tag handling (untag on receive, tag on
transmit) puts real 802.1Q tags on the wire. vipd has an address in each VLAN
(`[[ports.vlans]]`). Real curl downloads go through the VIP from the bed's client (via
the untagged router: tag inserted towards VLAN 200, removed on the way back) and from the
VLAN 100 client (tag rewritten both ways), byte for byte; ARP in both VLANs is answered by
vipd in the VLAN. Once with one worker, then with two on two queue pairs (replies land on the
other worker's queue, so tagged frames are steered to their connection's owner). Frames
tagged VLAN 300, which vipd does not carry, are written on the LB's link: each is dropped and
counted as drop_unknown_vlan. Then the switch gives every untagged frame towards vipd an
802.1p priority tag (VLAN 0, priority 5): the bed's client still downloads through the VIP
and the router's ARP is answered, untagged, with the tagged frames seen on vipd's link.

Everything the scenario creates (two namespaces, two veths, the tc programs) is removed at
its end, also on failure.
"""

import json
import os
import shutil
import subprocess
import tempfile

from robust_e2e import check_downloads, finish, nonzero
from vipdbed import CLIENTS4, PREFIX, VIP4, Vipd, bash, check, check_drops, log, netns

LIB = os.path.dirname(os.path.abspath(__file__))
LB_DEV = f"{PREFIX}-blb0"  # the LB's veth peer in the router namespace (a bridge port)
VC, VS = f"{PREFIX}-vc", f"{PREFIX}-vs"  # VLAN 100 client, VLAN 200 real server
VLAN_KEYS = """
[[ports.vlans]]
id = 100
ipv4 = "10.77.150.10/24"

[[ports.vlans]]
id = 200
ipv4 = "10.77.200.10/24"
"""


# Five IPv4 frames to vipd's MAC tagged VLAN 300, written on the LB's link (argv[1]).
UNKNOWN_VLAN_FRAMES = """
import socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20, 1, 0, 64, 6, 0, bytes([10, 77, 250, 1]), bytes([10, 77, 250, 10]))
for _ in range(5):
    s.send(bytes.fromhex("02770000000a" "027700000300" "8100" "012c" "0800") + ip + bytes(26))
"""


# Frames on argv[1] whose 802.1Q tag (the kernel's, PACKET_AUXDATA) is VLAN 0 priority 5,
# seen within argv[2] seconds: their count on stdout once 20 were seen or the time is up.
PRIORITY_TAGGED = """
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
s.setsockopt(263, 8, 1)  # SOL_PACKET, PACKET_AUXDATA
s.settimeout(0.2)
print("ready", flush=True)
n, end = 0, time.time() + float(sys.argv[2])
while n < 20 and time.time() < end:
    try:
        _, anc, _, _ = s.recvmsg(65535, 256)
    except socket.timeout:
        continue
    for level, kind, data in anc:
        if level == 263 and kind == 8 and len(data) >= 20:
            status, tci = struct.unpack_from("I", data, 0)[0], struct.unpack_from("H", data, 16)[0]
            if status & 0x10 and tci == 5 << 13:  # TP_STATUS_VLAN_VALID
                n += 1
print(n)
"""


def segment(vid, ns, ip, route):
    """VLAN `vid`'s access segment: a namespace `ns` with address `ip`, its veth's router end
    `PREFIX-p<vid>` (the switch's access port, in no bridge)."""
    r = f"{PREFIX}-router"
    bash(f"""
ip netns add {ns}
ip -n {ns} link set lo up
ip netns exec {ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip -n {r} link add {PREFIX}-p{vid} type veth peer name {PREFIX}-e{vid} netns {ns}
ip netns exec {r} ethtool -K {PREFIX}-p{vid} tx off gso off gro off >/dev/null 2>&1 || true
ip netns exec {ns} ethtool -K {PREFIX}-e{vid} tx off gso off gro off >/dev/null 2>&1 || true
ip -n {r} link set {PREFIX}-p{vid} up
ip -n {ns} link set {PREFIX}-e{vid} up
ip -n {ns} addr add {ip}/24 dev {PREFIX}-e{vid}
ip -n {ns} route add {route}
""")


def switch(tmp, vids):
    """The 802.1Q switch (vlan_switch.bpf.c) between the LB's link and the VLANs' access ports."""
    r = f"{PREFIX}-router"

    def ifindex(dev):
        return netns(r, "cat", f"/sys/class/net/{dev}/ifindex").strip()

    pairs = " ".join(f"P({vid}, {ifindex(f'{PREFIX}-p{vid}')})" for vid in vids)
    obj = os.path.join(tmp, "vlan_switch.o")
    bash(f"clang -O2 -g -target bpf -I/usr/include/$(gcc -print-multiarch) -c {LIB}/vlan_switch.bpf.c"
         f" -o {obj} -DVS_TRUNK={ifindex(LB_DEV)} -D'VS_PAIRS={pairs}'")
    tc = f"ip netns exec {r} tc"
    bash(f"{tc} qdisc replace dev {LB_DEV} clsact &&"
         f" {tc} filter replace dev {LB_DEV} ingress pref 48 handle 1 bpf direct-action obj {obj} sec trunk")
    for vid in vids:
        dev = f"{PREFIX}-p{vid}"
        bash(f"{tc} qdisc replace dev {dev} clsact &&"
             f" {tc} filter replace dev {dev} ingress pref 48 handle 1 bpf direct-action obj {obj} sec access")
    return obj


def priority_tags(v, obj):
    """Every untagged frame towards vipd priority-tagged (VLAN 0, priority 5) by the switch:
    the router's ARP (its entries flushed first) and a download from the bed's client are
    answered, and the tagged frames are seen on vipd's link. The tagging is removed after."""
    r = f"{PREFIX}-router"
    tc = f"ip netns exec {r} tc"
    before = v.stats()["total"].get("drop_unknown_vlan", 0)
    sniff = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-lb", "python3", "-c", PRIORITY_TAGGED,
                              f"{PREFIX}-lb0", "15"], stdout=subprocess.PIPE, text=True)
    try:
        check(sniff.stdout.readline().strip() == "ready", "priority tags: the sniffer did not start")
        bash(f"{tc} filter replace dev {LB_DEV} egress pref 49 handle 1 bpf direct-action obj {obj} sec prio")
        bash(f"ip -n {r} neigh flush all")
        out = netns(f"{PREFIX}-client", "curl", "-s", "-m", "5", f"http://{VIP4}/bytes/200000")
        check(len(out) == 200000, f"priority-tagged client -> VIP: {len(out)} bytes, want 200000")
        neigh = netns(r, "ip", "neigh", "show", "nud", "reachable")
        check("02:77:00:00:00:0a" in neigh, f"router's neighbour entry for vipd after priority-tagged ARP: {neigh!r}")
        seen = int(sniff.communicate(timeout=30)[0].strip() or 0)
    finally:
        bash(f"{tc} filter del dev {LB_DEV} egress pref 49 2>/dev/null || true", check=False)
        if sniff.poll() is None:
            sniff.kill()
            sniff.wait()
    check(seen > 0, "priority tags: no frame tagged VLAN 0 priority 5 reached vipd's link: the check proved nothing")
    dropped = v.stats()["total"].get("drop_unknown_vlan", 0) - before
    check(dropped == 0, f"priority-tagged frames counted as drop_unknown_vlan: {dropped}")
    return seen


def teardown():
    r = f"{PREFIX}-router"
    bash(f"ip netns exec {r} tc qdisc del dev {LB_DEV} clsact 2>/dev/null || true", check=False)
    for vid in (100, 200):
        bash(f"ip -n {r} link del {PREFIX}-p{vid} 2>/dev/null || true", check=False)
    bash(f"vipd_kill {PREFIX} vrs 2>/dev/null || true", check=False)
    for ns in (VC, VS):
        bash(f"ip netns del {ns} 2>/dev/null || true", check=False)


def vlan_downloads(ns, count, sources):
    p = subprocess.Popen(
        ["ip", "netns", "exec", ns, "python3", os.path.join(LIB, "downloads.py"),
         "--url", f"http://{VIP4}/bytes/3000000", "--count", str(count), "--rate", "2m",
         "--max-time", "30", "--source-addrs", sources],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p


def scenario_vlan_trunk():
    """802.1Q trunk: clients untagged and in VLAN 100, the real server in VLAN 200, real
    downloads through the VIP; an unknown VLAN's frames dropped and counted. With one worker,
    then two on two queue pairs (replies land on the other worker's queue: tagged frames
    steered to their connection's owner)."""
    for workers in (1, 2):
        trunk(workers)


def trunk(workers):
    teardown()
    tmp = tempfile.mkdtemp(prefix=f"vipd-{PREFIX}-vlan-")
    v = Vipd(f"vlan{workers}", workers=workers, qpairs=workers,
             services=[{"vip": VIP4, "proto": "tcp", "port": 80, "scheduler": "maglev",
                        "rs": [("10.77.200.21", 8080, 1)]}], extra=VLAN_KEYS)
    try:
        segment(100, VC, "10.77.150.2", f"{VIP4}/32 via 10.77.150.10")
        segment(200, VS, "10.77.200.21", "default via 10.77.200.10")
        obj = switch(tmp, (100, 200))
        bash(f"vipd_spawn {PREFIX} vrs {VS} python3 -u {LIB}/rs_server.py --name vrs --port 8080"
             f" --health-file /nonexistent --delay-file /nonexistent")
        bash(f"for i in $(seq 1 100); do grep -q '^listening' $(_vipd_state {PREFIX})/vrs.log && exit 0;"
             f" sleep 0.05; done; exit 1")
        v.start()
        out = netns(f"{PREFIX}-client", "curl", "-s", "-m", "5", f"http://{VIP4}/")
        check(out.startswith("server=vrs") and "client=192.168.77.2:" in out,
              f"untagged client -> VLAN 200 real server: {out!r}")
        out = netns(VC, "curl", "-s", "-m", "5", f"http://{VIP4}/")
        check(out.startswith("server=vrs") and "client=10.77.150.2:" in out,
              f"VLAN 100 client -> VLAN 200 real server: {out!r}")
        log(f"    curl from VLAN 100: {out.strip()}")
        # The VLAN 100 client resolved vipd's VLAN address by ARP, answered inside VLAN 100.
        neigh = netns(VC, "ip", "neigh", "show", "10.77.150.10")
        check("02:77:00:00:00:0a" in neigh, f"VLAN 100 client's neighbour entry for vipd: {neigh!r}")
        # Concurrent 3 MB downloads from both sides, byte for byte.
        p1 = vlan_downloads(f"{PREFIX}-client", 4, CLIENTS4)
        p2 = vlan_downloads(VC, 2, "10.77.150.2")
        check_downloads(finish(p1), "untagged clients through VLAN 200", 4)
        check_downloads(finish(p2), "VLAN 100 client through VLAN 200", 2)
        # The status lists each VLAN's neighbours on its interface (1 = VLAN 100, 2 = VLAN 200:
        # the ports first, then their VLANs).
        neigh = {n["ip"]: n for n in v.api("/api/v1/status")["neighbours"]}
        for ip, iface in (("10.77.150.2", 1), ("10.77.200.21", 2)):
            n = neigh.get(ip, {})
            check(n.get("port") == iface and n.get("state") == "reachable",
                  f"neighbour {ip}: {n}, want reachable on interface {iface}")
        # VLAN 300: vipd does not carry it; every frame of it is dropped and counted.
        r = f"{PREFIX}-router"
        before = v.stats()["total"].get("drop_unknown_vlan", 0)
        netns(r, "python3", "-c", UNKNOWN_VLAN_FRAMES, LB_DEV)
        s = v.stats()
        t = s["total"]
        dropped = t.get("drop_unknown_vlan", 0) - before
        check(dropped == 5, f"5 frames in VLAN 300, {dropped} counted as drop_unknown_vlan")
        exported = sum(float(ln.split()[-1]) for ln in v.api("/metrics").splitlines()
                       if ln.startswith("vipd_drops_total{") and 'reason="unknown_vlan"' in ln)
        check(exported >= dropped, f"/metrics: vipd_drops_total{{reason=\"unknown_vlan\"}} {exported}, want {dropped}")
        check_drops(s, allow={"drop_unknown_vlan"})
        seen = priority_tags(v, obj)
        if workers > 1:
            check(t["steered"] > 0, f"two workers: nothing was steered ({t['steered']}), the test proved nothing")
        log(f"    {workers} worker(s): 6 downloads of 3 MB byte for byte (4 untagged -> VLAN 200, 2 VLAN 100 -> VLAN 200);"
            f" VLAN 300: {dropped} frames dropped as drop_unknown_vlan; steered {t['steered']};"
            f" priority-tagged (VLAN 0): download and ARP answered, {seen} tagged frames seen on vipd's link")
    except Exception:
        log(v.tail())
        log(f"    counters: {json.dumps(nonzero(v))}")
        raise
    finally:
        rc = v.stop()
        teardown()
        shutil.rmtree(tmp, ignore_errors=True)
    check(rc == 0, f"vipd exit code {rc}")


SCENARIOS = {"vlan_trunk": scenario_vlan_trunk}
