"""From one subject's history to its recommendation: finding, reasons, ranked options, autoscaling."""

from __future__ import annotations

from .analysis import Knee, knee
from .catalogue import Catalogue
from .history import History
from .policy import Policy
from .sizing import demand_of, options
from .traffic import Traffic, autoscaling, peak_error_ratio

RESOURCES = ("cpu", "memory", "gpu", "gpu_memory")
REASON = {"cpu": "CPU", "memory": "Memory", "gpu": "GPU", "gpu_memory": "GPUMemory"}


def under_reasons(stats: dict[str, float], traffic: Traffic | None, knee_: Knee, policy: Policy) -> list[str]:
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

    if h.instance_type is None:
        rec["message"] = ("no mlscope_host_hourly_cost_dollars series, so its instance type is unknown: no options "
                          "(give the host exporter instance_type, or run it on EC2 where it reads it)")
    elif cur is None:
        rec["message"] = (f"instance type {h.instance_type} is not in the instance catalogue for "
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
