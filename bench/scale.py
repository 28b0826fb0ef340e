"""Scale: a fleet of simulated GPU hosts scraped by 1 vs 3 vmagent shards into one VictoriaMetrics.

`python -m bench scale`. For each fleet size (MLSCOPE_BENCH_SCALE_HOSTS, default "100,500" GPU hosts of
8 simulated GPUs, served by `python -m bench.fleet` from one process) and each shard count (1, 3):
a fresh VictoriaMetrics, the vmagent shards (`-promscrape.cluster.membersCount`), a warm-up, then a
measured window (MLSCOPE_BENCH_SCALE_WINDOW s, default 60) of: samples/s ingested (VictoriaMetrics'
vm_rows_inserted_total), scrape duration p99 (every scrape's scrape_duration_seconds), CPU (cores)
and RSS of each component (vmalert evaluates the shipped rules every 15 s), and the mlscope-wall
dashboard's queries' p95 over the last 15 minutes.
The 1,000 SageMaker endpoints of the issue are not part of it (the exporter needs CloudWatch; see docs/scale.md).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from . import dashboards
from .host import cpu_seconds, rss_mb
from mlscope.local import free_port

ROOT = Path(__file__).resolve().parent.parent
SIZES = [int(n) for n in os.environ.get("MLSCOPE_BENCH_SCALE_HOSTS", "100,500").split(",")]
SHARD_COUNTS = (1, 3)
WINDOW = int(os.environ.get("MLSCOPE_BENCH_SCALE_WINDOW", "60"))
SCRAPE_INTERVAL = 15
GPUS_PER_HOST = 8


def get(url: str, timeout: float = 30) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def wait_http(url: str, proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            get(url, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s")


class Processes:
    """Every process the bench starts, so each is stopped (and its temp dir removed) also on failure."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, object] = {}

    def start(self, name: str, args: list[str], cwd: Path | None = None):
        import subprocess
        log = open(self.tmp / f"{name}.log", "wb")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd)
        self.procs[name] = proc
        return proc

    def stop(self, *names: str) -> None:
        for name in names or list(self.procs):
            proc = self.procs.pop(name, None)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except Exception:
                    proc.kill()
                    proc.wait()


def vm_query(vm: str, expr: str) -> list[dict]:
    body = json.loads(get(vm + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
    return body["data"]["result"]


def rows_inserted(vm: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in get(vm + "/metrics").decode().splitlines()
               if line.startswith("vm_rows_inserted_total"))


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))] if values else float("nan")


def run_case(procs: Processes, tmp: Path, targets: list[str], shards: int) -> dict:
    vm_port = free_port()
    vm = f"http://127.0.0.1:{vm_port}"
    names = ["vm"] + [f"vmagent-{i}" for i in range(shards)]
    case = f"{len(targets)}-{shards}"
    vm_proc = procs.start("vm", [shutil.which("victoria-metrics"), f"-storageDataPath={tmp / f'vm-{case}'}",
                                 f"-httpListenAddr=127.0.0.1:{vm_port}", "-search.latencyOffset=1s",
                                 "-retentionPeriod=1"])
    wait_http(vm + "/health", vm_proc)
    config = tmp / "scrape.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL}s", "scrape_timeout": "10s"},
        "scrape_configs": [{"job_name": "gpu", "static_configs": [{"targets": targets}]}]}))
    for i in range(shards):
        port = free_port()
        agent = procs.start(f"vmagent-{i}", [
            shutil.which("vmagent"), f"-promscrape.config={config}", f"-promscrape.cluster.membersCount={shards}",
            f"-promscrape.cluster.memberNum={i}", f"-remoteWrite.url={vm}/api/v1/write",
            f"-remoteWrite.tmpDataPath={tmp / f'q-{case}-{i}'}", f"-httpListenAddr=127.0.0.1:{port}"])
        wait_http(f"http://127.0.0.1:{port}/health", agent)

    # the shipped rules, so the wall's recording-rule queries have data; no Alertmanager listens (sends fail)
    rules = [f"-rule={path}" for path in sorted((ROOT / "alerts").glob("*.rules.yml"))]
    procs.start("vmalert", [shutil.which("vmalert"), *rules, f"-datasource.url={vm}", f"-remoteWrite.url={vm}",
                            f"-notifier.url=http://127.0.0.1:{free_port()}", f"-evaluationInterval={SCRAPE_INTERVAL}s",
                            f"-httpListenAddr=127.0.0.1:{free_port()}"])
    names.append("vmalert")
    time.sleep(2 * SCRAPE_INTERVAL + 5)  # every target scraped at least once, queues flowing
    pids = {name: procs.procs[name].pid for name in ["fleet", *names]}
    cpu0, rows0, t0 = {n: cpu_seconds(p) for n, p in pids.items()}, rows_inserted(vm), time.monotonic()
    time.sleep(WINDOW)
    elapsed = time.monotonic() - t0
    cpu = {n: (cpu_seconds(p) - cpu0[n]) / elapsed for n, p in pids.items()}
    rss = {n: rss_mb(p)[0] for n, p in pids.items()}
    ingested = (rows_inserted(vm) - rows0) / elapsed
    get(vm + "/internal/force_flush")
    time.sleep(2)
    durations = [float(v) for series in vm_query(vm, f"scrape_duration_seconds[{WINDOW}s]")
                 for _, v in series["values"]]
    up = vm_query(vm, "count(up == 1)")
    wall = wall_p95(vm_port)
    procs.stop(*reversed(names))
    return {"targets_up": int(float(up[0]["value"][1])) if up else 0, "ingested": ingested,
            "scrape_p99": percentile(durations, 0.99), "cpu": cpu, "rss": rss, "wall_p95": wall}


