"""The scale bench's SageMaker shards (bench/sagemaker_shard.py, `python -m bench.fleet --sagemaker-endpoints`):
the real exporter on the bench's fake AWS serves what a shard of that many endpoints in that region would, the fake
latency is really waited, and the sizing's cycles and arithmetic are what the bench reports."""

from __future__ import annotations

import json
import sys
import time

import pytest

from helpers import ROOT, Process, samples, scrape

from bench import sagemaker_shard as shard

ENDPOINTS = 20  # 30 % on ml.g5.xlarge: ep-0000..2, ep-0010..12
LATENCY = 0.01


def wait_for(path, proc: Process, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.proc.poll() is None and time.monotonic() < deadline, proc.output()
        time.sleep(0.1)
    return json.loads(path.read_text())


def test_a_shard_process_serves_its_region_s_endpoints_after_waiting_the_fake_latency(tmp_path):
    targets_file, cycles_file = tmp_path / "targets.json", tmp_path / "cycles.json"
    fleet = Process([sys.executable, "-m", "bench.fleet", f"--sagemaker-endpoints={ENDPOINTS}", "--region=eu-west-1",
                     f"--cloudwatch-latency={LATENCY}", f"--sagemaker-latency={LATENCY}",
                     f"--cycles-file={cycles_file}", f"--targets-file={targets_file}"], cwd=ROOT)
    try:
        targets = wait_for(targets_file, fleet)
        assert targets["gpu"] == [] and targets["host"] == [] and len(targets["sagemaker"]) == 1
        cycles = wait_for(cycles_file, fleet)
        parsed = samples(scrape(f"http://{targets['sagemaker'][0]}"))
    finally:
        fleet.stop()

    endpoints = parsed["sagemaker_endpoint_info"]
    assert sorted(labels["endpoint"] for labels, _ in endpoints) == [f"ep-{i:04d}" for i in range(ENDPOINTS)]
    assert {(labels["region"], labels["account"], labels["status"]) for labels, _ in endpoints} == {
        ("eu-west-1", "123456789012", "InService")}
    types = {labels["endpoint"]: labels["instance_type"] for labels, _ in parsed["sagemaker_variant_info"]}
    assert sorted(e for e, t in types.items() if t == "ml.g5.xlarge") == [
        "ep-0000", "ep-0001", "ep-0002", "ep-0010", "ep-0011", "ep-0012"]
    assert {v for _, v in parsed["sagemaker_variant_instances"]} == {2.0}
    # the start-up cycle: every endpoint described (3 calls each), each call after LATENCY seconds
    first = cycles["cycles"][0]
    calls = first["calls"]
    assert (calls["DescribeEndpoint"], calls["DescribeEndpointConfig"], calls["ListTags"]) == (20, 20, 20)
    describe = sum(calls[api] for api in shard.DESCRIBE_APIS)                  # 8 endpoints at a time
    one_by_one = sum(n for api, n in calls.items() if api != "GetMetricStatistics") - describe  # GMS: 8 at a time
    assert first["wall_s"] >= (one_by_one + describe / 8) * LATENCY
    assert 0 < first["cpu_s"] < first["wall_s"]


def test_sizing_tells_start_up_steady_and_inventory_refresh_cycles_apart():
    result = shard.measure(ENDPOINTS, cycles=7)
    runs = result["cycles"]
    describes = [r["calls"].get("DescribeEndpoint", 0) for r in runs]
    # start-up describes all 20; their re-descriptions are spread over 150-300 s (one per endpoint by 360 s)
    assert describes[:3] == [20, 0, 0] and sum(describes[3:]) == 20 and max(describes[3:]) < 20
    assert [r["calls"].get("DescribeEndpointConfig", 0) for r in runs] == [20, 0, 0, 0, 0, 0, 0]  # configs: once
    assert all(r["ok"] for r in runs)
    steady, refresh = shard.split_cycles(runs)
    assert len(steady) + len(refresh) == 6 and len(refresh) >= 2
    summary = shard.summarise(result)
    assert summary["refresh_calls"] - summary["steady_calls"] < 2 * ENDPOINTS  # DescribeEndpoint + ListTags
    # at least 25 series per busy variant (19 + the two latencies' p50/p95/p99), 27 with GPU utilization
    assert result["scrape_samples"] >= 14 * 25 + 6 * 27


def test_cycle_wall_time_is_cpu_plus_each_call_s_assumed_latency():
    run = {"cpu_s": 0.5, "calls": {"GetMetricData": 3, "ListMetrics": 1, "ListEndpoints": 2, "DescribeEndpoint": 10}}
    # ListEndpoints one after the other; Describe*/ListTags 8 at a time
    assert shard.cycle_wall(run) == pytest.approx(0.5 + 4 * 0.1 + 2 * 0.05 + 10 / 8 * 0.05)
    assert shard.cycle_wall(run, cloudwatch_latency=0.3, sagemaker_latency=0.0) == pytest.approx(1.7)
    # GetMetricStatistics: 8 at a time, at most 100 a second: 1,000 take 12.5 s at 100 ms each, 10 s at 20 ms
    gms = {"cpu_s": 0.0, "calls": {"GetMetricStatistics": 1000}}
    assert shard.cycle_wall(gms) == pytest.approx(12.5)
    assert shard.cycle_wall(gms, cloudwatch_latency=0.02) == pytest.approx(10.0)
