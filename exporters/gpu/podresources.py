"""GPU → pod attribution on Kubernetes, from the kubelet's pod-resources API (v1 `List`, a gRPC unix socket).

Every scrape lists the node's allocations afresh (a local call of a few milliseconds), so a pod that
ended loses its labels on the next scrape and a new pod gains them: there is no watch to fall behind.
Device ids are GPU UUIDs (`nvidia.com/gpu`), with a `::N` replica suffix under time-slicing, or MIG device
UUIDs (`MIG-…`) under either MIG strategy of NVIDIA's device plugin (`single`: resource `nvidia.com/gpu`;
`mixed`: `nvidia.com/mig-3g.40gb`, …). Each series of an allocated GPU gains `namespace`, `pod` and
`container`; on per-process series `container` becomes the Kubernetes container's name, and stays the cgroup
container id otherwise. A MIG slice's pod goes on that instance's series only (gpu_mig_* by `mig_uuid`, its
processes, dcgm names' samples with its GPU_I_ID): the whole-GPU series of a MIG-enabled GPU get no pod,
several pods share it.
"""

from __future__ import annotations

import logging
import time
from typing import Iterable

from prometheus_client.metrics_core import Metric

from ..health import Health

log = logging.getLogger("mlscope.gpu")

NAME = "podresources"
POD_LABELS = ("namespace", "pod", "container")
GPU_RESOURCE_PREFIX = "nvidia.com/"
UUID_LABELS = ("uuid", "UUID")  # mlscope names, dcgm-exporter names

Owner = tuple[str, str, str]  # namespace, pod, container


class PodResourcesClient:
    def __init__(self, socket_path: str, timeout: float = 2.0) -> None:
        import grpc

        from .proto import podresources_v1_pb2 as pb
        from .proto.podresources_v1_pb2_grpc import PodResourcesListerStub

        self.socket_path = socket_path
        self.timeout = timeout
        self._request = pb.ListPodResourcesRequest()
        self._channel = grpc.insecure_channel(f"unix://{socket_path}")
        self._stub = PodResourcesListerStub(self._channel)
        self.rpc_error = grpc.RpcError

    def owners(self) -> dict[str, Owner]:
        """Device id (GPU or MIG UUID) -> the container it is allocated to, for every pod the kubelet lists now."""
        response = self._stub.List(self._request, timeout=self.timeout)
        found: dict[str, Owner] = {}
        for pod in response.pod_resources:
            for container in pod.containers:
                for devices in container.devices:
                    if devices.resource_name.startswith(GPU_RESOURCE_PREFIX):
                        for device_id in devices.device_ids:
                            found[device_id.split("::", 1)[0]] = (pod.namespace, pod.name, container.name)
        return found

    def close(self) -> None:
        self._channel.close()


class PodAttribution:
    """Wraps the GPU collector; reports its own runs as collector "podresources"."""

    def __init__(self, inner, client: PodResourcesClient, health: Health | None = None) -> None:
        self.inner = inner
        self.client = client
        self.health = health
        self._warned = False
        if health is not None:
            health.register(NAME)

    @property
    def healthy(self) -> bool:
        return getattr(self.inner, "healthy", True)

    def collect(self) -> Iterable[Metric]:
        families = list(self.inner.collect())
        start = time.perf_counter()
        try:
            owners, ok = self.client.owners(), True
            self._warned = False
        except self.client.rpc_error as exc:
            owners, ok = {}, False
            if not self._warned:  # once per outage, not once per scrape
                log.warning("pod-resources socket %s: %s", self.client.socket_path, getattr(exc, "details",
                                                                                          lambda: exc)())
                self._warned = True
        if self.health is not None:
            self.health.observe(NAME, ok, time.perf_counter() - start)
        holders = Holders(owners, getattr(self.inner, "mig_uuids", dict)())
        return [attribute(family, holders) for family in families]

    def describe(self) -> Iterable[Metric]:
        return []

    def stop(self) -> None:
        self.client.close()

    def start(self) -> None:
        pass


class Holders:
    """Who holds the device a sample is about, from one List and the MIG instances the collector found."""

    def __init__(self, by_device: dict[str, Owner], mig_uuids: dict[tuple[str, str], str]) -> None:
        self.by_device = by_device
        self.mig_uuids = mig_uuids  # (GPU UUID, GPU instance id) -> MIG device UUID

    def of(self, labels: dict[str, str]) -> Owner | None:
        mig_uuid = labels.get("mig_uuid") or self.mig_uuids.get((labels.get("UUID", ""), labels.get("GPU_I_ID", "")))
        if mig_uuid:
            return self.by_device.get(mig_uuid)
        if "GPU_I_ID" in labels or "gpu_i_id" in labels:  # an instance without a known MIG UUID: not the GPU's
            return None
        return self.by_device.get(next((labels[label] for label in UUID_LABELS if label in labels), ""))


def attribute(family: Metric, holders: Holders) -> Metric:
    """The family with namespace/pod/container on each sample of a GPU; untouched if it has no GPU label."""
    if not family.samples or not any(label in family.samples[0].labels for label in UUID_LABELS):
        return family
    out = Metric(family.name, family.documentation, family.type, family.unit)
    for sample in family.samples:
        labels = dict(sample.labels)
        owner = holders.of(labels)
        if owner is not None:
            labels.update(zip(POD_LABELS, owner))
        else:
            for label in POD_LABELS:
                labels.setdefault(label, "")  # a process's cgroup container id stays
        out.samples.append(sample._replace(labels=labels))
    return out
