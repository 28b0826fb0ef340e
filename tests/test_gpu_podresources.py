"""GPU → pod attribution: the GPU exporter (simulated GPUs) asks a gRPC server that speaks the kubelet's
pod-resources v1 API (stubs generated from the published api.proto) which pod holds which GPU, labels
that GPU's series, follows pods as they start and end, and survives the kubelet going away. With MIG (the fake
NVML's H100 instances, configured in the running exporter through its control file) the pod holding a slice
labels that instance's series, under both MIG strategies of NVIDIA's device plugin."""

from __future__ import annotations

import json
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from helpers import promtool_check_metrics, samples, scrape, start_exporter, value
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


@pytest.mark.integration
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


NOBODY = ("", "", "")


def owners_by_instance(parsed: dict, name: str) -> dict[tuple[str, str], tuple[str, str, str]]:
    return {(l["gpu"], l["gpu_i_id"]): (l["namespace"], l["pod"], l["container"]) for l, _ in parsed[name]}


def start_mig_exporter(tmp_path: Path, mig: dict[str, list[str]], *args: str):
    """A simulated 3-GPU exporter whose fake NVML has these MIG instances; returns it, its URL and the MIG UUIDs
    {(gpu, GPU instance id): MIG-…} as it exports them."""
    control = tmp_path / "fakenvml.json"
    control.write_text(json.dumps({"mig": mig}))
    proc, base = start_exporter("gpu-exporter", "--simulate", "3", "--pod-resources-socket",
                                str(tmp_path / "kubelet.sock"), *args, env={"MLSCOPE_FAKENVML_CONTROL": str(control)})
    parsed = samples(scrape(base))
    uuids = {labels["gpu"]: labels["uuid"] for labels, _ in parsed["gpu_info"]}
    migs = {(l["gpu"], l["gpu_i_id"]): l["mig_uuid"] for l, _ in parsed["gpu_mig_memory_total_bytes"]}
    return proc, base, uuids, migs


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_mig_slices_carry_the_pod_that_holds_them_mixed_strategy(kubelet: Kubelet, tmp_path: Path):
    """Mixed strategy: each profile is its own resource (nvidia.com/mig-3g.40gb), device ids are MIG UUIDs."""
    proc, base, uuids, migs = start_mig_exporter(tmp_path, {"1": ["3g.40gb", "1g.10gb"]})
    try:
        assert set(migs) == {("1", "1"), ("1", "3")} and all(m.startswith("MIG-") for m in migs.values())
        kubelet.pods = [
            pod("ml", "train-0", "main", "nvidia.com/mig-3g.40gb", migs[("1", "1")]),
            pod("serve", "llm-7f9", "vllm", "nvidia.com/mig-1g.10gb", migs[("1", "3")]),
            pod("ml", "whole-0", "main", "nvidia.com/gpu", uuids["0"] + "::3"),  # a time-sliced whole GPU
        ]
        text = scrape(base)
        parsed = samples(text)
        expected = {("1", "1"): ("ml", "train-0", "main"), ("1", "3"): ("serve", "llm-7f9", "vllm")}
        for name in ("gpu_mig_memory_used_bytes", "gpu_mig_memory_total_bytes", "gpu_mig_compute_slices_ratio"):
            assert owners_by_instance(parsed, name) == expected, name
        assert value(parsed, "gpu_mig_compute_slices_ratio", pod="train-0") == pytest.approx(3 / 7)
        assert value(parsed, "gpu_mig_compute_slices_ratio", pod="llm-7f9") == pytest.approx(1 / 7)
        # the MIG-enabled GPU as a whole is shared: no pod; the time-sliced GPU 0 is whole-0's, not a slice's
        assert owners_by_gpu(parsed, "gpu_info") == {"0": ("ml", "whole-0", "main"), "1": NOBODY, "2": NOBODY}
        # GPU 1's two processes run one in each instance (the fake spreads them): each has its slice's pod
        processes = {l["mig_uuid"]: (l["namespace"], l["pod"], l["container"])
                     for l, _ in parsed["gpu_process_memory_used_bytes"] if l["gpu"] == "1"}
        assert processes == {migs[key]: owner for key, owner in expected.items()}
        assert {l["mig_uuid"] for l, _ in parsed["gpu_process_memory_used_bytes"] if l["gpu"] != "1"} == {""}
        assert promtool_check_metrics(text).returncode == 0

        # train-0 ends and train-1 gets the same 3g slice; llm-7f9 ends: the very next scrape shows both
        kubelet.pods = [pod("ml", "train-1", "main", "nvidia.com/mig-3g.40gb", migs[("1", "1")])]
        parsed = samples(scrape(base))
        assert owners_by_instance(parsed, "gpu_mig_memory_used_bytes") == {
            ("1", "1"): ("ml", "train-1", "main"), ("1", "3"): NOBODY}
        assert {l["pod"] for l, _ in parsed["gpu_process_memory_used_bytes"]} == {"train-1", ""}
        assert value(parsed, "mlscope_collector_up", collector="podresources") == 1

        # the kubelet goes away: the slices are still served, unattributed, and the collector says so
        kubelet.stop()
        parsed = samples(scrape(base))
        assert set(owners_by_instance(parsed, "gpu_mig_memory_used_bytes").values()) == {NOBODY}
        assert value(parsed, "mlscope_collector_up", collector="podresources") == 0
        assert value(parsed, "mlscope_collector_up", collector="gpu") == 1
    finally:
        output = proc.stop()
    assert "Traceback" not in output


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_mig_slices_single_strategy_and_dcgm_names(kubelet: Kubelet, tmp_path: Path):
    """Single strategy: slices are plain nvidia.com/gpu with MIG UUIDs as device ids (a shared one with a `::N`
    replica suffix). In dcgm names the slice's samples (GPU_I_ID, the parent's UUID, as dcgm-exporter) carry its
    pod; the GPU's own samples none."""
    proc, base, uuids, migs = start_mig_exporter(tmp_path, {"2": ["1g.10gb", "1g.10gb"]}, "--names", "both")
    try:
        kubelet.pods = [pod("batch", "job-1", "worker", "nvidia.com/gpu", migs[("2", "3")]),
                        pod("batch", "job-2", "worker", "nvidia.com/gpu", migs[("2", "1")] + "::2"),  # shared MIG
                        pod("ml", "whole-0", "main", "nvidia.com/gpu", uuids["0"])]
        parsed = samples(scrape(base))
        assert owners_by_instance(parsed, "gpu_mig_memory_used_bytes") == {
            ("2", "1"): ("batch", "job-2", "worker"), ("2", "3"): ("batch", "job-1", "worker")}
        assert value(parsed, "gpu_mig_compute_slices_ratio", pod="job-1") == pytest.approx(1 / 7)
        fb = {(l["gpu"], l.get("GPU_I_ID")): (l["namespace"], l["pod"], l["container"])
              for l, _ in parsed["DCGM_FI_DEV_FB_USED"]}
        assert fb[("2", "3")] == ("batch", "job-1", "worker") and fb[("2", "1")] == ("batch", "job-2", "worker")
        assert fb[("0", None)] == ("ml", "whole-0", "main") and fb[("2", None)] == NOBODY
    finally:
        output = proc.stop()
    assert "Traceback" not in output
