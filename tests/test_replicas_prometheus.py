"""Two replicas of one SageMaker exporter shard, in a real Prometheus: the dashboards and the rightsizer
show what one replica would.

Two Prometheus servers are backfilled (promtool) with the rightsizer's test fleet plus the series the
endpoint dashboards draw: one as a single exporter exports it, one as an HA pair does (replica "a" as
written, replica "b" started 6 hours later with counters from its own first poll). Every dashboard
query over raw sagemaker_* series, and the rightsizer's report, must be the same on both.
(alerts/*.rules.test.yml rerun with two replicas by tests/test_replicas.py cover the recording rules.)
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import replace

import pytest
import requests

import rightsize_histories as rh
from helpers import ROOT, Prometheus, require_binary, run_cli

sys.path.insert(0, str(ROOT))

from dashboards.queries import MAY_BE_EMPTY, all_queries  # noqa: E402

pytestmark = pytest.mark.integration

AT = rh.END
B_STARTS_LATER = 6 * 3600 + 7 * 60
RAW = re.compile(r"(?<![:\w\"])sagemaker_\w+")
RECORDED = re.compile(r"\w+:\w+:\w+")
VARIABLES = {"region": ".*", "endpoint": ".*", "variant": ".*", "instance": ".*", "gpu": ".*", "model": ".*"}


def endpoint_extras(fleet: list[rh.Series]) -> list[rh.Series]:
    """What the endpoint dashboards read besides the rightsizer's series, for every variant of the fleet."""
    out = []
    for s in fleet:
        if s.sample != "sagemaker_variant_instances":
            continue
        variant, endpoint = s.labels, {k: v for k, v in s.labels.items() if k != "variant"}
        out += [rh.Series("sagemaker_endpoint_info", "gauge", "sagemaker_endpoint_info",
                          {**endpoint, "status": "InService"}, rh.const(1), s.start),
                rh.Series("sagemaker_variant_desired_instances", "gauge", "sagemaker_variant_desired_instances",
                          variant, s.value, s.start),
                rh.Series("sagemaker_data_timestamp_seconds", "gauge", "sagemaker_data_timestamp_seconds", variant,
                          lambda t: t - 180, s.start),
                rh.Series("sagemaker_invocation_4xx_errors", "counter", "sagemaker_invocation_4xx_errors_total",
                          variant, rh.const(0.25), s.start),
                rh.Series("sagemaker_invocation_model_errors", "counter", "sagemaker_invocation_model_errors_total",
                          variant, rh.const(0.05), s.start),
                rh.Series("sagemaker_overhead_latency_seconds", "summary", "sagemaker_overhead_latency_seconds",
                          {**variant, "quantile": "0.99"}, rh.const(0.01), s.start),
                rh.Series("sagemaker_model_latency_seconds", "summary", "sagemaker_model_latency_seconds",
                          {**variant, "quantile": "0.95"}, rh.const(0.2), s.start),
                rh.Series("sagemaker_instance_disk_utilization_ratio", "gauge",
                          "sagemaker_instance_disk_utilization_ratio", variant, rh.const(0.3), s.start)]
    return out


def fleet() -> list[rh.Series]:
    """The SageMaker part of the rightsizer's test fleet (hosts have no replicas) and the dashboard extras."""
    endpoints = [s for s in rh.test_fleet() if s.sample.startswith("sagemaker_")]
    return endpoints + endpoint_extras(endpoints)


def two_replicas(series: list[rh.Series]) -> list[rh.Series]:
    """Each series from replica a, and from replica b, which started later: its counters are integrated from
    its own first poll (write_openmetrics starts every counter at its series' start)."""
    return [copy for s in series for copy in (
        replace(s, labels={**s.labels, "replica": "a"}),
        replace(s, labels={**s.labels, "replica": "b"}, start=s.start + B_STARTS_LATER))]


