"""The rightsizer on another PromQL store: the same history imported into the real VictoriaMetrics
(single node) gives the same findings and options as on Prometheus (tests/test_rightsize.py)."""

from __future__ import annotations

import json
import urllib.request

import pytest

import rightsize_histories as rh
from helpers import Process, free_port, require_binary, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def victoria(tmp_path_factory):
    binary = require_binary("victoria-metrics")
    tmp = tmp_path_factory.mktemp("victoria")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = Process([binary, f"-storageDataPath={tmp / 'data'}", "-retentionPeriod=100d",
                    f"-httpListenAddr=127.0.0.1:{port}"])
    try:
        proc.wait_http(url + "/health")
        om = tmp / "history.om"
        rh.write_openmetrics(om, rh.test_fleet(), rh.END)
        # VictoriaMetrics imports the Prometheus text format, whose timestamps are milliseconds; 16 MB at a time.
        chunk: list[str] = []
        with open(om) as lines:
            for line in lines:
                if not line.startswith("#"):
                    head, ts = line.rsplit(" ", 1)
                    chunk.append(f"{head} {int(ts) * 1000}\n")
                if len(chunk) >= 150_000 or (line.startswith("# EOF") and chunk):
                    urllib.request.urlopen(urllib.request.Request(url + "/api/v1/import/prometheus",
                                                                  data="".join(chunk).encode(), method="POST"),
                                           timeout=300).read()
                    chunk = []
        urllib.request.urlopen(url + "/internal/force_flush", timeout=60).read()
        yield url
    finally:
        proc.stop()


def test_same_findings_on_victoriametrics(victoria):
    result = run_cli("rightsize", "--prometheus", victoria, "--at", "2026-11-01T00:00:00Z", "--format", "json",
                     timeout=120)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    got = {r.get("endpoint") or r.get("instance"): (r["finding"], r["options"][0]["instance_type"] if r["options"]
                                                    else None) for r in doc["recommendations"]}
    assert got == {
        "gpu-idle-host": ("Idle", "g4dn.2xlarge"), "idle-gpu": ("Idle", "ml.g4dn.xlarge"),
        "batch-monthly": ("Overprovisioned", "ml.r5.large"), "llm-24gb": ("Overprovisioned", "ml.g6.xlarge"),
        "cpu-busy-host": ("Underprovisioned", "c5.2xlarge"), "legacy": ("Overprovisioned", None),
        "new-endpoint": ("InsufficientData", None), "spiky": ("Underprovisioned", "ml.g4dn.xlarge"),
        "steady": ("Optimized", "ml.c5.xlarge")}
    # 8386.24 + 1027.84 + 452.60 + 293.75, as on Prometheus
    assert doc["summary"]["estimated_monthly_savings_dollars"] == 10160.43
    spiky = [r for r in doc["recommendations"] if r.get("endpoint") == "spiky"][0]["autoscaling"]
    assert spiky["knee_reached"] and spiky["sustainable_invocations_per_instance_per_second"] == \
        pytest.approx(31.5, abs=0.01)
