"""End-to-end scenarios for frames about state vipd does not hold (issue 20, section 7),
registered by scripts/e2e:

* pmtu_untracked: real "fragmentation needed" errors from the router about connections vipd
  has no entry for (it restarted under them), relayed to their real servers by the consistent
  hash, in NAT, DR and TUN;
* fragments_elsewhere: a second vipd box on the server segment, and a router that sends every
  datagram's later fragments to it and its first fragment (and everything else) to the first
  box: with `hash = "3-tuple"` both boxes place a datagram on one real server without sharing
  anything, in DR and NAT, IPv4 and IPv6; with the default 5-tuple hash the second box drops
  the fragments (the negative control).

Each scenario builds on the bed scripts/e2e set up and undoes what it changed, also on failure.
"""

import json
import time

from robust_e2e import RS4, RS6, BedVipd, check_downloads, downloads, finish, nonzero
from vipdbed import CLIENTS4, CLIENTS6, PREFIX, VIP4, VIP6, Vipd, bash, check, check_drops, log, netns


# ---------------------------------------------------------------------------------------------
def scenario_pmtu_untracked():
    """PMTU errors about connections vipd does not track: downloads start, vipd restarts (no
    entry survives), then the router's link to the client narrows to 1400; its frag-needed
    errors reach the real servers by the consistent hash alone, or the downloads stall."""
    ns, dev = f"{PREFIX}-router", f"{PREFIX}-rc0"
    base = {"vip": VIP4, "proto": "tcp", "scheduler": "maglev",
            "rs": [(RS4[0], 8080, 1), (RS4[1], 8080, 1), (RS4[2], 8080, 1)]}
    for mode, port in (("nat", 80), ("dr", 8080), ("tunnel", 8080)):
        for i in (1, 2, 3):
            if mode == "dr":
                bash(f"vipd_rs_dr_setup {PREFIX} {i} {VIP4}")
            elif mode == "tunnel":
                # No MSS clamping: the real servers' segments are sized by the client's MSS.
                bash(f"VIPD_TUN_ADVMSS4= VIPD_TUN_ADVMSS6= vipd_rs_tun_setup {PREFIX} {i} {VIP4}")
            bash(f"ip netns exec {PREFIX}-rs{i} ip route flush cache", check=False)
        v = Vipd(f"pmtu-untracked-{mode}", services=[dict(base, port=port, mode=mode)])
        try:
            v.start()
            # 6 downloads of 4 MB at 600 kB/s each: about 7 s, across the restart and the
            # narrowing, so most of each is sent after both.
            p = downloads(f"http://{VIP4}:{port}/bytes/4000000", 6, "600k", max_time=60)
            time.sleep(1.0)
            rc = v.stop()
            check(rc == 0, f"{mode}: vipd exit code {rc} on SIGTERM")
            v.start()
            netns(ns, "ip", "link", "set", dev, "mtu", "1400")
            r = finish(p)
            check_downloads(r, f"PMTU after a restart, {mode}", 6)
            s = v.stats()
            t = s["total"]
            check(t["flows_created"] == 0, f"{mode}: the restarted vipd made entries ({t['flows_created']})")
            check(t["icmp_errors_stateless"] > 0, f"{mode}: no ICMP error relayed, the test proved nothing")
            check(t["icmp_errors_stateless"] == t["icmp_errors_to_real_server"],
                  f"{mode}: {t['icmp_errors_to_real_server']} relayed, {t['icmp_errors_stateless']} of them by the hash")
            # The downloads' segments reach the new vipd before it has resolved its neighbours.
            check_drops(s, allow={"drop_neighbour_unresolved"})
            servers = sorted({x["server"] for x in r["results"]})
            log(f"    {mode}: 6 downloads of 4 MB complete byte for byte through a 1400-byte hop "
                f"narrowed after a vipd restart; {t['icmp_errors_stateless']} frag-needed errors "
                f"relayed by the consistent hash (no entry: flows_created 0, tcp_no_flow_stateless "
                f"{t['tcp_no_flow_stateless']}); servers {servers}")
        except Exception:
            log(v.tail())
            log(f"    counters: {nonzero(v)}")
            raise
        finally:
            rc = v.stop()
            netns(ns, "ip", "link", "set", dev, "mtu", "1500", check=False)
            for i in (1, 2, 3):
                if mode == "tunnel":
                    bash(f"vipd_rs_tun_detach {PREFIX} {i}", check=False)
                bash(f"vipd_rs_gateway {PREFIX} {i} lb", check=False)
                bash(f"ip netns exec {PREFIX}-rs{i} ip route flush cache", check=False)
        check(rc == 0, f"vipd exit code {rc}")


