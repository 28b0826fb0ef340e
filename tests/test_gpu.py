"""GPU exporter unit tests, against the fake NVML (mlscope.gpu.fakenvml).

With MLSCOPE_TEST_REAL_NVML=1 the same file runs against the real `pynvml` on a GPU machine:
tests that need the fake's error injection are skipped, and the invariant tests (names, labels,
units, ranges) run on the real devices.
"""

from __future__ import annotations

import logging
import os
import time

import psutil
import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from mlscope.gpu import fakenvml
from mlscope.gpu.collector import GpuCollector
from mlscope.gpu.events import XidWatcher
from mlscope.gpu.nvml import Session
from mlscope.gpu.processes import ProcessResolver, container_id
from mlscope.gpu.sampler import Sampler
from mlscope.health import Health, ScrapeCollector
from helpers import assert_one_line_error, promtool_check_metrics, run_cli, samples, value

REAL = os.environ.get("MLSCOPE_TEST_REAL_NVML") == "1"
needs_fake = pytest.mark.skipif(REAL, reason="needs the fake NVML's error injection")
MIB = 1024 * 1024

# ARCHITECTURE.md's GPU contract, written out (not derived from the code under test): every series also
# carries `gpu` and `uuid`; these are the other labels.
CONTRACT = {
    "gpu_info": {"model", "driver_version", "pci_bus_id"}, "gpu_up": set(),
    "gpu_utilization_ratio": set(), "gpu_memory_copy_utilization_ratio": set(),
    "gpu_memory_used_bytes": set(), "gpu_memory_total_bytes": set(), "gpu_memory_reserved_bytes": set(),
    "gpu_temperature_celsius": set(), "gpu_power_usage_watts": set(), "gpu_power_limit_watts": set(),
    "gpu_energy_consumed_joules_total": set(),
    "gpu_sm_clock_hertz": set(), "gpu_memory_clock_hertz": set(), "gpu_sm_clock_max_hertz": set(),
    "gpu_clock_throttle_active": {"reason"},
    "gpu_ecc_errors_total": {"type"}, "gpu_remapped_rows": {"type"}, "gpu_pcie_replay_errors_total": set(),
    "gpu_xid_errors_total": {"xid"},
    "gpu_pcie_transmit_bytes_per_second": set(), "gpu_pcie_receive_bytes_per_second": set(),
    "gpu_graphics_active_ratio": set(),
    "gpu_sm_active_ratio": set(), "gpu_sm_occupancy_ratio": set(), "gpu_tensor_active_ratio": set(),
    "gpu_dram_active_ratio": set(),
    # issue 13 added mig_uuid (empty without MIG): the MIG instance a process runs in, for pod attribution
    "gpu_process_memory_used_bytes": {"pid", "process", "container", "mig_uuid"},
    # issue 11's additions: NVLink, MIG instances (issue 13: mig_uuid, and the instance's compute share)
    "gpu_nvlink_up": {"link"}, "gpu_nvlink_errors_total": {"link", "type"},
    "gpu_nvlink_transmit_bytes_total": set(), "gpu_nvlink_receive_bytes_total": set(),
    **{f"gpu_mig_{what}": {"gpu_i_id", "gpu_i_profile", "mig_uuid"} for what in (
        "memory_used_bytes", "memory_free_bytes", "memory_total_bytes", "graphics_active_ratio", "sm_active_ratio",
        "sm_occupancy_ratio", "tensor_active_ratio", "dram_active_ratio", "compute_slices_ratio")},
}


class Clock:
    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Rig:
    """The exporter's parts wired as build() wires them, with an injectable clock."""

    def __init__(self, nvml, clock=time.monotonic, retry: float = 30.0, interval: float = 1.0,
                 processes: bool = True, names: str = "mlscope") -> None:
        self.nvml = nvml
        self.health = Health()
        self.session = Session(nvml, retry, clock)
        self.xid = XidWatcher(self.session, self.health)
        self.sampler = Sampler(self.session, self.health, interval=interval)
        self.collector = GpuCollector(self.session, self.health, xid=self.xid, sampler=self.sampler,
                                      processes=processes, simulated=getattr(nvml, "SIMULATED", False),
                                      names=names)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ScrapeCollector("gpu", self.collector, self.health))
        self.registry.register(self.health)

    def text(self) -> str:
        return generate_latest(self.registry).decode()

    def scrape(self) -> dict:
        return samples(self.text())

    def close(self) -> None:
        self.xid.stop()
        self.sampler.stop()
        self.session.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def fake(clock):
    fakenvml.configure(3, clock=clock)
    yield fakenvml
    fakenvml.configure(0)


