"""The API against hostile clients, end to end (scenario `api_hardening` of scripts/e2e; issue
20 item 2). Functional checks only: no assertion on a duration.

vipd 1, HTTPS (a CA made here), the admin and the read-only token, the local socket,
api.max_connections = 8:
- the read-only token reads every read route and gets 403 on every change; a change with the
  admin token but without `Content-Type: application/json` gets 415, with it goes through;
- vipctl over HTTPS with --cacert (and --insecure) lists; without the CA it refuses, in one
  line; a plain HTTP request to the TLS port gets no HTTP answer;
- the local socket is 0600, and `vipctl --socket` changes and lists without a token;
- the cap: with 8 anonymous connections held, new ones evict the oldest; with 8 connections
  that showed a token held, a new one is refused (the socket, which has its own cap, reads
  the counters meanwhile);
- `vipd --check` refuses a token file of mode 0644, naming the file and the mode.
vipd 2, plain HTTP, api.header_timeout = 2, api.idle_timeout = 1: a connection that sends
nothing, one that trickles half a head, and a kept-alive one gone quiet after its answer are
each closed by vipd, and counted.
"""

import json
import os
import subprocess
import tempfile

from vipdbed import API_PORT, LIB, PREFIX, TARGET_DIR, VIP4, VIPD, Vipd, check, log, netns
import tls_certs

VIPCTL = os.environ.get("VIPCTL_BIN", os.path.join(TARGET_DIR, "debug", "vipctl"))
CLIENT = os.path.join(LIB, "api_client.py")
ADMIN = "e2e-hardening-admin-0123456789"
READ = "e2e-hardening-read-0123456789"
SERVICES = [{"vip": VIP4, "proto": "tcp", "port": 80, "scheduler": "maglev",
             "rs": [("10.77.0.21", 8080, 1), ("10.77.0.22", 8080, 1)]}]
WEB = f"/api/v1/services/tcp/{VIP4}/80"
READS = ["/metrics", "/api/v1/status", "/api/v1/stats", "/api/v1/health", "/api/v1/config",
         "/api/v1/timeouts", "/api/v1/connections", "/api/v1/services", WEB, "/api/v1/box"]
CHANGES = [("POST", "/api/v1/services"), ("PATCH", WEB), ("DELETE", WEB), ("POST", f"{WEB}/real_servers"),
           ("PATCH", f"{WEB}/real_servers/10.77.0.21/8080"), ("DELETE", f"{WEB}/real_servers/10.77.0.21/8080"),
           ("POST", f"{WEB}/real_servers/10.77.0.21/8080/drain"), ("PUT", "/api/v1/timeouts"),
           ("PATCH", "/api/v1/timeouts"), ("POST", "/api/v1/zero"), ("POST", "/api/v1/reload"),
           ("POST", "/api/v1/health/release"), ("POST", "/api/v1/box/drain"), ("POST", "/api/v1/box/resume")]


def curl(v, method, path, token, json_type=True, body=None, url=None):
    """(HTTP status, parsed body) of one request from the LB namespace; status 0: no answer."""
    args = ["curl", "-s", "-m", "10", "-o", "-", "-w", "\n%{http_code}", "-X", method]
    if v.cacert:
        args += ["--cacert", v.cacert]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    if json_type and method not in ("GET", "HEAD"):
        args += ["-H", "Content-Type: application/json"]
    if body is not None:
        args += ["--data-binary", json.dumps(body)]
    r = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-lb", *args, (url or v.url) + path],
                       capture_output=True, text=True, timeout=20)
    text, _, code = r.stdout.rpartition("\n")
    try:
        parsed = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        parsed = text
    return int(code or 0), parsed


def vipctl(*args):
    r = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-lb", VIPCTL, *args], capture_output=True, text=True,
                       timeout=30, env={k: val for k, val in os.environ.items() if not k.startswith("VIPCTL_")})
    return r.returncode, r.stdout, r.stderr


def socket_metric(sock, name):
    rc, out, err = vipctl("--socket", sock, "metrics")
    check(rc == 0, f"vipctl --socket metrics: {err}")
    for line in out.splitlines():
        key, _, value = line.rpartition(" ")
        if key == name:
            return float(value)
    raise AssertionError(f"no {name} in /metrics")


