"""Each moto patch of the AWS emulator, checked through real boto3 over HTTP (start_emulator, in-process)."""

from __future__ import annotations

import itertools
import time

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from mlscope.demo import patches
from mlscope.demo.aws import start_emulator
from helpers import assert_one_line_error, run_cli, utc

DIMS = [{"Name": "EndpointName", "Value": "e1"}, {"Name": "VariantName", "Value": "AllTraffic"}]
# a clock minute well inside CloudWatch's "less than 15 days old" rounding rule
T0 = (int(time.time()) // 3600 - 2) * 3600


@pytest.fixture(scope="module")
def url():
    server, base = start_emulator()
    yield base
    server.stop()


_REGIONS = itertools.cycle(["us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-west-2", "eu-west-3",
                            "eu-central-1", "eu-north-1", "ap-south-1", "ap-northeast-1", "ap-northeast-2",
                            "ap-southeast-1", "ap-southeast-2", "ca-central-1", "sa-east-1"])


@pytest.fixture
def region():
    """A fresh region per test: moto keeps one backend per region, so tests do not see each other's data."""
    return next(_REGIONS)


def client(url: str, service: str, region: str = "us-east-1"):
    return boto3.client(service, endpoint_url=url, region_name=region,
                        aws_access_key_id="test", aws_secret_access_key="test")


def query(qid: str, stat: str, name: str = "ModelLatency", ns: str = "AWS/SageMaker", dims=DIMS, period: int = 60):
    return {"Id": qid, "MetricStat": {"Metric": {"Namespace": ns, "MetricName": name, "Dimensions": dims},
                                      "Period": period, "Stat": stat}}


def series(cw, queries, start: float, end: float, **kwargs) -> dict[str, list[tuple[float, float]]]:
    resp = cw.get_metric_data(MetricDataQueries=queries, StartTime=utc(start), EndTime=utc(end),
                              ScanBy="TimestampAscending", **kwargs)
    return {r["Id"]: [(t.timestamp(), v) for t, v in zip(r["Timestamps"], r["Values"])]
            for r in resp["MetricDataResults"]}


# ---------------------------------------------------------------- 1. instance types

@pytest.mark.parametrize("instance_type", ["ml.g5.xlarge", "ml.g5.12xlarge", "ml.g6.2xlarge", "ml.g6e.xlarge",
                                           "ml.p4d.24xlarge", "ml.p5.48xlarge", "ml.inf2.xlarge",
                                           "ml.trn1.32xlarge", "ml.m7i.large", "ml.c5.xlarge"])
def test_current_instance_types_are_accepted(url, instance_type):
    sm = client(url, "sagemaker")
    name = instance_type.replace(".", "-")
    sm.create_model(ModelName=name, ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
                    PrimaryContainer={"Image": "img"})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": instance_type, "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    config = sm.describe_endpoint_config(EndpointConfigName=name)
    assert config["ProductionVariants"][0]["InstanceType"] == instance_type
    assert sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0]["CurrentInstanceCount"] == 1


@pytest.mark.parametrize("instance_type", ["g5.xlarge", "ml.g5", "ml.g5.huge", "ML.G5.XLARGE"])
def test_malformed_instance_types_are_still_rejected(url, instance_type):
    sm = client(url, "sagemaker")
    with pytest.raises(ClientError) as info:
        sm.create_endpoint_config(EndpointConfigName="bad", ProductionVariants=[
            {"VariantName": "v", "ModelName": "m", "InstanceType": instance_type, "InitialInstanceCount": 1}])
    assert "instanceType" in str(info.value)


# ---------------------------------------------------------------- 2+3. Values+Counts and percentiles

