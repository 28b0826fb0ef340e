"""`mlscope demo traffic`: demo SageMaker endpoints and the CloudWatch metrics SageMaker would publish.

It creates a handful of endpoints on an AWS emulator (never on real AWS: endpoints under
amazonaws.com are refused), backfills the last `--backfill` of per-minute metrics, then writes
each minute as it completes, until SIGTERM.

The generator is deterministic: `generate_minute(endpoints, minute_ts, seed)` returns exactly
the datums that `write_minute` writes for that minute, so tests can compare exact sums:

    clients = make_clients(url)
    eps = demo_endpoints(6)
    create_endpoints(clients, eps)
    written = write_minute(clients, eps, minute_ts, seed=1)   # list[Datum]
    total(written, "Invocations", endpoint="fraud-scoring")     # exact Sum

What SageMaker publishes, and so what this writes (one datum per metric, variant and minute,
timestamped at the minute's start):
- `AWS/SageMaker`, dims EndpointName + VariantName (only in minutes with requests):
  Invocations (value 1 per request), InvocationsPerInstance (1/instances per request),
  Invocation4XXErrors, Invocation5XXErrors, InvocationModelErrors (0 or 1 per request),
  ModelLatency and OverheadLatency (microseconds, lognormal), all as Values+Counts.
- `/aws/sagemaker/Endpoints`, same dims, every minute: CPUUtilization (sum over vCPUs),
  MemoryUtilization, DiskUtilization (0-100), GPUUtilization and GPUMemoryUtilization (sum
  over GPUs; GPU instances only), in Percent.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from statistics import NormalDist
from typing import Any, Iterable, Sequence

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from .. import logs
from ..cli import OneLineParser, add_setting_flags, stop_on_signals
from ..settings import Setting, SettingError, boolean, choice, duration, integer, positive_int, resolve, string

log = logging.getLogger("mlscope.demo.traffic")

SAGEMAKER_NS = "AWS/SageMaker"
INSTANCE_NS = "/aws/sagemaker/Endpoints"
COMPONENT_NS = "/aws/sagemaker/InferenceComponents"
ROLE_ARN = "arn:aws:iam::123456789012:role/mlscope-demo-sagemaker"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3-gpu-py311"

# vCPUs and GPUs per instance (CloudWatch sums CPU over vCPUs and GPU over GPUs)
INSTANCE_SHAPES: dict[str, tuple[int, int]] = {
    "ml.m5.large": (2, 0), "ml.m5.xlarge": (4, 0), "ml.m5.2xlarge": (8, 0),
    "ml.c5.large": (2, 0), "ml.c5.xlarge": (4, 0), "ml.c5.2xlarge": (8, 0),
    "ml.m7i.xlarge": (4, 0), "ml.inf2.xlarge": (4, 0), "ml.inf2.8xlarge": (32, 0),
    "ml.g5.xlarge": (4, 1), "ml.g5.2xlarge": (8, 1), "ml.g5.12xlarge": (48, 4), "ml.g5.48xlarge": (192, 8),
    "ml.g6.xlarge": (4, 1), "ml.g6e.xlarge": (4, 1), "ml.p4d.24xlarge": (96, 8), "ml.p5.48xlarge": (192, 8),
}

# latency bins: (cumulative probability of the bin's representative value, share of requests)
_BIN_PROBS = [0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98,
              0.99, 0.995, 0.999, 0.9995]
_BIN_EDGES = [0.0] + [(a + b) / 2 for a, b in zip(_BIN_PROBS, _BIN_PROBS[1:])] + [1.0]
_BIN_SHARES = [hi - lo for lo, hi in zip(_BIN_EDGES, _BIN_EDGES[1:])]


# ---------------------------------------------------------------- the demo fleet

@dataclass(frozen=True)
class Variant:
    name: str
    instance_type: str
    instances: int
    weight: float = 1.0


@dataclass(frozen=True)
class Component:
    """An inference component: a model on the endpoint's instances with reserved GPUs."""
    name: str
    accelerators: int     # per copy
    copies: int
    traffic_share: float  # of the endpoint's requests


