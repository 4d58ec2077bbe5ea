"""End-to-end test of vipd's HTTP API (scenario `api` of scripts/e2e): a real vipd in the LB
namespace with a bearer token, every route with good and bad input, and the traffic through
the VIP following the changes the API accepted.

What it proves:
- every refused request (unknown field, wrong type, bad address, duplicate service or real
  server, unknown service or real server, oversize body, wrong method, unknown path, missing
  or wrong token) gets its 4xx status and a JSON body naming the field, and changes nothing:
  status, services and the running configuration are the same before and after;
- every accepted change is exactly one new snapshot generation, and traffic follows it: a
  real server added through the API gets connections, a drained one gets none, a deleted
  service stops answering;
- the API keeps answering while reloads run back to back and while slow clients hold
  connections open with half a request;
- `GET /api/v1/config` is a configuration `vipd --check` accepts, and vipd refuses to start
  with a non-loopback `api.listen` and no token.
"""

import json
import os
import subprocess
import tempfile

from vipdbed import API_PORT, PREFIX, VIP4, VIPD, Vipd, check, load, log, netns

TOKEN = "e2e-api-token-0123456789abcdef"
WEB = f"/api/v1/services/tcp/{VIP4}/80"
RS_PATH = f"{WEB}/real_servers"
SERVICES = [{"vip": VIP4, "proto": "tcp", "port": 80, "scheduler": "maglev",
             "rs": [("10.77.0.21", 8080, 1), ("10.77.0.22", 8080, 1)]}]


def call(method, path, body=None, token=TOKEN, headers=()):
    """One request from inside the LB namespace: (status, parsed JSON or text, headers)."""
    args = ["curl", "-s", "-S", "-m", "10", "-X", method, "-D", "/dev/stderr", "-o", "-"]
    if token is not None:
        args += ["-H", f"Authorization: Bearer {token}"]
    for h in headers:
        args += ["-H", h]
    # Every change carries the JSON type, with a body or without (415 otherwise).
    if method not in ("GET", "HEAD") and not any(h.lower().startswith("content-type:") for h in headers):
        args += ["-H", "Content-Type: application/json"]
    if body is not None:
        args += ["--data-binary", "@-"]
        if not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
    args.append(f"http://127.0.0.1:{API_PORT}{path}")
    r = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-lb", *args], input=body,
                       capture_output=True, timeout=20)
    head = r.stderr.decode(errors="replace")
    check(r.returncode == 0, f"{method} {path}: curl failed ({r.returncode}): {head[-300:]}")
    status_line = [ln for ln in head.splitlines() if ln.startswith("HTTP/")][-1]
    status = int(status_line.split()[1])
    hdrs = {}
    for ln in head.splitlines()[1:]:
        if ":" in ln:
            k, v = ln.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    text = r.stdout.decode(errors="replace")
    try:
        return status, json.loads(text), hdrs
    except json.JSONDecodeError:
        return status, text, hdrs


def ok(method, path, body=None, want=200):
    status, v, _ = call(method, path, body)
    check(status == want, f"{method} {path} {body!r}: {status} {v}, wanted {want}")
    return v


def state():
    """What a refused request must not change: generation, status services, services (without
    the counters traffic and time move), running configuration."""
    st = ok("GET", "/api/v1/status")
    services = ok("GET", "/api/v1/services")
    for s in services["services"]:
        for k in ("stats", "rates", "active_conns", "inactive_conns"):
            s.pop(k, None)
        for r in s["real_servers"]:
            for k in ("stats", "rates", "active_conns", "inactive_conns"):
                r.pop(k, None)
            r["health"] = r["health"]["state"]
    return {"generation": st["generation"], "unsaved": st["unsaved_changes"],
            "status_services": st["services"], "services": services,
            "config": ok("GET", "/api/v1/config"), "timeouts": ok("GET", "/api/v1/timeouts")}


