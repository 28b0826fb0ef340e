"""SageMaker exporter against a real moto server over HTTP (real boto3, real retries), with a test clock.

Known traffic in, exact numbers out. The clock is injected so no test waits for wall-clock minutes.
"""

from __future__ import annotations

import logging
import time

import pytest

from helpers import promtool_check_metrics, samples, value
from sagemaker_fixtures import aws_env, moto  # noqa: F401 (autouse: test credentials; one emulator per module)
from sagemaker_fixtures import (INSTANCE_NS, BlackHole, Clock, FaultProxy, base_time, create_endpoint,
                                exposition, load_policy, make_poller, put, put_latencies, summed)

from mlscope.health import Health


@pytest.fixture
def aws(moto):
    moto.reset()
    return moto.url


def names(text: str, metric: str, label: str = "endpoint") -> set:
    return {lbls[label] for lbls, _ in samples(text).get(metric, [])}


@pytest.mark.integration
def test_known_traffic_gives_exact_counters_latency_utilization_and_cost(aws):
    create_endpoint(aws, "ep-cpu", [("AllTraffic", "ml.m5.xlarge", 2)],
                    tags={"mlscope:slo": "0.99", "mlscope:latency-objective-seconds": "0.5", "team": "search"})
    create_endpoint(aws, "ep-gpu", [("AllTraffic", "ml.g4dn.12xlarge", 1)])
    base = base_time()
    clock = Clock(base + 600)
    health = Health()
    poller = make_poller(aws, clock, delay=120, health=health)
    assert poller.run_cycle()                       # end = base+480: only sets the watermarks
    text = exposition(poller, health=health)
    assert value(text, "sagemaker_invocations_total", endpoint="ep-cpu") == 0
    p0, p1 = base + 480, base + 540
    put(aws, "ep-cpu", "Invocations", p0 + 5, 4)
    put(aws, "ep-cpu", "Invocations", p0 + 30, 6)
    put(aws, "ep-cpu", "Invocations", p1 + 10, 5)
    put(aws, "ep-cpu", "Invocation4XXErrors", p0 + 1, 1)
    put(aws, "ep-cpu", "Invocation5XXErrors", p1 + 1, 2)
    put(aws, "ep-cpu", "InvocationModelErrors", p1 + 2, 1)
    put(aws, "ep-cpu", "ModelLatency", p0 + 3, stats={"SampleCount": 10, "Sum": 1_500_000, "Minimum": 1e4,
                                                       "Maximum": 4e5})
    put(aws, "ep-cpu", "OverheadLatency", p0 + 3, stats={"SampleCount": 10, "Sum": 20_000, "Minimum": 1e3,
                                                          "Maximum": 3e3})
    put(aws, "ep-cpu", "CPUUtilization", p1 + 5, 200, namespace=INSTANCE_NS)          # 4 vCPUs -> 0.5
    put(aws, "ep-cpu", "MemoryUtilization", p1 + 5, 40, namespace=INSTANCE_NS)
    put(aws, "ep-cpu", "DiskUtilization", p1 + 5, 10, namespace=INSTANCE_NS)
    put(aws, "ep-gpu", "GPUUtilization", p1 + 5, 300, namespace=INSTANCE_NS)           # 4 GPUs -> 0.75
    put(aws, "ep-gpu", "GPUMemoryUtilization", p1 + 5, 100, namespace=INSTANCE_NS)     # 4 GPUs -> 0.25
    put(aws, "ep-gpu", "CPUUtilization", p1 + 5, 2400, namespace=INSTANCE_NS)          # 48 vCPUs -> 0.5

    clock.now = base + 660                          # end = p1: p0 settled, p1 not yet
    assert poller.run_cycle()
    text = exposition(poller)
    assert value(text, "sagemaker_invocations_total", endpoint="ep-cpu") == 10
    assert value(text, "sagemaker_invocation_4xx_errors_total", endpoint="ep-cpu") == 1
    assert value(text, "sagemaker_invocation_5xx_errors_total", endpoint="ep-cpu") == 0
    assert value(text, "sagemaker_model_latency_seconds_sum", endpoint="ep-cpu") == pytest.approx(1.5)
    assert value(text, "sagemaker_model_latency_seconds_count", endpoint="ep-cpu") == 10
    assert value(text, "sagemaker_overhead_latency_seconds_sum", endpoint="ep-cpu") == pytest.approx(0.02)
    assert value(text, "sagemaker_data_timestamp_seconds", endpoint="ep-cpu") == p1

    put(aws, "ep-cpu", "Invocations", p1 + 50, 3)   # late, but inside the delay window: counted once
    clock.now = base + 720                          # end = base+600: p1 settled
    assert poller.run_cycle()
    text = exposition(poller)
    assert value(text, "sagemaker_invocations_total", endpoint="ep-cpu") == 18
    assert value(text, "sagemaker_invocation_5xx_errors_total", endpoint="ep-cpu") == 2
    assert value(text, "sagemaker_invocation_model_errors_total", endpoint="ep-cpu") == 1
    assert value(text, "sagemaker_instance_cpu_utilization_ratio", endpoint="ep-cpu") == pytest.approx(0.5)
    assert value(text, "sagemaker_instance_memory_utilization_ratio", endpoint="ep-cpu") == pytest.approx(0.4)
    assert value(text, "sagemaker_instance_disk_utilization_ratio", endpoint="ep-cpu") == pytest.approx(0.1)
    assert value(text, "sagemaker_instance_gpu_utilization_ratio", endpoint="ep-gpu") == pytest.approx(0.75)
    assert value(text, "sagemaker_instance_gpu_memory_utilization_ratio", endpoint="ep-gpu") == pytest.approx(0.25)
    assert value(text, "sagemaker_instance_cpu_utilization_ratio", endpoint="ep-gpu") == pytest.approx(0.5)
    assert "sagemaker_instance_gpu_utilization_ratio" not in {n for n, s in samples(text).items()
                                                              if any(l.get("endpoint") == "ep-cpu" for l, _ in s)}
    # cost = list price x current instances (us-east-1: m5.xlarge $0.23, g4dn.12xlarge $4.89)
    assert value(text, "sagemaker_variant_hourly_cost_dollars", endpoint="ep-cpu",
                 instance_type="ml.m5.xlarge") == pytest.approx(0.46)
    assert value(text, "sagemaker_variant_hourly_cost_dollars", endpoint="ep-gpu") == pytest.approx(4.89)
    assert value(text, "sagemaker_variant_instances", endpoint="ep-cpu") == 2
    assert value(text, "sagemaker_variant_desired_instances", endpoint="ep-cpu") == 2
    info = value(text, "sagemaker_endpoint_info", endpoint="ep-cpu", status="InService", tag_mlscope_slo="0.99",
                 tag_mlscope_latency_objective_seconds="0.5", tag_team="search")
    assert info == 1
    assert value(text, "sagemaker_variant_info", endpoint="ep-gpu", instance_type="ml.g4dn.12xlarge") == 1
    # tags only on sagemaker_endpoint_info
    for name, series in samples(text).items():
        if name != "sagemaker_endpoint_info":
            assert not any(k.startswith("tag_") for lbls, _ in series for k in lbls), name

    put(aws, "ep-cpu", "Invocations", p0 + 40, 100)  # too late: p0 settled two cycles ago
    clock.now = base + 780
    assert poller.run_cycle()
    clock.now = base + 790                           # same settled end: nothing added twice
    assert poller.run_cycle()
    text = exposition(poller)
    assert value(text, "sagemaker_invocations_total", endpoint="ep-cpu") == 18
    # no traffic in the newest settled period: the gauges for it go away, counters stay
    assert "sagemaker_instance_cpu_utilization_ratio" not in samples(text)
    assert promtool_check_metrics(text).returncode == 0, promtool_check_metrics(text).stderr