def roles_and_types(v):
    for path in READS:
        status, body = curl(v, "GET", path, READ)
        check(status == 200, f"GET {path} with the read-only token: {status} {str(body)[:200]}")
    gen = curl(v, "GET", "/api/v1/status", READ)[1]["generation"]
    for method, path in CHANGES:
        status, body = curl(v, method, path, READ, body={})
        check(status == 403 and body["error"]["field"] == "authorization", f"{method} {path} with the read-only token: {status} {body}")
        status, body = curl(v, method, path, ADMIN, json_type=False, body={})
        check(status == 415 and body["error"]["field"] == "content-type", f"{method} {path} without the JSON type: {status} {body}")
    check(curl(v, "GET", "/api/v1/status", READ)[1]["generation"] == gen, "a refused change changed the generation")
    status, body = curl(v, "POST", f"{WEB}/real_servers", ADMIN, body={"ip": "10.77.0.23", "port": 8080})
    check(status == 201 and body["generation"] == gen + 1, f"an admin change: {status} {body}")
    status, body = curl(v, "DELETE", f"{WEB}/real_servers/10.77.0.23/8080", ADMIN)
    check(status == 200, f"an admin DELETE with the JSON type and no body: {status} {body}")
    log(f"    read-only token: {len(READS)} read routes 200, {len(CHANGES)} changes 403; admin token without the JSON "
        f"type: 415 on each; with it: applied (generation {gen} -> {gen + 2})")


def tls_and_vipctl(v, ca, admin_file):
    api = f"https://127.0.0.1:{API_PORT}"
    rc, out, err = vipctl("--api", api, "--cacert", ca, "--token-file", admin_file, "-L", "-n")
    check(rc == 0 and "10.77.0.21:8080" in out, f"vipctl over https with --cacert: {rc} {err}")
    rc, out, err = vipctl("--api", api, "--insecure", "--token-file", admin_file, "status")
    check(rc == 0 and out.startswith("vipd: generation"), f"vipctl --insecure: {rc} {err}")
    rc, out, err = vipctl("--api", api, "--token-file", admin_file, "-L", "-n")
    check(rc == 1 and out == "" and len(err.splitlines()) == 1 and err.startswith("vipctl: "), f"vipctl without the CA: {rc} {err!r}")
    status, _ = curl(v, "GET", "/api/v1/status", READ, url=f"http://127.0.0.1:{API_PORT}")
    check(status != 200, f"plain HTTP on the TLS port answered {status}")
    log(f"    TLS: vipctl --cacert and --insecure work, without the CA one line ({err.strip()[:90]}...); "
        f"plain HTTP on the port gets no answer")


def local_socket(sock):
    mode = os.stat(sock).st_mode & 0o777
    check(mode == 0o600, f"the socket's mode is {mode:o}")
    rc, out, err = vipctl("--socket", sock, "-a", "-t", f"{VIP4}:80", "-r", "10.77.0.23:8080", "-w", "2")
    check(rc == 0 and err == "", f"vipctl --socket -a: {rc} {err}")
    rc, out, err = vipctl("--socket", sock, "-L", "-n")
    check(rc == 0 and "10.77.0.23:8080" in out, f"vipctl --socket -L -n: {rc} {err}")
    rc, out, err = vipctl("--socket", sock, "-d", "-t", f"{VIP4}:80", "-r", "10.77.0.23:8080")
    check(rc == 0, f"vipctl --socket -d: {rc} {err}")
    log("    local socket: mode 0600; vipctl --socket adds, lists and deletes a real server without a token")


def cap(v, ca, sock):
    evicted0 = socket_metric(sock, 'vipd_api_connections_evicted_total{listener="tcp"}')
    holders = []
    try:
        anon = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-lb", "python3", CLIENT, "hold", str(API_PORT), "8"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        holders.append(anon)
        check(anon.stdout.readline().startswith("held 8"), "8 anonymous connections")
        # A client with a token still gets in: the oldest anonymous connection makes room.
        status, _ = curl(v, "GET", "/api/v1/status", READ)
        check(status == 200, f"a token holder with 8 anonymous connections held: {status}")
        evicted = socket_metric(sock, 'vipd_api_connections_evicted_total{listener="tcp"}') - evicted0
        check(evicted >= 1, "no anonymous connection was evicted")
        for _ in range(8):
            p = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-lb", "python3", CLIENT, "observe", str(API_PORT),
                                  "--token", READ, "--ca", ca], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            holders.append(p)
            check(p.stdout.readline().strip() == "ready", "a token holder did not connect")
            p.stdin.write("/api/v1/status\n")
            p.stdin.flush()
            check(json.loads(p.stdout.readline())["status"] == 200, "a token holder's request")
        held = socket_metric(sock, 'vipd_api_connections{listener="tcp"}')
        check(held == 8, f"{held} connections held at a cap of 8")
        refused0 = socket_metric(sock, 'vipd_api_connections_refused_total{listener="tcp"}')
        status, _ = curl(v, "GET", "/api/v1/status", READ)
        check(status == 0, f"a ninth connection with 8 token holders held was answered {status}")
        refused = socket_metric(sock, 'vipd_api_connections_refused_total{listener="tcp"}') - refused0
        check(refused == 1, f"refused {refused}")
        evicted = socket_metric(sock, 'vipd_api_connections_evicted_total{listener="tcp"}') - evicted0
    finally:
        for p in holders:
            p.stdin.close()
            p.wait(timeout=20)
    status, _ = curl(v, "GET", "/api/v1/status", READ)
    check(status == 200, "the API after the holders left")
    log(f"    cap 8: anonymous connections evicted to make room ({evicted:.0f}); 8 token holders held, a ninth refused "
        f"(counted), the socket answered meanwhile")