# (method, path, body, status, field): each must be refused and change nothing.
BIG = "[" + ",".join(["1"] * 40000) + "]"  # 80 KB: over the 64 KiB limit
DEEP = "[" * 30000 + "]" * 30000  # 60 KB, under the limit: too deep for the JSON parser
BAD = [
    ("POST", "/api/v1/services", {"vip": VIP4, "proto": "tcp", "port": 80}, 409, "port"),
    ("POST", "/api/v1/services", {"vip": VIP4, "proto": "tcp", "port": 81, "colour": 1}, 400, "colour"),
    ("POST", "/api/v1/services", {"vip": VIP4, "proto": "tcp", "port": "81"}, 400, "port"),
    ("POST", "/api/v1/services", {"vip": "10.77.100.300", "proto": "tcp", "port": 81}, 400, "vip"),
    ("POST", "/api/v1/services", {"vip": VIP4, "proto": "sctp", "port": 81}, 400, "proto"),
    ("POST", "/api/v1/services", {"vip": "224.0.0.1", "proto": "tcp", "port": 81}, 422, "vip"),
    ("POST", "/api/v1/services", {"vip": "10.77.0.10", "proto": "tcp", "port": 81}, 422, "vip"),
    ("POST", "/api/v1/services", {"vip": VIP4, "proto": "tcp", "port": 81, "scheduler": "lblc"}, 422, "scheduler"),
    ("POST", "/api/v1/services", "{not json", 400, "body"),
    ("POST", "/api/v1/services", "", 400, "body"),
    ("POST", "/api/v1/services", [1, 2], 400, "body"),
    ("POST", "/api/v1/services", BIG, 413, "body"),
    ("POST", "/api/v1/services", DEEP, 400, "body"),
    ("POST", "/api/v1/services", {"vip": VIP4, "proto": "tcp", "port": 81, "scheduler": "x" * 50000}, 422, "scheduler"),
    ("POST", RS_PATH, {"ip": "10.77.0.24", "weight": 1e30}, 400, "weight"),
    ("PATCH", WEB, {"health_check": {"interval": 1e308}}, 422, "health_check.interval"),
    ("PATCH", "/api/v1/timeouts", {"udp": 4294967296}, 400, "udp"),
    ("PATCH", "/api/v1/timeouts", {"udp": 604801}, 422, "udp"),
    ("GET", "/api/v1/services/tcp/10.77.100.300/80", None, 400, "vip"),
    ("GET", f"/api/v1/services/sctp/{VIP4}/80", None, 400, "proto"),
    ("GET", f"/api/v1/services/tcp/{VIP4}/99999", None, 400, "port"),
    ("GET", f"/api/v1/services/tcp/{VIP4}/81", None, 404, "service"),
    ("PATCH", WEB, {"scheduler": "lblc"}, 422, "scheduler"),
    ("PATCH", WEB, {"port": 81}, 400, "port"),
    ("PATCH", WEB, {"real_servers": []}, 400, "real_servers"),
    ("PATCH", WEB, {"health_check": {"interval": 0}}, 422, "health_check.interval"),
    ("PATCH", WEB, {"health_check": {"type": "icmp"}}, 422, "health_check.type"),
    ("PATCH", WEB, {"dead_flows": 1}, 400, "dead_flows"),
    ("PATCH", WEB, BIG, 413, "body"),
    ("PATCH", f"/api/v1/services/tcp/{VIP4}/81", {"scheduler": "rr"}, 404, "service"),
    ("DELETE", f"/api/v1/services/tcp/{VIP4}/81", None, 404, "service"),
    ("POST", RS_PATH, {"ip": "10.77.0.21", "port": 8080}, 409, "ip"),
    ("POST", RS_PATH, {"ip": "10.77.0.24", "wieght": 1}, 400, "wieght"),
    ("POST", RS_PATH, {"ip": "10.77.0.24", "weight": "x"}, 400, "weight"),
    ("POST", RS_PATH, {"ip": "10.77.0.24", "weight": 70000}, 422, "weight"),
    ("POST", RS_PATH, {"ip": "not-an-ip"}, 400, "ip"),
    ("POST", RS_PATH, {"ip": VIP4}, 422, "ip"),
    ("POST", RS_PATH, {"ip": "10.77.0.10"}, 422, "ip"),
    ("POST", RS_PATH, {"ip": "fd00:77::24"}, 422, "ip"),
    ("POST", RS_PATH, {"weight": 1}, 400, "ip"),
    ("POST", f"/api/v1/services/tcp/{VIP4}/81/real_servers", {"ip": "10.77.0.24"}, 404, "service"),
    ("PATCH", f"{RS_PATH}/10.77.0.29/8080", {"weight": 2}, 404, "real_server"),
    ("PATCH", f"{RS_PATH}/10.77.0.21/8080", {"ip": "10.77.0.22"}, 400, "ip"),
    ("PATCH", f"{RS_PATH}/10.77.0.21/8080", {"mode": "dr"}, 422, "port"),
    ("PATCH", f"{RS_PATH}/10.77.0.21/8080", {"weight": -1}, 400, "weight"),
    ("PATCH", f"{RS_PATH}/10.77.0.21/notaport", {"weight": 2}, 400, "rsport"),
    ("PATCH", f"{RS_PATH}/10.77.0.300/8080", {"weight": 2}, 400, "ip"),
    ("DELETE", f"{RS_PATH}/10.77.0.29/8080", None, 404, "real_server"),
    ("POST", f"{RS_PATH}/10.77.0.29/8080/drain", None, 404, "real_server"),
    ("PATCH", "/api/v1/timeouts", {"tcp_fin": 0}, 422, "tcp_fin"),
    ("PATCH", "/api/v1/timeouts", {"tcp": 5}, 400, "tcp"),
    ("PUT", "/api/v1/timeouts", {"udp": "x"}, 400, "udp"),
    ("PUT", "/api/v1/timeouts", [], 400, "body"),
    ("POST", "/api/v1/zero", {"service": f"tcp/{VIP4}"}, 400, "service"),
    ("POST", "/api/v1/zero", {"service": f"tcp/{VIP4}/81"}, 404, "service"),
    ("POST", "/api/v1/zero", {"x": 1}, 400, "x"),
    ("POST", "/api/v1/zero", BIG, 413, "body"),
    ("PUT", "/api/v1/services", None, 405, "method"),
    ("DELETE", "/api/v1/status", None, 405, "method"),
    ("GET", "/api/v1/reload", None, 405, "method"),
    ("POST", "/metrics", None, 405, "method"),
    ("GET", f"{RS_PATH}/10.77.0.21/8080/drain", None, 405, "method"),
    ("PUT", f"{RS_PATH}/10.77.0.21/8080", {"weight": 2}, 405, "method"),
    ("GET", "/api/v1/connections?limit=0", None, 400, "limit"),
    ("GET", "/api/v1/connections?limit=x", None, 400, "query"),
    ("GET", "/api/v1/connections?colour=1", None, 400, "query"),
    ("GET", f"/api/v1/connections?service=tcp/{VIP4}", None, 400, "service"),
    ("GET", "/api/v1/connections?client=10.0.0.300", None, 400, "query"),
    ("GET", "/api/v1/connections?real_server=rs1", None, 400, "real_server"),
    ("POST", "/api/v1/connections", None, 405, "method"),
    ("GET", "/api/v1/nothing", None, 404, "path"),
    ("GET", "/api/v2/services", None, 404, "path"),
]

