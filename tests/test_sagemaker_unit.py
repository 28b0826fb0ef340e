"""Pure logic of the SageMaker exporter: config, alignment, batching, CloudWatch answers, prices."""

from __future__ import annotations

import datetime as dt

import pytest
from botocore.stub import ANY, Stubber

from mlscope.health import Health
from mlscope.sagemaker import config as sc
from mlscope.sagemaker.aws import Aws, Stats, describe_error
from mlscope.sagemaker.cloudwatch import Query, align_down, batches, fetch, settled_end
from mlscope.sagemaker.config import Target
from mlscope.sagemaker.cost import PriceBook
from mlscope.sagemaker.inventory import tag_label
from mlscope.settings import Config, SettingError, resolve


def cfg(**values) -> Config:
    return resolve([sc.Setting("config", str)] + sc.SETTINGS, {}, environ={
        **{f"MLSCOPE_{k.upper()}": str(v) for k, v in values.items()}})


def test_alignment_and_settling():
    assert align_down(125, 60) == 120
    assert settled_end(now=1000, delay=180, period=60) == 780
    assert settled_end(now=1020, delay=180, period=300) == 600
    assert [len(b) for b in batches(list(range(1001)))] == [500, 500, 1]


def test_settings_parse_and_reject():
    c = cfg(regions="us-east-1,eu-west-1", delay="3m", poll_interval="1m", statistics="p50,p99.9",
            endpoint_tags="team=ml.*,env=prod")
    assert [r["region"] for r in c.regions] == ["us-east-1", "eu-west-1"]
    assert (c.delay, c.poll_interval, c.period) == (180, 60, 60.0)
    assert [sc.quantile_label(s) for s in c.statistics] == ["0.5", "0.999"]
    assert c.endpoint_tags["team"].fullmatch("ml-infra") and not c.endpoint_tags["env"].fullmatch("dev")
    assert (c.statistics_api, c.max_get_metric_statistics_per_second) == ("auto", 100.0)
    assert cfg(statistics_api="GET_METRIC_DATA", max_get_metric_statistics_per_second="2.5").statistics_api == \
        "get_metric_data"
    for bad in [{"regions": "us east"}, {"period": "90"}, {"statistics": "avg"}, {"delay": "soon"},
                {"role_arn": "arn:aws:iam::1:user/x"}, {"endpoint_tags": "novalue"}, {"poll_interval": "0"},
                {"poll_interval": "9.9"}, {"endpoint_url": "127.0.0.1:5000"}, {"endpoint_url": "http://"},
                {"endpoint_url": "http://h:99999"}, {"statistics_api": "both"},
                {"max_get_metric_statistics_per_second": "-1"}, {"max_get_metric_statistics_per_second": "inf"}]:
        with pytest.raises(SettingError) as err:
            cfg(**bad)
        assert list(bad)[0].upper() in str(err.value)


def test_backoff_doubles_with_jitter_is_capped_and_never_below_the_interval():
    import random
    from mlscope.sagemaker.poller import backoff_delay

    class Fixed(random.Random):
        def __init__(self, r):
            super().__init__()
            self.r = r

        def random(self):
            return self.r

    assert backoff_delay(60, 0, Fixed(0.7)) == 60
    # ceiling 60 x 2^n; the wait is drawn from its upper half: [ceiling/2, ceiling]
    assert [backoff_delay(60, n, Fixed(0.0)) for n in (1, 2, 3, 4, 5, 50)] == [60, 120, 240, 300, 300, 300]
    assert [backoff_delay(60, n, Fixed(1.0)) for n in (1, 2, 3, 4, 5, 50)] == [120, 240, 480, 600, 600, 600]
    assert backoff_delay(60, 2, Fixed(0.5)) == 180
    assert backoff_delay(900, 3, Fixed(0.0)) == 900          # an interval above the cap is never shortened
    rng = random.Random(7)
    draws = {round(backoff_delay(10, 3, rng), 3) for _ in range(20)}
    assert len(draws) > 15 and all(40 <= d <= 80 for d in draws)  # jitter: pollers do not retry in lockstep


