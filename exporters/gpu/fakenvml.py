"""A fake NVML: the `pynvml` API the GPU exporter uses, with simulated GPUs whose values change over time.

It is both the simulator behind `mlscope gpu-exporter --simulate N` and the test double:
- Same function names and signatures as `pynvml` (nvidia-ml-py), same constants, the same
  ctypes structs (re-exported from pynvml: c_nvmlMemory_t, c_nvmlUtilization_t, nvmlPciInfo_t,
  c_nvmlEventData_t, c_nvmlGpmMetricsGet_t, ...), the same opaque handle types and the same
  error classes (pynvml.NVMLError_NotSupported, NVMLError_GpuIsLost, ...).
- NVML's units: mW, mJ, MHz, KB/s, bytes, percent, degrees C.
- Error injection per device and per function (`inject`), from code, from the environment
  (MLSCOPE_FAKENVML_FAULTS) or from a JSON control file that a running exporter re-reads
  (MLSCOPE_FAKENVML_CONTROL), so end-to-end tests can make a GPU fall off the bus, emit Xid
  errors and bring the GPU back while the exporter process runs.

Environment (read at import and by `configure_from_env`):
  MLSCOPE_FAKENVML_GPUS      number of GPUs (default 2)
  MLSCOPE_FAKENVML_FAULTS    e.g. "nvmlInit=LibraryNotFound;1:nvmlDeviceGetPowerUsage=NotSupported;2:*=GpuIsLost"
  MLSCOPE_FAKENVML_CONTROL   JSON file: {"faults": ["2:*=GpuIsLost"], "xid": [[0, 79]], "values": {"0": {"utilization": 0.5}},
                                         "mig": {"0": ["3g.40gb", "1g.10gb"]}}
                             "xid" is cumulative: each new entry is delivered once as an event. "mig" is
                             configure_mig per GPU ([] turns MIG off), applied when it differs from the GPU's.
"""

from __future__ import annotations

import collections
import ctypes
import inspect
import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pynvml as _pynvml

# ---- constants, structs and error classes: pynvml's own objects ----
for _name, _obj in vars(_pynvml).items():
    if _name.startswith(("NVML", "nvml", "c_nvml", "struct_c_nvml")) and not inspect.isfunction(_obj) \
            and not inspect.ismodule(_obj):
        globals()[_name] = _obj
del _name, _obj

NVMLError = _pynvml.NVMLError
NVMLLibraryMismatchError = _pynvml.NVMLLibraryMismatchError
SIMULATED = True  # the exporter labels gpu_info{simulated="true"} when it runs on this module

_ERRORS = {name[len("NVMLError_"):]: cls for name, cls in vars(_pynvml).items()
           if name.startswith("NVMLError_") and isinstance(cls, type)}

# GPM metrics the fake measures (percent, 0-100), by pynvml metric id.
_GPM_METRICS = {
    _pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL: "graphics",
    _pynvml.NVML_GPM_METRIC_SM_UTIL: "sm_active",
    _pynvml.NVML_GPM_METRIC_SM_OCCUPANCY: "sm_occupancy",
    _pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL: "tensor_active",
    _pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL: "dram_active",
}
_FIRST_FAKE_PID = 4_194_400  # above Linux's PID_MAX_LIMIT (2^22): never a real process here
_MIB = 1024 * 1024


def _error(spec: Any) -> type:
    """An NVMLError subclass from a class, a name ('GpuIsLost', 'NVMLError_GpuIsLost') or a value (15)."""
    if isinstance(spec, type) and issubclass(spec, Exception):
        return spec
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return _pynvml.nvmlExceptionClass(int(spec))
    name = str(spec).removeprefix("NVMLError_")
    if name == "LibraryMismatch":
        return NVMLLibraryMismatchError
    if name not in _ERRORS:
        raise ValueError(f"unknown NVML error {spec!r} (e.g. {', '.join(sorted(_ERRORS)[:6])}, ...)")
    return _ERRORS[name]


def _raise(cls: type) -> None:
    raise cls()


@dataclass
class Fault:
    function: str  # a pynvml function name or "*"
    error: type
    gpu: int | None = None  # None: any device (and the device-less functions)
    remaining: int | None = None  # None: until cleared
    source: str = "code"

    def matches(self, function: str, gpu: int | None) -> bool:
        if self.function not in ("*", function):
            return False
        return self.gpu is None or self.gpu == gpu