# Every route, for the token checks (method, path).
ROUTES = [
    ("GET", "/metrics"), ("GET", "/api/v1/status"), ("GET", "/api/v1/stats"),
    ("GET", "/api/v1/health"), ("GET", "/api/v1/config"), ("GET", "/api/v1/timeouts"),
    ("PUT", "/api/v1/timeouts"), ("PATCH", "/api/v1/timeouts"),
    ("GET", "/api/v1/connections"), ("GET", "/api/v1/services"), ("POST", "/api/v1/services"),
    ("GET", WEB), ("PATCH", WEB), ("DELETE", WEB), ("POST", RS_PATH),
    ("PATCH", f"{RS_PATH}/10.77.0.21/8080"), ("DELETE", f"{RS_PATH}/10.77.0.21/8080"),
    ("POST", f"{RS_PATH}/10.77.0.21/8080/drain"), ("POST", "/api/v1/zero"),
    ("POST", "/api/v1/reload"),
]


def refused_change_nothing():
    before = state()
    for method, path, body, status, field in BAD:
        got, v, hdrs = call(method, path, body)
        err = v.get("error", {}) if isinstance(v, dict) else {}
        shown = body if not isinstance(body, str) or len(body) < 80 else f"<{len(body)} bytes>"
        check(got == status and err.get("field") == field and err.get("message"),
              f"{method} {path} {shown!r}: {got} {v!r}, wanted {status} naming `{field}`")
        check(hdrs.get("content-type") == "application/json", f"{method} {path}: error is not JSON ({hdrs})")
        check(len(err["message"]) < 600, f"{method} {path} {shown!r}: a {len(err['message'])} byte message")
        if status == 413:
            check("65536 bytes" in err["message"], f"413 does not say the limit: {err}")
        if status == 405:
            check("allow" in hdrs, f"{method} {path}: 405 without an Allow header")
        after = state()
        check(after == before, f"{method} {path} {shown!r} was refused ({got}) but changed the state: "
              f"{json.dumps(before)[:300]} -> {json.dumps(after)[:300]}")
    log(f"    {len(BAD)} bad requests refused with their status and field named, state unchanged after each "
        f"(generation {before['generation']})")

    for method, path in ROUTES:
        for token, why in ((None, "this API needs"), ("wrong-token-0123456789", "wrong"), (TOKEN.upper(), "wrong")):
            got, v, hdrs = call(method, path, {} if method in ("POST", "PATCH", "PUT") else None, token=token)
            err = v.get("error", {}) if isinstance(v, dict) else {}
            check(got == 401 and err.get("field") == "authorization" and why in err.get("message", ""),
                  f"{method} {path} with token {token!r}: {got} {v!r}")
            check(hdrs.get("www-authenticate") == "Bearer", f"{method} {path}: 401 without WWW-Authenticate: Bearer")
    got, _, _ = call("GET", "/api/v1/status", token=None, headers=[f"Authorization: bearer {TOKEN}"])
    check(got == 200, f"the bearer scheme is case-insensitive, yet `bearer` got {got}")
    check(state() == before, "a request without the token changed the state")
    log(f"    {len(ROUTES)} routes x (no token, wrong token, wrong case): 401 naming `authorization`, state unchanged")


