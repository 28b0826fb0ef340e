"""`mlscope sagemaker-exporter` as a real process, pointed at a moto server by its config file."""

from __future__ import annotations

import re
import time

import pytest
import requests
import yaml

from helpers import Prometheus, promtool_check_metrics, run_cli, samples, scrape, scrape_config, start_exporter, value
from sagemaker_fixtures import CREDS, Moto, create_endpoint, put

INSTANCE_NS = "/aws/sagemaker/Endpoints"


def wait_metric(base: str, name: str, timeout: float = 30, **labels) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = scrape(base)
        if any(all(l.get(k) == str(v) for k, v in labels.items()) for l, _ in samples(text).get(name, [])):
            return text
        time.sleep(0.2)
    raise AssertionError(f"{name}{labels} not exported after {timeout}s:\n{text[-2000:]}")


def write_config(tmp_path, url: str, **extra) -> str:
    cfg = {"regions": ["us-east-1"], "endpoint_url": url, "poll_interval": "10s", "period": "1m", "delay": "1m",
           "statistics": [], "aws_max_attempts": 1, "aws_timeout": "2s", **extra}
    path = tmp_path / "sagemaker.yml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.fixture
def moto():
    server = Moto()
    yield server
    server.stop()


def seed(url: str) -> None:
    create_endpoint(url, "web", [("AllTraffic", "ml.m5.xlarge", 3)], tags={"mlscope:slo": "0.995"})
    now = int(time.time()) // 60 * 60
    for minute in range(2, 12):  # the newest settled period has data whenever the exporter looks
        put(url, "web", "CPUUtilization", now - minute * 60 + 1, 300, namespace=INSTANCE_NS)  # 4 vCPUs -> 0.75


@pytest.mark.integration
def test_exporter_process_serves_moto_data_passes_promtool_and_is_scraped_by_prometheus(moto, tmp_path):
    seed(moto.url)
    config = write_config(tmp_path, moto.url, discounts={"accounts": {"123456789012": "50%"}})
    proc, base = start_exporter("sagemaker-exporter", "--config", config, env=CREDS)
    try:
        text = wait_metric(base, "sagemaker_instance_cpu_utilization_ratio", endpoint="web")
        assert value(text, "sagemaker_instance_cpu_utilization_ratio", endpoint="web") == pytest.approx(0.75)
        assert value(text, "sagemaker_variant_hourly_list_cost_dollars", endpoint="web",
                     instance_type="ml.m5.xlarge", account="123456789012") == pytest.approx(0.69)
        assert value(text, "sagemaker_variant_hourly_cost_dollars", endpoint="web",
                     instance_type="ml.m5.xlarge") == pytest.approx(0.345)   # 3 x $0.23, 50% off
        assert value(text, "sagemaker_endpoint_info", endpoint="web", tag_mlscope_slo="0.995") == 1
        assert value(text, "sagemaker_invocations_total", endpoint="web", region="us-east-1") == 0
        assert value(text, "mlscope_collector_up", collector="sagemaker/us-east-1") == 1
        check = promtool_check_metrics(text)
        assert check.returncode == 0, check.stdout + check.stderr
        openmetrics = requests.get(base + "/metrics", headers={"Accept": "application/openmetrics-text"}, timeout=5)
        assert "# EOF" in openmetrics.text

        prom = Prometheus({"global": {"scrape_interval": "1s"},
                           "scrape_configs": [scrape_config("sagemaker", [base.split("//")[1]])]}, tmp_path)
        try:
            result = prom.wait_for('sagemaker_variant_hourly_cost_dollars{job="sagemaker",endpoint="web"}')
            assert float(result[0]["value"][1]) == pytest.approx(0.345)
            prom.wait_for('sagemaker_endpoint_info{tag_mlscope_slo="0.995"}')
        finally:
            prom.stop()

        # AWS gone: scrapes still answer from the cache, the poller reports itself down.
        moto.stop()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = scrape(base)
            if value(text, "mlscope_collector_up", collector="sagemaker/us-east-1") == 0:
                break
            time.sleep(0.2)
        assert value(text, "mlscope_collector_up", collector="sagemaker/us-east-1") == 0
        assert value(text, "sagemaker_variant_hourly_cost_dollars", endpoint="web") == pytest.approx(0.345)
        assert any(lbls["api"] == "ListEndpoints" for lbls, _ in samples(text)["mlscope_cloudwatch_errors_total"])
        started = time.perf_counter()
        scrape(base)
        assert time.perf_counter() - started < 2  # generous: the point is it never waits on AWS timeouts
    finally:
        output = proc.stop()
    assert "Traceback" not in output


