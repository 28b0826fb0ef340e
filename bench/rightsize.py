"""Rightsizing at fleet scale: `mlscope rightsize` over 14 days of backfilled history in the real Prometheus.

`python -m bench rightsize`:
1. writes 14 days of exporter history for 1,000 SageMaker endpoint variants and 200 GPU hosts (the series
   builders of tests/rightsize_histories.py, the exporters' exact names and labels) as OpenMetrics: gauges
   every 5 minutes, counters every 150 s (rate() over a 5-minute window needs two samples); imports it
   with `promtool tsdb create-blocks-from openmetrics --max-block-duration=384h` (one block);
2. starts Prometheus on it and runs `mlscope rightsize --format json` as a child process, timing it and
   reading its peak RSS (wait4), and counting its queries on the Prometheus side
   (prometheus_http_requests_total of the query APIs, before and after);
3. does the same on a tenth of the fleet (--endpoint / --instance regexes select 100 endpoints and
   20 hosts), to show the number of queries does not grow with the fleet: one query per metric;
4. prints the table, and stops every process and removes the temp dir, also on failure.

Target (issue 7): under 60 s and 300 MB for the whole fleet on this 2-core machine.
"""

from __future__ import annotations

import json
import os
import re
import resource
import sys
import time
from pathlib import Path

from . import backfill
from .backfill import Prometheus

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import rightsize_histories as hist  # noqa: E402  (the tests' series builders: one definition of the fleet)
from helpers import mlscope_args  # noqa: E402

from mlscope.supervisor import launch  # noqa: E402

DAY = 86400
ENDPOINTS = int(os.environ.get("MLSCOPE_BENCH_ENDPOINTS", "1000"))
HOSTS = int(os.environ.get("MLSCOPE_BENCH_HOSTS", "200"))
DAYS = 14
GAUGE_RES, COUNTER_RES = 300, 150
TARGET_SECONDS, TARGET_MB = 60, 300
REGIONS = ("us-east-1", "us-west-2", "eu-west-1")
# (instance type, instances, GPU?) per endpoint archetype, with prices from the shipped catalogue.
ENDPOINT_TYPES = (("ml.g5.xlarge", 1, True), ("ml.g5.2xlarge", 2, True), ("ml.g4dn.xlarge", 2, True),
                  ("ml.c5.xlarge", 2, False), ("ml.m5.xlarge", 1, False), ("ml.m5.2xlarge", 3, False))
HOST_TYPES = (("g5.2xlarge", 8, 32, "NVIDIA A10G", 24), ("g4dn.2xlarge", 8, 32, "Tesla T4", 16))


def fleet(start: float, endpoints: int, hosts: int) -> list:
    """A deterministic mixed fleet: idle, quiet, busy and diurnal subjects of several types and regions."""
    from mlscope.rightsize.catalogue import Catalogue

    catalogue = Catalogue.load()
    series = []
    for i in range(endpoints):
        itype, n, gpu = ENDPOINT_TYPES[i % len(ENDPOINT_TYPES)]
        region = REGIONS[i % len(REGIONS)]
        price = catalogue.get(itype, region).usd_per_hour
        busy = 0.05 + 0.85 * ((i * 37) % 100) / 100           # peak utilization, 5 % to 90 %
        rate = 0.0 if i % 10 == 0 else 2 + (i % 50)           # one in ten gets no traffic
        series += hist.sagemaker_variant(
            f"ep-{i:04d}", itype, n, price, start, region=region,
            cpu=hist.diurnal(busy / 4, busy if not gpu else busy / 3), memory=hist.const(0.2 + 0.6 * busy),
            gpu=hist.diurnal(busy / 3, busy) if gpu else None, gpu_memory=hist.const(0.3 + 0.5 * busy) if gpu else None,
            requests=hist.diurnal(rate / 3, rate) if rate else hist.const(0.0),
            latency=hist.const(0.05 + 0.1 * busy) if rate else None)
    for i in range(hosts):
        itype, vcpus, mem, model, gpu_mem = HOST_TYPES[i % len(HOST_TYPES)]
        busy = 0.03 + 0.9 * ((i * 53) % 100) / 100
        series += hist.host(f"gpu-node-{i:03d}", itype, catalogue.get(itype, "us-east-1").usd_per_hour, start,
                            vcpus=vcpus, memory_gib=mem, cpu=hist.diurnal(busy / 5, busy / 2),
                            memory=hist.const(0.3), gpus=1, gpu_model=model, gpu_memory_gib=gpu_mem,
                            gpu=hist.diurnal(busy / 4, busy), gpu_memory=hist.const(0.2 + 0.6 * busy))
    return series


