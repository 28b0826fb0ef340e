"""/proc/sys/fs/file-nr: allocated and maximum file handles."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, gauge, read_optional


class FilefdCollector:
    def __init__(self, paths: Paths):
        self.path = paths.proc("sys", "fs", "file-nr")

    def collect(self) -> Iterator[Metric]:
        text = read_optional(self.path)
        if text:
            allocated, _unused, maximum = text.split()[:3]
            yield gauge("node_filefd_allocated", "File descriptor statistics: allocated.", float(allocated))
            yield gauge("node_filefd_maximum", "File descriptor statistics: maximum.", float(maximum))