def one_generation(method, path, body, want=200):
    """An accepted change: answered with the next generation, which status then shows."""
    gen = ok("GET", "/api/v1/status")["generation"]
    v = ok(method, path, body, want)
    check(v.get("ok") is True and v.get("generation") == gen + 1,
          f"{method} {path}: answered {v}, generation was {gen}: not exactly one new snapshot")
    now = ok("GET", "/api/v1/status")["generation"]
    check(now == gen + 1, f"{method} {path}: status shows generation {now}, wanted {gen + 1}")
    return now


def rs_of(service, addr):
    return next((r for r in service["real_servers"] if r["address"] == addr), None)


def good_changes_and_traffic(v):
    # Reads.
    m = ok("GET", "/metrics")
    check("vipd_snapshot_generation" in m and "vipd_rx_packets_total" in m, "metrics lack families")
    check(len(ok("GET", "/api/v1/stats")["workers"]) == 1, "stats: one worker expected")
    check(ok("GET", "/api/v1/health")["real_servers"][0]["health"]["state"] == "unchecked", "health without checks")
    svc = ok("GET", WEB)
    check(svc["scheduler"] == "maglev" and len(svc["real_servers"]) == 2, f"service: {svc}")
    t = ok("GET", "/api/v1/timeouts")
    check(t["tcp_fin"] == 3, f"timeouts: {t}")
    c = ok("GET", f"/api/v1/connections?service=tcp/{VIP4}/80&client=192.168.77.2&real_server=10.77.0.21:8080&limit=10")
    check(set(c) == {"sampled", "truncated", "connections"} and c["sampled"] == len(c["connections"]),
          f"connections: {c}")

    # A real server added through the API gets connections.
    one_generation("POST", RS_PATH, {"ip": "10.77.0.23", "port": 8080, "weight": 1}, want=201)
    r = load(url=f"http://{VIP4}/", connections=300, parallel=16)
    check(r["ok"] == 300, f"300 connections after adding rs3: {r['ok']} ok, {r['error_samples'][:3]}")
    share = r["servers"].get("rs3", 0) / 300
    check(0.2 <= share <= 0.47, f"rs3 (1 of 3 equal weights) got {share:.0%} of new connections: {r['servers']}")
    listed = rs_of(ok("GET", WEB), "10.77.0.23:8080")
    check(listed["stats"]["conns"] == r["servers"]["rs3"],
          f"vipd counted {listed['stats']['conns']} connections to rs3, rs3 served {r['servers']['rs3']}")
    log(f"    POST real server rs3: one generation; 300 connections {r['servers']}, vipd's count for rs3 agrees")

    # Drain: no new connections to it.
    one_generation("POST", f"{RS_PATH}/10.77.0.23/8080/drain", None)
    check(rs_of(ok("GET", WEB), "10.77.0.23:8080")["weight"] == 0, "drain did not set weight 0")
    r = load(url=f"http://{VIP4}/", connections=200, parallel=16)
    check(r["ok"] == 200 and r["servers"].get("rs3", 0) == 0, f"after drain: {r['servers']} ok={r['ok']}")
    log(f"    drain rs3: one generation; 200 new connections {r['servers']}")

    one_generation("PATCH", f"{RS_PATH}/10.77.0.23/8080", {"weight": 2})
    one_generation("PATCH", WEB, {"scheduler": "wrr"})
    r = load(url=f"http://{VIP4}/", connections=200, parallel=8)
    check(r["ok"] == 200 and abs(r["servers"].get("rs3", 0) / 200 - 0.5) <= 0.05,
          f"wrr 1:1:2 after PATCH weight 2: {r['servers']}")
    log(f"    PATCH weight 2 + scheduler wrr: one generation each; 200 connections {r['servers']}")

    # Timeouts, zero.
    one_generation("PUT", "/api/v1/timeouts", {"tcp_fin": 4})
    one_generation("PATCH", "/api/v1/timeouts", {"udp": 5})
    t = ok("GET", "/api/v1/timeouts")
    check((t["tcp_fin"], t["udp"], t["tcp_established"]) == (4, 5, 60), f"timeouts after PUT/PATCH: {t}")
    check(ok("GET", WEB)["stats"]["conns"] >= 700, "the service counted fewer connections than were made")
    check(ok("POST", "/api/v1/zero", {"service": f"tcp/{VIP4}/80"}) == {"ok": True}, "zero one service")
    z = ok("GET", WEB)
    check(z["stats"]["conns"] == 0 and all(rs["stats"]["conns"] == 0 for rs in z["real_servers"]),
          f"zero left counts: {z['stats']}")
    check(ok("POST", "/api/v1/zero") == {"ok": True}, "zero all")

    # A service added and deleted through the API: it answers, then it does not.
    one_generation("POST", "/api/v1/services",
                   {"vip": VIP4, "proto": "tcp", "port": 8080, "scheduler": "rr",
                    "real_servers": [{"ip": "10.77.0.21", "port": 8080}]}, want=201)
    out = netns(f"{PREFIX}-client", "curl", "-s", "-m", "5", f"http://{VIP4}:8080/")
    check(out.startswith("server=rs1"), f"new service {VIP4}:8080 did not answer: {out!r}")
    one_generation("DELETE", f"/api/v1/services/tcp/{VIP4}/8080", None)
    gone = netns(f"{PREFIX}-client", "curl", "-s", "-m", "1", f"http://{VIP4}:8080/", check=False)
    check(gone == "", f"deleted service still answered: {gone!r}")
    one_generation("DELETE", f"{RS_PATH}/10.77.0.23/8080", None)
    # A service without real servers: its health check is validated all the same.
    one_generation("POST", "/api/v1/services", {"vip": VIP4, "proto": "tcp", "port": 8443}, want=201)
    before = state()
    got, body, _ = call("PATCH", f"/api/v1/services/tcp/{VIP4}/8443", {"health_check": {"interval": 0}})
    check(got == 422 and body["error"]["field"] == "health_check.interval", f"check of an empty service: {got} {body}")
    check(state() == before, "a refused check of an empty service changed the state")
    one_generation("DELETE", f"/api/v1/services/tcp/{VIP4}/8443", None)
    check(rs_of(ok("GET", WEB), "10.77.0.23:8080") is None, "deleted real server still listed")
    log("    PUT/PATCH timeouts, zero, POST + DELETE service (answered, then not), DELETE real server, an empty service's bad check refused: one generation each")

    # The running configuration is one vipd --check accepts, and unsaved changes are counted.
    st = ok("GET", "/api/v1/status")
    check(st["unsaved_changes"] == 11, f"unsaved_changes {st['unsaved_changes']}, wanted 11")
    saved = os.path.join(v.dir, "saved.toml")
    with open(saved, "w") as f:
        f.write(ok("GET", "/api/v1/config"))
    r = subprocess.run([VIPD, "--check", saved], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"vipd --check refused GET /api/v1/config: {r.stdout}{r.stderr}")
    check('scheduler = "wrr"' in open(saved).read(), "saved configuration lacks the API's change")
    log(f"    GET /api/v1/config: vipd --check accepts it ({r.stdout.strip().split(': ', 1)[-1]})")

    # Reload puts the file back in force: one generation, API changes gone.
    one_generation("POST", "/api/v1/reload", None)
    st = ok("GET", "/api/v1/status")
    check(st["unsaved_changes"] == 0 and ok("GET", WEB)["scheduler"] == "maglev",
          "reload did not put the file's configuration back")
    with open(v.config, "a") as f:
        f.write("\n[[services]]\nvip = \"10.77.100.1\"\nproto = \"tcp\"\nport = 0\n")
    before = state()
    got, body, _ = call("POST", "/api/v1/reload")
    check(got == 422 and body["error"]["field"] == "file" and "port" in body["error"]["message"],
          f"bad file reload: {got} {body}")
    check(state() == before, "a refused reload changed the state")
    v.write_config(SERVICES)
    log("    reload: one generation, file back in force; a bad file refused (422 `file`), state unchanged")


