"""The numbers the rightsizer decides with, and the profiles that set some of them together."""

from __future__ import annotations

from dataclasses import dataclass

# Profile: which percentile of the 5-minute maxima stands for demand, and how much headroom to keep.
PROFILES = {
    "cost": {"cpu_percentile": 95.0, "gpu_percentile": 95.0, "memory_percentile": 100.0, "headroom": 0.10},
    "balanced": {"cpu_percentile": 99.5, "gpu_percentile": 99.5, "memory_percentile": 100.0, "headroom": 0.20},
    "performance": {"cpu_percentile": 100.0, "gpu_percentile": 100.0, "memory_percentile": 100.0, "headroom": 0.30},
}


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