def test_percentiles_nearest_rank_in_get_metric_data(url, region):
    cw = client(url, "cloudwatch", region)
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "ModelLatency", "Dimensions": DIMS, "Timestamp": utc(T0 + 5), "Unit": "Microseconds",
         "Values": [float(v) for v in range(1, 101)], "Counts": [1.0] * 100}])
    stats = {"p0": 1, "p50": 50, "p90": 90, "p99": 99, "p99.9": 100, "p100": 100,
             "Sum": 5050, "SampleCount": 100, "Average": 50.5, "Minimum": 1, "Maximum": 100}
    got = series(cw, [query(f"q{i}", s) for i, s in enumerate(stats)], T0, T0 + 60)
    assert {s: got[f"q{i}"] for i, s in enumerate(stats)} == {s: [(T0, float(v))] for s, v in stats.items()}


def test_counts_weight_the_percentiles(url, region):
    """Values+Counts are weighted, not truncated or expanded: 50×10µs, 45×20µs, 5×30µs."""
    cw = client(url, "cloudwatch", region)
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "ModelLatency", "Dimensions": DIMS, "Timestamp": utc(T0 + 1),
         "Values": [30.0, 10.0, 20.0], "Counts": [5.0, 50.0, 45.0]}])
    # a second datum in the same minute merges into the same distribution
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "ModelLatency", "Dimensions": DIMS, "Timestamp": utc(T0 + 30), "Values": [1000.0],
         "Counts": [100.0]}])
    got = series(cw, [query("a", "p25"), query("b", "p50"), query("c", "p75"), query("d", "p97.5"),
                      query("n", "SampleCount"), query("s", "Sum")], T0, T0 + 60)
    # 200 samples: 50×10, 45×20, 5×30, 100×1000 -> ranks 50, 100, 150, 195
    assert [got[k][0][1] for k in "abcdns"] == [10.0, 30.0, 1000.0, 1000.0, 200.0, 500 + 900 + 150 + 100000.0]


def test_trimmed_count_and_percentile_rank_exclude_the_lower_bound_and_include_the_upper(url, region):
    """The latency-SLO statistics: TC counts samples with lo < v <= hi, PR gives their share in percent."""
    cw = client(url, "cloudwatch", region)
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "ModelLatency", "Dimensions": DIMS, "Timestamp": utc(T0 + 1), "Unit": "Microseconds",
         "Values": [50_000.0, 100_000.0, 100_001.0, 400_000.0], "Counts": [30.0, 10.0, 5.0, 5.0]}])
    stats = ["TC(:100000)", "PR(:100000)", "TC(50000:100000)", "TC(100000:)", "PR(:50000)", "TC(:49999.5)",
             "PR(50000:400000)"]
    got = series(cw, [query(f"q{i}", s) for i, s in enumerate(stats)], T0, T0 + 60)
    # 50 samples: 30 at 50 ms, 10 at exactly 100 ms (included), 5 just above, 5 at 400 ms
    assert [got[f"q{i}"] for i in range(len(stats))] == [
        [(T0, 40.0)], [(T0, 80.0)], [(T0, 10.0)], [(T0, 10.0)], [(T0, 60.0)], [(T0, 0.0)], [(T0, 40.0)]]
    # a statistic set of several values has no per-sample distribution: no TC/PR datapoint, as for pNN
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "ModelLatency", "Dimensions": DIMS, "Timestamp": utc(T0 + 61),
         "StatisticValues": {"SampleCount": 4, "Sum": 400, "Minimum": 10, "Maximum": 190}}])
    assert series(cw, [query("t", "TC(:100000)")], T0 + 60, T0 + 120)["t"] == []
    for bad in ["TC(:)", "TC(10%:90%)", "tc90", "TC(5:1)", "PR(:abc)", "TM(:5)"]:
        with pytest.raises(ClientError) as info:
            series(cw, [query("bad", bad)], T0, T0 + 60)
        assert info.value.response["Error"]["Code"] == "ValidationError" and "Stat" in str(info.value), bad