@pytest.fixture
def rig(fake, clock):
    if REAL:
        import pynvml
        r = Rig(pynvml)
    else:
        r = Rig(fake, clock)
    yield r
    r.close()


def gpu_values(parsed: dict, name: str) -> dict[str, float]:
    return {lbl["gpu"]: v for lbl, v in parsed.get(name, [])}


def check_invariants(parsed: dict) -> None:
    """What must hold on any machine, fake or real: names, labels, units and ranges."""
    gpu_names = {n for n in parsed if n.startswith("gpu_")}
    assert gpu_names <= CONTRACT.keys(), f"not in the contract: {gpu_names - CONTRACT.keys()}"
    for name in gpu_names:
        for labels, _ in parsed[name]:
            extra = set(labels) - {"gpu", "uuid"} - ({"simulated"} if name == "gpu_info" else set())
            assert extra == CONTRACT[name], (name, labels)
    assert value(parsed, "mlscope_collector_up", collector="gpu") == 1
    ups = gpu_values(parsed, "gpu_up")
    assert ups and all(v == 1 for v in ups.values()), ups
    for name in gpu_names:
        for labels, val in parsed[name]:
            assert labels.get("gpu", "") != "" and labels.get("uuid", "").startswith(("GPU-", "MIG-")), (name, labels)
            assert val >= 0, (name, labels, val)
            if name.endswith("_ratio"):
                assert 0 <= val <= 1, (name, labels, val)
    for gpu in ups:
        limit = gpu_values(parsed, "gpu_power_limit_watts").get(gpu)
        power = gpu_values(parsed, "gpu_power_usage_watts").get(gpu)
        if limit is not None:
            assert 50 <= limit <= 2000, limit  # watts, not milliwatts
        if power is not None and limit is not None:
            assert 0 < power <= limit * 1.1, (power, limit)
        temp = gpu_values(parsed, "gpu_temperature_celsius").get(gpu)
        if temp is not None:
            assert 0 < temp < 120
        total = gpu_values(parsed, "gpu_memory_total_bytes")[gpu]
        assert 1 << 30 <= total <= 1 << 40  # bytes, between 1 GiB and 1 TiB
        assert gpu_values(parsed, "gpu_memory_used_bytes")[gpu] <= total
        sm_max = gpu_values(parsed, "gpu_sm_clock_max_hertz").get(gpu)
        if sm_max is not None:
            assert 3e8 <= sm_max <= 4e9  # hertz, not MHz
            assert gpu_values(parsed, "gpu_sm_clock_hertz")[gpu] <= sm_max * 1.05
        reasons = [lbl["reason"] for lbl, _v in parsed.get("gpu_clock_throttle_active", []) if lbl["gpu"] == gpu]
        assert len(reasons) == len(set(reasons))
        for row, val in parsed.get("gpu_remapped_rows", []):
            assert row["type"] in ("correctable", "uncorrectable", "pending", "failure")
    for labels, _v in parsed.get("gpu_process_memory_used_bytes", []):
        assert labels["pid"].isdigit() and "container" in labels and "process" in labels


# ---- invariants: fake or real ----

@pytest.mark.integration
def test_invariants_and_promtool(rig):
    rig.sampler.sample_once()
    if REAL:
        time.sleep(0.5)  # GPM needs time between its two samples
    else:
        rig.session.clock.advance(1)
    rig.sampler.sample_once()
    text = rig.text()
    save = os.environ.get("MLSCOPE_TEST_SAVE_SCRAPE")
    if save:
        with open(save, "w") as fh:
            fh.write(text)
    parsed = samples(text)
    check_invariants(parsed)
    for name in ("gpu_info", "gpu_utilization_ratio", "gpu_memory_used_bytes", "gpu_memory_total_bytes"):
        assert len(parsed[name]) == len(parsed["gpu_up"]), name
    result = promtool_check_metrics(text)
    assert result.returncode == 0, result.stdout + result.stderr


