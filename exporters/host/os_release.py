"""/etc/os-release (or /usr/lib/os-release) under rootfs: node_os_info and node_os_version, as node_exporter's os
collector."""

from __future__ import annotations

import re
import shlex
from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, family, read_optional, sample

INFO_LABELS = ("build_id", "id", "id_like", "image_id", "image_version", "name", "pretty_name", "variant",
               "variant_id", "version", "version_codename", "version_id")


def parse_os_release(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            try:
                out[key.strip().lower()] = " ".join(shlex.split(value))
            except ValueError:
                out[key.strip().lower()] = value.strip().strip("\"'")
    return out


class OSReleaseCollector:
    def __init__(self, paths: Paths):
        self.files = [paths.in_rootfs("/etc/os-release"), paths.in_rootfs("/usr/lib/os-release")]
        self._cache: tuple[str, list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        text = next((t for t in map(read_optional, self.files) if t is not None), None)
        if text is None:
            return
        if self._cache is None or self._cache[0] != text:
            release = parse_os_release(text)
            info = {label: release.get(label, "") for label in INFO_LABELS}
            metrics = [family("node_os_info", "A metric with a constant '1' value labeled by build_id, id, id_like, "
                              "image_id, image_version, name, pretty_name, variant, variant_id, version, "
                              "version_codename, version_id.", "gauge", [sample("node_os_info", info, 1)])]
            major_minor = re.match(r"\d+(\.\d+)?", release.get("version_id", ""))
            if major_minor:
                labels = {"id": info["id"], "id_like": info["id_like"], "name": info["name"]}
                metrics.append(family("node_os_version", "Metric containing the major.minor part of the OS version.",
                                      "gauge", [sample("node_os_version", labels, float(major_minor.group(0)))]))
            self._cache = (text, metrics)
        yield from self._cache[1]