def test_percentiles_in_get_metric_statistics(url, region):
    cw = client(url, "cloudwatch", region)
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "ModelLatency", "Dimensions": DIMS, "Timestamp": utc(T0 + 60 + 7),
         "Values": [float(v) for v in range(1, 1001)]}])
    resp = cw.get_metric_statistics(Namespace="AWS/SageMaker", MetricName="ModelLatency", Dimensions=DIMS,
                                    StartTime=utc(T0), EndTime=utc(T0 + 180), Period=60,
                                    ExtendedStatistics=["p50", "p90", "p99", "p99.9"])
    [point] = resp["Datapoints"]
    assert point["Timestamp"].timestamp() == T0 + 60
    assert point["ExtendedStatistics"] == {"p50": 500.0, "p90": 900.0, "p99": 990.0, "p99.9": 999.0}
    with pytest.raises(ClientError) as info:  # CloudWatch: one or the other, not both
        cw.get_metric_statistics(Namespace="AWS/SageMaker", MetricName="ModelLatency", Dimensions=DIMS,
                                 StartTime=utc(T0), EndTime=utc(T0 + 180), Period=60,
                                 Statistics=["Sum"], ExtendedStatistics=["p50"])
    assert info.value.response["Error"]["Code"] == "InvalidParameterCombination"


def test_statistic_sets_have_no_percentiles(url, region):
    cw = client(url, "cloudwatch", region)
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "ModelLatency", "Dimensions": DIMS, "Timestamp": utc(T0 + 1),
         "StatisticValues": {"SampleCount": 10, "Sum": 550, "Minimum": 10, "Maximum": 100}}])
    got = series(cw, [query("p", "p99"), query("s", "Sum"), query("n", "SampleCount")], T0, T0 + 60)
    assert got == {"p": [], "s": [(T0, 550.0)], "n": [(T0, 10.0)]}
    resp = cw.get_metric_statistics(Namespace="AWS/SageMaker", MetricName="ModelLatency", Dimensions=DIMS,
                                    StartTime=utc(T0), EndTime=utc(T0 + 60), Period=60, ExtendedStatistics=["p99"])
    assert [p.get("ExtendedStatistics") for p in resp["Datapoints"]] == [None]


# ---------------------------------------------------------------- 4. namespace and exact dimensions

def test_namespace_and_exact_dimensions_are_respected(url, region):
    cw = client(url, "cloudwatch", region)
    ts = utc(T0 + 2)
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "CPUUtilization", "Dimensions": DIMS, "Timestamp": ts, "Value": 1.0}])
    cw.put_metric_data(Namespace="/aws/sagemaker/Endpoints", MetricData=[
        {"MetricName": "CPUUtilization", "Dimensions": DIMS, "Timestamp": ts, "Value": 300.0},
        {"MetricName": "CPUUtilization", "Dimensions": DIMS[:1], "Timestamp": ts, "Value": 7000.0}])
    got = series(cw, [query("a", "Sum", "CPUUtilization", "AWS/SageMaker"),
                      query("b", "Sum", "CPUUtilization", "/aws/sagemaker/Endpoints"),
                      query("c", "Sum", "CPUUtilization", "/aws/sagemaker/Endpoints", DIMS[:1])], T0, T0 + 60)
    assert got == {"a": [(T0, 1.0)], "b": [(T0, 300.0)], "c": [(T0, 7000.0)]}
    resp = cw.get_metric_statistics(Namespace="/aws/sagemaker/Endpoints", MetricName="CPUUtilization",
                                    Dimensions=DIMS, StartTime=utc(T0), EndTime=utc(T0 + 60), Period=60,
                                    Statistics=["Sum"])
    assert [p["Sum"] for p in resp["Datapoints"]] == [300.0]
    listed = cw.list_metrics(Namespace="/aws/sagemaker/Endpoints")["Metrics"]
    assert len(listed) == 2


# ---------------------------------------------------------------- 5. period alignment

