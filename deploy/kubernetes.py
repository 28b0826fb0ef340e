"""MLScope on Kubernetes, as objects built from the repository's one source of truth.

The exporters run as DaemonSets (GPU, host) and a Deployment (SageMaker); kube-prometheus-stack's
Prometheus Operator finds them through PodMonitors and a ServiceMonitor, loads alerts/*.rules.yml as
PrometheusRules, and its Grafana sidecar loads dashboards/json/*.json from ConfigMaps. Nothing here
is a hand-kept copy: rules, dashboards and the SageMaker settings are read from their files.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from mlscope import __version__

ROOT = Path(__file__).resolve().parent.parent
IMAGE = f"mlscope/mlscope:{__version__}"
APP = "app.kubernetes.io/name"
# kube-prometheus-stack selects monitors and rules by its Helm release label, and dashboards by this one.
RELEASE_LABEL = {"release": "kube-prometheus-stack"}
DASHBOARD_LABEL = {"grafana_dashboard": "1"}
POD_RESOURCES_DIR = "/var/lib/kubelet/pod-resources"
# The Prometheus service of a kube-prometheus-stack release named as above in namespace `monitoring`.
PROMETHEUS_URL = "http://kube-prometheus-stack-prometheus.monitoring.svc:9090"


def meta(name: str, **extra) -> dict:
    return {"name": name, "labels": {APP: name, "app.kubernetes.io/part-of": "mlscope", **extra.pop("labels", {})},
            **extra}


def probe(port: str = "metrics") -> dict:
    return {"httpGet": {"path": "/-/healthy", "port": port}, "periodSeconds": 10, "timeoutSeconds": 5,
            "failureThreshold": 3}


def container(name: str, args: list[str], port: int, *, cpu: str, memory: str, security: dict,
              mounts: list[dict] = (), env: list[dict] = (), command: tuple[str, ...] = ()) -> dict:
    return {
        "name": name, "image": IMAGE, "args": [*(command or [name]), "--listen", f":{port}", *args],
        "ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"}],
        "env": [{"name": "MLSCOPE_LOG_LEVEL", "value": "info"}, *env],
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}},
        "livenessProbe": probe(), "readinessProbe": probe(),
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}, **security},
        "volumeMounts": list(mounts),
    }


def host_path(name: str, path: str, mount: str, **mount_extra) -> tuple[dict, dict]:
    return ({"name": name, "hostPath": {"path": path}},
            {"name": name, "mountPath": mount, "readOnly": True, **mount_extra})


def daemonset(name: str, pod_spec: dict) -> dict:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta(name),
            "spec": {"selector": {"matchLabels": {APP: name}},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
                     "template": {"metadata": {"labels": meta(name)["labels"]}, "spec": pod_spec}}}


def gpu_exporter() -> dict:
    # Root: the kubelet's pod-resources socket is root-only; everything else is dropped or read-only.
    proc_volume, proc_mount = host_path("proc", "/proc", "/host/proc")
    pr_volume, pr_mount = host_path("pod-resources", POD_RESOURCES_DIR, POD_RESOURCES_DIR)
    main = container("gpu-exporter", ["--procfs", "/host/proc", "--pod-resources-socket",
                                      f"{POD_RESOURCES_DIR}/kubelet.sock"], 9857,
                     cpu="50m", memory="128Mi", security={"runAsUser": 0, "runAsNonRoot": False},
                     mounts=[proc_mount, pr_mount],
                     env=[{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
                          {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "utility"}])
    return daemonset("gpu-exporter", {
        "runtimeClassName": "nvidia",
        "hostPID": True,  # process names and container ids of every GPU process on the node
        "priorityClassName": "system-node-critical",
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]}]}}},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [main],
        "volumes": [proc_volume, pr_volume],
    })


def host_exporter() -> dict:
    root_volume, root_mount = host_path("root", "/", "/host", mountPropagation="HostToContainer")
    main = container("host-exporter", ["--rootfs", "/host"], 9856, cpu="50m", memory="96Mi",
                     security={"runAsUser": 10002, "runAsGroup": 10002, "runAsNonRoot": True},
                     mounts=[root_mount])
    return daemonset("host-exporter", {
        "hostPID": True,
        "hostNetwork": True,  # the node's own network interfaces, as node_exporter
        "dnsPolicy": "ClusterFirstWithHostNet",
        "priorityClassName": "system-node-critical",
        "tolerations": [{"operator": "Exists"}],
        "containers": [main],
        "volumes": [root_volume],
    })


def sagemaker_exporter() -> list[dict]:
    name = "sagemaker-exporter"
    config = (ROOT / "provisioning" / "mlscope" / "sagemaker.yml").read_text()
    main = container(name, ["--config", "/etc/mlscope/sagemaker.yml"], 9858, cpu="100m", memory="256Mi",
                     security={"runAsUser": 10001, "runAsGroup": 10001, "runAsNonRoot": True},
                     mounts=[{"name": "config", "mountPath": "/etc/mlscope", "readOnly": True}],
                     env=[{"name": "MLSCOPE_ENDPOINT_URL", "value": ""}])
    return [
        # IRSA: the role's trust policy names this service account. EKS Pod Identity needs no
        # annotation (an association made with the EKS API); drop it then.
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": meta(name, annotations={
             "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/mlscope-sagemaker-exporter"})},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name), "data": {"sagemaker.yml": config}},
        *deployment(name, main, 9858, replicas=2, monitor=replica_monitor(name, "30s"), serviceAccountName=name,
                    volumes=[{"name": "config", "configMap": {"name": name}}]),
    ]


def deployment(name: str, main: dict, port: int, interval: str = "30s", replicas: int = 1,
               monitor: dict | None = None, **pod_spec) -> list[dict]:
    """The replicas, their Service, and the ServiceMonitor that scrapes them."""
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(name),
         "spec": {"replicas": replicas, "selector": {"matchLabels": {APP: name}},
                  "template": {"metadata": {"labels": meta(name)["labels"]},
                               "spec": {**pod_spec, "containers": [main],
                                        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}}}},
        service(name, port),
        monitor or service_monitor(name, interval),
    ]


def service(name: str, port: int) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta(name),
            "spec": {"selector": {APP: name}, "ports": [{"name": "metrics", "port": port, "targetPort": "metrics"}]}}


def service_monitor(name: str, interval: str) -> dict:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": meta(name, labels=RELEASE_LABEL),
            "spec": {"selector": {"matchLabels": {APP: name}},
                     "endpoints": [{"port": "metrics", "interval": interval, "scrapeTimeout": "10s"}]}}


def replica_monitor(name: str, interval: str) -> dict:
    """The SageMaker exporter's ServiceMonitor: an HA pair of pods polls the same shard (docs/scale.md).
    `replica` is the pod and the pod label goes, so the rules' `max without (instance, replica)` merges
    the pair; `instance` stays the pod's address, so Alertmanager holds back only the alerts of a replica
    that is down. Honoured labels: the series' own `endpoint` (the SageMaker endpoint) must not become
    `exported_endpoint` under the operator's port-name label."""
    monitor = service_monitor(name, interval)
    monitor["spec"]["endpoints"][0].update({"honorLabels": True, "relabelings": [
        {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "replica", "action": "replace"},
        {"regex": "pod", "action": "labeldrop"}]})
    return monitor