def start_prometheus(tmp, series: list[rh.Series]) -> Prometheus:
    data = tmp / "prometheus-data"
    data.mkdir()
    rh.write_tsdb(data, tmp, series)
    return Prometheus({"global": {"scrape_interval": "1m"}, "scrape_configs": []}, tmp,
                      extra_args=["--storage.tsdb.retention.time=100d"])


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    require_binary("promtool")
    one = start_prometheus(tmp_path_factory.mktemp("one-replica"), fleet())
    try:
        pair = start_prometheus(tmp_path_factory.mktemp("two-replicas"), two_replicas(fleet()))
        try:
            yield one, pair
        finally:
            pair.stop()
    finally:
        one.stop()


def instant(prometheus: Prometheus, expr: str) -> dict[frozenset, float]:
    resp = requests.get(prometheus.url + "/api/v1/query", params={"query": expr, "time": AT}, timeout=30)
    body = resp.json()
    assert body.get("status") == "success", f"{expr}: {body}"
    if body["data"]["resultType"] == "scalar":
        return {frozenset(): float(body["data"]["result"][1])}
    return {frozenset(r["metric"].items()): float(r["value"][1]) for r in body["data"]["result"]}


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def test_the_pair_dataset_really_holds_two_replicas(servers):
    one, pair = servers
    assert len(instant(pair, "sagemaker_variant_instances")) == 2 * len(instant(one, "sagemaker_variant_instances"))
    # their counters differ (b counts from its own first poll) while their rates agree
    (a,), (b,) = ([v for k, v in instant(pair, f'sagemaker_invocations_total{{endpoint="steady",replica="{r}"}}').items()]
                  for r in "ab")
    assert a > b > 0


def test_every_dashboard_query_over_sagemaker_series_is_the_same_with_two_replicas(servers):
    one, pair = servers
    queries = [(uid, title, expr) for uid, title, expr in all_queries(VARIABLES) if RAW.search(expr)]
    assert len(queries) >= 20
    differ, empty = [], []
    for uid, title, expr in queries:
        single, double = instant(one, expr), instant(pair, expr)
        if single.keys() != double.keys() or not all(same(single[k], double[k]) for k in single):
            differ.append(f"{uid} / {title}: {expr}\n  one replica:  {sorted(single.items())[:3]}\n"
                          f"  two replicas: {sorted(double.items())[:3]}")
        if not single and not RECORDED.search(expr) and (uid, title) not in MAY_BE_EMPTY:
            empty.append(f"{uid} / {title}: {expr}")
    assert not differ, "\n".join(differ)
    assert not empty, "queries over raw series without data (the test would prove nothing):\n" + "\n".join(empty)


def report(prometheus: Prometheus) -> dict:
    result = run_cli("rightsize", "--prometheus", prometheus.url, "--at", str(AT), "--format", "json", timeout=180)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    doc.pop("generated_at", None)
    return doc


def test_the_rightsizer_finds_the_same_with_two_replicas(servers):
    one, pair = servers
    single, double = report(one), report(pair)
    findings = {r["endpoint"]: r["finding"] for r in single["recommendations"]}
    assert findings["idle-gpu"] == "Idle" and findings["spiky"] == "Underprovisioned", findings
    assert [(r["endpoint"], r["finding"]) for r in double["recommendations"]] == \
        [(r["endpoint"], r["finding"]) for r in single["recommendations"]]
    differ = [f"{r1.get('endpoint')}: {key}: {r1.get(key)!r} != {r2.get(key)!r}"
              for r1, r2 in zip(single["recommendations"], double["recommendations"])
              for key in sorted(r1.keys() | r2.keys()) if not close(r1.get(key), r2.get(key))]
    assert not differ, "\n".join(differ)


def close(a, b) -> bool:
    """Equal, numbers within 1e-4 relative: replica b's counters, smaller, keep more of the 9 significant
    digits the synthetic history is written with, so its rates differ in the last digits."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-4)
    return a == b
