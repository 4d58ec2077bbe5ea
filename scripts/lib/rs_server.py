#!/usr/bin/env python3
"""Real server for vipd's namespace test bed (Python 3 standard library only).

HTTP (dual stack, one socket on [::] with IPV6_V6ONLY=0 unless --bind says otherwise):
  GET /          200, body "server=<name> client=<peer ip>:<peer port>\\n"
  GET /bytes/N   200, N bytes of a repeating ASCII pattern (bulk transfers larger than the MTU);
                 with ?rate=R the body is paced at R bytes/s at most, so the transfer lasts at
                 least N/R s whatever the load (a client's --limit-rate lets bursts through)
  GET /health    200 "ok", or the status written in --health-file when that file exists (a
                 health check that sees 503: `echo 503 > FILE`)
  GET /slow      as /, after waiting the milliseconds written in --delay-file (0 when it does
                 not exist): real servers of unequal response time (`echo 200 > FILE`)
  POST (any path) reads the Content-Length body and answers
                 "server=<name> client=<peer> received=<bytes> sha256=<hex>" (uploads through
                 a tunnel: the client's large segments travel LB -> RS)
  any other path the same as /
  Every response: Connection: close, X-Server: <name>, X-Client: <ip>:<port>,
  X-Local: <local ip>:<port> (the address the connection was accepted on: the VIP in DR/TUN mode).
UDP echo (--udp PORT): each datagram is answered with
  "server=<name> client=<ip>:<port> data=<payload>", sent from the address it was received on
  (IPV6_PKTINFO), so DR/TUN replies leave from the VIP.

Prints "listening ..." on stdout once its sockets are bound; exits 0 on SIGTERM (and SIGINT,
unless SIGINT was ignored by the parent).
"""

import argparse
import hashlib
import http.server
import signal
import socket
import socketserver
import struct
import sys
import threading
import time

MAX_BYTES = 1 << 30
PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-\n"
CHUNK = PATTERN * 1024  # 64 KiB, a whole number of patterns: the pattern runs on across chunks


def plain_ip(addr):
    """'::ffff:1.2.3.4' -> '1.2.3.4' (IPv4 peers on a dual-stack socket)."""
    if addr.startswith("::ffff:") and "." in addr:
        return addr[7:]
    return addr


def pattern_bytes(n):
    reps = n // len(PATTERN) + 1
    return (PATTERN * reps)[:n]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vipd-rs"
    sys_version = ""
    timeout = 30  # a stuck peer does not hold a thread forever

    def log_message(self, fmt, *args):  # quiet unless --verbose
        if self.server.verbose:
            sys.stderr.write("%s %s\n" % (self.server.name, fmt % args))

    def _peer(self):
        return "%s:%d" % (plain_ip(self.client_address[0]), self.client_address[1])

    def _local(self):
        try:
            la = self.connection.getsockname()
            return "%s:%d" % (plain_ip(la[0]), la[1])
        except OSError:
            return "?"

    def _headers(self, length, ctype):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        self.send_header("X-Server", self.server.name)
        self.send_header("X-Client", self._peer())
        self.send_header("X-Local", self._local())
        self.end_headers()
        self.close_connection = True

    def _health(self, with_body):
        status, f = 200, self.server.health_file
        if f:
            try:
                with open(f) as fh:
                    status = int(fh.read().strip() or 200)
            except (OSError, ValueError):
                status = 200
        body = b"ok\n" if status == 200 else b"unhealthy\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "text/plain")
        self.send_header("Connection", "close")
        self.send_header("X-Server", self.server.name)
        self.end_headers()
        self.close_connection = True
        if with_body:
            self.wfile.write(body)

    def _delay_s(self):
        f = self.server.delay_file
        if not f:
            return 0.0
        try:
            with open(f) as fh:
                return max(0.0, min(60.0, float(fh.read().strip() or 0) / 1000.0))
        except (OSError, ValueError):
            return 0.0

    def _rate(self):
        """The ?rate=R of the request (bytes/s), None when absent or not a positive number."""
        query = self.path.split("?", 1)[1] if "?" in self.path else ""
        for kv in query.split("&"):
            k, _, v = kv.partition("=")
            if k == "rate":
                try:
                    r = int(v)
                except ValueError:
                    return None
                return r if r > 0 else None
        return None

    def _respond(self, with_body):
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self._health(with_body)
            return
        if path == "/slow":
            time.sleep(self._delay_s())
        if path.startswith("/bytes/"):
            try:
                n = int(path[len("/bytes/"):])
                if n < 0 or n > MAX_BYTES:
                    raise ValueError
            except ValueError:
                self.send_error(400, "bad length (0..%d)" % MAX_BYTES)
                self.close_connection = True
                return
            self._headers(n, "application/octet-stream")
            if with_body:
                rate, t0, sent = self._rate(), time.monotonic(), 0
                # Paced: chunks of 1/20 s worth (a whole number of patterns), each sent no
                # earlier than the rate allows.
                per_chunk = len(CHUNK) // len(PATTERN)
                patterns = per_chunk if rate is None else max(1, min(per_chunk, rate // 20 // len(PATTERN)))
                step = patterns * len(PATTERN)
                while sent < n:
                    if rate is not None:
                        ahead = t0 + sent / rate - time.monotonic()
                        if ahead > 0:
                            time.sleep(ahead)
                    k = min(n - sent, step)
                    self.wfile.write(CHUNK[:k])
                    sent += k
            return
        body = ("server=%s client=%s\n" % (self.server.name, self._peer())).encode()
        self._headers(len(body), "text/plain")
        if with_body:
            self.wfile.write(body)

    def do_GET(self):
        self._respond(True)

    def do_HEAD(self):
        self._respond(False)

    def do_POST(self):
        try:
            n = int(self.headers.get("Content-Length", ""))
            if n < 0 or n > MAX_BYTES:
                raise ValueError
        except ValueError:
            self.send_error(411 if "Content-Length" not in self.headers else 400,
                            "Content-Length 0..%d required" % MAX_BYTES)
            self.close_connection = True
            return
        digest = hashlib.sha256()
        left = n
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        body = ("server=%s client=%s received=%d sha256=%s\n"
                % (self.server.name, self._peer(), n - left, digest.hexdigest())).encode()
        self._headers(len(body), "text/plain")
        self.wfile.write(body)


class HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, addr, family, name, verbose):
        self.address_family = family
        self.name = name
        self.verbose = verbose
        super().__init__(addr, Handler)

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        socketserver.TCPServer.server_bind(self)  # skip HTTPServer's getfqdn (slow, DNS)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)


def make_udp(bind, port):
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    else:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_PKTINFO, 1)
    s.bind((bind, port))
    s.settimeout(0.5)  # lets the loop notice shutdown
    return s


