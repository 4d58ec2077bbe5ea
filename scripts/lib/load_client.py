#!/usr/bin/env python3
"""Load client for vipd's namespace test bed (Python 3 standard library only).

TCP:  load_client.py --url http://VIP:80/ --connections 1000 --parallel 32 --timeout 5
                     [--source-addrs 192.168.77.2,192.168.77.3,...] [--deadline 60]
      Opens that many short connections, one GET each (Connection: close), --parallel at a time,
      stopping at the count or at the deadline, whichever comes first; --rate R paces the
      starts at R connections per second. Source addresses are
      bound round-robin (connection i uses address i mod len). IPv6: http://[fd00:77:100::1]:80/.
UDP:  load_client.py --udp HOST:PORT --count N [--parallel P] [--source-addrs ...] [--reuse]
      N request/response exchanges with a UDP echo server (rs_server.py --udp); each from a new
      socket (new source port, so a new flow) unless --reuse (one socket per worker thread).
      IPv6: --udp [fd00:77:100::1]:5353.

Prints one JSON object on stdout (see --help-json); exits 0 even when requests failed: the caller
judges. Exit 2 only for bad arguments.
"""

import argparse
import json
import re
import socket
import sys
import threading
import time
import urllib.parse

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
SERVER_RE = re.compile(rb"server=(\S+)")
CLIENT_RE = re.compile(rb"client=(\S+)")
MAX_SAMPLES = 10

JSON_HELP = """\
{
  "mode": "tcp" | "udp",
  "target": "http://10.77.100.1:80/" | "10.77.100.1:5353",
  "requested": N,            # --connections / --count
  "total": attempted,        # started before the deadline
  "ok": n, "failed": n,
  "not_started": requested - total,
  "deadline_hit": bool,
  "servers": {"rs1": n, ...},            # from "server=" in the answer (or the X-Server header)
  "client_ips": ["192.168.77.2", ...],   # client IPs the servers reported (sorted)
  "client_ip_counts": {"192.168.77.2": n, ...},
  "client_ip_mismatch": n,    # answers whose reported client IP differs from the bound source
  "reply_source_mismatch": n,  # udp only: answers from another address than the target
  "status": {"200": n, ...},  # tcp only: HTTP status codes
  "errors": {"kind": n, ...},
  "error_samples": ["#17 src=192.168.77.3: ConnectionRefusedError: ...", ...],   # <= 10
  "bytes": body bytes received (tcp) / reply bytes (udp),
  "elapsed_s": s, "conn_per_s": ok / elapsed_s (tcp), "req_per_s": ok / elapsed_s (udp),
  "latency_ms": {"p50": ms, "p90": ms, "p99": ms, "max": ms},  # of the successful ones
  "timeline": [{"second": s, "failed": n, "servers": {"rs1": n, ...}}, ...],  # by start second
  "started_at": Unix time of the timeline's second 0,
  "unfinished": n            # only when workers were still busy at the hard stop
}"""


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = 0
        self.servers = {}
        self.client_ips = {}
        self.client_ip_mismatch = 0
        self.reply_source_mismatch = 0
        self.status = {}
        self.errors = {}
        self.samples = []
        self.bytes = 0
        self.latencies = []
        self.start = time.monotonic()
        self.timeline = {}

    def _tick(self, started, what):
        # "failed" is a key of its own; a server of that name would be counted as failures.
        second = self.timeline.setdefault(int(max(0.0, started - self.start)), {})
        second[what] = second.get(what, 0) + 1

    def success(self, server, client_ip, src, nbytes, latency, started=None):
        with self.lock:
            self._tick(time.monotonic() - latency if started is None else started, server)
            self.ok += 1
            self.bytes += nbytes
            self.latencies.append(latency)
            self.servers[server] = self.servers.get(server, 0) + 1
            if client_ip is not None:
                self.client_ips[client_ip] = self.client_ips.get(client_ip, 0) + 1
                if src and client_ip != src:
                    self.client_ip_mismatch += 1

    def failure(self, idx, src, kind, detail, started=None):
        with self.lock:
            self._tick(time.monotonic() if started is None else started, "failed")
            self.failed += 1
            self.errors[kind] = self.errors.get(kind, 0) + 1
            if len(self.samples) < MAX_SAMPLES:
                self.samples.append("#%d src=%s: %s: %s" % (idx, src or "-", kind, detail))


