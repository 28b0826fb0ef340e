"""`--names dcgm` (or `both`): the same readings under dcgm-exporter's names, labels and units, so dashboards
and tools written for DCGM (NVIDIA's Grafana dashboard 12239, OpenCost's GPU efficiency, Kruize) work with no
DCGM installed.

Units are DCGM's: utilization in percent, framebuffer in MiB, clocks in MHz, energy in mJ, power in W,
temperature in C; the profiling (DCGM_FI_PROF_*) ratios are 0-1 as DCGM's are. Labels are dcgm-exporter's:
gpu, UUID, device (nvidia<minor>), modelName, Hostname, pci_bus_id; MIG instances add GPU_I_ID and GPU_I_PROFILE.
A reading the GPU does not support is left out, as in MLScope's own names.
"""

from __future__ import annotations

import socket
from typing import Any, Iterable

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

MIB = 1024 * 1024

# (MLScope family, its extra label value or None, DCGM name, counter?, scale to DCGM's unit, DCGM's help)
DCGM_FIELDS = (
    ("gpu_utilization_ratio", None, "DCGM_FI_DEV_GPU_UTIL", False, 100, "GPU utilization (in %)."),
    ("gpu_memory_copy_utilization_ratio", None, "DCGM_FI_DEV_MEM_COPY_UTIL", False, 100,
     "Memory utilization (in %)."),
    ("gpu_memory_used_bytes", None, "DCGM_FI_DEV_FB_USED", False, 1 / MIB, "Framebuffer memory used (in MiB)."),
    ("gpu_memory_reserved_bytes", None, "DCGM_FI_DEV_FB_RESERVED", False, 1 / MIB,
     "Framebuffer memory reserved (in MiB)."),
    ("gpu_memory_total_bytes", None, "DCGM_FI_DEV_FB_TOTAL", False, 1 / MIB, "Framebuffer memory total (in MiB)."),
    ("gpu_temperature_celsius", None, "DCGM_FI_DEV_GPU_TEMP", False, 1, "GPU temperature (in C)."),
    ("gpu_power_usage_watts", None, "DCGM_FI_DEV_POWER_USAGE", False, 1, "Power draw (in W)."),
    ("gpu_power_limit_watts", None, "DCGM_FI_DEV_POWER_MGMT_LIMIT", False, 1, "Power management limit (in W)."),
    ("gpu_energy_consumed_joules_total", None, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", True, 1000,
     "Total energy consumption since boot (in mJ)."),
    ("gpu_sm_clock_hertz", None, "DCGM_FI_DEV_SM_CLOCK", False, 1e-6, "SM clock frequency (in MHz)."),
    ("gpu_memory_clock_hertz", None, "DCGM_FI_DEV_MEM_CLOCK", False, 1e-6, "Memory clock frequency (in MHz)."),
    ("gpu_ecc_errors_total", "corrected", "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", True, 1,
     "Total number of single-bit volatile ECC errors."),
    ("gpu_ecc_errors_total", "uncorrected", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", True, 1,
     "Total number of double-bit volatile ECC errors."),
    ("gpu_remapped_rows", "correctable", "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", True, 1,
     "Number of remapped rows for correctable errors"),
    ("gpu_remapped_rows", "uncorrectable", "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", True, 1,
     "Number of remapped rows for uncorrectable errors"),
    ("gpu_remapped_rows", "failure", "DCGM_FI_DEV_ROW_REMAP_FAILURE", False, 1,
     "Whether remapping of rows has failed"),
    ("gpu_pcie_replay_errors_total", None, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", True, 1,
     "Total number of PCIe retries."),
    ("gpu_pcie_transmit_bytes_per_second", None, "DCGM_FI_PROF_PCIE_TX_BYTES", False, 1,
     "The rate of data transmitted over the PCIe bus - including both protocol headers and data payloads - "
     "in bytes per second."),
    ("gpu_pcie_receive_bytes_per_second", None, "DCGM_FI_PROF_PCIE_RX_BYTES", False, 1,
     "The rate of data received over the PCIe bus - including both protocol headers and data payloads - "
     "in bytes per second."),
    ("gpu_graphics_active_ratio", None, "DCGM_FI_PROF_GR_ENGINE_ACTIVE", False, 1,
     "Ratio of time the graphics engine is active."),
    ("gpu_sm_active_ratio", None, "DCGM_FI_PROF_SM_ACTIVE", False, 1,
     "The ratio of cycles an SM has at least 1 warp assigned."),
    ("gpu_sm_occupancy_ratio", None, "DCGM_FI_PROF_SM_OCCUPANCY", False, 1,
     "The ratio of number of warps resident on an SM."),
    ("gpu_tensor_active_ratio", None, "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", False, 1,
     "Ratio of cycles the tensor (HMMA) pipe is active."),
    ("gpu_dram_active_ratio", None, "DCGM_FI_PROF_DRAM_ACTIVE", False, 1,
     "Ratio of cycles the device memory interface is active sending or receiving data."),
)
EXTRA_LABEL = {"gpu_ecc_errors_total": "type", "gpu_remapped_rows": "type"}


