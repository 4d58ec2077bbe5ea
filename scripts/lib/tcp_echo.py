#!/usr/bin/env python3
"""A plain TCP echo, the stand-in for ssh in vipd's exception-path test (standard library only).

  tcp_echo.py serve PORT            echo every connection back until its peer closes (dual
                                    stack: one socket on [::], IPv4 peers too); prints
                                    "listening" once bound; exits on SIGTERM
  tcp_echo.py send HOST PORT BYTES  connect, send BYTES random bytes, half-close, read the echo;
                                    prints "echoed=N sha256_match=True|False local=IP:PORT"
                                    and exits 0 only when every byte came back unchanged
"""

import hashlib
import os
import signal
import socket
import sys
import threading


def serve(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(16)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print("listening", flush=True)

    def echo(conn):
        conn.settimeout(30)
        with conn:
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        return
                    conn.sendall(data)
            except OSError:
                return

    while True:
        conn, _ = s.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


def send(host, port, size):
    data = os.urandom(size)
    with socket.create_connection((host, port), timeout=15) as c:
        local = c.getsockname()
        got = []
        reader = threading.Thread(target=lambda: got.extend(iter(lambda: c.recv(65536), b"")))
        reader.start()
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        reader.join(30)
    back = b"".join(got)
    same = hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
    print(f"echoed={len(back)} sha256_match={same} local={local[0]}:{local[1]}")
    return 0 if same else 1


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
        return 0
    if len(sys.argv) == 5 and sys.argv[1] == "send":
        return send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
