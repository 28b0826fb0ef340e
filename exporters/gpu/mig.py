"""MIG (Multi-Instance GPU): the GPU instances of a MIG-enabled GPU, read through NVML's query functions only.

The exporter never changes MIG mode, nor creates or destroys instances (it calls none of NVML's
set/create/destroy functions; a test checks): it reads what the administrator configured. Each GPU instance is reported once,
as dcgm-exporter does (GPU_I_ID, GPU_I_PROFILE), even when it holds several compute instances, with the MIG
device UUID (`MIG-…`, what the NVIDIA device plugin hands to pods) and its share of the GPU's compute slices.
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
    uuid: str = ""  # "MIG-…" (older drivers: "MIG-GPU-<parent uuid>/<gi>/<ci>")
    slice_ratio: float = 0.0  # the profile's compute slices over the GPU's (3g on a 7-slice H100: 3/7)


@dataclass(frozen=True)
class Profile:
    name: str  # "1g.10gb", as nvidia-smi and dcgm-exporter name it
    slices: int


def profiles(nvml: ModuleType, handle: Any) -> dict[int, Profile]:
    """{GPU instance profile id: profile} of a GPU, from nvmlDeviceGetGpuInstanceProfileInfo over every profile."""
    found: dict[int, Profile] = {}
    for index in range(getattr(nvml, "NVML_GPU_INSTANCE_PROFILE_COUNT", 0)):
        try:
            info = nvml.nvmlDeviceGetGpuInstanceProfileInfo(handle, index)
        except nvml.NVMLError:
            continue  # a profile this GPU does not have
        raw = getattr(info, "name", b"")
        name = _text(raw).removeprefix("MIG ").strip()
        found[int(info.id)] = Profile(name or f"profile{int(info.id)}", int(getattr(info, "sliceCount", 0)))
    return found


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
    known = dev.static.get("mig_profiles")
    if known is None:
        known = dev.static["mig_profiles"] = profiles(nvml, dev.handle)
    gpu_slices = max((p.slices for p in known.values()), default=0)  # the full-GPU profile's (7g on an H100)
    found: dict[int, MigInstance] = {}
    for index in range(int(count)):
        try:
            handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(dev.handle, index)
            gi_id = int(nvml.nvmlDeviceGetGpuInstanceId(handle))
            if gi_id in found:
                continue  # another compute instance of the same GPU instance
            info = nvml.nvmlGpuInstanceGetInfo(nvml.nvmlDeviceGetGpuInstanceById(dev.handle, gi_id))
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        except nvml.NVMLError as exc:
            if type(exc).__name__ in ("NVMLError_NotFound", "NVMLError_InvalidArgument"):
                continue  # an empty slot
            raise
        profile = known.get(int(info.profileId), Profile(f"profile{int(info.profileId)}", 0))
        found[gi_id] = MigInstance(gi_id, profile.name, handle, uuid,
                                   profile.slices / gpu_slices if gpu_slices and profile.slices else 0.0)
    return sorted(found.values(), key=lambda m: m.gi_id)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def mig_labels(instance: MigInstance) -> list[str]:
    """The values of the gpu_mig_* families' own labels (collector.MIG_LABELS)."""
    return [str(instance.gi_id), instance.profile, instance.uuid]