def wall_p95(port: int) -> tuple[float, int, int, int]:
    """p95 of the wall's queries (ms), and how many queries ran, failed, and returned no series."""
    notes: list[str] = []
    client = dashboards.Client(port)
    times: list[float] = []
    failed = empty = 0
    try:
        queries = dashboards.wall_queries(900, notes)
        for query in queries:
            # VictoriaMetrics' rollup cache stays on, as for Grafana's refreshes
            timing = dashboards.time_query(client, query.expr, query.instant, int(time.time()), 900, reps=3)
            times += timing.times_ms
            failed += timing.error is not None
            empty += timing.error is None and timing.series == 0
    finally:
        client.close()
    return percentile(times, 0.95), len(queries), failed, empty


def main() -> None:
    for binary in ("victoria-metrics", "vmagent", "vmalert"):
        if not shutil.which(binary):
            print(f"(skipped: {binary} not on PATH; apt-get install -y victoria-metrics)")
            return
    tmp = Path(tempfile.mkdtemp(prefix="mlscope-bench-scale-"))
    procs = Processes(tmp)
    rows = []
    try:
        for hosts in SIZES:
            targets_file = tmp / f"targets-{hosts}.json"
            fleet = procs.start("fleet", [sys.executable, "-m", "bench.fleet", f"--gpu-hosts={hosts}",
                                          f"--gpus-per-host={GPUS_PER_HOST}", f"--targets-file={targets_file}"],
                                cwd=ROOT)
            deadline = time.monotonic() + 120
            while not targets_file.exists():
                if fleet.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the fleet did not start; see {tmp / 'fleet.log'}")
                time.sleep(0.5)
            targets = json.loads(targets_file.read_text())["gpu"]
            for shards in SHARD_COUNTS:
                result = run_case(procs, tmp, targets, shards)
                rows.append((hosts, shards, result))
                print_row(hosts, shards, result)
            procs.stop("fleet")
    finally:
        procs.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nscrape interval {SCRAPE_INTERVAL}s, window {WINDOW}s; CPU in cores, RSS in MB; "
          "vmagent columns sum the shards (max per shard in brackets)")


def print_row(hosts: int, shards: int, r: dict) -> None:
    if not hasattr(print_row, "header"):
        print(f"{'hosts':>6} {'GPUs':>6} {'shards':>6} {'up':>5} {'samples/s':>10} {'scrape p99':>10} "
              f"{'fleet cpu':>9} {'vm cpu':>7} {'vm rss':>7} {'vmagent cpu':>16} {'vmagent rss':>16} {'wall p95':>9}")
        print_row.header = True
    agents = [n for n in r["cpu"] if n.startswith("vmagent")]
    cpu = sum(r["cpu"][n] for n in agents)
    rss = sum(r["rss"][n] for n in agents)
    print(f"{hosts:>6} {hosts * GPUS_PER_HOST:>6} {shards:>6} {r['targets_up']:>5} {r['ingested']:>10.0f} "
          f"{r['scrape_p99'] * 1000:>8.1f}ms {r['cpu']['fleet']:>9.2f} {r['cpu']['vm']:>7.2f} {r['rss']['vm']:>7.0f} "
          f"{cpu:>7.2f} [{max(r['cpu'][n] for n in agents):.2f}] {rss:>8.0f} [{max(r['rss'][n] for n in agents):.0f}]"
          f" {r['cpu']['vmalert']:>11.2f} {r['wall_p95'][0]:>7.1f}ms  ({r['wall_p95'][1]} queries, "
          f"{r['wall_p95'][2]} failed, {r['wall_p95'][3]} empty)", flush=True)


if __name__ == "__main__":
    main()
