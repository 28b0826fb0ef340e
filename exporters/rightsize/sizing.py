"""Instance options for a subject: how many of each catalogue type meet its demand, at what cost and risk."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .analysis import Knee
from .catalogue import SPECIAL_FAMILIES, Catalogue, Instance, family, gpu_units
from .history import History
from .policy import Policy

RISK_STEPS = (0.5, 0.65, 0.8, 0.9)  # projected peak utilization at or under each step: risk 0, 1, 2, 3; above: 4


def ceil_count(x: float) -> int:
    """ceil, forgiving the float error of a product that should be a whole number."""
    return max(0, math.ceil(x - 1e-9))


def _risk(utilization: float, new_gpu_model: bool) -> int:
    risk = sum(utilization > step for step in RISK_STEPS)
    return min(4, risk + (1 if new_gpu_model else 0))


@dataclass
class Demand:
    """What the subject needs, in absolute units, at the policy's percentile."""

    vcpus: float | None = None  # divisible across instances
    gpu_units: float | None = None  # T4 equivalents, divisible
    memory_gib: float | None = None  # per instance
    gpu_memory_gib: float | None = None  # per instance, all its GPUs together
    gpu_memory_per_gpu_gib: float | None = None  # the most any one GPU holds
    peak_rate: float | None = None  # requests/s, all instances
    sustainable_rate: float | None = None  # requests/s per current instance, from the knee only


def demand_of(h: History, cur: Instance, stats: dict[str, float], knee_: Knee, peak_rate: float | None) -> Demand:
    n = h.instances_now
    d = Demand()
    if "cpu" in stats:
        d.vcpus = stats["cpu"] * cur.vcpu * n
    if "gpu" in stats and cur.gpu:
        d.gpu_units = stats["gpu"] * gpu_units(cur) * n
    if "memory" in stats:
        d.memory_gib = stats["memory"] * cur.memory_gib
    if "gpu_memory" in stats and cur.gpu:
        d.gpu_memory_gib = stats["gpu_memory"] * cur.gpu * cur.gpu_memory_gib
        per_gpu = h.demand.get("gpu_memory_per_gpu", stats["gpu_memory"])
        d.gpu_memory_per_gpu_gib = per_gpu * cur.gpu_memory_gib
    if knee_.reached:
        d.peak_rate, d.sustainable_rate = peak_rate, knee_.sustainable_rate
    return d


def size(cand: Instance, cur: Instance, d: Demand, policy: Policy, min_n: int, host: bool) -> dict | None:
    """How many `cand` instances meet the demand at the target utilization; None when it cannot."""
    t = policy.target
    if d.memory_gib is not None and d.memory_gib > cand.memory_gib * t:
        return None
    if d.gpu_memory_gib is not None and (d.gpu_memory_gib > cand.gpu * cand.gpu_memory_gib * t
                                         or d.gpu_memory_per_gpu_gib > cand.gpu_memory_gib * t):
        return None
    n = min_n
    if d.vcpus is not None:
        n = max(n, ceil_count(d.vcpus / (cand.vcpu * t)))
    if d.gpu_units is not None:
        n = max(n, ceil_count(d.gpu_units / (gpu_units(cand) * t)))
    rate_capacity = None
    if d.sustainable_rate:
        ratio = gpu_units(cand) / gpu_units(cur) if cur.gpu else cand.vcpu / cur.vcpu
        rate_capacity = d.sustainable_rate * ratio
        n = max(n, ceil_count(d.peak_rate / (rate_capacity * t)))
    if host and n > 1:
        return None
    projected = {}
    if d.vcpus is not None:
        projected["cpu"] = d.vcpus / (n * cand.vcpu)
    if d.memory_gib is not None:
        projected["memory"] = d.memory_gib / cand.memory_gib
    if d.gpu_units is not None:
        projected["gpu"] = d.gpu_units / (n * gpu_units(cand))
    if d.gpu_memory_gib is not None:
        projected["gpu_memory"] = d.gpu_memory_gib / (cand.gpu * cand.gpu_memory_gib)
    peak = max(projected.values(), default=0.0)
    if rate_capacity:
        peak = max(peak, d.peak_rate / (n * rate_capacity))
    return {"instances": n, "projected_utilization": {k: round(v, 4) for k, v in projected.items()},
            "performance_risk": _risk(peak, bool(cur.gpu) and cand.gpu_model != cur.gpu_model)}


def options(h: History, cur: Instance, d: Demand, policy: Policy, catalogue: Catalogue,
            current_cost: float) -> list[dict]:
    host = h.kind == "host"
    min_n = policy.production_min_instances if h.instances_now >= policy.production_min_instances else 1
    found = []
    for cand in catalogue.candidates(h.region, sagemaker=not host):
        if bool(cand.gpu) != bool(cur.gpu) or cand.usd_per_hour is None:
            continue
        if family(cand) in SPECIAL_FAMILIES and family(cand) != family(cur):
            continue
        sized = size(cand, cur, d, policy, 1 if host else min_n, host)
        if sized is None or sized["performance_risk"] > policy.max_performance_risk:
            continue
        cost = sized["instances"] * cand.usd_per_hour
        savings = (current_cost - cost) * policy.hours_per_month
        found.append({"instance_type": cand.instance_type, "instances": sized["instances"],
                      "hourly_cost_dollars": round(cost, 4),
                      "estimated_monthly_savings_dollars": round(savings, 2),
                      "savings_percent": round(100 * savings / (current_cost * policy.hours_per_month), 1)
                      if current_cost else 0.0,
                      "performance_risk": sized["performance_risk"],
                      "projected_utilization": sized["projected_utilization"]})
    found.sort(key=lambda o: (o["hourly_cost_dollars"], o["performance_risk"], o["instance_type"]))
    return [{"rank": i, **o} for i, o in enumerate(found[: policy.max_options], 1)]