def test_periods_are_aligned_to_the_clock(url, region):
    cw = client(url, "cloudwatch", region)
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "Invocations", "Dimensions": DIMS, "Timestamp": utc(T0 + off), "Value": val}
        for off, val in ((10, 1.0), (50, 2.0), (70, 4.0), (310, 8.0))])
    # StartTime 12:00:30 is rounded down to 12:00:00: buckets are clock minutes (moto: 12:00:30, 12:01:30...)
    got = series(cw, [query("m", "Sum", "Invocations"), query("f", "Sum", "Invocations", period=300)],
                 T0 + 30, T0 + 600)
    assert got["m"] == [(T0, 3.0), (T0 + 60, 4.0), (T0 + 300, 8.0)]
    assert got["f"] == [(T0, 7.0), (T0 + 300, 8.0)]
    resp = cw.get_metric_statistics(Namespace="AWS/SageMaker", MetricName="Invocations", Dimensions=DIMS,
                                    StartTime=utc(T0 + 30), EndTime=utc(T0 + 120), Period=60, Statistics=["Sum"])
    assert sorted((p["Timestamp"].timestamp(), p["Sum"]) for p in resp["Datapoints"]) == [(T0, 3.0), (T0 + 60, 4.0)]


def test_round_start_follows_the_documented_rules():
    now = 1_700_000_000
    assert patches.round_start(now - 3600 + 34, 300, now) == now - 3600 + 34 - (now + 34) % 60
    assert patches.round_start(now - 20 * 86400, 60, now) % 300 == 0
    assert patches.round_start(now - 70 * 86400, 60, now) % 3600 == 0
    assert patches.round_start(1_000_000_023, 10, now) == 1_000_000_020


# ---------------------------------------------------------------- 6. GetMetricData limits

def test_500_queries_per_call(url, region):
    cw = client(url, "cloudwatch", region)
    queries = [query(f"q{i}", "Sum", "Invocations", dims=[{"Name": "EndpointName", "Value": f"e{i}"}])
               for i in range(501)]
    assert len(cw.get_metric_data(MetricDataQueries=queries[:500], StartTime=utc(T0),
                                  EndTime=utc(T0 + 60))["MetricDataResults"]) == 500
    with pytest.raises(ClientError) as info:
        cw.get_metric_data(MetricDataQueries=queries, StartTime=utc(T0), EndTime=utc(T0 + 60))
    assert info.value.response["Error"]["Code"] == "ValidationError"
    assert "500" in info.value.response["Error"]["Message"]


@pytest.mark.parametrize("bad", [
    [query("a", "Sum"), query("a", "p50")],          # duplicate Id
    [query("A1", "Sum")],                            # Id must start lower-case
    [query("a", "tm99")],                            # a statistic the emulator does not compute
    [query("a", "Sum", period=45)],                  # period not 1/5/10/20/30/60n
])
def test_bad_queries_are_validation_errors(url, region, bad):
    cw = client(url, "cloudwatch", region)
    with pytest.raises(ClientError) as info:
        cw.get_metric_data(MetricDataQueries=bad, StartTime=utc(T0), EndTime=utc(T0 + 60))
    assert info.value.response["Error"]["Code"] == "ValidationError"


def test_max_datapoints_and_next_token(url, region):
    cw = client(url, "cloudwatch", region)
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "Invocations", "Dimensions": DIMS, "Timestamp": utc(T0 + 60 * i), "Value": float(i)}
        for i in range(5)])
    queries = [query("a", "Sum", "Invocations"), query("b", "SampleCount", "Invocations")]
    seen: dict[str, list] = {"a": [], "b": []}
    token, calls = None, 0
    while True:
        kwargs = {"NextToken": token} if token else {}
        resp = cw.get_metric_data(MetricDataQueries=queries, StartTime=utc(T0), EndTime=utc(T0 + 300),
                                  ScanBy="TimestampAscending", MaxDatapoints=3, **kwargs)
        calls += 1
        assert sum(len(r["Values"]) for r in resp["MetricDataResults"]) <= 3
        for r in resp["MetricDataResults"]:
            seen[r["Id"]] += r["Values"]
        token = resp.get("NextToken")
        if not token:
            break
    assert calls == 4
    assert seen == {"a": [0.0, 1.0, 2.0, 3.0, 4.0], "b": [1.0] * 5}


