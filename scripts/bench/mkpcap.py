#!/usr/bin/env python3
"""Captures for vipd's system benchmark: 60-byte TCP frames (64 B on the wire with the FCS)
that `net_pcap,rx_pcap=F,infinite_rx=1` replays forever, to vipd and to dpdk-testpmd alike.

Addresses match the configuration scripts/bench writes (see bench_config in scripts/bench):
the LB port 10.0.0.10/16 with MAC 02:00:00:00:00:10, VIP 10.100.0.1 (NAT :80, DR :443,
TUN :8443), 100 real servers 10.0.1.1-10.0.1.100 (:8080 for NAT), clients 172.16.0.0/12 behind
the gateway 10.0.0.1 (MAC 02:00:00:00:00:01).

Each case is a list of frames in the order they are replayed:
- nat / dr / tun N: every flow's SYN (shuffled), then ACK rounds over all flows (each round
  shuffled) until the capture holds at least MIN_FRAMES frames. After the first replay every
  frame finds its flow: the established path.
- nat-acks N: ACK rounds only (at least N frames), for a service with sloppy TCP: the first
  replay opens every flow (the general path), after which every frame is an established
  flow's. At 1M flows the pool holds no more than 2M frames, so the nat case would be half
  SYNs of known connections (the general path's, on every replay), not the established path.
- nat-reply N: the SYN pass for N flows, then rounds where each flow sends one client ACK and
  its real server one reply (both directions of NAT; the service has one real server).
- syn-flood N: N distinct SYNs, each once: with a flow table far smaller than N, nearly every
  frame is a lookup miss, a scheduling decision and an insert attempt.
- nat-junk N: the nat case with 1 % junk (not for us, bad IPv4 checksum, not IP, truncated).

Two extras for the ceilings and the scaling case of scripts/bench:
- `--queues Q` writes Q captures (OUT with `-q0`, `-q1`, ... before `.pcap`), one per RX queue
  of a multi-queue net_pcap port (`rx_pcap=` once per queue): each flow's frames go to one
  queue, chosen by a symmetric hash of its addresses and ports (a stand-in for RSS, which
  keeps a flow on one queue and knows nothing of which worker owns it).
- `--l3fwd-rules F` writes DPDK l3fwd's exact-match rule file (`--rule_ipv4`, DPDK 22.11's
  `em_route_parse.c` format: `R<dst> <src> <dst port> <src port> <proto> <out port>`), one
  rule per distinct 5-tuple of the capture, all to port `--l3fwd-port`: every frame of the
  capture is a hit in l3fwd's hash.

Written by hand: pcap is a 24-byte header plus a 16-byte header per record, and the frames
are fixed templates with two checksums; a packet library would only be slower at 2M frames.
"""

import argparse
import os
import random
import struct
import sys

LB_MAC = bytes([2, 0, 0, 0, 0, 0x10])
GW_MAC = bytes([2, 0, 0, 0, 0, 1])
# The first real server's MAC (the bench configuration gives real server i 02:00:00:01:00:i).
RS_MAC0 = bytes([2, 0, 0, 1, 0, 0])
VIP = bytes([10, 100, 0, 1])
PORTS = {"nat": 80, "dr": 443, "tun": 8443}
BACKENDS = 100
MIN_FRAMES = 32768
SYN, ACK = 0x02, 0x10


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def tcp_frame(src, dst, sport, dport, flags, src_mac=GW_MAC, bad_ip_checksum=False):
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 46, 0, 0x4000, 64, 6, 0, src, dst))
    c = fold(csum(bytes(ip)))
    if bad_ip_checksum:
        c ^= 0x5A5A
    ip[10:12] = struct.pack("!H", c)
    tcp = bytearray(struct.pack("!HHIIBBHHH", sport, dport, 1, 1 if flags & ACK else 0, 0x50, flags, 65535, 0, 0))
    payload = b"vipd\0\0"
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    tcp[16:18] = struct.pack("!H", fold(csum(pseudo) + csum(bytes(tcp) + payload)))
    return LB_MAC + src_mac + b"\x08\x00" + bytes(ip) + bytes(tcp) + payload


def client(i):
    """Flow i's client endpoint: one of 2^20 addresses in 172.16.0.0/12, a port from i."""
    if not 0 <= i < 1 << 20:
        raise ValueError("at most 2^20 flows")
    return struct.pack("!I", 0xAC100000 + i), 10000 + i % 50000


def backend(i):
    return bytes([10, 0, 1, 1 + i % BACKENDS])


def forward_case(mode, flows, rng):
    dport = PORTS[mode]
    order = list(range(flows))
    frames = []
    rng.shuffle(order)
    frames += [tcp_frame(*(lambda c: (c[0], VIP, c[1], dport, SYN))(client(i))) for i in order]
    while len(frames) < max(MIN_FRAMES, 2 * flows):
        rng.shuffle(order)
        frames += [tcp_frame(*(lambda c: (c[0], VIP, c[1], dport, ACK))(client(i))) for i in order]
    return frames


def acks_case(flows, rng):
    order = list(range(flows))
    frames = []
    while len(frames) < max(MIN_FRAMES, flows):
        rng.shuffle(order)
        frames += [tcp_frame(*(lambda c: (c[0], VIP, c[1], PORTS["nat"], ACK))(client(i))) for i in order]
    return frames