@dataclass
class FakeGPU:
    index: int
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    pci_bus_id: str = ""
    memory_total: int = 81559 * _MIB
    memory_reserved: int = 531 * _MIB
    power_limit_mw: int = 700_000
    idle_power_mw: int = 72_000
    max_sm_mhz: int = 1980
    mem_mhz: int = 2619
    period: float = 300.0
    phase: float = 0.0
    gpm: bool = True
    overrides: dict = field(default_factory=dict)
    energy_mj: float = 0.0
    integrals: dict = field(default_factory=lambda: {k: 0.0 for k in _GPM_METRICS.values()})
    last_t: float | None = None
    pcie_replays: int = 0
    ecc_corrected: int = 0
    ecc_uncorrected: int = 0
    ecc_lifetime_corrected: int = 1  # aggregate (lifetime) counts include errors from before this boot
    remapped: tuple = (0, 0, 0, 0)
    processes: list = field(default_factory=list)  # [pid, name, base bytes]
    nvlinks: int = 0  # NVLink links (an H100 SXM has 18; a PCIe card, as in the tests, none)
    nvlink_down: set = field(default_factory=set)
    nvlink_errors: dict = field(default_factory=dict)  # (link, NVML_NVLINK_ERROR_DL_*) -> count
    nvlink_kib: dict = field(default_factory=lambda: {"tx": 0.0, "rx": 0.0})  # data moved, KiB, all links
    mig_capable: bool = True  # an H100: MIG-capable, MIG off until configure_mig
    mig_mode: int = 0
    mig: list = field(default_factory=list)  # [FakeMigInstance]

    # -- the simulation: values as functions of time, overridable per key --
    def value(self, key: str, t: float) -> float:
        if key in self.overrides:
            return float(self.overrides[key])
        x = 2 * math.pi * t / self.period + self.phase
        util = min(1.0, max(0.0, 0.55 + 0.4 * math.sin(x) + 0.08 * math.sin(7.3 * x)))
        if key == "utilization":
            return util
        if key == "memory_utilization":
            return min(1.0, 0.6 * util + 0.05)
        if key == "sm_active":
            return 0.9 * self.value("utilization", t)
        if key == "sm_occupancy":
            return 0.45 * self.value("utilization", t)
        if key == "tensor_active":
            return 0.6 * self.value("utilization", t)
        if key == "dram_active":
            return 0.5 * self.value("utilization", t)
        if key == "graphics":
            return self.value("utilization", t)
        if key == "power_w":
            u = self.value("utilization", t)
            return (self.idle_power_mw + (self.power_limit_mw * 0.98 - self.idle_power_mw) * u ** 0.9) / 1000
        if key == "temperature":
            return 31 + 44 * self.value("utilization", t - 20)
        if key == "pcie_tx_kbs":
            return 40_000 + 900_000 * self.value("utilization", t)
        if key == "pcie_rx_kbs":
            return 60_000 + 1_600_000 * self.value("utilization", t)
        if key == "memory_used":
            return sum(m for m in self.process_memory(t).values() if m is not None) + 520 * _MIB
        if key == "nvlink_tx_kibs":  # per active link, KiB/s
            return 2_000_000 * self.value("utilization", t)
        if key == "nvlink_rx_kibs":
            return 1_500_000 * self.value("utilization", t)
        raise KeyError(key)

    def process_memory(self, t: float) -> dict[int, int | None]:
        if "processes" in self.overrides:  # None: NVML_VALUE_NOT_AVAILABLE, as pynvml returns it
            return {int(pid): None if mem is None else int(mem) for pid, _name, mem in self.overrides["processes"]}
        return {pid: int(base + (base // 4) * math.sin(2 * math.pi * t / 600 + pid)) // _MIB * _MIB
                for pid, _name, base in self.processes}

    def advance(self, t: float) -> None:
        """Integrate energy and GPM activity up to time t (midpoint rule)."""
        if self.last_t is None:
            self.last_t = t
            return
        dt = t - self.last_t
        if dt <= 0:
            return
        mid = self.last_t + dt / 2
        self.energy_mj += self.value("power_w", mid) * 1000 * dt
        active = self.nvlinks - len(self.nvlink_down)
        if active > 0:
            self.nvlink_kib["tx"] += active * self.value("nvlink_tx_kibs", mid) * dt
            self.nvlink_kib["rx"] += active * self.value("nvlink_rx_kibs", mid) * dt
        for name in self.integrals:
            self.integrals[name] += self.value(name, mid) * dt
            for instance in self.mig:
                instance.integrals[name] += min(1.0, instance.load * self.value(name, mid)) * dt
        self.last_t = t


# H100 80GB's GPU instance profiles: pynvml profile index -> (profile id, slices, memory MiB, name)
H100_MIG_PROFILES = {
    _pynvml.NVML_GPU_INSTANCE_PROFILE_1_SLICE: (19, 1, 9856, "MIG 1g.10gb"),
    _pynvml.NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1: (15, 1, 19968, "MIG 1g.20gb"),
    _pynvml.NVML_GPU_INSTANCE_PROFILE_2_SLICE: (14, 2, 20096, "MIG 2g.20gb"),
    _pynvml.NVML_GPU_INSTANCE_PROFILE_3_SLICE: (9, 3, 40320, "MIG 3g.40gb"),
    _pynvml.NVML_GPU_INSTANCE_PROFILE_4_SLICE: (5, 4, 40320, "MIG 4g.40gb"),
    _pynvml.NVML_GPU_INSTANCE_PROFILE_7_SLICE: (0, 7, 80896, "MIG 7g.80gb"),
}


@dataclass
class FakeMigInstance:
    gi_id: int
    profile_index: int
    load: float  # the instance's activity relative to the GPU's simulated utilization
    uuid: str = ""
    integrals: dict = field(default_factory=lambda: {k: 0.0 for k in _GPM_METRICS.values()})
    overrides: dict = field(default_factory=dict)

    @property
    def profile(self) -> str:
        return H100_MIG_PROFILES[self.profile_index][3].removeprefix("MIG ")

    @property
    def memory_total(self) -> int:
        return H100_MIG_PROFILES[self.profile_index][2] * _MIB

    def memory_used(self, gpu: "FakeGPU", t: float) -> int:
        if "memory_used" in self.overrides:
            return int(self.overrides["memory_used"])
        share = 0.1 + 0.6 * min(1.0, self.load * gpu.value("utilization", t))
        return int(self.memory_total * share) // _MIB * _MIB


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.clock: Callable[[], float] = time.monotonic
        self.gpus: list[FakeGPU] = []
        self.driver_version = "580.159.04"
        self.refcount = 0
        self.faults: list[Fault] = []
        self.calls: collections.Counter = collections.Counter()
        self.handles: dict[int, tuple[Any, FakeGPU]] = {}  # address -> (kept-alive handle, gpu)
        self.samples: dict[int, tuple[Any, dict | None]] = {}
        self.event_sets: dict[int, dict] = {}
        self.control_path: str | None = None
        self.control_mtime: float | None = None
        self.control_checked = 0.0
        self.control_xids = 0
        self.pcie_latency = 0.0
        self.mig_handles: dict[int, tuple[Any, FakeGPU, FakeMigInstance]] = {}
        self.gi_handles: dict[int, tuple[Any, FakeGPU, FakeMigInstance]] = {}


_S = _State()


# ---- configuration (not part of pynvml) ----

def configure(gpus: int = 2, *, clock: Callable[[], float] | None = None, seed: int = 0,
              model: str = "NVIDIA H100 80GB HBM3", gpm: bool = True, processes: bool = True,
              driver_version: str = "580.159.04", pcie_latency: float = 0.0, nvlinks: int = 0) -> None:
    """Reset everything: `gpus` healthy simulated GPUs, no faults, no events.

    pcie_latency: seconds nvmlDeviceGetPcieThroughput blocks (the real one: 0.02)."""
    with _S.lock:
        _S.clock = clock or time.monotonic
        _S.pcie_latency = pcie_latency
        _S.driver_version = driver_version
        _S.refcount = 0
        _S.faults = [f for f in _S.faults if f.source == "env"]
        _S.calls.clear()
        _S.handles.clear()
        _S.samples.clear()
        _S.event_sets.clear()
        _S.mig_handles.clear()
        _S.gi_handles.clear()
        _S.gpus = []
        pid = _FIRST_FAKE_PID + seed * 100
        for i in range(gpus):
            uuid = "GPU-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}".format(
                0x5EED0000 + seed, i, 0xFA4E, 0x1000 + i, 0xC0FFEE000000 + i)
            gpu = FakeGPU(index=i, uuid=uuid, name=model, pci_bus_id=f"00000000:{0x18 + 0x10 * i:02X}:00.0",
                          phase=1.3 * i + 0.7 * seed, period=240.0 + 37 * i, gpm=gpm, nvlinks=nvlinks)
            if processes:
                count = (i % 3) + 1
                names = ["python3", "tritonserver", "torchrun", "vllm"]
                for j in range(count):
                    gpu.processes.append([pid, names[(i + j) % len(names)], (6 + 9 * j + 3 * i) * 1024 * _MIB])
                    pid += 1
            _S.gpus.append(gpu)


def configure_from_env(environ: dict | None = None) -> None:
    env = os.environ if environ is None else environ
    with _S.lock:
        _S.faults = []
        configure(int(env.get("MLSCOPE_FAKENVML_GPUS", "2") or 2))
        for fault in parse_faults(env.get("MLSCOPE_FAKENVML_FAULTS", ""), source="env"):
            _S.faults.append(fault)
        _S.control_path = env.get("MLSCOPE_FAKENVML_CONTROL") or None
        _S.control_mtime = None
        _S.control_xids = 0


def parse_faults(text: str | list, source: str = "code") -> list[Fault]:
    """'[GPU:]FUNCTION=ERROR[*COUNT]' items separated by ';' (or a list of them)."""
    items = text if isinstance(text, list) else [p for p in str(text).split(";") if p.strip()]
    faults = []
    for item in items:
        target, sep, err = str(item).partition("=")
        if not sep:
            raise ValueError(f"fault {item!r} must be [GPU:]FUNCTION=ERROR")
        gpu_text, _, function = target.strip().rpartition(":")
        err, _, count = err.strip().partition("*")
        faults.append(Fault(function.strip(), _error(err.strip()), int(gpu_text) if gpu_text else None,
                            int(count) if count else None, source))
    return faults


def inject(function: str = "*", error: Any = "GpuIsLost", gpu: int | None = None, count: int | None = None) -> None:
    """Make `function` ("*": every function) raise `error`, on one GPU or on all; `count` times or until cleared."""
    with _S.lock:
        _S.faults.append(Fault(function, _error(error), gpu, count))


def unsupported(gpu: int | None, *functions: str) -> None:
    for function in functions:
        inject(function, "NotSupported", gpu)


def clear_faults(gpu: int | None = None, function: str | None = None) -> None:
    with _S.lock:
        _S.faults = [f for f in _S.faults
                     if not ((gpu is None or f.gpu == gpu) and (function is None or f.function == function))]


def set_values(gpu: int, **values: Any) -> None:
    """Pin simulated values: utilization, memory_utilization, sm_active, sm_occupancy, tensor_active,
    dram_active, power_w, temperature, pcie_tx_kbs, pcie_rx_kbs, memory_used, processes=[(pid, name, bytes)],
    and the counters energy_mj, pcie_replays, ecc_corrected, ecc_uncorrected, remapped=(c, u, pending, failure),
    throttle (bitmask)."""
    with _S.lock:
        g = _S.gpus[gpu]
        g.advance(_S.clock())
        for key, val in values.items():
            if key in ("energy_mj", "pcie_replays", "ecc_corrected", "ecc_uncorrected", "remapped", "gpm",
                       "name", "power_limit_mw", "memory_total", "memory_reserved", "max_sm_mhz", "nvlinks",
                       "nvlink_down", "nvlink_errors"):
                setattr(g, key, val)
            else:
                g.overrides[key] = val


def configure_mig(gpu: int, profiles: list[str], load: list[float] | None = None) -> None:
    """Turn MIG on for `gpu` with GPU instances of these profiles ("3g.40gb", "1g.10gb", ...), as an
    administrator would with nvidia-smi; [] turns it off. `load`: each instance's activity relative to the GPU's."""
    by_name = {name.removeprefix("MIG "): index for index, (_id, _s, _m, name) in H100_MIG_PROFILES.items()}
    with _S.lock:
        g = _S.gpus[gpu]
        if not g.mig_capable:
            raise ValueError(f"GPU {gpu} is not MIG-capable")
        g.advance(_S.clock())
        g.mig_mode = 1 if profiles else 0
        g.mig = []
        for i, profile in enumerate(profiles):
            if profile not in by_name:
                raise ValueError(f"unknown MIG profile {profile!r} (H100: {', '.join(by_name)})")
            uuid = "MIG-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}".format(0x5EED0000, gpu, i, 0x316, 0xC0FFEE000000 + i)
            g.mig.append(FakeMigInstance(gi_id=1 + 2 * i, profile_index=by_name[profile],
                                         load=(load or [])[i] if i < len(load or []) else 1.0 - 0.2 * i, uuid=uuid))
        _S.mig_handles = {a: v for a, v in _S.mig_handles.items() if v[1] is not g}
        _S.gi_handles = {a: v for a, v in _S.gi_handles.items() if v[1] is not g}


def emit_xid(gpu: int, xid: int) -> None:
    """Deliver an Xid critical-error event for `gpu` to every event set that registered for it."""
    with _S.cond:
        g = _S.gpus[gpu]
        for es in _S.event_sets.values():
            if es["mask"].get(g.index, 0) & _pynvml.nvmlEventTypeXidCriticalError:
                es["pending"].append((g, _pynvml.nvmlEventTypeXidCriticalError, xid))
        _S.cond.notify_all()


def call_count(function: str) -> int:
    return _S.calls[function]


def gpus() -> list[FakeGPU]:
    return list(_S.gpus)


# ---- internals ----

def _control() -> None:
    """Re-read the control file when it changes (at most every 50 ms of real time)."""
    path = _S.control_path
    if not path:
        return
    now = time.monotonic()
    if now - _S.control_checked < 0.05:
        return
    _S.control_checked = now
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        mtime = None
    if mtime == _S.control_mtime:
        return
    _S.control_mtime = mtime
    data: dict = {}
    if mtime is not None:
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh) or {}
        except (OSError, ValueError):
            return  # half-written: try again on the next call
    _S.faults = [f for f in _S.faults if f.source != "file"] + parse_faults(data.get("faults", []), "file")
    for gpu, values in (data.get("values") or {}).items():
        set_values(int(gpu), **values)
    for gpu, profiles in (data.get("mig") or {}).items():
        if int(gpu) < len(_S.gpus) and [i.profile for i in _S.gpus[int(gpu)].mig] != list(profiles):
            configure_mig(int(gpu), list(profiles))
    xids = data.get("xid") or []
    for gpu, xid in xids[_S.control_xids:]:
        emit_xid(int(gpu), int(xid))
    _S.control_xids = len(xids)


def _check(function: str, gpu: FakeGPU | int | None = None, *, needs_init: bool = True) -> None:
    _S.calls[function] += 1
    _control()
    index = gpu.index if isinstance(gpu, FakeGPU) else gpu
    for fault in _S.faults:
        if fault.matches(function, index):
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    _S.faults.remove(fault)
            _raise(fault.error)
    if needs_init and _S.refcount <= 0:
        _raise(_pynvml.NVMLError_Uninitialized)


def _gpu(handle: Any) -> FakeGPU:
    try:
        return _S.handles[ctypes.addressof(handle.contents)][1]
    except (KeyError, ValueError, AttributeError, TypeError):
        _raise(_pynvml.NVMLError_InvalidArgument)
        raise  # unreachable


def _mig(handle: Any) -> tuple[FakeGPU, FakeMigInstance] | None:
    try:
        entry = _S.mig_handles.get(ctypes.addressof(handle.contents))
    except (ValueError, AttributeError, TypeError):
        return None
    return (entry[1], entry[2]) if entry else None


def _dev(function: str, handle: Any) -> tuple[FakeGPU, float]:
    """Common entry of a device function: faults, init check, the device, and the time (advanced)."""
    with _S.lock:
        gpu = _gpu(handle)
        _check(function, gpu)
        t = _S.clock()
        gpu.advance(t)
        return gpu, t


# ---- the pynvml API ----

def nvmlInit() -> None:
    with _S.lock:
        _check("nvmlInit", needs_init=False)
        _S.refcount += 1


def nvmlInitWithFlags(flags: int) -> None:
    nvmlInit()


def nvmlShutdown() -> None:
    with _S.lock:
        _check("nvmlShutdown")
        _S.refcount -= 1


def nvmlSystemGetDriverVersion() -> str:
    with _S.lock:
        _check("nvmlSystemGetDriverVersion")
        return _S.driver_version


def nvmlSystemGetNVMLVersion() -> str:
    with _S.lock:
        _check("nvmlSystemGetNVMLVersion")
        return "13." + _S.driver_version


def nvmlSystemGetProcessName(pid: int) -> str:
    with _S.lock:
        _check("nvmlSystemGetProcessName")
        for g in _S.gpus:
            for p, name, _mem in g.overrides.get("processes", g.processes):
                if int(p) == int(pid):
                    return f"/usr/bin/{name}"
        _raise(_pynvml.NVMLError_NotFound)


def nvmlDeviceGetCount() -> int:
    with _S.lock:
        _check("nvmlDeviceGetCount")
        return len(_S.gpus)


def nvmlDeviceGetHandleByIndex(index: int) -> Any:
    with _S.lock:
        _check("nvmlDeviceGetHandleByIndex", int(index))
        if not 0 <= int(index) < len(_S.gpus):
            _raise(_pynvml.NVMLError_InvalidArgument)
        gpu = _S.gpus[int(index)]
        for address, (handle, g) in _S.handles.items():
            if g is gpu:
                return _pynvml.c_nvmlDevice_t(handle.contents)
        struct = _pynvml.struct_c_nvmlDevice_t()
        handle = _pynvml.c_nvmlDevice_t(struct)
        _S.handles[ctypes.addressof(struct)] = (handle, gpu)
        return _pynvml.c_nvmlDevice_t(struct)


def nvmlDeviceGetIndex(handle: Any) -> int:
    return _dev("nvmlDeviceGetIndex", handle)[0].index


def nvmlDeviceGetUUID(handle: Any) -> str:
    with _S.lock:
        mig = _mig(handle)
        if mig is not None:
            _check("nvmlDeviceGetUUID", mig[0])
            return mig[1].uuid
    return _dev("nvmlDeviceGetUUID", handle)[0].uuid


def nvmlDeviceGetName(handle: Any) -> str:
    return _dev("nvmlDeviceGetName", handle)[0].name


def nvmlDeviceGetPciInfo(handle: Any) -> Any:
    gpu, _t = _dev("nvmlDeviceGetPciInfo", handle)
    info = _pynvml.nvmlPciInfo_t()
    bus = gpu.pci_bus_id.encode()
    info.busId = bus
    info.busIdLegacy = bus[4:] if len(bus) > 12 else bus
    info.domain, info.bus, info.device = 0, int(gpu.pci_bus_id.split(":")[1], 16), 0
    info.pciDeviceId = 0x233010DE
    return info


nvmlDeviceGetPciInfo_v3 = nvmlDeviceGetPciInfo


def nvmlDeviceGetUtilizationRates(handle: Any) -> Any:
    gpu, t = _dev("nvmlDeviceGetUtilizationRates", handle)
    if gpu.mig_mode:
        _raise(_pynvml.NVMLError_NotSupported)  # as on a real GPU in MIG mode
    util = _pynvml.c_nvmlUtilization_t()
    util.gpu = round(100 * gpu.value("utilization", t))
    util.memory = round(100 * gpu.value("memory_utilization", t))
    return util


def nvmlDeviceGetMemoryInfo(handle: Any, version: int | None = None) -> Any:
    with _S.lock:
        mig = _mig(handle)
        if mig is not None:  # a MIG device: the instance's memory
            gpu, instance = mig
            _check("nvmlDeviceGetMemoryInfo", gpu)
            mem = _pynvml.c_nvmlMemory_t()
            mem.total, mem.used = instance.memory_total, instance.memory_used(gpu, _S.clock())
            mem.free = mem.total - mem.used
            return mem
    gpu, t = _dev("nvmlDeviceGetMemoryInfo" if not version else "nvmlDeviceGetMemoryInfo_v2", handle)
    used = min(int(gpu.value("memory_used", t)), gpu.memory_total - gpu.memory_reserved)
    if not version:
        mem = _pynvml.c_nvmlMemory_t()  # v1: `used` includes the driver's reserved memory
        mem.total, mem.used = gpu.memory_total, used + gpu.memory_reserved
        mem.free = gpu.memory_total - mem.used
        return mem
    if version != _pynvml.nvmlMemory_v2:
        _raise(_pynvml.NVMLError_ArgumentVersionMismatch)
    mem = _pynvml.c_nvmlMemory_v2_t()
    mem.version = version
    mem.total, mem.reserved, mem.used = gpu.memory_total, gpu.memory_reserved, used
    mem.free = gpu.memory_total - gpu.memory_reserved - used
    return mem


def nvmlDeviceGetTemperature(handle: Any, sensor: int) -> int:
    gpu, t = _dev("nvmlDeviceGetTemperature", handle)
    if sensor != _pynvml.NVML_TEMPERATURE_GPU:
        _raise(_pynvml.NVMLError_NotSupported)
    return round(gpu.value("temperature", t))


def nvmlDeviceGetTemperatureV(handle: Any, sensor: int, version: int = _pynvml.nvmlTemperature_v1) -> int:
    gpu, t = _dev("nvmlDeviceGetTemperatureV", handle)
    if version != _pynvml.nvmlTemperature_v1:
        _raise(_pynvml.NVMLError_ArgumentVersionMismatch)
    if sensor != _pynvml.NVML_TEMPERATURE_GPU:
        _raise(_pynvml.NVMLError_NotSupported)
    return round(gpu.value("temperature", t))


def nvmlDeviceGetMinorNumber(handle: Any) -> int:
    return _dev("nvmlDeviceGetMinorNumber", handle)[0].index


def nvmlDeviceGetPowerUsage(handle: Any) -> int:
    gpu, t = _dev("nvmlDeviceGetPowerUsage", handle)
    return round(gpu.value("power_w", t) * 1000)


def nvmlDeviceGetEnforcedPowerLimit(handle: Any) -> int:
    return _dev("nvmlDeviceGetEnforcedPowerLimit", handle)[0].power_limit_mw


def nvmlDeviceGetPowerManagementLimit(handle: Any) -> int:
    return _dev("nvmlDeviceGetPowerManagementLimit", handle)[0].power_limit_mw


def nvmlDeviceGetTotalEnergyConsumption(handle: Any) -> int:
    return int(_dev("nvmlDeviceGetTotalEnergyConsumption", handle)[0].energy_mj)


def nvmlDeviceGetClockInfo(handle: Any, type: int) -> int:  # noqa: A002 (pynvml's name)
    gpu, t = _dev("nvmlDeviceGetClockInfo", handle)
    if type in (_pynvml.NVML_CLOCK_SM, _pynvml.NVML_CLOCK_GRAPHICS):
        u = gpu.value("utilization", t)
        if u < 0.05:
            return 345
        throttled = gpu.value("power_w", t) * 1000 > 0.95 * gpu.power_limit_mw
        return gpu.max_sm_mhz - (120 if throttled else 0)
    if type == _pynvml.NVML_CLOCK_MEM:
        return gpu.mem_mhz
    _raise(_pynvml.NVMLError_NotSupported)


def nvmlDeviceGetMaxClockInfo(handle: Any, type: int) -> int:  # noqa: A002
    gpu, _t = _dev("nvmlDeviceGetMaxClockInfo", handle)
    if type in (_pynvml.NVML_CLOCK_SM, _pynvml.NVML_CLOCK_GRAPHICS):
        return gpu.max_sm_mhz
    if type == _pynvml.NVML_CLOCK_MEM:
        return gpu.mem_mhz
    _raise(_pynvml.NVMLError_NotSupported)


def _reasons(gpu: FakeGPU, t: float) -> int:
    if "throttle" in gpu.overrides:
        return int(gpu.overrides["throttle"])
    reasons = 0
    if gpu.value("utilization", t) < 0.05:
        reasons |= _pynvml.nvmlClocksEventReasonGpuIdle
    if gpu.value("power_w", t) * 1000 > 0.95 * gpu.power_limit_mw:
        reasons |= _pynvml.nvmlClocksEventReasonSwPowerCap
    if gpu.value("temperature", t) > 74:
        reasons |= _pynvml.nvmlClocksEventReasonSwThermalSlowdown
    return reasons


def nvmlDeviceGetCurrentClocksEventReasons(handle: Any) -> int:
    return _reasons(*_dev("nvmlDeviceGetCurrentClocksEventReasons", handle))


def nvmlDeviceGetCurrentClocksThrottleReasons(handle: Any) -> int:
    return _reasons(*_dev("nvmlDeviceGetCurrentClocksThrottleReasons", handle))


def nvmlDeviceGetTotalEccErrors(handle: Any, errorType: int, counterType: int) -> int:  # noqa: N803
    gpu, _t = _dev("nvmlDeviceGetTotalEccErrors", handle)
    if errorType == _pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED:
        if counterType == _pynvml.NVML_AGGREGATE_ECC:
            return gpu.ecc_corrected + gpu.ecc_lifetime_corrected
        return gpu.ecc_corrected
    if errorType == _pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED:
        return gpu.ecc_uncorrected
    _raise(_pynvml.NVMLError_InvalidArgument)


def nvmlDeviceGetRemappedRows(device: Any) -> tuple:
    return tuple(_dev("nvmlDeviceGetRemappedRows", device)[0].remapped)


def nvmlDeviceGetPcieReplayCounter(handle: Any) -> int:
    return _dev("nvmlDeviceGetPcieReplayCounter", handle)[0].pcie_replays


def nvmlDeviceGetPcieThroughput(device: Any, counter: int) -> int:
    if _S.pcie_latency:
        time.sleep(_S.pcie_latency)  # the real call counts bytes for 20 ms before it answers
    gpu, t = _dev("nvmlDeviceGetPcieThroughput", device)
    if counter == _pynvml.NVML_PCIE_UTIL_TX_BYTES:
        return round(gpu.value("pcie_tx_kbs", t))
    if counter == _pynvml.NVML_PCIE_UTIL_RX_BYTES:
        return round(gpu.value("pcie_rx_kbs", t))
    _raise(_pynvml.NVMLError_InvalidArgument)


def _process_list(function: str, handle: Any) -> list:
    """As NVML: on a MIG-enabled GPU each process carries its GPU/compute instance ids (on the parent's handle
    every instance's processes, on a MIG device's handle its own); 0xFFFFFFFF without MIG. The simulated
    processes are spread over the instances in turn."""
    with _S.lock:
        mig = _mig(handle)
        if mig is not None:
            _check(function, mig[0])
            (gpu, only), t = mig, _S.clock()
        else:
            (gpu, t), only = _dev(function, handle), None
    out = []
    for n, (pid, mem) in enumerate(gpu.process_memory(t).items()):
        instance = gpu.mig[n % len(gpu.mig)] if gpu.mig_mode and gpu.mig else None
        if only is not None and instance is not only:
            continue
        gi, ci = (instance.gi_id, 0) if instance is not None else (0xFFFFFFFF, 0xFFFFFFFF)
        out.append(_pynvml.nvmlFriendlyObject({"pid": pid, "usedGpuMemory": mem,
                                               "gpuInstanceId": gi, "computeInstanceId": ci}))
    return out


def nvmlDeviceGetComputeRunningProcesses(handle: Any) -> list:
    return _process_list("nvmlDeviceGetComputeRunningProcesses", handle)


def nvmlDeviceGetGraphicsRunningProcesses(handle: Any) -> list:
    _dev("nvmlDeviceGetGraphicsRunningProcesses", handle)
    return []


def nvmlDeviceGetSupportedEventTypes(handle: Any) -> int:
    _dev("nvmlDeviceGetSupportedEventTypes", handle)
    return _pynvml.nvmlEventTypeXidCriticalError | _pynvml.nvmlEventTypeSingleBitEccError \
        | _pynvml.nvmlEventTypeDoubleBitEccError


# -- events --

def nvmlEventSetCreate() -> Any:
    with _S.lock:
        _check("nvmlEventSetCreate")
        struct = _pynvml.struct_c_nvmlEventSet_t()
        handle = _pynvml.c_nvmlEventSet_t(struct)
        _S.event_sets[ctypes.addressof(struct)] = {"handle": handle, "mask": {}, "pending": collections.deque()}
        return _pynvml.c_nvmlEventSet_t(struct)


def _event_set(event_set: Any) -> dict:
    try:
        return _S.event_sets[ctypes.addressof(event_set.contents)]
    except (KeyError, ValueError, AttributeError, TypeError):
        _raise(_pynvml.NVMLError_InvalidArgument)
        raise


def nvmlDeviceRegisterEvents(handle: Any, eventTypes: int, eventSet: Any) -> None:  # noqa: N803
    with _S.lock:
        gpu, _t = _dev("nvmlDeviceRegisterEvents", handle)
        es = _event_set(eventSet)
        es["mask"][gpu.index] = es["mask"].get(gpu.index, 0) | int(eventTypes)


def nvmlEventSetWait_v2(eventSet: Any, timeoutms: int) -> Any:  # noqa: N803
    with _S.cond:
        _check("nvmlEventSetWait")
        es = _event_set(eventSet)
        deadline = time.monotonic() + timeoutms / 1000
        while not es["pending"]:
            left = deadline - time.monotonic()
            if left <= 0:
                _raise(_pynvml.NVMLError_Timeout)
            _S.cond.wait(min(left, 0.05))
            _control()
        gpu, event_type, data = es["pending"].popleft()
        event = _pynvml.c_nvmlEventData_t()
        for address, (handle, g) in _S.handles.items():
            if g is gpu:
                event.device = _pynvml.c_nvmlDevice_t(handle.contents)
        event.eventType = event_type
        event.eventData = data
        event.gpuInstanceId = event.computeInstanceId = 0xFFFFFFFF
        return event


def nvmlEventSetWait(eventSet: Any, timeoutms: int) -> Any:  # noqa: N803
    return nvmlEventSetWait_v2(eventSet, timeoutms)


def nvmlEventSetFree(eventSet: Any) -> None:
    with _S.lock:
        _check("nvmlEventSetFree")
        _S.event_sets.pop(ctypes.addressof(eventSet.contents), None)


# -- NVLink --

def _nvlink(function: str, device: Any, link: int) -> FakeGPU:
    gpu, _t = _dev(function, device)
    if not gpu.nvlinks:
        _raise(_pynvml.NVMLError_NotSupported)
    if not 0 <= int(link) < gpu.nvlinks:
        _raise(_pynvml.NVMLError_InvalidArgument)
    return gpu


def nvmlDeviceGetNvLinkState(device: Any, link: int) -> int:
    gpu = _nvlink("nvmlDeviceGetNvLinkState", device, link)
    return _pynvml.NVML_FEATURE_DISABLED if int(link) in gpu.nvlink_down else _pynvml.NVML_FEATURE_ENABLED


def nvmlDeviceGetNvLinkErrorCounter(device: Any, link: int, counter: int) -> int:
    gpu = _nvlink("nvmlDeviceGetNvLinkErrorCounter", device, link)
    if int(counter) not in (_pynvml.NVML_NVLINK_ERROR_DL_REPLAY, _pynvml.NVML_NVLINK_ERROR_DL_RECOVERY,
                            _pynvml.NVML_NVLINK_ERROR_DL_CRC_FLIT, _pynvml.NVML_NVLINK_ERROR_DL_CRC_DATA):
        _raise(_pynvml.NVMLError_NotSupported)
    return int(gpu.nvlink_errors.get((int(link), int(counter)), 0))


def nvmlDeviceGetFieldValues(handle: Any, fieldIds: list) -> Any:  # noqa: N803
    """NVLink throughput (NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX/RX, KiB, scopeId = a link or 0xFFFFFFFF for
    all); any other field answers NVML_ERROR_NOT_SUPPORTED in its nvmlReturn, as NVML does."""
    gpu, _t = _dev("nvmlDeviceGetFieldValues", handle)
    values = (_pynvml.c_nvmlFieldValue_t * len(fieldIds))()
    directions = {_pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX: "tx", _pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX:
                  "rx"}
    for i, field_id in enumerate(fieldIds):
        try:
            (values[i].fieldId, values[i].scopeId) = field_id
        except TypeError:
            values[i].fieldId = field_id
        direction = directions.get(values[i].fieldId)
        if direction is None or not gpu.nvlinks:
            values[i].nvmlReturn = _pynvml.NVML_ERROR_NOT_SUPPORTED
            continue
        active = gpu.nvlinks - len(gpu.nvlink_down)
        total = gpu.nvlink_kib[direction]
        per_link = total / active if active else 0.0
        values[i].valueType = _pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
        values[i].value.ullVal = int(total if values[i].scopeId == 0xFFFFFFFF else
                                     (0 if values[i].scopeId in gpu.nvlink_down else per_link))
        values[i].nvmlReturn = _pynvml.NVML_SUCCESS
    return values


# -- MIG (query functions only: there is no way to change MIG mode through this module, as in the exporter) --

def nvmlDeviceGetMigMode(device: Any) -> list:
    gpu, _t = _dev("nvmlDeviceGetMigMode", device)
    if not gpu.mig_capable:
        _raise(_pynvml.NVMLError_NotSupported)
    return [gpu.mig_mode, gpu.mig_mode]


def nvmlDeviceGetMaxMigDeviceCount(device: Any) -> int:
    gpu, _t = _dev("nvmlDeviceGetMaxMigDeviceCount", device)
    if not gpu.mig_capable:
        _raise(_pynvml.NVMLError_NotSupported)
    return 7


def nvmlDeviceGetMigDeviceHandleByIndex(device: Any, index: int) -> Any:
    with _S.lock:
        gpu, _t = _dev("nvmlDeviceGetMigDeviceHandleByIndex", device)
        if not gpu.mig_mode:
            _raise(_pynvml.NVMLError_InvalidArgument)
        if not 0 <= int(index) < len(gpu.mig):
            _raise(_pynvml.NVMLError_NotFound)
        instance = gpu.mig[int(index)]
        for handle, g, i in _S.mig_handles.values():
            if i is instance:
                return _pynvml.c_nvmlDevice_t(handle.contents)
        struct = _pynvml.struct_c_nvmlDevice_t()
        handle = _pynvml.c_nvmlDevice_t(struct)
        _S.mig_handles[ctypes.addressof(struct)] = (handle, gpu, instance)
        return _pynvml.c_nvmlDevice_t(struct)


def _mig_call(function: str, device: Any) -> tuple[FakeGPU, FakeMigInstance]:
    with _S.lock:
        mig = _mig(device)
        if mig is None:
            _gpu(device)  # InvalidArgument for a bad handle
            _check(function)
            _raise(_pynvml.NVMLError_InvalidArgument)  # a full GPU is not a MIG device
        _check(function, mig[0])
        return mig


def nvmlDeviceIsMigDeviceHandle(device: Any) -> Any:
    with _S.lock:
        _check("nvmlDeviceIsMigDeviceHandle")
        return ctypes.c_uint(1 if _mig(device) is not None else 0)


def nvmlDeviceGetGpuInstanceId(device: Any) -> int:
    return _mig_call("nvmlDeviceGetGpuInstanceId", device)[1].gi_id


def nvmlDeviceGetComputeInstanceId(device: Any) -> int:
    _mig_call("nvmlDeviceGetComputeInstanceId", device)
    return 0


def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(migDevice: Any) -> Any:  # noqa: N803
    gpu, _instance = _mig_call("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", migDevice)
    return nvmlDeviceGetHandleByIndex(gpu.index)


def nvmlDeviceGetGpuInstanceById(device: Any, gpuInstanceId: int) -> Any:  # noqa: N803
    with _S.lock:
        gpu, _t = _dev("nvmlDeviceGetGpuInstanceById", device)
        instance = next((i for i in gpu.mig if i.gi_id == int(gpuInstanceId)), None)
        if not gpu.mig_mode or instance is None:
            _raise(_pynvml.NVMLError_NotFound)
        struct = _pynvml.struct_c_nvmlGpuInstance_t()
        _S.gi_handles[ctypes.addressof(struct)] = (_pynvml.c_nvmlGpuInstance_t(struct), gpu, instance)
        return _pynvml.c_nvmlGpuInstance_t(struct)


def nvmlGpuInstanceGetInfo(gpuInstance: Any) -> Any:  # noqa: N803
    with _S.lock:
        _check("nvmlGpuInstanceGetInfo")
        try:
            _handle, gpu, instance = _S.gi_handles[ctypes.addressof(gpuInstance.contents)]
        except (KeyError, ValueError, AttributeError, TypeError):
            _raise(_pynvml.NVMLError_InvalidArgument)
            raise
        info = _pynvml.c_nvmlGpuInstanceInfo_t()
        info.device = nvmlDeviceGetHandleByIndex(gpu.index)
        info.id = instance.gi_id
        info.profileId = H100_MIG_PROFILES[instance.profile_index][0]
        info.placement.start, info.placement.size = 0, H100_MIG_PROFILES[instance.profile_index][1]
        return info


def nvmlDeviceGetGpuInstanceProfileInfo(device: Any, profile: int, version: int = 2) -> Any:
    gpu, _t = _dev("nvmlDeviceGetGpuInstanceProfileInfo", device)
    if not gpu.mig_capable or int(profile) not in H100_MIG_PROFILES:
        _raise(_pynvml.NVMLError_NotSupported)
    if version not in (1, 2):
        _raise(_pynvml.NVMLError_FunctionNotFound)  # what pynvml raises for another version
    profile_id, slices, memory_mib, name = H100_MIG_PROFILES[int(profile)]
    info = _pynvml.c_nvmlGpuInstanceProfileInfo_v2_t() if version == 2 else _pynvml.c_nvmlGpuInstanceProfileInfo_t()
    info.id, info.sliceCount, info.instanceCount, info.memorySizeMB = profile_id, slices, 7 // slices, memory_mib
    info.multiprocessorCount = 16 * slices
    if version == 2:
        info.name = name.encode()
    return info


# -- GPM (Hopper+) --

def nvmlGpmQueryDeviceSupport(device: Any) -> Any:
    gpu, _t = _dev("nvmlGpmQueryDeviceSupport", device)
    support = _pynvml.c_nvmlGpmSupport_t()
    support.version = _pynvml.NVML_GPM_SUPPORT_VERSION
    support.isSupportedDevice = 1 if gpu.gpm else 0
    return support


def nvmlGpmSampleAlloc() -> Any:
    with _S.lock:
        _check("nvmlGpmSampleAlloc")
        struct = _pynvml.struct_c_nvmlGpmSample_t()
        handle = _pynvml.c_nvmlGpmSample_t(struct)
        _S.samples[ctypes.addressof(struct)] = (handle, None)
        return _pynvml.c_nvmlGpmSample_t(struct)


def nvmlGpmSampleFree(gpmSample: Any) -> None:  # noqa: N803
    with _S.lock:
        _check("nvmlGpmSampleFree")
        _S.samples.pop(ctypes.addressof(gpmSample.contents), None)


def nvmlGpmSampleGet(device: Any, gpmSample: Any) -> Any:  # noqa: N803
    with _S.lock:
        gpu, t = _dev("nvmlGpmSampleGet", device)
        if not gpu.gpm:
            _raise(_pynvml.NVMLError_NotSupported)
        address = ctypes.addressof(gpmSample.contents)
        if address not in _S.samples:
            _raise(_pynvml.NVMLError_InvalidArgument)
        _S.samples[address] = (_S.samples[address][0], {"gpu": gpu.index, "t": t, "integrals": dict(gpu.integrals)})
        return gpmSample


def nvmlGpmMigSampleGet(device: Any, gpuInstanceId: int, gpmSample: Any) -> Any:  # noqa: N803
    with _S.lock:
        gpu, t = _dev("nvmlGpmMigSampleGet", device)
        instance = next((i for i in gpu.mig if i.gi_id == int(gpuInstanceId)), None)
        if not gpu.gpm:
            _raise(_pynvml.NVMLError_NotSupported)
        if not gpu.mig_mode or instance is None:
            _raise(_pynvml.NVMLError_InvalidArgument)
        address = ctypes.addressof(gpmSample.contents)
        if address not in _S.samples:
            _raise(_pynvml.NVMLError_InvalidArgument)
        _S.samples[address] = (_S.samples[address][0], {"gpu": gpu.index, "gi": instance.gi_id, "t": t,
                                                        "integrals": dict(instance.integrals)})
        return gpmSample


def nvmlGpmMetricsGet(metricsGet: Any) -> Any:  # noqa: N803
    with _S.lock:
        _check("nvmlGpmMetricsGet")
        if metricsGet.version != _pynvml.NVML_GPM_METRICS_GET_VERSION:
            _raise(_pynvml.NVMLError_ArgumentVersionMismatch)
        try:
            s1 = _S.samples[ctypes.addressof(metricsGet.sample1.contents)][1]
            s2 = _S.samples[ctypes.addressof(metricsGet.sample2.contents)][1]
        except (KeyError, ValueError):
            _raise(_pynvml.NVMLError_InvalidArgument)
        if not s1 or not s2 or s1["gpu"] != s2["gpu"] or s1.get("gi") != s2.get("gi") or s2["t"] <= s1["t"]:
            _raise(_pynvml.NVMLError_InvalidArgument)
        dt = s2["t"] - s1["t"]
        for i in range(metricsGet.numMetrics):
            metric = metricsGet.metrics[i]
            name = _GPM_METRICS.get(metric.metricId)
            if name is None:
                metric.nvmlReturn = _pynvml.NVML_ERROR_NOT_SUPPORTED
                continue
            metric.nvmlReturn = _pynvml.NVML_SUCCESS
            metric.value = 100.0 * (s2["integrals"][name] - s1["integrals"][name]) / dt
        return metricsGet


configure_from_env()