def exposed_token(v):
    with tempfile.TemporaryDirectory() as d:
        token = os.path.join(d, "token")
        with open(token, "w") as f:
            f.write(ADMIN + "\n")
        os.chmod(token, 0o644)
        text = open(v.config).read().replace(v.token_file, token)
        path = os.path.join(d, "vipd.toml")
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run([VIPD, "--check", path], capture_output=True, text=True, timeout=30)
        check(r.returncode == 1 and f"api.token_file {token}: mode 0644" in r.stderr, f"--check of a 0644 token: {r.returncode} {r.stderr!r}")
    log(f"    vipd --check refuses a token file of mode 0644: {r.stderr.strip().split(': ', 2)[-1][:100]}")


def counter(v, name):
    m = v.api("/metrics")
    return next(float(ln.split()[-1]) for ln in m.splitlines() if ln.startswith(name + " "))


def timeouts():
    v = Vipd("apito", services=SERVICES, token=ADMIN, api_keys=["header_timeout = 2", "idle_timeout = 1"])
    try:
        v.start()
        header0 = counter(v, 'vipd_api_header_timeouts_total{listener="tcp"}')
        idle0 = counter(v, 'vipd_api_idle_timeouts_total{listener="tcp"}')
        runs = {
            # Nothing sent: nothing moves, the idle timeout (the shorter) closes it.
            "silent": [],
            # Half a head, a header line every 0.3 s: bytes move, the header timeout closes it.
            "slowloris": ["--send", "GET /api/v1/status HTTP/1.1\\r\\nHost: x\\r\\n", "--trickle", "0.3"],
            # One whole request answered, then quiet: kept alive until the idle timeout.
            "kept alive": ["--send", f"GET /api/v1/status HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Bearer {ADMIN}\\r\\n\\r\\n"],
        }
        for what, extra in runs.items():
            out = netns(f"{PREFIX}-lb", "python3", CLIENT, "wait_close", str(API_PORT), *extra, timeout=90).strip()
            check(out == "closed", f"{what} connection: {out}")
        header = counter(v, 'vipd_api_header_timeouts_total{listener="tcp"}') - header0
        idle = counter(v, 'vipd_api_idle_timeouts_total{listener="tcp"}') - idle0
        check(header >= 1 and idle >= 2, f"timeouts counted: header {header}, idle {idle}")
        log(f"    header_timeout 2 s, idle_timeout 1 s: a silent, a slowloris and a kept-alive idle connection each "
            f"closed by vipd (counted: {header:.0f} header, {idle:.0f} idle timeouts)")
    except Exception:
        log(v.tail())
        raise
    finally:
        rc = v.stop()
    check(rc == 0, f"vipd exit code {rc}")


def scenario_api_hardening():
    """API hardening: roles (403), JSON-only changes (415), TLS, the local socket, the cap, the timeouts."""
    d = tempfile.mkdtemp(prefix=f"vipd-e2e-{PREFIX}-tls-")
    ca, cert, key = tls_certs.make(d)
    read_file = tls_certs.private_file(os.path.join(d, "read.token"), READ + "\n")
    sock = os.path.join(d, "api.sock")
    v = Vipd("apihard", services=SERVICES, token=ADMIN, cacert=ca, api_keys=[
        f'read_token_file = "{read_file}"', f'tls_certificate = "{cert}"', f'tls_key = "{key}"',
        f'socket = "{sock}"', "max_connections = 8", "header_timeout = 30"])
    try:
        v.start()
        v.token = READ  # what the helpers read with
        roles_and_types(v)
        tls_and_vipctl(v, ca, v.token_file)
        local_socket(sock)
        cap(v, ca, sock)
        exposed_token(v)
    except Exception:
        log(v.tail())
        raise
    finally:
        rc = v.stop()
        subprocess.run(["rm", "-rf", d], check=False)
    check(rc == 0, f"vipd exit code {rc}")
    timeouts()


SCENARIOS = {"api_hardening": scenario_api_hardening}