# ---------------------------------------------------------------------------------------------
BOX2_NS = f"{PREFIX}-box9"  # netns.sh's teardown knows box namespaces
BOX2_IF = f"{PREFIX}-b9"
BOX2_PEER = f"{PREFIX}-bb9"
BOX2_MAC = "02:77:00:00:01:09"
BOX2_4, BOX2_6 = "10.77.0.19", "fd00:77::19"
BOX2_API = 19289
MARK, TABLE = "0x77", "177"
NFT_TABLE = f"{PREFIX}_later_frags"


class SecondBox(BedVipd):
    """vipd on the second box: its own namespace, port addresses and API port, net_af_xdp
    (net_af_packet would have the kernel hold the later fragments, waiting for a first)."""

    def __init__(self, name, **kw):
        super().__init__(name, device=f"net_af_xdp0,iface={BOX2_IF}", ns=BOX2_NS, api_port=BOX2_API, **kw)

    def write_config(self, services):
        super().write_config(services)
        with open(self.config) as f:
            text = f.read()
        text = text.replace('ipv4 = "10.77.0.10/24"', f'ipv4 = "{BOX2_4}/24"')
        text = text.replace('ipv6 = "fd00:77::10/64"', f'ipv6 = "{BOX2_6}/64"')
        with open(self.config, "w") as f:
            f.write(text)


def second_box_up():
    """Box 2's namespace and its DPDK-owned veth on the server segment's bridge (as netns.sh
    builds the LB's), and the router's split: later fragments to the VIPs go to box 2."""
    r, br = f"{PREFIX}-router", f"{PREFIX}-br0"
    bash(f"""
_vipd_new_ns {BOX2_NS}
ip -n {BOX2_NS} link add {BOX2_IF} address {BOX2_MAC} type veth peer name {BOX2_PEER} netns {r}
_vipd_sysctl {BOX2_NS} net.ipv6.conf.{BOX2_IF}.disable_ipv6=1
ip -n {BOX2_NS} link set {BOX2_IF} arp off
_vipd_offloads_off {BOX2_NS} {BOX2_IF}
_vipd_offloads_off {r} {BOX2_PEER}
ip -n {r} link set {BOX2_PEER} master {br}
ip -n {r} link set {BOX2_PEER} up
ip -n {BOX2_NS} link set {BOX2_IF} up
""")
    # Marked before anything could reassemble (defragmentation hooks at -400; the router loads
    # none), so each fragment is routed on its own: offset 0 by the main table, the rest by 177.
    rules = f"""table inet {NFT_TABLE} {{
  chain pre {{
    type filter hook prerouting priority -450;
    ip daddr {VIP4} ip frag-off & 0x1fff != 0 meta mark set {MARK}
    ip6 daddr {VIP6} frag frag-off != 0 meta mark set {MARK}
  }}
}}
"""
    bash(f"ip netns exec {r} nft -f - <<'EOF'\n{rules}EOF")
    for fam, vip, via in (("-4", f"{VIP4}/32", BOX2_4), ("-6", f"{VIP6}/128", BOX2_6)):
        netns(r, "ip", fam, "rule", "add", "fwmark", MARK, "table", TABLE)
        netns(r, "ip", fam, "route", "add", vip, "via", via, "dev", br, "table", TABLE)


def second_box_down():
    r = f"{PREFIX}-router"
    netns(r, "nft", "delete", "table", "inet", NFT_TABLE, check=False)
    for fam in ("-4", "-6"):
        netns(r, "ip", fam, "route", "flush", "table", TABLE, check=False)
        netns(r, "ip", fam, "rule", "del", "fwmark", MARK, "table", TABLE, check=False)
    bash(f"""
for pid in $(ip netns pids {BOX2_NS} 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
sleep 0.2
ip netns del {BOX2_NS} 2>/dev/null || true
""", check=False)


# Datagrams of 3000 bytes (three fragments in either family at MTU 1500) from the client's
# addresses in turn; each answered whole by a real server ("server=rsN ... data=<payload>").
CLIENT = r"""
import json, socket, sys
vip, n, timeout, sources = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4].split(',')
fam = socket.AF_INET6 if ':' in vip else socket.AF_INET
ok = bad = 0
servers, by_source = {}, {}
for i in range(n):
    src = sources[i % len(sources)]
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((src, 0))
    s.settimeout(timeout)
    payload = (b'%05d' % i) * 600
    try:
        s.sendto(payload, (vip, 5353))
        data, _ = s.recvfrom(65535)
        text = data.decode(errors='replace')
        if text.endswith('data=' + payload.decode()):
            ok += 1
            name = text.split()[0]
            servers[name] = servers.get(name, 0) + 1
            by_source.setdefault(src, set()).add(name)
        else:
            bad += 1
    except OSError:
        bad += 1
    s.close()
print(json.dumps({'ok': ok, 'bad': bad, 'servers': servers,
                  'by_source': {k: sorted(v) for k, v in by_source.items()}}))
"""


def datagrams(vip, n, timeout, sources):
    out = netns(f"{PREFIX}-client", "python3", "-c", CLIENT, vip, str(n), str(timeout), sources, timeout=n * timeout + 60)
    return json.loads(out)


