"""The scrape-time GPU collector: one pass over every device, NVML units converted to base units.

NVML units -> exported units: mW -> W, mJ -> J, MHz -> Hz, KB/s -> bytes/s (x1024), percent -> ratio.
A field the device does not support is left out (decided once per device); a device that fails
reports gpu_up 0 and nothing else but gpu_info, and is retried every retry_interval.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..health import Health
from .dcgm import dcgm_families, hostname
from .events import XidWatcher
from . import mig, nvlink
from .nvml import DEVICE, TRANSIENT, UNSUPPORTED, Device, DeviceError, Session, classify, describe
from .processes import ProcessResolver
from .sampler import Sampler

log = logging.getLogger("mlscope.gpu")

_MISSING = object()
NO_INSTANCE = 0xFFFFFFFF
GPU_LABELS = ["gpu", "uuid"]
MIG_LABELS = ["gpu_i_id", "gpu_i_profile", "mig_uuid"]  # mig_uuid: the MIG device's, as pods are allocated it

# (family name, help, extra labels, counter?)
FAMILIES = [
    ("gpu_info", "GPU identity; the value is always 1.", ["model", "driver_version", "pci_bus_id"], False),
    ("gpu_up", "1 when the GPU answered the last scrape, 0 when it failed (for example fell off the bus).", [],
     False),
    ("gpu_utilization_ratio", "Fraction of the last sample period in which a kernel ran on the GPU (0-1).", [],
     False),
    ("gpu_memory_copy_utilization_ratio", "Fraction of the last sample period in which device memory was read "
     "or written (0-1).", [], False),
    ("gpu_memory_used_bytes", "Device memory allocated by processes (excludes the driver's reserved memory when "
     "NVML's v2 memory info is available).", [], False),
    ("gpu_memory_total_bytes", "Total device memory.", [], False),
    ("gpu_memory_reserved_bytes", "Device memory reserved by the driver and firmware.", [], False),
    ("gpu_temperature_celsius", "GPU die temperature.", [], False),
    ("gpu_power_usage_watts", "Power draw of the board.", [], False),
    ("gpu_power_limit_watts", "Enforced power limit.", [], False),
    ("gpu_energy_consumed_joules", "Energy consumed since the driver was loaded.", [], True),
    ("gpu_sm_clock_hertz", "Current SM clock.", [], False),
    ("gpu_memory_clock_hertz", "Current memory clock.", [], False),
    ("gpu_sm_clock_max_hertz", "Maximum SM clock.", [], False),
    ("gpu_clock_throttle_active", "1 while this clock event reason (throttle) holds the clocks down.", ["reason"],
     False),
    ("gpu_ecc_errors", "ECC errors in device memory since the driver was loaded (NVML volatile counters).",
     ["type"], True),
    ("gpu_remapped_rows", "Remapped memory rows: counts (correctable, uncorrectable) and flags (pending, failure).",
     ["type"], False),
    ("gpu_pcie_replay_errors", "PCIe replay counter.", [], True),
    ("gpu_xid_errors", "Xid critical errors reported by NVML's event API, by Xid code.", ["xid"], True),
    ("gpu_pcie_transmit_bytes_per_second", "PCIe transmit throughput (NVML samples it over 20 ms).", [], False),
    ("gpu_pcie_receive_bytes_per_second", "PCIe receive throughput (NVML samples it over 20 ms).", [], False),
    ("gpu_graphics_active_ratio", "GPM: fraction of time the graphics/compute engine was active (0-1).", [],
     False),
    ("gpu_sm_active_ratio", "GPM: fraction of SMs busy, between the sampler's last two samples (0-1).", [], False),
    ("gpu_sm_occupancy_ratio", "GPM: resident warps over the theoretical maximum (0-1).", [], False),
    ("gpu_tensor_active_ratio", "GPM: fraction of time any tensor pipe was active (0-1).", [], False),
    ("gpu_dram_active_ratio", "GPM: DRAM bandwidth used over the maximum (0-1).", [], False),
    *((f"gpu_mig_{what}", f"MIG GPU instance: {help_}", MIG_LABELS, False) for what, help_ in (
        ("compute_slices_ratio", "the instance's compute slices over the GPU's (3g.40gb on a 7-slice H100: 3/7); "
                                 "its share of the GPU's cost."),
        ("memory_used_bytes", "device memory used."),
        ("memory_free_bytes", "device memory free."),
        ("memory_total_bytes", "device memory of the instance."),
        ("graphics_active_ratio", "GPM: fraction of time the instance's engine was active (0-1)."),
        ("sm_active_ratio", "GPM: fraction of the instance's SMs busy (0-1)."),
        ("sm_occupancy_ratio", "GPM: resident warps over the instance's theoretical maximum (0-1)."),
        ("tensor_active_ratio", "GPM: fraction of time any of the instance's tensor pipes was active (0-1)."),
        ("dram_active_ratio", "GPM: the instance's DRAM bandwidth used over its maximum (0-1)."),
    )),
    *nvlink.FAMILIES,
    ("gpu_process_memory_used_bytes", "Device memory used by a process; container is the Docker/Kubernetes "
     "container id from its cgroup, empty when none; mig_uuid the MIG instance it runs on, empty without MIG.",
     ["pid", "process", "container", "mig_uuid"], False),
]
_EXTRA = {name: extra for name, _h, extra, _c in FAMILIES}

# NVML clock event (throttle) reasons -> label values. Same bits for the deprecated ThrottleReasons.
THROTTLE_REASONS = [
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
]


class GpuCollector:
    """prometheus_client collector; `healthy` is False while NVML is unusable (no library, no GPU)."""

    def __init__(self, session: Session, health: Health | None = None, *, xid: XidWatcher | None = None,
                 sampler: Sampler | None = None, processes: bool = True, procfs: str = "/proc",
                 simulated: bool = False, names: str = "mlscope") -> None:
        self.session = session
        self.nvml = session.nvml
        self.health = health
        self.xid = xid
        self.sampler = sampler
        self.processes = processes
        self.simulated = simulated
        self.names = names  # mlscope, dcgm or both
        self.hostname = hostname()
        self.resolver = ProcessResolver(procfs, getattr(self.nvml, "nvmlSystemGetProcessName", None))
        self.healthy = False
        self._nvml_errors = tuple(c for c in (getattr(self.nvml, "NVMLError", None),
                                              getattr(self.nvml, "NVMLLibraryMismatchError", None)) if c)
        n = self.nvml
        self._clock_sm = getattr(n, "NVML_CLOCK_SM", 1)
        self._clock_mem = getattr(n, "NVML_CLOCK_MEM", 2)
        self._temp_gpu = getattr(n, "NVML_TEMPERATURE_GPU", 0)
        self._ecc_corr = getattr(n, "NVML_MEMORY_ERROR_TYPE_CORRECTED", 0)
        self._ecc_uncorr = getattr(n, "NVML_MEMORY_ERROR_TYPE_UNCORRECTED", 1)
        self._volatile = getattr(n, "NVML_VOLATILE_ECC", 0)
        self._mem_v2 = getattr(n, "nvmlMemory_v2", None)

    # -- one field read, with the per-device "not supported" cache --
    def _get(self, dev: Device, key: str, function: str, *args: Any, **kwargs: Any) -> Any:
        if key in dev.unsupported:
            return _MISSING
        fn = getattr(self.nvml, function, None)
        if fn is None:
            dev.unsupported.add(key)
            return _MISSING
        try:
            return fn(dev.handle, *args, **kwargs)
        except Exception as exc:
            if not isinstance(exc, self._nvml_errors) and not isinstance(exc, (AttributeError, NotImplementedError)):
                raise DeviceError(function, exc) from exc
            kind = classify(self.nvml, exc)
            if kind == UNSUPPORTED:
                dev.unsupported.add(key)
                log.debug("GPU %d: %s not supported (%s); left out", dev.index, key, describe(exc))
                return _MISSING
            if kind == TRANSIENT:
                return _MISSING
            raise DeviceError(function, exc) from exc

    def _read(self, dev: Device) -> list[tuple[str, list[str], float]]:
        """Every sample of one device as (family, extra label values, value); raises DeviceError."""
        out: list[tuple[str, list[str], float]] = []
        add = out.append
        get = self._get

        util = get(dev, "utilization", "nvmlDeviceGetUtilizationRates")
        if util is not _MISSING:
            add(("gpu_utilization_ratio", [], util.gpu / 100.0))
            add(("gpu_memory_copy_utilization_ratio", [], util.memory / 100.0))

        mem = _MISSING
        if self._mem_v2 is not None:
            mem = get(dev, "memory_v2", "nvmlDeviceGetMemoryInfo", version=self._mem_v2)
        if mem is not _MISSING:
            add(("gpu_memory_used_bytes", [], float(mem.used)))
            add(("gpu_memory_total_bytes", [], float(mem.total)))
            add(("gpu_memory_reserved_bytes", [], float(mem.reserved)))
        else:
            mem = get(dev, "memory", "nvmlDeviceGetMemoryInfo")
            if mem is not _MISSING:
                add(("gpu_memory_used_bytes", [], float(mem.used)))
                add(("gpu_memory_total_bytes", [], float(mem.total)))

        # nvmlDeviceGetTemperature goes away in CUDA 14; its successor needs a driver that has it
        value = get(dev, "temperature_v", "nvmlDeviceGetTemperatureV", self._temp_gpu)
        if value is _MISSING and "temperature_v" in dev.unsupported:  # not a transient miss: the old function
            value = get(dev, "temperature", "nvmlDeviceGetTemperature", self._temp_gpu)
        if value is not _MISSING:
            add(("gpu_temperature_celsius", [], float(value)))
        value = get(dev, "power", "nvmlDeviceGetPowerUsage")
        if value is not _MISSING:
            add(("gpu_power_usage_watts", [], value / 1000.0))
        value = get(dev, "power_limit", "nvmlDeviceGetEnforcedPowerLimit")
        if value is _MISSING:
            value = get(dev, "power_limit_mgmt", "nvmlDeviceGetPowerManagementLimit")
        if value is not _MISSING:
            add(("gpu_power_limit_watts", [], value / 1000.0))
        value = get(dev, "energy", "nvmlDeviceGetTotalEnergyConsumption")
        if value is not _MISSING:
            add(("gpu_energy_consumed_joules", [], value / 1000.0))

        value = get(dev, "clock_sm", "nvmlDeviceGetClockInfo", self._clock_sm)
        if value is not _MISSING:
            add(("gpu_sm_clock_hertz", [], value * 1e6))
        value = get(dev, "clock_mem", "nvmlDeviceGetClockInfo", self._clock_mem)
        if value is not _MISSING:
            add(("gpu_memory_clock_hertz", [], value * 1e6))
        # static, and ~1.5 ms per call on an H100: read once per device (re-read after it comes back)
        value = dev.static.get("clock_sm_max", _MISSING)
        if value is _MISSING:
            value = get(dev, "clock_sm_max", "nvmlDeviceGetMaxClockInfo", self._clock_sm)
            if value is not _MISSING:
                dev.static["clock_sm_max"] = value
        if value is not _MISSING:
            add(("gpu_sm_clock_max_hertz", [], value * 1e6))

        reasons = get(dev, "clock_events", "nvmlDeviceGetCurrentClocksEventReasons")
        if reasons is _MISSING:
            reasons = get(dev, "clock_throttle", "nvmlDeviceGetCurrentClocksThrottleReasons")
        if reasons is not _MISSING:
            self._throttle_bits[dev.uuid] = int(reasons)
            for bit, reason in THROTTLE_REASONS:
                add(("gpu_clock_throttle_active", [reason], 1.0 if reasons & bit else 0.0))

        corrected = get(dev, "ecc", "nvmlDeviceGetTotalEccErrors", self._ecc_corr, self._volatile)
        if corrected is not _MISSING:
            uncorrected = get(dev, "ecc", "nvmlDeviceGetTotalEccErrors", self._ecc_uncorr, self._volatile)
            if uncorrected is not _MISSING:
                add(("gpu_ecc_errors", ["corrected"], float(corrected)))
                add(("gpu_ecc_errors", ["uncorrected"], float(uncorrected)))

        rows = get(dev, "remapped_rows", "nvmlDeviceGetRemappedRows")
        if rows is not _MISSING:
            for kind, val in zip(("correctable", "uncorrectable", "pending", "failure"), rows):
                add(("gpu_remapped_rows", [kind], float(val)))

        value = get(dev, "pcie_replay", "nvmlDeviceGetPcieReplayCounter")
        if value is not _MISSING:
            add(("gpu_pcie_replay_errors", [], float(value)))

        nvlink.read(self.nvml, dev, get, _MISSING, add)
        self._read_mig(dev, add)
        if self.processes:
            self._read_processes(dev, add)
        return out

    def _read_mig(self, dev: Device, add: Any) -> None:
        """Per MIG GPU instance memory; the sampler adds GPM activity for the instances found here."""
        try:
            found = mig.instances(self.nvml, dev, self._get, _MISSING)
            rows = []
            for instance in found:
                mem = self.nvml.nvmlDeviceGetMemoryInfo(instance.handle)
                extra = mig.mig_labels(instance)
                if instance.slice_ratio:
                    rows.append(("gpu_mig_compute_slices_ratio", extra, instance.slice_ratio))
                rows += [("gpu_mig_memory_used_bytes", extra, float(mem.used)),
                         ("gpu_mig_memory_free_bytes", extra, float(mem.free)),
                         ("gpu_mig_memory_total_bytes", extra, float(mem.total))]
        except self._nvml_errors as exc:
            if classify(self.nvml, exc) == DEVICE:
                raise DeviceError("nvmlDeviceGetMigDeviceHandleByIndex", exc) from exc
            log.debug("GPU %d: MIG instances: %s", dev.index, describe(exc))
            return
        dev.static["mig_instances"] = found
        for row in rows:
            add(row)

    def _read_processes(self, dev: Device, add: Any) -> None:
        used: dict[int, int] = {}
        instance_of: dict[int, int] = {}  # pid -> GPU instance id (MIG mode; NVML says 0xFFFFFFFF otherwise)
        for key, function in (("procs_compute", "nvmlDeviceGetComputeRunningProcesses"),
                              ("procs_graphics", "nvmlDeviceGetGraphicsRunningProcesses")):
            procs = self._get(dev, key, function)
            if procs is _MISSING:
                continue
            for proc in procs:
                mem = getattr(proc, "usedGpuMemory", None)
                if mem is None:  # NVML_VALUE_NOT_AVAILABLE (e.g. Windows WDDM): left out, not 0
                    continue
                pid = int(proc.pid)
                used[pid] = max(used.get(pid, 0), int(mem))
                instance_of[pid] = int(getattr(proc, "gpuInstanceId", NO_INSTANCE))
        mig_uuids = {m.gi_id: m.uuid for m in dev.static.get("mig_instances", ())}
        for pid, mem in used.items():
            name, container = self.resolver.resolve(pid)
            mig_uuid = mig_uuids.get(instance_of[pid], "")
            add(("gpu_process_memory_used_bytes", [str(pid), name, container, mig_uuid], float(mem)))
        self._seen_pids.update(used)

    # -- the scrape --
    def collect(self) -> Iterable[Metric]:
        families: dict[str, Any] = {}
        for name, help_, extra, counter in FAMILIES:
            labels = GPU_LABELS + extra + (["simulated"] if name == "gpu_info" and self.simulated else [])
            cls = CounterMetricFamily if counter else GaugeMetricFamily
            families[name] = cls(name, help_, labels=labels)
        session = self.session
        ready = session.ensure()
        if not ready and not session.devices:
            self.healthy = False
            return []
        self._seen_pids: set[int] = set()
        self._throttle_bits: dict[str, int] = {}
        identity: dict[tuple[str, str], dict[str, str]] = {}
        now = session.clock()
        up_count = 0
        driver = session.driver_version
        sampled = self.sampler.snapshot() if self.sampler is not None and ready else {}
        for dev in list(session.devices):
            labels = [str(dev.index), dev.uuid]
            if ready and not dev.up and now >= dev.retry_at:
                try:
                    session.revive(dev)
                except Exception as exc:  # revive marks DEVICE errors down itself; anything else too
                    session.mark_down(dev, DeviceError("nvmlDeviceGetHandleByIndex", exc))
                labels = [str(dev.index), dev.uuid]
            info = [dev.model, driver, dev.pci_bus_id] + (["true"] if self.simulated else [])
            families["gpu_info"].add_metric(labels + info, 1)
            if self.names != "mlscope":
                identity[(labels[0], labels[1])] = self._dcgm_identity(dev)
            if dev.up:
                try:
                    rows = self._read(dev)
                except DeviceError as err:
                    session.mark_down(dev, err)
                    if self.health is not None:
                        self.health.count_error("gpu")
                    rows = None
                if rows is not None:
                    for name, extra, val in rows:
                        families[name].add_metric(labels + extra, val)
                    for name, extra, val in sampled.get(dev.uuid, ()):
                        families[name].add_metric(labels + extra, val)
                    up_count += 1
            families["gpu_up"].add_metric(labels, 1 if dev.up else 0)
        if self.xid is not None:
            for (index, uuid, xid), count in self.xid.counts().items():
                families["gpu_xid_errors"].add_metric([str(index) if index >= 0 else "", uuid, str(xid)], count)
        if self.processes:
            self.resolver.forget_except(self._seen_pids)
        if ready and session.devices and up_count == 0:
            # Every GPU failed (driver reloaded, GPUs reset): old handles are useless, so
            # re-initialise NVML after retry_interval rather than retrying stale handles.
            session.reset()
        self.healthy = up_count > 0
        result = list(families.values())
        if self.names == "mlscope":
            return result
        dcgm = dcgm_families(result, identity, self._throttle_bits, self.xid.last() if self.xid is not None else {})
        return result + dcgm if self.names == "both" else dcgm

    def mig_uuids(self) -> dict[tuple[str, str], str]:
        """(GPU UUID, GPU instance id) -> MIG device UUID, for the instances the last scrape found."""
        return {(dev.uuid, str(m.gi_id)): m.uuid for dev in list(self.session.devices)
                for m in dev.static.get("mig_instances", ())}

    def _dcgm_identity(self, dev: Device) -> dict[str, str]:
        """dcgm-exporter's labels of one GPU; `device` is nvidia<minor number>, as in /dev."""
        minor = dev.static.get("minor", _MISSING)
        if minor is _MISSING and dev.up:
            try:
                minor = self._get(dev, "minor", "nvmlDeviceGetMinorNumber")
            except DeviceError:
                minor = _MISSING
            if minor is not _MISSING:
                dev.static["minor"] = minor
        number = dev.index if minor is _MISSING else minor
        return {"gpu": str(dev.index), "UUID": dev.uuid, "device": f"nvidia{number}", "modelName": dev.model,
                "Hostname": self.hostname, "pci_bus_id": dev.pci_bus_id}

    def describe(self) -> Iterable[Metric]:
        return []
