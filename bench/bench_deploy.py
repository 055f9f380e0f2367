"""Deployment benchmark: one server process, two worker processes, and Ray Serve with one and two replicas.

Each configuration is started as ``python -m server ...`` serving the
embedded demo model (8x8 digits CNN, batching off) and driven by the load
generator of ``bench_server.py`` (a separate process, one keep-alive
HTTP/1.1 connection per client, TF Serving JSON ``:predict`` of one row in a
closed loop). For each: requests/s, p50 and p99 latency, the resident
memory of every process the server started (for Ray: GCS, raylet, the
Serve controller, the HTTP proxy, the replicas ...), and the CPU seconds
those processes used per request, read from /proc before and after the
load; then the ratios to ``--workers 1`` measured in the same run. The
CPU the Ray cluster burns with no traffic is measured too, and subtracted
in the per-request overhead of Ray.

Run from the repository root with the ray extra installed (Linux: it reads /proc):

    .venv/bin/python bench/bench_deploy.py [--duration 10] [--clients 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_server  # noqa: E402  (the load generator, the readiness check and free ports)

TICKS = os.sysconf("SC_CLK_TCK")

CONFIGS = {
    "workers 1": ["--workers", "1"],
    "workers 2": ["--workers", "2"],
    "ray, 1 replica": ["--ray", "--replicas", "1"],
    "ray, 2 replicas": ["--ray", "--replicas", "2"],
}


# -- processes from /proc -------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds used) of ``pid``, or None when it has gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def descendants(root: int) -> list[int]:
    """``root`` and every process below it."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                parents.setdefault(stat[0], []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    return sum(stat[1] for stat in map(_stat, pids) if stat is not None)


def process_name(pid: int) -> str:
    """A short name: Ray's own process titles (``ray::ProxyActor``), else the program and its first flag."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [a.decode(errors="replace") for a in argv if a]
    if not words:
        return "?"
    if words[0].startswith("ray::"):
        return words[0].split(" ")[0]
    program = Path(words[0]).name
    if program.startswith("python") and len(words) > 1:
        if words[1:3] == ["-m", "server"]:
            return "python -m server"
        if "-c" in words:
            return "python -c (worker process)"
        script = next((w for w in words[1:] if not w.startswith("-")), words[1])
        return Path(script).name
    return program


def by_name(values: dict[int, float]) -> dict[str, float]:
    """Per-process values summed by process name, largest first."""
    totals: dict[str, float] = {}
    for pid, value in values.items():
        name = process_name(pid)
        totals[name] = totals.get(name, 0.0) + value
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# -- one configuration ------------------------------------------------------------------------------------------


@dataclass
class Result:
    config: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    cpu_ms_per_request: float
    idle_cpu_percent: float
    processes: int
    rss_total_mb: float
    rss_by_process: dict[str, float] = field(default_factory=dict)
    cpu_ms_by_process: dict[str, float] = field(default_factory=dict)


def start_server(flags: list[str], work: Path) -> tuple[subprocess.Popen, int]:
    port = bench_server.free_port()
    cmd = [sys.executable, "-m", "server", "--port", str(port), "--access-log=false", "--log-level", "warning",
           *flags]
    if "--ray" in flags:
        cmd += ["--ray-num-cpus", "1"]
    log = open(work / f"server-{port}.log", "wb")  # noqa: SIM115 - the server writes it until it stops
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    bench_server.wait_ready(port, proc, timeout=180)
    return proc, port


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM (the server shuts Ray down itself), then kill whatever it started and left behind."""
    tree = descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    time.sleep(1)
    for pid in tree[1:]:
        if _stat(pid) is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def measure(name: str, flags: list[str], request: bytes, expected: np.ndarray, clients: int, duration: float,
            work: Path) -> Result:
    proc, port = start_server(flags, work)
    try:
        bench_server.check_once(port, request, "tfs-json", expected)
        bench_server.run_load(port, request, clients, 2.0, warmup=0.0)  # warm up every replica and connection
        time.sleep(1)
        pids = descendants(proc.pid)
        before = cpu_seconds(pids)
        time.sleep(3)
        idle = (cpu_seconds(pids) - before) / 3
        before_each = {pid: cpu_seconds([pid]) for pid in pids}
        load = bench_server.run_load(port, request, clients, duration, warmup=0.0)
        cpu_ms = by_name({pid: (cpu_seconds([pid]) - before_each[pid]) / load["requests"] * 1000 for pid in pids})
        rss = by_name({pid: rss_mb(pid) for pid in descendants(proc.pid)})
        return Result(name, load["rps"], load["p50_ms"], load["p99_ms"], int(load["requests"]),
                      sum(cpu_ms.values()), idle * 100, len(pids), sum(rss.values()), rss, cpu_ms)
    finally:
        stop_server(proc)


# -- the report -----------------------------------------------------------------------------------------------


def report(results: list[Result], clients: int, duration: float) -> str:
    base = results[0]
    lines = [f"demo model, TF Serving JSON :predict of one row, {clients} clients, {duration:g} s per configuration",
             "",
             "| configuration | requests/s | p50 ms | p99 ms | CPU ms/request | idle CPU % | processes | RSS MB "
             "| requests/s vs workers 1 | p99 vs workers 1 | CPU/request vs workers 1 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r.config} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.cpu_ms_per_request:.2f} "
                     f"| {r.idle_cpu_percent:.1f} | {r.processes} | {r.rss_total_mb:.0f} | {r.rps / base.rps:.2f}x "
                     f"| {r.p99_ms / base.p99_ms:.2f}x | {r.cpu_ms_per_request / base.cpu_ms_per_request:.2f}x |")
    lines.append("")
    for r in results:
        biggest = ", ".join(f"{name} {mb:.0f}" for name, mb in list(r.rss_by_process.items())[:8])
        lines.append(f"RSS MB by process, {r.config}: {biggest}")
    lines.append("")
    for r in results:
        busiest = ", ".join(f"{name} {ms:.2f}" for name, ms in list(r.cpu_ms_by_process.items())[:6])
        lines.append(f"CPU ms per request by process, {r.config}: {busiest}")
    ray = [r for r in results if r.config.startswith("ray")]
    if ray:
        lines.append("")
        for r in ray:
            added = r.cpu_ms_per_request - base.cpu_ms_per_request
            idle_share = r.idle_cpu_percent / 100 / r.rps * 1000  # the idle burn, spread over the requests
            lines.append(f"CPU Ray adds per request, {r.config}: {added:.2f} ms ({added - idle_share:.2f} ms without "
                         f"Ray's idle CPU)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per configuration")
    parser.add_argument("--clients", type=int, default=8, help="concurrent keep-alive connections")
    parser.add_argument("--only", action="append", choices=list(CONFIGS), help="run only these configurations")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import runtime
    from savedmodel import demo

    images, _labels = demo.test_data()
    x = images[:1].astype(np.float32)
    expected = next(iter(runtime.load(demo.BASE_PATH).signatures["serving_default"](image=x).values()))
    body = json.dumps({"instances": x.tolist()}).encode()
    request = bench_server.http_request(f"/v1/models/{demo.NAME}:predict", body)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        for name in args.only or list(CONFIGS):
            print(f"{name} ...", file=sys.stderr, flush=True)
            results.append(measure(name, CONFIGS[name], request, expected, args.clients, args.duration, Path(tmp)))
    print(report(results, args.clients, args.duration))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
