"""`mlscope gpu-exporter`: NVIDIA GPUs through NVML (nvidia-ml-py's `pynvml`).

Parts:
- collector.GpuCollector   scrape-time reads of every device (collector "gpu")
- events.XidWatcher        Xid critical errors from NVML's event API (collector "xid")
- sampler.Sampler          Hopper GPM metrics and PCIe throughput, in the background (collector "gpm")
- fakenvml                 the pynvml API with simulated GPUs: `--simulate N`, and the tests' double
- podresources             on Kubernetes, namespace/pod/container labels from the kubelet (collector "podresources")
"""

from __future__ import annotations

import logging
from types import ModuleType

from ..health import Health
from ..settings import Config, Setting, SettingError, boolean, choice, non_negative_int, positive_duration, string
from ..spec import ExporterSpec, Parts
from .collector import GpuCollector
from .events import XidWatcher
from .nvml import Session, load_module, warn_missing
from .sampler import Sampler

log = logging.getLogger("mlscope.gpu")

FAKE_MODULE = "mlscope.gpu.fakenvml"


SETTINGS = [
    Setting("simulate", non_negative_int, 0,
            "simulate N GPUs with changing values (no NVIDIA driver needed); gpu_info gets simulated=\"true\""),
    Setting("retry_interval", positive_duration, 30.0,
            "how often to retry NVML initialisation and failed GPUs, seconds or a duration like 30s"),
    Setting("sample_interval", positive_duration, 5.0,
            "period of the background GPM (Hopper) and PCIe throughput sampler"),
    Setting("processes", boolean, True, "export per-process GPU memory (gpu_process_memory_used_bytes)"),
    Setting("procfs", string, "/proc",
            "procfs mount used for process names and container ids (e.g. /host/proc in a container)"),
    Setting("names", choice("mlscope", "dcgm", "both"), "mlscope",
            "metric names to serve: mlscope (gpu_*), dcgm (dcgm-exporter's DCGM_FI_* names, labels and units, for "
            "dashboards written for DCGM), or both"),
    Setting("pod_resources_socket", string, None,
            "the kubelet's pod-resources socket (e.g. /var/lib/kubelet/pod-resources/kubelet.sock): label each "
            "GPU's series with the namespace, pod and container it is allocated to"),
    Setting("nvml_module", string, "pynvml",
            f"Python module providing the NVML API; {FAKE_MODULE} is the fake used by tests"),
]


def _nvml_module(cfg: Config) -> ModuleType:
    if cfg.simulate:
        fake = load_module(FAKE_MODULE)
        fake.configure(cfg.simulate, pcie_latency=0.02, nvlinks=18)  # as slow as the real call; an H100 SXM
        return fake
    try:
        return load_module(cfg.nvml_module)
    except ImportError as exc:
        raise SettingError(f"--nvml-module: cannot import {cfg.nvml_module!r}: {exc}") from None


def build(cfg: Config, health: Health) -> Parts:
    nvml = _nvml_module(cfg)
    simulated = bool(getattr(nvml, "SIMULATED", False))
    warn_missing(nvml)
    if simulated:
        log.info("simulating %d GPU(s) with %s", len(nvml.gpus()), nvml.__name__)
    if cfg.procfs.rstrip("/") not in ("", "/proc"):
        import psutil
        psutil.PROCFS_PATH = cfg.procfs.rstrip("/")  # process names from the same procfs as cgroups
    session = Session(nvml, retry_interval=cfg.retry_interval)
    xid = XidWatcher(session, health)
    sampler = Sampler(session, health, interval=cfg.sample_interval)
    collector = GpuCollector(session, health, xid=xid, sampler=sampler, processes=cfg.processes,
                             procfs=cfg.procfs, simulated=simulated, names=cfg.names or "mlscope")
    services = [sampler, xid, _Closer(session)]
    if cfg.pod_resources_socket:
        from .podresources import PodAttribution, PodResourcesClient
        collector = PodAttribution(collector, PodResourcesClient(cfg.pod_resources_socket), health)
        services.append(collector)
    return Parts(scrape={"gpu": collector}, services=services)


class _Closer:
    """Last service: shuts NVML down on exit."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.session.close()


SPEC = ExporterSpec(command="gpu-exporter", title="MLScope GPU exporter", default_port=9857,
                    settings=SETTINGS, build=build)
