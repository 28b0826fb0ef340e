"""The NVML session shared by the collector, the Xid event thread and the sampler.

- nvmlInit is retried every `retry_interval` while it fails (no library, no driver, no GPU), so a
  driver installed or loaded later is picked up; the reason is logged once, not on every try.
- Devices are opened once; each keeps its static identity (uuid, model, PCI bus id) and the set
  of fields it does not support, decided on the first try and never called again.
- A device that fails (fell off the bus, unknown error) is marked down and retried later.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import logging
import threading
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable

log = logging.getLogger("mlscope.gpu")

UNSUPPORTED, TRANSIENT, DEVICE = "unsupported", "transient", "device"

# Errors that mean "this device cannot give this field": cached per device, the field is left out.
_UNSUPPORTED_ERRORS = ("NotSupported", "FunctionNotFound", "NoPermission", "ArgumentVersionMismatch",
                       "CorruptedInforom", "Deprecated", "VgpuEccNotSupported", "NotFound")
# Errors worth trying again next scrape, without marking the device down.
_TRANSIENT_ERRORS = ("NoData", "NotReady", "Timeout", "InsufficientSize", "InUse", "InsufficientResources")


# Every NVML function the exporter calls, and what is left out without it. An older (or newer) nvidia-ml-py may
# lack some: each missing one is named in a warning at start-up instead of silently dropping series.
EXPECTED_FUNCTIONS = {
    "nvmlDeviceGetUtilizationRates": "gpu_utilization_ratio, gpu_memory_copy_utilization_ratio",
    "nvmlDeviceGetMemoryInfo": "gpu_memory_*",
    "nvmlDeviceGetTemperatureV": "gpu_temperature_celsius from the current API (falls back to "
                                 "nvmlDeviceGetTemperature, which CUDA 14 removes)",
    "nvmlDeviceGetPowerUsage": "gpu_power_usage_watts",
    "nvmlDeviceGetEnforcedPowerLimit": "gpu_power_limit_watts",
    "nvmlDeviceGetTotalEnergyConsumption": "gpu_energy_consumed_joules_total",
    "nvmlDeviceGetClockInfo": "gpu_sm_clock_hertz, gpu_memory_clock_hertz",
    "nvmlDeviceGetMaxClockInfo": "gpu_sm_clock_max_hertz",
    "nvmlDeviceGetCurrentClocksEventReasons": "gpu_clock_throttle_active (falls back to the deprecated "
                                              "ThrottleReasons)",
    "nvmlDeviceGetTotalEccErrors": "gpu_ecc_errors_total",
    "nvmlDeviceGetRemappedRows": "gpu_remapped_rows",
    "nvmlDeviceGetPcieReplayCounter": "gpu_pcie_replay_errors_total",
    "nvmlDeviceGetPcieThroughput": "gpu_pcie_*_bytes_per_second",
    "nvmlDeviceGetComputeRunningProcesses": "gpu_process_memory_used_bytes",
    "nvmlEventSetWait": "gpu_xid_errors_total",
    "nvmlGpmMetricsGet": "the GPM ratios (gpu_sm_active_ratio, ...)",
    "nvmlGpmMigSampleGet": "GPM per MIG instance (gpu_mig_*_ratio)",
    "nvmlDeviceGetMigMode": "MIG instances (gpu_mig_*)",
    "nvmlDeviceGetGpuInstanceProfileInfo": "MIG profile names (gpu_i_profile)",
    "nvmlDeviceGetNvLinkState": "gpu_nvlink_up",
    "nvmlDeviceGetNvLinkErrorCounter": "gpu_nvlink_errors_total",
    "nvmlDeviceGetFieldValues": "gpu_nvlink_*_bytes_total",
    "nvmlDeviceGetMinorNumber": "the device label of --names dcgm (nvidia<index> instead)",
}


def load_module(name: str) -> ModuleType:
    return importlib.import_module(name)


def warn_missing(nvml: ModuleType) -> list[str]:
    """Log one warning line per expected function the NVML module lacks; return their names."""
    missing = [name for name in EXPECTED_FUNCTIONS if not callable(getattr(nvml, name, None))]
    try:
        version = "nvidia-ml-py " + importlib.metadata.version("nvidia-ml-py") if nvml.__name__ == "pynvml" \
            else getattr(nvml, "__version__", "unknown version")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown version"
    for name in missing:
        log.warning("the installed %s (%s) has no %s: %s left out; upgrade nvidia-ml-py", nvml.__name__, version,
                    name, EXPECTED_FUNCTIONS[name])
    return missing


def classify(nvml: ModuleType, exc: BaseException) -> str:
    """UNSUPPORTED, TRANSIENT or DEVICE (the device is failing: GpuIsLost, Unknown, ResetRequired, ...)."""
    mismatch = getattr(nvml, "NVMLLibraryMismatchError", None)
    if mismatch is not None and isinstance(exc, mismatch):
        return UNSUPPORTED
    if isinstance(exc, (AttributeError, NotImplementedError)):
        return UNSUPPORTED
    name = type(exc).__name__.removeprefix("NVMLError_")
    if name in _UNSUPPORTED_ERRORS:
        return UNSUPPORTED
    if name in _TRANSIENT_ERRORS:
        return TRANSIENT
    return DEVICE


def describe(exc: BaseException) -> str:
    name = type(exc).__name__
    try:
        text = str(exc)
    except Exception:  # pynvml's __str__ calls into the library, which may be gone
        text = ""
    return f"{name} ({text})" if text and text != name else name


def handle_key(handle: Any) -> Any:
    """A hashable identity for an NVML device handle (a ctypes pointer), equal for equal handles."""
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value
    except (TypeError, ctypes.ArgumentError):
        return id(handle)


@dataclass
class Device:
    index: int
    handle: Any = None
    uuid: str = ""
    model: str = ""
    pci_bus_id: str = ""
    up: bool = False
    error: str = ""
    retry_at: float = 0.0
    unsupported: set = field(default_factory=set)  # keys of fields this device does not support
    static: dict = field(default_factory=dict)  # values that never change while the device is up (max clock)


class DeviceError(Exception):
    """A device-level NVML failure while reading one GPU."""

    def __init__(self, function: str, exc: BaseException):
        super().__init__(f"{function}: {describe(exc)}")
        self.function = function
        self.exc = exc


class Session:
    def __init__(self, nvml: ModuleType, retry_interval: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.nvml = nvml
        self.retry_interval = retry_interval
        self.clock = clock
        self.lock = threading.RLock()
        self.ready = False
        self.generation = 0  # +1 on every successful (re)initialisation
        self.devices: list[Device] = []
        self.by_handle: dict[Any, Device] = {}
        self.driver_version = ""
        self.problem: str | None = None  # why NVML is not usable, logged once per distinct reason
        self._next_try = 0.0
        self._known: dict[int, Device] = {}  # survives re-initialisation: identity of devices seen

    # -- initialisation with retry --
    def ensure(self) -> bool:
        """True when NVML is initialised with at least one GPU; otherwise try again when it is time."""
        if self.ready:
            return True
        with self.lock:
            if self.ready:
                return True
            now = self.clock()
            if now < self._next_try:
                return False
            self._next_try = now + self.retry_interval
            try:
                self._init()
            except Exception as exc:  # NVMLError, OSError from ctypes, anything: never a crash loop
                self._report(self._explain(exc))
                return False
            return True

    def _explain(self, exc: BaseException) -> str:
        name = type(exc).__name__
        if name == "NVMLError_LibraryNotFound":
            return ("NVML library not found (libnvidia-ml.so.1): no NVIDIA driver on this host, or it is not "
                    "mounted into the container (run with --gpus all)")
        if name == "NVMLError_DriverNotLoaded":
            return "NVIDIA driver not loaded"
        if isinstance(exc, _NoGpu):
            return "NVML found no GPUs"
        return f"NVML initialisation failed: {describe(exc)}"

    def _report(self, problem: str) -> None:
        if problem != self.problem:
            log.warning("%s; GPU metrics unavailable, retrying every %gs", problem, self.retry_interval)
        else:
            log.debug("still failing: %s", problem)
        self.problem = problem

    def _init(self) -> None:
        nvml = self.nvml
        nvml.nvmlInit()
        try:
            count = nvml.nvmlDeviceGetCount()
            if count <= 0:
                raise _NoGpu()
            try:
                driver = nvml.nvmlSystemGetDriverVersion()
            except nvml.NVMLError:
                driver = ""
            devices = [self._open(i) for i in range(count)]
        except BaseException:
            self._shutdown()
            raise
        self.driver_version = driver
        self.devices = devices
        self.by_handle = {handle_key(d.handle): d for d in devices if d.handle is not None}
        self.generation += 1
        self.ready = True
        up = sum(d.up for d in devices)
        if self.problem is not None or self.generation == 1:
            log.info("NVML ready: driver %s, %d GPU(s), %d up", driver or "unknown", count, up)
        self.problem = None

    def _shutdown(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:
            pass

    def reset(self) -> None:
        """Drop the session (e.g. every device is gone); the next ensure() re-initialises when due."""
        with self.lock:
            if self.ready:
                self.ready = False
                for dev in self.devices:
                    dev.up = False
                self._shutdown()
                self._next_try = self.clock() + self.retry_interval

    def close(self) -> None:
        with self.lock:
            if self.ready:
                self.ready = False
                self._shutdown()

    # -- devices --
    def _open(self, index: int) -> Device:
        dev = self._known.get(index) or Device(index)
        self._known[index] = dev
        self.revive(dev, initial=True)
        return dev

    def revive(self, dev: Device, initial: bool = False) -> bool:
        """(Re)open a device by index and read its identity; mark it up or down."""
        nvml = self.nvml
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(dev.index)
            uuid = nvml.nvmlDeviceGetUUID(handle)
            if uuid != dev.uuid:
                if dev.uuid:
                    log.info("GPU %d is now %s (was %s)", dev.index, uuid, dev.uuid)
                dev.unsupported = set()
            dev.uuid = uuid
            dev.model = self._optional(nvml.nvmlDeviceGetName, handle, dev.model)
            pci = self._optional(nvml.nvmlDeviceGetPciInfo, handle, None)
            if pci is not None:
                bus = pci.busId
                dev.pci_bus_id = bus.decode() if isinstance(bus, bytes) else str(bus)
        except Exception as exc:
            if classify(nvml, exc) == DEVICE or initial:
                self.mark_down(dev, DeviceError("nvmlDeviceGetHandleByIndex", exc))
                return False
            raise
        if dev.handle is not None:
            self.by_handle.pop(handle_key(dev.handle), None)
        dev.handle = handle
        dev.static = {}
        self.by_handle[handle_key(handle)] = dev
        if not dev.up and not initial:
            log.info("GPU %d (%s) is back", dev.index, dev.uuid)
        dev.up, dev.error = True, ""
        return True

    def _optional(self, fn: Callable, handle: Any, default: Any) -> Any:
        try:
            return fn(handle)
        except Exception as exc:
            if classify(self.nvml, exc) == DEVICE:
                raise
            return default

    def mark_down(self, dev: Device, err: DeviceError) -> None:
        if dev.up or not dev.error:
            log.warning("GPU %d (%s) failed: %s; retrying every %gs", dev.index, dev.uuid or "uuid unknown",
                        err, self.retry_interval)
        dev.up = False
        dev.error = str(err)
        dev.retry_at = self.clock() + self.retry_interval

    def device_for(self, handle: Any) -> Device | None:
        return self.by_handle.get(handle_key(handle))


class _NoGpu(Exception):
    pass