def test_metric_stat_results_default_label_and_descending_order(url, region):
    cw = client(url, "cloudwatch", region)
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "Invocations", "Dimensions": DIMS, "Timestamp": utc(T0 + 60 * i), "Value": 1.0}
        for i in range(3)])
    resp = cw.get_metric_data(MetricDataQueries=[query("a", "Sum", "Invocations")], StartTime=utc(T0),
                              EndTime=utc(T0 + 180))
    [result] = resp["MetricDataResults"]
    assert result["Label"] == "Invocations" and result["StatusCode"] == "Complete"
    assert [t.timestamp() for t in result["Timestamps"]] == [T0 + 120, T0 + 60, T0]
    assert resp["Messages"] == []


def test_retention_drops_old_data(url, region):
    cw = client(url, "cloudwatch", region)
    now = int(time.time()) // 60 * 60
    patches.set_retention(3600)
    try:
        cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
            {"MetricName": "Invocations", "Dimensions": DIMS, "Timestamp": utc(ts), "Value": 1.0}
            for ts in (now - 7200, now - 600)])
    finally:
        patches.set_retention(patches.DEFAULT_RETENTION_SECONDS)
    got = series(cw, [query("a", "Sum", "Invocations")], now - 7200, now)
    assert got == {"a": [(now - 600, 1.0)]}


def test_moto_reset_empties_the_patched_store(url):
    cw = client(url, "cloudwatch", "me-south-1")
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "Invocations", "Dimensions": DIMS, "Timestamp": utc(T0), "Value": 1.0}])
    assert series(cw, [query("a", "Sum", "Invocations")], T0, T0 + 60) == {"a": [(T0, 1.0)]}
    assert requests.post(url + "/moto-api/reset", timeout=10).status_code == 200
    assert series(cw, [query("a", "Sum", "Invocations")], T0, T0 + 60) == {"a": []}
    assert cw.list_metrics(Namespace="AWS/SageMaker")["Metrics"] == []


def test_list_metrics_recently_active_lists_what_received_data_in_the_last_three_hours(url, region):
    cw = client(url, "cloudwatch", region)
    old = [{"Name": "EndpointName", "Value": "old"}, {"Name": "VariantName", "Value": "AllTraffic"}]
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "Invocations", "Dimensions": DIMS, "Timestamp": utc(T0), "Value": 1.0},
        {"MetricName": "Invocations", "Dimensions": old, "Timestamp": utc(T0), "Value": 1.0}])
    backend = patches.cw_models.cloudwatch_backends["123456789012"][region]   # moto's default account
    # as if `old` had last received data 3 hours and a second ago (timestamps do not matter, arrival does)
    key = ("AWS/SageMaker", "Invocations", frozenset((d["Name"], d["Value"]) for d in old))
    patches._received(backend)[key] = time.time() - 3 * 3600 - 1

    def endpoints(**kw):
        return {next(d["Value"] for d in m["Dimensions"] if d["Name"] == "EndpointName")
                for m in cw.list_metrics(Namespace="AWS/SageMaker", **kw)["Metrics"]}

    assert endpoints() == {"e1", "old"}                       # without RecentlyActive: every stored metric
    assert endpoints(RecentlyActive="PT3H") == {"e1"}
    assert endpoints(RecentlyActive="PT3H", MetricName="ModelLatency") == set()


# ---------------------------------------------------------------- 10. inference components

