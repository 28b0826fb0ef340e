"""`python -m bench sagemaker`: CloudWatch calls and cost per poll cycle, exporter CPU per cycle, scrape latency.

AWS is replaced by in-memory fake clients answering with pre-built responses in the real API shapes, so the
CPU time measured is the exporter's own (no network, no AWS time). Other exporters' strategies are counted
from their documented behaviour for the same metric set:
- cloudwatch_exporter (default): one GetMetricStatistics call per metric x dimension set (statistics,
  including percentiles, ride in one call), plus ListMetrics to discover the dimension sets;
- YACE: GetMetricData with up to 500 metric-statistic queries per call, plus ListMetrics per metric name.
GetMetricData is billed per metric requested, GetMetricStatistics/ListMetrics per request: $0.01 per 1,000.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
import threading
import time

import requests

from mlscope.health import Health
from mlscope.sagemaker.aws import Aws, Stats
from mlscope.sagemaker.collector import SageMakerCollector
from mlscope.sagemaker.config import Target
from mlscope.sagemaker.cost import PriceBook
from mlscope.sagemaker.inventory import Inventory
from mlscope.sagemaker.poller import Poller
from mlscope.web import MetricsServer, WebConfig

PRICE_PER_1000 = 0.01
CYCLES_PER_MONTH_60S = 30 * 24 * 60
SIZES = (10, 100, 1000)
GPU_SHARE = 0.3  # 30% of endpoints on ml.g5.xlarge (GPU metrics), 70% on ml.m5.xlarge
STATISTICS = ["p50", "p95", "p99"]


class FakeSageMaker:
    def __init__(self, n: int):
        t = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
        self.endpoints = [{"EndpointName": f"ep-{i:04d}", "EndpointArn": f"arn:aws:sagemaker:us-east-1:1:endpoint/ep-{i:04d}",
                           "CreationTime": t, "LastModifiedTime": t, "EndpointStatus": "InService"} for i in range(n)]
        self.gpu = {e["EndpointName"] for i, e in enumerate(self.endpoints) if i % 10 < GPU_SHARE * 10}

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


class FakeCloudWatch:
    """Answers every query Complete with one datapoint per period of the window."""

    def __init__(self):
        self.calls = 0

    def get_metric_data(self, MetricDataQueries, StartTime, EndTime, ScanBy=None, NextToken=None):
        self.calls += 1
        stamps = [StartTime + dt.timedelta(seconds=60 * k)
                  for k in range(int((EndTime - StartTime).total_seconds() // 60))]
        values = [12.0] * len(stamps)
        return {"MetricDataResults": [{"Id": q["Id"], "StatusCode": "Complete", "Timestamps": stamps,
                                       "Values": values} for q in MetricDataQueries], "Messages": []}


class FakeSts:
    def get_caller_identity(self):
        return {"Account": "123456789012"}


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def build(n: int, poll_interval: float = 60) -> tuple[Poller, Clock, Health]:
    aws = Aws(Target("us-east-1"), Stats())
    aws._session = object()
    aws._clients = {"sagemaker": FakeSageMaker(n), "cloudwatch": FakeCloudWatch(), "sts": FakeSts()}
    clock = Clock(1_750_000_000.0)
    health = Health()
    poller = Poller(aws, Inventory(aws, clock=clock, refresh_interval=3600), PriceBook.load(), health,
                    poll_interval=poll_interval, period=60, delay=180, statistics=STATISTICS, clock=clock)
    return poller, clock, health


def steady_cycle(n: int, poll_interval: float = 60) -> dict:
    poller, clock, health = build(n, poll_interval)
    poller.run_cycle()                                  # first cycle: inventory + watermarks
    cpu = []
    for _ in range(3):
        before = poller.aws.stats.snapshot()
        clock.now += poll_interval
        c0 = time.process_time()
        assert poller.run_cycle()
        cpu.append(time.process_time() - c0)
        after = poller.aws.stats.snapshot()
    requests_ = {api: after["requests"].get(api, 0) - before["requests"].get(api, 0) for api in after["requests"]}
    metrics = sum(after["metrics_requested"].values()) - sum(before["metrics_requested"].values())
    return {"poller": poller, "health": health, "gmd": requests_.get("GetMetricData", 0),
            "other": sum(v for k, v in requests_.items() if k != "GetMetricData"),
            "metrics": metrics, "cpu_ms": statistics.median(cpu) * 1000}


def other_exporters(n: int) -> dict:
    gpu = sum(1 for i in range(n) if i % 10 < GPU_SHARE * 10)
    cpu = n - gpu
    # metric names: 4 counts + 2 latencies + utilization (3 on CPU instances, 5 on GPU instances)
    metric_dimsets = cpu * (6 + 3) + gpu * (6 + 5)
    names_present = 6 + 3 + (2 if gpu else 0)
    list_metrics = names_present * max(1, math.ceil(n / 500))
    # queries (metric x statistic): counts 1 stat, latencies Sum+SampleCount+3 percentiles, utilization Average
    queries = cpu * (4 + 2 * 5 + 3) + gpu * (4 + 2 * 5 + 5)
    return {
        "cwe_requests": metric_dimsets + list_metrics, "cwe_billed": metric_dimsets + list_metrics,
        "yace_requests": math.ceil(queries / 500) + list_metrics + math.ceil(n / 100),
        "yace_billed": queries + list_metrics,
    }


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


def dollars(units_per_cycle: float, cycles: int = CYCLES_PER_MONTH_60S) -> str:
    return f"${units_per_cycle * cycles * PRICE_PER_1000 / 1000:,.0f}"


def main() -> None:
    print("CloudWatch per poll cycle (60 s poll, 1 variant per endpoint, 30% GPU, p50/p90/p99), "
          "$ at $0.01 per 1,000 metrics/requests, 43,200 cycles a month")
    header = (f"{'endpoints':>9} | {'MLScope GMD calls':>17} {'other API':>9} {'metrics':>8} {'$/month':>9} "
              f"{'@5m poll':>9} | {'cw_exporter calls':>17} {'$/month':>9} | {'YACE calls':>10} "
              f"{'metrics':>8} {'$/month':>9} | {'CPU ms/cycle':>12}")
    print(header)
    print("-" * len(header))
    scrape_rows = []
    for n in SIZES:
        ours = steady_cycle(n)
        slow = steady_cycle(n, poll_interval=300)
        other = other_exporters(n)
        print(f"{n:>9} | {ours['gmd']:>17} {ours['other']:>9} {ours['metrics']:>8} {dollars(ours['metrics']):>9} "
              f"{dollars(slow['metrics'], CYCLES_PER_MONTH_60S // 5):>9} | {other['cwe_requests']:>17} "
              f"{dollars(other['cwe_billed']):>9} | {other['yace_requests']:>10} {other['yace_billed']:>8} "
              f"{dollars(other['yace_billed']):>9} | {ours['cpu_ms']:>12.1f}")
        if n >= 100:
            scrape_rows.append((n, *scrape_latency(ours["poller"], ours["health"])))
    print()
    for n, p50, p99, size in scrape_rows:
        verdict = "OK" if p99 < 50 else "OVER TARGET"
        print(f"scrape from cache at {n} endpoints over HTTP (gzip): p50 {p50:.1f} ms, p99 {p99:.1f} ms "
              f"(target p99 < 50 ms: {verdict}), {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