class Fail(Exception):
    def __init__(self, kind, detail=""):
        super().__init__(kind)
        self.kind = kind
        self.detail = detail


def classify(e, phase):
    if isinstance(e, Fail):
        return e.kind, e.detail
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timeout(%s)" % phase, str(e)
    return "%s(%s)" % (type(e).__name__, phase), str(e)


def parse_reply_ids(text):
    """(server, client_ip) from b'server=rs1 client=1.2.3.4:5678 ...'."""
    m = SERVER_RE.search(text)
    server = m.group(1).decode(errors="replace") if m else None
    client_ip = None
    m = CLIENT_RE.search(text)
    if m:
        client_ip = m.group(1).decode(errors="replace").rsplit(":", 1)[0]
    return server, client_ip


class Scheduler:
    """Hands out connection indexes until the count is reached or the deadline passes."""

    def __init__(self, count, deadline_at, rate=None):
        self.lock = threading.Lock()
        self.next = 0
        self.count = count
        self.deadline_at = deadline_at
        self.deadline_hit = False
        self.rate = rate
        self.start = time.monotonic()

    def take(self):
        with self.lock:
            if self.next >= self.count:
                return None
            if time.monotonic() >= self.deadline_at:
                self.deadline_hit = True
                return None
            i = self.next
            self.next += 1
        if self.rate:
            wait = self.start + i / self.rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        return i