def test_second_scrape_reads_supported_fields_only(rig):
    """After the first scrape, unsupported fields are never called again (both fake and real)."""
    first = rig.scrape()
    unsupported = {d.index: set(d.unsupported) for d in rig.session.devices}
    second = rig.scrape()
    assert {d.index: d.unsupported for d in rig.session.devices} == unsupported
    assert set(first) == set(second)
    if not REAL:
        rig.scrape()
        assert rig.nvml.call_count("nvmlDeviceGetMaxClockInfo") == 3  # static: once per device


@needs_fake
def test_static_max_clock_is_reread_after_the_gpu_comes_back(rig, fake, clock):
    rig.scrape()
    fake.inject("*", "GpuIsLost", gpu=0)
    rig.scrape()
    fake.clear_faults()
    fake.set_values(0, max_sm_mhz=1755)
    clock.advance(31)
    assert value(rig.scrape(), "gpu_sm_clock_max_hertz", gpu="0") == 1755e6


# ---- units and contents, fake only ----

@needs_fake
def test_units_are_converted(rig, fake, clock):
    fake.set_values(0, utilization=0.37, memory_utilization=0.21, power_w=250.5, temperature=61,
                    energy_mj=123_456, memory_used=10_000 * MIB, pcie_tx_kbs=1000, pcie_rx_kbs=2500,
                    pcie_replays=3, ecc_corrected=5, ecc_uncorrected=1, remapped=(2, 1, 1, 0))
    rig.sampler.sample_once()
    parsed = rig.scrape()
    g0 = dict(gpu="0")
    assert value(parsed, "gpu_utilization_ratio", **g0) == pytest.approx(0.37)
    assert value(parsed, "gpu_memory_copy_utilization_ratio", **g0) == pytest.approx(0.21)
    assert value(parsed, "gpu_power_usage_watts", **g0) == pytest.approx(250.5)  # mW -> W
    assert value(parsed, "gpu_power_limit_watts", **g0) == 700
    assert value(parsed, "gpu_energy_consumed_joules_total", **g0) == pytest.approx(123.456)  # mJ -> J
    assert value(parsed, "gpu_temperature_celsius", **g0) == 61
    assert value(parsed, "gpu_sm_clock_max_hertz", **g0) == 1980e6  # MHz -> Hz
    assert value(parsed, "gpu_memory_clock_hertz", **g0) == 2619e6
    assert value(parsed, "gpu_memory_total_bytes", **g0) == 81559 * MIB
    assert value(parsed, "gpu_memory_reserved_bytes", **g0) == 531 * MIB
    assert value(parsed, "gpu_memory_used_bytes", **g0) == 10_000 * MIB
    assert value(parsed, "gpu_pcie_transmit_bytes_per_second", **g0) == 1000 * 1024  # KB/s -> B/s
    assert value(parsed, "gpu_pcie_receive_bytes_per_second", **g0) == 2500 * 1024
    assert value(parsed, "gpu_pcie_replay_errors_total", **g0) == 3
    assert value(parsed, "gpu_ecc_errors_total", type="corrected", **g0) == 5
    assert value(parsed, "gpu_ecc_errors_total", type="uncorrected", **g0) == 1
    assert value(parsed, "gpu_remapped_rows", type="correctable", **g0) == 2
    assert value(parsed, "gpu_remapped_rows", type="pending", **g0) == 1
    assert value(parsed, "gpu_remapped_rows", type="failure", **g0) == 0
    info = [lbl for lbl, _v in parsed["gpu_info"] if lbl["gpu"] == "0"][0]
    assert info == {"gpu": "0", "uuid": fake.gpus()[0].uuid, "model": "NVIDIA H100 80GB HBM3",
                    "driver_version": "580.159.04", "pci_bus_id": "00000000:18:00.0", "simulated": "true"}
    # every per-GPU series carries gpu and uuid, and the uuid is the device's
    for name in (n for n in parsed if n.startswith("gpu_")):
        for labels, _v in parsed[name]:
            assert labels["uuid"] == fake.gpus()[int(labels["gpu"])].uuid


