"""MIG: per GPU instance memory and GPM activity, with GPU_I_ID/GPU_I_PROFILE-style labels, from NVML's MIG
query functions (the fake NVML implements pynvml's real ones, with pynvml's structs and an H100's profiles)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import helpers
from mlscope.gpu import fakenvml
from test_gpu import Rig, clock, fake  # noqa: F401 (fixtures: 3 fake GPUs on a test clock)

MIB = 1024 * 1024
GPU_CODE = Path(__file__).resolve().parent.parent / "exporters" / "gpu"


def scrape_after_two_samples(fake, clock, names="mlscope"):
    rig = Rig(fake, clock, names=names)
    try:
        rig.scrape()  # the collector finds the MIG instances; the sampler samples those
        rig.sampler.sample_once()
        clock.advance(5)
        rig.sampler.sample_once()
        return rig.scrape()
    finally:
        rig.close()


def mig_values(parsed, name):
    return {(lbl["gpu"], lbl["gpu_i_id"], lbl["gpu_i_profile"]): v for lbl, v in parsed.get(name, [])}


def test_mig_instances_memory_and_gpm_with_instance_labels(fake, clock):
    fake.configure_mig(0, ["3g.40gb", "2g.20gb", "1g.10gb"], load=[1.0, 0.8, 0.6])
    fake.set_values(0, utilization=0.5)
    parsed = scrape_after_two_samples(fake, clock)
    totals = mig_values(parsed, "gpu_mig_memory_total_bytes")
    assert totals == {("0", "1", "3g.40gb"): 40320 * MIB, ("0", "3", "2g.20gb"): 20096 * MIB,
                      ("0", "5", "1g.10gb"): 9856 * MIB}  # GPU 1 has MIG off: no instances
    used, free = mig_values(parsed, "gpu_mig_memory_used_bytes"), mig_values(parsed, "gpu_mig_memory_free_bytes")
    for key, total in totals.items():
        assert used[key] + free[key] == total
    # the 3g instance at load 1.0: (0.1 + 0.6 * 0.5) of 40320 MiB
    assert used[("0", "1", "3g.40gb")] == int(40320 * MIB * 0.4) // MIB * MIB
    # GPM per instance: the fake's SM activity is 0.9 x utilization, scaled by each instance's load
    sm = mig_values(parsed, "gpu_mig_sm_active_ratio")
    assert sm == pytest.approx({("0", "1", "3g.40gb"): 0.45, ("0", "3", "2g.20gb"): 0.36,
                                ("0", "5", "1g.10gb"): 0.27}, abs=1e-6)
    assert mig_values(parsed, "gpu_mig_tensor_active_ratio")[("0", "1", "3g.40gb")] == pytest.approx(0.3, abs=1e-6)
    # the whole GPU's utilization is not available in MIG mode (NVML says NotSupported): left out, not 0
    assert {lbl["gpu"] for lbl, _ in parsed["gpu_utilization_ratio"]} == {"1", "2"}
    assert helpers.value(parsed, "gpu_up", gpu="0") == 1


def test_mig_instances_carry_their_mig_uuid_and_share_of_the_gpu(fake, clock):
    """The MIG device UUID (what the device plugin hands a pod) on every gpu_mig_* series and on the processes
    running in the instance; the instance's compute slices over the H100's 7 as its share of the GPU."""
    fake.configure_mig(2, ["3g.40gb", "2g.20gb", "1g.10gb"])
    parsed = scrape_after_two_samples(fake, clock)
    fake.nvmlInit()
    try:
        parent = fake.nvmlDeviceGetHandleByIndex(2)
        handles = [fake.nvmlDeviceGetMigDeviceHandleByIndex(parent, i) for i in range(3)]
        expected = {str(fake.nvmlDeviceGetGpuInstanceId(h)): fake.nvmlDeviceGetUUID(h) for h in handles}
    finally:
        fake.nvmlShutdown()
    assert all(uuid.startswith("MIG-") for uuid in expected.values()) and len(set(expected.values())) == 3
    for name in ("gpu_mig_memory_used_bytes", "gpu_mig_sm_active_ratio", "gpu_mig_compute_slices_ratio"):
        assert {lbl["gpu_i_id"]: lbl["mig_uuid"] for lbl, _ in parsed[name]} == expected, name
    slices = {lbl["gpu_i_profile"]: v for lbl, v in parsed["gpu_mig_compute_slices_ratio"]}
    assert slices == pytest.approx({"3g.40gb": 3 / 7, "2g.20gb": 2 / 7, "1g.10gb": 1 / 7})
    # GPU 2's three processes, spread over the instances in turn (NVML's gpuInstanceId on each process)
    on_gpu2 = sorted((int(lbl["pid"]), lbl["mig_uuid"]) for lbl, _ in parsed["gpu_process_memory_used_bytes"]
                     if lbl["gpu"] == "2")
    assert [mig for _pid, mig in on_gpu2] == [expected["1"], expected["3"], expected["5"]]
    assert {lbl["mig_uuid"] for lbl, _ in parsed["gpu_process_memory_used_bytes"] if lbl["gpu"] != "2"} == {""}


def test_the_fake_lists_a_mig_devices_own_processes_on_its_handle(fake):
    fake.configure_mig(1, ["4g.40gb", "3g.40gb"])
    fake.nvmlInit()
    try:
        parent = fake.nvmlDeviceGetHandleByIndex(1)
        every = fake.nvmlDeviceGetComputeRunningProcesses(parent)
        assert [(p.gpuInstanceId, p.computeInstanceId) for p in every] == [(1, 0), (3, 0)]
        second = fake.nvmlDeviceGetMigDeviceHandleByIndex(parent, 1)
        assert [p.pid for p in fake.nvmlDeviceGetComputeRunningProcesses(second)] == [every[1].pid]
    finally:
        fake.nvmlShutdown()


def test_mig_in_dcgm_names_carries_gpu_i_id_and_profile(fake, clock):
    fake.configure_mig(1, ["7g.80gb"])
    fake.set_values(1, utilization=0.4)
    parsed = scrape_after_two_samples(fake, clock, names="dcgm")
    used = [(lbl, v) for lbl, v in parsed["DCGM_FI_DEV_FB_USED"] if "GPU_I_ID" in lbl]
    assert len(used) == 1
    labels, value = used[0]
    assert labels["GPU_I_ID"] == "1" and labels["GPU_I_PROFILE"] == "7g.80gb" and labels["gpu"] == "1"
    assert labels["UUID"] == fake.gpus()[1].uuid  # the parent GPU's, as dcgm-exporter
    assert value == int(80896 * MIB * (0.1 + 0.6 * 0.4)) // MIB * MIB / MIB  # MiB
    sm = [(lbl, v) for lbl, v in parsed["DCGM_FI_PROF_SM_ACTIVE"] if "GPU_I_ID" in lbl]
    assert sm and sm[0][1] == pytest.approx(0.36, abs=1e-6)
    assert helpers.value(parsed, "DCGM_FI_DEV_FB_FREE", gpu="1", GPU_I_ID="1") == 80896 - value


def test_no_mig_functions_in_the_installed_pynvml_means_no_mig_series(fake, clock, monkeypatch):
    fake.configure_mig(0, ["1g.10gb"])
    monkeypatch.delattr(fakenvml, "nvmlDeviceGetMigMode")
    parsed = scrape_after_two_samples(fake, clock)
    assert "gpu_mig_memory_used_bytes" not in parsed
    assert helpers.value(parsed, "mlscope_collector_up", collector="gpu") == 1


def test_the_exporter_never_changes_mig_mode_or_instances():
    """Only NVML's query functions: nothing that sets a mode, creates or destroys an instance, or resets."""
    writes = re.compile(r"nvml\w*(Set(?!Create|Free|Wait)|Create(?<!EventSetCreate)|Destroy|Reset|Clear)\w*")
    for path in GPU_CODE.glob("*.py"):
        if path.name == "fakenvml.py":
            continue
        found = [m.group(0) for m in writes.finditer(path.read_text()) if m.group(0) != "nvmlEventSetCreate"]
        assert found == [], (path.name, found)
