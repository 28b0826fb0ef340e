"""provisioning/alertmanager/alertmanager.yml: amtool check-config, routing tests, and a real
Alertmanager delivering to a local webhook receiver (routing and inhibition end to end)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from helpers import ROOT, Process, WebhookReceiver, free_port, require_binary

AM_DIR = ROOT / "provisioning" / "alertmanager"
CONFIG = AM_DIR / "alertmanager.yml"
SECRETS = ["pagerduty_routing_key", "slack_api_url", "smtp_password"]


def shipped_copy(tmp_path: Path) -> Path:
    """The shipped config with its /etc/alertmanager paths moved under tmp_path, secrets created."""
    text = CONFIG.read_text()
    assert "/etc/alertmanager/secrets/" in text
    (tmp_path / "secrets").mkdir()
    for name in SECRETS:
        (tmp_path / "secrets" / name).write_text("https://hooks.example.invalid/x\n" if "url" in name else "dummy\n")
    text = text.replace("/etc/alertmanager/secrets/", f"{tmp_path}/secrets/")
    text = text.replace("/etc/alertmanager/templates/", f"{AM_DIR}/templates/")
    path = tmp_path / "alertmanager.yml"
    path.write_text(text)
    return path


def test_no_secret_in_the_config():
    cfg = yaml.safe_load(CONFIG.read_text())
    pagerduty = cfg["receivers"][[r["name"] for r in cfg["receivers"]].index("page")]["pagerduty_configs"][0]
    assert set(pagerduty) & {"routing_key", "service_key"} == set()
    assert pagerduty["routing_key_file"].startswith("/etc/alertmanager/secrets/")
    assert "slack_api_url" not in cfg["global"] and "smtp_auth_password" not in cfg["global"]
    for key in ("slack_api_url_file", "smtp_auth_password_file"):
        assert cfg["global"][key].startswith("/etc/alertmanager/secrets/")


@pytest.mark.integration
def test_amtool_check_config(tmp_path):
    amtool = require_binary("amtool")
    result = subprocess.run([amtool, "check-config", str(shipped_copy(tmp_path))], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout


@pytest.mark.integration
@pytest.mark.parametrize("labels,receiver", [
    ({"alertname": "SageMakerEndpointErrorBudgetBurn", "severity": "page", "endpoint": "bert"}, "page"),
    ({"alertname": "GPULost", "severity": "page", "instance": "gpu-node-1"}, "page"),
    ({"alertname": "SageMakerEndpointErrorBudgetBurn", "severity": "ticket", "endpoint": "bert"}, "ticket"),
    ({"alertname": "HostFilesystemAlmostFull", "severity": "ticket", "instance": "n1"}, "ticket"),
    ({"alertname": "Watchdog", "severity": "ticket", "heartbeat": "true"}, "heartbeat"),
    ({"alertname": "SomethingWithoutSeverity"}, "ticket"),
])
def test_amtool_routes(tmp_path, labels, receiver):
    amtool = require_binary("amtool")
    args = [amtool, "config", "routes", "test", f"--config.file={shipped_copy(tmp_path)}",
            f"--verify.receivers={receiver}", *[f"{k}={v}" for k, v in labels.items()]]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# -- a real Alertmanager --------------------------------------------------------------------

def process_config(tmp_path: Path, receiver_url: str) -> Path:
    """Shipped routes and inhibitions; every integration swapped for the local webhook (one path
    per receiver), short timers for the test only."""
    cfg = yaml.safe_load(shipped_copy(tmp_path).read_text())
    cfg["route"].update(group_wait="0s", group_interval="1s")
    for route in cfg["route"]["routes"]:
        route.update(group_wait="0s", group_interval="1s")
    for receiver in cfg["receivers"]:
        for key in ("pagerduty_configs", "slack_configs", "email_configs"):
            receiver.pop(key, None)
        receiver["webhook_configs"] = [{"url": f"{receiver_url}/{receiver['name']}", "send_resolved": False}]
    path = tmp_path / "alertmanager-test.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path



def post(base: str, *alerts: dict) -> None:
    body = [{"labels": labels, "annotations": {"summary": labels["alertname"]}} for labels in alerts]
    resp = requests.post(base + "/api/v2/alerts", json=body, timeout=10)
    assert resp.status_code == 200, resp.text


@contextlib.contextmanager
def running_alertmanager(tmp_path: Path):
    """A real Alertmanager with the shipped routes and inhibitions; yields (base URL, receiver)."""
    binary = require_binary("prometheus-alertmanager")
    receiver = WebhookReceiver()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    am = Process([binary, f"--config.file={process_config(tmp_path, receiver.url)}",
                  f"--storage.path={tmp_path / 'am-data'}", f"--web.listen-address=127.0.0.1:{port}",
                  "--cluster.listen-address="])
    try:
        am.wait_http(base + "/-/ready", timeout=30)
        yield base, receiver
    finally:
        output = am.stop()
        receiver.close()
    # every notification was delivered: Alertmanager logs each failed one at error level
    assert [line for line in output.splitlines() if "level=error" in line] == [], output[-3000:]


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_real_alertmanager_routes_and_inhibits(tmp_path):
    with running_alertmanager(tmp_path) as (base, receiver):
        burn = {"alertname": "SageMakerEndpointErrorBudgetBurn", "region": "us-east-1", "endpoint": "bert"}
        # sources first: a page, a TargetDown, the Watchdog
        post(base, {**burn, "severity": "page", "burn_rate": "14.4"},
             {"alertname": "TargetDown", "severity": "ticket", "job": "gpu", "instance": "gpu-node-1"},
             {"alertname": "Watchdog", "severity": "ticket", "heartbeat": "true"})
        receiver.wait("/page", alertname="SageMakerEndpointErrorBudgetBurn", endpoint="bert")
        receiver.wait("/heartbeat", alertname="Watchdog")
        receiver.wait("/ticket", alertname="TargetDown")
        # then targets: two inhibited, two controls that must arrive
        post(base, {**burn, "severity": "ticket", "burn_rate": "1"},
             {**burn, "endpoint": "gpt", "severity": "ticket", "burn_rate": "1"},
             {"alertname": "GPUTemperatureHigh", "severity": "ticket", "job": "gpu", "instance": "gpu-node-1", "gpu": "0"},
             {"alertname": "GPUTemperatureHigh", "severity": "ticket", "job": "gpu", "instance": "gpu-node-2", "gpu": "0"})
        receiver.wait("/ticket", alertname="SageMakerEndpointErrorBudgetBurn", endpoint="gpt")
        receiver.wait("/ticket", alertname="GPUTemperatureHigh", instance="gpu-node-2")
        time.sleep(3)  # the inhibited ones would have come with the controls
        tickets = receiver.at("/ticket")
        assert not [a for a in tickets if a["alertname"] == "SageMakerEndpointErrorBudgetBurn" and a["endpoint"] == "bert"], \
            "the page should inhibit the ticket of the same alert and endpoint"
        assert not [a for a in tickets if a["alertname"] == "GPUTemperatureHigh" and a["instance"] == "gpu-node-1"], \
            "TargetDown should inhibit the other alerts of its target"
        # pages go only to the page receiver, the Watchdog only to the heartbeat
        assert all(a.get("severity") == "page" for a in receiver.at("/page"))
        assert not [a for a in tickets if a["alertname"] == "Watchdog"]
        assert {a["alertname"] for a in receiver.at("/heartbeat")} == {"Watchdog"}


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_sagemaker_alerts_held_back_while_their_exporter_fails(tmp_path):
    """Endpoint alerts carry their exporter's job and instance (alerts/sagemaker.rules.yml joins
    endpoint:sagemaker_exporter:info): a failing collector, a dead poller or a target that is
    down holds back that exporter's endpoint alerts, and only those."""
    endpoint = {"account": "111122223333", "region": "us-east-1", "job": "sagemaker"}
    with running_alertmanager(tmp_path) as (base, receiver):
        post(base,
             {"alertname": "MLScopeCollectorFailing", "severity": "ticket", "job": "sagemaker",
              "instance": "exporter-a", "collector": "default/us-east-1"},
             {"alertname": "SageMakerExporterDown", "severity": "ticket", "job": "sagemaker", "instance": "exporter-b"},
             {"alertname": "TargetDown", "severity": "ticket", "job": "sagemaker", "instance": "exporter-c"})
        receiver.wait("/ticket", alertname="MLScopeCollectorFailing")
        receiver.wait("/ticket", alertname="SageMakerExporterDown")
        receiver.wait("/ticket", alertname="TargetDown")
        post(base,
             {**endpoint, "alertname": "SageMakerDataStale", "severity": "ticket", "instance": "exporter-a", "endpoint": "a"},
             {**endpoint, "alertname": "SageMakerEndpointNoTraffic", "severity": "ticket", "instance": "exporter-b", "endpoint": "b"},
             {**endpoint, "alertname": "SageMakerEndpointErrorBudgetBurn", "severity": "page", "burn_rate": "14.4",
              "instance": "exporter-c", "endpoint": "c"},
             # controls: another exporter's endpoint, and a GPU alert on a host named like a failing exporter
             {**endpoint, "alertname": "SageMakerDataStale", "severity": "ticket", "instance": "exporter-d", "endpoint": "d"},
             {"alertname": "GPUTemperatureHigh", "severity": "ticket", "job": "gpu", "instance": "exporter-a", "gpu": "0"})
        receiver.wait("/ticket", alertname="SageMakerDataStale", endpoint="d")
        receiver.wait("/ticket", alertname="GPUTemperatureHigh", instance="exporter-a")
        time.sleep(3)  # the inhibited ones would have come with the controls
        endpoints = {a.get("endpoint") for a in receiver.at("/ticket") + receiver.at("/page")} - {None}
        assert endpoints == {"d"}, "endpoint alerts of a failing, dead or unscraped exporter must be held back"


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_real_alertmanager_one_rightsizing_ticket_per_variant(tmp_path):
    """RightsizingSavingsAvailable holds back SageMakerVariantOverProvisioned of the same variant."""
    with running_alertmanager(tmp_path) as (base, receiver):
        variant = {"severity": "ticket", "region": "us-east-1", "endpoint": "big", "variant": "v1",
                   "instance_type": "ml.g5.xlarge"}
        post(base, {"alertname": "RightsizingSavingsAvailable", "kind": "sagemaker_variant", **variant})
        receiver.wait("/ticket", alertname="RightsizingSavingsAvailable", endpoint="big")
        post(base, {"alertname": "SageMakerVariantOverProvisioned", **variant},
             {"alertname": "SageMakerVariantOverProvisioned", **variant, "endpoint": "small"})
        receiver.wait("/ticket", alertname="SageMakerVariantOverProvisioned", endpoint="small")
        time.sleep(3)  # the inhibited one would have come with the control
        assert not [a for a in receiver.at("/ticket")
                    if a["alertname"] == "SageMakerVariantOverProvisioned" and a["endpoint"] == "big"]