def test_missing_credentials_log_one_line_per_cycle_and_back_off(moto, tmp_path):
    env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_EC2_METADATA_DISABLED": "true"}
    proc, base = start_exporter("sagemaker-exporter", "--config", write_config(tmp_path, moto.url), env=env)
    try:
        text = wait_metric(base, "mlscope_cloudwatch_errors_total", code="NoCredentials")
        assert value(text, "mlscope_collector_up", collector="sagemaker/us-east-1") == 0
        deadline = time.monotonic() + 45   # poll_interval 10s: the 2nd try comes 10-20 s after the 1st
        while value(scrape(base), "mlscope_collector_errors_total", collector="sagemaker/us-east-1") < 2 \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        errors = value(scrape(base), "mlscope_collector_errors_total", collector="sagemaker/us-east-1")
    finally:
        output = proc.stop()
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if "credentials" in line]
    assert lines and all("level=error" in line and "AWS credentials missing or rejected" in line for line in lines)
    assert errors >= 2 and abs(len(lines) - errors) <= 1  # one line per failed cycle
    # exponential backoff with jitter: after 1 failure 10-20 s, after 2 failures 20-40 s
    waits = [int(re.search(r"next try in (\d+)s", line).group(1)) for line in lines]
    assert 10 <= waits[0] <= 20 and 20 <= waits[1] <= 40, waits
    assert "testing" not in output


def test_an_empty_aws_profile_is_ignored(moto, tmp_path):
    """`AWS_PROFILE=` in .env reaches the container as an empty variable; boto3 alone would fail every call."""
    create_endpoint(moto.url, "web")
    proc, base = start_exporter("sagemaker-exporter", "--config", write_config(tmp_path, moto.url),
                                env={**CREDS, "AWS_PROFILE": "", "AWS_DEFAULT_PROFILE": ""})
    try:
        text = wait_metric(base, "sagemaker_endpoint_info", endpoint="web")
        assert value(text, "mlscope_collector_up", collector="sagemaker/us-east-1") == 1
    finally:
        output = proc.stop()
    assert "ProfileNotFound" not in output and "AWS_PROFILE is set but empty: ignored" in output


def test_credentials_never_reach_the_log_even_at_debug(moto, tmp_path):
    secret, token = "MLSCOPE-SECRET-b3e1d9", "MLSCOPE-TOKEN-7f2a0c"
    env = {**CREDS, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": token}
    create_endpoint(moto.url, "web")
    proc, base = start_exporter("sagemaker-exporter", "--config", write_config(tmp_path, moto.url),
                                "--log-level", "debug", env=env)
    try:
        wait_metric(base, "sagemaker_endpoint_info", endpoint="web")  # signed calls succeeded ...
        moto.stop()                                                   # ... and then failed
        deadline = time.monotonic() + 30
        while "poll failed" not in proc.output() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        output = proc.stop()
    assert "poll failed" in output and "level=debug" in output  # the verbose error paths really ran
    assert secret not in output and token not in output


def test_bad_settings_exit_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.yml"
    for content, needle in [("regions: [moon-1]\n", "regions"), ("regions: [us-east-1]\ndelay: soon\n", "delay"),
                            ("regions: [us-east-1]\nprices: {ml.m5.xlarge: cheap}\n", "prices"),
                            ("regions: [us-east-1]\nstatistics: [p100]\n", "statistics"),
                            ("regions: [us-east-1]\nrole_arn: nope\n", "role_arn"),
                            ("regions: [us-east-1]\npoll_interval: 0.001\n", "poll_interval"),
                            ("regions: [us-east-1]\npoll_interval: 9s\n", "at least 10 seconds"),
                            ("regions: [us-east-1]\nendpoint_url: not-a-url\n", "endpoint_url"),
                            ("regions: [us-east-1]\nendpoint_url: 'http://:5000'\n", "http:// or https:// URL"),
                            ("regions: [{region: us-east-1, endpoint_url: ftp://x}]\n", "http:// or https:// URL"),
                            ("regions: 5\n", "must be a list of AWS regions"),
                            ("regions: {us-east-1: yes}\n", "must be a list of AWS regions"),
                            ("regions: [us-east-1, [eu-west-1]]\n", "regions"),
                            ("regions: [us-east-1]\ndiscounts: {instance_types: {ml.g5.xlarge: 120%}}\n",
                             "discounts in"),
                            ("regions: [us-east-1]\ndiscounts: {accounts: {'42': 0.1}}\n", "12-digit"),
                            ("regions: [us-east-1]\nstatistics_api: get_metric_statistics\n",
                             "must be one of auto, get_metric_data"),
                            ("regions: [us-east-1]\nmax_get_metric_statistics_per_second: 0\n",
                             "must be a number of requests per second above 0")]:
        bad.write_text(content)
        result = run_cli("sagemaker-exporter", "--config", str(bad))
        assert result.returncode == 2, (content, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and needle in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    for flags, needle in [(["--regions", "us-east-1", "--poll-interval", "5"], "--poll-interval: must be at least"),
                          (["--regions", "us-east-1", "--endpoint-url", "localhost:5000"], "--endpoint-url: must be")]:
        result = run_cli("sagemaker-exporter", *flags)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and needle in result.stderr, result.stderr