def test_restart_does_not_double_count(aws):
    create_endpoint(aws, "ep", [("AllTraffic", "ml.m5.xlarge", 1)])
    base = base_time()
    clock = Clock(base + 600)
    first = make_poller(aws, clock)
    first.run_cycle()                                # end = base+480
    for minute in range(8, 12):
        put(aws, "ep", "Invocations", base + minute * 60 + 1, 10)
    clock.now = base + 840                           # end = base+720: periods 8..11 settled
    first.run_cycle()
    assert value(exposition(first), "sagemaker_invocations_total", endpoint="ep") == 40

    restarted = make_poller(aws, clock)              # a new process: same data in CloudWatch
    restarted.run_cycle()
    assert value(exposition(restarted), "sagemaker_invocations_total", endpoint="ep") == 0
    put(aws, "ep", "Invocations", base + 720 + 1, 7)
    clock.now = base + 900
    restarted.run_cycle()
    clock.now = base + 960
    restarted.run_cycle()
    assert value(exposition(restarted), "sagemaker_invocations_total", endpoint="ep") == 7


def test_missing_periods_add_nothing_and_new_endpoints_start_at_zero(aws):
    create_endpoint(aws, "ep", [("AllTraffic", "ml.m5.xlarge", 1)])
    base = base_time()
    clock = Clock(base + 600)
    poller = make_poller(aws, clock)
    poller.run_cycle()
    clock.now = base + 900
    poller.run_cycle()                               # five settled periods, no datapoints
    assert value(exposition(poller), "sagemaker_invocations_total", endpoint="ep") == 0
    create_endpoint(aws, "ep-new", [("AllTraffic", "ml.m5.xlarge", 1)])
    put(aws, "ep-new", "Invocations", base + 780 + 1, 3)   # after the previous cycle's end (base+780)
    clock.now = base + 960
    poller.run_cycle()
    text = exposition(poller)
    assert value(text, "sagemaker_invocations_total", endpoint="ep-new") == 3


def test_endpoint_deletion_removes_its_series_and_mid_cycle_deletion_is_harmless(aws):
    create_endpoint(aws, "keep", [("AllTraffic", "ml.m5.xlarge", 1)])
    create_endpoint(aws, "gone", [("AllTraffic", "ml.m5.xlarge", 1)])
    create_endpoint(aws, "vanishing", [("AllTraffic", "ml.m5.xlarge", 1)])
    base = base_time()
    clock = Clock(base + 600)
    health = Health()
    poller = make_poller(aws, clock, health=health)
    admin = poller.aws.client("sagemaker")
    from sagemaker_fixtures import client
    deleter = client(aws, "sagemaker")

    def delete_during_cycle(params, **_):
        if params.get("EndpointName") == "vanishing":
            deleter.delete_endpoint(EndpointName="vanishing")

    admin.meta.events.register("provide-client-params.sagemaker.DescribeEndpoint", delete_during_cycle)
    assert poller.run_cycle()
    text = exposition(poller, health=health)
    assert names(text, "sagemaker_endpoint_info") == {"keep", "gone"}
    assert value(text, "mlscope_collector_up", collector="sagemaker/us-east-1") == 1

    deleter.delete_endpoint(EndpointName="gone")
    clock.now += 60
    assert poller.run_cycle()
    text = exposition(poller)
    for name, series in samples(text).items():
        assert all(lbls.get("endpoint") != "gone" for lbls, _ in series), name
    assert names(text, "sagemaker_invocations_total") == {"keep"}


def test_serverless_variants_and_unknown_prices(aws):
    create_endpoint(aws, "sls", [("AllTraffic", "", 0)], serverless=["AllTraffic"])
    create_endpoint(aws, "old", [("AllTraffic", "ml.m4.xlarge", 3)])   # not in the price table
    create_endpoint(aws, "priced", [("AllTraffic", "ml.t2.medium", 2)])  # priced by a config override
    base = base_time()
    clock = Clock(base + 600)
    poller = make_poller(aws, clock, prices={"ml.t2.medium": {"us-east-1": 0.056}})
    poller.run_cycle()
    text = exposition(poller)
    assert value(text, "sagemaker_variant_info", endpoint="sls", instance_type="serverless") == 1
    assert names(text, "sagemaker_variant_instances") == {"old", "priced"}
    assert names(text, "sagemaker_variant_hourly_cost_dollars") == {"priced"}
    assert value(text, "sagemaker_variant_hourly_cost_dollars", endpoint="priced") == pytest.approx(0.112)
    assert value(text, "mlscope_sagemaker_price_missing_total", instance_type="ml.m4.xlarge") == 1
    assert value(text, "sagemaker_invocations_total", endpoint="sls") == 0   # serverless still has traffic


def test_more_than_500_queries_take_several_requests(aws):
    variants = [(f"v{i}", "ml.m5.xlarge", 1) for i in range(10)]
    for e in range(5):
        create_endpoint(aws, f"ep{e}", variants)          # 50 variants x 11 queries = 550 per cycle
    base = base_time()
    clock = Clock(base + 600)
    poller = make_poller(aws, clock, statistics_api="get_metric_data")   # GetMetricData's 500-query limit
    poller.run_cycle()                                     # gauges only: 50 x 3 = 150 queries, 1 request
    put(aws, "ep4", "Invocations", base + 480 + 1, 9, variant="v9")   # last query of the last batch
    text = exposition(poller)
    before = value(text, "mlscope_cloudwatch_requests_total", api="GetMetricData")
    metrics_before = summed(text, "mlscope_cloudwatch_metrics_requested_total", region="us-east-1")
    assert value(text, "mlscope_cloudwatch_metrics_requested_total", kind="utilization") == 150
    assert (before, metrics_before) == (1, 150)
    clock.now = base + 660
    assert poller.run_cycle()
    text = exposition(poller)
    assert value(text, "mlscope_cloudwatch_requests_total", api="GetMetricData") - before == 2
    assert summed(text, "mlscope_cloudwatch_metrics_requested_total", region="us-east-1") - metrics_before == 550
    assert value(text, "mlscope_cloudwatch_metrics_requested_total", kind="counts") == 200     # 4 per variant
    assert value(text, "mlscope_cloudwatch_metrics_requested_total", kind="latency_counters") == 200
    assert value(text, "sagemaker_invocations_total", endpoint="ep4", variant="v9") == 9


