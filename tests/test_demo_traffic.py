"""The demo traffic generator: what it writes is what SageMaker would publish, and is known exactly."""

from __future__ import annotations

import time

import boto3
import pytest

from mlscope.demo import traffic
from mlscope.demo.aws import start_emulator
from helpers import utc

MINUTE = (int(time.time()) // 60 - 90) * 60


@pytest.fixture(scope="module")
def emulator():
    server, url = start_emulator()
    clients = traffic.make_clients(url, "us-east-1")
    endpoints = traffic.demo_endpoints()
    traffic.create_endpoints(clients, endpoints)
    written = traffic.backfill(clients, endpoints, MINUTE, MINUTE + 5 * 60, seed=7)
    yield clients, endpoints, written
    server.stop()


def test_generator_is_deterministic_and_seeded():
    eps = traffic.demo_endpoints()
    assert traffic.generate_minute(eps, MINUTE + 17, seed=3) == traffic.generate_minute(eps, MINUTE, seed=3)
    assert traffic.generate_minute(eps, MINUTE, seed=3) != traffic.generate_minute(eps, MINUTE, seed=4)


def test_demo_fleet_shape():
    eps = traffic.demo_endpoints()
    assert len(eps) == 6
    assert any(len(ep.variants) == 2 for ep in eps)
    assert any(ep.rps == 0 for ep in eps) and any(ep.bursts for ep in eps)
    types = {v.instance_type for ep in eps for v in ep.variants}
    assert {"ml.g5.12xlarge", "ml.p4d.24xlarge", "ml.inf2.xlarge", "ml.g5.xlarge"} <= types
    assert any(ep.tags.get("mlscope:slo") == "0.995" for ep in eps)
    assert all("team" in ep.tags for ep in eps)
    more = traffic.demo_endpoints(14)
    assert len({ep.name for ep in more}) == 14 and more[6].name == "llm-chat-2"


def test_minute_looks_like_sagemaker():
    eps = traffic.demo_endpoints()
    data = []
    for i in range(30):
        data += traffic.generate_minute(eps, MINUTE + 60 * i, seed=1)
    by_ep = {ep.name: ep for ep in eps}
    idle = next(ep.name for ep in eps if ep.rps == 0)
    assert not [d for d in data if d.endpoint == idle and d.namespace == traffic.SAGEMAKER_NS]
    assert {d.metric for d in data if d.endpoint == idle} == {
        "CPUUtilization", "MemoryUtilization", "DiskUtilization", "GPUUtilization", "GPUMemoryUtilization"}
    for d in data:
        var = next(v for v in by_ep[d.endpoint].variants if v.name == d.variant)
        vcpus, gpus = traffic.INSTANCE_SHAPES[var.instance_type]
        assert len(d.values) <= 20 and all(c > 0 for c in d.counts)
        if d.metric in ("ModelLatency", "OverheadLatency"):
            assert d.unit == "Microseconds" and 100 <= min(d.values) and max(d.values) < 60e6
        if d.metric == "CPUUtilization":
            assert 0 <= d.values[0] <= 100 * vcpus
        if d.metric in ("GPUUtilization", "GPUMemoryUtilization"):
            assert gpus and 0 <= d.values[0] <= 100 * gpus
        if d.metric in ("MemoryUtilization", "DiskUtilization"):
            assert 0 <= d.values[0] <= 100
    for ep in eps:
        calls = traffic.total(data, "Invocations", ep.name)
        for metric in ("Invocation4XXErrors", "Invocation5XXErrors", "InvocationModelErrors"):
            assert traffic.total(data, metric, ep.name) <= calls
            assert traffic.total(data, metric, ep.name, stat="SampleCount") == calls
        assert traffic.total(data, "ModelLatency", ep.name, stat="SampleCount") == calls
    bursty = next(ep.name for ep in eps if ep.bursts)
    assert traffic.total(data, "Invocation5XXErrors", bursty) / traffic.total(data, "Invocations", bursty) > 0.01
    assert traffic.total(data, "Invocations", "fraud-scoring", "Primary") > \
        2 * traffic.total(data, "Invocations", "fraud-scoring", "Canary")


def test_written_sums_match_cloudwatch_exactly(emulator):
    clients, endpoints, written = emulator
    queries, expected = [], {}
    for ep in endpoints:
        for var in ep.variants:
            dims = [{"Name": "EndpointName", "Value": ep.name}, {"Name": "VariantName", "Value": var.name}]
            for metric, ns, stat in (("Invocations", traffic.SAGEMAKER_NS, "Sum"),
                                     ("Invocation5XXErrors", traffic.SAGEMAKER_NS, "Sum"),
                                     ("ModelLatency", traffic.SAGEMAKER_NS, "SampleCount"),
                                     ("CPUUtilization", traffic.INSTANCE_NS, "Sum")):
                qid = f"q{len(queries)}"
                queries.append({"Id": qid, "MetricStat": {"Metric": {"Namespace": ns, "MetricName": metric,
                                                                     "Dimensions": dims},
                                                          "Period": 300, "Stat": stat}})
                picked = [d for d in written if d.endpoint == ep.name and d.variant == var.name and d.metric == metric]
                expected[qid] = [sum(d.sum if stat == "Sum" else d.sample_count for d in picked)] if picked else []
    resp = clients.cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=utc(MINUTE),
                                              EndTime=utc(MINUTE + 300))
    got = {r["Id"]: r["Values"] for r in resp["MetricDataResults"]}
    assert got == expected
    assert any(v and v[0] > 0 for v in expected.values())


