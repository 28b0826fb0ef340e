"""One poll cycle of a Poller: which queries to send, in two phases, and what their answers change."""

from __future__ import annotations

import logging
import math
from functools import partial
from typing import TYPE_CHECKING, Callable

from .aws import is_credentials_error
from .cloudwatch import FetchResult, Query, fetch, settled_end
from .metric_statistics import fetch as fetch_statistics
from .metric_statistics import plan as statistics_plan
from .inventory import Endpoint, Variant
from .listing import Listing
from .series import COUNTER_SERIES, SERVERLESS_COUNTERS, SPILLOVER

if TYPE_CHECKING:
    from .poller import Poller

log = logging.getLogger(__name__)

MAX_CATCH_UP = 3 * 3600  # seconds of missed periods fetched after an outage; older ones are skipped


class Cycle:
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

    def __init__(self, poller: "Poller", end: float, listing: Listing | None):
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
        self.serverless: dict[tuple, tuple[float, int]] = {}  # serverless variant -> (memory GB, provisioned)
        self.slow_due: set[tuple] = set()                   # variants due for their idle_poll_interval poll
        self.slow: set[tuple] = set()                       # variants whose coarse utilization was asked for
        self.points: dict = {}
        self.failed: set = set()
        self.stopped: BaseException | None = None
        self.ok = True
        self.skipped = 0
        # GetMetricStatistics requests that fit in one poll interval at the rate cap; None: GetMetricData only
        self.statistics_left = poller.statistics_budget()
        self.overflow = 0                                   # requests that did not fit: sent by GetMetricData

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
            sls = variant.serverless_config
            self.serverless[vkey] = (sls.memory_mb / 1024, sls.provisioned_concurrency)
        if slow_due:
            self.slow_due.add(vkey)

    def run_phase(self, items: list[tuple[float, float, Query]]) -> None:
        p = self.p
        groups: dict[tuple[float, float], list[Query]] = {}
        for start, period, query in items:
            groups.setdefault((start, period), []).append(query)
        for (start, period), queries in sorted(groups.items()):
            requests, rest, overflow = statistics_plan(queries, start, self.end, period, self.statistics_left)
            if self.statistics_left is not None:
                self.statistics_left -= len(requests)
            self.overflow += overflow
            self._take(rest, partial(fetch, p.aws, rest, start, self.end, period))
            self._take([q for r in requests for q in r],
                       partial(fetch_statistics, p.aws, requests, start, self.end, period, p.statistics_limiter))

    def _take(self, queries: list[Query], fetcher: Callable[[], FetchResult]) -> None:
        """Fetch (unless a call already failed this cycle: don't pile on, next cycle) and apply the answers."""
        if not queries:
            return
        if self.stopped is not None:  # after a failed call (throttling, outage), don't pile on: next cycle
            self.failed.update(q.key for q in queries)
            return
        result = fetcher()
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
        rate = p.discounts.rate("serverless", p.account)
        for vkey, (memory_gb, provisioned) in self.serverless.items():
            for series in SERVERLESS_COUNTERS:  # shown at 0 from the start, like the other counters
                p._counters.setdefault(vkey + (series,), 0.0)
            if provisioned:  # billed for the time it is provisioned, used or not, counted from first sight
                since = p._provisioned_end.get(vkey, self.end)
                if self.end > since:
                    self._add_cost(vkey, 0.0, p.serverless_prices.provisioned(provisioned, memory_gb,
                                                                              self.end - since), rate)
                p._provisioned_end[vkey] = max(since, self.end)
            total, count = vkey + ("model_latency_sum",), vkey + ("model_latency_count",)
            if total not in self.points or count not in self.points:
                continue  # not asked for, or failed: nothing counted this cycle
            (since, sums), (_, counts) = self.points[total], self.points[count]
            spilled = dict(self.points.get(vkey + (SPILLOVER,), (None, []))[1])
            billed = p.serverless_prices.bill(dict(sums), dict(counts), memory_gb, spilled, provisioned)
            self._add_cost(vkey, billed.seconds, billed.dollars, rate)
            if self.end > since:
                hourly = billed.dollars * 3600 / (self.end - since)
                p._serverless_hourly[vkey] = (hourly, hourly * (1 - rate))

    def _add_cost(self, vkey: tuple, seconds: float, list_dollars: float, rate: float) -> None:
        for series, amount in zip(SERVERLESS_COUNTERS, (seconds, list_dollars, list_dollars * (1 - rate))):
            self.p._counters[vkey + (series,)] += amount

    def finish(self) -> None:
        p = self.p
        self._serverless_compute()
        if self.overflow:
            log.warning("%s: %d GetMetricStatistics requests did not fit in the poll interval at "
                        "max_get_metric_statistics_per_second=%g: fetched with GetMetricData instead",
                        p.name, self.overflow, p.max_statistics_per_second)
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
