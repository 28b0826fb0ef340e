"""The SageMaker exporter fed by a CloudWatch metric stream (JSON, Firehose -> S3) instead of GetMetricData:
real boto3 against the patched moto server (patch 12 streams the metrics; moto's Firehose writes S3)."""

from __future__ import annotations

import gzip
import json
import logging
import time

import pytest

from helpers import assert_one_line_error, promtool_check_metrics, run_cli, samples, value
from sagemaker_fixtures import aws_env  # noqa: F401 (autouse: test credentials)
from sagemaker_fixtures import moto  # noqa: F401 (the module's emulator)
from sagemaker_fixtures import (ROLE, Clock, client, create_endpoint, exposition, load_policy, make_poller,
                                put, put_latencies)

from mlscope.health import Health
from mlscope.sagemaker.aws import Aws, Stats
from mlscope.sagemaker.config import MetricStream, Target
from mlscope.sagemaker.cost import PriceBook
from mlscope.sagemaker.inventory import Inventory
from mlscope.sagemaker.poller import Poller
from mlscope.sagemaker.stream import Store, Update, parse, stat_key

BUCKET, PREFIX = "metric-stream", "cw/"
STATS = ["p50", "p99", "TC(:250000)"]


# ---- the parser and the store ----

def record(minute: float, **value) -> dict:
    return {"metric_stream_name": "s", "account_id": "123456789012", "region": "us-east-1",
            "namespace": "AWS/SageMaker", "metric_name": "Invocations",
            "dimensions": {"EndpointName": "ep", "VariantName": "AllTraffic"}, "timestamp": int(minute * 1000),
            "value": {"max": 1.0, "min": 1.0, "sum": 3.0, "count": 3.0, **value}, "unit": "None"}


def test_parse_reads_plain_and_gzip_objects_and_counts_bad_lines():
    lines = json.dumps(record(120, p99=2.0)) + "\n" + "not json\n" + json.dumps({"value": 1}) + "\n\n"
    for body in (lines.encode(), gzip.compress(lines.encode())):
        updates, invalid, size = parse(body)
        assert invalid == 2 and size == len(lines.encode())
        [u] = updates
        assert u.minute == 120 and u.account == "123456789012" and u.metric == "Invocations"
        assert u.dimensions == frozenset({("EndpointName", "ep"), ("VariantName", "AllTraffic")})
        assert u.values == {"max": 1.0, "min": 1.0, "sum": 3.0, "count": 3.0, "p99": 2.0}
    assert parse(b"\x1f\x8b broken gzip") == ([], 1, 0)


def test_stat_names_match_however_they_are_spelled():
    assert stat_key("TC(:250000)") == stat_key("TC(:250000.0)") == "TC(:250000)"
    assert stat_key("p99.0") == stat_key("p99") and stat_key("Sum") == "sum" and stat_key("SampleCount") == "count"


def test_store_counts_each_minute_once_and_flags_late_updates():
    store = Store(window=600)
    first = parse(json.dumps(record(600)).encode())[0][0]
    assert store.add(first) == "new"
    assert store.add(first) == "duplicate"              # at-least-once delivery: not counted twice
    store.counted_until = 660                            # the poller counted up to 660
    assert store.add(parse(json.dumps(record(540)).encode())[0][0]) == "late"
    assert store.add(parse(json.dumps(record(660)).encode())[0][0]) == "new"
    assert dict(store.results) == {"new": 2, "duplicate": 1, "late": 1}
    # billed: 1 update each (no additional statistics) for everything received except duplicates
    assert store.billed == 3
    with_stats = Update("1", "ns", "m", frozenset(), 0, {"sum": 1, "count": 1, "min": 1, "max": 1,
                                                         **{f"p{i}": 1 for i in range(6)}})
    assert with_stats.billed == 3                        # 1 + one per started set of 5 additional statistics


# ---- through the emulator ----

@pytest.fixture
def aws(moto):
    moto.reset()
    s3 = client(moto.url, "s3")
    s3.create_bucket(Bucket=BUCKET)
    client(moto.url, "firehose").create_delivery_stream(
        DeliveryStreamName="metrics", DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={"RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{BUCKET}", "Prefix": PREFIX,
                                            "BufferingHints": {"IntervalInSeconds": 60, "SizeInMBs": 5}})
    client(moto.url, "cloudwatch").put_metric_stream(
        Name="sagemaker", FirehoseArn="arn:aws:firehose:us-east-1:123456789012:deliverystream/metrics",
        RoleArn=ROLE, OutputFormat="json",
        IncludeFilters=[{"Namespace": "AWS/SageMaker"}, {"Namespace": "/aws/sagemaker/Endpoints"}],
        StatisticsConfigurations=[{"IncludeMetrics": [{"Namespace": "AWS/SageMaker", "MetricName": m}
                                                      for m in ("ModelLatency", "OverheadLatency")],
                                   "AdditionalStatistics": STATS}])
    return moto.url