def test_inference_components_create_describe_list_update_delete(url, region):
    sm = client(url, "sagemaker", region)
    sm.create_model(ModelName="m", ExecutionRoleArn="arn:aws:iam::123456789012:role/r", PrimaryContainer={"Image": "i"})
    sm.create_endpoint_config(EndpointConfigName="shared", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "m", "InstanceType": "ml.g5.12xlarge", "InitialInstanceCount": 2}])
    sm.create_endpoint(EndpointName="shared", EndpointConfigName="shared")
    spec = {"ModelName": "m", "ComputeResourceRequirements": {"NumberOfAcceleratorDevicesRequired": 2,
                                                              "NumberOfCpuCoresRequired": 4, "MinMemoryRequiredInMb": 8192}}
    for name, copies in (("llama", 2), ("mistral", 1), ("embedder", 3)):
        sm.create_inference_component(InferenceComponentName=name, EndpointName="shared", VariantName="AllTraffic",
                                      Specification=spec, RuntimeConfig={"CopyCount": copies})
    desc = sm.describe_inference_component(InferenceComponentName="llama")
    assert desc["RuntimeConfig"] == {"DesiredCopyCount": 2, "CurrentCopyCount": 2}
    assert desc["Specification"]["ComputeResourceRequirements"]["NumberOfAcceleratorDevicesRequired"] == 2
    assert (desc["EndpointName"], desc["VariantName"], desc["InferenceComponentStatus"]) == \
        ("shared", "AllTraffic", "InService")
    assert desc["InferenceComponentArn"].endswith(":inference-component/llama")
    names = [c["InferenceComponentName"] for page in sm.get_paginator("list_inference_components").paginate(
        EndpointNameEquals="shared", PaginationConfig={"PageSize": 2}) for c in page["InferenceComponents"]]
    assert sorted(names) == ["embedder", "llama", "mistral"]
    assert sm.list_inference_components(EndpointNameEquals="other")["InferenceComponents"] == []
    sm.update_inference_component_runtime_config(InferenceComponentName="mistral",
                                                 DesiredRuntimeConfig={"CopyCount": 4})
    assert sm.describe_inference_component(InferenceComponentName="mistral")["RuntimeConfig"]["CurrentCopyCount"] == 4
    sm.delete_inference_component(InferenceComponentName="embedder")
    with pytest.raises(ClientError) as info:
        sm.describe_inference_component(InferenceComponentName="embedder")
    assert "Could not find inference component" in str(info.value)
    with pytest.raises(ClientError) as info:
        sm.create_inference_component(InferenceComponentName="x", EndpointName="nope", VariantName="AllTraffic",
                                      Specification=spec, RuntimeConfig={"CopyCount": 1})
    assert "Could not find endpoint" in str(info.value)


# ---------------------------------------------------------------- 11. cross-account observability

MONITORING = "123456789012"  # moto's account for credentials that belong to no role
SOURCE_A, SOURCE_B, UNLINKED = "111111111111", "222222222222", "333333333333"


def account_client(url: str, service: str, region: str, account: str):
    """A client in `account`: moto gives credentials from AssumeRole the role's account."""
    creds = client(url, "sts", region).assume_role(RoleArn=f"arn:aws:iam::{account}:role/test",
                                                   RoleSessionName="test")["Credentials"]
    return boto3.client(service, endpoint_url=url, region_name=region, aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])


@pytest.fixture
def links():
    patches.link_accounts(MONITORING, [SOURCE_A, SOURCE_B])
    yield
    patches.unlink_accounts(MONITORING)


def _put_invocations(cw, value: float, endpoint: str = "e1", ts: float = T0) -> None:
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[{
        "MetricName": "Invocations", "Value": value, "Timestamp": utc(ts),
        "Dimensions": [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}]}])


def test_list_metrics_include_linked_accounts_names_each_metrics_owner(url, region, links):
    for account, value in ((SOURCE_A, 4), (SOURCE_B, 9), (UNLINKED, 1)):
        _put_invocations(account_client(url, "cloudwatch", region, account), value)
    _put_invocations(client(url, "cloudwatch", region), 2, endpoint="own")
    cw = client(url, "cloudwatch", region)

    plain = cw.list_metrics(Namespace="AWS/SageMaker")
    assert [dict((d["Name"], d["Value"]) for d in m["Dimensions"])["EndpointName"] for m in plain["Metrics"]] == \
        ["own"]
    assert "OwningAccounts" not in plain or plain["OwningAccounts"] == []

    linked = cw.list_metrics(Namespace="AWS/SageMaker", IncludeLinkedAccounts=True, RecentlyActive="PT3H")
    owners = sorted(zip(linked["OwningAccounts"],
                        (dict((d["Name"], d["Value"]) for d in m["Dimensions"])["EndpointName"]
                         for m in linked["Metrics"])))
    assert owners == [(SOURCE_A, "e1"), (MONITORING, "own"), (SOURCE_B, "e1")]  # never the unlinked account

    only_b = cw.list_metrics(Namespace="AWS/SageMaker", IncludeLinkedAccounts=True, OwningAccount=SOURCE_B)
    assert only_b["OwningAccounts"] == [SOURCE_B] and len(only_b["Metrics"]) == 1
    assert cw.list_metrics(Namespace="AWS/SageMaker", IncludeLinkedAccounts=True,
                           OwningAccount=UNLINKED)["Metrics"] == []
    # a source account sees only its own metrics
    assert account_client(url, "cloudwatch", region, SOURCE_A).list_metrics(
        Namespace="AWS/SageMaker", IncludeLinkedAccounts=True)["OwningAccounts"] == [SOURCE_A]


