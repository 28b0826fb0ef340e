"""From one subject's history to its recommendation: finding, reasons, ranked options, autoscaling."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .analysis import Knee, at_percentile, in_flight, knee, present_sorted
from .catalogue import SPECIAL_FAMILIES, Catalogue, Instance, family, gpu_units
from .history import History

RESOURCES = ("cpu", "memory", "gpu", "gpu_memory")
REASON = {"cpu": "CPU", "memory": "Memory", "gpu": "GPU", "gpu_memory": "GPUMemory"}
# Profile: which percentile of the 5-minute maxima stands for demand, and how much headroom to keep.
PROFILES = {
    "cost": {"cpu_percentile": 95.0, "gpu_percentile": 95.0, "memory_percentile": 100.0, "headroom": 0.10},
    "balanced": {"cpu_percentile": 99.5, "gpu_percentile": 99.5, "memory_percentile": 100.0, "headroom": 0.20},
    "performance": {"cpu_percentile": 100.0, "gpu_percentile": 100.0, "memory_percentile": 100.0, "headroom": 0.30},
}
RISK_STEPS = (0.5, 0.65, 0.8, 0.9)  # projected peak utilization at or under each step: risk 0, 1, 2, 3; above: 4


@dataclass
class Policy:
    """Every number the rightsizer decides with; docs/rightsizing.md says where each default comes from."""

    profile: str = "balanced"
    cpu_percentile: float | None = None
    gpu_percentile: float | None = None
    memory_percentile: float | None = None
    headroom: float | None = None
    min_history_hours: float = 30.0
    medium_confidence_hours: float = 72.0
    high_confidence_hours: float = 336.0
    idle_utilization: float = 0.05
    idle_requests_per_minute: float = 1.0
    overprovisioned_below: float = 0.5
    min_savings_percent: float = 10.0
    knee_factor: float = 1.5
    peak_error_ratio: float = 0.01
    latency_objective: float | None = None
    autoscaling_safety_factor: float = 0.5
    production_min_instances: int = 2
    max_options: int = 5
    max_performance_risk: int = 3
    hours_per_month: float = 730.0
    def __post_init__(self) -> None:
        for name, value in PROFILES[self.profile].items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    @property
    def target(self) -> float:
        """Highest projected utilization a recommendation may reach: capacity x target >= demand."""
        return 1 / (1 + self.headroom)

    def as_dict(self) -> dict:
        out = {k: v for k, v in vars(self).items()}
        out["target_utilization"] = round(self.target, 6)
        return out

    def percentiles(self) -> dict[str, float]:
        """Per resource, the percentile of the 5-minute maxima that stands for its demand."""
        return {"cpu": self.cpu_percentile, "gpu": self.gpu_percentile, "memory": self.memory_percentile,
                "gpu_memory": self.memory_percentile}


def _ceil(x: float) -> int:
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
        n = max(n, _ceil(d.vcpus / (cand.vcpu * t)))
    if d.gpu_units is not None:
        n = max(n, _ceil(d.gpu_units / (gpu_units(cand) * t)))
    rate_capacity = None
    if d.sustainable_rate:
        ratio = gpu_units(cand) / gpu_units(cur) if cur.gpu else cand.vcpu / cur.vcpu
        rate_capacity = d.sustainable_rate * ratio
        n = max(n, _ceil(d.peak_rate / (rate_capacity * t)))
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


def under_reasons(stats: dict[str, float], traffic: "Traffic | None", knee_: Knee, policy: Policy) -> list[str]:
    """Resources whose demand is above the target utilization; for endpoints also latency past its objective
    at a load-driven knee, and throughput: load past the knee, or 5xx errors only when busiest."""
    reasons = [f"{REASON[r]}Underprovisioned" for r in RESOURCES if r in stats and stats[r] > policy.target]
    if traffic is None:
        return reasons
    # Without an objective of the user's, latency counts only where load drives it (a knee).
    objective = policy.latency_objective or (policy.knee_factor * knee_.baseline_latency if knee_.reached else None)
    if objective and traffic.peak_latency is not None and traffic.peak_latency > objective:
        reasons.append("LatencyUnderprovisioned")
    if knee_.reached and traffic.peak_per_instance > knee_.sustainable_rate:
        reasons.append("ThroughputUnderprovisioned")
    if "ThroughputUnderprovisioned" not in reasons and \
            peak_error_ratio(traffic.per_instance, traffic.requests, traffic.errors) > policy.peak_error_ratio:
        reasons.append("ThroughputUnderprovisioned")
    return reasons


def _confidence(hours: float, policy: Policy) -> str:
    if hours >= policy.high_confidence_hours:
        return "high"
    return "medium" if hours >= policy.medium_confidence_hours else "low"


def recommend(h: History, catalogue: Catalogue, policy: Policy) -> dict:
    hours = h.history_hours
    cur = catalogue.get(h.instance_type, h.region)
    cost = h.hourly_cost
    if cost is None and cur is not None:
        cost = cur.usd_per_hour * h.instances_now
    rec: dict = {"kind": h.kind, **h.labels, "region": h.region,
                 "current": {"instance_type": h.instance_type, "instances": h.instances_now,
                             "hourly_cost_dollars": round(cost, 4) if cost is not None else None},
                 "finding": "Optimized", "reasons": [],
                 "utilization": {r: h.stats[r] for r in RESOURCES if r in h.stats},
                 "options": [], "confidence": _confidence(hours, policy), "history_hours": round(hours, 1),
                 "estimated_monthly_savings_dollars": 0.0, "message": None}
    endpoint = h.kind == "sagemaker_variant"
    if hours < policy.min_history_hours:
        rec.update(finding="InsufficientData", message=f"only {hours:.1f} h of history; the rightsizer needs at "
                   f"least {policy.min_history_hours:g} h (--min-history)")
        if endpoint:
            rec.update(autoscaling=None, cost_per_1k_requests_dollars=None)
        return rec

    stats = {r: h.demand[r] for r in RESOURCES if r in h.demand}
    rate_pct = policy.cpu_percentile
    traffic = Traffic.of(h, rate_pct)
    knee_ = knee(traffic.per_instance, traffic.latency, policy.knee_factor) if endpoint else Knee(False, None, None)
    peak_rate = traffic.peak_rate

    under = under_reasons(stats, traffic if endpoint else None, knee_, policy)
    over = [f"{REASON[r]}Overprovisioned" for r in RESOURCES
            if r in stats and stats[r] * (1 + policy.headroom) < policy.overprovisioned_below]
    rec["reasons"] = under + over

    busiest = "gpu" if "gpu" in stats and (cur is None or cur.gpu) else "cpu"
    quiet = not endpoint or (peak_rate or 0.0) * 60 < policy.idle_requests_per_minute
    idle = busiest in stats and stats[busiest] < policy.idle_utilization and quiet

    if cur is None:
        rec["message"] = (f"instance type {h.instance_type or '(unknown)'} is not in the instance catalogue for "
                          f"{h.region}: no options (add it to the catalogue or run `mlscope prices refresh "
                          f"--catalogue --region {h.region}`)")
    elif cost is not None:
        rec["options"] = options(h, cur, demand_of(h, cur, stats, knee_, peak_rate), policy, catalogue, cost)
    best = rec["options"][0] if rec["options"] else None

    if under:
        rec["finding"] = "Underprovisioned"
    elif idle:
        rec["finding"] = "Idle"
        if endpoint and cost is not None:
            rec["estimated_monthly_savings_dollars"] = round(cost * policy.hours_per_month, 2)
            rec["message"] = rec["message"] or ("no traffic and no use over the lookback: delete the endpoint "
                                                "(or scale it to zero) to save all of its cost")
        elif best:
            rec["estimated_monthly_savings_dollars"] = max(0.0, best["estimated_monthly_savings_dollars"])
    elif over and (cur is None or (best and best["savings_percent"] >= policy.min_savings_percent)):
        rec["finding"] = "Overprovisioned"
        rec["estimated_monthly_savings_dollars"] = best["estimated_monthly_savings_dollars"] if best else 0.0

    if endpoint:
        rec["autoscaling"] = autoscaling(h, stats, knee_, traffic, policy)
        rec["cost_per_1k_requests_dollars"] = None if traffic.mean_rate <= 0 or cost is None else {
            "before": round(cost / (traffic.mean_rate * 3.6), 6),
            "after": round(best["hourly_cost_dollars"] / (traffic.mean_rate * 3.6), 6) if best else None}
    return rec


@dataclass
class Traffic:
    """An endpoint's traffic on the 5-minute grid (NaN where a window has no value) and its peaks."""

    requests: list[float]
    per_instance: list[float]  # requests/s per instance
    latency: list[float]
    errors: list[float]
    peak_rate: float | None  # requests/s, the policy's percentile
    trough_rate: float | None  # the mirror percentile (p0.5 for p99.5)
    mean_rate: float
    peak_per_instance: float | None
    peak_latency: float | None  # p99 latency, the policy's percentile

    @classmethod
    def of(cls, h: History, pct: float) -> "Traffic":
        nan = math.nan
        requests = list(h.traffic.get("requests", ()))
        instances = list(h.traffic.get("instances", ())) or [nan] * len(requests)
        per_instance = [r / n if n > 0 else nan for r, n in zip(requests, instances)]  # NaN in, NaN out
        latency = list(h.traffic.get("latency_p99", ()))
        rates, per, lat = present_sorted(requests), present_sorted(per_instance), present_sorted(latency)
        return cls(requests, per_instance, latency, list(h.traffic.get("errors_5xx", ())),
                   at_percentile(rates, pct) if rates else None, at_percentile(rates, 100 - pct) if rates else None,
                   sum(rates) / len(rates) if rates else 0.0, at_percentile(per, pct) if per else None,
                   at_percentile(lat, pct) if lat else None)


