"""One background poller per (account, region): inventory, CloudWatch, watermarks, then a cache snapshot.

Counter model (see docs/sagemaker-exporter.md):
- a period is *settled* once it ended more than `delay` seconds ago; `end` = end of the newest settled period;
- every counter series has a watermark; each cycle adds the Sum of the datapoints in [watermark, end) and
  moves the watermark to `end`, so each settled period is added exactly once, a missing period adds nothing;
- a failed query keeps its watermark: the next cycle fetches the gap (up to MAX_CATCH_UP);
- at start-up the first cycle only sets the watermarks (counters start at 0): a restart never replays
  periods that the previous process already counted, so there is no burst.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from botocore.exceptions import BotoCoreError, ClientError

from ..health import Health
from .aws import Aws, describe_error, error_code, is_credentials_error
from .cloudwatch import Query, fetch, settled_end
from .config import quantile_label
from .cost import PriceBook
from .discounts import Discounts
from .serverless import ServerlessPrices
from .sharing import split
from .inventory import QUIET_STATUSES, Endpoint, Inventory, Variant
from .listing import Listing, list_metrics
from .tags import LATENCY_OBJECTIVE

log = logging.getLogger(__name__)

SAGEMAKER_NS = "AWS/SageMaker"
INSTANCE_NS = "/aws/sagemaker/Endpoints"
COMPONENT_NS = "/aws/sagemaker/InferenceComponents"
MAX_CATCH_UP = 3 * 3600  # seconds of missed periods fetched after an outage; older ones are skipped
MAX_BACKOFF = 600.0      # seconds: the longest wait between tries while AWS keeps failing

# counter series -> (namespace, metric, stat, scale)
COUNTERS = {
    "invocations": (SAGEMAKER_NS, "Invocations", "Sum", 1.0),
    "invocation_4xx_errors": (SAGEMAKER_NS, "Invocation4XXErrors", "Sum", 1.0),
    "invocation_5xx_errors": (SAGEMAKER_NS, "Invocation5XXErrors", "Sum", 1.0),
    "invocation_model_errors": (SAGEMAKER_NS, "InvocationModelErrors", "Sum", 1.0),
    "model_latency_sum": (SAGEMAKER_NS, "ModelLatency", "Sum", 1e-6),          # microseconds -> seconds
    "model_latency_count": (SAGEMAKER_NS, "ModelLatency", "SampleCount", 1.0),
    "overhead_latency_sum": (SAGEMAKER_NS, "OverheadLatency", "Sum", 1e-6),
    "overhead_latency_count": (SAGEMAKER_NS, "OverheadLatency", "SampleCount", 1.0),
}
WITHIN_OBJECTIVE = "model_latency_within_objective"  # counter from TC(:objective in microseconds)
# inference components: the same counters, by InferenceComponentName (keys end with the component's name)
COMPONENT_COUNTERS = {f"component_{series}": spec for series, spec in COUNTERS.items()
                      if not series.startswith("overhead")}
# utilization normalised by CloudWatch to the component's reserved resources, 0-100
COMPONENT_UTILIZATION = {"cpu": "CPUUtilizationNormalized", "memory": "MemoryUtilizationNormalized",
                         "gpu": "GPUUtilizationNormalized", "gpu_memory": "GPUMemoryUtilizationNormalized"}
COUNTER_SERIES = {*COUNTERS, WITHIN_OBJECTIVE, *COMPONENT_COUNTERS}
SERVERLESS_COUNTERS = ("serverless_compute_seconds", "serverless_list_cost_dollars", "serverless_cost_dollars")
LATENCIES = {"model_latency": "ModelLatency", "overhead_latency": "OverheadLatency"}
DEFAULT_STATISTICS = ["p50", "p95", "p99"]
# asynchronous endpoints: gauge series -> (metric, stat, scale, per variant?); the backlog is per endpoint
ASYNC = {
    "async_backlog_size": ("ApproximateBacklogSize", "Average", 1.0, False),
    "async_backlog_without_capacity": ("HasBacklogWithoutCapacity", "Maximum", 1.0, False),
    "async_oldest_request_age_seconds": ("ApproximateAgeOfOldestRequest", "Maximum", 1.0, False),
    "async_time_in_backlog_seconds": ("TimeInBacklog", "Average", 1e-3, True),     # milliseconds -> seconds
}
# utilization gauge -> (metric, divisor kind): cpu per vCPU, gpu per GPU, others are 0-100 already
UTILIZATION = {
    "cpu": ("CPUUtilization", "vcpu"),
    "memory": ("MemoryUtilization", None),
    "disk": ("DiskUtilization", None),
    "gpu": ("GPUUtilization", "gpu"),
    "gpu_memory": ("GPUMemoryUtilization", "gpu"),
}


def within_stat(objective_seconds: float) -> str:
    """CloudWatch's trimmed count of ModelLatency samples <= the objective: TC(:<microseconds>)."""
    micros = f"{objective_seconds * 1e6:.3f}".rstrip("0").rstrip(".")
    return f"TC(:{micros})"