def test_throttling_keeps_serving_last_values_and_catches_up(aws):
    create_endpoint(aws, "ep", [("AllTraffic", "ml.m5.xlarge", 1)])
    proxy = FaultProxy(aws)
    try:
        base = base_time()
        clock = Clock(base + 600)
        health = Health()
        poller = make_poller(proxy.url, clock, health=health, max_attempts=2)
        poller.run_cycle()
        put(aws, "ep", "Invocations", base + 481, 5)
        put(aws, "ep", "CPUUtilization", base + 481, 100, namespace=INSTANCE_NS)
        clock.now = base + 660
        assert poller.run_cycle()
        text = exposition(poller, health=health)
        assert value(text, "sagemaker_invocations_total", endpoint="ep") == 5
        stamp = value(text, "sagemaker_data_timestamp_seconds", endpoint="ep")

        proxy.faults["GetMetricData"] = "throttle"
        put(aws, "ep", "Invocations", base + 541, 7)
        clock.now = base + 720
        assert not poller.run_cycle()
        assert proxy.hits["GetMetricData"] == 2              # botocore retried once (max_attempts 2)
        text = exposition(poller, health=health)
        assert value(text, "mlscope_collector_up", collector="sagemaker/us-east-1") == 0
        assert value(text, "mlscope_cloudwatch_errors_total", api="GetMetricData", code="Throttling") == 1
        assert value(text, "sagemaker_invocations_total", endpoint="ep") == 5          # last good values
        assert value(text, "sagemaker_instance_cpu_utilization_ratio", endpoint="ep") == pytest.approx(0.25)
        assert value(text, "sagemaker_data_timestamp_seconds", endpoint="ep") == stamp

        proxy.faults["GetMetricData"] = "503"
        clock.now = base + 780
        assert not poller.run_cycle()
        text = exposition(poller, health=health)
        assert value(text, "mlscope_cloudwatch_errors_total", api="GetMetricData", code="503") == 1

        proxy.faults.clear()
        put(aws, "ep", "Invocations", base + 601, 1)
        clock.now = base + 840                                # end = base+720: periods 9, 10 and 11 fetched now
        assert poller.run_cycle()
        text = exposition(poller, health=health)
        assert value(text, "mlscope_collector_up", collector="sagemaker/us-east-1") == 1
        assert value(text, "sagemaker_invocations_total", endpoint="ep") == 13
        assert value(text, "sagemaker_data_timestamp_seconds", endpoint="ep") == base + 720
    finally:
        proxy.stop()


def test_failed_cycles_back_off_exponentially_and_a_good_one_resets(aws):
    create_endpoint(aws, "ep", [("AllTraffic", "ml.m5.xlarge", 1)])
    proxy = FaultProxy(aws)
    try:
        clock = Clock(base_time() + 600)
        poller = make_poller(proxy.url, clock, poll_interval=30, max_attempts=1)
        proxy.faults["ListEndpoints"] = "503"
        waits = []
        for _ in range(6):
            assert not poller.run_cycle()
            waits.append(poller.next_delay)
        ceilings = [60, 120, 240, 480, 600, 600]
        assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings)), waits
        assert poller.failures == 6 and proxy.hits["ListEndpoints"] == 6
        proxy.faults.clear()
        assert poller.run_cycle()
        assert (poller.failures, poller.next_delay) == (0, 30)
    finally:
        proxy.stop()


def test_unreachable_region_does_not_block_another(aws):
    create_endpoint(aws, "ep", [("AllTraffic", "ml.m5.xlarge", 1)])
    hole = BlackHole()
    health = Health()
    good = make_poller(aws, time.time, health=health, poll_interval=3600)
    bad = make_poller(hole.url, time.time, region="eu-west-1", health=health, timeout=2, max_attempts=1,
                      poll_interval=3600)
    try:
        bad.start()
        good.start()
        deadline = time.monotonic() + 30
        while not health.is_up("sagemaker/us-east-1") and time.monotonic() < deadline:
            time.sleep(0.05)
        text = exposition(good, bad, health=health)
        assert value(text, "mlscope_collector_up", collector="sagemaker/us-east-1") == 1
        assert value(text, "sagemaker_variant_instances", endpoint="ep", region="us-east-1") == 1
        while "ReadTimeoutError" not in text and time.monotonic() < deadline:
            time.sleep(0.1)
            text = exposition(good, bad, health=health)
        assert value(text, "mlscope_collector_up", collector="sagemaker/eu-west-1") == 0
        assert value(text, "mlscope_cloudwatch_errors_total", region="eu-west-1", api="GetCallerIdentity",
                     code="ReadTimeoutError") == 1
    finally:
        good.stop()
        bad.stop()
        hole.stop()


def test_every_aws_operation_is_allowed_by_the_shipped_iam_policy(aws):
    create_endpoint(aws, "ep", [("AllTraffic", "ml.m5.xlarge", 1)], tags={"team": "a"})
    create_endpoint(aws, "sls", [("AllTraffic", "", 0)], serverless=["AllTraffic"])
    from sagemaker_fixtures import client
    client(aws, "sagemaker").create_inference_component(
        InferenceComponentName="ic", EndpointName="ep", VariantName="AllTraffic", RuntimeConfig={"CopyCount": 1},
        Specification={"ModelName": "model", "ComputeResourceRequirements": {"NumberOfCpuCoresRequired": 1,
                                                                            "MinMemoryRequiredInMb": 1024}})
    base = base_time()
    clock = Clock(base + 600)
    poller = make_poller(aws, clock, statistics=(), list_metrics_interval=600)
    performed: set[str] = set()
    prefixes = {"SageMaker": "sagemaker", "CloudWatch": "cloudwatch", "STS": "sts"}

    def record(model, **_):
        performed.add(f"{prefixes[model.service_model.service_id]}:{model.name}")

    for service in ("sagemaker", "cloudwatch"):
        poller.aws.client(service).meta.events.register("before-call", record)
    put(aws, "ep", "Invocations", base + 481, 1)
    put(aws, "ep", "ModelLatency", base + 481, 2000)   # Sum and SampleCount: one GetMetricStatistics request
    for now in (base + 600, base + 660, base + 720):
        clock.now = now
        assert poller.run_cycle()
    policy = load_policy()
    assert performed, "no AWS operation recorded"
    assert performed <= policy, performed - policy
    assert performed == policy, f"policy grants more than the exporter uses: {policy - performed}"