@needs_fake
def test_energy_counter_follows_power(rig, fake, clock):
    fake.set_values(1, power_w=400.0)
    before = value(rig.scrape(), "gpu_energy_consumed_joules_total", gpu="1")
    clock.advance(10)
    after = value(rig.scrape(), "gpu_energy_consumed_joules_total", gpu="1")
    assert after - before == pytest.approx(4000, abs=1)  # 400 W for 10 s


@needs_fake
def test_throttle_reasons(rig, fake):
    fake.set_values(0, throttle=fake.nvmlClocksEventReasonSwPowerCap | fake.nvmlClocksEventReasonHwThermalSlowdown)
    fake.set_values(1, throttle=0)
    parsed = rig.scrape()
    active = {lbl["reason"] for lbl, v in parsed["gpu_clock_throttle_active"] if lbl["gpu"] == "0" and v == 1}
    assert active == {"sw_power_cap", "hw_thermal_slowdown"}
    reasons1 = {lbl["reason"]: v for lbl, v in parsed["gpu_clock_throttle_active"] if lbl["gpu"] == "1"}
    assert set(reasons1.values()) == {0} and {"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown",
                                             "hw_thermal_slowdown", "hw_power_brake_slowdown"} <= set(reasons1)


@needs_fake
def test_throttle_falls_back_to_throttle_reasons(rig, fake):
    fake.unsupported(2, "nvmlDeviceGetCurrentClocksEventReasons")
    fake.set_values(2, throttle=fake.nvmlClocksThrottleReasonHwSlowdown)
    assert value(rig.scrape(), "gpu_clock_throttle_active", gpu="2", reason="hw_slowdown") == 1
    assert fake.call_count("nvmlDeviceGetCurrentClocksThrottleReasons") == 1


# ---- not supported: left out, decided once ----

@needs_fake
def test_unsupported_fields_are_left_out_not_zero(rig, fake):
    fake.unsupported(1, "nvmlDeviceGetPowerUsage", "nvmlDeviceGetTotalEnergyConsumption",
                     "nvmlDeviceGetTotalEccErrors", "nvmlDeviceGetRemappedRows", "nvmlDeviceGetCurrentClocksEventReasons",
                     "nvmlDeviceGetCurrentClocksThrottleReasons", "nvmlDeviceGetMemoryInfo_v2")
    for _ in range(3):
        parsed = rig.scrape()
    for name in ("gpu_power_usage_watts", "gpu_energy_consumed_joules_total", "gpu_ecc_errors_total",
                 "gpu_remapped_rows", "gpu_clock_throttle_active", "gpu_memory_reserved_bytes"):
        gpus = {lbl["gpu"] for lbl, _v in parsed[name]}
        assert gpus == {"0", "2"}, (name, gpus)
    # memory falls back to the v1 call: used and total are still there
    assert value(parsed, "gpu_memory_total_bytes", gpu="1") == 81559 * MIB
    assert value(parsed, "gpu_up", gpu="1") == 1
    assert value(parsed, "mlscope_collector_up", collector="gpu") == 1
    # the failing function was called once for GPU 1, then never again: 3 scrapes x 2 GPUs + 1
    assert fake.call_count("nvmlDeviceGetPowerUsage") == 7
    assert fake.call_count("nvmlDeviceGetMemoryInfo_v2") == 7


@needs_fake
def test_no_gpm_device_has_no_gpm_metrics(rig, fake, clock):
    fake.set_values(1, gpm=False)
    rig.sampler.sample_once()
    clock.advance(1)
    rig.sampler.sample_once()
    parsed = rig.scrape()
    for name in ("gpu_sm_active_ratio", "gpu_sm_occupancy_ratio", "gpu_tensor_active_ratio", "gpu_dram_active_ratio"):
        assert {lbl["gpu"] for lbl, _v in parsed[name]} == {"0", "2"}
    assert value(parsed, "mlscope_collector_up", collector="gpm") == 1
    calls = fake.call_count("nvmlGpmQueryDeviceSupport")
    rig.sampler.sample_once()
    assert fake.call_count("nvmlGpmQueryDeviceSupport") == calls  # decided once


# ---- GPM ----

