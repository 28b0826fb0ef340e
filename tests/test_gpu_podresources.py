"""GPU → pod attribution: the GPU exporter (simulated GPUs) asks a gRPC server that speaks the kubelet's
pod-resources v1 API (stubs generated from the published api.proto) which pod holds which GPU, labels
that GPU's series, follows pods as they start and end, and survives the kubelet going away."""

from __future__ import annotations

from concurrent import futures
from pathlib import Path

import grpc
import pytest

from helpers import promtool_check_metrics, samples, scrape, start_exporter
from mlscope.gpu.proto import podresources_v1_pb2 as pb
from mlscope.gpu.proto import podresources_v1_pb2_grpc as pb_grpc
from mlscope.gpu.proto.__main__ import generate


class Kubelet(pb_grpc.PodResourcesListerServicer):
    """The kubelet's side of the socket: answers List with whatever pods the test sets."""

    def __init__(self, socket: Path) -> None:
        self.pods: list[pb.PodResources] = []
        self.lists = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        pb_grpc.add_PodResourcesListerServicer_to_server(self, self.server)
        self.server.add_insecure_port(f"unix://{socket}")
        self.server.start()

    def List(self, request, context):  # noqa: N802 (the gRPC method's name)
        self.lists += 1
        return pb.ListPodResourcesResponse(pod_resources=list(self.pods))

    def stop(self) -> None:
        self.server.stop(grace=None).wait()


def pod(namespace: str, name: str, container: str, resource: str, *device_ids: str) -> pb.PodResources:
    return pb.PodResources(namespace=namespace, name=name, containers=[pb.ContainerResources(
        name=container, devices=[pb.ContainerDevices(resource_name=resource, device_ids=list(device_ids))])])


def owners_by_gpu(parsed: dict, name: str) -> dict[str, tuple[str, str, str]]:
    return {labels["gpu"]: (labels["namespace"], labels["pod"], labels["container"]) for labels, _ in parsed[name]}


@pytest.fixture
def kubelet(tmp_path: Path):
    server = Kubelet(tmp_path / "kubelet.sock")
    yield server
    server.stop()


@pytest.mark.timeout(120)
def test_gpu_series_carry_the_pod_that_holds_the_gpu_and_follow_pod_changes(kubelet: Kubelet, tmp_path: Path):
    proc, base = start_exporter("gpu-exporter", "--simulate", "3",
                                "--pod-resources-socket", str(tmp_path / "kubelet.sock"))
    try:
        uuids = {labels["gpu"]: labels["uuid"] for labels, _ in samples(scrape(base))["gpu_info"]}
        kubelet.pods = [
            pod("ml", "trainer-0", "main", "nvidia.com/gpu", uuids["0"]),
            pod("serve", "llm-7f9", "vllm", "nvidia.com/gpu", uuids["1"] + "::2"),  # time-sliced replica
            pod("other", "fpga-job", "x", "example.com/fpga", uuids["2"]),  # not a GPU resource
        ]
        text = scrape(base)
        parsed = samples(text)
        assert owners_by_gpu(parsed, "gpu_utilization_ratio") == {
            "0": ("ml", "trainer-0", "main"), "1": ("serve", "llm-7f9", "vllm"), "2": ("", "", "")}
        assert owners_by_gpu(parsed, "gpu_info") == owners_by_gpu(parsed, "gpu_utilization_ratio")
        # per-process series: the Kubernetes container's name where the GPU is allocated
        processes = parsed["gpu_process_memory_used_bytes"]
        assert {l["container"] for l, _ in processes if l["gpu"] == "0"} == {"main"}
        assert {l["pod"] for l, _ in processes if l["gpu"] == "2"} == {""}
        assert promtool_check_metrics(text).returncode == 0

        # trainer-0 ends, a new pod takes GPU 2: the very next scrape shows it
        kubelet.pods = [kubelet.pods[1], pod("ml", "trainer-1", "main", "nvidia.com/gpu", uuids["2"])]
        assert owners_by_gpu(samples(scrape(base)), "gpu_utilization_ratio") == {
            "0": ("", "", ""), "1": ("serve", "llm-7f9", "vllm"), "2": ("ml", "trainer-1", "main")}
        up = {l["collector"]: v for l, v in samples(scrape(base))["mlscope_collector_up"]}
        assert up["podresources"] == 1 and up["gpu"] == 1

        # the kubelet goes away: GPUs are still served, unattributed, and the collector reports it
        kubelet.stop()
        parsed = samples(scrape(base))
        assert set(owners_by_gpu(parsed, "gpu_utilization_ratio").values()) == {("", "", "")}
        up = {l["collector"]: v for l, v in parsed["mlscope_collector_up"]}
        assert up["podresources"] == 0 and up["gpu"] == 1
    finally:
        output = proc.stop()
    assert "Traceback" not in output
    assert output.count("pod-resources socket") == 1, output  # one line per outage, not one per scrape


def test_a_missing_socket_is_a_failing_collector_not_a_crash(tmp_path: Path):
    proc, base = start_exporter("gpu-exporter", "--simulate", "1", "--pod-resources-socket",
                                str(tmp_path / "absent.sock"))
    try:
        parsed = samples(scrape(base))
        assert {l["collector"]: v for l, v in parsed["mlscope_collector_up"]}["podresources"] == 0
        assert len(parsed["gpu_utilization_ratio"]) == 1
    finally:
        assert "Traceback" not in proc.stop()


def test_the_committed_stubs_are_generated_from_the_committed_proto(tmp_path: Path):
    generated = generate(tmp_path)
    assert [p.name for p in generated] == ["podresources_v1_pb2.py", "podresources_v1_pb2_grpc.py"]
    package = Path(pb.__file__).parent
    for path in generated:
        assert path.read_text() == (package / path.name).read_text(), f"run python -m mlscope.gpu.proto"