def test_role_assumption_through_sts(aws, monkeypatch):
    from mlscope.sagemaker.aws import Aws
    from mlscope.sagemaker.config import Target
    create_endpoint(aws, "ep", [("AllTraffic", "ml.m5.xlarge", 1)])
    poller = make_poller(aws, time.time)
    poller.aws = Aws(Target("us-east-1", aws, role_arn="arn:aws:iam::123456789012:role/mlscope",
                            external_id="xyz"), poller.aws.stats)
    poller.inventory.aws = poller.aws
    assert poller.aws.target.name == "sagemaker/123456789012/us-east-1"
    seen = []
    poller.aws.client("sts")  # created with the session
    poller.aws._clients["sts"].meta.events.register(
        "provide-client-params.sts.AssumeRole", lambda params, **_: seen.append(dict(params)))
    assert poller.run_cycle()
    assert seen and seen[0]["RoleArn"].endswith("role/mlscope") and seen[0]["ExternalId"] == "xyz"
    text = exposition(poller)
    assert value(text, "mlscope_cloudwatch_requests_total", api="AssumeRole") == 1
    assert value(text, "sagemaker_variant_instances", endpoint="ep") == 1


@pytest.mark.integration
def test_numeric_tags_become_gauges_and_invalid_ones_are_counted(aws, caplog):
    # Listen on the inventory's own logger: in-process CLIs run earlier in the session reconfigure the root
    # logger (handlers, level), which caplog alone does not survive in the full suite.
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    inventory_log = logging.getLogger("mlscope.sagemaker.inventory")
    saved = (inventory_log.level, inventory_log.disabled)
    inventory_log.setLevel(logging.WARNING)
    inventory_log.disabled = False
    inventory_log.addHandler(handler)
    create_endpoint(aws, "good", tags={"mlscope:slo": "0.995", "mlscope:latency-objective-seconds": "0.25",
                                       "mlscope:budget-dollars-per-hour": "16", "mlscope:budget-monthly-dollars": "9000"})
    create_endpoint(aws, "bad", tags={"mlscope:slo": "99.9", "mlscope:latency-objective-seconds": "fast",
                                      "mlscope:budget-dollars-per-hour": "-1", "mlscope:budget-monthly-dollars": "nan"})
    clock = Clock(base_time() + 600)
    poller = make_poller(aws, clock)
    assert poller.run_cycle()
    text = exposition(poller)
    assert value(text, "sagemaker_endpoint_slo_objective_ratio", endpoint="good", account="123456789012") == 0.995
    assert value(text, "sagemaker_endpoint_latency_objective_seconds", endpoint="good") == 0.25
    assert value(text, "sagemaker_endpoint_budget_dollars_per_hour", endpoint="good") == 16
    assert value(text, "sagemaker_endpoint_budget_monthly_dollars", endpoint="good") == 9000
    for metric in ("sagemaker_endpoint_slo_objective_ratio", "sagemaker_endpoint_latency_objective_seconds",
                   "sagemaker_endpoint_budget_dollars_per_hour", "sagemaker_endpoint_budget_monthly_dollars"):
        assert names(text, metric) == {"good"}, metric
    for tag in ("mlscope:slo", "mlscope:latency-objective-seconds", "mlscope:budget-dollars-per-hour",
                "mlscope:budget-monthly-dollars"):
        assert value(text, "mlscope_sagemaker_invalid_tags_total", tag=tag) == 1
    inventory_log.removeHandler(handler)
    inventory_log.setLevel(saved[0])
    inventory_log.disabled = saved[1]
    lines = [r.getMessage() for r in records if "is not" in r.getMessage()]
    assert len(lines) == 4 and "tag mlscope:slo='99.9' is not a ratio between 0 and 1" in lines[0], lines
    check = promtool_check_metrics(text)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.integration
def test_requests_within_the_latency_objective_count_once_per_settled_period(aws):
    """TC(:250000) counts ModelLatency samples <= 250 ms; quantiles default to p50, p95, p99."""
    create_endpoint(aws, "ep", tags={"mlscope:latency-objective-seconds": "0.25"})
    create_endpoint(aws, "no-objective")
    base = base_time()
    clock = Clock(base + 600)
    poller = make_poller(aws, clock, statistics=None)
    assert poller.statistics == ["p50", "p95", "p99"]
    assert poller.run_cycle()                                        # end = base+480: watermarks only
    p0, p1 = base + 480, base + 540
    # p0: 30 x 50 ms, 10 x 250 ms (on the objective: within), 10 x 400 ms -> 40 within, p50 50 ms, p95 400 ms
    put_latencies(aws, "ep", p0 + 5, [50_000.0, 250_000.0, 400_000.0], [30.0, 10.0, 10.0])
    put(aws, "ep", "Invocations", p0 + 5, 50)
    put_latencies(aws, "no-objective", p0 + 5, [50_000.0], [7.0])
    clock.now = base + 660
    assert poller.run_cycle()
    text = exposition(poller)
    assert value(text, "sagemaker_model_latency_within_objective_total", endpoint="ep") == 40
    assert value(text, "sagemaker_model_latency_seconds_count", endpoint="ep") == 50
    quantiles = {lbls["quantile"]: v for lbls, v in samples(text)["sagemaker_model_latency_seconds"]
                 if lbls["endpoint"] == "ep"}
    assert quantiles == pytest.approx({"0.5": 0.05, "0.95": 0.4, "0.99": 0.4})
    assert names(text, "sagemaker_model_latency_within_objective_total") == {"ep"}

    # p1: 5 x 100 ms, 5 x 300 ms -> 5 more; a re-poll of the same settled end adds nothing
    put_latencies(aws, "ep", p1 + 5, [100_000.0, 300_000.0], [5.0, 5.0])
    put(aws, "ep", "Invocations", p1 + 5, 10)
    clock.now = base + 720
    assert poller.run_cycle()
    clock.now = base + 730
    assert poller.run_cycle()
    text = exposition(poller)
    assert value(text, "sagemaker_model_latency_within_objective_total", endpoint="ep") == 45
    assert value(text, "sagemaker_model_latency_seconds_count", endpoint="ep") == 60
    assert value(text, "mlscope_cloudwatch_metrics_requested_total", kind="latency_objective") == 2
    check = promtool_check_metrics(text)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.integration