@needs_fake
def test_gpm_ratios_come_from_two_samples(rig, fake, clock):
    fake.set_values(0, sm_active=0.2, sm_occupancy=0.1, tensor_active=0.5, dram_active=0.3)
    rig.sampler.sample_once()
    assert "gpu_sm_active_ratio" not in rig.scrape()  # one sample: nothing to compare yet
    clock.advance(1)
    fake.set_values(0, sm_active=0.6, sm_occupancy=0.3, tensor_active=0.5, dram_active=0.1)
    clock.advance(1)
    rig.sampler.sample_once()
    parsed = rig.scrape()
    # the average over the two seconds between the samples, converted from percent to a ratio
    assert value(parsed, "gpu_sm_active_ratio", gpu="0") == pytest.approx(0.4)
    assert value(parsed, "gpu_sm_occupancy_ratio", gpu="0") == pytest.approx(0.2)
    assert value(parsed, "gpu_tensor_active_ratio", gpu="0") == pytest.approx(0.5)
    assert value(parsed, "gpu_dram_active_ratio", gpu="0") == pytest.approx(0.2)
    # stale samples (the sampler stopped) are dropped rather than exported forever
    clock.advance(rig.sampler.max_age() + 1)
    assert "gpu_sm_active_ratio" not in rig.scrape()


# ---- a failing GPU ----

@needs_fake
@pytest.mark.parametrize("error", ["GpuIsLost", "Unknown"])
def test_failing_gpu_is_down_others_report_then_recovers(rig, fake, clock, error):
    rig.scrape()
    fake.inject("*", error, gpu=1)
    parsed = rig.scrape()
    assert gpu_values(parsed, "gpu_up") == {"0": 1, "1": 0, "2": 1}
    assert set(gpu_values(parsed, "gpu_utilization_ratio")) == {"0", "2"}
    assert set(gpu_values(parsed, "gpu_info")) == {"0", "1", "2"}  # identity stays known
    assert value(parsed, "gpu_up", gpu="1", uuid=fake.gpus()[1].uuid) == 0
    assert value(parsed, "mlscope_collector_up", collector="gpu") == 1  # the exporter still works
    assert value(parsed, "mlscope_collector_errors_total", collector="gpu") >= 1
    # before the retry interval the lost GPU is not touched again
    handles = fake.call_count("nvmlDeviceGetHandleByIndex")
    clock.advance(10)
    assert gpu_values(rig.scrape(), "gpu_up")["1"] == 0
    assert fake.call_count("nvmlDeviceGetHandleByIndex") == handles
    # still failing at the retry: stays down
    clock.advance(25)
    assert gpu_values(rig.scrape(), "gpu_up")["1"] == 0
    # it comes back
    fake.clear_faults()
    clock.advance(31)
    parsed = rig.scrape()
    assert gpu_values(parsed, "gpu_up") == {"0": 1, "1": 1, "2": 1}
    assert set(gpu_values(parsed, "gpu_utilization_ratio")) == {"0", "1", "2"}


@needs_fake
def test_every_gpu_lost_reinitialises_nvml(rig, fake, clock):
    rig.scrape()
    for i in range(3):
        fake.inject("*", "GpuIsLost", gpu=i)
    parsed = rig.scrape()
    assert gpu_values(parsed, "gpu_up") == {"0": 0, "1": 0, "2": 0}
    assert value(parsed, "mlscope_collector_up", collector="gpu") == 0
    assert value(rig.scrape(), "gpu_up", gpu="2") == 0  # still reported while waiting to retry
    fake.clear_faults()
    inits = fake.call_count("nvmlInit")
    clock.advance(31)
    parsed = rig.scrape()
    assert fake.call_count("nvmlInit") == inits + 1
    assert gpu_values(parsed, "gpu_up") == {"0": 1, "1": 1, "2": 1}
    assert value(parsed, "mlscope_collector_up", collector="gpu") == 1


@needs_fake
def test_transient_error_skips_the_field_once(rig, fake):
    fake.inject("nvmlDeviceGetTemperatureV", "NotReady", gpu=0, count=1)
    parsed = rig.scrape()
    assert set(gpu_values(parsed, "gpu_temperature_celsius")) == {"1", "2"}
    assert gpu_values(parsed, "gpu_up")["0"] == 1
    assert set(gpu_values(rig.scrape(), "gpu_temperature_celsius")) == {"0", "1", "2"}


# ---- no NVML, no GPU ----

