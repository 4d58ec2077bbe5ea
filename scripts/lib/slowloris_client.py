#!/usr/bin/env python3
"""The slowloris benchmark's client (scripts/bench/slowloris.py), run inside the LB namespace
against vipd's API on 127.0.0.1. Standard library only (asyncio).

Phase 1, `--baseline` seconds: GETs only (the ceiling of this run). Phase 2: `--connections`
slowloris connections opened as fast as the box allows (at most 256 connects in flight), each
sending half a request head and then one more header line every 2 s, never finishing, while
the same GETs go on; every slowloris connection's lifetime (from established to closed by
vipd) is recorded, until `--wait` seconds after the last one opened. The attack runs in a
process of its own (`--attack-only`), so the GETs' figures are not the attacker's event loop
being busy. The GETs, with the read-only token: one kept-alive connection asking every 50 ms,
and a new connection every 100 ms. Prints one JSON object: the lifetimes' distribution and the
GET latencies per phase."""

import argparse
import asyncio
import json
import resource
import sys
import time

HEAD = b"GET /api/v1/status HTTP/1.1\r\nHost: vipd\r\n"


def pct(xs, p):
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def summary(xs):
    return {"n": len(xs), "p50": pct(xs, 50), "p99": pct(xs, 99), "max": max(xs) if xs else None}


async def read_response(r):
    head = await r.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    await r.readexactly(length)
    return int(head.split()[1])


class Gets:
    def __init__(self, port, token):
        self.port = port
        self.request = f"GET /api/v1/status HTTP/1.1\r\nHost: vipd\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        self.phase = "baseline"
        self.lat = {}  # (phase, kind) -> [ms]
        self.errors = {}
        self.stop = False

    def record(self, kind, ms):
        self.lat.setdefault(f"{self.phase}/{kind}", []).append(ms)

    def error(self, kind, e):
        k = f"{self.phase}/{kind}"
        self.errors[k] = self.errors.get(k, 0) + 1

    async def kept_alive(self):
        conn = None
        while not self.stop:
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 5)
                r, w = conn
                w.write(self.request)
                status = await asyncio.wait_for(read_response(r), 5)
                if status == 200:
                    self.record("kept_alive", (time.monotonic() - t0) * 1e3)
                else:
                    self.error("kept_alive", status)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                self.error("kept_alive", e)
                conn = None
            await asyncio.sleep(0.05)

    async def fresh(self):
        while not self.stop:
            t0 = time.monotonic()
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 5)
                w.write(self.request)
                status = await asyncio.wait_for(read_response(r), 5)
                w.close()
                if status == 200:
                    self.record("fresh", (time.monotonic() - t0) * 1e3)
                else:
                    self.error("fresh", status)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                self.error("fresh", e)
            await asyncio.sleep(0.1)


async def slow(port, gate, out, until):
    async with gate:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 15)
        except (OSError, asyncio.TimeoutError):
            out["connect_failed"] += 1
            return
    opened = time.monotonic()
    out["opened"] += 1
    n = 0
    try:
        w.write(HEAD)
        while time.monotonic() < until[0]:
            try:
                data = await asyncio.wait_for(r.read(4096), 2.0)
                if not data:
                    out["lifetimes"].append(time.monotonic() - opened)
                    return
            except asyncio.TimeoutError:
                n += 1
                w.write(f"X-Slow-{n}: {n}\r\n".encode())
                await w.drain()
        out["still_open"] += 1
    except (OSError, asyncio.IncompleteReadError):
        out["lifetimes"].append(time.monotonic() - opened)
    finally:
        w.close()


async def attack(a):
    out = {"opened": 0, "connect_failed": 0, "still_open": 0, "lifetimes": []}
    gate = asyncio.Semaphore(256)
    until = [float("inf")]
    t0 = time.monotonic()
    tasks = [asyncio.create_task(slow(a.port, gate, out, until)) for _ in range(a.connections)]
    # Every connect done (or failed): then wait for vipd to close them.
    while out["opened"] + out["connect_failed"] < a.connections and time.monotonic() - t0 < 60:
        await asyncio.sleep(0.1)
    opening_s = time.monotonic() - t0
    until[0] = time.monotonic() + a.wait
    await asyncio.gather(*tasks)
    return {
        "connections": a.connections, "opened": out["opened"], "connect_failed": out["connect_failed"],
        "opening_s": opening_s, "closed_by_vipd": len(out["lifetimes"]), "still_open": out["still_open"],
        "lifetime_s": summary(out["lifetimes"]),
    }


async def main_async(a):
    token = open(a.token_file).read().split()[0]
    gets = Gets(a.port, token)
    getters = [asyncio.create_task(gets.kept_alive()), asyncio.create_task(gets.fresh())]
    await asyncio.sleep(a.baseline)
    gets.phase = "attack"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--attack-only", "--port", str(a.port), "--token-file", a.token_file,
        "--connections", str(a.connections), "--wait", str(a.wait), stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    gets.stop = True
    for g in getters:
        g.cancel()
    result = json.loads(out)
    result["get_ms"] = {k: summary(v) for k, v in sorted(gets.lat.items())}
    result["get_errors"] = gets.errors
    return result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--connections", type=int, default=5000)
    p.add_argument("--baseline", type=float, default=5)
    p.add_argument("--wait", type=float, default=20)
    p.add_argument("--attack-only", action="store_true")
    a = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(json.dumps(asyncio.run(attack(a) if a.attack_only else main_async(a))), flush=True)


if __name__ == "__main__":
    main()
