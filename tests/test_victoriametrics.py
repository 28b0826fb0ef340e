"""The compose profile `longterm` (VictoriaMetrics + vmagent) and its Grafana datasource, checked with the
official Compose binary and the real vmagent (the same 1.79.5 the profile's images pin)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from helpers import ROOT, require_binary
from test_compose import ENV, compose_config

LONGTERM = {"victoriametrics", "vmagent"}


@pytest.fixture(scope="module")
def longterm() -> dict:
    result = compose_config("--profile", "longterm", "config", "--format", "json", env=ENV)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def test_longterm_is_a_profile_off_by_default(longterm):
    default = set(compose_config("config", "--services", env=ENV).stdout.split())
    assert LONGTERM.isdisjoint(default)
    assert LONGTERM <= set(longterm)
    for name in LONGTERM:
        assert longterm[name]["profiles"] == ["longterm"]


def test_longterm_services_are_hardened_pinned_and_on_loopback(longterm):
    for name in LONGTERM:
        service = longterm[name]
        assert service["image"].endswith(":v1.79.5"), name
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert service["healthcheck"]["test"][-1].endswith("/health"), name
        assert [p["host_ip"] for p in service["ports"]] == ["127.0.0.1"], name
    assert longterm["vmagent"]["user"] == "65534:65534"
    assert any(v["type"] == "volume" and v["target"] == "/storage" for v in longterm["victoriametrics"]["volumes"])


def test_vmagent_writes_where_the_datasource_and_prometheus_remote_write_read(longterm):
    command = longterm["vmagent"]["command"]
    assert "-remoteWrite.url=http://victoriametrics:8428/api/v1/write" in command
    datasources = yaml.safe_load((ROOT / "provisioning/grafana/datasources/victoriametrics.yml").read_text())
    [vm] = datasources["datasources"]
    assert (vm["uid"], vm["type"], vm["url"]) == ("victoriametrics", "prometheus", "http://victoriametrics:8428")
    # the commented remote_write block of prometheus.yml names the same service
    assert "- url: http://victoriametrics:8428/api/v1/write" in (
        ROOT / "provisioning/prometheus/prometheus.yml").read_text()


@pytest.mark.integration
def test_vmagent_accepts_prometheus_scrape_config_as_the_profile_runs_it(longterm):
    vmagent = require_binary("vmagent")
    flags = [f for f in longterm["vmagent"]["command"] if f.startswith("-promscrape.config.")]
    result = subprocess.run([vmagent, f"-promscrape.config={ROOT / 'provisioning/prometheus/prometheus.yml'}",
                             "-promscrape.config.dryRun", "-loggerLevel=ERROR", *flags],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # and without the profile's non-strict flag it would refuse Prometheus' rule_files/alerting sections,
    # which is why the flag is there
    strict = subprocess.run([vmagent, f"-promscrape.config={ROOT / 'provisioning/prometheus/prometheus.yml'}",
                             "-promscrape.config.dryRun", "-loggerLevel=ERROR"],
                            capture_output=True, text=True, timeout=60)
    assert strict.returncode != 0


@pytest.mark.integration
def test_the_profile_pins_the_version_the_tests_run():
    dpkg = shutil.which("dpkg-query")
    require_binary("victoria-metrics")
    if dpkg is None:
        pytest.skip("no dpkg-query: cannot read the installed victoria-metrics version")
    version = subprocess.run([dpkg, "-W", "-f=${Version}", "victoria-metrics"], capture_output=True, text=True,
                             timeout=30).stdout
    assert version.split("+", 1)[0] == "1.79.5"


# Recorded series are named level:metric:operations (two colons); vLLM's own raw series have one
# (`vllm:num_requests_running`), so dropping "any colon" would starve vmalert of the vLLM-fed rules' inputs.
RECORDED_OR_ALERTS = "[^:]+:[^:]+:[^:]+|ALERTS|ALERTS_FOR_STATE"


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_every_dashboard_query_with_data_on_prometheus_has_data_on_victoriametrics(tmp_path):
    """The e2e stack (`make local`'s LocalStack) with Prometheus remote-writing its raw series to a real
    VictoriaMetrics, and vmalert evaluating the same rule files there: every dashboard query that
    returns data on Prometheus returns data on VictoriaMetrics, from vmalert's recordings."""
    import time

    import requests

    from dashboards.queries import all_queries
    from helpers import Process, WebhookReceiver, free_port
    from mlscope.local import LocalStack, Options
    from test_e2e import rendered

    vm_binary, vmalert_binary = require_binary("victoria-metrics"), require_binary("vmalert")
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    vm_port = free_port()
    vm = f"http://127.0.0.1:{vm_port}"
    procs = [Process([vm_binary, f"-storageDataPath={tmp_path / 'vm'}", f"-httpListenAddr=127.0.0.1:{vm_port}",
                      "-search.latencyOffset=1s", "-retentionPeriod=1"])]
    receiver = WebhookReceiver()
    stack = LocalStack(rendered(), Options(
        data_dir=tmp_path / "stack", free_ports=True, scrape_interval="2s", evaluation_interval="2s",
        webhook_url=receiver.url,
        env={"sagemaker-exporter": {"MLSCOPE_POLL_INTERVAL": "10s", "MLSCOPE_DELAY": "70s"},
             "host-exporter": {"MLSCOPE_INSTANCE_TYPE": "g5.12xlarge"}}))
    adapt = stack._adapt_prometheus

    def with_remote_write(cfg: dict) -> None:  # raw series only: the recordings on VM must be vmalert's
        adapt(cfg)
        cfg["remote_write"] = [{"url": f"{vm}/api/v1/write", "write_relabel_configs": [
            {"source_labels": ["__name__"], "regex": RECORDED_OR_ALERTS, "action": "drop"}]}]
    stack._adapt_prometheus = with_remote_write

    def query(base: str, expr: str) -> list:
        body = requests.get(base + "/api/v1/query", params={"query": expr}, timeout=30).json()
        assert body["status"] == "success", (base, expr, body)
        return body["data"]["result"]

    def wait(base: str, expr: str, timeout: float) -> list:
        deadline = time.monotonic() + timeout
        while not (result := query(base, expr)) and time.monotonic() < deadline:
            time.sleep(1)
        return result

    try:
        procs[0].wait_http(vm + "/health", timeout=30)
        stack.start()
        prometheus = stack.url("prometheus")
        rules = sorted((tmp_path / "stack").glob("mounts/prometheus/**/*.rules.yml"))  # the e2e's 2 s groups
        assert len(rules) == len(list((ROOT / "alerts").glob("*.rules.yml")))
        procs.append(Process([vmalert_binary, *[f"-rule={path}" for path in rules], f"-datasource.url={vm}",
                              f"-remoteWrite.url={vm}", f"-notifier.url={stack.url('alertmanager')}",
                              "-evaluationInterval=2s", f"-httpListenAddr=127.0.0.1:{free_port()}"]))
        assert wait(prometheus, "increase(sagemaker_invocations_total[5m]) > 0", 180)
        endpoint = wait(prometheus, "sagemaker_instance_gpu_utilization_ratio", 60)[0]["metric"]
        gpu = wait(prometheus, "gpu_info", 30)[0]["metric"]
        host = wait(prometheus, 'up{job="host"}', 30)[0]["metric"]
        variables = {"endpoint": endpoint["endpoint"], "variant": endpoint["variant"], "region": endpoint["region"],
                     "instance": host["instance"], "gpu": gpu["gpu"], "model": ".*"}
        assert wait(vm, "increase(sagemaker_invocations_total[5m]) > 0", 60)
        missing, checked = [], 0
        for uid, title, expr in all_queries(variables):
            if not query(prometheus, expr):
                continue
            checked += 1
            if not wait(vm, expr, 30):
                missing.append((uid, title, expr))
        assert checked > 100
        assert not missing, "queries with data on Prometheus but none on VictoriaMetrics:\n" + "\n".join(
            map(str, missing))
    finally:
        stack.stop()
        for proc in reversed(procs):
            proc.stop()
        receiver.close()
