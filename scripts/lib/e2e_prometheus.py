"""A real Prometheus server scraping vipd in the namespace test bed (scripts/e2e prometheus),
over HTTPS (vipd's api.tls_certificate from a CA made here) with the read-only token
(api.read_token_file), as docs/metrics.md shows: during a load, Prometheus's HTTP API answers
a per-real-server rate whose spread is the load's; with vipd's alert rules loaded,
`VipdRealServerDown` fires when a real server's health check fails. The rules' `for:`
durations are shortened in the copy Prometheus loads (the expressions are the shipped ones),
so the test does not wait 30 s per alert."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from vipdbed import (
    API_PORT, PREFIX, ROOT, VIP4, Vipd, check, check_spread, isolated_lb_kernel, load, log, netns,
)
import tls_certs

ADMIN = "e2e-prometheus-admin-0123456789"
READ = "e2e-prometheus-read-0123456789"

PROM_PORT = 19090


def prom_query(expr):
    out = netns(f"{PREFIX}-lb", "curl", "-s", "-m", "5", "--get", "--data-urlencode", f"query={expr}",
                f"http://127.0.0.1:{PROM_PORT}/api/v1/query")
    body = json.loads(out)
    check(body.get("status") == "success", f"query {expr!r}: {body}")
    return body["data"]["result"]


def prom_alerts():
    out = netns(f"{PREFIX}-lb", "curl", "-s", "-m", "5", f"http://127.0.0.1:{PROM_PORT}/api/v1/alerts")
    return json.loads(out)["data"]["alerts"]


class Prometheus:
    """A Prometheus server in the LB namespace scraping vipd every second."""

    def __init__(self, ca, read_token):
        self.dir = tempfile.mkdtemp(prefix="vipd-e2e-prometheus-")
        # Prometheus's own copy of the read-only token.
        token_file = tls_certs.private_file(os.path.join(self.dir, "vipd-read.token"), read_token + "\n")
        rules = open(os.path.join(ROOT, "packaging", "prometheus", "vipd.rules.yml")).read()
        rules = re.sub(r"for: \d+[smh]", "for: 2s", rules)
        with open(os.path.join(self.dir, "vipd.rules.yml"), "w") as f:
            f.write(rules)
        with open(os.path.join(self.dir, "prometheus.yml"), "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [vipd.rules.yml]
scrape_configs:
  - job_name: vipd
    scheme: https
    tls_config: {{ca_file: {ca}}}
    authorization: {{credentials_file: {token_file}}}
    static_configs:
      - targets: ["127.0.0.1:{API_PORT}"]
""")
        self.log = open(os.path.join(self.dir, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", f"{PREFIX}-lb", "prometheus",
             f"--config.file={self.dir}/prometheus.yml", f"--storage.tsdb.path={self.dir}/data",
             f"--web.listen-address=127.0.0.1:{PROM_PORT}", "--storage.tsdb.retention.time=1h"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline:
            check(self.proc.poll() is None, f"prometheus exited: {self.tail()}")
            r = netns(f"{PREFIX}-lb", "curl", "-s", "-m", "2", f"http://127.0.0.1:{PROM_PORT}/-/ready", check=False)
            if "Ready" in r:
                return
            time.sleep(0.3)
        raise AssertionError(f"prometheus not ready after 30 s: {self.tail()}")

    def tail(self):
        self.log.flush()
        with open(os.path.join(self.dir, "prometheus.log")) as f:
            return "".join(f.readlines()[-10:])

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_for(what, probe, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s")


def scenario_prometheus():
    """A real Prometheus scrapes vipd: per-real-server rates show the load's spread, and the real-server-down alert fires."""
    check_keys = 'health_check = { type = "http", path = "/health", interval = 0.5, timeout = 0.4, rise = 1, fall = 2 }'
    services = [{"vip": VIP4, "proto": "tcp", "port": 80, "scheduler": "wrr", "keys": [check_keys],
                 "rs": [("10.77.0.21", 8080, 1), ("10.77.0.22", 8080, 1), ("10.77.0.23", 8080, 2)]}]
    tls_dir = tempfile.mkdtemp(prefix=f"vipd-e2e-{PREFIX}-prom-tls-")
    ca, cert, key = tls_certs.make(tls_dir)
    read_file = tls_certs.private_file(os.path.join(tls_dir, "read.token"), READ + "\n")
    v = Vipd("prom", services=services, kernel_interface=f"{PREFIX}-k0", token=ADMIN, cacert=ca,
             api_keys=[f'read_token_file = "{read_file}"', f'tls_certificate = "{cert}"', f'tls_key = "{key}"'])
    prom = None
    health_file = os.path.join(os.environ.get("VIPD_TESTBED_STATE", "/tmp/vipd-testbed"), PREFIX, "rs2.health")
    try:
        with isolated_lb_kernel():
            v.start()
            prom = Prometheus(ca, READ)
            wait_for("vipd scraped over HTTPS with the read-only token", lambda: prom_query('up{job="vipd"} == 1'))
            log("    Prometheus scrapes https://127.0.0.1 (vipd's certificate, a CA made here) with the read-only token: up == 1")
            r = load(url=f"http://{VIP4}/", connections=1200, parallel=16, rate=150)
            check(r["ok"] == 1200, f"load: {r['ok']}/1200 {r['errors']}")
            time.sleep(2.5)  # a scrape after the last connection
            rates = prom_query('sum by (real_server) (increase(vipd_real_server_connections_total{job="vipd"}[1m]))')
            per_rs = {x["metric"]["real_server"]: float(x["value"][1]) for x in rates}
            names = {f"10.77.0.2{i}:8080": f"rs{i}" for i in (1, 2, 3)}
            counts = {names[k]: round(v_) for k, v_ in per_rs.items() if k in names}
            total = sum(counts.values())
            check(total > 900, f"Prometheus saw {total:.0f} of 1200 connections: {per_rs}")
            spread = check_spread(counts, {"rs1": 1, "rs2": 1, "rs3": 2}, total, 0.05)
            check_spread(r["servers"], {"rs1": 1, "rs2": 1, "rs3": 2}, r["ok"], 0.02)
            log(f"    Prometheus, increase(vipd_real_server_connections_total[1m]) by real server: {spread}")
            log(f"    the servers saw {r['servers']}")
            check(not [a for a in prom_alerts() if a["labels"]["alertname"] == "VipdRealServerDown"], "alert before the failure")
            with open(health_file, "w") as f:
                f.write("503\n")
            t0 = time.time()
            alert = wait_for("VipdRealServerDown firing", lambda: [
                a for a in prom_alerts()
                if a["labels"]["alertname"] == "VipdRealServerDown" and a["state"] == "firing"
                and a["labels"].get("real_server") == "10.77.0.22:8080"], timeout=30)
            log(f"    rs2's health URL answers 503: VipdRealServerDown firing after {time.time() - t0:.1f} s "
                f"(for: shortened to 2 s): {alert[0]['annotations']['summary']}")
            os.unlink(health_file)
            wait_for("the alert resolving", lambda: not [
                a for a in prom_alerts() if a["labels"]["alertname"] == "VipdRealServerDown"], timeout=30)
            log("    rs2 healthy again: the alert resolved")
    except Exception:
        log(v.tail())
        if prom:
            log(prom.tail())
        raise
    finally:
        if prom:
            prom.stop()
        if os.path.exists(health_file):
            os.unlink(health_file)
        rc = v.stop()
        shutil.rmtree(tls_dir, ignore_errors=True)
    check(rc == 0, f"vipd exit code {rc}")


SCENARIOS = {"prometheus": scenario_prometheus}