def test_list_metrics_of_linked_accounts_pages_with_next_token(url, region, links):
    cw_a = account_client(url, "cloudwatch", region, SOURCE_A)
    for chunk in range(0, 520, 20):
        cw_a.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
            {"MetricName": "Invocations", "Value": 1, "Timestamp": utc(T0),
             "Dimensions": [{"Name": "EndpointName", "Value": f"e{i}"}]} for i in range(chunk, chunk + 20)])
    cw = client(url, "cloudwatch", region)
    first = cw.list_metrics(Namespace="AWS/SageMaker", IncludeLinkedAccounts=True)
    assert len(first["Metrics"]) == len(first["OwningAccounts"]) == 500 and first["NextToken"]
    second = cw.list_metrics(Namespace="AWS/SageMaker", IncludeLinkedAccounts=True, NextToken=first["NextToken"])
    assert len(second["Metrics"]) == 20 and second["OwningAccounts"] == [SOURCE_A] * 20
    assert "NextToken" not in second
    with pytest.raises(ClientError, match="NextToken"):
        cw.list_metrics(Namespace="AWS/SageMaker", IncludeLinkedAccounts=True, NextToken=first["NextToken"])


def test_get_metric_data_reads_a_linked_account_by_account_id_and_forbids_others(url, region, links):
    for account, value in ((SOURCE_A, 4), (SOURCE_B, 9), (UNLINKED, 1)):
        _put_invocations(account_client(url, "cloudwatch", region, account), value)
    _put_invocations(client(url, "cloudwatch", region), 2)
    dims = [{"Name": "EndpointName", "Value": "e1"}, {"Name": "VariantName", "Value": "AllTraffic"}]
    queries = [{**query(f"q{i}", "Sum", "Invocations", dims=dims), **({"AccountId": account} if account else {})}
               for i, account in enumerate([None, MONITORING, SOURCE_A, SOURCE_B, UNLINKED])]
    resp = client(url, "cloudwatch", region).get_metric_data(
        MetricDataQueries=queries, StartTime=utc(T0), EndTime=utc(T0 + 60), ScanBy="TimestampAscending")
    by_id = {r["Id"]: r for r in resp["MetricDataResults"]}
    assert [by_id[f"q{i}"]["Values"] for i in range(4)] == [[2.0], [2.0], [4.0], [9.0]]
    assert all(by_id[f"q{i}"]["StatusCode"] == "Complete" for i in range(4))
    assert by_id["q4"]["StatusCode"] == "Forbidden" and by_id["q4"]["Values"] == []
    assert by_id["q4"]["Messages"][0]["Code"] == "Forbidden"
    assert UNLINKED in by_id["q4"]["Messages"][0]["Value"]
    # once unlinked, a source account's data is forbidden too
    patches.unlink_accounts(MONITORING, [SOURCE_B])
    resp = client(url, "cloudwatch", region).get_metric_data(
        MetricDataQueries=[queries[3]], StartTime=utc(T0), EndTime=utc(T0 + 60))
    assert resp["MetricDataResults"][0]["StatusCode"] == "Forbidden"


def test_demo_aws_rejects_bad_linked_accounts_in_one_line():
    for bad, message in (("12345", "12-digit"), (MONITORING, "is the monitoring account itself")):
        assert_one_line_error(run_cli("demo", "aws", "--listen", "127.0.0.1:0", "--linked-accounts", bad),
                              "--linked-accounts: ", message)
