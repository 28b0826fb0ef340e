"""Fetch the fleet's history: one PromQL query per metric for the whole fleet, never one per subject.

Range queries at a 5-minute step over the lookback return, for each subject, the maximum of each
5-minute window (`max_over_time(x[5m])`) or the window's rate; instant queries at `at` say what runs
today (instance type, count, cost). Only the exporters' raw series are read, no recording rules.

Utilization series are reduced to their statistics as soon as they arrive (a fleet's 14 days of every
series would not fit in memory); the traffic series an endpoint's knee needs are kept as float32 arrays.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from .analysis import at_percentile, present_sorted, summary_of_sorted
from .query import PromQL, RightsizeError

STEP = 300  # seconds: the "5-minute window" of the statistic
ENDPOINT_BY = "account, region, endpoint, variant"
ENDPOINT_KEYS = ("account", "region", "endpoint", "variant")
TRAFFIC = ("instances", "requests", "errors_5xx", "latency_p99")

# No aggregation in the range queries: grouping thousands of series at every step costs Prometheus several
# times what the selection does, so series are keyed by their subject labels here (duplicates, e.g. the two
# replicas of an HA exporter pair or two exporters polling the same account, are merged by taking the larger
# value, as the rules' `max without (instance, replica)` does).
ENDPOINT_RANGE = {
    "cpu": "max_over_time(sagemaker_instance_cpu_utilization_ratio{{{sel}}}[{w}])",
    "memory": "max_over_time(sagemaker_instance_memory_utilization_ratio{{{sel}}}[{w}])",
    "gpu": "max_over_time(sagemaker_instance_gpu_utilization_ratio{{{sel}}}[{w}])",
    "gpu_memory": "max_over_time(sagemaker_instance_gpu_memory_utilization_ratio{{{sel}}}[{w}])",
    "instances": "max_over_time(sagemaker_variant_instances{{{sel}}}[{w}])",
    "requests": "rate(sagemaker_invocations_total{{{sel}}}[{w}])",
    "errors_5xx": "rate(sagemaker_invocation_5xx_errors_total{{{sel}}}[{w}]) > 0",  # only windows with errors
    "latency_p99": "max_over_time(sagemaker_model_latency_seconds{{quantile=\"0.99\",{sel}}}[{w}])",
}
ENDPOINT_NOW = {
    "info": "max by ({by}, instance_type) (last_over_time(sagemaker_variant_info{{{sel}}}[1h]))",
    "cost": "max by ({by}, instance_type) (last_over_time(sagemaker_variant_hourly_cost_dollars{{{sel}}}[1h]))",
}
HOST_RANGE = {
    "cpu": "1 - avg by (instance) (rate(node_cpu_seconds_total{{mode=\"idle\",{sel}}}[{w}]))",
    "memory": "1 - min by (instance) (min_over_time(node_memory_MemAvailable_bytes{{{sel}}}[{w}])"
              " / max_over_time(node_memory_MemTotal_bytes{{{sel}}}[{w}]))",
    "gpu": "avg by (instance) (max_over_time(gpu_utilization_ratio{{{sel}}}[{w}]))",
    # SM activity (GPM) is the truer measure of GPU use: where it exists it replaces gpu_utilization_ratio.
    "gpu_sm": "avg by (instance) (max_over_time(gpu_sm_active_ratio{{{sel}}}[{w}]))",
    "gpu_memory": "sum by (instance) (max_over_time(gpu_memory_used_bytes{{{sel}}}[{w}]))"
                  " / sum by (instance) (max_over_time(gpu_memory_total_bytes{{{sel}}}[{w}]))",
    "gpu_memory_per_gpu": "max by (instance) (max_over_time(gpu_memory_used_bytes{{{sel}}}[{w}])"
                          " / max_over_time(gpu_memory_total_bytes{{{sel}}}[{w}]))",
}
HOST_NOW = {
    "cost": "max by (instance, instance_type, region) (last_over_time(mlscope_host_hourly_cost_dollars{{{sel}}}[1h]))",
}


@dataclass
class History:
    """One subject: what runs now, the statistics of its utilization, and (endpoints) its traffic."""

    kind: str  # sagemaker_variant | host
    labels: dict[str, str]  # region/endpoint/variant(/account) or instance
    region: str
    instance_type: str | None = None
    instances_now: int = 1
    hourly_cost: float | None = None  # total for instances_now, from the exporters' cost series
    stats: dict[str, dict[str, float]] = field(default_factory=dict)  # resource -> p50/p95/p99/max
    demand: dict[str, float] = field(default_factory=dict)  # resource -> the policy's percentile
    points: dict[str, int] = field(default_factory=dict)  # metric -> 5-minute windows with data
    traffic: dict[str, array] = field(default_factory=dict)  # TRAFFIC name -> values on the step grid, NaN = none

    @property
    def history_hours(self) -> float:
        counts = [self.points.get(name, 0) for name in ("cpu", "gpu", "memory", "instances", "requests")]
        return max(counts) * STEP / 3600

    def add(self, name: str, values: array, percentile: float) -> None:
        """Keep a traffic series; reduce a utilization series to its statistics."""
        present = present_sorted(values)
        if not present:
            return
        self.points[name] = len(present)
        if name in TRAFFIC:
            self.traffic[name] = values
            return
        name = "gpu" if name == "gpu_sm" else name
        self.stats[name] = summary_of_sorted(present)
        self.demand[name] = at_percentile(present, percentile)


def _selector(label: str, pattern: str | None) -> str:
    if not pattern:
        return ""
    if "`" in pattern:
        raise RightsizeError(f"--{label}: a regular expression with a backquote cannot be sent as PromQL")
    return f"{label}=~`{pattern}`"


def _query(template: str, by: str, sel: str) -> str:
    text = template.format(by=by, sel=sel, w=f"{STEP}s")
    return text.replace(",}", "}").replace("{,", "{")


def fetch(client: PromQL, at: float, lookback: float, percentiles: dict[str, float], endpoint: str | None = None,
          instance: str | None = None, host_region: str = "us-east-1") -> list[History]:
    """Every subject's history over (at - lookback, at]. `percentiles` gives, per resource, the percentile of
    the 5-minute maxima that stands for its demand (memory's for memory-like series)."""
    start = at - lookback + STEP
    out: list[History] = []
    # A filter on one kind of subject leaves the other kind out, unless it has its own filter.
    if endpoint or not instance:
        out += _endpoints(client, at, start, _selector("endpoint", endpoint), percentiles)
    if instance or not endpoint:
        out += _hosts(client, at, start, _selector("instance", instance), host_region, percentiles)
    return out


def _percentile(name: str, percentiles: dict[str, float]) -> float:
    return percentiles.get({"gpu_sm": "gpu", "gpu_memory_per_gpu": "gpu_memory"}.get(name, name), 100.0)


def _larger(a: array, b: array) -> array:
    """Step by step the larger value of two series of one subject (NaN where both have none)."""
    return array("f", (y if x != x or y > x else x for x, y in zip(a, b)))


def _endpoints(client: PromQL, at: float, start: float, sel: str, percentiles: dict[str, float]) -> list[History]:
    subjects: dict[tuple, History] = {}
    for labels, _ in client.instant(_query(ENDPOINT_NOW["info"], ENDPOINT_BY, sel), at):
        key = tuple(labels.get(k, "") for k in ENDPOINT_KEYS)
        itype = labels.get("instance_type", "")
        if itype == "serverless" or key in subjects:
            continue
        subjects[key] = History("sagemaker_variant", {k: v for k, v in zip(ENDPOINT_KEYS, key) if v},
                                labels.get("region", ""), itype or None)
    for labels, cost in client.instant(_query(ENDPOINT_NOW["cost"], ENDPOINT_BY, sel), at):
        subject = subjects.get(tuple(labels.get(k, "") for k in ENDPOINT_KEYS))
        if subject is not None and labels.get("instance_type") == subject.instance_type:
            subject.hourly_cost = cost
    for name, template in ENDPOINT_RANGE.items():
        by_subject: dict[tuple, array] = {}
        for labels, values in client.range(_query(template, ENDPOINT_BY, sel), start, at, STEP):
            key = tuple(labels.get(k, "") for k in ENDPOINT_KEYS)
            if key in subjects:
                by_subject[key] = _larger(by_subject[key], values) if key in by_subject else values
        for key, values in by_subject.items():
            subjects[key].add(name, values, _percentile(name, percentiles))
    for subject in subjects.values():
        counts = [v for v in subject.traffic.get("instances", ()) if v == v]
        subject.instances_now = max(1, round(counts[-1])) if counts else 1
    return list(subjects.values())


def _hosts(client: PromQL, at: float, start: float, sel: str, default_region: str,
           percentiles: dict[str, float]) -> list[History]:
    subjects: dict[str, History] = {}

    def subject(instance: str) -> History:
        if instance not in subjects:
            subjects[instance] = History("host", {"instance": instance}, default_region)
        return subjects[instance]

    for labels, cost in client.instant(_query(HOST_NOW["cost"], "", sel), at):
        if labels.get("instance"):
            host = subject(labels["instance"])
            host.instance_type = labels.get("instance_type") or None
            host.region = labels.get("region") or default_region
            host.hourly_cost = cost
    for name, template in HOST_RANGE.items():
        for labels, values in client.range(_query(template, "", sel), start, at, STEP):
            if labels.get("instance"):
                subject(labels["instance"]).add(name, values, _percentile(name, percentiles))
    return [h for h in subjects.values() if "cpu" in h.stats or "gpu" in h.stats]
