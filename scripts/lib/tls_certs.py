"""A throwaway CA and a server certificate for 127.0.0.1 (openssl), for the e2e scenarios that
run vipd's API over TLS: make(dir) -> (ca.pem, api.pem, api.key), the key mode 0600."""

import os
import subprocess


def make(d):
    def run(*args):
        r = subprocess.run(["openssl", *args], cwd=d, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)}: {r.stderr}")

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=vipd e2e CA")
    run("req", *ec, "-keyout", "api.key", "-out", "api.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "api.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "api.pem", "-days", "2", "-extfile", "ext")
    os.chmod(os.path.join(d, "api.key"), 0o600)
    return os.path.join(d, "ca.pem"), os.path.join(d, "api.pem"), os.path.join(d, "api.key")


def private_file(path, text):
    """Write `text` to `path`, mode 0600 (what vipd accepts for a token)."""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)
    return path