@dataclass(frozen=True)
class Endpoint:
    name: str
    variants: tuple[Variant, ...]
    tags: dict[str, str] = field(default_factory=dict)
    rps: float = 5.0                 # mean requests per second at the diurnal mean (0: idle)
    capacity_rps: float = 10.0       # requests per second per instance at 100% busy
    model_latency_us: float = 20_000  # median ModelLatency
    overhead_latency_us: float = 3_000
    sigma: float = 0.35              # lognormal shape of ModelLatency
    error_4xx: float = 0.002         # share of requests
    error_5xx: float = 0.0005
    bursts: bool = False             # frequent 5xx/4xx bursts
    model_memory: float = 0.5        # share of GPU memory the model weights take
    kind: str = "realtime"           # realtime | serverless | async
    components: tuple[Component, ...] = ()

    @property
    def config_name(self) -> str:
        return f"{self.name}-config"


TEMPLATES: list[Endpoint] = [
    Endpoint("llm-chat", (Variant("AllTraffic", "ml.g5.12xlarge", 2),),
             {"team": "genai", "env": "prod", "mlscope:slo": "0.995", "mlscope:latency-objective-seconds": "3",
              "mlscope:budget-dollars-per-hour": "16"},
             rps=3.0, capacity_rps=2.5, model_latency_us=850_000, overhead_latency_us=6_000, sigma=0.45,
             model_memory=0.72),
    Endpoint("fraud-scoring", (Variant("Primary", "ml.c5.xlarge", 2, 0.8), Variant("Canary", "ml.m5.xlarge", 1, 0.2)),
             {"team": "risk", "env": "prod", "mlscope:slo": "0.999", "mlscope:latency-objective-seconds": "0.1"},
             rps=40.0, capacity_rps=35.0, model_latency_us=12_000, overhead_latency_us=1_800, sigma=0.3),
    Endpoint("search-rerank", (Variant("AllTraffic", "ml.inf2.xlarge", 2),),
             {"team": "search", "env": "prod", "mlscope:slo": "0.999", "mlscope:latency-objective-seconds": "0.25"},
             rps=15.0, capacity_rps=12.0, model_latency_us=45_000, overhead_latency_us=2_500,
             error_4xx=0.02, error_5xx=0.01, bursts=True),
    Endpoint("llm-batch-large", (Variant("AllTraffic", "ml.p4d.24xlarge", 1),),
             {"team": "genai", "env": "staging", "mlscope:budget-dollars-per-hour": "20"},
             rps=0.0, model_memory=0.6),
    Endpoint("image-embed", (Variant("AllTraffic", "ml.g5.xlarge", 1),),
             {"team": "vision", "env": "prod", "mlscope:latency-objective-seconds": "0.2"},
             rps=12.0, capacity_rps=30.0, model_latency_us=38_000, overhead_latency_us=2_200, model_memory=0.35),
    Endpoint("recsys-ranker", (Variant("AllTraffic", "ml.m5.xlarge", 3),),
             {"team": "recs", "env": "prod"},
             rps=25.0, capacity_rps=20.0, model_latency_us=8_000, overhead_latency_us=1_500, sigma=0.25),
]


# A second AWS account for the multi-account demo. The emulator (moto) keeps one backend per account and
# answers AssumeRole for any role ARN: credentials from AssumeRole into this role reach this account.
SECOND_ACCOUNT = "210987654321"
SECOND_ACCOUNT_ROLE = f"arn:aws:iam::{SECOND_ACCOUNT}:role/mlscope-demo"
SECOND_ACCOUNT_TEMPLATES: list[Endpoint] = [
    # the same name as in the first account: two series, told apart by the account label
    Endpoint("fraud-scoring", (Variant("AllTraffic", "ml.c5.xlarge", 1),),
             {"team": "risk", "env": "staging", "mlscope:slo": "0.99", "mlscope:latency-objective-seconds": "0.1"},
             rps=6.0, capacity_rps=35.0, model_latency_us=14_000, overhead_latency_us=1_900, sigma=0.3),
    Endpoint("churn-predict", (Variant("AllTraffic", "ml.m5.large", 1),),
             {"team": "growth", "env": "prod", "mlscope:budget-monthly-dollars": "150"},
             rps=1.5, capacity_rps=20.0, model_latency_us=9_000, overhead_latency_us=1_500, sigma=0.25),
]