def backoff_delay(interval: float, failures: int, rng: random.Random) -> float:
    """Seconds until the next cycle after `failures` consecutive failed ones (0: the normal interval).

    Exponential with "equal jitter": the ceiling doubles with each failure (interval x 2^failures, capped at
    MAX_BACKOFF or the interval if that is longer), and the wait is drawn from its upper half, so pollers
    that failed together (an AWS outage) do not retry in lockstep. Never shorter than the interval.
    """
    if failures <= 0:
        return interval
    ceiling = min(interval * 2 ** min(failures, 32), max(MAX_BACKOFF, interval))
    return max(interval, ceiling * (0.5 + 0.5 * rng.random()))


@dataclass(frozen=True)
class Cost:
    instance_type: str
    list_hourly: float     # list price x instances
    hourly: float          # after the configured discount


@dataclass(frozen=True)
class Snapshot:
    """What a scrape reads: immutable, replaced as a whole at the end of each cycle."""
    region: str
    account: str = ""
    endpoints: tuple[Endpoint, ...] = ()
    counters: dict = field(default_factory=dict)     # (endpoint, variant, series) -> value
    gauges: dict = field(default_factory=dict)       # (endpoint, variant, series[, quantile]) -> value
    data_ts: dict = field(default_factory=dict)      # (endpoint, variant) -> end of newest settled period
    costs: dict = field(default_factory=dict)        # (endpoint, variant) -> Cost
    component_costs: dict = field(default_factory=dict)  # (endpoint, variant) -> {component: (share, $/hour)}