def reply_case(flows, rng):
    """Both NAT directions. The service of this case has one real server (10.0.1.1:8080), so
    the capture knows where each flow went: each round, every flow sends an ACK and the real
    server answers it."""
    order = list(range(flows))
    rng.shuffle(order)
    frames = [tcp_frame(*(lambda c: (c[0], VIP, c[1], PORTS["nat"], SYN))(client(i))) for i in order]
    while len(frames) < max(MIN_FRAMES, 3 * flows):
        rng.shuffle(order)
        for i in order:
            addr, port = client(i)
            frames.append(tcp_frame(addr, VIP, port, PORTS["nat"], ACK))
            frames.append(tcp_frame(backend(0), addr, 8080, port, ACK | 0x08, src_mac=RS_MAC0))
    return frames


def syn_flood(flows, rng):
    order = list(range(flows))
    rng.shuffle(order)
    return [tcp_frame(*(lambda c: (c[0], VIP, c[1], PORTS["nat"], SYN))(client(i))) for i in order]


def junk_frames(rng, n):
    out = []
    for k in range(n):
        kind = k % 4
        if kind == 0:  # not for vipd: another destination
            out.append(tcp_frame(bytes([172, 16, 9, 9]), bytes([10, 0, 9, 9]), 4000 + k, 80, ACK))
        elif kind == 1:  # bad IPv4 header checksum
            out.append(tcp_frame(bytes([172, 16, 9, 10]), VIP, 4000 + k, 80, ACK, bad_ip_checksum=True))
        elif kind == 2:  # not IP (an unknown EtherType)
            out.append(LB_MAC + GW_MAC + b"\x88\xb5" + bytes(46))
        else:  # truncated IPv4 header
            out.append(LB_MAC + GW_MAC + b"\x08\x00" + bytes([0x45, 0, 0, 46]) + bytes(16))
    return out


def junk_case(flows, rng):
    frames = forward_case("nat", flows, rng)
    junk = junk_frames(rng, max(1, len(frames) // 99))
    step = len(frames) // len(junk)
    out = []
    for i, f in enumerate(frames):
        out.append(f)
        if i % step == step - 1 and junk:
            out.append(junk.pop())
    return out + junk


def write_pcap(path, frames):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", i // 1000000, i % 1000000, len(fr), len(fr)))
            f.write(fr)
    os.replace(tmp, path)


def five_tuple(frame):
    """(src, dst, sport, dport, proto) of an IPv4 TCP/UDP frame without options, else None."""
    if len(frame) < 38 or frame[12:14] != b"\x08\x00" or frame[14] != 0x45 or frame[23] not in (6, 17):
        return None
    return frame[26:30], frame[30:34], frame[34:36], frame[36:38], frame[23]


def symmetric_hash(t):
    """A hash of a 5-tuple that both directions of a flow share (XOR of the two endpoints,
    then a multiplicative mix)."""
    src, dst, sport, dport, _ = t
    addrs = int.from_bytes(src, "big") ^ int.from_bytes(dst, "big")
    ports = int.from_bytes(sport, "big") ^ int.from_bytes(dport, "big")
    x = ((addrs << 16 | ports) * 0x9E3779B97F4A7C15) & (2**64 - 1)
    return x >> 40


def split_queues(frames, queues):
    """The frames of each queue, in capture order; a flow's frames (both directions) share one."""
    out = [[] for _ in range(queues)]
    for fr in frames:
        t = five_tuple(fr)
        q = 0 if t is None else symmetric_hash(t) % queues
        out[q].append(fr)
    return out


def write_l3fwd_rules(path, frames, port):
    seen = set()
    rows = []
    for fr in frames:
        t = five_tuple(fr)
        if t is None or t in seen:
            continue
        seen.add(t)
        src, dst, sport, dport, proto = t
        rows.append(f"R{'.'.join(map(str, dst))} {'.'.join(map(str, src))} "
                    f"{int.from_bytes(dport, 'big')} {int.from_bytes(sport, 'big')} {proto} {port}\n")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(rows)
    os.replace(tmp, path)
    return len(rows)


def queue_path(out, q):
    base = out[:-5] if out.endswith(".pcap") else out
    return f"{base}-q{q}.pcap"


def build(case, flows, seed=1):
    rng = random.Random(seed)
    if case in PORTS:
        return forward_case(case, flows, rng)
    if case == "nat-acks":
        return acks_case(flows, rng)
    if case == "nat-reply":
        return reply_case(flows, rng)
    if case == "syn-flood":
        return syn_flood(flows, rng)
    if case == "nat-junk":
        return junk_case(flows, rng)
    raise ValueError(f"unknown case {case!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case", choices=[*PORTS, "nat-acks", "nat-reply", "syn-flood", "nat-junk"])
    ap.add_argument("flows", type=int)
    ap.add_argument("out")
    ap.add_argument("--queues", type=int, default=0, help="also write one capture per RX queue")
    ap.add_argument("--l3fwd-rules", help="also write l3fwd's exact-match rules for the capture's flows")
    ap.add_argument("--l3fwd-port", type=int, default=1, help="the output port of those rules")
    a = ap.parse_args()
    frames = build(a.case, a.flows)
    write_pcap(a.out, frames)
    print(f"{a.out}: {len(frames)} frames", file=sys.stderr)
    if a.queues > 1:
        for q, fr in enumerate(split_queues(frames, a.queues)):
            write_pcap(queue_path(a.out, q), fr)
            print(f"{queue_path(a.out, q)}: {len(fr)} frames", file=sys.stderr)
    if a.l3fwd_rules:
        n = write_l3fwd_rules(a.l3fwd_rules, frames, a.l3fwd_port)
        print(f"{a.l3fwd_rules}: {n} rules to port {a.l3fwd_port}", file=sys.stderr)


if __name__ == "__main__":
    main()
