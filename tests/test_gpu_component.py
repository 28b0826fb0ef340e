"""GPU exporter as a real process on 127.0.0.1: simulated GPUs, no NVML, injected faults, real Prometheus.

With MLSCOPE_TEST_REAL_NVML=1 (on a GPU machine) test_real_nvml_process scrapes the real GPUs too.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import requests

from helpers import Prometheus, promtool_check_metrics, samples, scrape, scrape_config, start_exporter, value
from test_gpu import REAL, check_invariants, gpu_values

FAKE = "mlscope.gpu.fakenvml"


def scrape_until(base: str, predicate, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    parsed: dict = {}
    while time.monotonic() < deadline:
        parsed = samples(scrape(base))
        if predicate(parsed):
            return parsed
        time.sleep(0.1)
    raise AssertionError(f"condition not met; last scrape: { {k: v for k, v in parsed.items() if 'up' in k} }")


def write_control(path: Path, **data) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def test_simulated_gpus_real_process():
    proc, base = start_exporter("gpu-exporter", "--simulate", "4", "--sample-interval", "0.2")
    try:
        parsed = scrape_until(base, lambda p: len(p.get("gpu_sm_active_ratio", [])) == 4)
        text = scrape(base)
        parsed = samples(text)
        check_invariants(parsed)
        assert gpu_values(parsed, "gpu_up") == {"0": 1, "1": 1, "2": 1, "3": 1}
        assert all(lbl["simulated"] == "true" for lbl, _v in parsed["gpu_info"])
        for name in ("gpu_utilization_ratio", "gpu_power_usage_watts", "gpu_temperature_celsius",
                     "gpu_energy_consumed_joules_total", "gpu_pcie_receive_bytes_per_second",
                     "gpu_tensor_active_ratio", "gpu_memory_reserved_bytes"):
            assert len(parsed[name]) == 4, name
        assert len(parsed["gpu_process_memory_used_bytes"]) >= 4
        assert value(parsed, "mlscope_collector_up", collector="gpu") == 1
        assert value(parsed, "mlscope_collector_up", collector="gpm") == 1
        # OpenMetrics when asked for
        resp = requests.get(base + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"},
                            timeout=10)
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        assert "# TYPE gpu_energy_consumed_joules counter" in resp.text and resp.text.endswith("# EOF\n")
        # values change over time (energy always grows)
        later = scrape_until(base, lambda p: value(p, "gpu_energy_consumed_joules_total", gpu="0")
                             > value(parsed, "gpu_energy_consumed_joules_total", gpu="0"))
        assert value(later, "gpu_up", gpu="0") == 1
    finally:
        out = proc.stop()
    assert "Traceback" not in out


def nvml_loads() -> bool:
    import pynvml
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def test_no_nvml_real_process():
    """The real pynvml on a machine without an NVIDIA driver: serves, collector down, one log line."""
    if nvml_loads():
        pytest.skip("NVML is present on this machine")
    proc, base = start_exporter("gpu-exporter", "--retry-interval", "0.2")
    try:
        for _ in range(5):
            parsed = samples(scrape(base))
            time.sleep(0.15)
        assert value(parsed, "mlscope_collector_up", collector="gpu") == 0
        assert not [n for n in parsed if n.startswith("gpu_")]
        assert requests.get(base + "/-/healthy", timeout=5).status_code == 200
        assert proc.proc.poll() is None
    finally:
        out = proc.stop()
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if "NVML library not found" in line]
    assert len(lines) == 1, out
    assert "level=warning" in lines[0]


@pytest.mark.integration
def test_fault_injection_end_to_end(tmp_path):
    """The fake NVML in a real process, steered through its control file."""
    control = tmp_path / "control.json"
    write_control(control, faults=["nvmlInit=LibraryNotFound"])
    env = {"MLSCOPE_NVML_MODULE": FAKE, "MLSCOPE_FAKENVML_GPUS": "3", "MLSCOPE_FAKENVML_CONTROL": str(control),
           "MLSCOPE_RETRY_INTERVAL": "0.2"}
    proc, base = start_exporter("gpu-exporter", env=env)
    try:
        parsed = samples(scrape(base))
        assert value(parsed, "mlscope_collector_up", collector="gpu") == 0
        # the driver appears: the periodic nvmlInit retry picks it up
        write_control(control, faults=[])
        parsed = scrape_until(base, lambda p: value(p, "mlscope_collector_up", collector="gpu") == 1
                              and p.get("mlscope_collector_up") and len(p["mlscope_collector_up"]) == 3
                              and value(p, "mlscope_collector_up", collector="xid") == 1)  # events registered
        assert gpu_values(parsed, "gpu_up") == {"0": 1, "1": 1, "2": 1}
        # the fake NVML is never mistaken for real GPUs on a dashboard
        assert [labels.get("simulated") for labels, _ in parsed["gpu_info"]] == ["true"] * 3
        # GPU 1 falls off the bus; an Xid arrives on GPU 0; GPU 2 loses its power reading
        write_control(control, faults=["1:*=GpuIsLost", "2:nvmlDeviceGetPowerUsage=NotSupported"], xid=[[0, 79]])
        parsed = scrape_until(base, lambda p: gpu_values(p, "gpu_up").get("1") == 0
                              and any(lbls["xid"] == "79" and v > 0 for lbls, v in p.get("gpu_xid_errors_total", [])))
        assert gpu_values(parsed, "gpu_up") == {"0": 1, "1": 0, "2": 1}
        assert set(gpu_values(parsed, "gpu_utilization_ratio")) == {"0", "2"}
        assert value(parsed, "gpu_xid_errors_total", gpu="0", xid="79") == 1
        assert value(parsed, "mlscope_collector_up", collector="gpu") == 1
        parsed = samples(scrape(base))
        assert set(gpu_values(parsed, "gpu_power_usage_watts")) == {"0"}  # left out, not 0
        degraded = scrape(base)
        # it comes back
        write_control(control, faults=[], xid=[[0, 79]])
        parsed = scrape_until(base, lambda p: gpu_values(p, "gpu_up") == {"0": 1, "1": 1, "2": 1})
        assert value(parsed, "gpu_xid_errors_total", gpu="0", xid="79") == 1  # the counter is kept
        result = promtool_check_metrics(degraded)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        out = proc.stop()
    assert "Traceback" not in out
    assert "GPU 1" in out and "failed" in out and "is back" in out


def real_scrape(save_env: str, *args: str) -> str:
    """One scrape of `mlscope gpu-exporter ARGS` on the real GPUs once the sampler has taken two rounds (GPM
    needs two samples), saved to the file $save_env names if set; the exporter must not have printed a traceback."""
    proc, base = start_exporter("gpu-exporter", "--sample-interval", "0.5", *args)
    try:
        scrape_until(base, lambda p: p.get("gpu_pcie_receive_bytes_per_second"), timeout=20)
        time.sleep(1.2)
        text = scrape(base)
    finally:
        out = proc.stop()
    assert "Traceback" not in out
    save = os.environ.get(save_env)
    if save:
        Path(save).write_text(text)
    return text


@pytest.mark.gpu
@pytest.mark.skipif(not REAL, reason="set MLSCOPE_TEST_REAL_NVML=1 on a GPU machine")
def test_real_nvml_process():
    parsed = samples(real_scrape("MLSCOPE_TEST_SAVE_PROCESS_SCRAPE"))
    check_invariants(parsed)
    assert "simulated" not in parsed["gpu_info"][0][0]


@pytest.mark.integration
def test_prometheus_scrapes_simulated_gpus(tmp_path):
    proc, base = start_exporter("gpu-exporter", "--simulate", "4")
    try:
        target = base.removeprefix("http://")
        prom = Prometheus({"global": {"scrape_interval": "1s"},
                           "scrape_configs": [scrape_config("gpu", [target])]}, tmp_path)
        try:
            up = prom.wait_for('up{job="gpu"} == 1')
            assert up[0]["value"][1] == "1"
            series = prom.wait_for("gpu_utilization_ratio", min_results=4)
            assert len(series) == 4
            assert {s["metric"]["gpu"] for s in series} == {"0", "1", "2", "3"}
            assert all(s["metric"]["uuid"].startswith("GPU-") for s in series)
            prom.wait_for("rate(gpu_energy_consumed_joules_total[10s]) > 0", timeout=30, min_results=4)
            info = prom.query('gpu_info{simulated="true"}')
            assert len(info) == 4
            result = promtool_check_metrics(scrape(base))
            assert result.returncode == 0, result.stdout + result.stderr
        finally:
            prom.stop()
    finally:
        proc.stop()