class Poller:
    def __init__(self, aws: Aws, inventory: Inventory, prices: PriceBook, health: Health, *,
                 poll_interval: float = 60.0, period: float = 60.0, delay: float = 180.0,
                 statistics: list[str] | None = None, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None, idle_after: float = 900.0, idle_poll_interval: float = 600.0,
                 list_metrics_interval: float = 600.0, discounts: Discounts | None = None,
                 serverless_prices: ServerlessPrices | None = None):
        self.aws = aws
        self.inventory = inventory
        self.prices = prices
        self.health = health
        self.name = aws.target.name
        self.region = aws.target.region
        self.poll_interval = poll_interval
        self.period = period
        self.delay = delay
        self.statistics = list(DEFAULT_STATISTICS if statistics is None else statistics)
        self.idle_after = idle_after                        # no Invocations this long: the variant is idle
        self.idle_poll_interval = max(idle_poll_interval, period)
        self.list_metrics_interval = list_metrics_interval  # 0: no ListMetrics, ask for every metric
        self.discounts = discounts or Discounts()
        self.serverless_prices = serverless_prices or ServerlessPrices()
        self.clock = clock
        self.rng = rng or random.Random()
        self.failures = 0                   # consecutive failed cycles
        self.next_delay = poll_interval     # seconds from the start of the last cycle to the next one
        self.account: str | None = aws.target.account  # from the role ARN, else STS GetCallerIdentity
        self.snapshot = Snapshot(self.region, self.account or "")
        self._watermarks: dict[tuple, float] = {}
        self._counters: dict[tuple, float] = {}
        self._gauges: dict[tuple, float] = {}
        self._gauge_end: dict[tuple, float] = {}
        self._data_ts: dict[tuple, float] = {}
        self._last_end: float | None = None
        self._last_traffic: dict[tuple, float] = {}  # variant -> end of its newest period with Invocations > 0
        self._slow_end: dict[tuple, float] = {}      # variant -> end of its last coarse utilization poll
        self._listed: Listing | None = None
        self._first_seen: dict[tuple, float] = {}    # variant -> when this exporter first saw it
        self._serverless_hourly: dict[tuple, tuple[float, float]] = {}  # variant -> (list, discounted) $/hour
        self._warned_prices: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        health.register(self.name)

    # ---- service ----
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"poller {self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.run_cycle()
            self._stop.wait(max(0.0, self.next_delay - (time.monotonic() - started)))

    # ---- one cycle ----
    def run_cycle(self) -> bool:
        t0 = time.perf_counter()
        try:
            ok = self._cycle()
        except Exception as exc:  # never let one cycle kill the thread, never print a traceback
            ok = False
            if not isinstance(exc, (ClientError, BotoCoreError)):  # AWS failures are counted per call
                self.aws.stats.count_error("cycle", error_code(exc))
            self._schedule(ok)
            log.error("%s: poll failed: %s; serving the last good values, next try in %.0fs",
                      self.name, describe_error(exc), self.next_delay)
            log.debug("%s: poll traceback", self.name, exc_info=True)
        else:
            self._schedule(ok)
        self.health.observe(self.name, ok, time.perf_counter() - t0)
        return ok

    def _schedule(self, ok: bool) -> None:
        """Any failed cycle (an exception, a throttled or failed call) backs off; a good one resets."""
        self.failures = 0 if ok else self.failures + 1
        self.next_delay = backoff_delay(self.poll_interval, self.failures, self.rng)

    def _series(self, endpoint: Endpoint, variant: Variant) -> list[tuple[str, Query, float]]:
        """(series, query, scale) for one variant; instance metrics only where they can be normalised."""
        dims = (("EndpointName", endpoint.name), ("VariantName", variant.name))
        out = [(s, Query((endpoint.name, variant.name, s), ns, m, st, dims,
                         "counts" if m.startswith("Invocation") else "latency_counters"), scale)
               for s, (ns, m, st, scale) in COUNTERS.items()]
        objective = endpoint.number(LATENCY_OBJECTIVE)
        if objective is not None:
            key = (endpoint.name, variant.name, WITHIN_OBJECTIVE)
            out.append((WITHIN_OBJECTIVE, Query(key, SAGEMAKER_NS, "ModelLatency", within_stat(objective), dims,
                                                "latency_objective"), 1.0))
        for series, metric in LATENCIES.items():
            for stat in self.statistics:
                key = (endpoint.name, variant.name, series, quantile_label(stat))
                out.append((series, Query(key, SAGEMAKER_NS, metric, stat, dims, "percentiles"), 1e-6))
        for component in endpoint.components:
            if component.variant != variant.name:
                continue
            cdims = (("InferenceComponentName", component.name),)
            for series, (ns, metric, stat, scale) in COMPONENT_COUNTERS.items():
                key = (endpoint.name, variant.name, series, component.name)
                out.append((series, Query(key, ns, metric, stat, cdims, "inference_components"), scale))
            for name, metric in COMPONENT_UTILIZATION.items():
                key = (endpoint.name, variant.name, f"component_{name}_utilization", component.name)
                out.append((key[2], Query(key, COMPONENT_NS, metric, "Average", cdims, "utilization"), 0.01))
        if endpoint.asynchronous:
            endpoint_dims = (("EndpointName", endpoint.name),)
            for series, (metric, stat, scale, per_variant) in ASYNC.items():
                if per_variant or variant == endpoint.variants[0]:  # endpoint-level ones ride on the first variant
                    key = (endpoint.name, variant.name, series)
                    out.append((series, Query(key, SAGEMAKER_NS, metric, stat, dims if per_variant else endpoint_dims,
                                              "async"), scale))
        spec = self.prices.spec(variant.instance_type)
        if not variant.serverless and spec is not None:
            for series, (metric, per) in UTILIZATION.items():
                count = {"vcpu": spec.vcpu, "gpu": spec.gpu, None: 1}[per]
                if count > 0:
                    key = (endpoint.name, variant.name, series)
                    out.append((series, Query(key, INSTANCE_NS, metric, "Average", dims, "utilization"),
                                1 / (100 * count)))
        return out

    def _identify(self) -> str:
        """The account these credentials belong to (once; GetCallerIdentity needs no IAM permission)."""
        if self.account is None:
            self.account = str(self.aws.call("sts", "GetCallerIdentity")["Account"])
        return self.account

    def _listing(self, now: float, endpoints: list[Endpoint]) -> Listing | None:
        """The cached ListMetrics pass, refreshed every `list_metrics_interval` (None: listing off or failing),
        and at every poll while a variant seen for the first time less than that ago has nothing listed yet
        (a new endpoint, or the exporter's start racing the first metrics), so that it is not ignored for long."""
        if not self.list_metrics_interval:
            return None
        for endpoint in endpoints:
            for variant in endpoint.variants:
                self._first_seen.setdefault((endpoint.name, variant.name), now)
        listed = self._listed
        known = listed.variants() if listed is not None else set()
        unlisted_new = listed is not None and any(
            now - seen < self.list_metrics_interval and vkey not in known for vkey, seen in self._first_seen.items())
        if (listed is None or now - listed.taken_at >= self.list_metrics_interval
                or (unlisted_new and now - listed.taken_at >= self.poll_interval)):
            fresh = list_metrics(self.aws, (SAGEMAKER_NS, INSTANCE_NS, COMPONENT_NS), now)
            self._listed = fresh  # a failed pass drops the old one: ask for everything until one works
        return self._listed

    def _cycle(self) -> bool:
        now = self.clock()
        end = settled_end(now, self.delay, self.period)
        account = self._identify()
        endpoints, problems = self.inventory.refresh()
        self._forget(endpoints)
        listing = self._listing(now, endpoints)
        cycle = _Cycle(self, end, listing)
        for endpoint in endpoints:
            if endpoint.status not in QUIET_STATUSES:
                for variant in endpoint.variants:
                    cycle.plan(endpoint, variant)
        cycle.run_phase(cycle.first)     # counters (idle variants: Invocations only), coarse utilization
        cycle.plan_gauges()
        cycle.run_phase(cycle.second)    # percentiles and utilization where there was traffic; wake-up catch-up
        cycle.finish()
        for endpoint in endpoints:  # new series show 0 from the start, so increase() sees their first period
            for variant in endpoint.variants:
                for series in COUNTER_SERIES:
                    key = (endpoint.name, variant.name, series)
                    if key in self._watermarks:
                        self._counters.setdefault(key, 0.0)
        self._last_end = end
        costs = self._costs(endpoints)
        shared = {}
        for endpoint in endpoints:
            for variant in endpoint.variants:
                cost = costs.get((endpoint.name, variant.name))
                mine = [c for c in endpoint.components if c.variant == variant.name]
                if cost is not None and mine:
                    shared[(endpoint.name, variant.name)] = split(cost.hourly, variant.current_instances or 0,
                                                                  self.prices.spec(variant.instance_type), mine)
        self.snapshot = Snapshot(self.region, account, tuple(endpoints), dict(self._counters), dict(self._gauges),
                                 dict(self._data_ts), costs, shared)
        return problems == 0 and cycle.ok

    def _forget(self, endpoints: list[Endpoint]) -> None:
        """Drop the state of variants and inference components that are gone."""
        live = {(e.name, v.name) for e in endpoints for v in e.variants}
        components = {(e.name, c.variant, c.name) for e in endpoints for c in e.components}

        def gone(key: tuple) -> bool:
            if key[:2] not in live:
                return True
            return len(key) > 3 and str(key[2]).startswith("component_") and (key[0], key[1], key[3]) not in components

        for store in (self._watermarks, self._counters, self._gauges, self._gauge_end, self._data_ts,
                      self._last_traffic, self._slow_end, self._first_seen, self._serverless_hourly):
            for key in [k for k in store if gone(k)]:
                del store[key]

    def _costs(self, endpoints: list[Endpoint]) -> dict:
        costs = {}
        for endpoint in endpoints:
            for variant in endpoint.variants:
                serverless = self._serverless_hourly.get((endpoint.name, variant.name))
                if variant.serverless and serverless is not None:
                    costs[(endpoint.name, variant.name)] = Cost("serverless", *serverless)
                if variant.serverless or not variant.instance_type or variant.current_instances is None:
                    continue
                price = self.prices.hourly_price(variant.instance_type, self.region)
                if price is None:
                    self.aws.stats.count("price_missing", variant.instance_type)
                    if variant.instance_type not in self._warned_prices:
                        self._warned_prices.add(variant.instance_type)
                        log.warning("%s: no price for %s in %s: no cost series for it (add it under prices:)",
                                    self.name, variant.instance_type, self.region)
                    continue
                listed = price * variant.current_instances
                rate = self.discounts.rate(variant.instance_type, self.account)
                costs[(endpoint.name, variant.name)] = Cost(variant.instance_type, listed, listed * (1 - rate))
        return costs


