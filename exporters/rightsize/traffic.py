"""An endpoint's traffic: peaks, 5xx at the busiest windows, and the autoscaling target it supports."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .analysis import Knee, at_percentile, in_flight, present_sorted
from .history import History
from .policy import Policy
from .sizing import ceil_count


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
               min_capacity=max(min_n, ceil_count(t.trough_rate / (sustainable * policy.target))),
               peak_in_flight_per_instance=round(in_flight(t.peak_per_instance, latency), 3)
               if latency is not None else None)
    out["max_capacity"] = max(out["min_capacity"], ceil_count(t.peak_rate / (sustainable * policy.target)))
    return out