# One endpoint of each other kind: serverless, asynchronous, and inference components sharing instances.
KIND_TEMPLATES: list[Endpoint] = [
    Endpoint("text-classify", (Variant("AllTraffic", "serverless", 0),),
             {"team": "support", "env": "prod", "mlscope:budget-monthly-dollars": "40"},
             rps=2.0, model_latency_us=45_000, overhead_latency_us=4_000, kind="serverless"),
    Endpoint("doc-summarize", (Variant("AllTraffic", "ml.g5.xlarge", 1),),
             {"team": "genai", "env": "prod"},
             rps=0.5, capacity_rps=0.4, model_latency_us=2_400_000, sigma=0.3, kind="async", model_memory=0.6),
    Endpoint("llm-shared", (Variant("AllTraffic", "ml.g5.12xlarge", 1),),
             {"team": "genai", "env": "prod", "mlscope:latency-objective-seconds": "2"},
             rps=4.0, capacity_rps=5.0, model_latency_us=700_000, sigma=0.4, model_memory=0.7,
             components=(Component("chat-7b", 2, 1, 0.7), Component("code-3b", 1, 1, 0.3))),
]
SERVERLESS_MEMORY_MB = 2048


def demo_endpoints(count: int = len(TEMPLATES)) -> list[Endpoint]:
    """The first `count` demo endpoints; past the six templates, numbered copies (`fraud-scoring-2`)."""
    out = []
    for i in range(count):
        t = TEMPLATES[i % len(TEMPLATES)]
        n = i // len(TEMPLATES)
        out.append(t if n == 0 else dataclasses.replace(t, name=f"{t.name}-{n + 1}"))
    return out


# ---------------------------------------------------------------- what gets written

@dataclass(frozen=True)
class Datum:
    namespace: str
    metric: str
    endpoint: str
    variant: str
    timestamp: float            # epoch seconds, the minute's start
    values: tuple[float, ...]
    counts: tuple[float, ...]
    unit: str
    dimensions: tuple[tuple[str, str], ...] = ()   # other dimensions than EndpointName + VariantName

    @property
    def sum(self) -> float:
        return sum(v * c for v, c in zip(self.values, self.counts))

    @property
    def sample_count(self) -> float:
        return float(sum(self.counts))

    def to_cloudwatch(self) -> dict[str, Any]:
        dims = self.dimensions or (("EndpointName", self.endpoint), ("VariantName", self.variant))
        return {"MetricName": self.metric, "Unit": self.unit,
                "Dimensions": [{"Name": name, "Value": value} for name, value in dims],
                "Timestamp": datetime.fromtimestamp(self.timestamp, timezone.utc),
                "Values": list(self.values), "Counts": list(self.counts)}


def total(data: Iterable[Datum], metric: str, endpoint: str | None = None, variant: str | None = None,
          stat: str = "Sum", dimensions: tuple[tuple[str, str], ...] = ()) -> float:
    """Sum (or SampleCount) of what was written for a metric, optionally one endpoint/variant; by default the
    EndpointName+VariantName series only (`dimensions` picks another, e.g. an inference component's)."""
    picked = [d for d in data if d.metric == metric and (endpoint is None or d.endpoint == endpoint)
              and (variant is None or d.variant == variant) and d.dimensions == dimensions]
    return sum(d.sum if stat == "Sum" else d.sample_count for d in picked)


def diurnal(ts: float) -> float:
    """Request-rate multiplier over the day (UTC): about 0.45 at 03:00, 1.55 at 15:00."""
    hour = (ts % 86400) / 3600
    return 1 + 0.55 * math.sin(2 * math.pi * (hour - 9) / 24)


_BIN_Z = [NormalDist().inv_cdf(p) for p in _BIN_PROBS]  # standard normal quantiles of the bins