def test_the_same_endpoint_name_in_two_accounts_is_two_series(aws):
    """moto keeps one backend per account: credentials from AssumeRole into account B reach B's endpoints."""
    import boto3
    from mlscope.sagemaker.aws import Aws, Stats
    from mlscope.sagemaker.config import Target
    from sagemaker_fixtures import client
    other = "210987654321"
    role = f"arn:aws:iam::{other}:role/mlscope"
    creds = client(aws, "sts").assume_role(RoleArn=role, RoleSessionName="setup")["Credentials"]
    session = boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                            aws_session_token=creds["SessionToken"], region_name="us-east-1")
    create_endpoint(aws, "shared", [("AllTraffic", "ml.m5.xlarge", 1)])
    sm_b = session.client("sagemaker", endpoint_url=aws)
    sm_b.create_model(ModelName="m", ExecutionRoleArn=role, PrimaryContainer={"Image": "img"})
    sm_b.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "m", "InstanceType": "ml.m5.xlarge", "InitialInstanceCount": 3}])
    sm_b.create_endpoint(EndpointName="shared", EndpointConfigName="c")
    assert sm_b.list_endpoints()["Endpoints"][0]["EndpointName"] == "shared"

    base = base_time()
    clock = Clock(base + 600)
    ambient = make_poller(aws, clock)                                # account from GetCallerIdentity
    assumed = make_poller(aws, clock)
    assumed.aws = Aws(Target("us-east-1", aws, role_arn=role), Stats(), max_attempts=2)
    assumed.inventory.aws = assumed.aws
    assumed.account = assumed.aws.target.account                     # from the role ARN, no STS call
    for poller in (ambient, assumed):
        assert poller.run_cycle()
    put(aws, "shared", "Invocations", base + 481, 4)
    session.client("cloudwatch", endpoint_url=aws).put_metric_data(Namespace="AWS/SageMaker", MetricData=[{
        "MetricName": "Invocations", "Value": 9, "Timestamp": base + 481,
        "Dimensions": [{"Name": "EndpointName", "Value": "shared"}, {"Name": "VariantName", "Value": "AllTraffic"}]}])
    clock.now = base + 660
    for poller in (ambient, assumed):
        assert poller.run_cycle()
    text = exposition(ambient, assumed)
    assert value(text, "sagemaker_invocations_total", endpoint="shared", account="123456789012") == 4
    assert value(text, "sagemaker_invocations_total", endpoint="shared", account=other) == 9
    assert value(text, "sagemaker_variant_instances", endpoint="shared", account=other) == 3
    assert value(text, "sagemaker_variant_hourly_cost_dollars", endpoint="shared", account=other) == \
        pytest.approx(0.69)
    for name, series in samples(text).items():
        if name.startswith("sagemaker_") or name.startswith("mlscope_cloudwatch_"):
            assert all(lbls.get("account") in ("123456789012", other) for lbls, _ in series), name
    assert value(text, "mlscope_cloudwatch_requests_total", account="123456789012", api="GetCallerIdentity") == 1
    assert "GetCallerIdentity" not in {l["api"] for l, _ in samples(text)["mlscope_cloudwatch_requests_total"]
                                       if l["account"] == other}
    check = promtool_check_metrics(text)
    assert check.returncode == 0, check.stdout + check.stderr


def kinds(text: str) -> dict[str, float]:
    return {lbls["kind"]: v for lbls, v in samples(text).get("mlscope_cloudwatch_metrics_requested_total", [])}


@pytest.mark.parametrize("api", ["get_metric_data", "auto"])
def test_idle_variants_cost_one_query_a_cycle_and_catch_up_exactly_when_they_wake(aws, api):
    create_endpoint(aws, "ep", [("AllTraffic", "ml.m5.xlarge", 1)])   # 3 utilization metrics (no GPU)
    base = base_time()
    e0 = base + 480
    clock = Clock(base + 600)
    poller = make_poller(aws, clock, statistics=["p50"], idle_after=180, idle_poll_interval=600, statistics_api=api)
    # latency Sum and SampleCount: 2 metrics each of ModelLatency, OverheadLatency (GetMetricData), or 1 request
    per_metric = 2 if api == "get_metric_data" else 1
    assert poller.run_cycle()                       # end e0: watermarks; no traffic: coarse utilization (3)
    assert kinds(exposition(poller)) == {"utilization": 3}
    put(aws, "ep", "Invocations", e0 + 1, 10)
    put(aws, "ep", "Invocation5XXErrors", e0 + 1, 1)
    put(aws, "ep", "ModelLatency", e0 + 2, 20_000)
    for minute in (1, 2, 3):                         # ends e0+60 (traffic), e0+120, e0+180: still active
        clock.now = base + 600 + 60 * minute
        assert poller.run_cycle()
    text = exposition(poller)
    # 8 counters x 3 cycles; percentiles (2) and utilization (3) only for the window with traffic
    assert kinds(text) == {"utilization": 6, "counts": 12, "latency_counters": 6 * per_metric, "percentiles": 2}
    assert value(text, "sagemaker_invocations_total", endpoint="ep") == 10
    assert "sagemaker_model_latency_seconds" not in samples(text)   # no traffic in the newest window: no p50

    clock.now = base + 600 + 240                     # end e0+240: 180 s without Invocations -> idle
    assert poller.run_cycle()
    assert kinds(exposition(poller))["counts"] == 13          # Invocations only
    assert kinds(exposition(poller))["latency_counters"] == 6 * per_metric

    put(aws, "ep", "Invocations", e0 + 240 + 1, 7)            # wakes up in period e0+240
    put(aws, "ep", "Invocation5XXErrors", e0 + 240 + 1, 2)
    put(aws, "ep", "ModelLatency", e0 + 240 + 2, 30_000)
    clock.now = base + 600 + 300                     # end e0+300
    assert poller.run_cycle()
    text = exposition(poller)
    assert value(text, "sagemaker_invocations_total", endpoint="ep") == 17
    assert value(text, "sagemaker_invocation_5xx_errors_total", endpoint="ep") == 3     # held ones caught up
    assert value(text, "sagemaker_model_latency_seconds_count", endpoint="ep") == 2
    assert value(text, "sagemaker_model_latency_seconds_sum", endpoint="ep") == pytest.approx(0.05)
    assert value(text, "sagemaker_model_latency_seconds", endpoint="ep", quantile="0.5") == pytest.approx(0.03)
    assert value(text, "sagemaker_data_timestamp_seconds", endpoint="ep") == e0 + 300
    # phase 1: Invocations; phase 2: the 7 held counters, 2 percentiles, 3 utilization
    assert kinds(text) == {"utilization": 9, "counts": 17, "latency_counters": 8 * per_metric, "percentiles": 4}


