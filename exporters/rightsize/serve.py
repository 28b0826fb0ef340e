"""`mlscope rightsize --serve`: the analysis every --interval, in the background, served as metrics.

The exporter runtime (mlscope/cli.py) serves /metrics with TLS, basic auth and the mlscope_collector_*
self-metrics; a scrape only reads the last finished report and never queries Prometheus. Every value is
the JSON report's own number (docs/rightsizing.md), so `--format json` and the metrics always agree.
A failed run (Prometheus unreachable, unauthorised, too slow...) counts in mlscope_rightsizing_errors_total,
logs one line, and the last good report stays served.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..cli import serve_exporter
from ..health import Health
from ..prices import PriceTableError
from ..settings import Config, SettingError
from ..spec import BackgroundLoop, ExporterSpec, Parts

log = logging.getLogger(__name__)

COLLECTOR = "rightsizer"
# A failed run is retried sooner than --interval: after 10 s, then twice as long each time, at most 5 minutes
# (a store that is still starting answers soon; one that is down is not hammered).
FIRST_RETRY, LAST_RETRY = 10.0, 300.0
# Every subject series carries all six labels; those that do not apply are "" (endpoints have no instance,
# hosts no endpoint/variant), so one PromQL `on (...)` joins them all.
SUBJECT = ("kind", "account", "region", "endpoint", "variant", "instance")

Report = dict[str, Any]
Analyse = Callable[[float], tuple[Report, int]]  # one run as of a time: (the JSON report, queries it sent)


def subject_labels(rec: dict) -> list[str]:
    return [str(rec.get(key) or "") for key in SUBJECT]


@dataclass(frozen=True)
class Result:
    """The last good run: immutable, replaced as a whole."""

    report: Report
    at: float         # Unix time the report analyses up to (its run's start)
    duration: float   # seconds
    queries: int


class Rightsizer(BackgroundLoop):
    """The background service: runs the analysis now, then every `interval`; keeps the last good result."""

    def __init__(self, analyse: Analyse, health: Health, interval: float, clock: Callable[[], float] = time.time):
        self.analyse = analyse
        self.health = health
        self.interval = interval
        self.clock = clock
        self.result: Result | None = None
        self.errors = 0
        super().__init__("rightsizer")
        health.register(COLLECTOR)

    def _run(self) -> None:
        retry = FIRST_RETRY
        while not self._stop.is_set():
            if self.run_once():
                retry = FIRST_RETRY
                self._stop.wait(self.interval)
            else:
                self._stop.wait(min(self.interval, retry))
                retry = min(2 * retry, LAST_RETRY)

    def run_once(self) -> bool:
        started = time.perf_counter()
        at = self.clock()
        try:
            report, queries = self.analyse(at)
        except Exception as exc:  # one line, never a traceback; the last good report stays served
            self.errors += 1
            self.health.observe(COLLECTOR, False, time.perf_counter() - started)
            kept = (f"serving the report of {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(self.result.at))}"
                    if self.result else "nothing to serve yet")
            log.error("rightsizing run failed: %s; %s", _one_line(exc), kept)
            log.debug("rightsizing run traceback", exc_info=True)
            return False
        duration = time.perf_counter() - started
        self.result = Result(report, at, duration, queries)
        self.health.observe(COLLECTOR, True, duration)
        log.info("rightsized %d subjects in %.1fs (%d queries)", len(report.get("recommendations", [])),
                 duration, queries)
        return True


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class RightsizingCollector(Collector):
    """Turns the last good report into mlscope_rightsizing_* families. Never runs the analysis."""

    def __init__(self, service: Rightsizer):
        self.service = service

    def describe(self) -> Iterable[Metric]:
        return []

    def cache_key(self) -> tuple:
        """The HTTP layer re-encodes only when a run finished or failed."""
        return id(self.service.result), self.service.errors

    def collect(self) -> Iterable[Metric]:
        result = self.service.result
        errors = CounterMetricFamily("mlscope_rightsizing_errors", "Rightsizing runs that failed (the last good "
                                     "report stays served).")
        errors.add_metric([], self.service.errors)
        yield errors
        if result is not None:
            yield from families(result)


def families(result: Result) -> list[Metric]:
    """The metric families of one report (pure: the tests feed it reports)."""
    report = result.report
    subj = list(SUBJECT)

    def gauge(name: str, doc: str, extra: Sequence[str] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"mlscope_rightsizing_{name}", doc, labels=subj + list(extra))

    finding = gauge("finding", "1 for the subject's finding (Overprovisioned, Underprovisioned, Optimized, Idle, "
                    "InsufficientData).", ["finding"])
    savings = gauge("estimated_monthly_savings_dollars", "USD per month (730 h) the subject would save: the "
                    "report's estimated_monthly_savings_dollars; for an Underprovisioned subject its rank-1 "
                    "option's (negative: it costs more). instance_type is the rank-1 option's type.",
                    ["instance_type"])
    recommended = gauge("recommended_instances", "Instance count of the rank-1 option.", ["instance_type"])
    recommended_cost = gauge("recommended_hourly_cost_dollars", "What the rank-1 option costs per hour, all of its "
                             "instances, in USD.", ["instance_type"])
    risk = gauge("performance_risk", "Performance risk of the rank-1 option: 0 (ample headroom) to 4 (the "
                 "projected peak reaches its capacity).", ["instance_type"])
    projected = gauge("projected_utilization_ratio", "Projected peak utilization of the rank-1 option, per "
                      "resource, 0-1.", ["instance_type", "resource"])
    current_cost = gauge("current_hourly_cost_dollars", "What the subject costs per hour today, all of its "
                         "instances, in USD (from the exporters' cost series).", ["instance_type"])
    current_instances = gauge("current_instances", "Instances the subject runs today.", ["instance_type"])
    utilization = gauge("utilization_ratio", "Observed utilization over the lookback: a statistic (p50, p95, "
                        "p99, max) of the 5-minute maxima, per resource, 0-1.", ["resource", "statistic"])
    history = gauge("history_seconds", "History the subject's finding rests on.")
    target = gauge("autoscaling_target_invocations_per_instance", "Recommended target value for "
                   "SageMakerVariantInvocationsPerInstance (invocations per instance per minute).")
    min_capacity = gauge("autoscaling_min_instances", "Recommended auto-scaling minimum capacity.")
    max_capacity = gauge("autoscaling_max_instances", "Recommended auto-scaling maximum capacity.")
    for rec in report.get("recommendations", []):
        labels = subject_labels(rec)
        finding.add_metric(labels + [str(rec.get("finding", ""))], 1)
        current = rec.get("current") or {}
        current_type = str(current.get("instance_type") or "")
        _add(current_cost, labels + [current_type], current.get("hourly_cost_dollars"))
        _add(current_instances, labels + [current_type], current.get("instances"))
        options = rec.get("options") or []
        best = min(options, key=lambda o: o.get("rank", 0)) if options else {}
        best_type = str(best.get("instance_type") or current_type)
        saved = rec.get("estimated_monthly_savings_dollars", 0.0)
        if rec.get("finding") == "Underprovisioned" and best:
            saved = best.get("estimated_monthly_savings_dollars")
        _add(savings, labels + [best_type], saved)
        _add(recommended, labels + [best_type], best.get("instances"))
        _add(recommended_cost, labels + [best_type], best.get("hourly_cost_dollars"))
        _add(risk, labels + [best_type], best.get("performance_risk"))
        for resource, ratio in sorted((best.get("projected_utilization") or {}).items()):
            _add(projected, labels + [best_type, resource], ratio)
        for resource, stats in sorted((rec.get("utilization") or {}).items()):
            for statistic, ratio in sorted((stats or {}).items()):
                _add(utilization, labels + [resource, statistic], ratio)
        _add(history, labels, None if rec.get("history_hours") is None else rec["history_hours"] * 3600)
        scaling = rec.get("autoscaling") or {}
        _add(target, labels, scaling.get("target_value"))
        if scaling.get("target_value") is not None:
            _add(min_capacity, labels, scaling.get("min_capacity"))
            _add(max_capacity, labels, scaling.get("max_capacity"))

    settings = report.get("settings") or {}
    upper = GaugeMetricFamily("mlscope_rightsizing_target_utilization_ratio", "The profile's target: a subject "
                              "whose demand statistic (with headroom) is above it is Underprovisioned.")
    _add(upper, [], settings.get("target_utilization"))
    lower = GaugeMetricFamily("mlscope_rightsizing_overprovisioned_below_ratio", "Demand statistic under this "
                              "(overprovisioned_below x target) makes a resource over-provisioned.")
    if settings.get("target_utilization") is not None and settings.get("overprovisioned_below") is not None:
        lower.add_metric([], settings["target_utilization"] * settings["overprovisioned_below"])
    last = GaugeMetricFamily("mlscope_rightsizing_last_run_timestamp_seconds",
                             "Unix time the served report analyses up to: the start of the last successful run "
                             "(`mlscope rightsize --at` this value gives the same report).")
    last.add_metric([], result.at)
    duration = GaugeMetricFamily("mlscope_rightsizing_last_run_duration_seconds",
                                 "How long the served report's run took.")
    duration.add_metric([], result.duration)
    queries = GaugeMetricFamily("mlscope_rightsizing_last_run_queries",
                                "PromQL queries the served report's run sent (independent of the fleet's size).")
    queries.add_metric([], result.queries)
    lookback = GaugeMetricFamily("mlscope_rightsizing_lookback_seconds", "History each run reads.")
    _add(lookback, [], report.get("lookback_seconds"))
    return [finding, savings, recommended, recommended_cost, risk, projected, current_cost, current_instances,
            utilization, history, target, min_capacity, max_capacity, upper, lower, last, duration, queries,
            lookback]


def _add(family: GaugeMetricFamily, labels: list[str], value: Any) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        family.add_metric(labels, float(value))


# --------------------------------------------------------------------------- the runtime

def build(cfg: Config, health: Health) -> Parts:
    """Check the settings once at start-up (exit 2 on a bad one); the runs happen in the background."""
    from .cli import Catalogue, RightsizeError, client_from, run_once  # the one-shot CLI's settings path

    if cfg.at is not None:
        raise SettingError("--at: the server analyses up to now at every run; use --at without --serve")
    try:
        client_from(cfg)
        Catalogue.load(cfg.catalogue, cfg.prices)
    except RightsizeError as exc:
        raise SettingError(str(exc)) from None
    except PriceTableError as exc:
        raise SettingError(f"--catalogue: {exc}") from None

    def analyse(at: float) -> tuple[Report, int]:
        report = run_once(cfg, at=at)
        return report.as_dict(), report.queries

    service = Rightsizer(analyse, health, cfg.interval)
    return Parts(direct=[RightsizingCollector(service)], services=[service])


SPEC = ExporterSpec(command="rightsize --serve", title="Rightsizer", default_port=9859, settings=[], build=build)


def run(cfg: Config) -> int:
    """`mlscope rightsize --serve`, with the settings the CLI resolved (listen, web_config, interval...)."""
    return serve_exporter(SPEC, cfg)
