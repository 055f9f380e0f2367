"""What the security options cost: API keys with a rate limit, and TLS; next to one process and ``--workers 2``.

The demo model (8x8 digits CNN) over TF Serving REST JSON, one row per
request, batching on, in a closed loop from 8 and 64 keep-alive
connections (bench_server's load generator, in its own process). Then the
latency of one keep-alive client over plain HTTP and over TLS with a
self-signed certificate (httpx, so the handshake is paid once).

Run from the repository root: ``.venv/bin/python bench/bench_security.py [--duration 3] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_server as b  # noqa: E402 - the load generator and the server helpers live there

ROOT = b.ROOT
KEY = "bench-key-0123456789abcdef0123456789"
CLIENTS = (8, 64)


def start(work: Path, name: str, *flags: str, scheme: str = "http", verify: object = True) -> tuple[object, int]:
    """``python -m server`` with the demo model, batching and ``flags``; the process and its port once ready."""
    import httpx

    port = b.free_port()
    log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - the server writes it until it stops
    proc = subprocess.Popen([sys.executable, "-m", "server", "--port", str(port), "--enable-batching",
                             "--access-log=false", *flags], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{scheme}://127.0.0.1:{port}/v2/health/ready", verify=verify).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.2)
    b.stop(proc)
    raise RuntimeError(f"{name} did not start: {(work / f'{name}.log').read_text()}")


def throughput(work: Path, duration: float) -> list[dict]:
    from savedmodel import demo

    body = json.dumps({"instances": demo.test_data()[0][:1].astype(np.float32).tolist()}).encode()
    plain = b.http_request("/v1/models/digits:predict", body)
    keyed = b.http_request("/v1/models/digits:predict", body, {"Content-Type": "application/json",
                                                                 "Authorization": f"Bearer {KEY}"})
    keys = work / "keys.txt"
    keys.write_text(KEY + "\n")
    scenarios = [
        ("1 process", [], plain),
        ("1 process, API key + rate limit", ["--api-key-file", str(keys), "--rate-limit", "100000"], keyed),
        ("--workers 2", ["--workers", "2"], plain),
    ]
    rows = []
    for name, flags, request in scenarios:
        proc, port = start(work, name.replace(" ", "_").replace(",", ""), *flags)
        try:
            for clients in CLIENTS:
                result = b.run_load(port, request, clients, duration)
                rows.append({"scenario": name, "clients": clients, **result})
                print(f"{name:34s} {clients:3d} clients: {result['rps']:7.0f} req/s  p50 {result['p50_ms']:6.2f} ms"
                      f"  p99 {result['p99_ms']:6.2f} ms", flush=True)
        finally:
            b.stop(proc)
    return rows


def self_signed(work: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with cryptography."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = work / "cert.pem", work / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def tls_latency(work: Path, calls: int = 300) -> list[dict]:
    """Median latency of one keep-alive client, plain HTTP against TLS (the first tenth is warm-up)."""
    import httpx

    from savedmodel import demo

    cert, key = self_signed(work)
    trusted = ssl.create_default_context(cafile=str(cert))
    body = {"instances": demo.test_data()[0][:1].astype(np.float32).tolist()}
    rows = []
    for name, scheme, flags in (("plain HTTP", "http", []),
                                ("TLS", "https", ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)])):
        proc, port = start(work, name.replace(" ", "_"), *flags, scheme=scheme, verify=trusted)
        try:
            with httpx.Client(base_url=f"{scheme}://127.0.0.1:{port}", verify=trusted) as client:
                times = []
                for _ in range(calls):
                    t0 = time.perf_counter()
                    client.post("/v1/models/digits:predict", json=body).raise_for_status()
                    times.append(time.perf_counter() - t0)
            p50 = statistics.median(times[calls // 10:]) * 1000
            rows.append({"scenario": name, "clients": 1, "p50_ms": p50})
            print(f"{name:34s}   1 client : p50 {p50:6.2f} ms (httpx, keep-alive)", flush=True)
        finally:
            b.stop(proc)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds measured per scenario (default 3)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = throughput(work, args.duration) + tls_latency(work)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