@needs_fake
def test_no_nvml_library_collector_down_one_log_line_then_picked_up(rig, fake, clock, caplog):
    caplog.set_level(logging.DEBUG, logger="mlscope.gpu")
    fake.inject("nvmlInit", "LibraryNotFound")
    for _ in range(3):
        parsed = rig.scrape()
        clock.advance(31)
    assert value(parsed, "mlscope_collector_up", collector="gpu") == 0
    assert not [n for n in parsed if n.startswith("gpu_")]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "NVML library not found" in warnings[0].getMessage(), warnings
    assert fake.call_count("nvmlInit") == 3  # retried each interval
    fake.clear_faults()  # the driver gets installed
    clock.advance(31)
    parsed = rig.scrape()
    assert value(parsed, "mlscope_collector_up", collector="gpu") == 1
    assert gpu_values(parsed, "gpu_up") == {"0": 1, "1": 1, "2": 1}


@needs_fake
def test_retry_waits_for_the_interval(rig, fake, clock):
    fake.inject("nvmlInit", "DriverNotLoaded")
    rig.scrape()
    rig.scrape()
    clock.advance(5)
    rig.scrape()
    assert fake.call_count("nvmlInit") == 1


@needs_fake
def test_no_gpu_is_collector_down(fake, clock, caplog):
    fake.configure(0, clock=clock)
    r = Rig(fake, clock)
    parsed = r.scrape()
    assert value(parsed, "mlscope_collector_up", collector="gpu") == 0
    assert any("no GPUs" in rec.getMessage() for rec in caplog.records)
    assert fake.call_count("nvmlShutdown") == 1  # init is undone, to re-enumerate on the retry


# ---- Xid events ----

@needs_fake
def test_xid_errors_counted_by_the_event_thread(rig, fake):
    rig.xid.start()
    wait_until(lambda: rig.xid.registered == {0, 1, 2})
    fake.emit_xid(0, 79)
    fake.emit_xid(0, 79)
    fake.emit_xid(2, 48)
    wait_until(lambda: sum(rig.xid.counts().values()) == 3)
    parsed = rig.scrape()
    assert value(parsed, "gpu_xid_errors_total", gpu="0", xid="79") == 2
    assert value(parsed, "gpu_xid_errors_total", gpu="2", xid="48", uuid=fake.gpus()[2].uuid) == 1
    assert value(parsed, "mlscope_collector_up", collector="xid") == 1
    # events between scrapes are kept, not lost
    fake.emit_xid(0, 79)
    fake.emit_xid(0, 13)
    wait_until(lambda: sum(rig.xid.counts().values()) == 5)
    parsed = rig.scrape()
    assert value(parsed, "gpu_xid_errors_total", gpu="0", xid="79") == 3
    assert value(parsed, "gpu_xid_errors_total", gpu="0", xid="13") == 1
    # critical Xids are 0 from registration on, so increase() and alerts catch the very first one
    assert value(parsed, "gpu_xid_errors_total", gpu="1", xid="79") == 0
    assert value(parsed, "gpu_xid_errors_total", gpu="2", xid="119") == 0
    assert not [lbls for lbls, _ in parsed["gpu_xid_errors_total"] if lbls["gpu"] == "1" and lbls["xid"] == "13"]


@needs_fake
def test_xid_unsupported_device_is_skipped(rig, fake):
    fake.unsupported(1, "nvmlDeviceRegisterEvents")
    rig.xid.start()
    wait_until(lambda: rig.xid.registered == {0, 2})
    fake.emit_xid(1, 79)  # not registered: never delivered
    fake.emit_xid(2, 31)
    wait_until(lambda: sum(rig.xid.counts().values()) == 1)
    parsed = rig.scrape()
    assert value(parsed, "gpu_xid_errors_total", gpu="2", xid="31") == 1
    assert not [lbls for lbls, _ in parsed["gpu_xid_errors_total"] if lbls["gpu"] == "1"]  # unsupported: left out


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


# ---- processes and containers ----

DOCKER_ID = "3f4e1b2a9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f"


