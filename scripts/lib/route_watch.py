#!/usr/bin/env python3
"""Watch a namespace's IPv4 routing table (rtnetlink) and print each change to routes inside a
prefix as one JSON line, stamped when the kernel told us (Python 3 standard library only):

  route_watch.py 10.77.100.0/24
  {"t": 1764624000.123456, "event": "new", "dst": "10.77.100.1/32", "via": ["10.77.0.11", "10.77.0.12"]}
  {"t": ..., "event": "del", "dst": "10.77.100.1/32", "via": ["10.77.0.12"]}

The scale-out test bed runs it in the router's namespace to time a failure (or a drain) to the
moment the router's route for a VIP stops naming the box. Prints {"event": "ready"} once
subscribed; a first dump of the matching routes follows with event "dump". Runs until killed.
"""

import ipaddress
import json
import socket
import struct
import sys
import time

RTMGRP_IPV4_ROUTE = 0x40
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
NLMSG_DONE, NLMSG_ERROR = 3, 2
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTA_DST, RTA_GATEWAY, RTA_MULTIPATH = 1, 5, 9


def attrs(data):
    """(type, payload) of each rtattr in data."""
    off = 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("HH", data, off)
        if length < 4:
            break
        yield kind & 0x3FFF, data[off + 4:off + length]
        off += (length + 3) & ~3


def gateways(payload):
    """Gateways of an RTA_MULTIPATH payload (a list of rtnexthop with their attributes)."""
    out, off = [], 0
    while off + 8 <= len(payload):
        length = struct.unpack_from("H", payload, off)[0]
        if length < 8:
            break
        for kind, value in attrs(payload[off + 8:off + length]):
            if kind == RTA_GATEWAY and len(value) == 4:
                out.append(socket.inet_ntoa(value))
        off += (length + 3) & ~3
    return out


def route(body):
    """(dst/len, [gateways]) of an rtmsg, or None when it is not IPv4."""
    family, dst_len = struct.unpack_from("BB", body, 0)
    if family != socket.AF_INET:
        return None
    dst, via = "0.0.0.0", []
    for kind, value in attrs(body[12:]):
        if kind == RTA_DST and len(value) == 4:
            dst = socket.inet_ntoa(value)
        elif kind == RTA_GATEWAY and len(value) == 4:
            via = [socket.inet_ntoa(value)]
        elif kind == RTA_MULTIPATH:
            via = gateways(value)
    return f"{dst}/{dst_len}", sorted(via)


def main():
    if len(sys.argv) != 2:
        print("usage: route_watch.py PREFIX", file=sys.stderr)
        return 2
    within = ipaddress.ip_network(sys.argv[1])
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((0, RTMGRP_IPV4_ROUTE))
    print(json.dumps({"event": "ready", "t": time.time()}), flush=True)
    # A dump of what is there now (rtmsg with family AF_INET, everything else zero).
    req = struct.pack("BBBBBBBBI", socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
    s.send(struct.pack("IHHII", 16 + len(req), RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + req)
    while True:
        data = s.recv(1 << 16)
        t = time.time()
        off = 0
        while off + 16 <= len(data):
            length, kind, _flags, seq, _pid = struct.unpack_from("IHHII", data, off)
            if length < 16:
                break
            body = data[off + 16:off + length]
            off += (length + 3) & ~3
            if kind not in (RTM_NEWROUTE, RTM_DELROUTE):
                continue
            r = route(body)
            if r is None or not ipaddress.ip_network(r[0]).subnet_of(within):
                continue
            event = "dump" if seq == 1 else ("new" if kind == RTM_NEWROUTE else "del")
            print(json.dumps({"t": t, "event": event, "dst": r[0], "via": r[1]}), flush=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