def peak_error_ratio(per_instance: list[float], requests: list[float], errors: list[float],
                     top: float = 0.05) -> float:
    """5xx errors / requests over the busiest `top` share of the windows (by per-instance rate): an
    endpoint that fails requests only when it is busiest is out of capacity, whatever its latency says."""
    windows = [i for i, x in enumerate(per_instance) if x == x]
    if not errors or not windows:
        return 0.0
    busiest = sorted(windows, key=lambda i: per_instance[i], reverse=True)[: max(1, round(len(windows) * top))]
    asked = sum(requests[i] for i in busiest)
    failed = sum(errors[i] for i in busiest if i < len(errors) and errors[i] == errors[i])
    return failed / asked if asked > 0 else 0.0


def autoscaling(h: History, stats: dict[str, float], knee_: Knee, t: Traffic, policy: Policy) -> dict:
    """Target tracking on SageMakerVariantInvocationsPerInstance (invocations per instance per minute)."""
    min_n = policy.production_min_instances if h.instances_now >= policy.production_min_instances else 1
    out = {"metric": "SageMakerVariantInvocationsPerInstance", "target_value": None, "min_capacity": min_n,
           "max_capacity": max(min_n, h.instances_now), "knee_reached": knee_.reached,
           "sustainable_invocations_per_instance_per_second": None, "sustainable_source": None,
           "peak_requests_per_second": round(t.peak_rate, 4) if t.peak_rate is not None else None,
           "peak_in_flight_per_instance": None, "note": None}
    if not t.peak_rate or not t.peak_per_instance:
        out["note"] = "no traffic in the lookback: no target to set"
        return out
    compute = max((stats[r] for r in ("cpu", "gpu") if r in stats), default=0.0)
    if knee_.reached:
        sustainable, source = knee_.sustainable_rate, "knee"
    elif compute > 0:
        # The history never reached the knee: extrapolate the per-instance rate linearly to full use.
        sustainable, source = t.peak_per_instance / compute, "utilization"
        out["note"] = (f"the history never reached the latency knee (per-instance rate up to "
                       f"{t.peak_per_instance:.3g}/s); the sustainable rate is extrapolated from CPU/GPU utilization")
    else:
        return out
    latency = t.peak_latency
    out.update(target_value=round(sustainable * policy.autoscaling_safety_factor * 60, 1),
               sustainable_invocations_per_instance_per_second=round(sustainable, 4), sustainable_source=source,
               min_capacity=max(min_n, _ceil(t.trough_rate / (sustainable * policy.target))),
               peak_in_flight_per_instance=round(in_flight(t.peak_per_instance, latency), 3)
               if latency is not None else None)
    out["max_capacity"] = max(out["min_capacity"], _ceil(t.peak_rate / (sustainable * policy.target)))
    return out
