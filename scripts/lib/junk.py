#!/usr/bin/env python3
"""Junk frames for vipd's soak (run inside a namespace on vipd's segment only).

Sends, through an AF_PACKET socket on --dev, Ethernet frames addressed to vipd's MAC that a
box facing the internet must drop (or answer) without harm: random bytes, truncated and
bad-checksum IPv4, IPv4 options, TTL 0, TCP with impossible flags and bare ACKs to the VIP
from spoofed sources, unknown later fragments, ICMP errors quoting nothing, UDP to a port
with no service, IPv6 with a wrong payload length or IPv4-mapped source, 802.1Q tags, short
ARP. Spoofed sources are in 198.18.0.0/15 (the benchmarking range, assigned to nothing: what
answers them never leaves the bed's namespaces). Never ARP or ND about real addresses: the
segment's neighbours stay what they are.

--rate frames per second until --count frames or --seconds, whichever comes first.
Prints {"sent": n, "seconds": s, "classes": {name: n}}.
"""

import argparse
import json
import random
import socket
import struct
import time

SRC_MAC = bytes.fromhex("0277ee000001")  # locally administered, no host of the bed


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src, dst, proto, payload, ttl=64, frag=0x4000, ident=0, options=b""):
    ihl = 5 + len(options) // 4
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(payload), ident, frag, ttl, proto, 0, src, dst) + options
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload


def tcp(src, dst, sport, dport, flags, seq):
    t = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(t))
    return t[:16] + struct.pack("!H", csum(pseudo + t)) + t[18:]


def frames(rnd, mac, vip4, vip6):
    eth4 = mac + SRC_MAC + b"\x08\x00"
    eth6 = mac + SRC_MAC + b"\x86\xdd"

    def spoofed():
        return struct.pack("!I", (198 << 24 | 18 << 16) + rnd.randrange(1, 1 << 17))

    def port():
        return rnd.randrange(1024, 65535)

    def random_bytes():
        return mac + SRC_MAC + bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 120)))

    def truncated_ipv4():
        f = eth4 + ipv4(spoofed(), vip4, 6, tcp(spoofed(), vip4, port(), 80, 0x02, 1))
        return f[:rnd.randrange(14, len(f))]

    def bad_checksum():
        f = bytearray(eth4 + ipv4(spoofed(), vip4, 17, struct.pack("!HHHH", port(), 53, 8, 0)))
        f[24] ^= 0x5A
        return bytes(f)

    def ipv4_options():
        src = spoofed()
        return eth4 + ipv4(src, vip4, 6, tcp(src, vip4, port(), 80, 0x02, 7), options=b"\x01\x01\x01\x00")

    def ttl_zero():
        src = spoofed()
        return eth4 + ipv4(src, vip4, 6, tcp(src, vip4, port(), 80, 0x02, 9), ttl=0)

    def bad_flags():
        src = spoofed()
        return eth4 + ipv4(src, vip4, 6, tcp(src, vip4, port(), 80, rnd.choice([0x00, 0x03, 0x06, 0x01]), 3))

    def bare_ack():
        src = spoofed()
        return eth4 + ipv4(src, vip4, 6, tcp(src, vip4, port(), 80, 0x10, rnd.randrange(1 << 32)))

    def later_fragment():
        return eth4 + ipv4(spoofed(), vip4, 17, bytes(64), frag=0x2000 | rnd.randrange(1, 100), ident=rnd.randrange(65536))

    def icmp_error_quoting_nothing():
        quoted = ipv4(vip4, spoofed(), 6, tcp(vip4, spoofed(), 80, port(), 0x12, 5))[:28]
        body = struct.pack("!BBHI", 3, 4, 0, 1400) + quoted
        body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
        return eth4 + ipv4(spoofed(), vip4, 1, body)

    def udp_no_service():
        return eth4 + ipv4(spoofed(), vip4, 17, struct.pack("!HHHH", port(), 9, 8, 0))

    def ipv6_bad_length():
        h = struct.pack("!IHBB16s16s", 6 << 28, 400, 17, 64, b"\x20\x01\x0d\xb8" + bytes(11) + b"\x01", vip6)
        return eth6 + h + struct.pack("!HHHH", port(), 53, 8, 0)

    def ipv6_mapped_source():
        src = bytes(10) + b"\xff\xff" + spoofed()
        h = struct.pack("!IHBB16s16s", 6 << 28, 20, 6, 64, src, vip6)
        return eth6 + h + struct.pack("!HHIIBBHHH", port(), 80, 1, 0, 5 << 4, 0x04, 0, 0, 0)

    def vlan_tagged():
        src = spoofed()
        return mac + SRC_MAC + b"\x81\x00\x00\x07\x08\x00" + ipv4(src, vip4, 6, tcp(src, vip4, port(), 80, 0x02, 1))

    def short_arp():
        return mac + SRC_MAC + b"\x08\x06" + bytes(rnd.randrange(0, 27))

    return [random_bytes, truncated_ipv4, bad_checksum, ipv4_options, ttl_zero, bad_flags, bare_ack,
            later_fragment, icmp_error_quoting_nothing, udp_no_service, ipv6_bad_length,
            ipv6_mapped_source, vlan_tagged, short_arp]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dev", required=True)
    ap.add_argument("--mac", required=True, help="vipd's port MAC")
    ap.add_argument("--vip4", required=True)
    ap.add_argument("--vip6", required=True)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    if not (0 < args.rate <= 100_000 and 0 < args.seconds <= 3600):
        ap.error("--rate in (0, 100000], --seconds in (0, 3600]")
    rnd = random.Random(args.seed)
    mac = bytes.fromhex(args.mac.replace(":", ""))
    makers = frames(rnd, mac, socket.inet_pton(socket.AF_INET, args.vip4), socket.inet_pton(socket.AF_INET6, args.vip6))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((args.dev, 0))
    classes = {}
    sent = 0
    t0 = time.time()
    deadline = t0 + args.seconds
    while sent < args.count and time.time() < deadline:
        # Bursts of 10 at the paced time.
        for _ in range(10):
            make = makers[sent % len(makers)]
            frame = make()
            if len(frame) < 60:
                frame += bytes(60 - len(frame))  # the minimum frame; the IP lengths stay as made
            try:
                s.send(frame)
            except OSError:
                pass
            classes[make.__name__] = classes.get(make.__name__, 0) + 1
            sent += 1
        ahead = t0 + sent / args.rate - time.time()
        if ahead > 0:
            time.sleep(ahead)
    print(json.dumps({"sent": sent, "seconds": round(time.time() - t0, 2), "classes": classes}))


if __name__ == "__main__":
    main()