def test_targets_regions_accounts_and_names():
    c = Config({"regions": sc.regions(["us-east-1", {"region": "eu-west-1", "endpoint_url": "http://x"}]),
                "role_arn": None, "external_id": None, "endpoint_url": "http://default", "linked_accounts": False,
                "accounts": sc.accounts([{"role_arn": "arn:aws:iam::111122223333:role/r", "external_id": "e",
                                          "regions": ["us-west-2"]}])})
    ts = sc.targets(c, environ={})
    assert [(t.name, t.endpoint_url) for t in ts] == [("sagemaker/111122223333/us-west-2", "http://default")]
    c.accounts = []
    assert [(t.name, t.endpoint_url) for t in sc.targets(c, environ={})] == [
        ("sagemaker/us-east-1", "http://default"), ("sagemaker/eu-west-1", "http://x")]
    c.regions = []
    assert [t.region for t in sc.targets(c, environ={"AWS_REGION": "ap-south-1"})] == ["ap-south-1"]
    with pytest.raises(SettingError, match="regions"):
        sc.targets(c, environ={})


def test_prices_overrides_and_specs():
    book = PriceBook.load(overrides=sc.prices({"ml.m5.xlarge": 0.5, "ml.g5.xlarge": {"us-east-1": 1.0}}))
    assert book.hourly_price("ml.m5.xlarge", "eu-west-1") == 0.5
    assert book.hourly_price("ml.g5.xlarge", "us-east-1") == 1.0
    assert book.hourly_price("ml.g5.xlarge", "us-west-2") == 1.408
    assert book.hourly_price("ml.x9.huge", "us-east-1") is None
    assert book.spec("ml.g5.48xlarge").gpu == 8 and book.spec(None) is None
    with pytest.raises(ValueError):
        sc.prices({"ml.m5.xlarge": "cheap"})


def test_discounts_parse_and_the_most_specific_one_wins():
    from mlscope.sagemaker.discounts import discounts
    d = discounts({"instance_types": {"ml.g5.12xlarge": "30%", "ml.g5.*": 0.4, "ml.*": "5%"},
                   "accounts": {123456789012: "20%", "210987654321": 0}})
    assert d.rate("ml.g5.12xlarge", "123456789012") == 0.3      # exact type beats the globs and the account
    assert d.rate("ml.g5.xlarge", "123456789012") == 0.4        # the longest matching glob
    assert d.rate("ml.m5.xlarge", "123456789012") == 0.05
    assert discounts({"accounts": {"123456789012": "20%"}}).rate("ml.m5.xlarge", "123456789012") == 0.2
    assert discounts({"accounts": {"123456789012": "20%"}}).rate("ml.m5.xlarge", "999999999999") == 0
    assert discounts(None).rate("ml.m5.xlarge", "1") == 0
    for bad, needle in [({"instance_types": {"ml.g5.xlarge": "100%"}}, "less than 100%"),
                        ({"instance_types": {"ml.g5.xlarge": -0.1}}, "at least 0"),
                        ({"instance_types": {"ml.g5.xlarge": "cheap"}}, "fraction like 0.3"),
                        ({"accounts": {"12345": 0.1}}, "12-digit"), ({"regions": {}}, "unknown key 'regions'"),
                        ({"accounts": ["123456789012"]}, "mapping")]:
        with pytest.raises(ValueError, match=needle):
            discounts(bad)


def test_tag_labels_are_sanitised():
    assert tag_label("mlscope:slo") == "tag_mlscope_slo"
    assert tag_label("mlscope:latency-objective-seconds") == "tag_mlscope_latency_objective_seconds"
    assert tag_label("aws:cloudformation:stack-name") == "tag_aws_cloudformation_stack_name"