def hostname() -> str:
    return socket.gethostname()


def _gpu_key(labels: dict[str, str]) -> tuple[str, str]:
    return labels["gpu"], labels["uuid"]


def dcgm_families(mlscope: Iterable[Metric], identity: dict[tuple[str, str], dict[str, str]],
                  throttle_bits: dict[str, int], last_xid: dict[str, int]) -> list[Metric]:
    """MLScope's families of one scrape -> dcgm-exporter's. `identity` maps (gpu, uuid) to the DCGM labels;
    MIG instances' samples (gpu_mig_* families) carry gpu_i_id/gpu_i_profile, which become GPU_I_ID/GPU_I_PROFILE
    on the same DCGM names, as dcgm-exporter does."""
    by_name: dict[str, list[Any]] = {}
    for metric in mlscope:
        for s in metric.samples:
            by_name.setdefault(s.name.replace("gpu_mig_", "gpu_", 1), []).append(s)
    made: dict[str, Metric] = {}

    def add(name: str, counter: bool, help_: str, labels: dict[str, str], value: float) -> None:
        base = identity.get(_gpu_key(labels))
        if base is None:
            return
        family = made.get(name)
        if family is None:
            # dcgm-exporter's counters have no _total, which prometheus_client's text format cannot express as
            # a counter (it would announce NAME_total): they are untyped here, their values still counters.
            family = made[name] = Metric.__new__(Metric)
            family.name, family.documentation, family.type, family.unit, family.samples = (
                name, help_, "unknown" if counter else "gauge", "", [])
        if "gpu_i_id" in labels:
            base = {**base, "GPU_I_ID": labels["gpu_i_id"], "GPU_I_PROFILE": labels["gpu_i_profile"]}
        family.samples.append(Sample(name, base, value, None, None, None))

    for source, extra, name, counter, scale, help_ in DCGM_FIELDS:
        for s in by_name.get(source, ()):
            if extra is None or s.labels.get(EXTRA_LABEL[source]) == extra:
                add(name, counter, help_, s.labels, s.value * scale)
    # NVLink error counts, summed over links (DCGM's *_TOTAL fields)
    for label, name in (("replay", "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL"),
                        ("recovery", "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL"),
                        ("crc_flit", "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"),
                        ("crc_data", "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL")):
        totals: dict[tuple[str, str], tuple[dict, float]] = {}
        for s in by_name.get("gpu_nvlink_errors_total", ()):
            if s.labels["type"] == label:
                labels, total = totals.get(_gpu_key(s.labels), (s.labels, 0.0))
                totals[_gpu_key(s.labels)] = (labels, total + s.value)
        for labels, total in totals.values():
            add(name, True, f"Total number of NVLink {label} errors.", labels, total)
    # derived: free framebuffer, the throttle bitmask, the last Xid
    used = {_gpu_key(s.labels): s.value for s in by_name.get("gpu_memory_used_bytes", ()) if "gpu_i_id" not in s.labels}
    reserved = {_gpu_key(s.labels): s.value for s in by_name.get("gpu_memory_reserved_bytes", ())
                if "gpu_i_id" not in s.labels}
    for s in by_name.get("gpu_memory_total_bytes", ()):
        key = _gpu_key(s.labels)
        if key in used and "gpu_i_id" not in s.labels:
            free = s.value - used[key] - reserved.get(key, 0.0)
            add("DCGM_FI_DEV_FB_FREE", False, "Framebuffer memory free (in MiB).", s.labels, free / MIB)
    for s in by_name.get("gpu_memory_free_bytes", ()):  # MIG instances report their free memory directly
        add("DCGM_FI_DEV_FB_FREE", False, "Framebuffer memory free (in MiB).", s.labels, s.value / MIB)
    for s in by_name.get("gpu_up", ()):
        if s.value == 1 and s.labels["uuid"] in throttle_bits:
            add("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", False, "Current clock throttle reasons (bitmask).", s.labels,
                float(throttle_bits[s.labels["uuid"]]))
        if s.value == 1:
            add("DCGM_FI_DEV_XID_ERRORS", False, "Value of the last XID error encountered.", s.labels,
                float(last_xid.get(s.labels["uuid"], 0)))
    return list(made.values())
