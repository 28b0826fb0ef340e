"""`mlscope demo aws` and `mlscope demo traffic` as real processes, talked to over HTTP with boto3."""

from __future__ import annotations

import socket
import time
from datetime import datetime, timedelta, timezone

import boto3
import pytest
import requests

from mlscope import cli
from helpers import ROOT, Process, free_port, mlscope_args, run_cli


def wait_for_output(proc: Process, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = proc.output()
        if text in out:
            return out
        assert proc.proc.poll() is None, f"exited with {proc.proc.returncode}:\n{out}"
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not printed after {timeout}s:\n{proc.output()}")


def test_emulator_and_traffic_processes():
    """Traffic starts first (compose start order), waits for the emulator, then backfills; both stop on SIGTERM."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    traffic = Process(mlscope_args("demo", "traffic", "--aws-endpoint", url, "--backfill", "5m",
                                   "--interval", "1", "--seed", "5"), cwd=ROOT)
    emulator = None
    try:
        wait_for_output(traffic, "waiting for the AWS endpoint")
        emulator = Process(mlscope_args("demo", "aws", "--listen", f"127.0.0.1:{port}"), cwd=ROOT)
        assert emulator.wait_http(url + "/-/healthy").text == "ok\n"
        assert requests.get(url + "/moto-api/", timeout=5).status_code == 200
        wait_for_output(traffic, "backfilled 5 minutes")

        kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
        sm, cw = boto3.client("sagemaker", **kw), boto3.client("cloudwatch", **kw)
        names = {e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]}
        assert names == {"llm-chat", "fraud-scoring", "search-rerank", "llm-batch-large", "image-embed",
                         "recsys-ranker", "text-classify", "doc-summarize", "llm-shared"}
        shared = sm.list_inference_components(EndpointNameEquals="llm-shared")["InferenceComponents"]
        assert {c["InferenceComponentName"] for c in shared} == {"chat-7b", "code-3b"}
        serverless = sm.describe_endpoint_config(EndpointConfigName="text-classify-config")["ProductionVariants"][0]
        assert serverless["ServerlessConfig"]["MemorySizeInMB"] == 2048
        fraud = sm.describe_endpoint(EndpointName="fraud-scoring")
        assert [v["VariantName"] for v in fraud["ProductionVariants"]] == ["Primary", "Canary"]
        llm = sm.describe_endpoint(EndpointName="llm-chat")
        tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=llm["EndpointArn"])["Tags"]}
        assert tags["mlscope:slo"] == "0.995" and tags["team"] == "genai"
        config = sm.describe_endpoint_config(EndpointConfigName=llm["EndpointConfigName"])
        assert config["ProductionVariants"][0]["InstanceType"] == "ml.g5.12xlarge"

        # a minute boundary may pass after the backfill: ask only for 4 minutes it surely covered
        end = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=1)
        dims = [{"Name": "EndpointName", "Value": "fraud-scoring"}, {"Name": "VariantName", "Value": "Primary"}]
        queries = [{"Id": qid, "MetricStat": {"Metric": {"Namespace": ns, "MetricName": m, "Dimensions": dims},
                                              "Period": 60, "Stat": stat}}
                   for qid, ns, m, stat in (("inv", "AWS/SageMaker", "Invocations", "Sum"),
                                            ("lat", "AWS/SageMaker", "ModelLatency", "Average"),
                                            ("p99", "AWS/SageMaker", "ModelLatency", "p99"),
                                            ("cpu", "/aws/sagemaker/Endpoints", "CPUUtilization", "Average"))]
        resp = cw.get_metric_data(MetricDataQueries=queries, StartTime=end - timedelta(minutes=4), EndTime=end)
        got = {r["Id"]: r["Values"] for r in resp["MetricDataResults"]}
        assert len(got["inv"]) == 4 and all(v > 100 for v in got["inv"])       # ~32 requests/s
        assert all(2_000 < v < 200_000 for v in got["lat"])                    # microseconds (12 ms median)
        assert all(p > a for p, a in zip(got["p99"], got["lat"]))
        assert all(0 < v <= 400 for v in got["cpu"])                           # 4 vCPUs: up to 400%
    finally:
        traffic_out = traffic.stop()
        emulator_out = emulator.stop() if emulator else ""
    assert traffic.proc.returncode == 0 and "Traceback" not in traffic_out, traffic_out
    assert emulator.proc.returncode == 0 and "Traceback" not in emulator_out, emulator_out
    assert "shutting down" in traffic_out and "shutting down" in emulator_out
    # the emulator really closed its port
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_traffic_once_exits():
    port = free_port()
    emulator = Process(mlscope_args("demo", "aws", "--listen", f"127.0.0.1:{port}"), cwd=ROOT)
    try:
        emulator.wait_http(f"http://127.0.0.1:{port}/-/healthy")
        done = run_cli("demo", "traffic", "--aws-endpoint", f"http://127.0.0.1:{port}", "--endpoints", "2",
                       "--backfill", "2m", "--once", timeout=60)
        assert done.returncode == 0, done.stderr
        assert "backfilled 2 minutes" in done.stderr and "Traceback" not in done.stderr
        # the second account (reached through AssumeRole) has its own endpoints, one with a name of the first's
        from mlscope.demo import traffic
        url = f"http://127.0.0.1:{port}"
        first = traffic.existing_endpoints(traffic.make_clients(url))
        second = traffic.existing_endpoints(traffic.make_clients(url, role_arn=traffic.SECOND_ACCOUNT_ROLE))
        assert first == {"llm-chat", "fraud-scoring", "text-classify", "doc-summarize", "llm-shared"}
        assert second == {"fraud-scoring", "churn-predict"}
        assert "created 2 demo endpoints in account 210987654321" in done.stderr
    finally:
        emulator.stop()


def test_emulator_port_in_use_is_one_line():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = run_cli("demo", "aws", "--listen", f"127.0.0.1:{port}")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("mlscope demo aws: error: --listen"), done.stderr


@pytest.mark.parametrize("argv, message", [
    (["demo", "aws", "--listen", "nonsense"], "--listen"),
    (["demo", "aws", "--listen", "127.0.0.1:99999"], "--listen"),
    (["demo", "aws", "--retention", "soon"], "--retention"),
    (["demo", "aws", "--bogus"], "unrecognized arguments"),
    (["demo", "traffic"], "--aws-endpoint"),
    (["demo", "traffic", "--aws-endpoint", "localhost:5000"], "--aws-endpoint"),
    (["demo", "traffic", "--aws-endpoint", "https://monitoring.us-east-1.amazonaws.com"], "real AWS"),
    (["demo", "traffic", "--aws-endpoint", "http://x:1", "--endpoints", "0"], "--endpoints"),
    (["demo", "traffic", "--aws-endpoint", "http://x:1", "--backfill", "1 hour"], "--backfill"),
    (["demo", "traffic", "--aws-endpoint", "http://x:1", "--interval", "0"], "--interval"),
    (["demo", "traffic", "--aws-endpoint", "http://x:1", "--seed", "x"], "--seed"),
    (["demo", "bogus"], "unknown command"),
])
def test_bad_flags_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("mlscope demo"), err


def test_bad_flag_as_a_real_process():
    done = run_cli("demo", "traffic", "--aws-endpoint", "http://x:1", "--endpoints", "-3")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--endpoints" in done.stderr
    assert done.stdout == ""


def test_stopping_the_emulator_puts_moto_back():
    from moto.sagemaker.models import FakeEndpointConfig

    from mlscope.demo import patches
    from mlscope.demo.aws import start_emulator
    from moto.cloudwatch.responses import CloudWatchResponse
    original = (FakeEndpointConfig.validate_instance_type, CloudWatchResponse.get_metric_data)
    first, _ = start_emulator()
    second, _ = start_emulator()  # two in one process: the patches stay until the last one stops
    try:
        assert FakeEndpointConfig.validate_instance_type is patches._validate_instance_type
        first.stop()
        assert patches.applied() and CloudWatchResponse.get_metric_data is patches._response_get_metric_data
    finally:
        first.stop()  # twice is harmless
        second.stop()
    assert not patches.applied()
    assert (FakeEndpointConfig.validate_instance_type, CloudWatchResponse.get_metric_data) == original


def test_oncall_stand_in_as_a_real_process():
    """`mlscope demo oncall` is the receiver the tests use in-process (helpers.WebhookReceiver); here as users run it."""
    port = free_port()
    oncall = Process(mlscope_args("demo", "oncall", "--listen", f"127.0.0.1:{port}"), cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        assert oncall.wait_http(base + "/-/healthy").text == "ok\n"
        alert = {"status": "firing", "labels": {"alertname": "GPULost", "severity": "page", "instance": "n1"},
                 "annotations": {"summary": "GPU 1 fell off the bus"}}
        assert requests.post(base + "/page", json={"alerts": [alert]}, timeout=5).status_code == 200
        assert requests.post(base + "/page", data=b"not json", timeout=5).status_code == 400
        got = requests.get(base + "/alerts", timeout=5).json()
        assert got == [{"path": "/page", **alert}]
        assert requests.get(base + "/nope", timeout=5).status_code == 404
    finally:
        out = oncall.stop()
    assert "page FIRING GPULost severity=page instance=n1 summary='GPU 1 fell off the bus'" in out
    assert "Traceback" not in out
