#!/usr/bin/env python3
"""A spoofed-source SYN flood for vipd's flood test (run inside the client namespace only).

Sends TCP SYNs to DST:PORT from --flows distinct (source address, source port) pairs drawn
from 198.18.0.0/15 (the benchmarking range, RFC 2544: assigned to nothing, it never leaves the
test bed's namespaces), or for an IPv6 DST from 2001:2::/48 (IPv6's, RFC 5180), cycling through them until --count packets are sent or --seconds have
passed, whichever comes first. Checksums are right, so the real servers answer the SYNs.
Prints {"sent": n, "seconds": s, "pps": r, "flows": f}.
"""

import argparse
import json
import random
import socket
import struct
import time


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def syn(src, dst, sport, dport, seq):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return ip + tcp


def syn6(src, dst, sport, dport, seq):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!IxxxB", len(tcp), 6)
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, 64, src, dst)
    return ip + tcp


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--flows", type=int, default=65536)
    ap.add_argument("--count", type=int, default=500000)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    rnd = random.Random(11)
    v6 = ":" in args.dst
    dst = socket.inet_pton(socket.AF_INET6 if v6 else socket.AF_INET, args.dst)
    packets = []
    for _ in range(args.flows):
        if v6:
            src = bytes.fromhex("20010002") + bytes(10) + struct.pack("!H", rnd.randrange(1, 1 << 16))
            packets.append(syn6(src, dst, rnd.randrange(1024, 65535), args.port, rnd.randrange(1 << 32)))
            continue
        src = struct.pack("!I", (198 << 24 | 18 << 16) + rnd.randrange(1, 1 << 17))
        packets.append(syn(src, dst, rnd.randrange(1024, 65535), args.port, rnd.randrange(1 << 32)))
    if v6:
        # IPPROTO_RAW over IPv6: the packet carries its own header (IPV6_HDRINCL implied).
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    addr = (args.dst, 0)
    sent = 0
    t0 = time.time()
    deadline = t0 + args.seconds
    n = len(packets)
    while sent < args.count:
        for _ in range(256):
            try:
                s.sendto(packets[sent % n], addr)
            except OSError:
                pass  # the qdisc is full: drop, as a flooder would
            sent += 1
        if time.time() >= deadline:
            break
    dt = time.time() - t0
    print(json.dumps({"sent": sent, "seconds": round(dt, 2), "pps": int(sent / dt), "flows": n}))


if __name__ == "__main__":
    main()
