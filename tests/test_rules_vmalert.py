"""The shipped rules evaluated by vmalert against VictoriaMetrics (MetricsQL), not only by
Prometheus: the configuration series (alerts/config.rules.yml) are recorded, the threshold and
lookup joins that read them give the same answers, and $externalLabels renders in annotations."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
import yaml

from helpers import ROOT, Process, WebhookReceiver, free_port, require_binary

RULE_FILES = sorted((ROOT / "alerts").glob("*.rules.yml"))
RUNBOOK_BASE = "https://runbooks.example.com/mlscope/runbook.md"
ENDPOINT = 'account="111122223333",region="us-east-1"'


def history(now: float) -> str:
    """Ten minutes of raw exporter series at 30 s, in Prometheus text format with timestamps.
    ok: InService, 1 instance, 10 req/s, 1% 5xx; oos: OutOfService; gpu 0 of n1: hung (busy at
    near-idle power), gpu 1: thermal slowdown (harmful) and sw_power_cap (normal)."""
    lines = []
    for step in range(21):
        ts = int((now - 600 + step * 30) * 1000)
        series = {
            f'sagemaker_endpoint_info{{{ENDPOINT},endpoint="ok",status="InService"}}': 1,
            f'sagemaker_endpoint_info{{{ENDPOINT},endpoint="oos",status="OutOfService"}}': 1,
            f'sagemaker_variant_instances{{{ENDPOINT},endpoint="ok",variant="v1"}}': 1,
            f'sagemaker_variant_instances{{{ENDPOINT},endpoint="oos",variant="v1"}}': 1,
            f'sagemaker_invocations_total{{{ENDPOINT},endpoint="ok",variant="v1"}}': 300 * step,
            f'sagemaker_invocation_5xx_errors_total{{{ENDPOINT},endpoint="ok",variant="v1"}}': 3 * step,
            'gpu_utilization_ratio{instance="n1",gpu="0",uuid="GPU-0"}': 1,
            'gpu_power_usage_watts{instance="n1",gpu="0",uuid="GPU-0"}': 80,
            'gpu_power_limit_watts{instance="n1",gpu="0",uuid="GPU-0"}': 700,
            'gpu_clock_throttle_active{instance="n1",gpu="1",uuid="GPU-1",reason="hw_thermal_slowdown"}': 1,
            'gpu_clock_throttle_active{instance="n1",gpu="1",uuid="GPU-1",reason="sw_power_cap"}': 1,
        }
        lines += [f"{name} {value} {ts}" for name, value in series.items()]
    return "\n".join(lines) + "\n"


def query(vm: str, expr: str) -> dict[str, float]:
    body = requests.get(vm + "/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", body
    return {r["metric"].get("endpoint") or r["metric"].get("reason") or "": float(r["value"][1])
            for r in body["data"]["result"]}


def assert_settles(vm: str, expr: str, expected: dict[str, float], timeout: float = 60) -> None:
    """`expr` comes to equal `expected` within `timeout`. Rules that read other groups' results settle over a
    few evaluation cycles (more on a loaded machine), so a first, partial answer is not the verdict."""
    deadline = time.monotonic() + timeout
    result: dict[str, float] = {}
    while time.monotonic() < deadline:
        result = query(vm, expr)
        if result == expected:
            return result
        time.sleep(1)
    assert result == expected, f"{expr}: {result} after {timeout}s, expected {expected}"


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_vmalert_evaluates_the_shipped_rules(tmp_path: Path):
    vm_binary, vmalert_binary = require_binary("victoria-metrics"), require_binary("vmalert")
    receiver = WebhookReceiver()
    vm_port, vmalert_port = free_port(), free_port()
    vm = f"http://127.0.0.1:{vm_port}"
    procs = [Process([vm_binary, f"-storageDataPath={tmp_path / 'vm'}", f"-httpListenAddr=127.0.0.1:{vm_port}",
                      "-search.latencyOffset=1s", "-retentionPeriod=1"])]
    try:
        procs[0].wait_http(vm + "/health", timeout=30)
        resp = requests.post(vm + "/api/v1/import/prometheus", data=history(time.time()), timeout=10)
        assert resp.status_code == 204, resp.text
        requests.get(vm + "/internal/force_flush", timeout=10)
        procs.append(Process([vmalert_binary, *[f"-rule={path}" for path in RULE_FILES],
                              f"-datasource.url={vm}", f"-remoteWrite.url={vm}", f"-notifier.url={receiver.url}",
                              "-evaluationInterval=5s", f"-external.label=runbook_base={RUNBOOK_BASE}",
                              f"-httpListenAddr=127.0.0.1:{vmalert_port}"]))
        procs[1].wait_http(f"http://127.0.0.1:{vmalert_port}/health", timeout=30)

        assert_settles(vm, "mlscope:config:burn_rate_min_requests", {"": 100})
        # scalar(config) default objective, lookup join on the serving statuses
        assert_settles(vm, "endpoint:sagemaker_slo_objective:ratio", {"ok": 0.999, "oos": 0.999})
        assert_settles(vm, "endpoint:sagemaker_serving:bool", {"ok": 1, "oos": 0})
        # 1% 5xx against a 0.1% allowance: the offset-difference ratio, then down
        assert_settles(vm, "round(endpoint:sagemaker_5xx_errors:ratio_rate5m, 0.0001)", {"ok": 0.01})
        assert_settles(vm, "endpoint:sagemaker_available:bool", {"ok": 0, "oos": 0})
        assert_settles(vm, "instance_gpu:gpu_clock_throttle_harmful:active", {"hw_thermal_slowdown": 1})
        # the wall's health: ok burns 1h budget at 0.01 / 0.001 = 10 (at risk from 1, failing from 14.4), no p99
        # or data-age series (those signals do not count), InService with an instance; oos does not serve
        assert_settles(vm, "endpoint:sagemaker_health:state", {"ok": 1, "oos": 2})

        # GPUHung is pending (for: 10m) with its annotations rendered, runbook base included
        deadline = time.monotonic() + 60
        hung: list = []
        while not hung and time.monotonic() < deadline:
            alerts = requests.get(f"http://127.0.0.1:{vmalert_port}/api/v1/alerts", timeout=10).json()
            hung = [a for a in alerts["data"]["alerts"] if a["labels"].get("alertname") == "GPUHung"]
            time.sleep(1)
        assert hung, "vmalert never evaluated GPUHung"
        assert hung[0]["annotations"]["runbook_url"] == RUNBOOK_BASE + "#gpuhung"
        assert hung[0]["labels"]["gpu"] == "0"

        # and no rule failed to evaluate in MetricsQL
        groups = requests.get(f"http://127.0.0.1:{vmalert_port}/api/v1/rules", timeout=10).json()["data"]["groups"]
        failing = {rule["name"]: rule["lastError"] for group in groups for rule in group["rules"] if rule.get("lastError")}
        assert failing == {}
        shipped = sum(len(group["rules"]) for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"])
        assert len([rule for group in groups for rule in group["rules"]]) == shipped
    finally:
        for proc in reversed(procs):
            proc.stop()
        receiver.close()