def _latency(rng: random.Random, n: int, median: float, sigma: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """n request latencies (microseconds) as at most 20 distinct values with counts."""
    if n <= len(_BIN_PROBS):
        values = sorted(float(round(rng.lognormvariate(math.log(median), sigma))) for _ in range(n))
        merged: dict[float, float] = {}
        for v in values:
            merged[v] = merged.get(v, 0) + 1
        return tuple(merged), tuple(merged.values())
    exact = [n * s for s in _BIN_SHARES]
    counts = [math.floor(x) for x in exact]
    for i in sorted(range(len(exact)), key=lambda i: exact[i] - counts[i], reverse=True)[: n - sum(counts)]:
        counts[i] += 1
    values = [float(round(median * math.exp(sigma * z))) for z in _BIN_Z]
    pairs = [(v, float(c)) for v, c in zip(values, counts) if c > 0]
    return tuple(v for v, _ in pairs), tuple(c for _, c in pairs)


def _burst(endpoint: Endpoint, minute: int, seed: int) -> float:
    """Extra 5xx share in this minute: frequent bursts on `bursts` endpoints, rare ones elsewhere."""
    if endpoint.rps <= 0:
        return 0.0
    period, length, level = (23, 3, 0.12) if endpoint.bursts else (97, 2, 0.03)
    phase = random.Random(f"{seed}:{endpoint.name}:phase").randrange(period)
    return level if (minute + phase) % period < length else 0.0


def generate_minute(endpoints: Sequence[Endpoint], minute_ts: float, seed: int = 1) -> list[Datum]:
    """Every datum for the minute starting at `minute_ts` (floored to the minute). Deterministic."""
    ts = float(int(minute_ts) // 60 * 60)
    minute = int(ts // 60)
    out: list[Datum] = []
    for ep in endpoints:
        weights = sum(v.weight for v in ep.variants) or 1.0
        burst = _burst(ep, minute, seed)
        for var in ep.variants:
            rng = random.Random(f"{seed}:{ep.name}:{var.name}:{minute}")
            rate = ep.rps * diurnal(ts) * (var.weight / weights) * rng.uniform(0.85, 1.15)
            n = int(round(rate * 60)) if ep.rps > 0 else 0
            instances = max(var.instances, 1)  # serverless: no instances, no load
            load = min(1.0, rate / (ep.capacity_rps * instances)) if ep.rps > 0 and ep.kind != "serverless" else 0.0

            def add(ns: str, metric: str, values: Sequence[float], counts: Sequence[float], unit: str,
                    dims: tuple[tuple[str, str], ...] = ()) -> None:
                out.append(Datum(ns, metric, ep.name, var.name, ts, tuple(values), tuple(counts), unit, dims))

            if n > 0:
                e5 = min(n, int(round(n * (ep.error_5xx + burst) * rng.uniform(0.6, 1.4))))
                e4 = min(n - e5, int(round(n * (ep.error_4xx + burst / 3) * rng.uniform(0.6, 1.4))))
                model_errors = int(round(e5 * 0.6))
                if ep.kind != "async":  # asynchronous endpoints publish no Invocations and no OverheadLatency
                    add(SAGEMAKER_NS, "Invocations", [1.0], [n], "None")
                    if ep.kind == "realtime":
                        add(SAGEMAKER_NS, "InvocationsPerInstance", [1.0 / instances], [n], "None")
                    for metric, errors in (("Invocation4XXErrors", e4), ("Invocation5XXErrors", e5),
                                           ("InvocationModelErrors", model_errors)):
                        pairs = [(v, float(c)) for v, c in ((0.0, n - errors), (1.0, errors)) if c > 0]
                        add(SAGEMAKER_NS, metric, [v for v, _ in pairs], [c for _, c in pairs], "None")
                slow = (1 + 1.5 * max(0.0, load - 0.7)) * (2.5 if burst else 1.0) * rng.uniform(0.93, 1.07)
                add(SAGEMAKER_NS, "ModelLatency", *_latency(rng, n, ep.model_latency_us * slow, ep.sigma),
                    "Microseconds")
                if ep.kind != "async":
                    add(SAGEMAKER_NS, "OverheadLatency",
                        *_latency(rng, n, ep.overhead_latency_us * rng.uniform(0.9, 1.1), 0.3), "Microseconds")
                if ep.kind == "async":
                    add(SAGEMAKER_NS, "TimeInBacklog", *_latency(rng, n, 1500 * (1 + 4 * load), 0.5), "Milliseconds")
                _components(ep, rng, n, e5, load, ts, add)
            if ep.kind == "async":
                backlog = float(round(rate * 60 * load * rng.uniform(0.2, 0.6)))
                endpoint_dims = (("EndpointName", ep.name),)
                add(SAGEMAKER_NS, "ApproximateBacklogSize", [backlog], [1], "Count", endpoint_dims)
                add(SAGEMAKER_NS, "HasBacklogWithoutCapacity", [0.0], [1], "Count", endpoint_dims)
                add(SAGEMAKER_NS, "ApproximateAgeOfOldestRequest", [round(backlog / max(rate, 0.01), 1)], [1],
                    "Seconds", endpoint_dims)
            if ep.kind == "serverless":
                continue  # no instances: no /aws/sagemaker/Endpoints metrics

            vcpus, gpus = INSTANCE_SHAPES.get(var.instance_type, (4, 0))
            jitter = lambda lo, hi: rng.uniform(lo, hi)  # noqa: E731
            busy_cpu = 0.55 if gpus == 0 else 0.12
            cpu = vcpus * 100 * min(1.0, 0.03 + busy_cpu * load * jitter(0.9, 1.1) + 0.01 * jitter(0, 1))
            memory = min(100.0, 100 * (0.25 + 0.3 * ep.model_memory + 0.1 * load) * jitter(0.98, 1.02))
            disk = 100 * (0.18 + 0.02 * ((minute % 1440) / 1440)) * jitter(0.995, 1.005)
            add(INSTANCE_NS, "CPUUtilization", [round(cpu, 2)], [1], "Percent")
            add(INSTANCE_NS, "MemoryUtilization", [round(memory, 2)], [1], "Percent")
            add(INSTANCE_NS, "DiskUtilization", [round(disk, 2)], [1], "Percent")
            if gpus:
                gpu = gpus * 100 * min(0.99, 0.9 * load * jitter(0.9, 1.1) + (0.01 if load else 0.0))
                gpu_mem = gpus * 100 * min(0.98, ep.model_memory + 0.15 * load * jitter(0.8, 1.2))
                add(INSTANCE_NS, "GPUUtilization", [round(gpu, 2)], [1], "Percent")
                add(INSTANCE_NS, "GPUMemoryUtilization", [round(gpu_mem, 2)], [1], "Percent")
    return out


def _components(ep: Endpoint, rng: random.Random, n: int, e5: int, load: float, ts: float, add) -> None:
    """Each inference component's share of the variant's requests, by InferenceComponentName."""
    left, left_errors = n, e5
    for i, comp in enumerate(ep.components):
        last = i == len(ep.components) - 1
        mine = left if last else min(left, int(round(n * comp.traffic_share)))
        errors = left_errors if last else min(left_errors, int(round(e5 * comp.traffic_share)))
        left, left_errors = left - mine, left_errors - errors
        dims = (("InferenceComponentName", comp.name),)
        if mine > 0:
            add(SAGEMAKER_NS, "Invocations", [1.0], [mine], "None", dims)
            pairs = [(v, float(c)) for v, c in ((0.0, mine - errors), (1.0, errors)) if c > 0]
            add(SAGEMAKER_NS, "Invocation5XXErrors", [v for v, _ in pairs], [c for _, c in pairs], "None", dims)
            add(SAGEMAKER_NS, "ModelLatency", *_latency(rng, mine, ep.model_latency_us * (0.6 + comp.traffic_share),
                                                        ep.sigma), "Microseconds", dims)
        busy = min(99.0, 100 * load * comp.traffic_share * 1.6 * rng.uniform(0.9, 1.1))
        add(COMPONENT_NS, "GPUUtilizationNormalized", [round(busy, 2)], [1], "Percent", dims)
        add(COMPONENT_NS, "GPUMemoryUtilizationNormalized", [round(100 * ep.model_memory, 2)], [1], "Percent", dims)
        add(COMPONENT_NS, "CPUUtilizationNormalized", [round(busy / 5, 2)], [1], "Percent", dims)


# ---------------------------------------------------------------- talking to the emulator

@dataclass
class Clients:
    sagemaker: Any
    cloudwatch: Any
    url: str
    region: str


def make_clients(url: str, region: str = "us-east-1", timeout: float = 10, role_arn: str | None = None) -> Clients:
    """Clients for the emulator; with `role_arn`, for the account of that role (through STS AssumeRole)."""
    creds: dict[str, str] = {}
    if not (os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY")):
        creds = {"aws_access_key_id": "mlscope-demo", "aws_secret_access_key": "mlscope-demo"}
    cfg = BotoConfig(connect_timeout=timeout, read_timeout=max(timeout, 60),
                     retries={"max_attempts": 1, "mode": "standard"})
    kw: dict[str, Any] = dict(endpoint_url=url, region_name=region, config=cfg, **creds)
    if role_arn:
        assumed = boto3.client("sts", **kw).assume_role(RoleArn=role_arn, RoleSessionName="mlscope-demo")
        c = assumed["Credentials"]
        kw.update(aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                  aws_session_token=c["SessionToken"])
    return Clients(boto3.client("sagemaker", **kw), boto3.client("cloudwatch", **kw), url, region)


def existing_endpoints(clients: Clients) -> set[str]:
    names: set[str] = set()
    for page in clients.sagemaker.get_paginator("list_endpoints").paginate():
        names.update(e["EndpointName"] for e in page["Endpoints"])
    return names


def create_endpoints(clients: Clients, endpoints: Sequence[Endpoint]) -> list[str]:
    """Create the model, endpoint config and endpoint of each demo endpoint that is missing."""
    have = existing_endpoints(clients)
    created = []
    for ep in endpoints:
        if ep.name in have:
            continue
        sm = clients.sagemaker
        variants = []
        for var in ep.variants:
            model = f"{ep.name}-{var.name.lower()}-model"
            try:
                sm.create_model(ModelName=model, ExecutionRoleArn=ROLE_ARN,
                                PrimaryContainer={"Image": IMAGE, "Mode": "SingleModel"})
            except ClientError as exc:
                if "already" not in str(exc).lower():
                    raise
            if ep.kind == "serverless":
                variants.append({"VariantName": var.name, "ModelName": model, "ServerlessConfig": {
                    "MemorySizeInMB": SERVERLESS_MEMORY_MB, "MaxConcurrency": 10}})
            else:
                variants.append({"VariantName": var.name, "ModelName": model, "InstanceType": var.instance_type,
                                 "InitialInstanceCount": var.instances, "InitialVariantWeight": var.weight})
        tags = [{"Key": k, "Value": v} for k, v in ep.tags.items()]
        extra = {"AsyncInferenceConfig": {"OutputConfig": {"S3OutputPath": f"s3://mlscope-demo/{ep.name}/"}}} \
            if ep.kind == "async" else {}
        try:
            sm.create_endpoint_config(EndpointConfigName=ep.config_name, ProductionVariants=variants, Tags=tags,
                                      **extra)
        except ClientError as exc:
            if "already" not in str(exc).lower():
                raise
        sm.create_endpoint(EndpointName=ep.name, EndpointConfigName=ep.config_name, Tags=tags)
        for comp in ep.components:
            sm.create_inference_component(
                InferenceComponentName=comp.name, EndpointName=ep.name, VariantName=ep.variants[0].name,
                RuntimeConfig={"CopyCount": comp.copies},
                Specification={"ModelName": f"{ep.name}-{ep.variants[0].name.lower()}-model",
                               "ComputeResourceRequirements": {"NumberOfAcceleratorDevicesRequired": comp.accelerators,
                                                               "MinMemoryRequiredInMb": 16384}})
        created.append(ep.name)
    return created


def put(clients: Clients, data: Sequence[Datum], batch: int = 500) -> None:
    for ns in (SAGEMAKER_NS, INSTANCE_NS, COMPONENT_NS):
        items = [d.to_cloudwatch() for d in data if d.namespace == ns]
        for i in range(0, len(items), batch):
            clients.cloudwatch.put_metric_data(Namespace=ns, MetricData=items[i:i + batch])


def write_minute(clients: Clients, endpoints: Sequence[Endpoint], minute_ts: float, seed: int = 1) -> list[Datum]:
    """Generate and write one minute; return exactly what was written."""
    data = generate_minute(endpoints, minute_ts, seed)
    put(clients, data)
    return data


def backfill(clients: Clients, endpoints: Sequence[Endpoint], start_ts: float, end_ts: float,
             seed: int = 1) -> list[Datum]:
    """Write every complete minute in [start_ts, end_ts) (minutes floored); return what was written."""
    first, last = int(start_ts) // 60 * 60, int(end_ts) // 60 * 60
    data: list[Datum] = []
    for minute in range(first, last, 60):
        data += generate_minute(endpoints, minute, seed)
    put(clients, data)
    return data


# ---------------------------------------------------------------- the metric stream (optional)

STREAM_BUCKET, STREAM_PREFIX, STREAM_NAME = "mlscope-metric-stream", "cw/", "mlscope-sagemaker"
STREAM_ROLE = "arn:aws:iam::123456789012:role/mlscope-metric-stream"


def create_metric_stream(clients: Clients, statistics: Sequence[str] = ("p50", "p95", "p99")) -> None:
    """Bucket, Firehose delivery stream (60 s buffer) and a JSON metric stream of the SageMaker namespaces, as
    docs/sagemaker-exporter.md describes it (the emulator pumps it every minute: patch 12)."""
    kw = {"endpoint_url": clients.url, "region_name": clients.region,
          "aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID") or "mlscope-demo",
          "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY") or "mlscope-demo"}
    s3, firehose = boto3.client("s3", **kw), boto3.client("firehose", **kw)
    where = {} if clients.region == "us-east-1" else {
        "CreateBucketConfiguration": {"LocationConstraint": clients.region}}
    try:
        s3.create_bucket(Bucket=STREAM_BUCKET, **where)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    if STREAM_NAME not in firehose.list_delivery_streams()["DeliveryStreamNames"]:
        firehose.create_delivery_stream(
            DeliveryStreamName=STREAM_NAME, DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": STREAM_ROLE, "BucketARN": f"arn:aws:s3:::{STREAM_BUCKET}", "Prefix": STREAM_PREFIX,
                "BufferingHints": {"IntervalInSeconds": 60, "SizeInMBs": 5}})
    arn = firehose.describe_delivery_stream(DeliveryStreamName=STREAM_NAME)["DeliveryStreamDescription"][
        "DeliveryStreamARN"]
    latency = [{"Namespace": "AWS/SageMaker", "MetricName": m} for m in ("ModelLatency", "OverheadLatency")]
    clients.cloudwatch.put_metric_stream(
        Name=STREAM_NAME, FirehoseArn=arn, RoleArn=STREAM_ROLE, OutputFormat="json",
        IncludeFilters=[{"Namespace": ns} for ns in ("AWS/SageMaker", "/aws/sagemaker/Endpoints",
                                                     "/aws/sagemaker/InferenceComponents")],
        StatisticsConfigurations=[{"IncludeMetrics": latency, "AdditionalStatistics": list(statistics)}])


# ---------------------------------------------------------------- the command

SETTINGS = [
    Setting("aws_endpoint", string, None, "URL of the AWS emulator (mlscope demo aws), e.g. http://127.0.0.1:5000"),
    Setting("endpoints", positive_int, 6, "how many demo endpoints to create"),
    Setting("region", string, "us-east-1", "AWS region name"),
    Setting("interval", duration, 60, "how often to write the minutes that completed, e.g. 60 or 1m"),
    Setting("backfill", duration, 1800, "history to write at start, e.g. 30m (0: none)"),
    Setting("seed", integer, 1, "random seed (the same seed writes the same data)"),
    Setting("once", boolean, False, "create the endpoints, backfill, and exit"),
    Setting("other_kinds", boolean, True,
            "also run a serverless endpoint, an asynchronous one and one with two inference components"),
    Setting("second_account", boolean, True,
            f"also run {len(SECOND_ACCOUNT_TEMPLATES)} endpoints in a second account ({SECOND_ACCOUNT}, "
            "reached through AssumeRole)"),
    Setting("metric_stream", boolean, False,
            f"also create a CloudWatch metric stream to Firehose to S3 (bucket {STREAM_BUCKET}, prefix "
            f"{STREAM_PREFIX}) in the default account, for an exporter with metric_stream set"),
    Setting("log_level", choice("debug", "info", "warning", "error"), "info", "log level"),
]
CONNECTION_ERRORS = (BotoCoreError, ConnectionError, OSError)


def _settings(argv: Sequence[str]) -> Any:
    parser = OneLineParser(prog="mlscope demo traffic",
                           description="demo SageMaker endpoints with per-minute CloudWatch metrics")
    add_setting_flags(parser, SETTINGS)
    # no config file for the demo tools: an MLSCOPE_CONFIG meant for an exporter is ignored
    environ = {k: v for k, v in os.environ.items() if k != "MLSCOPE_CONFIG"}
    cfg = resolve(SETTINGS, vars(parser.parse_args(list(argv))), environ)
    for s in SETTINGS:
        if getattr(cfg, s.name) is None:
            setattr(cfg, s.name, s.default)
    if not cfg.aws_endpoint:
        raise SettingError("--aws-endpoint: required (the emulator's URL, e.g. http://127.0.0.1:5000)")
    url = cfg.aws_endpoint.rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        raise SettingError(f"--aws-endpoint: must be an http:// or https:// URL, got {cfg.aws_endpoint!r}")
    if "amazonaws.com" in url:
        raise SettingError("--aws-endpoint: refusing to write demo endpoints and metrics to real AWS")
    cfg.aws_endpoint = url
    if cfg.interval <= 0:
        raise SettingError("--interval: must be more than zero")
    return cfg


@dataclass
class Fleet:
    """Demo endpoints in one account, and the minutes already written for them."""
    name: str
    clients: Clients | None
    endpoints: list[Endpoint]
    role_arn: str | None = None
    written_until: int = 0  # minutes before this (epoch seconds) are written


def _step(fleet: Fleet, cfg: Any) -> None:
    """Create what is missing and write every minute that completed since the last step."""
    if fleet.clients is None:
        fleet.clients = make_clients(cfg.aws_endpoint, cfg.region, role_arn=fleet.role_arn)
    names = {ep.name for ep in fleet.endpoints}
    missing = names - existing_endpoints(fleet.clients)
    if missing:
        create_endpoints(fleet.clients, fleet.endpoints)
        log.info("created %d demo endpoints in %s on %s (%s)", len(missing), fleet.name, cfg.aws_endpoint,
                 ", ".join(sorted(missing)))
        if missing == names:  # a new (or restarted) emulator: write the history again
            fleet.written_until = 0
    current = int(time.time()) // 60 * 60
    if fleet.written_until == 0:
        start = current - int(cfg.backfill) // 60 * 60
        data = backfill(fleet.clients, fleet.endpoints, start, current, cfg.seed)
        log.info("backfilled %d minutes (%d datums) for %d endpoints in %s", (current - start) // 60,
                 len(data), len(fleet.endpoints), fleet.name)
        fleet.written_until = current
    elif current > fleet.written_until:
        data = backfill(fleet.clients, fleet.endpoints, fleet.written_until, current, cfg.seed)
        log.debug("wrote %d datums for minutes up to %s in %s", len(data),
                  datetime.fromtimestamp(current, timezone.utc).isoformat(), fleet.name)
        fleet.written_until = current


def main(argv: Sequence[str]) -> int:
    cfg = _settings(argv)
    logs.setup(cfg.log_level)
    stop = stop_on_signals(log)
    first = demo_endpoints(cfg.endpoints) + (list(KIND_TEMPLATES) if cfg.other_kinds else [])
    fleets = [Fleet("the default account", make_clients(cfg.aws_endpoint, cfg.region), first)]
    stream_pending = cfg.metric_stream
    if cfg.second_account:
        fleets.append(Fleet(f"account {SECOND_ACCOUNT}", None, list(SECOND_ACCOUNT_TEMPLATES), SECOND_ACCOUNT_ROLE))
    waiting_logged = False

    while not stop.is_set():
        try:
            if stream_pending:
                create_metric_stream(fleets[0].clients)
                log.info("metric stream %s -> Firehose -> s3://%s/%s created", STREAM_NAME, STREAM_BUCKET,
                         STREAM_PREFIX)
                stream_pending = False
            for fleet in fleets:
                _step(fleet, cfg)
            if waiting_logged:
                log.info("AWS endpoint %s is up", cfg.aws_endpoint)
                waiting_logged = False
            if cfg.once:
                return 0
        except ClientError as exc:
            err = exc.response.get("Error", {})
            log.warning("AWS call failed: %s %s", err.get("Code"), err.get("Message", exc))
            if cfg.once:
                return 1
        except CONNECTION_ERRORS as exc:
            if not waiting_logged:
                log.warning("waiting for the AWS endpoint %s: %s", cfg.aws_endpoint, exc)
                waiting_logged = True
            stop.wait(1)
            continue
        # sleep to the next interval boundary (aligned to the clock), plus a second for late writers
        now = time.time()
        stop.wait(max(0.05, cfg.interval - now % cfg.interval + (1 if cfg.interval >= 60 else 0)))
    return 0