def _aws() -> tuple[Aws, Stubber]:
    aws = Aws(Target("us-east-1"), Stats(), max_attempts=1)
    import boto3
    client = boto3.client("cloudwatch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    aws._clients["cloudwatch"] = client
    aws._session = object()
    return aws, Stubber(client)


def _q(i: int) -> Query:
    return Query(("ep", f"v{i}", "invocations"), "AWS/SageMaker", "Invocations", "Sum",
                 (("EndpointName", "ep"), ("VariantName", f"v{i}")))


def _ts(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc)


def test_fetch_follows_next_token_and_counts_partial_data_and_messages():
    aws, stub = _aws()
    queries = [_q(i) for i in range(3)]
    stub.add_response("get_metric_data", {
        "MetricDataResults": [
            {"Id": "q0", "StatusCode": "PartialData", "Timestamps": [_ts(0)], "Values": [1.0]},
            {"Id": "q1", "StatusCode": "Complete", "Timestamps": [_ts(0)], "Values": [2.0],
             "Messages": [{"Code": "ArithmeticError", "Value": "odd"}]},
            {"Id": "q2", "StatusCode": "InternalError", "Timestamps": [], "Values": []}],
        "NextToken": "more"}, {"MetricDataQueries": ANY, "StartTime": ANY, "EndTime": ANY, "ScanBy": ANY})
    stub.add_response("get_metric_data", {
        "MetricDataResults": [{"Id": "q0", "StatusCode": "Complete", "Timestamps": [_ts(60)], "Values": [3.0]}],
        "Messages": [{"Code": "Note", "Value": "top-level"}]},
        {"MetricDataQueries": ANY, "StartTime": ANY, "EndTime": ANY, "ScanBy": ANY, "NextToken": "more"})
    with stub:
        result = fetch(aws, queries, 0, 120, 60)
    assert result.values[queries[0].key] == [(0.0, 1.0), (60.0, 3.0)]
    assert result.values[queries[1].key] == [(0.0, 2.0)]
    assert result.failed == {queries[2].key}             # not silently dropped: retried next cycle
    stats = aws.stats.snapshot()
    metrics, errors = stats["metrics_requested"], stats["errors"]
    assert metrics == {"counts": 6}                       # 3 queries, asked again with the NextToken
    assert errors == {("GetMetricData", "ArithmeticError"): 1, ("GetMetricData", "Note"): 1,
                      ("GetMetricData", "InternalError"): 1}


def test_fetch_splits_at_500_and_a_failed_call_fails_the_rest():
    aws, stub = _aws()
    queries = [_q(i) for i in range(1200)]
    ok = {"MetricDataResults": [{"Id": f"q{i}", "StatusCode": "Complete", "Timestamps": [], "Values": []}
                                for i in range(500)]}
    stub.add_response("get_metric_data", ok)
    stub.add_client_error("get_metric_data", "Throttling", "Rate exceeded", http_status_code=400)
    with stub:
        result = fetch(aws, queries, 0, 60, 60)
    assert len(result.values) == 500 and len(result.failed) == 700
    stats = aws.stats.snapshot()
    reqs, metrics, errors = stats["requests"], stats["metrics_requested"], stats["errors"]
    assert reqs == {"GetMetricData": 2} and metrics == {"counts": 1000} and errors == {("GetMetricData", "Throttling"): 1}


def test_error_lines_never_show_credentials():
    from botocore.exceptions import ClientError, NoCredentialsError
    text = describe_error(ClientError({"Error": {"Code": "ExpiredToken", "Message": "The token is expired"}}, "X"))
    assert text.startswith("AWS credentials missing or rejected") and "\n" not in text
    assert "NoCredentials" in describe_error(NoCredentialsError())


def test_scrape_never_calls_aws():
    from sagemaker_fixtures import exposition, make_poller
    poller = make_poller("http://127.0.0.1:9", lambda: 0.0, health=Health())
    text = exposition(poller)                     # nothing polled yet: self-metrics only, no AWS call made
    assert "mlscope_cloudwatch_metrics_requested_total" in text
    assert poller.aws.stats.snapshot()["requests"] == {}


def test_serverless_billing_rounds_the_mean_latency_up_to_the_millisecond():
    from mlscope.sagemaker.serverless import ServerlessPrices
    prices = ServerlessPrices(per_gb_second=0.00002, per_request=0.001)
    # period 0: 3 requests, 48,000 us -> mean exactly 16 ms (not rounded up to 17); period 60: mean 0.1 ms -> 1 ms
    billed = prices.bill({0: 48_000.0, 60: 200.0}, {0: 3.0, 60: 2.0}, memory_gb=4)
    assert billed.seconds == pytest.approx(3 * 0.016 + 2 * 0.001)
    assert billed.dollars == pytest.approx(0.05 * 4 * 0.00002 + 5 * 0.001)
    assert prices.bill({0: 5.0}, {0: 0.0}, 1).seconds == 0      # no requests, nothing billed



def test_provisioned_concurrency_bills_warm_copies_and_spillover_at_the_on_demand_rate():
    from mlscope.sagemaker.serverless import ServerlessPrices
    prices = ServerlessPrices(per_gb_second=0.00002, per_request=0.0, provisioned_per_gb_second=0.000005,
                              provisioned_inference_per_gb_second=0.00001)
    # period 0: 10 requests of 100 ms, 4 spilled over; period 60: 2 requests, a spill-over count above it is capped
    billed = prices.bill({0: 1_000_000.0, 60: 200_000.0}, {0: 10.0, 60: 2.0}, 2, {0: 4.0, 60: 7.0}, provisioned=3)
    assert billed.seconds == pytest.approx(1.2)
    assert billed.dollars == pytest.approx(6 * 0.1 * 2 * 0.00001 + 4 * 0.1 * 2 * 0.00002 + 2 * 0.1 * 2 * 0.00002)
    # without provisioned concurrency a spill-over count changes nothing: all on demand
    assert prices.bill({0: 1_000_000.0}, {0: 10.0}, 2, {0: 4.0}).dollars == pytest.approx(1.0 * 2 * 0.00002)
    assert prices.provisioned(3, 2, 3600) == pytest.approx(0.108)   # 3 copies x 2 GB x 1 h x $0.000005

def test_inference_component_shares_add_up_and_oversubscription_is_scaled_down():
    from mlscope.sagemaker.cost import InstanceSpec
    from mlscope.sagemaker.inventory import Component
    from mlscope.sagemaker.sharing import split
    gpu = InstanceSpec("ml.g5.12xlarge", 48, 4, 192)

    def comp(name, copies, accelerators=0.0, cores=0.0):
        return Component(name, "v", "InService", "m", copies, accelerators, cores, 1024, 0.0)

    parts = split(10.0, 1, gpu, [comp("a", 1, accelerators=1), comp("b", 2, accelerators=1)])
    assert parts == {"a": (0.25, 2.5), "b": (0.5, 5.0), "(idle)": (0.25, 2.5)}
    over = split(10.0, 1, gpu, [comp("a", 3, accelerators=2), comp("b", 1, accelerators=2)])   # 8 of 4 GPUs
    assert over == {"a": (0.75, 7.5), "b": (0.25, 2.5), "(idle)": (0.0, 0.0)}
    cpu_only = split(1.0, 2, gpu, [comp("c", 4, cores=6)])    # no accelerators reserved: by vCPUs, 24 of 96
    assert cpu_only["c"] == (0.25, 0.25) and cpu_only["(idle)"] == (0.75, 0.75)
    assert split(1.0, 1, None, [comp("a", 1, accelerators=1)]) == {}
    assert split(1.0, 0, gpu, [comp("a", 1, accelerators=1)]) == {}
