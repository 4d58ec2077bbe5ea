#!/usr/bin/env python3
"""Clients of vipd's API for the e2e scenarios and the slowloris benchmark's checks, run inside
the LB namespace. Only the standard library; each mode is bounded in time.

  hold PORT N             open N TCP connections and send nothing; print "held N" once they
                          are established (the kernel's backlog counts: vipd may not have
                          accepted them yet); hold them until stdin closes
  observe PORT [--token T] [--ca FILE]
                          one kept-alive HTTP/1.1 connection (TLS with --ca), opened at once:
                          prints "ready"; for each path read on stdin, GET it and print one
                          JSON line {"status": S, "body": TEXT} ({"status": 0, "error": E}
                          once vipd closed it)
  wait_close PORT [--send TEXT] [--trickle S]
                          open a connection, send TEXT (a half request), then one more header
                          line every S seconds, until vipd closes it: prints "closed" (or
                          "open" after 60 s)
  unread PORT --token T PATH
                          a connection with a tiny receive buffer that asks for PATH and never
                          reads the answer; prints its local port, holds it until stdin closes
"""

import argparse
import json
import socket
import ssl
import sys
import time


def hold(a):
    conns = [socket.create_connection(("127.0.0.1", a.port), timeout=10) for _ in range(a.n)]
    print(f"held {len(conns)}", flush=True)
    sys.stdin.read()
    for c in conns:
        c.close()


def read_response(f):
    """Status and body of one response (Content-Length framing) from file `f`."""
    status_line = f.readline()
    if not status_line:
        raise ConnectionError("closed by vipd")
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode().partition(":")
        if k.strip().lower() == "content-length":
            length = int(v)
    return status, f.read(length).decode(errors="replace")


def observe(a):
    c = socket.create_connection(("127.0.0.1", a.port), timeout=15)
    if a.ca:
        c = ssl.create_default_context(cafile=a.ca).wrap_socket(c, server_hostname="127.0.0.1")
    f = c.makefile("rb")
    auth = f"Authorization: Bearer {a.token}\r\n" if a.token else ""
    print("ready", flush=True)
    for line in sys.stdin:
        path = line.strip()
        try:
            c.sendall(f"GET {path} HTTP/1.1\r\nHost: vipd\r\n{auth}\r\n".encode())
            status, body = read_response(f)
            print(json.dumps({"status": status, "body": body}), flush=True)
        except (OSError, ConnectionError, ValueError, IndexError) as e:
            print(json.dumps({"status": 0, "error": str(e)}), flush=True)


def wait_close(a):
    c = socket.create_connection(("127.0.0.1", a.port), timeout=10)
    if a.send:
        c.sendall(a.send.encode().decode("unicode_escape").encode())
    c.settimeout(a.trickle or 1.0)
    deadline = time.time() + 60
    n = 0
    while time.time() < deadline:
        try:
            if c.recv(4096) == b"":
                print("closed", flush=True)
                return
        except socket.timeout:
            if a.trickle:
                n += 1
                try:
                    c.sendall(f"X-Slow-{n}: {n}\r\n".encode())
                except OSError:
                    print("closed", flush=True)
                    return
        except OSError:
            print("closed", flush=True)
            return
    print("open", flush=True)


def unread(a):
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    c.connect(("127.0.0.1", a.port))
    c.sendall(f"GET {a.path} HTTP/1.1\r\nHost: vipd\r\nAuthorization: Bearer {a.token}\r\n\r\n".encode())
    # Never read the answer: vipd's writes block on the full window. Whether vipd let go of
    # the connection shows on its side (ss), not here: its FIN waits behind the unread bytes.
    print(f"asked from port {c.getsockname()[1]}", flush=True)
    sys.stdin.read()
    c.close()


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    h = sub.add_parser("hold")
    h.add_argument("port", type=int)
    h.add_argument("n", type=int)
    o = sub.add_parser("observe")
    o.add_argument("port", type=int)
    o.add_argument("--token")
    o.add_argument("--ca")
    w = sub.add_parser("wait_close")
    w.add_argument("port", type=int)
    w.add_argument("--send")
    w.add_argument("--trickle", type=float)
    u = sub.add_parser("unread")
    u.add_argument("port", type=int)
    u.add_argument("--token", required=True)
    u.add_argument("path")
    a = p.parse_args()
    {"hold": hold, "observe": observe, "wait_close": wait_close, "unread": unread}[a.mode](a)


if __name__ == "__main__":
    main()