def test_endpoints_tags_and_variants(emulator):
    clients, endpoints, _ = emulator
    sm = clients.sagemaker
    for ep in endpoints:
        desc = sm.describe_endpoint(EndpointName=ep.name)
        assert desc["EndpointStatus"] == "InService"
        assert [(v["VariantName"], v["CurrentInstanceCount"]) for v in desc["ProductionVariants"]] == \
            [(v.name, v.instances) for v in ep.variants]
        config = sm.describe_endpoint_config(EndpointConfigName=desc["EndpointConfigName"])
        assert [v["InstanceType"] for v in config["ProductionVariants"]] == [v.instance_type for v in ep.variants]
        tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=desc["EndpointArn"])["Tags"]}
        assert tags == ep.tags
    # creating again is a no-op (the traffic tool restarts against a running emulator)
    assert traffic.create_endpoints(clients, endpoints) == []


def test_percentiles_of_written_latency(emulator):
    clients, _, written = emulator
    dims = [{"Name": "EndpointName", "Value": "fraud-scoring"}, {"Name": "VariantName", "Value": "Primary"}]
    resp = clients.cloudwatch.get_metric_statistics(
        Namespace="AWS/SageMaker", MetricName="ModelLatency", Dimensions=dims, StartTime=utc(MINUTE),
        EndTime=utc(MINUTE + 60), Period=60, ExtendedStatistics=["p50", "p99"])
    [point] = resp["Datapoints"]
    [datum] = [d for d in written if d.timestamp == MINUTE and d.endpoint == "fraud-scoring"
               and d.variant == "Primary" and d.metric == "ModelLatency"]
    ranked = sorted(zip(datum.values, datum.counts))
    n = sum(datum.counts)

    def nearest_rank(p):
        running = 0
        for v, c in ranked:
            running += c
            if running >= p / 100 * n:
                return v

    assert point["ExtendedStatistics"] == {"p50": nearest_rank(50), "p99": nearest_rank(99)}
    assert 1_000 < point["ExtendedStatistics"]["p50"] < point["ExtendedStatistics"]["p99"] < 1_000_000
    assert point["Unit"] == "Microseconds"


def test_resource_tagging_api_finds_the_endpoints(emulator):
    clients, endpoints, _ = emulator
    tagging = boto3.client("resourcegroupstaggingapi", endpoint_url=clients.url, region_name=clients.region,
                           aws_access_key_id="test", aws_secret_access_key="test")
    arns = [r["ResourceARN"] for r in tagging.get_resources(ResourceTypeFilters=["sagemaker:endpoint"])
            ["ResourceTagMappingList"]]
    assert {a.rsplit("/", 1)[1] for a in arns} >= {ep.name for ep in endpoints}
