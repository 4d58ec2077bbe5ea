#!/usr/bin/env python3
"""The client side of vipd's soak (scripts/soak, scenario `soak`): run inside the client
namespace, for --seconds, mixed traffic through the VIPs, every request recorded.

- short TCP: --rate connections per second (IPv4 and IPv6 in turn, source addresses
  round-robin), one `GET /` each with Connection: close, --timeout per operation;
- bulk downloads: --downloads loops, each fetching `GET /bytes/N` again and again, read at
  about --download-rate bytes/s, the body checked byte for byte against the pattern
  rs_server.py sends;
- UDP: --udp-rate exchanges per second with the UDP echo service, each from a new socket (a
  new flow), the answer checked (from the VIP, carrying the request).

Prints one JSON object: per kind the ok and failed counts, every failure (capped at 2000) with
its start and end (Unix time, shared with the test: namespaces share the clock), source,
server if known and error, and bytes downloaded. Bounded: nothing starts after --seconds, and
every operation has a timeout.
"""

import argparse
import hashlib
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rs_server import pattern_bytes  # noqa: E402

MAX_FAILURES = 2000


class Record:
    def __init__(self):
        self.lock = threading.Lock()
        self.kinds = {}
        self.failures = []
        self.failure_count = 0
        self.bytes = 0

    def add(self, kind, start, ok, src, server="", error=""):
        end = time.time()
        with self.lock:
            k = self.kinds.setdefault(kind, {"ok": 0, "failed": 0})
            k["ok" if ok else "failed"] += 1
            if not ok:
                self.failure_count += 1
                if len(self.failures) < MAX_FAILURES:
                    self.failures.append({"kind": kind, "start": round(start, 3), "end": round(end, 3),
                                          "src": src, "server": server, "error": error[:160]})


def http_get(vip, port, path, src, timeout, on_body=None):
    """One GET with Connection: close; returns (status, X-Server, body or None when streamed)."""
    family = socket.AF_INET6 if ":" in vip else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.bind((src, 0))
        s.connect((vip, port))
        host = f"[{vip}]" if ":" in vip else vip
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed after {len(head)} header bytes")
            head += chunk
        head, rest = head.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        server = next((ln.split(":", 1)[1].strip() for ln in lines[1:] if ln.lower().startswith("x-server:")), "")
        if on_body is None:
            body = rest
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
            return status, server, body
        on_body(rest)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            on_body(chunk)
        return status, server, None
    finally:
        s.close()


def short_loop(args, rec, stop_at, sources):
    """Paced short connections from a small pool of threads."""
    period = 1.0 / args.rate
    lock = threading.Lock()
    state = {"next": time.time(), "i": 0}

    def worker():
        while True:
            with lock:
                now = time.time()
                at = state["next"]
                if at >= stop_at:
                    return
                state["next"] = max(at, now - 1.0) + period
                i = state["i"]
                state["i"] += 1
            if at > now:
                time.sleep(at - now)
            vip, srcs = (args.vip6, sources[1]) if args.vip6 and i % 2 else (args.vip4, sources[0])
            src = srcs[i % len(srcs)]
            start = time.time()
            try:
                status, server, body = http_get(vip, args.port, "/", src, args.timeout)
                ok = status == 200 and body.startswith(f"server={server} client=".encode())
                rec.add("tcp6" if ":" in vip else "tcp4", start, ok, src, server, "" if ok else f"status {status} body {body[:60]!r}")
            except (OSError, ValueError, IndexError) as e:
                rec.add("tcp6" if ":" in vip else "tcp4", start, False, src, "", f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker) for _ in range(args.parallel)]
    for t in threads:
        t.start()
    return threads


def download_loop(args, rec, stop_at, src):
    want = hashlib.sha256(pattern_bytes(args.download_bytes)).hexdigest()
    while time.time() < stop_at:
        start = time.time()
        h = hashlib.sha256()
        got = [0]

        def on_body(chunk):
            h.update(chunk)
            got[0] += len(chunk)
            # Read at about --download-rate: the transfer lasts long enough for faults to hit it.
            ahead = got[0] / args.download_rate - (time.time() - start)
            if ahead > 0:
                time.sleep(ahead)

        server = ""
        try:
            status, server, _ = http_get(args.vip4, args.port, f"/bytes/{args.download_bytes}", src,
                                         args.timeout, on_body)
            ok = status == 200 and got[0] == args.download_bytes and h.hexdigest() == want
            rec.add("download", start, ok, src, server, "" if ok else f"status {status}, {got[0]} bytes, sha {'ok' if h.hexdigest() == want else 'wrong'}")
        except (OSError, ValueError, IndexError) as e:
            rec.add("download", start, False, src, server, f"{type(e).__name__}: {e} after {got[0]} bytes")
        with rec.lock:
            rec.bytes += got[0]
        time.sleep(0.2)


def udp_loop(args, rec, stop_at, sources):
    period = 1.0 / args.udp_rate
    i = 0
    next_at = time.time()
    while next_at < stop_at:
        now = time.time()
        if next_at > now:
            time.sleep(next_at - now)
        next_at = max(next_at, time.time() - 1.0) + period
        src = sources[i % len(sources)]
        payload = f"soak-{i}-{src}".encode()
        i += 1
        start = time.time()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server = ""
        try:
            s.settimeout(args.timeout)
            s.bind((src, 0))
            s.sendto(payload, (args.vip4, args.udp_port))
            data, frm = s.recvfrom(65535)
            text = data.decode(errors="replace")
            server = text.split()[0].split("=", 1)[-1] if text.startswith("server=") else ""
            ok = frm[0] == args.vip4 and text.endswith("data=" + payload.decode())
            rec.add("udp", start, ok, src, server, "" if ok else f"answer from {frm[0]}: {text[:80]!r}")
        except OSError as e:
            rec.add("udp", start, False, src, server, f"{type(e).__name__}: {e}")
        finally:
            s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--vip4", required=True)
    ap.add_argument("--vip6", default="")
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--udp-port", type=int, default=53)
    ap.add_argument("--rate", type=float, default=40.0, help="short TCP connections per second")
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--downloads", type=int, default=3, help="concurrent download loops")
    ap.add_argument("--download-bytes", type=int, default=4_000_000)
    ap.add_argument("--download-rate", type=float, default=2_000_000.0, help="bytes/s per download")
    ap.add_argument("--udp-rate", type=float, default=20.0)
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--sources4", required=True, help="comma-separated IPv4 source addresses")
    ap.add_argument("--sources6", default="")
    args = ap.parse_args()
    if args.seconds <= 0 or args.seconds > 3600 or args.rate <= 0 or args.udp_rate <= 0:
        ap.error("--seconds must be in (0, 3600], rates positive")
    s4 = args.sources4.split(",")
    s6 = args.sources6.split(",") if args.sources6 else []
    if args.vip6 and not s6:
        ap.error("--vip6 needs --sources6")
    rec = Record()
    t0 = time.time()
    stop_at = t0 + args.seconds
    threads = short_loop(args, rec, stop_at, (s4, s6))
    # Downloads and UDP use the last source addresses, short connections all of them.
    for d in range(args.downloads):
        threads.append(threading.Thread(target=download_loop, args=(args, rec, stop_at, s4[-1 - d % len(s4)])))
    threads.append(threading.Thread(target=udp_loop, args=(args, rec, stop_at, s4)))
    for t in threads[args.parallel:]:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"started_at": t0, "ended_at": time.time(), "kinds": rec.kinds,
                      "failure_count": rec.failure_count, "failures": rec.failures,
                      "download_bytes": rec.bytes}))


if __name__ == "__main__":
    main()
