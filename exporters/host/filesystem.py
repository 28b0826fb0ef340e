"""Mounts (/proc/1/mounts) and statvfs(2) of each: node_filesystem_*, with node_exporter's exclusions."""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

from .procfs import Paths, family, read_text

log = logging.getLogger(__package__)

# node_exporter 1.5.0's upstream defaults (collector/filesystem_linux.go).
# Debian's packaged node_exporter patches the first to also drop /run, /mnt and /media, and its netdev
# collector to drop `lo`; we keep upstream's, which is what the prom/node-exporter image and the
# dashboards assume (and ML hosts often keep their data disks under /mnt).
DEFAULT_MOUNT_POINTS_EXCLUDE = (
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
DEFAULT_FS_TYPES_EXCLUDE = (
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs"
    r"|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$"
)


def _unescape_mount(field: str) -> str:
    # /proc/*/mounts escapes space, tab, newline and backslash as octal (fstab(5)).
    if "\\" not in field:
        return field
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


@dataclass(frozen=True)
class Mount:
    device: str
    mountpoint: str
    fstype: str
    options: str

    @property
    def readonly(self) -> bool:
        return "ro" in self.options.split(",")


def parse_mounts(text: str) -> list[Mount]:
    """/proc/<pid>/mounts -> [Mount], mount points unescaped."""
    mounts = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        mounts.append(Mount(parts[0], _unescape_mount(parts[1]), parts[2], parts[3]))
    return mounts


def select_mounts(mounts: Iterable[Mount], paths: Paths, mount_points_exclude: re.Pattern | None,
                  fs_types_exclude: re.Pattern | None) -> list[Mount]:
    """Mount points as the host sees them, minus excluded ones, one per (device, mountpoint, fstype)."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for mount in mounts:
        mountpoint = paths.strip_rootfs(mount.mountpoint)
        if mount_points_exclude is not None and mount_points_exclude.search(mountpoint):
            continue
        if fs_types_exclude is not None and fs_types_exclude.search(mount.fstype):
            continue
        key = (mount.device, mountpoint, mount.fstype)
        if key in seen:
            continue
        seen.add(key)
        out.append(Mount(mount.device, mountpoint, mount.fstype, mount.options))
    return out


class _StatProgress:
    """What one statvfs job has done so far, shared between the worker and the scrape."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cancelled = False
        self.current: Mount | None = None
        self.done: list[tuple[Mount, os.statvfs_result | None]] = []


FILESYSTEM_FAMILIES = (
    ("node_filesystem_size_bytes", "Filesystem size in bytes."),
    ("node_filesystem_free_bytes", "Filesystem free space in bytes."),
    ("node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes."),
    ("node_filesystem_files", "Filesystem total file nodes."),
    ("node_filesystem_files_free", "Filesystem total free file nodes."),
    ("node_filesystem_readonly", "Filesystem read-only status."),
    ("node_filesystem_device_error", "Whether an error occurred while getting statistics for the given device."),
)


class DaemonWorkers:
    """Run jobs on daemon threads, started on demand. A thread stuck in statvfs of a hung NFS mount must not
    keep the process from exiting on SIGTERM (ThreadPoolExecutor joins its threads at exit)."""

    def __init__(self, name: str, limit: int = 32):
        self.name = name
        self.limit = limit
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0

    def submit(self, fn: Any, *args: Any) -> threading.Event:
        done = threading.Event()
        with self._lock:
            spawn = self._idle == 0 and self._threads < self.limit
            if spawn:
                self._threads += 1
        self._jobs.put((fn, args, done))
        if spawn:
            threading.Thread(target=self._run, name=self.name, daemon=True).start()
        return done

    def _run(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            fn, args, done = self._jobs.get()
            with self._lock:
                self._idle -= 1
            try:
                fn(*args)
            except Exception as exc:  # a job's failure is the job's business; keep the worker
                log.debug("%s job failed: %s", self.name, exc)
            finally:
                done.set()


class FilesystemCollector:
    """/proc/1/mounts (or /proc/mounts) + statvfs(2) of each mount point under rootfs.

    statvfs runs on a worker thread so a hung network mount cannot hang the scrape: after
    `mount_timeout` the mount point is reported with node_filesystem_device_error 1 and skipped until
    its statvfs returns (node_exporter skips stuck mounts the same way, --collector.filesystem.mount-timeout).
    """

    def __init__(self, paths: Paths, mount_points_exclude: re.Pattern | None, fs_types_exclude: re.Pattern | None,
                 mount_timeout: float = 5.0):
        self.paths = paths
        self.mount_points_exclude = mount_points_exclude
        self.fs_types_exclude = fs_types_exclude
        self.mount_timeout = mount_timeout
        self._stuck: set[str] = set()
        self._lock = threading.Lock()
        self._workers = DaemonWorkers("statvfs")
        self.statvfs: Callable[[str], Any] | None = getattr(os, "statvfs", None)  # none on Windows: psutil backend

    def mounts(self) -> list[Mount]:
        try:
            text = read_text(self.paths.proc("1", "mounts"))
        except FileNotFoundError:  # hidepid: PID 1 is not visible to us
            text = read_text(self.paths.proc("mounts"))
        return select_mounts(parse_mounts(text), self.paths, self.mount_points_exclude, self.fs_types_exclude)

    def _stat_all(self, mounts: list[Mount], progress: _StatProgress) -> None:
        for mount in mounts:
            with progress.lock:
                if progress.cancelled:
                    return
                progress.current = mount
            try:
                result: os.statvfs_result | None = self.statvfs(self.paths.in_rootfs(mount.mountpoint))
            except OSError as exc:
                log.debug("statvfs %s: %s", mount.mountpoint, exc)
                result = None
            with progress.lock:
                progress.current = None
                progress.done.append((mount, result))
            if self._stuck:
                with self._lock:
                    if mount.mountpoint in self._stuck:
                        self._stuck.discard(mount.mountpoint)
                        log.info("mount point %s responds again", mount.mountpoint)

    def _stat(self, mounts: list[Mount]) -> tuple[list[tuple[Mount, os.statvfs_result | None]], list[Mount]]:
        """statvfs every mount, giving up on one after `mount_timeout`: ([(mount, result or None)], [hung mounts]).

        The first scrape that meets a hung mount waits mount_timeout for it (node_exporter waits forever),
        then carries on with the others on a fresh worker; later scrapes skip it until its statvfs returns.
        """
        done: list[tuple[Mount, os.statvfs_result | None]] = []
        hung: list[Mount] = []
        remaining = mounts
        while remaining:
            progress = _StatProgress()
            if self._workers.submit(self._stat_all, remaining, progress).wait(self.mount_timeout):
                done += progress.done
                break
            with progress.lock:
                progress.cancelled = True
                current, finished = progress.current, list(progress.done)
            done += finished
            if current is None:
                break  # every worker is stuck in a hung mount: the rest wait for the next scrape
            hung.append(current)
            with self._lock:
                self._stuck.add(current.mountpoint)
            log.warning("statvfs of mount point %s did not return within %gs; skipping it until it does",
                        current.mountpoint, self.mount_timeout)
            skip = {id(m) for m, _ in finished} | {id(current)}
            remaining = [m for m in remaining if id(m) not in skip]
        return done, hung

    def collect(self) -> Iterator[Metric]:
        mounts = self.mounts()
        with self._lock:
            stuck = [m for m in mounts if m.mountpoint in self._stuck] if self._stuck else []
        todo = [m for m in mounts if m.mountpoint not in self._stuck] if stuck else mounts
        done, hung = self._stat(todo)
        stuck += hung
        columns: list[list[Sample]] = [[] for _ in FILESYSTEM_FAMILIES]
        size, free, avail, files, files_free, readonly, error = columns
        for mount, st in done:
            labels = {"device": mount.device, "fstype": mount.fstype, "mountpoint": mount.mountpoint}
            error.append(Sample("node_filesystem_device_error", labels, 0 if st is not None else 1, None, None, None))
            if st is None:
                continue
            bsize = st.f_bsize  # node_exporter multiplies by statfs' f_bsize
            size.append(Sample("node_filesystem_size_bytes", labels, float(st.f_blocks * bsize), None, None, None))
            free.append(Sample("node_filesystem_free_bytes", labels, float(st.f_bfree * bsize), None, None, None))
            avail.append(Sample("node_filesystem_avail_bytes", labels, float(st.f_bavail * bsize), None, None, None))
            if st.f_files is not None:  # None: psutil on Windows, which cannot count file nodes
                files.append(Sample("node_filesystem_files", labels, float(st.f_files), None, None, None))
                files_free.append(Sample("node_filesystem_files_free", labels, float(st.f_ffree), None, None, None))
            readonly.append(Sample("node_filesystem_readonly", labels, 1 if mount.readonly else 0, None, None, None))
        for mount in stuck:
            labels = {"device": mount.device, "fstype": mount.fstype, "mountpoint": mount.mountpoint}
            error.append(Sample("node_filesystem_device_error", labels, 1, None, None, None))
        for (name, help_), samples in zip(FILESYSTEM_FAMILIES, columns):
            yield family(name, help_, "gauge", samples)
