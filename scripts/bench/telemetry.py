"""A client of DPDK's telemetry socket (`/var/run/dpdk/<prefix>/dpdk_telemetry.v2`, on by
default in every DPDK 22.11 process): the port counters of programs that print none (l3fwd).
The protocol: connect (SOCK_SEQPACKET), read the greeting, send a command, read one JSON
reply. Written here because it is these few lines (usertools' dpdk-telemetry.py is
interactive)."""

import json
import os
import socket
import time


def path(prefix):
    return os.path.join("/var/run/dpdk", prefix, "dpdk_telemetry.v2")


def query(prefix, command):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(5)
    try:
        s.connect(path(prefix))
        greeting = json.loads(s.recv(16384))
        s.send(command.encode())
        reply = json.loads(s.recv(int(greeting.get("max_output_len", 16384)) + 1024))
    finally:
        s.close()
    return reply


def port_stats(prefix, port):
    """ipackets, opackets, ... of ethdev port `port` (scalars only)."""
    stats = query(prefix, f"/ethdev/stats,{port}")["/ethdev/stats"]
    return {k: v for k, v in stats.items() if isinstance(v, (int, float))}


def wait_for(prefix, proc, timeout):
    """Wait until the process answers on its telemetry socket; False if it exited or did not
    answer in time."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            query(prefix, "/")
            return True
        except (OSError, ValueError):
            time.sleep(0.2)
    return False
