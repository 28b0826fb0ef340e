"""`mlscope rightsize`: what each SageMaker variant and GPU/CPU host should run, from Prometheus history.

Pipeline: history (one PromQL query per metric for the fleet) -> analysis (5-minute maxima, percentiles,
latency knee) -> findings (finding, reasons, ranked options, autoscaling) -> outputs (table, JSON, CSV, HTML).
`analyse()` is the whole pipeline for other callers (the --serve mode, the benchmark).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from .catalogue import Catalogue
from .findings import recommend
from .policy import Policy
from .history import fetch
from .query import PromQL, RightsizeError

__all__ = ["Catalogue", "Policy", "PromQL", "Report", "RightsizeError", "analyse"]


@dataclass
class Report:
    generated_at: float
    at: float
    lookback_seconds: float
    profile: str
    recommendations: list[dict]
    queries: int  # how many queries the analysis sent (independent of the fleet's size)
    settings: dict

    def as_dict(self) -> dict:
        savings = sum(r["estimated_monthly_savings_dollars"] for r in self.recommendations)
        findings: dict[str, int] = {}
        for r in self.recommendations:
            findings[r["finding"]] = findings.get(r["finding"], 0) + 1
        return {"generated_at": _iso(self.generated_at), "at": _iso(self.at),
                "lookback_seconds": int(self.lookback_seconds), "profile": self.profile,
                "settings": self.settings,
                "summary": {"subjects": len(self.recommendations), "findings": findings,
                            "estimated_monthly_savings_dollars": round(savings, 2)},
                "recommendations": self.recommendations}


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def analyse(client: PromQL, at: float, lookback: float, policy: Policy | None = None,
            catalogue: Catalogue | None = None, endpoint: str | None = None, instance: str | None = None,
            host_region: str = "us-east-1", now: float | None = None) -> Report:
    """Fetch the fleet's history as of `at` over `lookback` seconds and recommend for every subject.

    Raises RightsizeError (one line) for a lookback beyond the store's retention or when no MLScope
    series are found."""
    policy = policy or Policy()
    catalogue = catalogue or Catalogue.load()
    if lookback < 3600:
        raise RightsizeError(f"--lookback {lookback:g}s is too short: rightsizing needs hours to weeks of history")
    retention = client.retention_seconds()
    if retention and lookback > retention:
        raise RightsizeError(f"--lookback {lookback / 86400:g}d is longer than the store's retention "
                             f"({retention / 86400:g}d): the oldest part of it is gone")
    histories = fetch(client, at, lookback, policy.percentiles(), endpoint=endpoint, instance=instance,
                      host_region=host_region)
    if not histories:
        what = " matching --endpoint/--instance" if endpoint or instance else ""
        raise RightsizeError(f"no MLScope series{what} at {client.url} in the {lookback / 86400:g}d before "
                             f"{_iso(at)}: is it the store the exporters are scraped into?")
    recs = [recommend(h, catalogue, policy) for h in histories]
    recs.sort(key=lambda r: (-r["estimated_monthly_savings_dollars"], r["kind"], r.get("endpoint", ""),
                             r.get("variant", ""), r.get("instance", "")))

    return Report(now if now is not None else time.time(), at, lookback, policy.profile, recs, client.queries,
                  policy.as_dict())