def test_only_listed_metrics_are_asked_for_and_late_listed_ones_catch_up_exactly(aws):
    create_endpoint(aws, "busy", [("AllTraffic", "ml.m5.xlarge", 1)])
    create_endpoint(aws, "dormant", [("AllTraffic", "ml.m5.xlarge", 1)])
    base = base_time()
    e0 = base + 480
    put(aws, "busy", "Invocations", e0 - 600, 1)                         # listed: received in the last 3 h
    put(aws, "dormant", "CPUUtilization", e0 - 60, 100, namespace=INSTANCE_NS)
    clock = Clock(base + 600)
    poller = make_poller(aws, clock, list_metrics_interval=600, idle_poll_interval=600)
    assert poller.run_cycle()                        # listing taken; only dormant's CPU exists among the gauges
    text = exposition(poller)
    assert kinds(text) == {"utilization": 1}
    assert value(text, "mlscope_cloudwatch_requests_total", api="ListMetrics") == 3      # one per namespace
    assert value(text, "sagemaker_instance_cpu_utilization_ratio", endpoint="dormant") == pytest.approx(0.25)

    put(aws, "busy", "Invocations", e0 + 1, 5)
    put(aws, "dormant", "Invocations", e0 + 1, 3)    # appears after the listing: not asked for yet
    clock.now = base + 660
    assert poller.run_cycle()
    text = exposition(poller)
    assert value(text, "sagemaker_invocations_total", endpoint="busy") == 5
    assert value(text, "sagemaker_invocations_total", endpoint="dormant") == 0
    assert kinds(text) == {"utilization": 1, "counts": 1}   # not 8 counters x 2 variants

    clock.now = base + 1200                          # the listing is 10 minutes old: taken again
    assert poller.run_cycle()
    text = exposition(poller)
    assert value(text, "sagemaker_invocations_total", endpoint="dormant") == 3        # caught up, exactly once
    assert value(text, "sagemaker_invocations_total", endpoint="busy") == 5
    assert value(text, "mlscope_cloudwatch_requests_total", api="ListMetrics") == 6
    clock.now = base + 1260
    assert poller.run_cycle()
    assert value(exposition(poller), "sagemaker_invocations_total", endpoint="dormant") == 3

    # a new endpoint with nothing listed yet: listed again at the next poll, not 10 minutes later
    create_endpoint(aws, "new", [("AllTraffic", "ml.m5.xlarge", 1)])
    clock.now = base + 1320                          # end base+1200: "new" first seen, starts at 0
    assert poller.run_cycle()
    put(aws, "new", "Invocations", base + 1200 + 1, 6)
    clock.now = base + 1380                          # ListMetrics again (60 s after the last pass): listed now
    assert poller.run_cycle()
    text = exposition(poller)
    assert value(text, "sagemaker_invocations_total", endpoint="new") == 6
    assert value(text, "mlscope_cloudwatch_requests_total", api="ListMetrics") == 12
    clock.now = base + 1440                          # everything new is listed: no extra pass
    assert poller.run_cycle()
    assert value(exposition(poller), "mlscope_cloudwatch_requests_total", api="ListMetrics") == 12


@pytest.mark.integration
def test_discounts_apply_to_the_cost_and_the_list_price_stays_visible(aws):
    from mlscope.sagemaker.discounts import discounts
    create_endpoint(aws, "cpu", [("AllTraffic", "ml.m5.xlarge", 2)])        # $0.23 list
    create_endpoint(aws, "gpu", [("AllTraffic", "ml.g5.12xlarge", 3)])      # $7.09 list
    create_endpoint(aws, "small-gpu", [("AllTraffic", "ml.g5.xlarge", 1)])  # $1.408 list
    poller = make_poller(aws, Clock(base_time() + 600))
    poller.discounts = discounts({"instance_types": {"ml.g5.12xlarge": "35%", "ml.g5.*": 0.25},
                                  "accounts": {"123456789012": "10%"}})
    assert poller.run_cycle()
    text = exposition(poller)
    expected = {"cpu": (0.46, 0.46 * 0.9), "gpu": (21.27, 21.27 * 0.65), "small-gpu": (1.408, 1.408 * 0.75)}
    for endpoint, (listed, paid) in expected.items():
        assert value(text, "sagemaker_variant_hourly_list_cost_dollars", endpoint=endpoint) == pytest.approx(listed)
        assert value(text, "sagemaker_variant_hourly_cost_dollars", endpoint=endpoint) == pytest.approx(paid)
    check = promtool_check_metrics(text)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.integration
def test_serverless_compute_and_cost_from_mean_latency_rounded_up_to_the_millisecond(aws):
    from mlscope.sagemaker.discounts import discounts
    from mlscope.sagemaker.serverless import ServerlessPrices
    create_endpoint(aws, "sls", [("AllTraffic", "", 0)], serverless=["AllTraffic"])   # 2048 MB, concurrency 5
    base = base_time()
    p0, p1 = base + 480, base + 540
    clock = Clock(base + 600)
    poller = make_poller(aws, clock)
    poller.serverless_prices = ServerlessPrices(per_gb_second=0.00002, per_request=0.0000002)
    poller.discounts = discounts({"instance_types": {"serverless": "25%"}})
    assert poller.run_cycle()
    text = exposition(poller)
    assert value(text, "sagemaker_variant_serverless_memory_bytes", endpoint="sls") == 2048 * 1024 * 1024
    assert value(text, "sagemaker_variant_serverless_max_concurrency", endpoint="sls") == 5
    assert value(text, "sagemaker_serverless_compute_seconds_total", endpoint="sls") == 0
    put_latencies(aws, "sls", p0 + 1, [10_400.0, 20_000.0], [2.0, 2.0])  # 4 requests, mean 15.2 ms: 4 x 16 ms
    put_latencies(aws, "sls", p1 + 1, [1_000_000.0], [1.0])               # 1 request of exactly 1 s -> 1 s
    put(aws, "sls", "Invocations", p0 + 1, 4)
    put(aws, "sls", "Invocations", p1 + 1, 1)
    clock.now = base + 660
    assert poller.run_cycle()                              # p0 settled
    text = exposition(poller)
    # 0.064 s x 2 GB x $0.00002 + 4 x $0.0000002
    p0_cost = 0.064 * 2 * 0.00002 + 4 * 0.0000002
    assert value(text, "sagemaker_serverless_compute_seconds_total", endpoint="sls") == pytest.approx(0.064)
    assert value(text, "sagemaker_serverless_list_cost_dollars_total", endpoint="sls") == pytest.approx(p0_cost)
    assert value(text, "sagemaker_serverless_cost_dollars_total", endpoint="sls") == pytest.approx(p0_cost * 0.75)
    clock.now = base + 720
    assert poller.run_cycle()                              # p1 settled
    text = exposition(poller)
    p1_cost = 1.0 * 2 * 0.00002 + 0.0000002
    assert value(text, "sagemaker_serverless_compute_seconds_total", endpoint="sls") == pytest.approx(1.064)
    assert value(text, "sagemaker_serverless_cost_dollars_total", endpoint="sls") == \
        pytest.approx((p0_cost + p1_cost) * 0.75)
    # the hourly gauge: the newest minute's cost x 60, next to the instance-based variants' cost
    assert value(text, "sagemaker_variant_hourly_list_cost_dollars", endpoint="sls", instance_type="serverless") \
        == pytest.approx(p1_cost * 60)
    assert value(text, "sagemaker_variant_hourly_cost_dollars", endpoint="sls", instance_type="serverless") \
        == pytest.approx(p1_cost * 60 * 0.75)
    assert "sagemaker_variant_instances" not in samples(text)
    check = promtool_check_metrics(text)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.integration
