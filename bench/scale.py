"""Scale: simulated GPU hosts and SageMaker endpoints scraped by 1 vs 3 vmagent shards into one VictoriaMetrics.

`python -m bench scale`. For each fleet size (MLSCOPE_BENCH_SCALE_HOSTS GPU hosts of 8 simulated GPUs, default
"500", served by `python -m bench.fleet` from one process; MLSCOPE_BENCH_SCALE_ENDPOINTS endpoints, default
"1000", paired with the host sizes, served by real SageMaker-exporter processes of ENDPOINTS_PER_SHARD endpoints,
one region each, on a fake AWS that answers each call after a fixed latency: bench/sagemaker_shard.py) and each
vmagent shard count (1, 3): a fresh VictoriaMetrics, the vmagent shards (`-promscrape.cluster.membersCount`),
a warm-up, then a measured window (MLSCOPE_BENCH_SCALE_WINDOW s, default 60) of: samples/s ingested
(VictoriaMetrics' vm_rows_inserted_total) and scraped per job, scrape duration p99 per job, CPU (cores) and RSS
of each component (vmalert evaluates the shipped rules every 15 s), the SageMaker pollers' CPU and wall time per
cycle, and the mlscope-wall dashboard's queries' p95 over the last 15 minutes. Then the SageMaker shard sizing
(one exporter process per size, bench/sagemaker_shard.py): how its cost grows with the endpoints it polls.
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
from . import sagemaker_shard as shard
from .host import cpu_seconds, rss_mb
from mlscope.local import free_port
from mlscope.supervisor import launch, terminate

ROOT = Path(__file__).resolve().parent.parent
SIZES = [int(n) for n in os.environ.get("MLSCOPE_BENCH_SCALE_HOSTS", "500").split(",")]
ENDPOINT_SIZES = [int(n) for n in os.environ.get("MLSCOPE_BENCH_SCALE_ENDPOINTS", "1000").split(",")]
SHARD_COUNTS = (1, 3)
WINDOW = int(os.environ.get("MLSCOPE_BENCH_SCALE_WINDOW", "60"))
SCRAPE_INTERVAL = 15
SAGEMAKER_SCRAPE_INTERVAL = 30  # as provisioning/prometheus/prometheus.yml scrapes the exporter
INTERVALS = {"gpu": SCRAPE_INTERVAL, "sagemaker": SAGEMAKER_SCRAPE_INTERVAL}
GPUS_PER_HOST = 8
ENDPOINTS_PER_SHARD = 250
REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "ap-northeast-1", "eu-central-1", "ap-southeast-2",
           "us-east-2", "ca-central-1"]
SIZING = [250, 500, 1000, 2000]
EMULATOR_ENDPOINTS = int(os.environ.get("MLSCOPE_BENCH_SCALE_EMULATOR", "0"))  # 0: no emulator probe


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

    def start(self, name: str, args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None):
        proc = launch(args, {**os.environ, **(env or {})}, cwd, self.tmp / f"{name}.log")
        self.procs[name] = proc
        return proc

    def stop(self, *names: str) -> None:
        for name in names or list(self.procs):
            proc = self.procs.pop(name, None)
            if proc is not None:
                terminate(proc)


def vm_query(vm: str, expr: str) -> list[dict]:
    body = json.loads(get(vm + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
    return body["data"]["result"]


def rows_inserted(vm: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in get(vm + "/metrics").decode().splitlines()
               if line.startswith("vm_rows_inserted_total"))


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))] if values else float("nan")


def run_case(procs: Processes, tmp: Path, targets: dict[str, list[str]], shards: int,
             exporters: list[str]) -> dict:
    """`exporters`: the names (in `procs`) of the processes serving the targets."""
    vm_port = free_port()
    vm = f"http://127.0.0.1:{vm_port}"
    names = ["vm"] + [f"vmagent-{i}" for i in range(shards)]
    case = f"{len(targets['gpu'])}-{len(targets['sagemaker'])}-{shards}"
    vm_proc = procs.start("vm", [shutil.which("victoria-metrics"), f"-storageDataPath={tmp / f'vm-{case}'}",
                                 f"-httpListenAddr=127.0.0.1:{vm_port}", "-search.latencyOffset=1s",
                                 "-retentionPeriod=1"])
    wait_http(vm + "/health", vm_proc)
    config = tmp / "scrape.yml"
    jobs = [{"job_name": "gpu", "static_configs": [{"targets": targets["gpu"]}]}]
    if targets["sagemaker"]:
        jobs.append({"job_name": "sagemaker", "scrape_interval": f"{SAGEMAKER_SCRAPE_INTERVAL}s",
                     "static_configs": [{"targets": targets["sagemaker"]}]})
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL}s", "scrape_timeout": "10s"}, "scrape_configs": jobs}))
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
    time.sleep(2 * SAGEMAKER_SCRAPE_INTERVAL + 5)  # every target scraped at least twice, queues flowing
    pids = {name: procs.procs[name].pid for name in [*exporters, *names]}
    cpu0, rows0, t0 = {n: cpu_seconds(p) for n, p in pids.items()}, rows_inserted(vm), time.monotonic()
    time.sleep(WINDOW)
    elapsed = time.monotonic() - t0
    cpu = {n: (cpu_seconds(p) - cpu0[n]) / elapsed for n, p in pids.items()}
    rss = {n: rss_mb(p)[0] for n, p in pids.items()}
    ingested = (rows_inserted(vm) - rows0) / elapsed
    get(vm + "/internal/force_flush")
    time.sleep(2)
    jobs = {}
    for job in targets:
        durations = [float(v) for series in vm_query(vm, f'scrape_duration_seconds{{job="{job}"}}[{WINDOW}s]')
                     for _, v in series["values"]]
        scraped = vm_query(vm, f'sum(avg_over_time(scrape_samples_scraped{{job="{job}"}}[{WINDOW}s]))')
        up = vm_query(vm, f'count(up{{job="{job}"}} == 1)')
        jobs[job] = {"targets": len(targets[job]), "up": int(float(up[0]["value"][1])) if up else 0,
                     "scraped": float(scraped[0]["value"][1]) / INTERVALS[job] if scraped else 0.0,
                     "scrape_p99": percentile(durations, 0.99)}
    wall = wall_p95(vm_port)
    procs.stop(*reversed(names))
    return {"ingested": ingested, "jobs": jobs, "cpu": cpu, "rss": rss, "wall_p95": wall}


def wall_p95(port: int) -> tuple[float, int, int, int, str]:
    """p95 of the wall's queries (ms), how many queries ran, failed, and returned no series (their panels are
    printed), and the slowest query's panel and its median."""
    notes: list[str] = []
    client = dashboards.Client(port)
    times: list[float] = []
    failed = 0
    empty: list[str] = []
    slowest = (0.0, "")
    try:
        queries = dashboards.wall_queries(900, notes)
        for query in queries:
            # VictoriaMetrics' rollup cache stays on, as for Grafana's refreshes
            timing = dashboards.time_query(client, query.expr, query.instant, int(time.time()), 900, reps=3)
            times += timing.times_ms
            failed += timing.error is not None
            if timing.error is None and timing.series == 0:
                empty.append(query.panel)
            if timing.times_ms:
                slowest = max(slowest, (percentile(timing.times_ms, 0.5), query.panel))
    finally:
        client.close()
    if empty:
        notes.append(f"wall panels without data: {', '.join(sorted(set(empty)))}")
    for note in notes:
        print(f"  ({note})")
    return percentile(times, 0.95), len(queries), failed, len(empty), f"{slowest[1]!r} {slowest[0]:.0f} ms"


