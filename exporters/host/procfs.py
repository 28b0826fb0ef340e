"""Where the host's /proc, /sys and / are, reading their files, and the metric helpers the collectors share."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from prometheus_client.core import Metric
from prometheus_client.samples import Sample


@dataclass(frozen=True)
class Paths:
    """Where the host's /proc, /sys and / are, as node_exporter's --path.procfs/sysfs/rootfs."""

    procfs: str = "/proc"
    sysfs: str = "/sys"
    rootfs: str = "/"

    def proc(self, *parts: str) -> str:
        return os.path.join(self.procfs, *parts)

    def sys(self, *parts: str) -> str:
        return os.path.join(self.sysfs, *parts)

    def in_rootfs(self, host_path: str) -> str:
        """The path where this process sees the host's `host_path`."""
        root = self.rootfs.rstrip("/")
        return root + host_path if root else host_path

    def strip_rootfs(self, path: str) -> str:
        """A mount point as the host sees it: without the rootfs prefix (node_exporter's rootfsStripPrefix)."""
        root = self.rootfs.rstrip("/")
        if not root:
            return path
        if path == root:
            return "/"
        if path.startswith(root + "/"):
            return path[len(root):]
        return path


def read_text(path: str) -> str:
    """A whole (proc or sys) file, read with bare syscalls until EOF (seq files may come in pieces): open() and
    its file object cost three times more than the read itself, with hundreds of small files per scrape."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunk = os.read(fd, 65536)
        chunks = [chunk]
        while chunk:  # until EOF: a short read is not the end of every proc file
            chunk = os.read(fd, 65536)
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", "replace")
    finally:
        os.close(fd)


_new_metric = Metric.__new__


def family(name: str, documentation: str, typ: str, samples: list[Sample]) -> Metric:
    """A metric family from ready samples. Like GaugeMetricFamily/CounterMetricFamily without their per-call
    name validation and label zipping, which cost more than reading the proc files (names here are constants;
    tests check them). A counter's family name has no _total; its samples do."""
    metric = _new_metric(Metric)
    metric.name = name[:-6] if typ == "counter" and name.endswith("_total") else name
    metric.documentation = documentation
    metric.type = typ
    metric.unit = ""
    metric.samples = samples
    return metric


def gauge(name: str, documentation: str, value: float) -> Metric:
    return family(name, documentation, "gauge", [Sample(name, {}, value, None, None, None)])


class DeviceFilter:
    """A device-exclude regexp, with its answers remembered (device names rarely change)."""

    def __init__(self, exclude: re.Pattern | None):
        self.exclude = exclude
        self._keep: dict[str, bool] = {}

    def __call__(self, device: str) -> bool:
        keep = self._keep.get(device)
        if keep is None:
            keep = self.exclude is None or not self.exclude.search(device)
            if len(self._keep) > 4096:
                self._keep.clear()
            self._keep[device] = keep
        return keep


_INVALID_RUN = re.compile("[\udc80-\udcff]+")


def valid_utf8(raw: bytes) -> str:
    """Text with each run of invalid UTF-8 bytes as one U+FFFD, as Go's strings.ToValidUTF8 (node_exporter's
    labels from sysfs strings)."""
    return _INVALID_RUN.sub("\ufffd", raw.decode("utf-8", "surrogateescape"))


def read_optional(path: str) -> str | None:
    """A file's text, or None when it does not exist or cannot be read (a kernel without the feature):
    collectors then export no series for it, never an error."""
    try:
        return read_text(path)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None


def list_dir(path: str) -> list[str] | None:
    """A directory's entries, sorted; None when it does not exist (a kernel or machine without the feature)."""
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return None


def sample(name: str, labels: dict[str, str], value: float) -> Sample:
    return Sample(name, labels, value, None, None, None)


def families_of(table: tuple, values: dict[str, list[Sample]] | dict[str, float]) -> list[Metric]:
    """Families for the rows of a collector's metric table (name, help, type) that have values:
    a list of samples, or one unlabelled value."""
    out = []
    for name, help_, typ in table:
        value = values.get(name)
        if value is None:
            continue
        samples = value if isinstance(value, list) else [sample(name, {}, value)]
        if samples:
            out.append(family(name, help_, typ, samples))
    return out
