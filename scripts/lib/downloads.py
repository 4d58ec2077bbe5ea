#!/usr/bin/env python3
"""Concurrent bulk downloads for vipd's end-to-end tests (run inside the client namespace).

Starts COUNT curl processes at once, each fetching URL (an rs_server.py /bytes/N path) from
its own source address (round-robin over --source-addrs), rate-limited so the transfers last
long enough for a fault to happen in the middle (--rate: curl's --limit-rate, and the same
pace asked of the real server, `?rate=`, unless the URL names one: curl throttles how fast
it reads the socket, and the kernel's receive buffer would otherwise take a body of a few MB
at line rate, the transfer over on the wire before the fault); hashes each body as it arrives and compares
it with the pattern rs_server.py sends. Prints one JSON object:
  {"ok": n, "failed": n, "results": [{"rc", "bytes", "sha_ok", "server", "seconds"}, ...]}
Bounded: every curl has --max-time.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rs_server import pattern_bytes  # noqa: E402


def rate_bytes(rate):
    """curl's --limit-rate value (`400k`, `2M`, `1000`) in bytes per second."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    unit = units.get(rate[-1:].lower())
    return int(float(rate[:-1]) * unit) if unit else int(rate)


def paced(url, rate):
    """`url` with rs_server.py's `?rate=` for curl's --limit-rate `rate`, unless it has one."""
    if not rate or "rate=" in urllib.parse.urlsplit(url).query:
        return url
    return f"{url}{'&' if '?' in url else '?'}rate={rate_bytes(rate)}"


def one(url, src, rate, max_time, want_sha, want_len, out):
    t0 = time.time()
    cmd = ["curl", "-s", "-S", "--max-time", str(max_time), "-D", "-", "-o", "/dev/stdout"]
    if rate:
        cmd += ["--limit-rate", rate]
    if src:
        cmd += ["--interface", src]
    cmd.append(url)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = b""
    while b"\r\n\r\n" not in head:
        b = p.stdout.read(1)
        if not b:
            break
        head += b
    server = ""
    for line in head.decode("latin-1").split("\r\n"):
        if line.lower().startswith("x-server:"):
            server = line.split(":", 1)[1].strip()
    h = hashlib.sha256()
    n = 0
    while True:
        chunk = p.stdout.read(65536)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    rc = p.wait()
    err = p.stderr.read().decode(errors="replace").strip()
    out.append({"rc": rc, "bytes": n, "sha_ok": n == want_len and h.hexdigest() == want_sha,
                "server": server, "seconds": round(time.time() - t0, 2), "error": err[:200]})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="http://VIP[:PORT]/bytes/N[?rate=R]")
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--rate", default="", help="curl --limit-rate per download (e.g. 2M)")
    ap.add_argument("--max-time", type=int, default=60)
    ap.add_argument("--source-addrs", default="")
    args = ap.parse_args()
    # The size is the path's last segment; a query (?rate=R, rs_server.py's pacing) follows it.
    size = int(urllib.parse.urlsplit(args.url).path.rstrip("/").rsplit("/", 1)[1])
    want_sha = hashlib.sha256(pattern_bytes(size)).hexdigest()
    url = paced(args.url, args.rate)
    sources = [s for s in args.source_addrs.split(",") if s]
    results = []
    threads = [threading.Thread(target=one, args=(url, sources[i % len(sources)] if sources else "",
                                                  args.rate, args.max_time, want_sha, size, results))
               for i in range(args.count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = sum(1 for r in results if r["rc"] == 0 and r["sha_ok"])
    print(json.dumps({"ok": ok, "failed": len(results) - ok, "results": results}))


if __name__ == "__main__":
    main()