def start_fleet(procs: Processes, tmp: Path, hosts: int, endpoints: int) -> tuple[dict[str, list[str]], list[str]]:
    """The GPU hosts (one process) and the SageMaker shards (one process each); their targets and names."""
    started = {"fleet": [f"--gpu-hosts={hosts}", f"--gpus-per-host={GPUS_PER_HOST}"]}
    for i, first in enumerate(range(0, endpoints, ENDPOINTS_PER_SHARD)):
        started[f"sagemaker-{i}"] = [f"--sagemaker-endpoints={min(ENDPOINTS_PER_SHARD, endpoints - first)}",
                                     f"--region={REGIONS[i % len(REGIONS)]}", f"--cycles-file={tmp / f'cycles-{i}.json'}"]
    for name, args in started.items():
        procs.start(name, [sys.executable, "-m", "bench.fleet", *args, f"--targets-file={tmp / f'{name}.json'}"],
                    cwd=ROOT)
    targets: dict[str, list[str]] = {"gpu": [], "sagemaker": []}
    deadline = time.monotonic() + 180
    for name in started:
        path = tmp / f"{name}.json"
        while not path.exists():
            if procs.procs[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; see {tmp / f'{name}.log'}")
            time.sleep(0.5)
        for job, addresses in json.loads(path.read_text()).items():
            if job in targets:
                targets[job] += addresses
    return targets, list(started)


def poll_cycles(tmp: Path, shards: int, wait_for: int = 0, timeout: float = 300) -> list[dict]:
    """Every SageMaker shard's cycles so far; first waits until each has run `wait_for` of them."""
    deadline = time.monotonic() + timeout
    while True:
        files = [tmp / f"cycles-{i}.json" for i in range(shards)]
        cycles = [json.loads(f.read_text())["cycles"] if f.exists() else [] for f in files]
        if all(len(c) >= wait_for for c in cycles) or time.monotonic() > deadline:
            return cycles
        time.sleep(1)


def main() -> None:
    for binary in ("victoria-metrics", "vmagent", "vmalert"):
        if not shutil.which(binary):
            print(f"(skipped: {binary} not on PATH; apt-get install -y victoria-metrics)")
            return
    tmp = Path(tempfile.mkdtemp(prefix="mlscope-bench-scale-"))
    procs = Processes(tmp)
    endpoint_sizes = ENDPOINT_SIZES + [ENDPOINT_SIZES[-1]] * (len(SIZES) - len(ENDPOINT_SIZES))
    try:
        for hosts, endpoints in zip(SIZES, endpoint_sizes):
            targets, exporters = start_fleet(procs, tmp, hosts, endpoints)
            sm_shards = len(targets["sagemaker"])
            # the start-up cycle only sets the counters' watermarks: measure from the second on
            poll_cycles(tmp, sm_shards, wait_for=2)
            for shards in SHARD_COUNTS:
                result = run_case(procs, tmp, targets, shards, exporters)
                print_case(hosts, endpoints, sm_shards, shards, result)
            print_cycles(poll_cycles(tmp, sm_shards))
            procs.stop(*exporters)
            for i in range(sm_shards):
                (tmp / f"cycles-{i}.json").unlink(missing_ok=True)
    finally:
        procs.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nscrape interval {SCRAPE_INTERVAL}s (sagemaker {SAGEMAKER_SCRAPE_INTERVAL}s), window {WINDOW}s; "
          f"CPU in cores, RSS in MB; several processes: their sum, [the largest]; fake AWS latency "
          f"{shard.CLOUDWATCH_LATENCY * 1000:.0f} ms per CloudWatch call, {shard.SAGEMAKER_LATENCY * 1000:.0f} ms per "
          f"other call")
    shard.print_sizing(shard.sizing(SIZING))
    shard.print_sizing(shard.sizing(SIZING[:3], "get_metric_data"), "get_metric_data")
    if EMULATOR_ENDPOINTS:
        print_emulator(EMULATOR_ENDPOINTS, emulator_probe(EMULATOR_ENDPOINTS))


