"""GetMetricStatistics for metrics asked for several statistics (statistics_api: auto) against GetMetricData only:
the same known traffic gives the same exported numbers, the billed units counted are the requests made, and
throttled or over-the-cap requests lose nothing.
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from helpers import value
from sagemaker_fixtures import aws_env, moto  # noqa: F401 (autouse: test credentials; one emulator per module)
from sagemaker_fixtures import (INSTANCE_NS, Clock, FaultProxy, base_time, client, create_endpoint,
                                exposition, make_poller, put)

from mlscope.sagemaker.cloudwatch import Query
from mlscope.sagemaker.metric_statistics import RateLimiter, datapoints, plan, request_params
from mlscope.sagemaker.poller import Poller

DIMS = (("EndpointName", "ep"), ("VariantName", "AllTraffic"))


def _q(series: str, metric: str, stat: str, kind: str = "latency_counters", dims=DIMS) -> Query:
    return Query(("ep", "AllTraffic", series), "AWS/SageMaker", metric, stat, dims, kind)


def test_plan_groups_two_or_more_statistics_of_one_metric_and_keeps_the_rest_on_get_metric_data():
    sums = [_q("model_latency_sum", "ModelLatency", "Sum"), _q("model_latency_count", "ModelLatency", "SampleCount")]
    pcts = [_q(f"p{p}", "ModelLatency", f"p{p}", "percentiles") for p in (50, 95, 99.9)]
    single = [_q("invocations", "Invocations", "Sum", "counts"),
              _q("within", "ModelLatency", "TC(:500000)", "latency_objective"),          # not a percentile
              _q("ovh_p50", "OverheadLatency", "p50", "percentiles")]                    # one statistic only
    other_variant = [_q("v2_sum", "ModelLatency", "Sum", dims=(("EndpointName", "ep"), ("VariantName", "v2")))]
    linked = [Query(("ep", "AllTraffic", s), "AWS/SageMaker", "ModelLatency", s, DIMS, "latency_counters",
                    account_id="111122223333") for s in ("Sum", "SampleCount")]   # AccountId: GetMetricData only
    requests, rest, overflow = plan(sums + pcts + single + other_variant + linked, 0, 600, 60, budget=10)
    assert requests == [sums, pcts] and overflow == 0
    assert sorted(map(str, rest)) == sorted(map(str, single + other_variant + linked))
    params = request_params(pcts, 0, 600, 60)
    assert params["ExtendedStatistics"] == ["p50", "p95", "p99.9"] and "Statistics" not in params
    assert request_params(sums, 0, 600, 60)["Statistics"] == ["Sum", "SampleCount"]
    # the budget: the first request fits, the second goes to GetMetricData
    requests, rest, overflow = plan(sums + pcts, 0, 600, 60, budget=1)
    assert requests == [sums] and rest == pcts and overflow == 1
    # more than 1,440 datapoints in one request is an error in CloudWatch: GetMetricData takes the window
    assert plan(sums, 0, 1441 * 60, 60, budget=10) == ([], sums, 0)
    assert plan(sums, 0, 1440 * 60, 60, budget=10)[0] == [sums]
    assert plan(sums, 0, 600, 60, budget=None) == ([], sums, 0)     # statistics_api: get_metric_data


def test_datapoints_are_sorted_and_split_by_statistic():
    t = lambda s: dt.datetime.fromtimestamp(s, dt.timezone.utc)  # noqa: E731
    pcts = [_q("p50", "ModelLatency", "p50", "percentiles"), _q("p99", "ModelLatency", "p99", "percentiles")]
    answer = {"Datapoints": [{"Timestamp": t(120), "ExtendedStatistics": {"p50": 5.0, "p99": 9.0}},
                             {"Timestamp": t(60), "ExtendedStatistics": {"p50": 1.0}}]}
    assert datapoints(pcts, answer) == {pcts[0].key: [(60.0, 1.0), (120.0, 5.0)], pcts[1].key: [(120.0, 9.0)]}


def test_rate_limiter_spaces_requests_evenly():
    now, slept = [100.0], []

    def sleep(s):
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.wait()
    assert slept == [0.25, 0.25, 0.25, 0.25]          # the first at once, then one every 1/4 s
    now[0] += 10                                      # idle for a while: no burst is saved up
    limiter.wait()
    limiter.wait()
    assert slept[-1] == 0.25 and len(slept) == 5


@pytest.fixture
def aws(moto):
    moto.reset()
    return moto.url


def _traffic(url: str, start: float) -> None:
    """Two settled periods of known traffic on ep (ml.m5.xlarge: 4 vCPUs). Period i has 10 requests of
    10, 20, ..., 100 ms + i ms (ModelLatency; OverheadLatency a tenth of it): p50 = the 5th, p99 = the 10th."""
    for i in range(2):
        p = start + 60 * i
        put(url, "ep", "Invocations", p + 5, 10 + i)
        put(url, "ep", "Invocation5XXErrors", p + 6, 1)
        client(url, "cloudwatch").put_metric_data(Namespace="AWS/SageMaker", MetricData=[{
            "MetricName": name, "Timestamp": dt.datetime.fromtimestamp(p + 7, dt.timezone.utc),
            "Dimensions": [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "AllTraffic"}],
            "Values": [(v * 10_000 + i * 1000) / scale for v in range(1, 11)], "Counts": [1.0] * 10}
            for name, scale in (("ModelLatency", 1), ("OverheadLatency", 10))])
        put(url, "ep", "CPUUtilization", p + 8, 200, namespace=INSTANCE_NS)


def _export(url: str, mode: str, start: float, **kw) -> tuple[str, Poller, bool]:
    clock = Clock(start + 120)                      # delay 120: end = start, only sets the watermarks
    poller = make_poller(url, clock, statistics=("p50", "p99"), statistics_api=mode, **kw)
    assert poller.run_cycle()
    clock.now = start + 240                         # end = start + 120: both periods settled
    ok = poller.run_cycle()
    return exposition(poller), poller, ok


@pytest.mark.integration
def test_both_statistics_apis_export_the_same_counters_sums_and_percentiles(aws):
    create_endpoint(aws, "ep", [("AllTraffic", "ml.m5.xlarge", 1)])
    start = base_time()
    _traffic(aws, start)
    texts = {}
    for mode in ("auto", "get_metric_data"):
        text, _, ok = _export(aws, mode, start)
        assert ok
        texts[mode] = text
        assert value(text, "sagemaker_invocations_total", endpoint="ep") == 21
        assert value(text, "sagemaker_invocation_5xx_errors_total", endpoint="ep") == 2
        # ModelLatency: 2 x (550 ms + 10 x i ms) = 1.1 + 0.01 s; 20 samples
        assert value(text, "sagemaker_model_latency_seconds_sum", endpoint="ep") == pytest.approx(1.11)
        assert value(text, "sagemaker_model_latency_seconds_count", endpoint="ep") == 20
        assert value(text, "sagemaker_overhead_latency_seconds_sum", endpoint="ep") == pytest.approx(0.111)
        assert value(text, "sagemaker_overhead_latency_seconds_count", endpoint="ep") == 20
        # the newest period (i = 1): 10..100 ms + 1 ms
        assert value(text, "sagemaker_model_latency_seconds", endpoint="ep", quantile="0.5") == pytest.approx(0.051)
        assert value(text, "sagemaker_model_latency_seconds", endpoint="ep", quantile="0.99") == pytest.approx(0.101)
        assert value(text, "sagemaker_overhead_latency_seconds", endpoint="ep", quantile="0.99") == \
            pytest.approx(0.0101)
        assert value(text, "sagemaker_instance_cpu_utilization_ratio", endpoint="ep") == pytest.approx(0.5)
    auto, gmd = texts["auto"], texts["get_metric_data"]
    # billed units (the first cycle asked for no counter: every watermark started at its end)
    assert value(gmd, "mlscope_cloudwatch_metrics_requested_total", kind="latency_counters") == 4   # 2 metrics x 2
    assert value(auto, "mlscope_cloudwatch_metrics_requested_total", kind="latency_counters") == 2  # 1 request each
    assert value(gmd, "mlscope_cloudwatch_metrics_requested_total", kind="percentiles") == 4        # 2 x p50, p99
    assert value(auto, "mlscope_cloudwatch_metrics_requested_total", kind="percentiles") == 2
    for text in (auto, gmd):
        assert value(text, "mlscope_cloudwatch_metrics_requested_total", kind="counts") == 4
        # 3 per cycle: averaged over idle_poll_interval in the first (no traffic seen yet), then the newest window
        assert value(text, "mlscope_cloudwatch_metrics_requested_total", kind="utilization") == 6
    assert value(auto, "mlscope_cloudwatch_requests_total", api="GetMetricStatistics") == 4
    assert 'api="GetMetricStatistics"' not in gmd


@pytest.mark.integration
def test_requests_over_the_rate_cap_go_to_get_metric_data_and_give_the_same_numbers(aws, caplog):
    create_endpoint(aws, "ep", [("AllTraffic", "ml.m5.xlarge", 1)])
    start = base_time()
    _traffic(aws, start)
    # 1 request per 60 s poll: ModelLatency {Sum, SampleCount} by GetMetricStatistics, the rest by GetMetricData
    with caplog.at_level(logging.WARNING, logger="mlscope.sagemaker.cycle"):
        text, _, ok = _export(aws, "auto", start, max_statistics_per_second=1 / 60)
    assert ok
    # OverheadLatency {Sum, SampleCount}, then {p50, p99} of both latencies
    assert "3 GetMetricStatistics requests did not fit in the poll interval" in caplog.text
    assert value(text, "mlscope_cloudwatch_requests_total", api="GetMetricStatistics") == 1
    assert value(text, "mlscope_cloudwatch_metrics_requested_total", kind="latency_counters") == 1 + 2
    assert value(text, "mlscope_cloudwatch_metrics_requested_total", kind="percentiles") == 4
    assert value(text, "sagemaker_model_latency_seconds_sum", endpoint="ep") == pytest.approx(1.11)
    assert value(text, "sagemaker_overhead_latency_seconds_sum", endpoint="ep") == pytest.approx(0.111)
    assert value(text, "sagemaker_overhead_latency_seconds", endpoint="ep", quantile="0.5") == pytest.approx(0.0051)


@pytest.mark.integration
def test_throttled_get_metric_statistics_loses_nothing_and_catches_up_exactly(aws):
    create_endpoint(aws, "ep", [("AllTraffic", "ml.m5.xlarge", 1)])
    proxy = FaultProxy(aws)
    try:
        start = base_time()
        _traffic(aws, start)
        proxy.faults["GetMetricStatistics"] = "throttle"
        text, poller, ok = _export(proxy.url, "auto", start, max_attempts=2)
        assert not ok
        assert value(text, "sagemaker_invocations_total", endpoint="ep") == 21       # GetMetricData answered
        assert value(text, "sagemaker_model_latency_seconds_count", endpoint="ep") == 0   # kept for next cycle
        assert value(text, "sagemaker_data_timestamp_seconds", endpoint="ep") == start   # not advanced
        failed = value(text, "mlscope_cloudwatch_errors_total", api="GetMetricStatistics", code="Throttling")
        # each failed request was tried twice (max_attempts 2); requests not started after one failed are not made
        assert proxy.hits["GetMetricStatistics"] == 2 * failed and failed <= 2

        proxy.faults.clear()
        put(aws, "ep", "Invocations", start + 125, 4)
        put(aws, "ep", "ModelLatency", start + 126, stats={"SampleCount": 3, "Sum": 30_000, "Minimum": 1e4,
                                                             "Maximum": 1e4})
        poller.clock.now = start + 300                # end = start + 180: the failed window and one more period
        assert poller.run_cycle()
        text = exposition(poller)
        assert value(text, "sagemaker_invocations_total", endpoint="ep") == 25
        assert value(text, "sagemaker_model_latency_seconds_count", endpoint="ep") == 23
        assert value(text, "sagemaker_model_latency_seconds_sum", endpoint="ep") == pytest.approx(1.14)
        assert value(text, "sagemaker_overhead_latency_seconds_count", endpoint="ep") == 20
        assert value(text, "sagemaker_data_timestamp_seconds", endpoint="ep") == start + 180
    finally:
        proxy.stop()