def test_serverless_provisioned_concurrency_is_billed_while_provisioned_and_spillover_at_the_on_demand_rate(aws):
    """ProvisionedConcurrency goes through boto3 and moto unchanged (no emulator patch): 2 copies x 2 GB kept warm
    cost by the second from the first poll, the requests they serve cost the provisioned inference rate, and the
    spilled-over ones (ServerlessProvisionedConcurrencySpilloverInvocations) the on-demand rate."""
    from mlscope.sagemaker.discounts import discounts
    from mlscope.sagemaker.serverless import ServerlessPrices
    create_endpoint(aws, "pc", [("AllTraffic", "", 0)], serverless=["AllTraffic"], provisioned=2)   # 2 GB, 2 warm
    base = base_time()
    p0, p1 = base + 480, base + 540
    clock = Clock(base + 600)
    poller = make_poller(aws, clock)
    poller.serverless_prices = ServerlessPrices(per_gb_second=0.00002, per_request=0.0000002,
                                                provisioned_per_gb_second=0.000005,
                                                provisioned_inference_per_gb_second=0.00001)
    poller.discounts = discounts({"instance_types": {"serverless": "25%"}})
    assert poller.run_cycle()
    text = exposition(poller)
    assert value(text, "sagemaker_variant_serverless_provisioned_concurrency", endpoint="pc") == 2
    assert value(text, "sagemaker_serverless_list_cost_dollars_total", endpoint="pc") == 0
    warm_hourly = 2 * 2 * 3600 * 0.000005                  # $0.072 an hour before any request
    assert value(text, "sagemaker_variant_hourly_list_cost_dollars", endpoint="pc") == pytest.approx(warm_hourly)
    assert value(text, "sagemaker_variant_hourly_cost_dollars", endpoint="pc") == pytest.approx(warm_hourly * 0.75)
    put_latencies(aws, "pc", p0 + 1, [10_400.0, 20_000.0], [2.0, 2.0])   # 4 requests, mean 15.2 ms: 4 x 16 ms
    put(aws, "pc", "ServerlessProvisionedConcurrencySpilloverInvocations", p0 + 1, 1)   # 1 of them on demand
    put_latencies(aws, "pc", p1 + 1, [1_000_000.0], [1.0])   # 1 request of 1 s, served warm (no spill-over datum)
    put(aws, "pc", "Invocations", p0 + 1, 4)
    put(aws, "pc", "Invocations", p1 + 1, 1)
    clock.now = base + 660
    assert poller.run_cycle()                              # p0 settled; 60 s more provisioned
    text = exposition(poller)
    warm_minute = 2 * 2 * 60 * 0.000005                    # $0.0012
    p0_cost = 3 * 0.016 * 2 * 0.00001 + 1 * 0.016 * 2 * 0.00002 + 4 * 0.0000002   # $0.0000024
    assert value(text, "sagemaker_serverless_spillover_invocations_total", endpoint="pc") == 1
    assert value(text, "sagemaker_serverless_compute_seconds_total", endpoint="pc") == pytest.approx(0.064)
    assert value(text, "sagemaker_serverless_list_cost_dollars_total", endpoint="pc") == \
        pytest.approx(warm_minute + p0_cost)
    assert value(text, "sagemaker_variant_hourly_list_cost_dollars", endpoint="pc") == \
        pytest.approx(warm_hourly + p0_cost * 60)
    clock.now = base + 720
    assert poller.run_cycle()                              # p1 settled
    text = exposition(poller)
    p1_cost = 1.0 * 2 * 0.00001 + 0.0000002                # $0.0000202
    assert value(text, "sagemaker_serverless_compute_seconds_total", endpoint="pc") == pytest.approx(1.064)
    assert value(text, "sagemaker_serverless_list_cost_dollars_total", endpoint="pc") == \
        pytest.approx(2 * warm_minute + p0_cost + p1_cost)                    # $0.0024226
    assert value(text, "sagemaker_serverless_cost_dollars_total", endpoint="pc") == \
        pytest.approx((2 * warm_minute + p0_cost + p1_cost) * 0.75)
    assert value(text, "sagemaker_variant_hourly_cost_dollars", endpoint="pc", instance_type="serverless") == \
        pytest.approx((warm_hourly + p1_cost * 60) * 0.75)
    check = promtool_check_metrics(text)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.integration
def test_asynchronous_endpoints_export_their_backlog_and_latency_without_invocations(aws):
    from sagemaker_fixtures import client
    create_endpoint(aws, "async", [("AllTraffic", "ml.m5.xlarge", 1)], asynchronous=True)
    base = base_time()
    p0 = base + 480
    cw = client(aws, "cloudwatch")

    def endpoint_metric(name, ts, val):
        cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[{
            "MetricName": name, "Value": val, "Timestamp": ts, "Dimensions": [{"Name": "EndpointName", "Value": "async"}]}])

    endpoint_metric("ApproximateBacklogSize", p0 + 5, 30)
    endpoint_metric("ApproximateBacklogSize", p0 + 35, 50)           # average over the minute: 40
    endpoint_metric("HasBacklogWithoutCapacity", p0 + 5, 1)
    endpoint_metric("ApproximateAgeOfOldestRequest", p0 + 5, 42)
    put(aws, "async", "TimeInBacklog", p0 + 5, 1500)                   # milliseconds, per variant
    put(aws, "async", "ModelLatency", p0 + 5, 200_000)                  # async endpoints publish no Invocations
    put(aws, "async", "ModelLatency", p0 + 6, 400_000)
    clock = Clock(base + 600)
    poller = make_poller(aws, clock, statistics=["p50"], list_metrics_interval=600)   # listed: endpoint-level too
    assert poller.run_cycle()
    clock.now = base + 660
    assert poller.run_cycle()
    text = exposition(poller)
    assert value(text, "sagemaker_async_backlog_size", endpoint="async") == 40
    assert "variant" not in samples(text)["sagemaker_async_backlog_size"][0][0]
    assert value(text, "sagemaker_async_backlog_without_capacity", endpoint="async") == 1
    assert value(text, "sagemaker_async_oldest_request_age_seconds", endpoint="async") == 42
    assert value(text, "sagemaker_async_time_in_backlog_seconds", endpoint="async", variant="AllTraffic") == 1.5
    assert value(text, "sagemaker_model_latency_seconds_count", endpoint="async") == 2
    assert value(text, "sagemaker_model_latency_seconds", endpoint="async", quantile="0.5") == pytest.approx(0.2)
    assert value(text, "sagemaker_invocations_total", endpoint="async") == 0
    check = promtool_check_metrics(text)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.integration