def emulator_probe(endpoints: int, timeout: float = 900) -> dict:
    """One SageMaker shard polling `mlscope demo aws` (moto with MLScope's patches) through real boto3 instead of
    the fake AWS: how long the demo takes to create the endpoints with 10 minutes of metrics, then the start-up
    and the next cycles' wall time and CPU time (the exporter process's: boto3's work included, moto's not)."""
    tmp = Path(tempfile.mkdtemp(prefix="mlscope-bench-emulator-"))
    procs = Processes(tmp)
    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        aws = procs.start("aws", [sys.executable, "-m", "mlscope", "demo", "aws", f"--listen=127.0.0.1:{port}",
                                  "--retention=1h"], cwd=ROOT, env=env)
        wait_http(url + "/-/healthy", aws)
        t0 = time.monotonic()
        demo = procs.start("traffic", [sys.executable, "-m", "mlscope", "demo", "traffic", f"--aws-endpoint={url}",
                                       f"--endpoints={endpoints}", "--backfill=10m", "--once", "--other-kinds=false",
                                       "--second-account=false"], cwd=ROOT, env=env)
        if demo.wait(timeout) != 0:
            raise RuntimeError(f"mlscope demo traffic failed; see {tmp / 'traffic.log'}")
        setup = time.monotonic() - t0
        procs.start("sagemaker-0", [sys.executable, "-m", "bench.fleet", f"--sagemaker-endpoints={endpoints}",
                                    f"--endpoint-url={url}", f"--cycles-file={tmp / 'cycles-0.json'}",
                                    f"--targets-file={tmp / 'targets.json'}"], cwd=ROOT, env=env)
        cycles = poll_cycles(tmp, 1, wait_for=2, timeout=timeout)[0]
        return {"setup_s": setup, "cycles": cycles}
    finally:
        procs.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def print_emulator(endpoints: int, probe: dict) -> None:
    print(f"\nThe same shard against `mlscope demo aws` (moto) with {endpoints} endpoints through boto3 (creating them "
          f"with 10 minutes of metrics took {probe['setup_s']:.0f} s):")
    for i, cycle in enumerate(probe["cycles"]):
        gmd = cycle["calls"].get("GetMetricData", 0)
        print(f"  cycle {i}{' (start-up)' if i == 0 else ''}: wall {cycle['wall_s']:.1f} s, exporter CPU "
              f"{cycle['cpu_s']:.2f} s, {sum(cycle['calls'].values())} AWS calls ({gmd} GetMetricData)")