def write_history(tsdb: Path, work: Path, end: int, log) -> None:
    start = end - DAYS * DAY - GAUGE_RES      # a little more than the lookback
    t0 = time.monotonic()
    series = fleet(start, ENDPOINTS, HOSTS)
    path = work / "history.om"
    samples = hist.write_openmetrics(path, series, end, res={"gauge": GAUGE_RES, "summary": GAUGE_RES,
                                                              "counter": COUNTER_RES})
    t1 = time.monotonic()
    size_gb = path.stat().st_size / 1e9
    backfill.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "--quiet",
                  "--max-block-duration=384h", str(path), str(tsdb)], timeout=3600)
    path.unlink()
    log(f"history: {ENDPOINTS} endpoints, {HOSTS} GPU hosts, {len(series):,} series, {samples:,} samples "
        f"({size_gb:.1f} GB of OpenMetrics) over {DAYS} d; generate {t1 - t0:.0f} s, "
        f"promtool import {time.monotonic() - t1:.0f} s")


def query_count(prom: Prometheus) -> float:
    """Queries Prometheus has answered so far (its own /metrics: instant and range query APIs)."""
    _, body = prom.get("/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith("prometheus_http_requests_total{") and re.search(r'handler="/api/v1/query(_range)?"', line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def rightsize(prom: Prometheus, at: int, work: Path, *args: str) -> dict:
    """One `mlscope rightsize` child process: wall seconds, peak RSS, queries seen by Prometheus, the report."""
    out = work / "report.json"
    before = query_count(prom)
    t0 = time.perf_counter()
    log = work / "rightsize.log"
    log.unlink(missing_ok=True)
    proc = launch(mlscope_args("rightsize", "--prometheus", prom.url, "--at", str(at), "--format", "json",
                               "--output", str(out), *args), dict(os.environ), ROOT, log)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"mlscope rightsize exited {proc.returncode}: {log.read_text(errors='replace').strip()}")
    queries = query_count(prom) - before
    report = json.loads(out.read_text())
    rss_mb = usage.ru_maxrss / 1024 if sys.platform != "darwin" else usage.ru_maxrss / 2 ** 20
    return {"wall": wall, "rss_mb": rss_mb, "queries": queries, "report": report}


def main() -> None:
    def log(msg: str) -> None:
        print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    work = backfill.temp_dir("mlscope-bench-rightsize-")
    # MLSCOPE_BENCH_RIGHTSIZE_TSDB=DIR keeps the imported history there and reuses it on the next run.
    kept = os.environ.get("MLSCOPE_BENCH_RIGHTSIZE_TSDB")
    tsdb = Path(kept) if kept else work / "tsdb"
    tsdb.mkdir(parents=True, exist_ok=True)
    try:
        stamp = tsdb / "mlscope-bench-end"
        if stamp.is_file():
            end = int(stamp.read_text())
            log(f"history: reusing {tsdb} (ends {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime(end))})")
        else:
            end = int(time.time()) // GAUGE_RES * GAUGE_RES
            write_history(tsdb, work, end, log)
            stamp.write_text(str(end))
        with Prometheus(tsdb, work, name="prometheus-rightsize") as prom:
            # the retention check reads /api/v1/status/runtimeinfo: 60 d here, more than the 14 d lookback
            small_e, small_h = max(1, ENDPOINTS // 10), max(1, HOSTS // 10)
            rows = [("full fleet", ENDPOINTS, HOSTS, rightsize(prom, end, work)),
                    ("a tenth", small_e, small_h, rightsize(
                        prom, end, work, "--endpoint", "ep-0" + f"({'|'.join(f'{i:03d}' for i in range(small_e))})",
                        "--instance", "gpu-node-" + f"({'|'.join(f'{i:03d}' for i in range(small_h))})"))]
        print()
        print(f"{'fleet':<12} {'endpoints':>9} {'hosts':>6} {'subjects':>8} {'wall s':>7} {'queries':>8} "
              f"{'peak RSS MB':>12}  findings")
        for label, n_e, n_h, r in rows:
            recs = r["report"]["recommendations"]
            findings: dict[str, int] = {}
            for rec in recs:
                findings[rec["finding"]] = findings.get(rec["finding"], 0) + 1
            print(f"{label:<12} {n_e:>9} {n_h:>6} {len(recs):>8} {r['wall']:>7.1f} {r['queries']:>8.0f} "
                  f"{r['rss_mb']:>12.0f}  {', '.join(f'{k} {v}' for k, v in sorted(findings.items()))}")
        full, tenth = rows[0][3], rows[1][3]
        print(f"\nqueries independent of fleet size: {full['queries']:.0f} vs {tenth['queries']:.0f} "
              f"({'yes' if full['queries'] == tenth['queries'] else 'NO'})")
        print(f"target < {TARGET_SECONDS} s and < {TARGET_MB} MB for the full fleet: "
              f"{full['wall']:.1f} s, {full['rss_mb']:.0f} MB "
              f"({'met' if full['wall'] < TARGET_SECONDS and full['rss_mb'] < TARGET_MB else 'NOT met'})")
        print(f"(this bench process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB peak)")
    finally:
        import shutil
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
