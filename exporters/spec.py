"""What an exporter module declares: its command, port, settings and how to build its collectors."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from prometheus_client.registry import Collector

from .health import Health
from .settings import Config, Setting


class Service(Protocol):
    """A background part (poller, sampler, event thread): started after start-up, stopped on exit."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class BackgroundLoop:
    """A Service whose work runs in one daemon thread: `_run` loops until `_stop` is set, waiting on it."""

    def __init__(self, thread_name: str, join_timeout: float = 5.0) -> None:
        self._thread_name = thread_name
        self._join_timeout = join_timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self._join_timeout)

    def _run(self) -> None:
        raise NotImplementedError

    def _repeat(self, work: Callable[[], object], interval: Callable[[], float]) -> None:
        """Run `work`, then wait out the rest of `interval()` (read after each run), until stopped."""
        while not self._stop.is_set():
            started = time.monotonic()
            work()
            self._stop.wait(max(0.0, interval() - (time.monotonic() - started)))


@dataclass
class Parts:
    # Collected at scrape time; each is wrapped so its health shows in mlscope_collector_*.
    scrape: dict[str, Collector] = field(default_factory=dict)
    # Registered as they are: they report their own health (e.g. background pollers reading a cache).
    direct: list[Collector] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)


@dataclass(frozen=True)
class ExporterSpec:
    command: str
    title: str
    default_port: int
    settings: list[Setting]
    build: Callable[[Config, Health], Parts]