COMPONENTS = [("GPU fleet", "fleet", "gpu"), ("SageMaker exporters", "sagemaker-", "sagemaker"),
              ("vmagent", "vmagent-", None), ("VictoriaMetrics", "vm", None), ("vmalert", "vmalert", None)]


def print_case(hosts: int, endpoints: int, sm_shards: int, shards: int, r: dict) -> None:
    wall = r["wall_p95"]
    print(f"\n{hosts} GPU hosts ({hosts * GPUS_PER_HOST:,} GPUs) + {endpoints:,} endpoints ({sm_shards} SageMaker "
          f"shard{'s' if sm_shards > 1 else ''}), {shards} vmagent shard{'s' if shards > 1 else ''}: {r['ingested']:,.0f} samples/s ingested; "
          f"wall p95 {wall[0]:.1f} ms ({wall[1]} queries, {wall[2]} failed, {wall[3]} empty; slowest {wall[4]})")
    print(f"  {'component':<20} {'procs':>5} {'up':>9} {'samples/s':>10} {'scrape p99':>10} {'CPU':>15} {'RSS':>11}")
    for title, prefix, job in COMPONENTS:
        names = [n for n in r["cpu"] if n == prefix or (prefix.endswith("-") and n.startswith(prefix))]
        if not names:
            continue
        cpu, rss = [r["cpu"][n] for n in names], [r["rss"][n] for n in names]
        spread = lambda v, f: f"{f(sum(v))} [{f(max(v))}]" if len(v) > 1 else f(v[0])  # noqa: E731
        scraped = r["jobs"].get(job)
        up = f"{scraped['up']}/{scraped['targets']}" if scraped else ""
        rate = f"{scraped['scraped']:,.0f}" if scraped else ""
        p99 = f"{scraped['scrape_p99'] * 1000:.0f} ms" if scraped else ""
        print(f"  {title:<20} {len(names):>5} {up:>9} {rate:>10} {p99:>10} {spread(cpu, lambda x: f'{x:.3f}'):>15} "
              f"{spread(rss, lambda x: f'{x:.0f}'):>11}", flush=True)


def print_cycles(per_shard: list[list[dict]]) -> None:
    """The SageMaker pollers' cycles after the start-up one, over the whole run of this fleet size."""
    for name, cycles in zip(("steady", "inventory refresh"),
                            zip(*(shard.split_cycles(c) for c in per_shard))):
        cycles = [c for shard_cycles in cycles for c in shard_cycles]
        if cycles:
            cpu = sorted(c["cpu_s"] for c in cycles)
            wall = sorted(c["wall_s"] for c in cycles)
            print(f"  SageMaker {name} poll cycles ({len(cycles)} in {len(per_shard)} shards): CPU median "
                  f"{percentile(cpu, 0.5) * 1000:.0f} ms, max {cpu[-1] * 1000:.0f} ms; wall median "
                  f"{percentile(wall, 0.5):.1f} s, max {wall[-1]:.1f} s")


if __name__ == "__main__":
    main()
