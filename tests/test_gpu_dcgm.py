"""`--names dcgm|both`: dcgm-exporter's names, labels and units, from the same readings (fake NVML), and every
query of NVIDIA's DCGM dashboard (grafana.com 12239) returning data from `--simulate` through real Prometheus."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

import helpers
from test_gpu import Rig, clock, fake  # noqa: F401 (fixtures: 3 fake GPUs on a test clock)
from test_gpu_component import real_scrape

MIB = 1024 * 1024
DASHBOARD = json.loads((Path(__file__).parent / "data" / "dcgm-exporter-dashboard-queries.json").read_text())
DCGM_LABELS = {"gpu", "UUID", "device", "modelName", "Hostname", "pci_bus_id"}


def dcgm_rig(fake, clock, names: str) -> Rig:
    rig = Rig(fake, clock, names=names)
    rig.sampler.sample_once()
    clock.advance(5)
    rig.sampler.sample_once()
    return rig


def test_dcgm_names_units_and_labels(fake, clock):
    fake.set_values(0, utilization=0.5, memory_used=10_000 * MIB, power_w=312.5, temperature=61, throttle=0x4)
    rig = dcgm_rig(fake, clock, "dcgm")
    try:
        fake.emit_xid(1, 79)
        rig.xid.record(1, fake.gpus()[1].uuid, 79)  # as the event thread does
        parsed = rig.scrape()
    finally:
        rig.close()
    gpu0 = fake.gpus()[0]
    assert not [n for n in parsed if n.startswith("gpu_")]  # dcgm only
    assert helpers.value(parsed, "DCGM_FI_DEV_GPU_UTIL", gpu="0") == 50  # percent
    assert helpers.value(parsed, "DCGM_FI_DEV_FB_USED", gpu="0") == 10_000  # MiB
    assert helpers.value(parsed, "DCGM_FI_DEV_FB_FREE", gpu="0") == (gpu0.memory_total - gpu0.memory_reserved) / MIB \
        - 10_000
    assert helpers.value(parsed, "DCGM_FI_DEV_POWER_USAGE", gpu="0") == 312.5  # W
    assert helpers.value(parsed, "DCGM_FI_DEV_GPU_TEMP", gpu="0") == 61
    assert helpers.value(parsed, "DCGM_FI_DEV_SM_CLOCK", gpu="0") == gpu0.max_sm_mhz  # MHz (not power-capped)
    assert helpers.value(parsed, "DCGM_FI_DEV_MEM_CLOCK", gpu="0") == gpu0.mem_mhz
    assert helpers.value(parsed, "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", gpu="0") == 0x4
    assert helpers.value(parsed, "DCGM_FI_DEV_XID_ERRORS", gpu="1") == 79 and helpers.value(
        parsed, "DCGM_FI_DEV_XID_ERRORS", gpu="0") == 0
    # profiling ratios are 0-1, as DCGM's; the fake's SM activity is 0.9 x its utilization
    assert helpers.value(parsed, "DCGM_FI_PROF_SM_ACTIVE", gpu="0") == pytest.approx(0.45, abs=0.01)
    assert helpers.value(parsed, "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", gpu="0") == pytest.approx(0.30, abs=0.01)
    assert helpers.value(parsed, "DCGM_FI_PROF_GR_ENGINE_ACTIVE", gpu="0") == pytest.approx(0.50, abs=0.01)
    energy = helpers.value(parsed, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", gpu="0")
    assert energy == int(gpu0.energy_mj)  # mJ
    labels = parsed["DCGM_FI_DEV_GPU_UTIL"][0][0]
    assert set(labels) == DCGM_LABELS
    assert labels == {"gpu": "0", "UUID": gpu0.uuid, "device": "nvidia0", "modelName": gpu0.name,
                      "Hostname": socket.gethostname(), "pci_bus_id": gpu0.pci_bus_id}


@pytest.mark.integration
def test_both_serves_each_name_once(fake, clock):
    rig = dcgm_rig(fake, clock, "both")
    try:
        text = rig.text()
    finally:
        rig.close()
    parsed = helpers.samples(text)
    assert helpers.value(parsed, "gpu_utilization_ratio", gpu="1") * 100 == helpers.value(
        parsed, "DCGM_FI_DEV_GPU_UTIL", gpu="1")
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types))
    # It parses; promtool's lint flags only what dcgm-exporter's own names and labels carry (modelName, UUID,
    # ..._COUNTER), and MLScope's part stays lint-clean.
    result = helpers.promtool_check_metrics(text)
    lint = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode in (0, 3) and lint
    assert all(line.startswith("DCGM_FI_") and ("label names should be written in 'snake_case'" in line
                                                or "should not include type 'counter'" in line) for line in lint), lint
    ours = "\n".join(line for line in text.splitlines() if "DCGM_FI_" not in line) + "\n"
    assert helpers.promtool_check_metrics(ours).returncode == 0


def test_unsupported_field_is_left_out_not_zero(fake, clock):
    fake.unsupported(1, "nvmlDeviceGetPowerUsage")
    rig = dcgm_rig(fake, clock, "dcgm")
    try:
        parsed = rig.scrape()
    finally:
        rig.close()
    assert {lbl["gpu"] for lbl, _ in parsed["DCGM_FI_DEV_POWER_USAGE"]} == {"0", "2"}


@pytest.mark.integration
def test_every_query_of_nvidias_dcgm_dashboard_has_data_from_simulate(tmp_path, capsys):
    exporter, url = helpers.start_exporter("gpu-exporter", "--simulate", "2", "--names", "dcgm",
                                           "--sample-interval", "1s")
    target = url.removeprefix("http://")
    prom = helpers.Prometheus({"global": {"scrape_interval": "1s"},
                               "scrape_configs": [helpers.scrape_config("dcgm", [target])]}, tmp_path)
    try:
        prom.wait_for("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", min_results=2)
        instances = {r["metric"]["instance"] for r in prom.query("DCGM_FI_DEV_GPU_TEMP")}  # the $instance variable
        assert instances == {target}
        empty = []
        for query in DASHBOARD["queries"]:
            expr = query["expr"].replace("$instance", target).replace("$gpu", "0|1")
            if not prom.query(expr):
                empty.append(f'{query["panel"]}: {expr}')
        with capsys.disabled():
            print(f"\nDCGM dashboard 12239: {len(DASHBOARD['queries']) - len(empty)} of {len(DASHBOARD['queries'])} "
                  "queries have data from --simulate --names dcgm")
        assert len(DASHBOARD["queries"]) >= 8 and empty == []
    finally:
        prom.stop()
        exporter.stop()


@pytest.mark.skipif(os.environ.get("MLSCOPE_TEST_REAL_NVML") != "1", reason="set MLSCOPE_TEST_REAL_NVML=1 on a GPU machine")
def test_real_nvml_in_both_naming_modes():
    parsed = helpers.samples(real_scrape("MLSCOPE_TEST_SAVE_DCGM_SCRAPE", "--names", "both"))
    for labels, used in parsed["gpu_memory_used_bytes"]:
        assert helpers.value(parsed, "DCGM_FI_DEV_FB_USED", gpu=labels["gpu"]) == used / MIB
        dcgm = [lbl for lbl, _ in parsed["DCGM_FI_DEV_FB_USED"] if lbl["gpu"] == labels["gpu"]][0]
        assert set(dcgm) >= DCGM_LABELS and dcgm["UUID"] == labels["uuid"] and dcgm["device"].startswith("nvidia")
    assert parsed.get("DCGM_FI_DEV_GPU_TEMP") and parsed.get("DCGM_FI_DEV_POWER_USAGE")
