"""The kubelet pod-resources API v1: podresources_v1.proto is k8s.io/kubelet's pkg/apis/podresources/v1/api.proto
(Apache-2.0, kubernetes/kubelet commit 63b32497) unchanged; the *_pb2*.py beside it are generated from it by
`python -m mlscope.gpu.proto` (grpcio-tools), and tests/test_gpu_podresources.py checks they are current."""