SLOW_CLIENT = r"""
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(sys.argv[2].encode().decode("unicode_escape").encode())
print("sent", flush=True)
time.sleep(float(sys.argv[3]))
"""

RELOADS = r"""
n=0; ok=0
while [ $n -lt 40 ]; do
  c=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $1" -H 'Content-Type: application/json' http://127.0.0.1:$2/api/v1/reload)
  [ "$c" = 200 ] && ok=$((ok+1)); n=$((n+1))
done
echo "$ok/$n"
"""


def answers_during_reloads_and_slow_clients():
    halves = [
        f"GET /api/v1/status HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Bearer {TOKEN}\\r\\n",
        f"POST /api/v1/services HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Bearer {TOKEN}\\r\\n"
        "Content-Type: application/json\\r\\nContent-Length: 1000\\r\\n\\r\\n{\\\"vip\\\": ",
        "GET /metr",
    ]
    slow = []
    try:
        for h in halves:
            p = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-lb", "python3", "-c", SLOW_CLIENT,
                                  str(API_PORT), h, "60"], stdout=subprocess.PIPE, text=True)
            slow.append(p)
            check(p.stdout.readline().strip() == "sent", "slow client did not connect")
        # They hold their connections (until api.header_timeout closes them: api_hardening).
        held = netns(f"{PREFIX}-lb", "ss", "-Htn", "state", "established", f"( dport = :{API_PORT} )")
        check(len(held.splitlines()) >= len(halves), f"the stalled clients' connections were not open: {held!r}")
        gen = ok("GET", "/api/v1/status")["generation"]
        reloads = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-lb", "bash", "-c", RELOADS, "reloads",
                                    TOKEN, str(API_PORT)], stdout=subprocess.PIPE, text=True)
        answered = 0
        while reloads.poll() is None and answered < 400:
            for path in ("/metrics", "/api/v1/status", "/api/v1/services"):
                got, _, _ = call("GET", path)
                check(got == 200, f"GET {path} during reloads with 3 stalled clients: {got}")
                answered += 1
        out, _ = reloads.communicate(timeout=60)
        check(out.strip() == "40/40", f"reloads answered: {out.strip()}")
        now = ok("GET", "/api/v1/status")["generation"]
        check(now == gen + 40, f"40 reloads moved the generation {gen} -> {now}")
        check(state()["unsaved"] == 0, "reloads left unsaved changes")
        log(f"    {answered} GETs answered (200) while 40 reloads ran back to back (generation {gen} -> {now}) "
            f"and 3 clients held half-sent requests open")
    finally:
        for p in slow:
            p.kill()
            p.wait()