def rightsizer() -> list[dict]:
    """`mlscope rightsize --serve`: it only reads the PromQL API, so no AWS role and no service account token."""
    name = "rightsizer"
    main = container(name, [], 9859, command=("rightsize", "--serve"), cpu="100m", memory="512Mi",
                     security={"runAsUser": 10001, "runAsGroup": 10001, "runAsNonRoot": True},
                     env=[{"name": "MLSCOPE_PROMETHEUS", "value": PROMETHEUS_URL},
                          {"name": "MLSCOPE_LOOKBACK", "value": "14d"},
                          {"name": "MLSCOPE_INTERVAL", "value": "1h"}])
    return deployment(name, main, 9859, interval="60s", automountServiceAccountToken=False)


# kube-prometheus-stack's Alertmanager, through the operator's governing Service, in the namespace the
# chart is installed in (`monitoring` here: patch the URL for another).
ALERTMANAGER_URL = "http://alertmanager-operated.monitoring.svc:9093"


def alertmanager_exporter() -> list[dict]:
    """The wall's paging banner: what Alertmanager notifies, silences and inhibits."""
    name = "alertmanager-exporter"
    main = container(name, ["--alertmanager-url", ALERTMANAGER_URL], 9861, cpu="20m", memory="64Mi",
                     security={"runAsUser": 10001, "runAsGroup": 10001, "runAsNonRoot": True})
    return deployment(name, main, 9861)


def pod_monitor(name: str, interval: str) -> dict:
    """Scrapes each DaemonSet pod; `instance` is the node's name, as on a fleet without Kubernetes."""
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
            "metadata": meta(name, labels=RELEASE_LABEL),
            "spec": {"selector": {"matchLabels": {APP: name}},
                     "podMetricsEndpoints": [{"port": "metrics", "interval": interval, "honorLabels": True,
                                              "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"],
                                                               "targetLabel": "instance", "action": "replace"}]}]}}


def prometheus_rules() -> list[dict]:
    rules = []
    for path in sorted((ROOT / "alerts").glob("*.rules.yml")):
        name = "mlscope-" + path.name.removesuffix(".rules.yml")
        rules.append({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                      "metadata": meta(name, labels=RELEASE_LABEL), "spec": yaml.safe_load(path.read_text())})
    return rules


def dashboard_configmaps() -> list[dict]:
    maps = []
    for path in sorted((ROOT / "dashboards" / "json").glob("*.json")):
        json.loads(path.read_text())  # a broken file fails here, not in Grafana
        maps.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": meta(f"dashboard-{path.stem}", labels=DASHBOARD_LABEL,
                                      annotations={"grafana_folder": "MLScope"}),
                     "data": {path.name: path.read_text()}})
    return maps


def manifests() -> dict[str, list[dict]]:
    """File name in the kustomize base -> the objects it holds."""
    return {
        "namespace.yaml": [{"apiVersion": "v1", "kind": "Namespace", "metadata": meta("mlscope")}],
        "gpu-exporter.yaml": [gpu_exporter(), pod_monitor("gpu-exporter", "15s")],
        "host-exporter.yaml": [host_exporter(), pod_monitor("host-exporter", "15s")],
        "sagemaker-exporter.yaml": sagemaker_exporter(),
        "rightsizer.yaml": rightsizer(),
        "alertmanager-exporter.yaml": alertmanager_exporter(),
        "prometheus-rules.yaml": prometheus_rules(),
        "dashboards.yaml": dashboard_configmaps(),
    }


def render() -> dict[str, str]:
    files = {name: yaml.safe_dump_all(objects, sort_keys=False, width=120) for name, objects in manifests().items()}
    files["kustomization.yaml"] = yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": "mlscope",
        "resources": [name for name in files]}, sort_keys=False)
    return {name: "# Generated by `python -m deploy`: edit deploy/kubernetes.py, alerts/ or dashboards/.\n" + text
            for name, text in files.items()}
