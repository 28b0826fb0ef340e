"""NVLink: link state and error counters per link, and data moved over all links, where the GPU has NVLink.

NVML: nvmlDeviceGetNvLinkState and nvmlDeviceGetNvLinkErrorCounter per link, and the field values
NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX/RX (KiB, scope 0xFFFFFFFF: summed over links) for throughput. A GPU
without NVLink (PCIe cards) answers NotSupported on link 0 and is not asked again.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Callable

ALL_LINKS = 0xFFFFFFFF
KIB = 1024
# (label, pynvml constant)
ERROR_COUNTERS = (("replay", "NVML_NVLINK_ERROR_DL_REPLAY"), ("recovery", "NVML_NVLINK_ERROR_DL_RECOVERY"),
                  ("crc_flit", "NVML_NVLINK_ERROR_DL_CRC_FLIT"), ("crc_data", "NVML_NVLINK_ERROR_DL_CRC_DATA"))
THROUGHPUT = (("gpu_nvlink_transmit_bytes", "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX"),
              ("gpu_nvlink_receive_bytes", "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX"))
FAMILIES = [
    ("gpu_nvlink_up", "1 when the NVLink link is active.", ["link"], False),
    ("gpu_nvlink_errors", "NVLink data-link errors per link since the driver loaded, by type (replay, recovery, "
     "crc_flit, crc_data).", ["link", "type"], True),
    ("gpu_nvlink_transmit_bytes", "Data transmitted over all NVLink links (payload, NVML's throughput counter).", [],
     True),
    ("gpu_nvlink_receive_bytes", "Data received over all NVLink links (payload, NVML's throughput counter).", [], True),
]


def links(nvml: ModuleType, dev: Any, call: Callable[..., Any], missing: object) -> list[int]:
    """The links this GPU has (asked once per device: up to NVML_NVLINK_MAX_LINKS calls)."""
    known = dev.static.get("nvlinks")
    if known is None:
        known = []
        if call(dev, "nvlink", "nvmlDeviceGetNvLinkState", 0) is not missing:
            for link in range(getattr(nvml, "NVML_NVLINK_MAX_LINKS", 18)):
                try:
                    nvml.nvmlDeviceGetNvLinkState(dev.handle, link)
                except nvml.NVMLError:
                    break  # past the last link
                known.append(link)
        dev.static["nvlinks"] = known
    return known


def read(nvml: ModuleType, dev: Any, call: Callable[..., Any], missing: object, add: Callable) -> None:
    """Rows (family, extra label values, value) for one GPU's NVLink (counter families without _total)."""
    found = links(nvml, dev, call, missing)
    if not found:
        return
    for link in found:
        state = call(dev, "nvlink", "nvmlDeviceGetNvLinkState", link)
        if state is not missing:
            add(("gpu_nvlink_up", [str(link)], 1.0 if state == getattr(nvml, "NVML_FEATURE_ENABLED", 1) else 0.0))
        for label, const in ERROR_COUNTERS:
            count = call(dev, f"nvlink_{label}", "nvmlDeviceGetNvLinkErrorCounter", link, getattr(nvml, const))
            if count is not missing:
                add(("gpu_nvlink_errors", [str(link), label], float(count)))
    wanted = [(name, getattr(nvml, const)) for name, const in THROUGHPUT if hasattr(nvml, const)]
    values = call(dev, "nvlink_throughput", "nvmlDeviceGetFieldValues", [(fid, ALL_LINKS) for _, fid in wanted])
    if values is missing:
        return
    for (name, _), value in zip(wanted, values):
        if value.nvmlReturn == getattr(nvml, "NVML_SUCCESS", 0):
            add((name, [], float(value.value.ullVal) * KIB))