def stream_poller(url: str, clock, bucket: str = BUCKET, prefix: str = PREFIX,
                  statistics: tuple = ("p50", "p99")) -> Poller:
    aws = Aws(Target("us-east-1", url, metric_stream=MetricStream(bucket, prefix)), Stats(), max_attempts=2,
              timeout=5)
    return Poller(aws, Inventory(aws, clock=clock), PriceBook.load(), Health(), delay=120,
                  statistics=list(statistics), clock=clock, idle_poll_interval=60)


def start(url: str, bucket: str = BUCKET) -> tuple[float, Clock, Poller]:
    """Endpoint ep, a minute t0 twenty minutes ago, and a stream poller whose first cycle will settle up to t0."""
    create_endpoint(url, "ep")
    t0 = (int(time.time()) // 60) * 60 - 1200
    clock = Clock(t0 + 120)
    return t0, clock, stream_poller(url, clock, bucket)


def pump() -> int:
    from mlscope.demo import streams
    return streams.pump()


def traffic(url: str, t0: float) -> None:
    """Two minutes of known traffic on ep/AllTraffic (latencies in microseconds, as SageMaker publishes them)."""
    put(url, "ep", "Invocations", t0 + 10, 10)
    put(url, "ep", "Invocation5XXErrors", t0 + 11, 1)
    put_latencies(url, "ep", t0 + 12, [100_000, 200_000, 300_000], [5, 4, 1])
    put(url, "ep", "Invocations", t0 + 70, 20)
    put_latencies(url, "ep", t0 + 72, [50_000, 400_000], [18, 2])


SERIES = ("sagemaker_invocations_total", "sagemaker_invocation_5xx_errors_total", "sagemaker_model_latency_seconds",
          "sagemaker_model_latency_seconds_sum", "sagemaker_model_latency_seconds_count",
          "sagemaker_model_latency_within_objective_total")


@pytest.mark.integration
def test_stream_gives_the_hand_computed_series_and_the_same_as_polling(aws):
    create_endpoint(aws, "ep", tags={"mlscope:latency-objective-seconds": "0.25"})
    t0 = (int(time.time()) // 60) * 60 - 1200
    clock = Clock(t0 + 120)                              # settled end = t0: the first cycle sets watermarks
    streamed, polled = stream_poller(aws, clock), make_poller(aws, clock, statistics=("p50", "p99"))
    assert streamed.run_cycle() and polled.run_cycle()
    traffic(aws, t0)
    assert pump() == 2 + 1 + 2                          # minutes of Invocations, 5XX errors, ModelLatency
    assert pump() == 0                                   # each minute is streamed once
    clock.now = t0 + 240                                 # settled end = t0 + 120: both minutes
    assert streamed.run_cycle() and polled.run_cycle()
    text = exposition(streamed)
    ep = {"endpoint": "ep", "variant": "AllTraffic"}
    assert value(text, "sagemaker_invocations_total", **ep) == 30
    assert value(text, "sagemaker_invocation_5xx_errors_total", **ep) == 1
    assert value(text, "sagemaker_model_latency_seconds_sum", **ep) == pytest.approx(1.6 + 1.7)
    assert value(text, "sagemaker_model_latency_seconds_count", **ep) == 30
    assert value(text, "sagemaker_model_latency_within_objective_total", **ep) == 9 + 18  # <= 250 ms
    # the newest minute (t0+60): 18 of 20 at 50 ms, 2 at 400 ms -> p50 50 ms, p99 400 ms (nearest rank)
    assert value(text, "sagemaker_model_latency_seconds", quantile="0.5", **ep) == pytest.approx(0.05)
    assert value(text, "sagemaker_model_latency_seconds", quantile="0.99", **ep) == pytest.approx(0.4)
    assert value(text, "sagemaker_variant_hourly_list_cost_dollars", **ep) > 0  # inventory and cost as polling
    polled_samples, streamed_samples = samples(exposition(polled)), samples(text)
    for name in SERIES:
        assert streamed_samples[name] == polled_samples[name], name
    assert value(text, "mlscope_metric_stream_updates_total", result="new") == 5
    assert value(text, "mlscope_cloudwatch_requests_total", api="GetObject") >= 1
    assert "GetMetricData" not in {lbls["api"] for lbls, _ in samples(text)["mlscope_cloudwatch_requests_total"]}
    # modelled: 5 base updates + 2 ModelLatency minutes with 3 additional statistics (one more update each)
    assert streamed.stream.store.billed == 5 + 2
    assert value(text, "mlscope_metric_stream_cost_dollars_per_month", part="metric_updates") > 0
    assert promtool_check_metrics(text).returncode == 0


@pytest.mark.integration
def test_duplicate_delivery_is_counted_once_and_bad_objects_are_counted(aws):
    t0, clock, poller = start(aws)
    assert poller.run_cycle()
    traffic(aws, t0)
    pump()
    s3 = client(aws, "s3")
    [key] = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    s3.copy_object(Bucket=BUCKET, Key=key + "~again", CopySource={"Bucket": BUCKET, "Key": key})  # redelivered
    s3.put_object(Bucket=BUCKET, Key=key + "~broken", Body=b"{not json\n[1, 2]\n")
    clock.now = t0 + 240
    assert poller.run_cycle()
    text = exposition(poller)
    assert value(text, "sagemaker_invocations_total", endpoint="ep") == 30
    assert value(text, "mlscope_metric_stream_updates_total", result="new") == 5
    assert value(text, "mlscope_metric_stream_updates_total", result="duplicate") == 5
    assert value(text, "mlscope_metric_stream_invalid_records_total") == 2
    assert value(text, "mlscope_metric_stream_objects_total") == 3
    assert value(text, "mlscope_metric_stream_up") == 1


@pytest.mark.integration
def test_missing_bucket_is_an_error_metric_and_one_log_line(aws, caplog):
    t0, clock, poller = start(aws, bucket="no-such-bucket")
    with caplog.at_level(logging.INFO, logger="mlscope.sagemaker.stream"):
        assert not poller.run_cycle()
        clock.now += 60
        assert not poller.run_cycle()
    text = exposition(poller)
    assert value(text, "mlscope_metric_stream_up") == 0
    assert value(text, "mlscope_cloudwatch_errors_total", api="ListObjectsV2", code="NoSuchBucket") == 2
    assert value(text, "sagemaker_variant_instances", endpoint="ep") == 1   # inventory still served
    lines = [r for r in caplog.records if r.name == "mlscope.sagemaker.stream"]
    assert len(lines) == 1 and "no-such-bucket" in lines[0].getMessage() and not lines[0].exc_info
    # the bucket appears: counting resumes, nothing from the failed cycles is lost or added twice
    client(aws, "s3").create_bucket(Bucket="no-such-bucket")
    clock.now += 60
    assert poller.run_cycle()
    assert value(exposition(poller), "mlscope_metric_stream_up") == 1


@pytest.mark.integration
def test_the_stream_reader_needs_only_the_documented_s3_actions(aws):
    t0, clock, poller = start(aws)
    traffic(aws, t0)
    pump()
    performed: set[str] = set()
    iam = {"ListObjectsV2": "s3:ListBucket", "GetObject": "s3:GetObject"}
    poller.aws.client("s3").meta.events.register(
        "before-call", lambda model, **_: performed.add(iam.get(model.name, f"s3:{model.name}")))
    assert poller.run_cycle()
    assert performed == {"s3:ListBucket", "s3:GetObject"}
    assert performed <= load_policy()


@pytest.mark.integration
def test_emulator_metric_stream_api_shapes_and_errors(aws):
    cw = client(aws, "cloudwatch")
    got = cw.get_metric_stream(Name="sagemaker")
    assert got["State"] == "running" and got["OutputFormat"] == "json"
    assert got["StatisticsConfigurations"][0]["AdditionalStatistics"] == STATS
    assert [e["Name"] for e in cw.list_metric_streams()["Entries"]] == ["sagemaker"]
    base = dict(Name="x", FirehoseArn="arn:aws:firehose:us-east-1:123456789012:deliverystream/metrics",
                RoleArn=ROLE)
    for kwargs, code in [
        (dict(OutputFormat="opentelemetry1.0"), "InvalidParameterValue"),
        (dict(OutputFormat="json", IncludeFilters=[{"Namespace": "a"}], ExcludeFilters=[{"Namespace": "b"}]),
         "InvalidParameterCombination"),
        (dict(OutputFormat="json", StatisticsConfigurations=[{"IncludeMetrics": [
            {"Namespace": "AWS/SageMaker", "MetricName": "ModelLatency"}], "AdditionalStatistics": ["p999x"]}]),
         "InvalidParameterValue")]:
        with pytest.raises(cw.exceptions.ClientError) as err:
            cw.put_metric_stream(**base, **kwargs)
        assert err.value.response["Error"]["Code"] == code
    with pytest.raises(cw.exceptions.ClientError) as err:
        cw.get_metric_stream(Name="nope")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    cw.delete_metric_stream(Name="sagemaker")
    assert cw.list_metric_streams()["Entries"] == []


@pytest.mark.parametrize("text, needle", [
    ("regions: [us-east-1]\nmetric_stream: {bucket: Not_A_Bucket}\n", "bucket must be an S3 bucket name"),
    ("regions: [us-east-1]\nmetric_stream: {prefix: cw/}\n", "metric_stream must be a mapping with bucket"),
    ("regions: [us-east-1]\nmetric_stream: {bucket: ok-bucket, region: x}\n", "unknown key 'region'"),
    ("regions: [{region: us-east-1, metric_stream: {bucket: ab}}]\n", "bucket must be an S3 bucket name"),
])
def test_bad_metric_stream_config_exits_2_with_one_line(tmp_path, text, needle):
    config = tmp_path / "sagemaker.yml"
    config.write_text(text)
    assert_one_line_error(run_cli("sagemaker-exporter", "--config", str(config)), needle)


@pytest.mark.integration
def test_demo_traffic_with_metric_stream_feeds_the_exporter_like_polling(aws):
    from mlscope.demo import traffic
    assert traffic.main(["--aws-endpoint", aws, "--once", "--endpoints", "2", "--other-kinds", "false",
                         "--second-account", "false", "--backfill", "15m", "--metric-stream"]) == 0
    assert pump() > 0
    now = (int(time.time()) // 60) * 60
    clock = Clock(now - 600)
    streamed = stream_poller(aws, clock, traffic.STREAM_BUCKET, traffic.STREAM_PREFIX, ("p50", "p95", "p99"))
    polled = make_poller(aws, clock, statistics=("p50", "p95", "p99"))
    assert streamed.run_cycle() and polled.run_cycle()
    clock.now = now
    assert streamed.run_cycle() and polled.run_cycle()
    got, want = samples(exposition(streamed)), samples(exposition(polled))
    assert sum(v for _, v in got["sagemaker_invocations_total"]) > 0
    for name in ("sagemaker_invocations_total", "sagemaker_model_latency_seconds_count",
                 "sagemaker_model_latency_seconds"):
        assert sorted(got[name], key=str) == sorted(want[name], key=str), name


def test_metric_stream_per_region_or_for_every_region():
    from mlscope.sagemaker import config as sc
    from mlscope.settings import Config
    c = Config({"regions": sc.regions(["us-east-1", {"region": "eu-west-1",
                                                      "metric_stream": {"bucket": "eu-stream", "prefix": "cw/"}}]),
                "role_arn": None, "external_id": None, "endpoint_url": None, "accounts": [], "linked_accounts": False,
                "metric_stream": sc.metric_stream({"bucket": "all-streams"})})
    assert [(t.region, t.metric_stream) for t in sc.targets(c, environ={})] == [
        ("us-east-1", MetricStream("all-streams", "")), ("eu-west-1", MetricStream("eu-stream", "cw/"))]
    c.metric_stream = None
    assert [t.metric_stream for t in sc.targets(c, environ={})] == [None, MetricStream("eu-stream", "cw/")]


def test_store_answers_like_get_metric_data_over_longer_periods():
    from mlscope.sagemaker.cloudwatch import Query
    store = Store()
    dims = (("EndpointName", "ep"), ("VariantName", "AllTraffic"))
    for minute, (total, count, p99) in {600: (30, 3, 20), 660: (10, 1, 10), 780: (50, 2, 40)}.items():
        store.add(Update("1", "AWS/SageMaker", "ModelLatency", frozenset(dims), minute,
                         {"sum": total, "count": count, "min": 1, "max": p99, "p99": p99}))

    def ask(stat: str, start: float, end: float, period: float) -> list:
        query = Query("k", "AWS/SageMaker", "ModelLatency", stat, dims)
        return store.fetch("1", [query], start, end, period).values["k"]

    # 600-780: sum 40 over 4 samples; 780-960: 50 over 2 (Average = Sum / SampleCount, as CloudWatch)
    assert ask("Average", 600, 960, 180) == [(600, 10.0), (780, 25.0)]
    assert ask("Sum", 600, 960, 180) == [(600, 40), (780, 50)]
    assert ask("Maximum", 600, 960, 180) == [(600, 20), (780, 40)]
    assert ask("p99", 600, 720, 60) == [(600, 20), (660, 10)]
    assert ask("p99", 600, 960, 180) == [(780, 40)]     # two minutes cannot make one percentile
    assert store.fetch("2", [Query("k", "AWS/SageMaker", "ModelLatency", "Sum", dims)], 600, 960, 60).values == {
        "k": []}                                         # another account's data is not this one's