def scenario_fragments_elsewhere():
    """Later fragments on another box: the router sends each datagram's later fragments to a
    second vipd box, the rest to the first; with hash = "3-tuple" every datagram is answered
    whole (DR and NAT, IPv4 and IPv6); with the default 5-tuple hash the second box drops them."""
    second_box_up()
    try:
        for mode, hash_, n in (("dr", "3-tuple", 60), ("nat", "3-tuple", 60), ("dr", "5-tuple", 10)):
            run_two_boxes(mode, hash_, n)
    finally:
        second_box_down()


def run_two_boxes(mode, hash_, n):
    keys = [f'hash = "{hash_}"']
    services = [
        {"vip": VIP4, "proto": "udp", "port": 5353, "mode": mode, "keys": keys,
         "rs": [(RS4[0], 5353, 1), (RS4[1], 5353, 1), (RS4[2], 5353, 1)]},
        {"vip": VIP6, "proto": "udp", "port": 5353, "mode": mode, "keys": keys,
         "rs": [(RS6[0], 5353, 1), (RS6[1], 5353, 1), (RS6[2], 5353, 1)]},
    ]
    if mode == "dr":
        for i in (1, 2, 3):
            bash(f"vipd_rs_dr_setup {PREFIX} {i} {VIP4} {VIP6}")
    name = f"frag2-{mode}-{hash_[0]}"
    box1 = BedVipd(f"{name}-a", services=services, device=f"net_af_xdp0,iface={PREFIX}-lb0")
    box2 = SecondBox(f"{name}-b", services=services)
    try:
        box1.start()
        box2.start()
        control = hash_ == "5-tuple"
        for vip, sources, label in ((VIP4, CLIENTS4, "IPv4"), (VIP6, CLIENTS6, "IPv6")):
            r = datagrams(vip, n, 1.0 if control else 3.0, sources)
            if control:
                check(r["ok"] == 0, f"negative control, {label}: {r['ok']}/{n} answered without the later fragments")
                continue
            check(r["ok"] == n, f"{mode} {label}: {r['ok']}/{n} datagrams answered whole: {r}")
            check(len(r["servers"]) >= 2, f"{mode} {label}: the datagrams did not spread: {r['servers']}")
            split = {s: v for s, v in r["by_source"].items() if len(v) > 1}
            check(not split, f"{mode} {label}: a client address reached several real servers: {split}")
            log(f"    {mode} {label}: {n} datagrams of 3000 bytes, first fragments via box 1, later "
                f"ones via box 2: all answered whole; spread {r['servers']} (one server per client address)")
        s1, s2 = box1.stats(), box2.stats()
        t1, t2 = s1["total"], s2["total"]
        if control:
            check(t2["drop_fragment_unknown"] >= 2 * 2 * n,
                  f"negative control: box 2 dropped {t2['drop_fragment_unknown']} later fragments")
            check(t2["fragments_stateless"] == 0, f"negative control: {t2['fragments_stateless']} placed")
            log(f"    negative control (hash = \"5-tuple\", DR): 0/{n} answered per family; box 2 "
                f"drop_fragment_unknown {t2['drop_fragment_unknown']} (no ports, no hash)")
            return
        # Two later fragments per datagram, both families.
        check(t2["fragments_stateless"] == 2 * 2 * n and t2["drop_fragment_unknown"] == 0,
              f"box 2: fragments_stateless {t2['fragments_stateless']}, drop_fragment_unknown {t2['drop_fragment_unknown']}")
        check(t1["fragments_stateless"] == 0 and t1["drop_fragment_unknown"] == 0,
              f"box 1: fragments_stateless {t1['fragments_stateless']}, drop_fragment_unknown {t1['drop_fragment_unknown']}")
        check(t1["fragments_forwarded"] >= 2 * n, f"box 1: fragments_forwarded {t1['fragments_forwarded']}")
        check_drops(s1)
        check_drops(s2)
        log(f"    {mode}: box 1 fragments_forwarded {t1['fragments_forwarded']} (first fragments"
            f"{', and the replies' if mode == 'nat' else ''}), box 2 fragments_stateless "
            f"{t2['fragments_stateless']}, no fragment dropped, no state on box 2 "
            f"(flows_created {t2['flows_created']})")
    except Exception:
        for b in (box1, box2):
            log(b.tail())
            log(f"    counters: {nonzero(b)}")
        raise
    finally:
        rcs = (box1.stop(), box2.stop())
        if mode == "dr":
            for i in (1, 2, 3):
                bash(f"vipd_rs_gateway {PREFIX} {i} lb", check=False)
    check(rcs == (0, 0), f"vipd exit codes {rcs}")


SCENARIOS = {
    "pmtu_untracked": scenario_pmtu_untracked,
    "fragments_elsewhere": scenario_fragments_elsewhere,
}
