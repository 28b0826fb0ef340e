"""`python -m bench sagemaker`: what the exporter's CloudWatch polling costs, step by step, against YACE's and
cloudwatch_exporter's strategies for the same fleet and poll; exporter CPU per cycle; scrape latency.

AWS is replaced by in-memory fake clients answering with pre-built responses in the real API shapes, so the
CPU time measured is the exporter's own. The fleet: 1 variant per endpoint, 30% on ml.g5.xlarge (GPU metrics),
70% on ml.m5.xlarge, statistics p50/p95/p99, 60 s poll. Endpoints are *busy* (a request every period),
*idle* (no requests for more than idle_after but less than 3 h: their metrics are still listed) or
*dormant* (no request for 3 h or more: ListMetrics RecentlyActive=PT3H lists only their utilization).

Other exporters' strategies are counted from their documented behaviour for the same metric set:
- cloudwatch_exporter (default): one GetMetricStatistics call per metric x dimension set (statistics,
  including percentiles, ride in one call), plus ListMetrics to discover the dimension sets;
- YACE: GetMetricData with every listed metric-statistic (ListMetrics without RecentlyActive lists metrics
  for two weeks, so idle and dormant endpoints cost as much as busy ones), 500 per call.
GetMetricData is billed per metric requested, GetMetricStatistics/ListMetrics per request: $0.01 per 1,000.

Cycle wall time: one more steady cycle per row with every fake CloudWatch call taking CALL_LATENCY (an assumed
in-region round trip), GetMetricData calls one after another, GetMetricStatistics requests on the exporter's
pool (WORKERS threads) behind its default rate cap (max_get_metric_statistics_per_second).
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
import sys
import threading
import time

import boto3
import requests

from mlscope.health import Health
from mlscope.sagemaker.aws import Aws, Stats
from mlscope.sagemaker.collector import SageMakerCollector
from mlscope.sagemaker.config import DEFAULT_STATISTICS_RATE, Target
from mlscope.sagemaker.cost import PriceBook
from mlscope.sagemaker.inventory import Inventory
from mlscope.sagemaker.metric_statistics import WORKERS, RateLimiter
from mlscope.sagemaker.poller import Poller
from mlscope.web import MetricsServer, WebConfig

PRICE_PER_1000 = 0.01
CYCLES_PER_MONTH_60S = 30 * 24 * 60
GPU_SHARE = 0.3
STATISTICS = ["p50", "p95", "p99"]
CALL_LATENCY = 0.02  # seconds per fake CloudWatch call in the wall-time cycle
SAGEMAKER_METRICS = ["Invocations", "Invocation4XXErrors", "Invocation5XXErrors", "InvocationModelErrors",
                     "ModelLatency", "OverheadLatency"]
CPU_METRICS = ["CPUUtilization", "MemoryUtilization", "DiskUtilization"]
GPU_METRICS = ["GPUUtilization", "GPUMemoryUtilization"]
# Each step adds one change to the one before (knobs of the Poller; the last row is the exporter's default).
GMD = dict(statistics_api="get_metric_data")
STEPS = [
    ("0 every metric, every cycle (before)", dict(list_metrics_interval=0, idle_after=math.inf, **GMD), True),
    ("1 + percentiles/utilization only with traffic", dict(list_metrics_interval=0, idle_after=math.inf, **GMD),
     False),
    ("2 + ListMetrics (RecentlyActive=PT3H)", dict(list_metrics_interval=600, idle_after=math.inf, **GMD), False),
    ("3 + idle variants: Invocations only", dict(list_metrics_interval=600, idle_after=900, **GMD), False),
    ("4 + multi-statistic metrics via GetMetricStatistics", dict(list_metrics_interval=600, idle_after=900), False),
]
FLEETS = {  # name -> shares of (busy, idle, dormant)
    "all busy": (1.0, 0.0, 0.0),
    "70% busy, 15% idle, 15% dormant": (0.7, 0.15, 0.15),
    "40% busy, 30% idle, 30% dormant": (0.4, 0.3, 0.3),
}


def fleet_states(n: int, shares: tuple[float, float, float]) -> dict[str, str]:
    busy, idle = round(n * shares[0]), round(n * shares[1])
    return {f"ep-{i:04d}": "busy" if i < busy else "idle" if i < busy + idle else "dormant" for i in range(n)}


def is_gpu(i: int) -> bool:
    return i % 10 < GPU_SHARE * 10


class FakeSageMaker:
    def __init__(self, n: int):
        t = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
        self.endpoints = [{"EndpointName": f"ep-{i:04d}", "EndpointArn": f"arn:aws:sagemaker:us-east-1:1:endpoint/ep-{i:04d}",
                           "CreationTime": t, "LastModifiedTime": t, "EndpointStatus": "InService"} for i in range(n)]
        self.gpu = {e["EndpointName"] for i, e in enumerate(self.endpoints) if is_gpu(i)}

    def list_endpoints(self, MaxResults=100, NextToken=None, **_):
        start = int(NextToken or 0)
        page = {"Endpoints": self.endpoints[start:start + MaxResults]}
        if start + MaxResults < len(self.endpoints):
            page["NextToken"] = str(start + MaxResults)
        return page

    def describe_endpoint(self, EndpointName):
        return {"EndpointName": EndpointName, "EndpointArn": f"arn:aws:sagemaker:us-east-1:1:endpoint/{EndpointName}",
                "EndpointConfigName": f"{EndpointName}-cfg", "EndpointStatus": "InService",
                "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentInstanceCount": 2,
                                        "DesiredInstanceCount": 2}]}

    def describe_endpoint_config(self, EndpointConfigName):
        itype = "ml.g5.xlarge" if EndpointConfigName[:-4] in self.gpu else "ml.m5.xlarge"
        return {"ProductionVariants": [{"VariantName": "AllTraffic", "InstanceType": itype}]}

    def list_tags(self, ResourceArn, **_):
        return {"Tags": [{"Key": "team", "Value": "ml"}, {"Key": "mlscope:slo", "Value": "0.999"}]}

    def list_inference_components(self, **_):
        return {"InferenceComponents": []}


class FakeCloudWatch:
    """Busy endpoints have a datapoint in every period; idle and dormant ones only utilization."""

    def __init__(self, states: dict[str, str]):
        self.states = states
        self.latency = 0.0
        listed = []
        for i, (name, state) in enumerate(sorted(states.items())):
            names = CPU_METRICS + (GPU_METRICS if is_gpu(i) else [])
            listed += [("/aws/sagemaker/Endpoints", m, name) for m in names]
            if state != "dormant":
                listed += [("AWS/SageMaker", m, name) for m in SAGEMAKER_METRICS]
        self.listed = listed

    def _periods(self, namespace: str, endpoint: str, start: dt.datetime, end: dt.datetime, period: int) -> list:
        quiet = namespace == "AWS/SageMaker" and self.states[endpoint] != "busy"
        count = 0 if quiet else int((end - start).total_seconds() // period)
        return [start + dt.timedelta(seconds=period * k) for k in range(count)]

    def get_metric_statistics(self, Namespace, MetricName, Dimensions, StartTime, EndTime, Period, Statistics=(),
                              ExtendedStatistics=()):
        time.sleep(self.latency)
        endpoint = next(d["Value"] for d in Dimensions if d["Name"] == "EndpointName")
        stamps = self._periods(Namespace, endpoint, StartTime, EndTime, Period)
        points = [{"Timestamp": ts, **{s: 12.0 for s in Statistics}} for ts in stamps]
        for point in points if ExtendedStatistics else []:
            point["ExtendedStatistics"] = {s: 12.0 for s in ExtendedStatistics}
        return {"Label": MetricName, "Datapoints": points}

    def get_metric_data(self, MetricDataQueries, StartTime, EndTime, ScanBy=None, NextToken=None):
        time.sleep(self.latency)
        results = []
        for q in MetricDataQueries:
            ms = q["MetricStat"]
            dims = {d["Name"]: d["Value"] for d in ms["Metric"]["Dimensions"]}
            stamps = self._periods(ms["Metric"]["Namespace"], dims["EndpointName"], StartTime, EndTime, ms["Period"])
            results.append({"Id": q["Id"], "StatusCode": "Complete", "Timestamps": stamps,
                            "Values": [12.0] * len(stamps)})
        return {"MetricDataResults": results, "Messages": []}

    def list_metrics(self, Namespace, RecentlyActive=None, NextToken=None):
        mine = [m for m in self.listed if m[0] == Namespace]
        start = int(NextToken or 0)
        page = {"Metrics": [{"Namespace": ns, "MetricName": m, "Dimensions": [
            {"Name": "EndpointName", "Value": ep}, {"Name": "VariantName", "Value": "AllTraffic"}]}
            for ns, m, ep in mine[start:start + 500]]}
        if start + 500 < len(mine):
            page["NextToken"] = str(start + 500)
        return page


class FakeSts:
    def get_caller_identity(self):
        return {"Account": "123456789012"}


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def build(states: dict[str, str], knobs: dict, poll_interval: float = 60) -> tuple[Poller, Clock, Health]:
    aws = Aws(Target("us-east-1"), Stats())
    aws._session = object()
    aws._clients = {"sagemaker": FakeSageMaker(len(states)), "cloudwatch": FakeCloudWatch(states), "sts": FakeSts()}
    clock = Clock(1_750_000_000.0)
    health = Health()
    poller = Poller(aws, Inventory(aws, clock=clock, refresh_interval=3600), PriceBook.load(), health,
                    poll_interval=poll_interval, period=60, delay=180, statistics=STATISTICS, clock=clock, **knobs)
    return poller, clock, health


def steady(states: dict[str, str], knobs: dict, before: bool = False, cycles: int = 30,
           warmup: int = 20, wall: bool = False) -> dict:
    """Average per cycle over `cycles` cycles after `warmup` (idle detection needs 15 minutes); with `wall`, the
    wall time of one more cycle at CALL_LATENCY per call."""
    poller, clock, health = build(states, knobs)
    poller.statistics_limiter = RateLimiter(math.inf)  # no waiting in the counted cycles: they take no real time
    if before:
        poller.idle_poll_interval = 60  # every metric every cycle: the exporter before these changes
    for _ in range(warmup):
        poller.run_cycle()
        clock.now += 60
    first = poller.aws.stats.snapshot()
    cpu = []
    for _ in range(cycles):
        c0 = time.process_time()
        assert poller.run_cycle()
        cpu.append(time.process_time() - c0)
        clock.now += 60
    last = poller.aws.stats.snapshot()
    metrics = sum(last["metrics_requested"].values()) - sum(first["metrics_requested"].values())
    calls = {api: n - first["requests"].get(api, 0) for api, n in last["requests"].items()}
    out = {"poller": poller, "health": health, "metrics": metrics / cycles,
           "gmd": calls.get("GetMetricData", 0) / cycles, "gms": calls.get("GetMetricStatistics", 0) / cycles,
           "other": sum(v for k, v in calls.items() if k not in ("GetMetricData", "GetMetricStatistics")) / cycles,
           "cpu_ms": statistics.median(cpu) * 1000}
    if wall:
        poller.aws.client("cloudwatch").latency = CALL_LATENCY
        poller.statistics_limiter = RateLimiter(DEFAULT_STATISTICS_RATE)
        t0 = time.perf_counter()
        assert poller.run_cycle()
        out["wall_s"] = time.perf_counter() - t0
        poller.aws.client("cloudwatch").latency = 0.0
    if before:  # the exporter before: 8 counters + 6 percentiles + 3/5 utilization for every variant
        out["metrics"] = sum(17 + (2 if is_gpu(i) else 0) for i in range(len(states)))
    return out


def other_exporters(n: int) -> dict:
    gpu = sum(1 for i in range(n) if is_gpu(i))
    cpu = n - gpu
    metric_dimsets = cpu * (6 + 3) + gpu * (6 + 5)
    names_present = 6 + 3 + (2 if gpu else 0)
    list_metrics = names_present * max(1, math.ceil(n / 500))
    queries = cpu * (4 + 2 * (2 + len(STATISTICS)) + 3) + gpu * (4 + 2 * (2 + len(STATISTICS)) + 5)
    return {"cwe_billed": metric_dimsets + list_metrics, "yace_billed": queries + list_metrics}


def scrape_latency(poller: Poller, health: Health, scrapes: int = 50) -> tuple[float, float, int]:
    server = MetricsServer(("127.0.0.1", 0), [SageMakerCollector([poller]), health], WebConfig(),
                           "SageMaker exporter", "bench")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    session = requests.Session()
    size = len(session.get(url, timeout=10).content)
    times = []
    for _ in range(scrapes):
        t0 = time.perf_counter()
        session.get(url, timeout=10).content
        times.append(time.perf_counter() - t0)
    server.shutdown()
    server.server_close()
    times.sort()
    return times[len(times) // 2] * 1000, times[int(len(times) * 0.99) - 1] * 1000, size


def client_cpu_per_request(requests_made: int = 200, gmd_calls: int = 5) -> tuple[float, float]:
    """The exporter process's own CPU (boto3: signing, HTTP, parsing) per GetMetricStatistics request and per
    GetMetricData query, over real HTTP to the AWS emulator running as another process."""
    import os

    from helpers import Process, free_port
    port = free_port()
    emulator = Process([sys.executable, "-m", "mlscope", "demo", "aws", "--listen", f"127.0.0.1:{port}"])
    try:
        emulator.wait_http(f"http://127.0.0.1:{port}/moto-api/", timeout=60)
        os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
        cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{port}",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        t = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0) - dt.timedelta(minutes=10)
        dims = [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "AllTraffic"}]
        cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
            {"MetricName": "ModelLatency", "Dimensions": dims, "Timestamp": t, "Values": [1e4, 2e4, 3e4]}])
        window = dict(StartTime=t, EndTime=t + dt.timedelta(minutes=5))
        c0 = time.process_time()
        for i in range(requests_made):
            stats = {"ExtendedStatistics": STATISTICS} if i % 2 else {"Statistics": ["Sum", "SampleCount"]}
            cw.get_metric_statistics(Namespace="AWS/SageMaker", MetricName="ModelLatency", Dimensions=dims,
                                     Period=60, **window, **stats)
        per_request = (time.process_time() - c0) / requests_made
        queries = [{"Id": f"q{i}", "MetricStat": {"Metric": {"Namespace": "AWS/SageMaker", "MetricName":
                                                             "ModelLatency", "Dimensions": dims},
                                                  "Period": 60, "Stat": "Sum"}} for i in range(500)]
        c0 = time.process_time()
        for _ in range(gmd_calls):
            cw.get_metric_data(MetricDataQueries=queries, **window)
        per_query = (time.process_time() - c0) / gmd_calls / 500
    finally:
        emulator.stop()
    return per_request, per_query


def dollars(units_per_cycle: float, cycles: int = CYCLES_PER_MONTH_60S) -> float:
    return units_per_cycle * cycles * PRICE_PER_1000 / 1000


def main(n: int = 1000) -> None:
    other = other_exporters(n)
    yace = dollars(other["yace_billed"])
    print(f"CloudWatch bill of polling {n} endpoints every 60 s (1 variant each, 30% GPU, p50/p95/p99), $0.01 per "
          f"1,000 metrics/requests, 43,200 cycles a month. Same fleet, same poll, same freshness for endpoints with "
          f"traffic: every settled period of a busy endpoint is exported one poll after it settles.")
    print(f"YACE (GetMetricData, every listed metric): {other['yace_billed']:,} metrics/cycle = ${yace:,.0f}/month; "
          f"cloudwatch_exporter (GetMetricStatistics): {other['cwe_billed']:,} requests/cycle = "
          f"${dollars(other['cwe_billed']):,.0f}/month")
    print(f"billed/cycle: metrics requested by GetMetricData + GetMetricStatistics requests (GMS); wall: one cycle "
          f"at {CALL_LATENCY * 1000:.0f} ms per call, {WORKERS} GMS threads, at most {DEFAULT_STATISTICS_RATE:g} GMS/s")
    header = (f"{'fleet':<32} | {'step':<52} | {'billed/cycle':>12} {'GMS':>6} {'other':>5} {'$/month':>9} "
              f"{'vs YACE':>8} | {'CPU ms/cycle':>12} {'wall s':>6}")
    print(header)
    print("-" * len(header))
    default_run = None
    for fleet, shares in FLEETS.items():
        states = fleet_states(n, shares)
        for name, knobs, before in STEPS:
            run = steady(states, knobs, before=before, wall=not before)
            cost = dollars(run["metrics"]) + dollars(run["other"])
            wall = f"{run['wall_s']:>6.1f}" if "wall_s" in run else f"{'-':>6}"
            print(f"{fleet:<32} | {name:<52} | {run['metrics']:>12,.0f} {run['gms']:>6,.0f} {run['other']:>5.1f} "
                  f"{cost:>9,.0f} {yace / cost:>7.2f}x | {run['cpu_ms']:>12.1f} {wall}")
            if default_run is None and "statistics_api" not in knobs:
                default_run = run
    gms_cpu, gmd_cpu = client_cpu_per_request()
    print(f"\nexporter CPU in boto3 over HTTP (not in the CPU column: the fake clients skip botocore): "
          f"{gms_cpu * 1000:.2f} ms per GetMetricStatistics request, {gmd_cpu * 1000:.3f} ms per GetMetricData "
          f"query; at {n} busy endpoints (4 requests instead of 10 queries each per cycle): "
          f"{n * 4 * gms_cpu:.1f} s vs {n * 10 * gmd_cpu:.1f} s of CPU per cycle")
    print()
    for size in (100, 1000):
        run = steady(fleet_states(size, (1.0, 0.0, 0.0)), STEPS[-1][1], cycles=3, warmup=2)
        p50, p99, nbytes = scrape_latency(run["poller"], run["health"])
        verdict = "OK" if p99 < 50 else "OVER TARGET"
        print(f"scrape from cache at {size} endpoints over HTTP (gzip): p50 {p50:.1f} ms, p99 {p99:.1f} ms "
              f"(target p99 < 50 ms: {verdict}), {nbytes / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
