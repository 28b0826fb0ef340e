"""One simulated SageMaker-exporter shard: the real exporter against bench.sagemaker's fake AWS, and its sizing.

The exporter is built by its own `build` from its own settings (one poller per region); only the boto3 clients
are replaced by bench.sagemaker's in-memory fakes (endpoints ep-0000..., 1 variant each, 30 % on ml.g5.xlarge,
every endpoint busy: the most series and CloudWatch queries per endpoint), wrapped so that every call first
sleeps a fixed latency, as AWS would answer. The sleep costs no CPU, so the CPU measured is the exporter's own.

`python -m bench.fleet --sagemaker-endpoints N --region R` serves such a shard (bench/scale.py starts several).
`python -m bench.sagemaker_shard --endpoints N` prints one shard's sizing as JSON: CPU and AWS calls per poll
cycle (a simulated clock moves 60 s per cycle, so no time is waited), RSS, and the scrape's size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from mlscope.cli import build_collectors, exporter_settings
from mlscope.sagemaker.config import DEFAULT_STATISTICS_RATE
from mlscope.sagemaker.inventory import DESCRIBE_WORKERS
from mlscope.sagemaker.metric_statistics import WORKERS, RateLimiter
from mlscope.settings import resolve

from .host import rss_mb
from .sagemaker import FakeCloudWatch, FakeSageMaker, FakeSts, fleet_states

DESCRIBE_APIS = ("DescribeEndpoint", "DescribeEndpointConfig", "ListTags")  # the inventory runs these in parallel

# Assumed AWS answer times per call (the bench cannot reach AWS): a GetMetricData of up to 500 queries for one
# or two periods or a GetMetricStatistics, and a SageMaker/STS/ListMetrics call. See cycle_wall.
CLOUDWATCH_LATENCY = 0.1
SAGEMAKER_LATENCY = 0.05
POLL_INTERVAL = 60.0
ALL_BUSY = (1.0, 0.0, 0.0)


class Slow:
    """A client whose every API call first waits `latency` seconds."""

    def __init__(self, client, latency: float) -> None:
        self._client = client
        self._latency = latency

    def __getattr__(self, api: str):
        call = getattr(self._client, api)

        def slow(*args, **kwargs):
            time.sleep(self._latency)
            return call(*args, **kwargs)
        return slow


def use_fake_aws(pollers, endpoints: int, cloudwatch_latency: float = CLOUDWATCH_LATENCY,
                 sagemaker_latency: float = SAGEMAKER_LATENCY) -> None:
    """Give each poller (before it starts) its own fake account of `endpoints` busy endpoints."""
    for poller in pollers:
        poller.aws._session = object()  # never builds a boto3 session: no credentials are looked up
        poller.aws._clients = {"sagemaker": Slow(FakeSageMaker(endpoints), sagemaker_latency),
                               "cloudwatch": Slow(FakeCloudWatch(fleet_states(endpoints, ALL_BUSY)), cloudwatch_latency),
                               "sts": Slow(FakeSts(), sagemaker_latency)}


class CycleMeter:
    """Wraps a poller's run_cycle: the process's CPU time (the GetMetricStatistics pool's threads included, and a
    scrape that falls in the cycle), wall time and AWS calls per cycle, written as JSON to `path` after every
    cycle (atomically)."""

    def __init__(self, poller, path: Path) -> None:
        self.poller = poller
        self.path = path
        self.cycles: list[dict] = []
        self._run_cycle = poller.run_cycle
        poller.run_cycle = self.run_cycle

    def run_cycle(self) -> bool:
        calls = Counter(self.poller.aws.stats.snapshot()["requests"])
        cpu, wall = time.process_time(), time.monotonic()
        ok = self._run_cycle()
        self.cycles.append({"cpu_s": time.process_time() - cpu, "wall_s": time.monotonic() - wall,
                            "calls": dict(Counter(self.poller.aws.stats.snapshot()["requests"]) - calls)})
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps({"cycles": self.cycles}))
        os.replace(partial, self.path)
        return ok


def flags(region: str, endpoint_url: str | None = None) -> dict[str, str]:
    """The shard's exporter settings, as flags; with `endpoint_url`, an AWS emulator's (slow) answers are waited for."""
    emulator = {"endpoint_url": endpoint_url, "aws_timeout": "600"} if endpoint_url else {}
    return {"regions": region, "poll_interval": str(POLL_INTERVAL), **emulator}


def build_shard(endpoints: int, region: str = "us-east-1", statistics_api: str = "auto", **latency: float):
    """The real exporter's collectors and pollers for one region, on the fake AWS (pollers not started)."""
    from mlscope.sagemaker import SPEC
    cfg = resolve(exporter_settings(SPEC), {**flags(region), "statistics_api": statistics_api}, environ={})
    collectors, parts = build_collectors(SPEC, cfg)
    use_fake_aws(parts.services, endpoints, **latency)
    return collectors, parts, cfg


class SimulatedClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def measure(endpoints: int, cycles: int = 8, statistics_api: str = "auto") -> dict:
    """Run `cycles` poll cycles on a simulated clock (60 s apart) with no latency; per cycle its CPU and calls.

    Cycle 0 describes every endpoint (and its config) and only sets the counters' watermarks; a cycle that comes
    `inventory_interval` (300 s by default) after it re-describes every endpoint; the others are steady."""
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    collectors, parts, cfg = build_shard(endpoints, cloudwatch_latency=0.0, sagemaker_latency=0.0,
                                         statistics_api=statistics_api)
    poller = parts.services[0]
    poller.statistics_limiter = RateLimiter(math.inf)  # simulated cycles take no real time; cycle_wall adds it
    clock = SimulatedClock(1_750_000_000.0)
    poller.clock = poller.inventory.clock = clock
    runs = []
    for _ in range(cycles):
        before = Counter(poller.aws.stats.snapshot()["requests"])
        cpu = time.process_time()
        ok = poller.run_cycle()
        cpu = time.process_time() - cpu
        calls = Counter(poller.aws.stats.snapshot()["requests"]) - before
        runs.append({"ok": ok, "cpu_s": cpu, "calls": dict(calls)})
        clock.now += POLL_INTERVAL
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    scrape_cpu = time.process_time()
    text = generate_latest(registry)
    scrape_cpu = time.process_time() - scrape_cpu
    samples = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
    return {"endpoints": endpoints, "inventory_interval": cfg.inventory_interval, "cycles": runs,
            "rss_mb": rss_mb(os.getpid())[0], "scrape_samples": samples, "scrape_bytes": len(text),
            "scrape_cpu_s": scrape_cpu}


def cycle_wall(run: dict, cloudwatch_latency: float = CLOUDWATCH_LATENCY,
               sagemaker_latency: float = SAGEMAKER_LATENCY, statistics_rate: float = DEFAULT_STATISTICS_RATE) -> float:
    """CPU + the calls' assumed answer times (as the fake AWS waits them: CloudWatch's, and every other API's):
    the poller makes its calls one after the other, except the inventory's Describe*/ListTags calls
    (DESCRIBE_WORKERS at a time) and the GetMetricStatistics requests, WORKERS at a time
    behind the rate cap (the slower of the two bounds)."""
    gms = run["calls"].get("GetMetricStatistics", 0)
    cloudwatch = sum(run["calls"].get(api, 0) for api in ("GetMetricData", "ListMetrics"))
    describe = sum(run["calls"].get(api, 0) for api in DESCRIBE_APIS)
    other = sum(run["calls"].values()) - gms - cloudwatch - describe
    return (run["cpu_s"] + cloudwatch * cloudwatch_latency + other * sagemaker_latency
            + describe * sagemaker_latency / DESCRIBE_WORKERS
            + max(gms / statistics_rate, gms * cloudwatch_latency / WORKERS))


def split_cycles(cycles: list[dict]) -> tuple[list[dict], list[dict]]:
    """(steady, refresh) cycles after the start-up one (cycle 0 describes every endpoint and its config, and
    fetches no counters); a refresh cycle re-describes the endpoints (each inventory_interval)."""
    runs = cycles[1:]
    return ([r for r in runs if not r["calls"].get("DescribeEndpoint")],
            [r for r in runs if r["calls"].get("DescribeEndpoint")])


