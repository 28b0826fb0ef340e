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
import random
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from botocore.exceptions import BotoCoreError, ClientError

from ..health import Health
from ..spec import BackgroundLoop
from .aws import Aws, describe_error, error_code
from .cloudwatch import FetchResult, Query, fetch, settled_end
from .config import DEFAULT_STATISTICS_RATE, quantile_label
from .cost import PriceBook
from .cycle import MAX_CATCH_UP, Cycle
from .discounts import Discounts
from .inventory import QUIET_STATUSES, Endpoint, Inventory, Variant
from .listing import Listing, list_metrics
from .metric_statistics import RateLimiter
from .serverless import ServerlessPrices
from .series import (ASYNC, COMPONENT_COUNTERS, COMPONENT_NS, COMPONENT_UTILIZATION, COUNTER_SERIES, COUNTERS,
                     SPILLOVER, SPILLOVER_METRIC,
                     DEFAULT_STATISTICS, INSTANCE_NS, LATENCIES, SAGEMAKER_NS, UTILIZATION, WITHIN_OBJECTIVE,
                     within_stat)
from .sharing import split
from .stream import StreamSource
from .tags import LATENCY_OBJECTIVE

log = logging.getLogger(__name__)

MAX_BACKOFF = 600.0      # seconds: the longest wait between tries while AWS keeps failing


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


class Poller(BackgroundLoop):
    def __init__(self, aws: Aws, inventory: Inventory, prices: PriceBook, health: Health, *,
                 poll_interval: float = 60.0, period: float = 60.0, delay: float = 180.0,
                 statistics: list[str] | None = None, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None, idle_after: float = 900.0, idle_poll_interval: float = 600.0,
                 list_metrics_interval: float = 600.0, discounts: Discounts | None = None,
                 serverless_prices: ServerlessPrices | None = None, statistics_api: str = "auto",
                 max_statistics_per_second: float = DEFAULT_STATISTICS_RATE):
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
        # a metric stream's S3 objects answer the queries instead of GetMetricData (stream.py); no listing needed
        source = aws.target.metric_stream
        self.stream = StreamSource(aws, source.bucket, source.prefix, clock) if source is not None else None
        if self.stream is not None:
            self.list_metrics_interval = 0
        self.discounts = discounts or Discounts()
        self.serverless_prices = serverless_prices or ServerlessPrices()
        self.statistics_api = statistics_api                # auto: GetMetricStatistics where it bills less
        self.max_statistics_per_second = max_statistics_per_second
        self.statistics_limiter = RateLimiter(max_statistics_per_second)
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
        self._first_seen: dict[frozenset, float] = {}  # variant or component dimensions -> when first seen
        self._serverless_hourly: dict[tuple, tuple[float, float]] = {}  # variant -> (list, discounted) $/hour
        self._provisioned_end: dict[tuple, float] = {}  # variant -> end of the time its provisioned concurrency is billed
        self._warned_prices: set[str] = set()
        super().__init__(f"poller {self.name}")
        health.register(self.name)

    # ---- service ----
    def _run(self) -> None:
        self._repeat(self.run_cycle, lambda: self.next_delay)

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

    def statistics_budget(self) -> int | None:
        """GetMetricStatistics requests one cycle may make: what fits in the poll interval at the rate cap
        (None: GetMetricData only)."""
        if self.statistics_api != "auto":
            return None
        return int(min(self.max_statistics_per_second * self.poll_interval + 1e-9, 1e9))

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
        if variant.serverless_config is not None and variant.serverless_config.provisioned_concurrency:
            ns, metric, stat, scale = SPILLOVER_METRIC
            out.append((SPILLOVER, Query((endpoint.name, variant.name, SPILLOVER), ns, metric, stat, dims, "counts"),
                        scale))
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
        if self.aws.target.owning_account:  # a linked source account's metrics, read in the monitoring account
            out = [(series, replace(query, account_id=self.aws.target.owning_account), scale)
                   for series, query, scale in out]
        return out

    def fetch(self, queries: list[Query], start: float, end: float, period: float) -> FetchResult:
        """The datapoints of [start, end): from the metric stream when there is one, else GetMetricData."""
        if self.stream is not None:
            return self.stream.fetch(self.account or "", queries, start, end, period)
        return fetch(self.aws, queries, start, end, period)

    def _identify(self) -> str:
        """The account these credentials belong to (once; GetCallerIdentity needs no IAM permission)."""
        if self.account is None:
            self.account = str(self.aws.call("sts", "GetCallerIdentity")["Account"])
        return self.account

    def _listing(self, now: float, endpoints: list[Endpoint]) -> Listing | None:
        """The cached ListMetrics pass, refreshed every `list_metrics_interval` (None: listing off or failing),
        and at every poll while a variant or inference component seen for the first time less than that ago has
        nothing listed yet (a new endpoint, or the exporter's start racing the first metrics), so that it is not
        ignored for long."""
        if not self.list_metrics_interval:
            return None
        sources = [frozenset({("EndpointName", e.name), ("VariantName", v.name)}) for e in endpoints
                   for v in e.variants]
        sources += [frozenset({("InferenceComponentName", c.name)}) for e in endpoints for c in e.components]
        self._first_seen = {source: self._first_seen.get(source, now) for source in sources}
        listed = self._listed
        known = listed.dimension_sets() if listed is not None else set()
        unlisted_new = listed is not None and any(
            now - seen < self.list_metrics_interval and source not in known
            for source, seen in self._first_seen.items())
        if (listed is None or now - listed.taken_at >= self.list_metrics_interval
                or (unlisted_new and now - listed.taken_at >= self.poll_interval)):
            fresh = list_metrics(self.aws, (SAGEMAKER_NS, INSTANCE_NS, COMPONENT_NS), now)
            self._listed = fresh  # a failed pass drops the old one: ask for everything until one works
        return self._listed

    def _cycle(self) -> bool:
        now = self.clock()
        end = settled_end(now, self.delay, self.period)
        account = self._identify()
        if self.stream is not None:
            self.stream.read(now)
        endpoints, problems = self.inventory.refresh()
        self._forget(endpoints)
        listing = self._listing(now, endpoints)
        cycle = Cycle(self, end, listing)
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
                      self._last_traffic, self._slow_end, self._serverless_hourly, self._provisioned_end):
            for key in [k for k in store if gone(k)]:
                del store[key]

    def _serverless_cost(self, endpoint: Endpoint, variant: Variant) -> Cost | None:
        """$/hour of a serverless variant: its newest counted periods' compute, plus its provisioned concurrency
        (a constant, shown from the start)."""
        list_hourly, hourly = self._serverless_hourly.get((endpoint.name, variant.name), (None, None))
        sls = variant.serverless_config
        if sls is not None and sls.provisioned_concurrency:
            warm = self.serverless_prices.provisioned(sls.provisioned_concurrency, sls.memory_mb / 1024, 3600)
            rate = self.discounts.rate("serverless", self.account)
            list_hourly, hourly = (list_hourly or 0.0) + warm, (hourly or 0.0) + warm * (1 - rate)
        return None if list_hourly is None else Cost("serverless", list_hourly, hourly)

    def _costs(self, endpoints: list[Endpoint]) -> dict:
        costs = {}
        for endpoint in endpoints:
            for variant in endpoint.variants:
                if variant.serverless:
                    cost = self._serverless_cost(endpoint, variant)
                    if cost is not None:
                        costs[(endpoint.name, variant.name)] = cost
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
