"""MIG (Multi-Instance GPU): the GPU instances of a MIG-enabled GPU, read through NVML's query functions only.

The exporter never changes MIG mode, nor creates or destroys instances (it calls none of NVML's
set/create/destroy functions; a test checks): it reads what the administrator configured. Each GPU instance is reported once,
as dcgm-exporter does (GPU_I_ID, GPU_I_PROFILE), even when it holds several compute instances.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from .nvml import Device


@dataclass(frozen=True)
class MigInstance:
    gi_id: int
    profile: str  # "1g.10gb", as nvidia-smi and dcgm-exporter name it
    handle: Any  # a MIG device handle (of the instance's first compute instance)


def profile_names(nvml: ModuleType, handle: Any) -> dict[int, str]:
    """{GPU instance profile id: name} of a GPU, from nvmlDeviceGetGpuInstanceProfileInfo over every profile."""
    names: dict[int, str] = {}
    for index in range(getattr(nvml, "NVML_GPU_INSTANCE_PROFILE_COUNT", 0)):
        try:
            info = nvml.nvmlDeviceGetGpuInstanceProfileInfo(handle, index)
        except nvml.NVMLError:
            continue  # a profile this GPU does not have
        raw = getattr(info, "name", b"")
        name = (raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)).removeprefix("MIG ").strip()
        names[int(info.id)] = name or f"profile{int(info.id)}"
    return names


def instances(nvml: ModuleType, dev: Device, call: Callable[..., Any], missing: object) -> list[MigInstance]:
    """The GPU instances of `dev` when MIG is enabled, else []. `call(dev, key, function, *args)` is the
    collector's NVML call (unsupported cached per device, device errors raised); it returns `missing` when
    the GPU or the installed pynvml cannot answer."""
    mode = call(dev, "mig_mode", "nvmlDeviceGetMigMode")
    if mode is missing or int(mode[0]) != getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1):
        return []
    count = call(dev, "mig_count", "nvmlDeviceGetMaxMigDeviceCount")
    if count is missing:
        return []
    names = dev.static.get("mig_profiles")
    if names is None:
        names = dev.static["mig_profiles"] = profile_names(nvml, dev.handle)
    found: dict[int, MigInstance] = {}
    for index in range(int(count)):
        try:
            handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(dev.handle, index)
            gi_id = int(nvml.nvmlDeviceGetGpuInstanceId(handle))
            if gi_id in found:
                continue  # another compute instance of the same GPU instance
            info = nvml.nvmlGpuInstanceGetInfo(nvml.nvmlDeviceGetGpuInstanceById(dev.handle, gi_id))
        except nvml.NVMLError as exc:
            if type(exc).__name__ in ("NVMLError_NotFound", "NVMLError_InvalidArgument"):
                continue  # an empty slot
            raise
        found[gi_id] = MigInstance(gi_id, names.get(int(info.profileId), f"profile{int(info.profileId)}"), handle)
    return sorted(found.values(), key=lambda m: m.gi_id)