def test_inference_components_metrics_and_the_instance_cost_split_by_reserved_capacity(aws):
    from sagemaker_fixtures import client
    sm = client(aws, "sagemaker")
    create_endpoint(aws, "shared", [("AllTraffic", "ml.g5.12xlarge", 2)])   # 2 x 4 GPUs, 2 x $7.09/h
    create_endpoint(aws, "cpu", [("AllTraffic", "ml.m5.xlarge", 1)])        # 4 vCPUs, $0.23/h

    def component(name, endpoint, copies, **need):
        sm.create_inference_component(InferenceComponentName=name, EndpointName=endpoint, VariantName="AllTraffic",
                                      RuntimeConfig={"CopyCount": copies},
                                      Specification={"ModelName": f"{name}-model", "ComputeResourceRequirements": need})

    component("llama", "shared", 2, NumberOfAcceleratorDevicesRequired=2, NumberOfCpuCoresRequired=8,
              MinMemoryRequiredInMb=65536)
    component("mistral", "shared", 2, NumberOfAcceleratorDevicesRequired=1, MinMemoryRequiredInMb=16384)
    component("tiny", "cpu", 3, NumberOfCpuCoresRequired=1, MinMemoryRequiredInMb=1024)
    base = base_time()
    p0 = base + 480
    clock = Clock(base + 600)
    poller = make_poller(aws, clock)
    assert poller.run_cycle()
    cw = client(aws, "cloudwatch")

    def put_component(name, metric, val, namespace="AWS/SageMaker"):
        cw.put_metric_data(Namespace=namespace, MetricData=[{"MetricName": metric, "Value": val, "Timestamp": p0 + 5,
                                                             "Dimensions": [{"Name": "InferenceComponentName",
                                                                             "Value": name}]}])

    put_component("llama", "Invocations", 30)
    put_component("llama", "Invocation5XXErrors", 2)
    put_component("llama", "ModelLatency", 500_000)
    put_component("llama", "GPUUtilizationNormalized", 80, namespace="/aws/sagemaker/InferenceComponents")
    put(aws, "shared", "Invocations", p0 + 5, 30)            # the variant's traffic
    clock.now = base + 660
    assert poller.run_cycle()
    text = exposition(poller)
    assert value(text, "sagemaker_inference_component_info", endpoint="shared", inference_component="llama",
                 model="llama-model", status="InService", account="123456789012") == 1
    assert value(text, "sagemaker_inference_component_copies", inference_component="mistral") == 2
    assert value(text, "sagemaker_inference_component_invocations_total", inference_component="llama") == 30
    assert value(text, "sagemaker_inference_component_invocation_5xx_errors_total", inference_component="llama") == 2
    assert value(text, "sagemaker_inference_component_invocations_total", inference_component="mistral") == 0
    assert value(text, "sagemaker_inference_component_model_latency_seconds_sum", inference_component="llama") == 0.5
    assert value(text, "sagemaker_inference_component_gpu_utilization_ratio", inference_component="llama") == 0.8
    # GPUs: llama 2 x 2 = 4 of 8 -> 0.5, mistral 2 x 1 -> 0.25, (idle) 0.25 of $14.18
    shares = {l["inference_component"]: v for l, v in samples(text)["sagemaker_inference_component_hourly_cost_dollars"]
              if l["endpoint"] == "shared"}
    assert shares == pytest.approx({"llama": 7.09, "mistral": 3.545, "(idle)": 3.545})
    assert sum(shares.values()) == pytest.approx(value(text, "sagemaker_variant_hourly_cost_dollars", endpoint="shared"))
    # no GPU: by vCPUs, 3 copies x 1 core of 4
    assert value(text, "sagemaker_inference_component_capacity_share_ratio", inference_component="tiny") == 0.75
    assert value(text, "sagemaker_inference_component_hourly_cost_dollars", endpoint="cpu",
                 inference_component="(idle)") == pytest.approx(0.0575)

    sm.update_inference_component_runtime_config(InferenceComponentName="mistral", DesiredRuntimeConfig={"CopyCount": 4})
    sm.delete_inference_component(InferenceComponentName="llama")
    clock.now = base + 720
    assert poller.run_cycle()
    text = exposition(poller)
    shares = {l["inference_component"]: v for l, v in samples(text)["sagemaker_inference_component_hourly_cost_dollars"]
              if l["endpoint"] == "shared"}
    assert shares == pytest.approx({"mistral": 7.09, "(idle)": 7.09})
    assert "llama" not in {l["inference_component"] for l, _ in samples(text)["sagemaker_inference_component_info"]}
    assert not [k for k in poller._counters if k[-1] == "llama"]      # its state is dropped, not kept forever
    check = promtool_check_metrics(text)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_new_inference_component_is_listed_at_the_next_poll(aws):
    from sagemaker_fixtures import client
    create_endpoint(aws, "shared", [("AllTraffic", "ml.g5.12xlarge", 1)])
    base = base_time()
    put(aws, "shared", "Invocations", base + 300, 1)                      # the variant is listed from the start
    clock = Clock(base + 600)
    poller = make_poller(aws, clock, list_metrics_interval=600)
    assert poller.run_cycle()
    client(aws, "sagemaker").create_inference_component(
        InferenceComponentName="late", EndpointName="shared", VariantName="AllTraffic", RuntimeConfig={"CopyCount": 1},
        Specification={"ModelName": "model", "ComputeResourceRequirements": {"NumberOfAcceleratorDevicesRequired": 1,
                                                                            "MinMemoryRequiredInMb": 1024}})
    clock.now = base + 660
    assert poller.run_cycle()                        # first seen; nothing of it listed yet
    client(aws, "cloudwatch").put_metric_data(Namespace="AWS/SageMaker", MetricData=[{
        "MetricName": "Invocations", "Value": 8, "Timestamp": base + 541,
        "Dimensions": [{"Name": "InferenceComponentName", "Value": "late"}]}])
    clock.now = base + 720                           # listed again at this poll, not 10 minutes later
    assert poller.run_cycle()
    text = exposition(poller)
    assert value(text, "sagemaker_inference_component_invocations_total", inference_component="late") == 8
    assert value(text, "mlscope_cloudwatch_requests_total", api="ListMetrics") == 9     # 3 passes x 3 namespaces