class _Cycle:
    """One poll cycle's queries in two phases, and what their answers change.

    Phase 1: the counters of every variant with traffic; only Invocations for idle variants (no Invocations
    for `idle_after`), whose other counters keep their watermark and are caught up exactly every
    `idle_poll_interval` or as soon as Invocations shows traffic; utilization averaged over
    `idle_poll_interval` for variants without traffic, every `idle_poll_interval`.
    Phase 2: percentiles and utilization of the newest window, only for variants that had traffic in it,
    and the held counters of idle variants that woke up.
    A metric that the ListMetrics pass did not list is not asked for: its counters' watermarks move to the
    end of the periods that had settled when the listing was taken (they are known to be empty).
    """

    def __init__(self, poller: Poller, end: float, listing: Listing | None):
        self.p = poller
        self.end = end
        self.listing = listing
        self.listed_end = settled_end(listing.taken_at, poller.delay, poller.period) if listing else None
        self.first_start = poller._last_end if poller._last_end is not None else end
        self.gauge_start = end - poller.period * max(1, math.ceil(poller.poll_interval / poller.period))
        self.first: list[tuple[float, float, Query]] = []     # (start, period, query)
        self.second: list[tuple[float, float, Query]] = []
        self.scales: dict = {}
        self.held: dict[tuple, list[Query]] = {}            # variant -> counters not asked for in phase 1
        self.gauges: dict[tuple, list[Query]] = {}          # variant -> percentile and utilization queries
        self.asked: dict[tuple, list] = {}                  # variant -> keys asked for (for data_ts)
        self.variants: list[tuple] = []
        self.traffic: dict[tuple, str] = {}                 # variant -> the counter that shows its traffic
        self.serverless: dict[tuple, float] = {}            # serverless variant -> memory in GB
        self.slow_due: set[tuple] = set()                   # variants due for their idle_poll_interval poll
        self.slow: set[tuple] = set()                       # variants whose coarse utilization was asked for
        self.points: dict = {}
        self.failed: set = set()
        self.stopped: BaseException | None = None
        self.ok = True
        self.skipped = 0

    def _exists(self, query: Query, vkey: tuple) -> bool:
        if self.listing is None:
            return True
        return self.listing.has(query.namespace, query.metric, query.dimensions)

    def _ask(self, phase: list, start: float, period: float, query: Query, vkey: tuple) -> None:
        phase.append((start, period, query))
        self.asked.setdefault(vkey, []).append(query.key)

    def plan(self, endpoint: Endpoint, variant: Variant) -> None:
        p, end = self.p, self.end
        vkey = (endpoint.name, variant.name)
        last_traffic = p._last_traffic.setdefault(vkey, end)
        # asynchronous endpoints publish no Invocations: their traffic is ModelLatency's SampleCount
        traffic = self.traffic[vkey] = "model_latency_count" if endpoint.asynchronous else "invocations"
        idle = end - last_traffic >= p.idle_after
        slow_due = end - p._slow_end.get(vkey, -math.inf) >= p.idle_poll_interval
        for series, query, scale in p._series(endpoint, variant):
            self.scales[query.key] = scale
            if series not in COUNTER_SERIES:
                self.gauges.setdefault(vkey, []).append(query)
                continue
            wm = p._watermarks.setdefault(query.key, self.first_start)
            p._counters.setdefault(query.key, 0.0)  # shown at 0 from the start, so increase() sees the first period
            if wm < end - MAX_CATCH_UP:
                self.skipped += int((end - MAX_CATCH_UP - wm) // p.period)
                wm = p._watermarks[query.key] = end - MAX_CATCH_UP
            if not self._exists(query, vkey):
                if self.listed_end is not None:
                    p._watermarks[query.key] = max(wm, min(end, self.listed_end))
                continue
            if wm >= end:
                continue
            if series == traffic or not idle or slow_due:
                self._ask(self.first, wm, p.period, query, vkey)
            else:
                self.held.setdefault(vkey, []).append(query)
        self.variants.append(vkey)
        if variant.serverless_config is not None:
            self.serverless[vkey] = variant.serverless_config.memory_mb / 1024
        if slow_due:
            self.slow_due.add(vkey)

    def run_phase(self, items: list[tuple[float, float, Query]]) -> None:
        p = self.p
        groups: dict[tuple[float, float], list[Query]] = {}
        for start, period, query in items:
            groups.setdefault((start, period), []).append(query)
        for (start, period), queries in sorted(groups.items()):
            if self.stopped is not None:  # after a failed call (throttling, outage), don't pile on: next cycle
                self.failed.update(q.key for q in queries)
                continue
            result = fetch(p.aws, queries, start, self.end, period)
            self.stopped = result.error
            if result.problems:
                self.ok = False
            self.failed |= result.failed
            for query in queries:
                if query.key not in result.failed:
                    self._apply(query, result.values.get(query.key, []))
            if result.error is not None and is_credentials_error(result.error):
                raise result.error

    def _apply(self, query: Query, points: list[tuple[float, float]]) -> None:
        p, key, end = self.p, query.key, self.end
        scale = self.scales[key]
        if key[2] in COUNTER_SERIES:
            wm = p._watermarks[key]
            fresh = [(ts, v) for ts, v in points if wm <= ts < end]   # the periods counted now, once
            p._counters[key] = p._counters.get(key, 0.0) + sum(v for _, v in fresh) * scale
            p._watermarks[key] = end
            if key[2] == self.traffic.get(key[:2]):
                traffic = [ts for ts, v in fresh if v > 0]
                if traffic:
                    vkey = key[:2]
                    p._last_traffic[vkey] = max(p._last_traffic.get(vkey, 0.0), max(traffic) + p.period)
            self.points[key] = (wm, fresh)
            return
        newest = [v for ts, v in points if ts < end]
        if newest:
            p._gauges[key] = newest[-1] * scale
        else:
            p._gauges.pop(key, None)  # no datapoint in the newest settled periods

    def plan_gauges(self) -> None:
        """After phase 1: which variants had traffic in the newest window, and so which gauges to ask for."""
        p, end = self.p, self.end
        for vkey in self.variants:
            _, fresh = self.points.get(vkey + (self.traffic[vkey],), (end, []))
            traffic = any(v > 0 and self.gauge_start <= ts < end for ts, v in fresh)
            for query in self.held.get(vkey, []) if traffic else []:
                self._ask(self.second, p._watermarks[query.key], p.period, query, vkey)  # woke up: catch up
            if p._gauge_end.get(vkey) == end:
                continue  # this settled end was already done (a second poll within one period)
            for query in self.gauges.get(vkey, []):
                listed = self._exists(query, vkey)
                if listed and (traffic or query.kind == "async"):  # the backlog matters most without traffic
                    self._ask(self.second, self.gauge_start, p.period, query, vkey)
                elif query.kind == "utilization" and vkey in self.slow_due and listed:
                    coarse = p.idle_poll_interval  # no traffic: averaged over the coarse interval, kept till next
                    self._ask(self.second, end - coarse, coarse, query, vkey)
                    self.slow.add(vkey)
                elif query.kind != "utilization" or traffic or vkey in self.slow_due:
                    p._gauges.pop(query.key, None)  # nothing to show for this window: absent, not stale

    def _serverless_compute(self) -> None:
        """Billed compute of serverless variants, from the periods counted this cycle (see serverless.py)."""
        p = self.p
        for vkey, memory_gb in self.serverless.items():
            for series in SERVERLESS_COUNTERS:  # shown at 0 from the start, like the other counters
                p._counters.setdefault(vkey + (series,), 0.0)
            total, count = vkey + ("model_latency_sum",), vkey + ("model_latency_count",)
            if total not in self.points or count not in self.points:
                continue  # not asked for, or failed: nothing counted this cycle
            (since, sums), (_, counts) = self.points[total], self.points[count]
            rate = p.discounts.rate("serverless", p.account)
            billed = p.serverless_prices.bill(dict(sums), dict(counts), memory_gb)
            for series, amount in zip(SERVERLESS_COUNTERS, (billed.seconds, billed.dollars,
                                                             billed.dollars * (1 - rate))):
                p._counters[vkey + (series,)] = p._counters.get(vkey + (series,), 0.0) + amount
            if self.end > since:
                hourly = billed.dollars * 3600 / (self.end - since)
                p._serverless_hourly[vkey] = (hourly, hourly * (1 - rate))

    def finish(self) -> None:
        p = self.p
        self._serverless_compute()
        if self.skipped:
            log.warning("%s: %d periods older than %ds were not fetched after an outage; counters skip them",
                        p.name, self.skipped, MAX_CATCH_UP)
        for vkey, keys in self.asked.items():
            if not any(k in self.failed for k in keys):
                p._data_ts[vkey] = self.end
                p._gauge_end[vkey] = self.end
                if vkey in self.slow:
                    p._slow_end[vkey] = self.end
        for vkey in self.variants:
            if vkey not in self.asked:
                p._data_ts[vkey] = self.end  # nothing to ask (nothing listed, all caught up): data is current
            if vkey in self.slow_due and vkey not in self.slow and not any(
                    k in self.failed for k in self.asked.get(vkey, [])):
                p._slow_end[vkey] = self.end
