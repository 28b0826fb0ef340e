"""provisioning/prometheus/prometheus.yml: promtool check config, and a real Prometheus that
loads it with the repo's rule files and shows the relabelled targets."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from helpers import ROOT, Prometheus, require_binary

CONFIG = ROOT / "provisioning" / "prometheus" / "prometheus.yml"
RULE_FILES = sorted((ROOT / "alerts").glob("*.rules.yml"))


def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def local_copy(tmp_path: Path) -> Path:
    """The shipped config with rule_files pointing at the repo's alerts/ (compose mounts them)."""
    text = CONFIG.read_text()
    assert "/etc/prometheus/rules/*.rules.yml" in text
    path = tmp_path / "prometheus.yml"
    path.write_text(text.replace("/etc/prometheus/rules/*.rules.yml", str(ROOT / "alerts" / "*.rules.yml")))
    return path


@pytest.mark.integration
def test_promtool_check_config(tmp_path):
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, "check", "config", str(local_copy(tmp_path))], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout


def test_jobs_targets_rules_and_alerting():
    cfg = config()
    jobs = {job["job_name"]: job for job in cfg["scrape_configs"]}
    assert set(jobs) == {"host", "gpu", "sagemaker", "rightsizer", "alertmanager-exporter", "prometheus",
                         "alertmanager", "vllm", "triton", "torchserve", "model-http", "mlserver"}
    assert jobs["rightsizer"]["static_configs"][0]["targets"] == ["rightsizer:9859"]
    assert jobs["rightsizer"]["honor_labels"] is True  # its `instance` label is the analysed host
    assert jobs["host"]["static_configs"][0]["targets"] == ["host-exporter:9856"]
    assert jobs["sagemaker"]["static_configs"][0]["targets"] == ["sagemaker-exporter:9858"]
    gpu = jobs["gpu"]["dns_sd_configs"][0]
    assert set(gpu["names"]) == {"gpu-exporter", "gpu-exporter-sim"} and gpu["port"] == 9857
    assert cfg["rule_files"] == ["/etc/prometheus/rules/*.rules.yml"]
    assert cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert "remote_write:" in CONFIG.read_text() and "remote_write" not in cfg  # commented example only


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_real_prometheus_loads_it(tmp_path):
    cfg = yaml.safe_load(local_copy(tmp_path).read_text())
    prom = Prometheus(cfg, tmp_path, rule_files=RULE_FILES)
    try:
        deadline = time.monotonic() + 30
        labels: set = set()
        while len(labels) < 5 and time.monotonic() < deadline:  # discovery takes a moment
            time.sleep(0.5)
            resp = requests.get(prom.url + "/api/v1/targets", timeout=10).json()
            labels = {(t["labels"]["job"], t["labels"]["instance"]) for t in resp["data"]["activeTargets"]}
        # instance = host without port; the compose exporters share the Docker host's name
        assert ("host", "docker-host") in labels
        assert ("sagemaker", "sagemaker-exporter") in labels
        # the SageMaker exporter's `replica` (its address) tells the two replicas of an HA pair apart
        (sagemaker,) = [t["labels"] for t in resp["data"]["activeTargets"] if t["labels"]["job"] == "sagemaker"]
        assert sagemaker["replica"] == "sagemaker-exporter:9858"
        assert all("replica" not in t["labels"] for t in resp["data"]["activeTargets"] if t["labels"]["job"] != "sagemaker")
        assert ("prometheus", "localhost") in labels
        assert ("alertmanager", "alertmanager") in labels
        assert ("rightsizer", "rightsizer") in labels
        assert ("alertmanager-exporter", "alertmanager-exporter") in labels
        # gpu-exporter / gpu-exporter-sim do not resolve here: no target, so no false TargetDown
        assert not [job for job, _ in labels if job == "gpu"]
        groups = requests.get(prom.url + "/api/v1/rules", timeout=10).json()["data"]["groups"]
        names = {g["name"] for g in groups}
        assert {"mlscope-sagemaker-alerts", "mlscope-gpu-alerts", "mlscope-host-alerts", "mlscope-cost",
                "mlscope-stack-alerts", "mlscope-config", "mlscope-rightsizing-alerts"} <= names
        # runbook links are built from the external label runbook_base ($externalLabels works in 2.42)
        base = cfg["global"]["external_labels"]["runbook_base"]
        deadline = time.monotonic() + 60
        watchdog: list = []
        while not watchdog and time.monotonic() < deadline:
            time.sleep(0.5)
            alerts = requests.get(prom.url + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]
            watchdog = [a for a in alerts if a["labels"]["alertname"] == "Watchdog"]
        assert watchdog, "the Watchdog never fired"
        assert watchdog[0]["annotations"]["runbook_url"] == base + "#watchdog"
    finally:
        prom.stop()