def percentiles(values):
    if not values:
        return {}
    v = sorted(values)

    def pick(q):
        return round(v[min(len(v) - 1, int(q * len(v)))] * 1000, 3)

    return {"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "max": round(v[-1] * 1000, 3)}


def resolve(host, port):
    try:
        info = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    except socket.gaierror as e:
        print("load_client: cannot resolve %s: %s" % (host, e), file=sys.stderr)
        sys.exit(2)
    family, _, _, _, sockaddr = info[0]
    return family, sockaddr


def check_sources(sources, family):
    for s in sources:
        fam = socket.AF_INET6 if ":" in s else socket.AF_INET
        if fam != family:
            print("load_client: source address %s is not of the target's family" % s, file=sys.stderr)
            sys.exit(2)


def tcp_one(idx, family, sockaddr, src, request, timeout, deadline_at, stats):
    t0 = time.monotonic()
    sock = socket.socket(family, socket.SOCK_STREAM)
    phase = "connect"
    try:
        sock.settimeout(timeout)
        if src:
            # Port chosen at connect() with the full 4-tuple: no ephemeral port exhaustion at bind.
            try:
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            except OSError:
                pass
            phase = "bind"
            sock.bind((src, 0))
            phase = "connect"
        sock.connect(sockaddr)
        phase = "send"
        sock.sendall(request)
        phase = "read"
        chunks = []
        end_by = min(t0 + max(timeout * 4, 10), deadline_at + timeout)
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            if time.monotonic() > end_by:
                raise Fail("timeout(transfer)", "response not complete in time")
        raw = b"".join(chunks)
    except Exception as e:  # noqa: BLE001 - every failure is counted by kind
        kind, detail = classify(e, phase)
        stats.failure(idx, src, kind, detail, started=t0)
        return
    finally:
        sock.close()
    latency = time.monotonic() - t0

    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        stats.failure(idx, src, "bad_response", "no header end (%d bytes)" % len(raw))
        return
    lines = head.split(b"\r\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        stats.failure(idx, src, "bad_response", repr(lines[0][:80]))
        return
    code = parts[1].decode()
    with stats.lock:
        stats.status[code] = stats.status.get(code, 0) + 1
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    if code != "200":
        stats.failure(idx, src, "http_%s" % code, body[:80].decode(errors="replace"))
        return
    clen = headers.get(b"content-length")
    if clen is not None and clen.isdigit() and int(clen) != len(body):
        stats.failure(idx, src, "short_body", "%d of %s bytes" % (len(body), clen.decode()))
        return
    server, client_ip = parse_reply_ids(body[:256])
    if server is None:  # bulk body: identify by headers
        server = headers.get(b"x-server", b"?").decode(errors="replace")
        xc = headers.get(b"x-client")
        if xc:
            client_ip = xc.decode(errors="replace").rsplit(":", 1)[0]
    stats.success(server, client_ip, src, len(body), latency)


def udp_one(idx, family, sockaddr, src, sock, timeout, stats):
    t0 = time.monotonic()
    own = sock is None
    phase = "send"
    payload = ("req-%d-%d" % (idx, int(t0 * 1e6))).encode()
    try:
        if own:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.settimeout(timeout)
            if src:
                phase = "bind"
                sock.bind((src, 0))
                phase = "send"
        sock.sendto(payload, sockaddr)
        phase = "recv"
        while True:
            data, peer = sock.recvfrom(65535)
            # On a reused socket, skip a late answer to an earlier (timed out) request.
            if data.endswith(b"data=" + payload) or own:
                break
            if time.monotonic() - t0 > timeout:
                raise socket.timeout("no matching answer")
    except Exception as e:  # noqa: BLE001
        kind, detail = classify(e, phase)
        stats.failure(idx, src, kind, detail)
        return
    finally:
        if own and sock is not None:
            sock.close()
    latency = time.monotonic() - t0
    if not data.endswith(b"data=" + payload):
        stats.failure(idx, src, "bad_reply", data[:80].decode(errors="replace"))
        return
    if peer[0] != sockaddr[0] or peer[1] != sockaddr[1]:
        with stats.lock:
            stats.reply_source_mismatch += 1
    server, client_ip = parse_reply_ids(data)
    stats.success(server or "?", client_ip, src, len(data), latency)


def run(args):
    sources = [s.strip() for s in (args.source_addrs or "").split(",") if s.strip()]
    stats = Stats()
    t_start = time.monotonic()
    deadline_at = t_start + args.deadline

    if args.udp:
        m = re.match(r"^\[([^\]]+)\]:(\d+)$", args.udp) or re.match(r"^([^:]+):(\d+)$", args.udp)
        if not m:
            print("load_client: --udp HOST:PORT (IPv6: [ADDR]:PORT)", file=sys.stderr)
            sys.exit(2)
        family, sockaddr = resolve(m.group(1), int(m.group(2)))
        mode, target, count = "udp", args.udp, args.count
    else:
        u = urllib.parse.urlsplit(args.url)
        if u.scheme != "http" or not u.hostname:
            print("load_client: --url must be http://HOST[:PORT]/PATH", file=sys.stderr)
            sys.exit(2)
        port = u.port or 80
        family, sockaddr = resolve(u.hostname, port)
        hosthdr = ("[%s]" % u.hostname if ":" in u.hostname else u.hostname) + (":%d" % port if u.port else "")
        path = (u.path or "/") + ("?" + u.query if u.query else "")
        request = ("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: vipd-load-client\r\nConnection: close\r\n\r\n" % (path, hosthdr)).encode()
        mode, target, count = "tcp", args.url, args.connections
    check_sources(sources, family)

    sched = Scheduler(count, deadline_at, args.rate)
    stats.start = sched.start
    started_at = time.time() - (time.monotonic() - sched.start)

    def worker():
        sock = None
        sock_src = [None]
        try:
            while True:
                i = sched.take()
                if i is None:
                    return
                src = sources[i % len(sources)] if sources else None
                if mode == "tcp":
                    tcp_one(i, family, sockaddr, src, request, args.timeout, deadline_at, stats)
                else:
                    if args.reuse and sock is None:
                        sock = socket.socket(family, socket.SOCK_DGRAM)
                        sock.settimeout(args.timeout)
                        if src:
                            try:
                                sock.bind((src, 0))
                            except OSError as e:
                                stats.failure(i, src, "OSError(bind)", str(e))
                                sock.close()
                                sock = None
                                continue
                        sock_src[0] = src
                    if sock is not None:
                        src = sock_src[0]  # a reused socket keeps the source of its first request
                    udp_one(i, family, sockaddr, src, sock, args.timeout, stats)
        finally:
            if sock is not None:
                sock.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(args.parallel, count or 1)))]
    for t in threads:
        t.start()
    # Bounded wait: each connection ends by its own timeout; give stragglers a little slack.
    hard_end = deadline_at + max(args.timeout * 4, 10) + 2
    for t in threads:
        t.join(max(0.0, hard_end - time.monotonic()))
    stragglers = sum(1 for t in threads if t.is_alive())
    elapsed = time.monotonic() - t_start

    with stats.lock:
        total = sched.next
        out = {
            "mode": mode,
            "target": target,
            "requested": count,
            "total": total,
            "ok": stats.ok,
            "failed": stats.failed,
            "not_started": count - total,
            "deadline_hit": sched.deadline_hit,
            "servers": dict(sorted(stats.servers.items())),
            "client_ips": sorted(stats.client_ips),
            "client_ip_counts": dict(sorted(stats.client_ips.items())),
            "client_ip_mismatch": stats.client_ip_mismatch,
            "status": dict(sorted(stats.status.items())),
            "errors": dict(sorted(stats.errors.items(), key=lambda kv: -kv[1])),
            "error_samples": list(stats.samples),
            "bytes": stats.bytes,
            "elapsed_s": round(elapsed, 3),
            "started_at": round(started_at, 3),
            "latency_ms": percentiles(stats.latencies),
            "timeline": [
                {"second": t, "failed": v.get("failed", 0), "servers": {k: n for k, n in sorted(v.items()) if k != "failed"}}
                for t, v in sorted(stats.timeline.items())
            ],
        }
        if mode == "udp":
            out["reply_source_mismatch"] = stats.reply_source_mismatch
            out["req_per_s"] = round(stats.ok / elapsed, 1) if elapsed > 0 else 0.0
            del out["status"]
        else:
            out["conn_per_s"] = round(stats.ok / elapsed, 1) if elapsed > 0 else 0.0
        if stragglers:
            out["unfinished"] = total - stats.ok - stats.failed
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="http://HOST[:PORT]/PATH (IPv6: http://[ADDR]:PORT/)")
    ap.add_argument("--connections", type=int, default=100, help="TCP connections to open (default 100)")
    ap.add_argument("--udp", metavar="HOST:PORT", help="UDP request/response mode")
    ap.add_argument("--count", type=int, default=100, help="UDP requests (default 100)")
    ap.add_argument("--reuse", action="store_true", help="UDP: one socket per worker instead of one per request")
    ap.add_argument("--parallel", type=int, default=16, help="concurrent workers (default 16)")
    ap.add_argument("--timeout", type=float, default=5.0, help="per-operation timeout in s (default 5)")
    ap.add_argument("--deadline", type=float, default=60.0, help="start no new request after this many s (default 60)")
    ap.add_argument("--source-addrs", help="comma-separated source addresses, used round-robin")
    ap.add_argument("--rate", type=float, help="start at most this many connections per second")
    ap.add_argument("--help-json", action="store_true", help="describe the JSON printed")
    args = ap.parse_args()
    if args.help_json:
        print(JSON_HELP)
        return 0
    if bool(args.url) == bool(args.udp):
        ap.error("give exactly one of --url and --udp")
    n = args.count if args.udp else args.connections
    if n < 0 or args.parallel < 1 or args.timeout <= 0 or args.deadline <= 0 or (args.rate is not None and args.rate <= 0):
        ap.error("counts >= 0, --parallel >= 1, --timeout, --deadline and --rate > 0")
    out = run(args)
    print(json.dumps(out, indent=1 if sys.stdout.isatty() else None))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
