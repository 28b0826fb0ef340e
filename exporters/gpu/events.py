"""Xid errors from NVML's event API, counted in a background thread so none is lost between scrapes."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..health import Health
from ..spec import BackgroundLoop
from .nvml import DEVICE, Session, classify, describe

log = logging.getLogger("mlscope.gpu")

# Xids that mean a broken GPU or driver (NVIDIA's Xid catalogue; the GPUCriticalXid alert matches them).
# Their counters start at 0 once a GPU is registered, so increase() sees the very first one.
CRITICAL_XIDS = (48, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120)

WAIT_MS = 500  # how long one nvmlEventSetWait blocks; also bounds how long stop() takes


class XidWatcher(BackgroundLoop):
    """Service: registers every GPU for nvmlEventTypeXidCriticalError and counts events per (GPU, Xid).

    Reports its health as collector "xid" (up while the event set is registered and waiting).
    """

    name = "xid"

    def __init__(self, session: Session, health: Health | None = None) -> None:
        super().__init__("gpu-xid-events", join_timeout=WAIT_MS / 1000 * 4)
        self.session = session
        self.nvml = session.nvml
        self.health = health
        self._counts: dict[tuple[int, str, int], int] = {}
        self._last: dict[str, int] = {}  # uuid -> the last Xid seen (dcgm-exporter's DCGM_FI_DEV_XID_ERRORS)
        self._lock = threading.Lock()
        self.registered: set[int] = set()  # GPU indexes registered for Xid events
        self._settled: set[int] = set()  # registered, or known not to support it: not retried

    def counts(self) -> dict[tuple[int, str, int], int]:
        with self._lock:
            return dict(self._counts)

    def last(self) -> dict[str, int]:
        with self._lock:
            return dict(self._last)

    def record(self, index: int, uuid: str, xid: int) -> None:
        with self._lock:
            key = (index, uuid, xid)
            self._counts[key] = self._counts.get(key, 0) + 1
            self._last[uuid] = xid

    def _observe(self, ok: bool, duration: float = 0.0) -> None:
        if self.health is not None:
            self.health.observe(self.name, ok, duration)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.session.ensure():
                    self._stop.wait(1.0)
                    continue
                self._watch(self.session.generation)
            except Exception as exc:  # never let the thread die: log, back off, try again
                log.warning("Xid event thread: %s; retrying in %gs", describe(exc), self.session.retry_interval)
                log.debug("Xid event thread", exc_info=True)
                self._observe(False)
                self._stop.wait(self.session.retry_interval)

    def _register(self, event_set: Any) -> set[int]:
        nvml = self.nvml
        xid_type = nvml.nvmlEventTypeXidCriticalError
        registered = set()
        self._settled = set()
        for dev in list(self.session.devices):
            if not dev.up or dev.handle is None:
                continue
            try:
                nvml.nvmlDeviceRegisterEvents(dev.handle, xid_type, event_set)
                registered.add(dev.index)
                self._settled.add(dev.index)
                with self._lock:
                    for xid in CRITICAL_XIDS:
                        self._counts.setdefault((dev.index, dev.uuid, xid), 0)
            except nvml.NVMLError as exc:
                if classify(nvml, exc) != DEVICE:
                    self._settled.add(dev.index)
                level = logging.DEBUG if classify(nvml, exc) != DEVICE else logging.WARNING
                log.log(level, "GPU %d: cannot register for Xid events: %s", dev.index, describe(exc))
        return registered

    def _unsettled(self) -> bool:
        return any(d.up and d.index not in self._settled for d in self.session.devices)

    def _watch(self, generation: int) -> None:
        nvml = self.nvml
        event_set = nvml.nvmlEventSetCreate()
        try:
            self.registered = self._register(event_set)
            if not self.registered:
                log.info("Xid events not supported by any GPU; gpu_xid_errors_total stays empty")
                # nothing to wait on: look again after a re-initialisation or a while
                while not self._stop.wait(self.session.retry_interval):
                    if self.session.generation != generation or not self.session.ready:
                        return
                    if self._unsettled():
                        return
                return
            log.debug("Xid events registered for GPU(s) %s", sorted(self.registered))
            self._observe(True)
            wanted = nvml.nvmlEventTypeXidCriticalError
            timeout_cls = getattr(nvml, "NVMLError_Timeout", None)
            while not self._stop.is_set():
                if self.session.generation != generation or not self.session.ready:
                    return  # NVML was re-initialised: register again on the new session
                start = time.perf_counter()
                try:
                    data = nvml.nvmlEventSetWait(event_set, WAIT_MS)
                except nvml.NVMLError as exc:
                    if timeout_cls is not None and isinstance(exc, timeout_cls):
                        self._observe(True, 0.0)  # an idle wait is not work
                        if self._unsettled():
                            return  # a GPU came back: register it too
                        continue
                    raise
                if data.eventType & wanted:
                    dev = self.session.device_for(data.device)
                    if dev is None:
                        log.warning("Xid %d on an unknown device", data.eventData)
                        self.record(-1, "", int(data.eventData))
                    else:
                        log.warning("GPU %d (%s): Xid %d", dev.index, dev.uuid, data.eventData)
                        self.record(dev.index, dev.uuid, int(data.eventData))
                self._observe(True, time.perf_counter() - start)
        finally:
            try:
                nvml.nvmlEventSetFree(event_set)
            except Exception:
                pass