def summarise(result: dict) -> dict:
    """Steady and inventory-refresh cycles: median CPU, calls, and wall time at the assumed latencies."""
    steady, refresh = split_cycles(result["cycles"])

    def median(rs: list[dict], f) -> float:
        return statistics.median(f(r) for r in rs) if rs else float("nan")
    return {"endpoints": result["endpoints"], "rss_mb": result["rss_mb"], "scrape_samples": result["scrape_samples"],
            "scrape_bytes": result["scrape_bytes"], "scrape_cpu_s": result["scrape_cpu_s"],
            "steady_cpu_s": median(steady, lambda r: r["cpu_s"]),
            "steady_calls": median(steady, lambda r: sum(r["calls"].values())),
            "steady_gmd": median(steady, lambda r: r["calls"].get("GetMetricData", 0)),
            "steady_gms": median(steady, lambda r: r["calls"].get("GetMetricStatistics", 0)),
            "steady_wall_s": median(steady, cycle_wall),
            "refresh_cpu_s": median(refresh, lambda r: r["cpu_s"]),
            "refresh_calls": median(refresh, lambda r: sum(r["calls"].values())),
            "refresh_wall_s": median(refresh, cycle_wall),
            "startup_wall_s": cycle_wall(result["cycles"][0])}


def sizing(sizes: list[int], api: str = "auto") -> list[dict]:
    """One fresh process per size, so that each RSS is that shard's alone."""
    rows = []
    for n in sizes:
        out = subprocess.run([sys.executable, "-m", "bench.sagemaker_shard", f"--endpoints={n}",
                              f"--statistics-api={api}"], check=True,
                             capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent).stdout
        rows.append(summarise(json.loads(out)))
    return rows


def print_sizing(rows: list[dict], api: str = "auto") -> None:
    print(f"\nSageMaker exporter shard sizing, statistics_api {api} (one process per size, every endpoint busy, "
          f"30 % GPU; wall = CPU + {CLOUDWATCH_LATENCY * 1000:.0f} ms per CloudWatch call + "
          f"{SAGEMAKER_LATENCY * 1000:.0f} ms per other AWS call, one after the other, except Describe*/ListTags "
          f"({DESCRIBE_WORKERS} at a time) and GetMetricStatistics: "
          f"{WORKERS} at a time, at most {DEFAULT_STATISTICS_RATE:.0f}/s; refresh = a cycle re-describing the "
          f"endpoints due, spread over each inventory_interval)")
    print(f"{'endpoints':>9} {'steady CPU':>10} {'calls':>6} {'(GMS)':>6} {'steady wall':>11} {'refresh CPU':>11} "
          f"{'calls':>6} {'refresh wall':>12} {'start-up wall':>13} {'RSS':>7} {'samples':>8} {'scrape':>8} "
          f"{'scrape CPU':>10}")
    for r in rows:
        print(f"{r['endpoints']:>9} {r['steady_cpu_s']:>9.2f}s {r['steady_calls']:>6.0f} {r['steady_gms']:>6.0f} "
              f"{r['steady_wall_s']:>10.1f}s "
              f"{r['refresh_cpu_s']:>10.2f}s {r['refresh_calls']:>6.0f} {r['refresh_wall_s']:>11.1f}s "
              f"{r['startup_wall_s']:>12.1f}s {r['rss_mb']:>5.0f}MB {r['scrape_samples']:>8} "
              f"{r['scrape_bytes'] / 1e6:>6.1f}MB {r['scrape_cpu_s']:>9.2f}s")
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        span = b["endpoints"] - a["endpoints"]
        per = {k: (b[k] - a[k]) / span for k in ("steady_cpu_s", "refresh_cpu_s", "steady_wall_s", "refresh_wall_s",
                                                    "rss_mb", "scrape_cpu_s")}
        print(f"per endpoint ({a['endpoints']} -> {b['endpoints']}): steady cycle {per['steady_cpu_s'] * 1000:.2f} ms CPU, "
              f"{per['steady_wall_s'] * 1000:.1f} ms wall; refresh cycle {per['refresh_cpu_s'] * 1000:.2f} ms CPU, "
              f"{per['refresh_wall_s'] * 1000:.0f} ms wall; RSS {per['rss_mb'] * 1024:.0f} KB; "
              f"scrape {per['scrape_cpu_s'] * 1000:.2f} ms CPU")
        for name, key in (("steady", "steady_wall_s"), ("refresh", "refresh_wall_s")):
            fixed = b[key] - per[key] * b["endpoints"]
            print(f"endpoints per shard whose {name} cycle fits a {POLL_INTERVAL:.0f} s poll: "
                  f"~{(POLL_INTERVAL - fixed) / per[key]:,.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sagemaker_shard", description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, required=True)
    parser.add_argument("--cycles", type=int, default=8)
    parser.add_argument("--statistics-api", default="auto")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.endpoints, args.cycles, args.statistics_api)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
