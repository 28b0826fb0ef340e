"""Background sampling of what needs time between two readings, so a scrape never waits for it:

- Hopper+ GPM metrics (SM active, SM occupancy, tensor active, DRAM active, graphics engine active): one
  nvmlGpmSampleGet per GPU every `interval`; nvmlGpmMetricsGet on the last two samples.
  Where nvmlGpmQueryDeviceSupport says no (pre-Hopper), the metrics are absent.
- The same per MIG GPU instance (nvmlGpmMigSampleGet), for the instances the collector last found
  (gpu_mig_*_ratio{gpu_i_id,gpu_i_profile}).
- PCIe TX/RX throughput: nvmlDeviceGetPcieThroughput blocks ~20 ms per call while NVML counts
  bytes, i.e. 40 ms per GPU; done here rather than at scrape time.

Results are kept per GPU UUID with the time they were taken; the collector exports only fresh ones.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..health import Health
from ..spec import BackgroundLoop
from .mig import mig_labels
from .nvml import DEVICE, UNSUPPORTED, Device, Session, classify, describe

log = logging.getLogger("mlscope.gpu")

# exported name -> pynvml metric id name; NVML gives percent (0-100)
GPM_METRICS = [
    ("gpu_graphics_active_ratio", "NVML_GPM_METRIC_GRAPHICS_UTIL"),
    ("gpu_sm_active_ratio", "NVML_GPM_METRIC_SM_UTIL"),
    ("gpu_sm_occupancy_ratio", "NVML_GPM_METRIC_SM_OCCUPANCY"),
    ("gpu_tensor_active_ratio", "NVML_GPM_METRIC_ANY_TENSOR_UTIL"),
    ("gpu_dram_active_ratio", "NVML_GPM_METRIC_DRAM_BW_UTIL"),
]
KIB = 1024  # NVML's PCIe throughput is in KB/s, i.e. 1024-byte units


class _GpmState:
    def __init__(self, prev: Any, cur: Any) -> None:
        self.prev, self.cur = prev, cur
        self.have_prev = False


class Sampler(BackgroundLoop):
    """Service; its health shows as collector "gpm" (only where some GPU supports GPM)."""

    def __init__(self, session: Session, health: Health | None = None, interval: float = 5.0,
                 pcie: bool = True) -> None:
        super().__init__("gpu-sampler")
        self.session = session
        self.nvml = session.nvml
        self.health = health
        self.interval = interval
        self.pcie = pcie
        # uuid -> (time, [(family, extra label values, value)])
        self._values: dict[str, tuple[float, list[tuple[str, list[str], float]]]] = {}
        self._gpm: dict[int, _GpmState | None] = {}  # device index -> state (None: unsupported)
        self._mig_gpm: dict[tuple[int, int], _GpmState] = {}  # (device index, GPU instance id) -> state
        self._generation = -1
        self._lock = threading.Lock()

    def stop(self) -> None:
        super().stop()
        self._free_all()

    def max_age(self) -> float:
        return max(3 * self.interval, 2.0)

    def snapshot(self) -> dict[str, list[tuple[str, list[str], float]]]:
        """Fresh samples per GPU UUID: {uuid: [(metric name, extra label values, value), ...]}."""
        now = self.session.clock()
        limit = self.max_age()
        with self._lock:
            return {uuid: samples for uuid, (t, samples) in self._values.items() if now - t <= limit}

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample_once()
            except Exception as exc:
                log.warning("GPU sampler: %s", describe(exc))
                log.debug("GPU sampler", exc_info=True)
            self._stop.wait(self.interval)

    def sample_once(self) -> None:
        """One round over every device (public for tests and the benchmark)."""
        session = self.session
        if not session.ensure():
            return
        if session.generation != self._generation:
            self._free_all()
            self._generation = session.generation
        start = time.perf_counter()
        gpm_devices = gpm_ok = 0
        for dev in list(session.devices):
            if not dev.up or dev.handle is None:
                with self._lock:
                    self._values.pop(dev.uuid, None)
                continue
            samples: list[tuple[str, list[str], float]] = []
            try:
                state = self._gpm_state(dev)
                if state is not None:
                    gpm_devices += 1
                    gpm_ok += self._sample_gpm(dev, state, samples)
                if dev.static.get("gpm_supported"):
                    self._sample_mig_gpm(dev, samples)
                if self.pcie:
                    self._sample_pcie(dev, samples)
            except Exception as exc:
                if classify(self.nvml, exc) == DEVICE:
                    log.debug("GPU %d: sampler: %s", dev.index, describe(exc))
                    with self._lock:
                        self._values.pop(dev.uuid, None)
                    self._drop_gpm(dev.index)
                    continue
                raise
            with self._lock:
                self._values[dev.uuid] = (session.clock(), samples)
        if gpm_devices and self.health is not None:
            self.health.observe("gpm", gpm_ok == gpm_devices, time.perf_counter() - start,
                                errors=gpm_devices - gpm_ok)

    # -- GPM --
    def _gpm_state(self, dev: Device) -> _GpmState | None:
        if dev.index in self._gpm:
            return self._gpm[dev.index]
        nvml = self.nvml
        state = None
        if "gpm" not in dev.unsupported and hasattr(nvml, "nvmlGpmQueryDeviceSupport"):
            try:
                supported = nvml.nvmlGpmQueryDeviceSupport(dev.handle).isSupportedDevice
            except nvml.NVMLError as exc:
                if classify(nvml, exc) == DEVICE:
                    raise
                supported = False
            dev.static["gpm_supported"] = bool(supported)
            if supported:
                state = _GpmState(nvml.nvmlGpmSampleAlloc(), nvml.nvmlGpmSampleAlloc())
                log.debug("GPU %d: GPM supported", dev.index)
            else:
                dev.unsupported.add("gpm")
        self._gpm[dev.index] = state
        return state

    def _sample_gpm(self, dev: Device, state: _GpmState, out: list) -> int:
        nvml = self.nvml
        try:
            nvml.nvmlGpmSampleGet(dev.handle, state.cur)
        except nvml.NVMLError as exc:
            if classify(nvml, exc) == UNSUPPORTED:
                dev.unsupported.add("gpm")
                self._drop_gpm(dev.index)
                self._gpm[dev.index] = None
                return 0
            raise
        ok = 1
        if state.have_prev:
            ok = self._metrics(dev, state.prev, state.cur, out)
        state.prev, state.cur = state.cur, state.prev
        state.have_prev = True
        return ok

    def _sample_mig_gpm(self, dev: Device, out: list) -> None:
        """GPM per MIG GPU instance (nvmlGpmMigSampleGet on the parent), as gpu_mig_*_ratio{gpu_i_id,gpu_i_profile}."""
        nvml = self.nvml
        if "gpm_mig" in dev.unsupported or not hasattr(nvml, "nvmlGpmMigSampleGet"):
            return
        current = {m.gi_id: m for m in dev.static.get("mig_instances", ())}
        for key in [k for k in self._mig_gpm if k[0] == dev.index and k[1] not in current]:
            self._free_state(self._mig_gpm.pop(key))
        for gi_id, instance in current.items():
            state = self._mig_gpm.get((dev.index, gi_id))
            if state is None:
                state = self._mig_gpm[(dev.index, gi_id)] = _GpmState(nvml.nvmlGpmSampleAlloc(),
                                                                      nvml.nvmlGpmSampleAlloc())
            try:
                nvml.nvmlGpmMigSampleGet(dev.handle, gi_id, state.cur)
            except nvml.NVMLError as exc:
                kind = classify(nvml, exc)
                if kind == DEVICE:
                    raise
                if kind == UNSUPPORTED:
                    dev.unsupported.add("gpm_mig")
                    log.debug("GPU %d: GPM per MIG instance not supported (%s)", dev.index, describe(exc))
                continue
            if state.have_prev:
                extra = mig_labels(instance)
                measured: list = []
                self._metrics(dev, state.prev, state.cur, measured)
                out += [(name.replace("gpu_", "gpu_mig_", 1), extra, value) for name, _, value in measured]
            state.prev, state.cur = state.cur, state.prev
            state.have_prev = True

    def _metrics(self, dev: Device, sample1: Any, sample2: Any, out: list) -> int:
        nvml = self.nvml
        wanted = [(name, getattr(nvml, const)) for name, const in GPM_METRICS if hasattr(nvml, const)]
        mg = nvml.c_nvmlGpmMetricsGet_t()
        mg.version = nvml.NVML_GPM_METRICS_GET_VERSION
        mg.numMetrics = len(wanted)
        mg.sample1 = sample1
        mg.sample2 = sample2
        for i, (_name, metric_id) in enumerate(wanted):
            mg.metrics[i].metricId = metric_id
        try:
            nvml.nvmlGpmMetricsGet(mg)
        except nvml.NVMLError as exc:
            if classify(nvml, exc) == DEVICE:
                raise
            log.debug("GPU %d: nvmlGpmMetricsGet: %s", dev.index, describe(exc))
            return 0
        for i, (name, _metric_id) in enumerate(wanted):
            metric = mg.metrics[i]
            if metric.nvmlReturn == nvml.NVML_SUCCESS:
                out.append((name, [], min(1.0, max(0.0, metric.value / 100.0))))
        return 1

    def _free_state(self, state: _GpmState | None) -> None:
        if state is not None:
            for sample in (state.prev, state.cur):
                try:
                    self.nvml.nvmlGpmSampleFree(sample)
                except Exception:
                    pass

    def _drop_gpm(self, index: int) -> None:
        self._free_state(self._gpm.pop(index, None))
        for key in [k for k in self._mig_gpm if k[0] == index]:
            self._free_state(self._mig_gpm.pop(key))

    def _free_all(self) -> None:
        for index in {*self._gpm, *(k[0] for k in self._mig_gpm)}:
            self._drop_gpm(index)

    # -- PCIe --
    def _sample_pcie(self, dev: Device, out: list) -> None:
        nvml = self.nvml
        for key, name, counter in (("pcie_tx", "gpu_pcie_transmit_bytes_per_second", "NVML_PCIE_UTIL_TX_BYTES"),
                                   ("pcie_rx", "gpu_pcie_receive_bytes_per_second", "NVML_PCIE_UTIL_RX_BYTES")):
            if key in dev.unsupported:
                continue
            try:
                value = nvml.nvmlDeviceGetPcieThroughput(dev.handle, getattr(nvml, counter))
            except nvml.NVMLError as exc:
                kind = classify(nvml, exc)
                if kind == DEVICE:
                    raise
                if kind == UNSUPPORTED:
                    dev.unsupported.add(key)
                continue
            out.append((name, [], float(value) * KIB))
