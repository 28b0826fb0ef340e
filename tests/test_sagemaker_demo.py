"""The SageMaker exporter against the demo AWS emulator (exporters/demo/aws.py: moto patched with
percentiles, current instance types and CloudWatch's limits)."""

from __future__ import annotations

import pytest

from helpers import promtool_check_metrics, samples, value
from sagemaker_fixtures import aws_env  # noqa: F401 (autouse: test credentials)
from sagemaker_fixtures import INSTANCE_NS, Clock, base_time, create_endpoint, exposition, make_poller, put

from mlscope.demo.aws import start_emulator


@pytest.fixture(scope="module")
def emulator():
    server, url = start_emulator()
    yield url
    server.stop()


@pytest.mark.integration
def test_percentiles_in_seconds_and_g5_utilization_and_cost(emulator):
    url = emulator
    create_endpoint(url, "llm", [("AllTraffic", "ml.g5.12xlarge", 2)])   # 48 vCPUs, 4 GPUs
    base = base_time()
    clock = Clock(base + 600)
    poller = make_poller(url, clock, statistics=["p50", "p90", "p99"])
    poller.run_cycle()
    p0 = base + 480
    # 100 requests: 50 at 10 ms, 40 at 20 ms, 9 at 50 ms, 1 at 900 ms (microseconds, as SageMaker reports)
    from sagemaker_fixtures import client
    import datetime as dt
    client(url, "cloudwatch").put_metric_data(Namespace="AWS/SageMaker", MetricData=[{
        "MetricName": "ModelLatency", "Timestamp": dt.datetime.fromtimestamp(p0 + 5, dt.timezone.utc),
        "Dimensions": [{"Name": "EndpointName", "Value": "llm"}, {"Name": "VariantName", "Value": "AllTraffic"}],
        "Values": [10_000, 20_000, 50_000, 900_000], "Counts": [50, 40, 9, 1]}])
    put(url, "llm", "Invocations", p0 + 5, 100)
    put(url, "llm", "GPUUtilization", p0 + 5, 200, namespace=INSTANCE_NS)        # 4 GPUs -> 0.5
    put(url, "llm", "CPUUtilization", p0 + 5, 1200, namespace=INSTANCE_NS)       # 48 vCPUs -> 0.25
    clock.now = base + 660
    assert poller.run_cycle()
    text = exposition(poller)
    assert value(text, "sagemaker_model_latency_seconds", endpoint="llm", quantile="0.5") == pytest.approx(0.01)
    assert value(text, "sagemaker_model_latency_seconds", endpoint="llm", quantile="0.9") == pytest.approx(0.02)
    assert value(text, "sagemaker_model_latency_seconds", endpoint="llm", quantile="0.99") == pytest.approx(0.05)
    assert value(text, "sagemaker_model_latency_seconds_count", endpoint="llm") == 100
    assert value(text, "sagemaker_model_latency_seconds_sum", endpoint="llm") == pytest.approx(
        (50 * 10_000 + 40 * 20_000 + 9 * 50_000 + 900_000) / 1e6)
    assert value(text, "sagemaker_invocations_total", endpoint="llm") == 100
    assert value(text, "sagemaker_instance_gpu_utilization_ratio", endpoint="llm") == pytest.approx(0.5)
    assert value(text, "sagemaker_instance_cpu_utilization_ratio", endpoint="llm") == pytest.approx(0.25)
    assert value(text, "sagemaker_variant_hourly_cost_dollars", endpoint="llm",
                 instance_type="ml.g5.12xlarge") == pytest.approx(2 * 7.09)
    check = promtool_check_metrics(text)
    assert check.returncode == 0, check.stdout + check.stderr


def test_batches_respect_the_emulators_500_query_limit(emulator):
    url = emulator
    variants = [(f"v{i}", "ml.g5.xlarge", 1) for i in range(10)]    # 8 counters + 5 utilization + 6 latency
    for e in range(3):
        create_endpoint(url, f"big{e}", variants)                     # 30 variants x 19 = 570 queries
    base = base_time()
    clock = Clock(base + 600)
    poller = make_poller(url, clock, statistics=["p50", "p90", "p99"], name_regex=__import__("re").compile("^big"),
                         statistics_api="get_metric_data")   # every query on GetMetricData: its 500-query limit
    poller.run_cycle()
    put(url, "big2", "Invocations", base + 481, 4, variant="v9")
    before = value(exposition(poller), "mlscope_cloudwatch_requests_total", api="GetMetricData")
    clock.now = base + 660
    assert poller.run_cycle()
    text = exposition(poller)
    assert value(text, "mlscope_cloudwatch_requests_total", api="GetMetricData") - before == 2
    assert value(text, "sagemaker_invocations_total", endpoint="big2", variant="v9") == 4


