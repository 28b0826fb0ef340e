"""Textfile collector: the *.prom files in --collector.textfile.directory, as node_exporter reads them.

A file that cannot be read or parsed, or that carries client-side timestamps, is skipped whole and sets
node_textfile_scrape_error to 1; the other files are still exported. node_textfile_mtime_seconds{file}
says when each good file last changed. No directory set: only node_textfile_scrape_error 0.
"""

from __future__ import annotations

import logging
import os
from typing import Iterator

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from .procfs import family, sample

log = logging.getLogger(__package__)


def parse_file(path: str) -> list[Metric]:
    """One .prom file's families; raises ValueError on a parse error or a client-side timestamp."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    families = list(text_string_to_metric_families(text))
    for metric in families:
        if any(s.timestamp is not None for s in metric.samples):
            raise ValueError("contains unsupported client-side timestamps, skipping entire file")
    return families


class TextfileCollector:
    def __init__(self, directory: str | None):
        self.directory = directory or ""

    def _files(self) -> tuple[list[str], bool]:
        if not self.directory:
            return [], False
        try:
            names = sorted(n for n in os.listdir(self.directory) if n.endswith(".prom"))
        except OSError as exc:
            log.error("failed to read textfile collector directory %s: %s", self.directory, exc.strerror or exc)
            return [], True
        return [os.path.join(self.directory, n) for n in names], False

    def collect(self) -> Iterator[Metric]:
        paths, errored = self._files()
        merged: dict[str, Metric] = {}
        seen: set[tuple] = set()
        mtimes = []
        for path in paths:
            try:
                families = parse_file(path)
                mtime = os.stat(path).st_mtime
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                log.error("failed to collect textfile data from %s: %s", path, exc)
                errored = True
                continue
            for metric in families:
                if not metric.documentation:
                    metric.documentation = f"Metric read from {path}"
                into = merged.setdefault(metric.name, metric)
                if into is not metric and into.type != metric.type:
                    log.error("textfile %s: %s has type %s, another file says %s", path, metric.name, metric.type,
                              into.type)
                    errored = True
                    continue
                kept = []
                for s in metric.samples:
                    key = (s.name, tuple(sorted(s.labels.items())))
                    if key in seen:
                        log.error("textfile %s: %s%s is also in another file", path, s.name, s.labels)
                        errored = True
                        continue
                    seen.add(key)
                    kept.append(s)
                if into is metric:
                    metric.samples = kept
                else:
                    into.samples.extend(kept)
            mtimes.append(sample("node_textfile_mtime_seconds", {"file": path}, float(int(mtime))))
        yield from merged.values()
        if mtimes:
            yield family("node_textfile_mtime_seconds", "Unixtime mtime of textfiles successfully read.", "gauge",
                         mtimes)
        yield family("node_textfile_scrape_error", "1 if there was an error opening or reading a file, 0 otherwise",
                     "gauge", [sample("node_textfile_scrape_error", {}, 1.0 if errored else 0.0)])
