"""Who uses the GPU: process names (psutil, else NVML) and container ids from /proc/<pid>/cgroup."""

from __future__ import annotations

import os
import re
from typing import Any, Callable

import psutil

# A 64-hex container id as the last component of a cgroup path, in the forms used by
#   cgroup v1, cgroupfs driver:  /docker/<id>, /kubepods/burstable/pod<uid>/<id>
#   systemd driver (v1 and v2):  /system.slice/docker-<id>.scope,
#                                .../kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope,
#                                .../crio-<id>.scope, .../libpod-<id>.scope
_CONTAINER_RE = re.compile(r"(?:^|/)(?:[a-z0-9_-]+-)?([0-9a-f]{64})(?:\.scope)?$")


def container_id(cgroup_text: str) -> str:
    """The container id in the contents of /proc/<pid>/cgroup (v1 or v2), or "" when none."""
    best = ""
    for line in cgroup_text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        path = parts[2].rstrip("/")
        # the innermost 64-hex component; a pod-level path (pod<uid> only) has none
        for component in reversed(path.split("/")):
            match = _CONTAINER_RE.search("/" + component)
            if match:
                if parts[0] == "0" or not best:  # prefer the unified (v2) hierarchy's answer
                    best = match.group(1)
                break
    return best


class ProcessResolver:
    """Name and container of a pid, cached while the pid keeps the same start time."""

    def __init__(self, procfs: str = "/proc", nvml_name: Callable[[int], str] | None = None) -> None:
        self.procfs = procfs.rstrip("/") or "/proc"
        self.nvml_name = nvml_name
        self._cache: dict[int, tuple[Any, str, str]] = {}

    def resolve(self, pid: int) -> tuple[str, str]:
        start = self._start_time(pid)
        cached = self._cache.get(pid)
        if cached is not None and cached[0] == start:
            return cached[1], cached[2]
        name = self._name(pid)
        container = self._container(pid)
        self._cache[pid] = (start, name, container)
        return name, container

    def forget_except(self, pids: set[int]) -> None:
        for pid in list(self._cache):
            if pid not in pids:
                del self._cache[pid]

    def _start_time(self, pid: int) -> Any:
        try:
            with open(f"{self.procfs}/{pid}/stat", "rb") as fh:
                return fh.read().rsplit(b")", 1)[-1].split()[19]  # field 22: starttime
        except (OSError, IndexError):
            return None

    def _name(self, pid: int) -> str:
        try:
            return psutil.Process(pid).name()
        except (psutil.Error, OSError, ValueError):
            pass
        if self.nvml_name is not None:  # the exporter may not see the host's pids (no --pid=host)
            try:
                name = self.nvml_name(pid)
                return os.path.basename(name.decode() if isinstance(name, bytes) else str(name))
            except Exception:
                pass
        return ""

    def _container(self, pid: int) -> str:
        try:
            with open(f"{self.procfs}/{pid}/cgroup", encoding="utf-8", errors="replace") as fh:
                return container_id(fh.read())
        except OSError:
            return ""
