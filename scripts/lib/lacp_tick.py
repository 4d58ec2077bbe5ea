"""Put one small frame on an interface at a fixed interval, for a bounded time: the bond_lacp
scenario's nudge for dpdk-testpmd, whose io forwarding calls a tx burst on its 802.3ad bond
(and so sends the LACPDUs the bonding PMD queued) only when its other port received a frame.

Usage: lacp_tick.py IFACE DST_MAC INTERVAL_S MAX_S

The frame is the IEEE local experimental ethertype 0x88b5 (no protocol of its own), from a
locally administered source MAC, padded to the Ethernet minimum; a receiver that runs no such
protocol drops it.
"""

import socket
import sys
import time


def main():
    iface, dst, interval, limit = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    frame = bytes.fromhex(dst.replace(":", "")) + bytes.fromhex("02770000ff01") + b"\x88\xb5"
    frame += b"vipd e2e lacp tick".ljust(46, b"\0")
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            s.send(frame)
        except OSError:
            pass  # the interface is down for a moment: the next tick goes again
        time.sleep(interval)


if __name__ == "__main__":
    main()