@pytest.mark.parametrize("cgroup, expected", [
    # cgroup v1, Docker (cgroupfs driver)
    (f"12:memory:/docker/{DOCKER_ID}\n11:cpu,cpuacct:/docker/{DOCKER_ID}\n1:name=systemd:/docker/{DOCKER_ID}\n",
     DOCKER_ID),
    # cgroup v1, Kubernetes (cgroupfs driver)
    (f"11:memory:/kubepods/burstable/pod0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0/{DOCKER_ID}\n", DOCKER_ID),
    # cgroup v1, Kubernetes (systemd driver, docker runtime)
    ("4:devices:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0"
     f".slice/docker-{DOCKER_ID}.scope\n", DOCKER_ID),
    # cgroup v2, Docker (systemd driver)
    (f"0::/system.slice/docker-{DOCKER_ID}.scope\n", DOCKER_ID),
    # cgroup v2, Docker (cgroupfs driver)
    (f"0::/docker/{DOCKER_ID}\n", DOCKER_ID),
    # cgroup v2, Kubernetes with containerd
    ("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0.slice/"
     f"cri-containerd-{DOCKER_ID}.scope\n", DOCKER_ID),
    # cgroup v2, Kubernetes with CRI-O; podman
    (f"0::/kubepods.slice/kubepods-pod1.slice/crio-{DOCKER_ID}.scope\n", DOCKER_ID),
    (f"0::/machine.slice/libpod-{DOCKER_ID}.scope/container\n", DOCKER_ID),
    # hybrid: the unified line wins
    (f"1:name=systemd:/user.slice\n0::/system.slice/docker-{DOCKER_ID}.scope\n", DOCKER_ID),
    # not in a container
    ("0::/user.slice/user-1000.slice/session-3.scope\n", ""),
    ("12:memory:/user.slice\n1:name=systemd:/init.scope\n", ""),
    ("0::/\n", ""),  # inside a container with its own cgroup namespace: nothing to see
    ("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f1e.slice\n", ""),  # pod level only
    ("", ""),
])
def test_container_id_from_cgroup(cgroup, expected):
    assert container_id(cgroup) == expected


def test_process_resolver_reads_procfs(tmp_path):
    proc = tmp_path / "4321"
    proc.mkdir()
    (proc / "cgroup").write_text(f"0::/system.slice/docker-{DOCKER_ID}.scope\n")
    (proc / "stat").write_text("4321 (python3) S " + " ".join(["1"] * 30) + "\n")
    resolver = ProcessResolver(str(tmp_path), nvml_name=lambda pid: b"/opt/conda/bin/python3")
    assert resolver.resolve(4321) == ("python3", DOCKER_ID)  # the name from NVML: pid not visible to psutil
    assert ProcessResolver(str(tmp_path)).resolve(999_999_999) == ("", "")


@needs_fake
def test_process_memory_with_names_and_containers(rig, fake):
    me = os.getpid()
    with open("/proc/self/cgroup") as fh:
        my_container = container_id(fh.read())
    fake.set_values(0, processes=[(me, "x", 2 << 30), (4_194_999, "x", 1 << 30)])
    fake.set_values(1, processes=[])
    parsed = rig.scrape()
    rows = {lbl["pid"]: (lbl, v) for lbl, v in parsed["gpu_process_memory_used_bytes"]}
    mine, used = rows[str(me)]
    assert used == 2 << 30
    assert mine["process"] == psutil.Process(me).name() and mine["container"] == my_container
    assert mine["gpu"] == "0" and mine["uuid"] == fake.gpus()[0].uuid
    other, _ = rows["4194999"]  # not visible to psutil: NVML's name; no cgroup: no container
    assert other["process"] == "x" and other["container"] == ""
    assert "1" not in {lbl["gpu"] for lbl, _v in parsed["gpu_process_memory_used_bytes"]}


@needs_fake
def test_processes_can_be_turned_off(fake, clock):
    r = Rig(fake, clock, processes=False)
    assert "gpu_process_memory_used_bytes" not in r.scrape()
    assert fake.call_count("nvmlDeviceGetComputeRunningProcesses") == 0


# ---- settings ----

@pytest.mark.parametrize("args, setting", [
    (["--simulate", "-1"], "--simulate"),
    (["--retry-interval", "0"], "--retry-interval"),
    (["--sample-interval", "soon"], "--sample-interval"),
    (["--nvml-module", "no_such_nvml_module"], "--nvml-module"),
])
def test_bad_settings_exit_2_with_one_line(args, setting):
    assert_one_line_error(run_cli("gpu-exporter", "--listen", "127.0.0.1:0", *args), setting)
