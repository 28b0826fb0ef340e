"""NVLink state, per-link error counters and throughput (fake NVML with pynvml's NVLink functions and field
values); none of it on a GPU without NVLink."""

from __future__ import annotations


import helpers
from test_gpu import Rig, clock, fake  # noqa: F401 (fixtures: 3 fake GPUs on a test clock)


def scrape(fake, clock, names="mlscope", before=None):
    rig = Rig(fake, clock, names=names)
    try:
        rig.scrape()
        if before:
            before()
        clock.advance(10)
        return rig.scrape()
    finally:
        rig.close()


def test_nvlink_links_errors_and_throughput(fake, clock):
    fake.set_values(0, nvlinks=4, nvlink_down={3}, utilization=0.5,
                    nvlink_errors={(1, fake.NVML_NVLINK_ERROR_DL_CRC_FLIT): 7, (2, fake.NVML_NVLINK_ERROR_DL_REPLAY): 2})
    parsed = scrape(fake, clock)
    up = {lbl["link"]: v for lbl, v in parsed["gpu_nvlink_up"] if lbl["gpu"] == "0"}
    assert up == {"0": 1, "1": 1, "2": 1, "3": 0}
    assert helpers.value(parsed, "gpu_nvlink_errors_total", gpu="0", link="1", type="crc_flit") == 7
    assert helpers.value(parsed, "gpu_nvlink_errors_total", gpu="0", link="2", type="replay") == 2
    assert helpers.value(parsed, "gpu_nvlink_errors_total", gpu="0", link="0", type="recovery") == 0
    # 3 active links x 2,000,000 KiB/s x 0.5 utilization; the fake integrates from the first call
    tx = helpers.value(parsed, "gpu_nvlink_transmit_bytes_total", gpu="0")
    assert tx == int(fake.gpus()[0].nvlink_kib["tx"]) * 1024 and tx >= 3 * 1_000_000 * 1024 * 10
    assert {lbl["gpu"] for lbl, _ in parsed["gpu_nvlink_up"]} == {"0"}  # the others: no NVLink, no series


def test_nvlink_error_totals_in_dcgm_names(fake, clock):
    fake.set_values(1, nvlinks=2, nvlink_errors={(0, fake.NVML_NVLINK_ERROR_DL_CRC_DATA): 3,
                                                 (1, fake.NVML_NVLINK_ERROR_DL_CRC_DATA): 4})
    parsed = scrape(fake, clock, names="dcgm")
    assert helpers.value(parsed, "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", gpu="1") == 7
    assert "0" not in {lbl["gpu"] for lbl, _ in parsed["DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL"]}


def test_no_nvlink_asks_once_per_device(fake, clock):
    rig = Rig(fake, clock)
    try:
        for _ in range(3):
            parsed = rig.scrape()
    finally:
        rig.close()
    assert "gpu_nvlink_up" not in parsed
    assert fake.call_count("nvmlDeviceGetNvLinkState") == 3  # link 0 of each GPU, once
