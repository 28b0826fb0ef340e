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
from .cloudwatch import Query, fetch, group_by_start, settled_end
from .config import quantile_label
from .cost import PriceBook
from .inventory import QUIET_STATUSES, Endpoint, Inventory, Variant
from .tags import LATENCY_OBJECTIVE

log = logging.getLogger(__name__)

SAGEMAKER_NS = "AWS/SageMaker"
INSTANCE_NS = "/aws/sagemaker/Endpoints"
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
COUNTER_SERIES = {*COUNTERS, WITHIN_OBJECTIVE}
LATENCIES = {"model_latency": "ModelLatency", "overhead_latency": "OverheadLatency"}
DEFAULT_STATISTICS = ["p50", "p95", "p99"]
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
class Snapshot:
    """What a scrape reads: immutable, replaced as a whole at the end of each cycle."""
    region: str
    account: str = ""
    endpoints: tuple[Endpoint, ...] = ()
    counters: dict = field(default_factory=dict)     # (endpoint, variant, series) -> value
    gauges: dict = field(default_factory=dict)       # (endpoint, variant, series[, quantile]) -> value
    data_ts: dict = field(default_factory=dict)      # (endpoint, variant) -> end of newest settled period
    costs: dict = field(default_factory=dict)        # (endpoint, variant) -> (instance_type, $/hour)


class Poller:
    def __init__(self, aws: Aws, inventory: Inventory, prices: PriceBook, health: Health, *,
                 poll_interval: float = 60.0, period: float = 60.0, delay: float = 180.0,
                 statistics: list[str] | None = None, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None):
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

    def _cycle(self) -> bool:
        now = self.clock()
        end = settled_end(now, self.delay, self.period)
        account = self._identify()
        endpoints, problems = self.inventory.refresh()
        ok = problems == 0

        live_variants = {(e.name, v.name) for e in endpoints for v in e.variants}
        for store in (self._watermarks, self._counters, self._gauges, self._gauge_end, self._data_ts):
            for key in [k for k in store if k[:2] not in live_variants]:
                del store[key]

        # Build this cycle's queries, grouped by window start.
        first_start = self._last_end if self._last_end is not None else end
        gauge_window = self.period * max(1, math.ceil(self.poll_interval / self.period))
        wanted: list[tuple[float, Query]] = []
        gauge_queries: list[Query] = []
        scales: dict = {}
        counter_keys: set = set()
        variant_keys: dict[tuple, list] = {}
        skipped = 0
        for endpoint in endpoints:
            if endpoint.status in QUIET_STATUSES:
                continue
            for variant in endpoint.variants:
                vkey = (endpoint.name, variant.name)
                fetch_gauges = self._gauge_end.get(vkey) != end
                for series, query, scale in self._series(endpoint, variant):
                    scales[query.key] = scale
                    if series in COUNTER_SERIES:
                        counter_keys.add(query.key)
                        wm = self._watermarks.setdefault(query.key, first_start)
                        if wm < end - MAX_CATCH_UP:
                            skipped += int((end - MAX_CATCH_UP - wm) // self.period)
                            wm = self._watermarks[query.key] = end - MAX_CATCH_UP
                        if wm < end:
                            wanted.append((wm, query))
                            variant_keys.setdefault(vkey, []).append(query.key)
                    elif fetch_gauges:
                        gauge_queries.append(query)
                        variant_keys.setdefault(vkey, []).append(query.key)
        if skipped:
            log.warning("%s: %d periods older than %ds were not fetched after an outage; counters skip them",
                        self.name, skipped, MAX_CATCH_UP)

        # Gauges ride along with the oldest counter window (one request group in steady state and in catch-up);
        # they take the newest datapoint of their window.
        gauge_start = min([end - gauge_window] + [start for start, _ in wanted])
        wanted += [(gauge_start, q) for q in gauge_queries]

        failed: set = set()
        stopped: BaseException | None = None
        for start, queries in group_by_start(wanted).items():
            if stopped is not None:  # after a failed call (throttling, outage), don't pile on: next cycle
                failed.update(q.key for q in queries)
                continue
            result = fetch(self.aws, queries, start, end, self.period)
            stopped = result.error
            if result.problems:
                ok = False
            failed |= result.failed
            for query in queries:
                if query.key in result.failed:
                    continue
                points = result.values.get(query.key, [])
                scale = scales[query.key]
                if query.key in counter_keys:
                    wm = self._watermarks[query.key]
                    added = sum(v for ts, v in points if wm <= ts < end)
                    self._counters[query.key] = self._counters.get(query.key, 0.0) + added * scale
                    self._watermarks[query.key] = end
                else:
                    newest = [v for ts, v in points if ts < end]
                    if newest:
                        self._gauges[query.key] = newest[-1] * scale
                    else:
                        self._gauges.pop(query.key, None)  # no datapoint in the newest settled periods
            if result.error is not None and is_credentials_error(result.error):
                raise result.error
        for vkey, keys in variant_keys.items():
            if not any(k in failed for k in keys):
                self._data_ts[vkey] = end
                self._gauge_end[vkey] = end
        for endpoint in endpoints:  # new series show 0 from the start, so increase() sees their first period
            for variant in endpoint.variants:
                for series in COUNTER_SERIES:
                    key = (endpoint.name, variant.name, series)
                    if key in self._watermarks:
                        self._counters.setdefault(key, 0.0)
        self._last_end = end
        self.snapshot = Snapshot(self.region, account, tuple(endpoints), dict(self._counters), dict(self._gauges),
                                 dict(self._data_ts), self._costs(endpoints))
        return ok

    def _costs(self, endpoints: list[Endpoint]) -> dict:
        costs = {}
        for endpoint in endpoints:
            for variant in endpoint.variants:
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
                costs[(endpoint.name, variant.name)] = (variant.instance_type, price * variant.current_instances)
        return costs