@pytest.mark.integration
def test_the_demo_config_polls_both_demo_accounts(emulator, tmp_path):
    """The shipped demo config, as a real exporter process: the demo's second account is a second set of
    series, and `fraud-scoring`, which exists in both accounts, is two endpoints told apart by `account`."""
    import time as _time
    from helpers import ROOT, samples, scrape, start_exporter
    from sagemaker_fixtures import CREDS
    from mlscope.demo import traffic
    now = int(_time.time()) // 60 * 60
    for role, endpoints in ((None, traffic.demo_endpoints(2)),
                            (traffic.SECOND_ACCOUNT_ROLE, traffic.SECOND_ACCOUNT_TEMPLATES)):
        clients = traffic.make_clients(emulator, role_arn=role)
        traffic.create_endpoints(clients, endpoints)
        traffic.backfill(clients, endpoints, now - 600, now, seed=3)
    env = {**CREDS, "MLSCOPE_ENDPOINT_URL": emulator, "MLSCOPE_POLL_INTERVAL": "10s", "MLSCOPE_DELAY": "1m"}
    proc, base = start_exporter("sagemaker-exporter", "--config", str(ROOT / "provisioning/mlscope/sagemaker-demo.yml"),
                                env=env)
    try:
        deadline = _time.monotonic() + 30
        found: set = set()
        wanted = {("123456789012", "llm-chat"), ("123456789012", "fraud-scoring"),
                  ("210987654321", "fraud-scoring"), ("210987654321", "churn-predict")}
        while _time.monotonic() < deadline and not wanted <= found:
            found = {(l["account"], l["endpoint"]) for l, _ in samples(scrape(base)).get("sagemaker_endpoint_info", [])}
            _time.sleep(0.3)
        text = scrape(base)
    finally:
        output = proc.stop()
    assert wanted <= found, output[-2000:]      # (the module's emulator also holds other tests' endpoints)
    assert {e for a, e in found if a == "210987654321"} == {"fraud-scoring", "churn-predict"}
    assert value(text, "sagemaker_variant_info", account="210987654321", endpoint="fraud-scoring",
                 instance_type="ml.c5.xlarge") == 1
    assert value(text, "sagemaker_endpoint_budget_monthly_dollars", account="210987654321",
                 endpoint="churn-predict") == 150
    for account in ("123456789012", "210987654321"):
        assert value(text, "mlscope_collector_up", collector=f"sagemaker/{account}/us-east-1") == 1
    check = promtool_check_metrics(text)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.integration
def test_demo_serverless_async_and_inference_component_endpoints_through_the_exporter(emulator):
    """The demo's other kinds of endpoint, written by the traffic generator, read back by the exporter: every
    figure equals what the generator wrote, computed by hand from its datums."""
    import math
    from mlscope.demo import traffic
    region = "us-west-2"   # a backend of its own in the module's emulator
    minute = (int(__import__("time").time()) // 60 - 30) * 60
    clients = traffic.make_clients(emulator, region)
    traffic.create_endpoints(clients, traffic.KIND_TEMPLATES)
    written = traffic.backfill(clients, traffic.KIND_TEMPLATES, minute, minute + 300, seed=5)
    clock = Clock(minute + 120)                      # delay 120: the first cycle's end is `minute`
    poller = make_poller(emulator, clock, region=region, statistics=["p50"])
    assert poller.run_cycle()
    clock.now = minute + 300 + 120                   # the five written minutes are settled
    assert poller.run_cycle()
    text = exposition(poller)

    sls = [d for d in written if d.endpoint == "text-classify" and d.metric == "ModelLatency"]
    billed = sum(d.sample_count * math.ceil(d.sum / d.sample_count / 1000) / 1000 for d in sls)
    assert billed > 0
    assert value(text, "sagemaker_serverless_compute_seconds_total", endpoint="text-classify") == pytest.approx(billed)
    assert value(text, "sagemaker_serverless_cost_dollars_total", endpoint="text-classify") == \
        pytest.approx(billed * 2 * 0.00002)          # 2,048 MB = 2 GB at the us-east-1 list price
    assert value(text, "sagemaker_variant_serverless_memory_bytes", endpoint="text-classify") == 2048 * 2 ** 20

    newest_backlog = [d for d in written if d.metric == "ApproximateBacklogSize" and d.timestamp == minute + 240]
    assert value(text, "sagemaker_async_backlog_size", endpoint="doc-summarize") == newest_backlog[0].values[0]
    assert value(text, "sagemaker_model_latency_seconds_count", endpoint="doc-summarize") == \
        traffic.total(written, "ModelLatency", "doc-summarize", stat="SampleCount")
    assert value(text, "sagemaker_invocations_total", endpoint="doc-summarize") == 0

    for component in ("chat-7b", "code-3b"):
        dims = (("InferenceComponentName", component),)
        assert value(text, "sagemaker_inference_component_invocations_total", inference_component=component) == \
            traffic.total(written, "Invocations", "llm-shared", dimensions=dims)
    # ml.g5.12xlarge x 1 = 4 GPUs at $7.09/h: chat-7b 2 GPUs, code-3b 1 GPU, 1 GPU unreserved
    shares = {l["inference_component"]: v for l, v in samples(text)["sagemaker_inference_component_hourly_cost_dollars"]}
    assert shares == pytest.approx({"chat-7b": 3.545, "code-3b": 1.7725, "(idle)": 1.7725})
    check = promtool_check_metrics(text)
    assert check.returncode == 0, check.stdout + check.stderr