def udp_loop(sock, name, stop, verbose):
    v6 = sock.family == socket.AF_INET6
    cmsg_space = socket.CMSG_SPACE(20 if v6 else 12)
    while not stop.is_set():
        try:
            data, anc, _flags, peer = sock.recvmsg(65535, cmsg_space)
        except socket.timeout:
            continue
        except OSError as e:
            if verbose:
                sys.stderr.write("%s udp recv: %s\n" % (name, e))
            continue
        reply = ("server=%s client=%s:%d data=" % (name, plain_ip(peer[0]), peer[1])).encode() + data
        out_anc = []
        for level, typ, cdata in anc:
            # Answer from the destination address of the request (ifindex 0: routing decides).
            if v6 and level == socket.IPPROTO_IPV6 and typ == socket.IPV6_PKTINFO:
                out_anc = [(level, typ, cdata[:16] + struct.pack("@I", 0))]
            elif not v6 and level == socket.IPPROTO_IP and typ == socket.IP_PKTINFO:
                # struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
                out_anc = [(level, typ, struct.pack("@I", 0) + cdata[8:12] + b"\0\0\0\0")]
        try:
            sock.sendmsg([reply], out_anc, 0, peer)
        except OSError as e:
            if verbose:
                sys.stderr.write("%s udp send to %s: %s\n" % (name, peer, e))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="server name reported in every answer")
    ap.add_argument("--port", type=int, default=80, help="HTTP port (default 80)")
    ap.add_argument("--udp", type=int, metavar="PORT", help="also run a UDP echo server on PORT")
    ap.add_argument("--bind", default="::", help="address to bind (default :: = all, IPv4 and IPv6)")
    ap.add_argument("--verbose", action="store_true", help="log every request to stderr")
    ap.add_argument("--health-file", help="GET /health answers the status written in this file, when it exists")
    ap.add_argument("--delay-file", help="GET /slow waits the milliseconds written in this file, when it exists")
    args = ap.parse_args()

    bind = args.bind
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    try:
        httpd = HTTPServer((bind, args.port), family, args.name, args.verbose)
    except OSError as e:
        if bind == "::":  # no IPv6 in this namespace: fall back to IPv4 only
            bind, family = "0.0.0.0", socket.AF_INET
            httpd = HTTPServer((bind, args.port), family, args.name, args.verbose)
        else:
            sys.exit("rs_server: cannot listen on [%s]:%d: %s" % (bind, args.port, e))

    httpd.health_file = args.health_file
    httpd.delay_file = args.delay_file
    stop = threading.Event()
    threads = [threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)]
    udp = None
    if args.udp:
        udp = make_udp(bind, args.udp)
        threads.append(threading.Thread(target=udp_loop, args=(udp, args.name, stop, args.verbose), daemon=True))

    def on_signal(_signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, on_signal)

    for t in threads:
        t.start()
    print(
        "listening name=%s tcp=[%s]:%d%s" % (args.name, bind, args.port, " udp=[%s]:%d" % (bind, args.udp) if udp else ""),
        flush=True,
    )
    while not stop.wait(1.0):
        pass
    httpd.shutdown()
    httpd.server_close()
    if udp:
        threads[-1].join(2)
        udp.close()
    print("stopped name=%s" % args.name, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