def refuses_open_api_without_token(v):
    """vipd --check (start-up short of DPDK) refuses a non-loopback api.listen without a token,
    and a token file with a short token."""
    text = open(v.config).read().replace(f"listen = \"127.0.0.1:{API_PORT}\"", "listen = \"0.0.0.0:19281\"")
    no_token = "\n".join(ln for ln in text.splitlines() if not ln.startswith("token_file"))
    with tempfile.TemporaryDirectory() as d:
        for label, body, want in (("no token", no_token, "api.token_file"),
                                  ("short token", text.replace(v.token_file, os.path.join(d, "short")), "at least 16")):
            with open(os.open(os.path.join(d, "short"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                f.write("short\n")
            path = os.path.join(d, "vipd.toml")
            with open(path, "w") as f:
                f.write(body)
            r = subprocess.run([VIPD, "--check", path], capture_output=True, text=True, timeout=30)
            check(r.returncode == 1 and want in r.stderr, f"{label} on 0.0.0.0: rc {r.returncode} {r.stderr!r}")
        path = os.path.join(d, "vipd.toml")
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run([VIPD, "--check", path], capture_output=True, text=True, timeout=30)
        check(r.returncode == 0, f"0.0.0.0 with a token refused: {r.stderr}")
    log("    vipd --check: api.listen 0.0.0.0 refused without a token and with a short one, accepted with one")


def scenario_api():
    """API: every route with good and bad input; bad requests change nothing; good ones are one
    generation each and traffic follows; answers during reloads and with stalled clients."""
    v = Vipd("api", services=SERVICES, token=TOKEN)
    try:
        v.start()
        refused_change_nothing()
        good_changes_and_traffic(v)
        answers_during_reloads_and_slow_clients()
        refuses_open_api_without_token(v)
    except Exception:
        log(v.tail())
        raise
    finally:
        rc = v.stop()
    check(rc == 0, f"vipd exit code {rc}")
