"""In-process patches to moto 5.2.5 so it answers like SageMaker and CloudWatch do.

`apply()` installs every patch once (idempotent). Each patch, what moto does wrong and what
the patch does:

1. **Instance types** (`FakeEndpointConfig.validate_instance_type`). moto checks endpoint
   variants against a fixed 2019 list and rejects current families (ml.g5, ml.g6, ml.g6e,
   ml.p4d, ml.p5, ml.inf2, ml.trn1, ml.m7i, ...). The patch accepts any well-formed
   `ml.<family>.<size>` name and still rejects malformed ones with moto's ValidationError.

2. **Storage of Values+Counts** (`CloudWatchBackend.put_metric_data`). moto expands every
   value `Counts[i]` times into separate objects (6,000 requests a minute become 6,000
   objects) and truncates fractional counts. The patch stores one weighted datum per metric
   datum (values with their counts, plus Sum/Min/Max/SampleCount), in an index keyed by
   (namespace, metric name, exact dimension set). A single `Value` is a one-value
   distribution; a `StatisticValues` set keeps no values (so it has no percentiles), unless
   it describes one value (SampleCount 1 or Minimum == Maximum), as CloudWatch allows.
   Data older than the retention (default 6h, `--retention`) is dropped, so a long-running
   demo keeps bounded memory.

3. **Percentiles and threshold statistics** (`get_metric_data` MetricStat.Stat `pNN`, `TC(lo:hi)`,
   `PR(lo:hi)`, `get_metric_statistics`
   ExtendedStatistics). moto answers HTTP 500. The patch computes them from the stored
   samples with the **nearest-rank** definition, weighting each value by its count: pNN is
   the smallest stored value v such that the samples <= v make up at least NN% of the
   period's SampleCount (p0 is the minimum, p100 the maximum, `p99.9` works). CloudWatch
   returns no percentile for a period that holds a statistic set describing more than one
   value, or any negative value; so does the patch (the datapoint is left out in
   get_metric_data; ExtendedStatistics is left out in get_metric_statistics).
   Trimmed count `TC(lo:hi)` is the number of samples v with lo < v <= hi, and percentile rank
   `PR(lo:hi)` their share of the period's samples in percent (0-100): the CloudWatch
   statistics definitions exclude the lower bound and include the upper one; either bound may
   be left out (`TC(:250000)`: samples <= 250,000). Only absolute bounds are supported (not
   `TC(10%:90%)` or the `tc90` shorthand); both are computed from the stored samples, so they
   are absent where percentiles are (statistic sets of several values, negative values).

4. **Namespace and dimensions** (both read APIs). With Dimensions given, moto ignores the
   Namespace (so `/aws/sagemaker/Endpoints` CPUUtilization leaks into `AWS/SageMaker`), and
   get_metric_statistics matches dimensions as a subset. CloudWatch identifies a metric by
   namespace, name and the exact set of dimensions; the patch matches exactly that.

5. **Period alignment** (both read APIs). moto starts its buckets at the raw StartTime
   (12:32:34, 12:33:34, ...) and always from StartTime even for older data. The patch
   rounds StartTime down the way the CloudWatch API reference documents it: to the whole
   minute for data under 15 days old (5 minutes for 15-63 days, 1 hour beyond), and to a
   multiple of the period for high-resolution periods (1, 5, 10, 20, 30 s). Buckets are
   then consecutive periods from that rounded start, so with Period=60 (SageMaker's
   resolution) every bucket is a clock minute; a query whose StartTime is a multiple of its
   period (what exporters send) gets buckets on multiples of the period since the epoch.
   EndTime is exclusive.

6. **GetMetricData limits** (`CloudWatchResponse.get_metric_data`). moto enforces none. The
   patch rejects, with CloudWatch's `ValidationError`: more than 500 queries; duplicate Ids;
   Ids that do not start with a lower-case letter or hold other than letters, digits and
   `_`; periods other than 1, 5, 10, 20, 30 or a multiple of 60; statistics it does not know
   (anything but SampleCount, Average, Sum, Minimum, Maximum, pNN). It honours MaxDatapoints
   (default 100,800): when the results hold more, it returns the first ones with StatusCode
   `PartialData` and a NextToken that continues where they stopped. It answers
   `Messages: []`, and labels default to the metric name, as CloudWatch does.

7. **GetMetricStatistics** (`CloudWatchResponse.get_metric_statistics`). moto drops
   ExtendedStatistics and allows both Statistics and ExtendedStatistics. The patch computes
   them (see 3), rejects both together with `InvalidParameterCombination` like CloudWatch,
   and rejects a request for more than 1,440 datapoints like CloudWatch.

8. **list_metrics speed** (`CloudWatchBackend.get_filtered_metrics`). moto compares every
   stored datum with every metric found so far (quadratic). The patch reads the index.

9. **ListMetrics RecentlyActive** (`CloudWatchResponse.list_metrics`). moto ignores the
   parameter and lists every stored metric. CloudWatch's `RecentlyActive=PT3H` lists only
   metrics that received a datapoint in the past three hours (by when it was put, not by its
   timestamp); the patch filters on the time each datum was stored, and rejects other values
   with `InvalidParameterValue`, as CloudWatch does (PT3H is the only value it accepts).

10. **Inference components** (`SageMakerResponse`): moto has none. See components.py: Create,
    Describe, List (filters, pagination), UpdateInferenceComponentRuntimeConfig and Delete,
    per account and region, with the API reference's shapes.

11. **Cross-account observability** (`list_metrics` IncludeLinkedAccounts / OwningAccount,
    `get_metric_data` MetricDataQuery.AccountId). moto ignores all three and has no
    Observability Access Manager (no sinks or links). The emulator declares links itself:
    `link_accounts(monitoring, sources)` (`mlscope demo aws --linked-accounts ID,ID` links them
    to the default account, 123456789012). In a monitoring account, ListMetrics with
    `IncludeLinkedAccounts=true` lists its own metrics and those of its linked source accounts
    (same region), with `OwningAccounts` parallel to `Metrics`; `OwningAccount` narrows it to one
    account (an unlinked one lists nothing). GetMetricData reads a query's `AccountId` from that
    account's CloudWatch when it is linked (or is the caller's own); for any other account the
    query answers no data with StatusCode `Forbidden` and a `Forbidden` message, the status the
    API reference lists for data the caller may not read (real CloudWatch's exact wording for an
    unlinked account is not documented). Without IncludeLinkedAccounts nothing changes.

Metric math and Metrics Insights queries are passed to moto's own code unchanged (metric
math returns empty results there; SageMaker's exporter does not use it).
"""

from __future__ import annotations

import base64
import bisect
import json
import math
import re
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from moto.cloudwatch import models as cw_models
from moto.cloudwatch import responses as cw_responses
from moto.cloudwatch.exceptions import InvalidParameterCombination, InvalidParameterValue, ValidationError
from moto.core.responses import ActionResult
from moto.sagemaker import models as sm_models
from moto.sagemaker.exceptions import ValidationError as SageMakerValidationError

from . import components

MAX_QUERIES = 500
MAX_DATAPOINTS = 100_800
MAX_STATISTICS_DATAPOINTS = 1_440
DEFAULT_RETENTION_SECONDS = 6 * 3600

_LOCK = threading.RLock()
_USERS = 0  # emulators running in this process; the patches are installed while it is above 0
_ORIGINALS: dict[tuple[type, str], Any] = {}
_MISSING = object()
_RETENTION = [float(DEFAULT_RETENTION_SECONDS)]

# ---------------------------------------------------------------- 1. instance types

INSTANCE_TYPE_RE = re.compile(r"^ml\.[a-z][a-z0-9-]*\.(?:nano|micro|small|medium|large|xlarge|\d+xlarge|metal(?:-\d+xl)?)$")


def valid_instance_type(instance_type: str) -> bool:
    return bool(INSTANCE_TYPE_RE.match(str(instance_type)))


def _validate_instance_type(self: Any, instance_type: str) -> None:
    if not valid_instance_type(instance_type):
        raise SageMakerValidationError(
            message=f"Value '{instance_type}' at 'instanceType' failed to satisfy constraint: "
                    "Member must be an instance type of the form ml.<family>.<size>")


# ---------------------------------------------------------------- 2. storage

def _epoch(value: Any) -> float:
    """A timestamp from moto's parser (datetime, naive = UTC, or a number) as epoch seconds."""
    if value is None:
        return time.time()
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value)
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _dims_key(dimensions: Iterable[dict]) -> frozenset:
    return frozenset((d["Name"], d.get("Value")) for d in dimensions or ())


class WeightedDatum(cw_models.MetricAggregatedDatum):
    """One put_metric_data datum: values with counts (None when only a statistic set is known)."""

    def __init__(self, namespace: str, name: str, dimensions: list[dict], timestamp: Any, unit: Any,
                 values: list[float] | None, counts: list[float] | None,
                 stats: tuple[float, float, float, float] | None = None):
        ts = _epoch(timestamp)
        dt = datetime.fromtimestamp(ts, timezone.utc).replace(tzinfo=None)  # moto keeps naive UTC
        if stats is None:
            assert values is not None and counts is not None
            stats = (sum(v * c for v, c in zip(values, counts)), min(values), max(values), float(sum(counts)))
        total, lo, hi, n = stats
        super().__init__(namespace, name, lo, hi, n, total, dimensions, dt, unit)
        self.ts = ts
        self.key = (namespace, name, _dims_key(dimensions))
        self.values = tuple(values) if values is not None else None
        self.counts = tuple(counts) if counts is not None else None


def _index(backend: Any) -> dict:
    idx = backend.__dict__.get("_mlscope_index")
    if idx is None:
        idx = backend.__dict__["_mlscope_index"] = {}
        backend.__dict__["_mlscope_pruned"] = 0.0
    return idx


def _received(backend: Any) -> dict:
    """(namespace, name, dimensions) -> when a datum of that metric was last put."""
    return backend.__dict__.setdefault("_mlscope_received", {})


def _prune(backend: Any, now: float) -> None:
    if now - backend.__dict__.get("_mlscope_pruned", 0.0) < 60:
        return
    backend.__dict__["_mlscope_pruned"] = now
    cutoff = now - _RETENTION[0]
    idx = _index(backend)
    for key, (stamps, datums) in list(idx.items()):
        cut = bisect.bisect_left(stamps, cutoff)
        if cut:
            del stamps[:cut]
            del datums[:cut]
        if not stamps:
            del idx[key]
    backend.metric_data[:] = [md for md in backend.metric_data
                              if not isinstance(md, WeightedDatum) or md.ts >= cutoff]


def _put_metric_data(self: Any, namespace: str, metric_data: list[dict[str, Any]]) -> None:
    for i, metric in enumerate(metric_data):
        self._validate_parameters_put_metric_data(metric, i + 1)
    new: list[WeightedDatum] = []
    for m in metric_data:
        args = (namespace, m["MetricName"], m.get("Dimensions") or [], m.get("Timestamp"), m.get("Unit"))
        if m.get("Values"):
            values = [float(v) for v in m["Values"]]
            counts = [float(c) for c in (m.get("Counts") or [1] * len(values))]
            pairs = [(v, c) for v, c in zip(values, counts) if c > 0]
            if not pairs:
                continue
            new.append(WeightedDatum(*args, [v for v, _ in pairs], [c for _, c in pairs]))
        elif m.get("StatisticValues"):
            s = m["StatisticValues"]
            total, lo, hi, n = (float(s["Sum"]), float(s["Minimum"]), float(s["Maximum"]), float(s["SampleCount"]))
            one_value = n == 1 or lo == hi
            new.append(WeightedDatum(*args, [lo] if one_value else None, [n] if one_value else None,
                                     stats=(total, lo, hi, n)))
        else:
            new.append(WeightedDatum(*args, [float(m.get("Value", 0))], [1.0]))
    with _LOCK:
        idx = _index(self)
        for datum in new:
            stamps, datums = idx.setdefault(datum.key, ([], []))
            pos = bisect.bisect_right(stamps, datum.ts)
            stamps.insert(pos, datum.ts)
            datums.insert(pos, datum)
            _received(self)[datum.key] = time.time()  # what ListMetrics' RecentlyActive looks at
        self.metric_data.extend(new)
        _prune(self, time.time())


def _get_filtered_metrics(self: Any, metric_name: str, namespace: str, dimensions: list[dict]) -> list:
    wanted = [(d["Name"], d.get("Value")) for d in dimensions or ()]
    out = []
    with _LOCK:
        for (ns, name, dims), (_, datums) in _index(self).items():
            if namespace and ns != namespace or metric_name and name != metric_name:
                continue
            names = dict(dims)
            if any(n not in names or (v is not None and names[n] != v) for n, v in wanted):
                continue
            out.append(datums[-1])
    others = [md for md in self.aws_metric_data if md.filter(namespace, metric_name, dimensions)]
    return out + others


# ---------------------------------------------------------------- 9. ListMetrics RecentlyActive

RECENTLY_ACTIVE_SECONDS = 3 * 3600


def _recently_active(backend: Any, metrics: list) -> list:
    since = time.time() - RECENTLY_ACTIVE_SECONDS
    received = _received(backend)
    return [m for m in metrics if not isinstance(m, WeightedDatum) or received.get(m.key, 0) >= since]


def _response_list_metrics(self: Any) -> ActionResult:
    recently = self._get_param("RecentlyActive")
    if recently not in (None, "", "PT3H"):
        raise InvalidParameterValue(f"The value {recently} for parameter RecentlyActive is invalid: only PT3H is "
                                    "supported.")
    if self._get_bool_param("IncludeLinkedAccounts", False):
        return _list_linked_metrics(self, bool(recently))
    backend = self.cloudwatch_backend
    next_token = self._get_param("NextToken")
    if next_token:
        next_token, metrics = backend.list_metrics(next_token, None, None, [])
    else:
        metrics = backend.get_filtered_metrics(self._get_param("MetricName"), self._get_param("Namespace"),
                                               self._get_params().get("Dimensions", []))
        if recently:
            metrics = _recently_active(backend, metrics)
        next_token, metrics = backend._get_paginated(metrics)
    return ActionResult({"Metrics": metrics, "NextToken": next_token})


# ---------------------------------------------------------------- 11. cross-account observability

_LINKS: dict[str, set[str]] = {}  # monitoring account -> its linked source accounts
LIST_PAGE = 500


def link_accounts(monitoring: str, sources: Iterable[str]) -> None:
    """Link source accounts to a monitoring account (what OAM CreateSink + CreateLink do in AWS)."""
    with _LOCK:
        _LINKS.setdefault(str(monitoring), set()).update(str(s) for s in sources)


def unlink_accounts(monitoring: str, sources: Iterable[str] | None = None) -> None:
    """Remove some links of a monitoring account, or all of them (sources None)."""
    with _LOCK:
        if sources is None:
            _LINKS.pop(str(monitoring), None)
        else:
            _LINKS.get(str(monitoring), set()).difference_update(str(s) for s in sources)


def linked_accounts(monitoring: str) -> set[str]:
    with _LOCK:
        return set(_LINKS.get(str(monitoring), ()))


def _readable(self: Any, account: str | None) -> Any:
    """The CloudWatch backend of `account` as seen by the caller: its own, a linked one, or None (forbidden)."""
    own = self.current_account
    if not account or account == own:
        return self.cloudwatch_backend
    if account in linked_accounts(own):
        return cw_models.cloudwatch_backends[account][self.region]
    return None


def _list_linked_metrics(self: Any, recently: bool) -> ActionResult:
    own = self.current_account
    pages = self.cloudwatch_backend.__dict__.setdefault("_mlscope_linked_pages", {})
    token = self._get_param("NextToken")
    if token:
        if token not in pages:
            raise InvalidParameterValue("Request parameter NextToken is invalid")
        pairs = pages.pop(token)
    else:
        owning = self._get_param("OwningAccount")
        accounts = [own, *sorted(linked_accounts(own))]
        pairs = []
        for account in ([owning] if owning in accounts else []) if owning else accounts:
            backend = cw_models.cloudwatch_backends[account][self.region]
            metrics = backend.get_filtered_metrics(self._get_param("MetricName"), self._get_param("Namespace"),
                                                   self._get_params().get("Dimensions", []))
            pairs += [(m, account) for m in (_recently_active(backend, metrics) if recently else metrics)]
    next_token = None
    if len(pairs) > LIST_PAGE:
        next_token = str(cw_models.mock_random.uuid4())
        pages[next_token] = pairs[LIST_PAGE:]
        pairs = pairs[:LIST_PAGE]
    return ActionResult({"Metrics": [m for m, _ in pairs], "OwningAccounts": [a for _, a in pairs],
                         "NextToken": next_token})


# ---------------------------------------------------------------- 3. statistics

BASIC_STATS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
PERCENTILE_RE = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100(?:\.0+)?)$")
_BOUND = r"(-?\d+(?:\.\d{1,10})?)?"
THRESHOLD_RE = re.compile(rf"^(TC|PR)\({_BOUND}:{_BOUND}\)$")


def threshold_bounds(stat: str) -> tuple[str, float, float] | None:
    """`TC(lo:hi)` / `PR(lo:hi)` with absolute bounds -> (kind, lo, hi); a missing bound is open."""
    match = THRESHOLD_RE.match(stat or "")
    if not match or (match.group(2) is None and match.group(3) is None):
        return None
    lo = float(match.group(2)) if match.group(2) is not None else -math.inf
    hi = float(match.group(3)) if match.group(3) is not None else math.inf
    return (match.group(1), lo, hi) if lo < hi else None


def valid_stat(stat: str) -> bool:
    return stat in BASIC_STATS or bool(PERCENTILE_RE.match(stat or "")) or threshold_bounds(stat) is not None


def percentile(pairs: list[tuple[float, float]], p: float) -> float | None:
    """Nearest-rank percentile of weighted values: the smallest v with weight(<= v) >= p% of all."""
    if not pairs:
        return None
    pairs = sorted(pairs)
    total = sum(c for _, c in pairs)
    target = total * p / 100.0
    running = 0.0
    for v, c in pairs:
        running += c
        if running >= target - 1e-9 * total:
            return v
    return pairs[-1][0]


def compute_stat(datums: list[WeightedDatum], stat: str) -> float | None:
    if not datums:
        return None
    if stat == "Sum":
        return sum(d.sum for d in datums)
    if stat == "SampleCount":
        return sum(d.sample_count for d in datums)
    if stat == "Minimum":
        return min(d.min for d in datums)
    if stat == "Maximum":
        return max(d.max for d in datums)
    if stat == "Average":
        n = sum(d.sample_count for d in datums)
        return sum(d.sum for d in datums) / n if n else None
    match = PERCENTILE_RE.match(stat)
    threshold = threshold_bounds(stat)
    if not match and not threshold:
        return None
    if any(d.values is None for d in datums):
        return None  # a statistic set of several values: CloudWatch has no percentiles for it
    pairs = [(v, c) for d in datums for v, c in zip(d.values, d.counts)]
    if any(v < 0 for v, _ in pairs):
        return None
    if threshold:
        kind, lo, hi = threshold
        inside = sum(c for v, c in pairs if lo < v <= hi)  # lower bound excluded, upper bound included
        return inside if kind == "TC" else 100.0 * inside / sum(c for _, c in pairs)
    return percentile(pairs, float(match.group(1)))


def round_start(start: float, period: int, now: float | None = None) -> float:
    """StartTime rounded down as the CloudWatch API reference documents it."""
    if period < 60:
        return math.floor(start / period) * period
    age = (time.time() if now is None else now) - start
    if age > 63 * 86400:
        step = 3600
    elif age > 15 * 86400:
        step = 300
    else:
        step = 60
    return math.floor(start / step) * step


def buckets(backend: Any, namespace: str, name: str, dimensions: list[dict], unit: str | None,
            start: float, end: float, period: int) -> list[tuple[float, list[WeightedDatum]]]:
    """The stored datums of one metric, grouped into periods from the rounded start, oldest first."""
    start = round_start(start, period)
    with _LOCK:
        found = _index(backend).get((namespace, name, _dims_key(dimensions)))
        if not found:
            return []
        stamps, datums = found
        lo, hi = bisect.bisect_left(stamps, start), bisect.bisect_left(stamps, end)
        selected = datums[lo:hi]
    if unit:
        selected = [d for d in selected if d.unit == unit]
    grouped: dict[float, list[WeightedDatum]] = {}
    for d in selected:
        grouped.setdefault(start + math.floor((d.ts - start) / period) * period, []).append(d)
    return sorted(grouped.items())


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


# ---------------------------------------------------------------- 6. get_metric_data

QUERY_ID_RE = re.compile(r"^[a-z][a-zA-Z0-9_]*$")
VALID_PERIOD = lambda p: p in (1, 5, 10, 20, 30) or (p > 0 and p % 60 == 0)  # noqa: E731


def _validate_queries(queries: list[dict]) -> None:
    if len(queries) > MAX_QUERIES:
        raise ValidationError(
            f"1 validation error detected: Value '{len(queries)}' at 'metricDataQueries' failed to satisfy "
            f"constraint: Member must have length less than or equal to {MAX_QUERIES}")
    if not queries:
        raise ValidationError("The parameter MetricDataQueries must not be empty.")
    seen: set[str] = set()
    for n, q in enumerate(queries, 1):
        qid = q.get("Id") or ""
        if not QUERY_ID_RE.match(qid):
            raise ValidationError(
                f"The value {qid} for parameter MetricDataQueries.member.{n}.Id is invalid: it must start with "
                "a lowercase letter and contain only letters, numbers and underscores.")
        if qid in seen:
            raise ValidationError(f"The values for parameter id in MetricDataQueries are not unique: {qid}.")
        seen.add(qid)
        if "MetricStat" not in q and "Expression" not in q:
            raise ValidationError(f"The parameter MetricDataQueries.member.{n}.MetricStat is required.\n")
        ms = q.get("MetricStat")
        if ms:
            stat = ms.get("Stat") or ""
            if not valid_stat(stat):
                raise ValidationError(
                    f"The value {stat} for parameter MetricDataQueries.member.{n}.MetricStat.Stat is invalid "
                    "(the MLScope emulator supports SampleCount, Average, Sum, Minimum, Maximum, pNN, "
                    "and TC(lo:hi) / PR(lo:hi) with absolute bounds).")
            period = int(ms.get("Period") or 0)
            if not VALID_PERIOD(period):
                raise ValidationError(
                    f"The value {period} for parameter MetricDataQueries.member.{n}.MetricStat.Period is invalid: "
                    "it must be 1, 5, 10, 20, 30 or a multiple of 60.")


def get_metric_data_results(backend_of: Callable[[str | None], Any], queries: list[dict], start: float, end: float,
                            scan_by: str) -> list[dict]:
    """`backend_of(AccountId)`: the CloudWatch backend a query reads, None when the caller may not read it."""
    results = []
    for q in queries:
        if "MetricStat" not in q:
            continue
        ms = q["MetricStat"]
        metric = ms["Metric"]
        stat, period = ms["Stat"], int(ms["Period"])
        backend = backend_of(q.get("AccountId"))
        if backend is None:
            results.append({"Id": q["Id"], "Label": q.get("Label") or metric["MetricName"], "Timestamps": [],
                            "Values": [], "StatusCode": "Forbidden", "_return": q.get("ReturnData", True),
                            "Messages": [{"Code": "Forbidden", "Value": f"Account {q['AccountId']} is not a source "
                                          "account linked to this monitoring account."}]})
            continue
        timestamps, values = [], []
        for ts, datums in buckets(backend, metric["Namespace"], metric["MetricName"],
                                  metric.get("Dimensions") or [], ms.get("Unit"), start, end, period):
            value = compute_stat(datums, stat)
            if value is not None:
                timestamps.append(ts)
                values.append(value)
        if scan_by != "TimestampAscending":
            timestamps.reverse()
            values.reverse()
        results.append({"Id": q["Id"], "Label": q.get("Label") or metric["MetricName"],
                        "Timestamps": timestamps, "Values": values, "StatusCode": "Complete",
                        "_return": q.get("ReturnData", True)})
    return results


def _token(query_index: int, offset: int, fingerprint: str) -> str:
    raw = json.dumps({"q": query_index, "o": offset, "f": fingerprint}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _untoken(token: str) -> tuple[int, int, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["q"]), int(data["o"]), str(data["f"])
    except Exception:
        raise InvalidParameterValue("The value of the NextToken parameter is invalid.") from None


def _response_get_metric_data(self: Any) -> ActionResult:
    params = self._get_params()
    queries = params.get("MetricDataQueries", []) or []
    _validate_queries(queries)
    start, end = _epoch(params["StartTime"]), _epoch(params["EndTime"])
    if start > end:
        raise ValidationError("The parameter EndTime must be greater than StartTime.")
    if start == end:
        raise ValidationError("The parameter StartTime must not equal parameter EndTime.")
    scan_by = params.get("ScanBy") or "TimestampDescending"
    max_points = int(params.get("MaxDatapoints") or MAX_DATAPOINTS)
    backend = self.cloudwatch_backend
    stat_results = get_metric_data_results(lambda account: _readable(self, account), queries, start, end, scan_by)

    # metric math and Metrics Insights: moto's own code, fed with our results
    others = [q for q in queries if "MetricStat" not in q]
    extra: list[dict] = []
    if others:
        math_q = [q for q in others if not q["Expression"].startswith("SELECT")]
        for q in math_q:
            moto_results = [{"id": r["Id"], "label": r["Label"], "values": r["Values"],
                             "timestamps": [_dt(t) for t in r["Timestamps"]]} for r in stat_results]
            vals, stamps = cw_models.parse_expression(q["Expression"], moto_results)
            extra.append({"Id": q["Id"], "Label": q.get("Label") or q["Id"], "Values": vals,
                          "Timestamps": stamps, "StatusCode": "Complete"})
        insights = [q for q in others if q["Expression"].startswith("SELECT")]
        if insights:
            for r in cw_models.CloudWatchBackend.get_metric_data(
                    backend, insights, _dt(start).replace(tzinfo=None), _dt(end).replace(tzinfo=None),
                    scan_by):
                extra.append({"Id": r["id"], "Label": r["label"], "Values": r["values"],
                              "Timestamps": r["timestamps"], "StatusCode": r["status_code"]})
    results = [r for r in stat_results if r.pop("_return")] + extra

    fingerprint = f"{len(queries)}:{start}:{end}"
    first_q, first_o = 0, 0
    if params.get("NextToken"):
        first_q, first_o, fp = _untoken(params["NextToken"])
        if fp != fingerprint:
            raise InvalidParameterValue("The value of the NextToken parameter is invalid.")
    out, budget, next_token = [], max_points, None
    for i, r in enumerate(results):
        if i < first_q:
            continue
        offset = first_o if i == first_q else 0
        stamps, vals = r["Timestamps"][offset:], r["Values"][offset:]
        if len(stamps) > budget:
            r.update(Timestamps=stamps[:budget], Values=vals[:budget], StatusCode="PartialData")
            out.append(r)
            next_token = _token(i, offset + budget, fingerprint)
            break
        r.update(Timestamps=stamps, Values=vals)
        budget -= len(stamps)
        out.append(r)
    for r in out:
        r["Timestamps"] = [t if isinstance(t, datetime) else _dt(t) for t in r["Timestamps"]]
    result: dict[str, Any] = {"MetricDataResults": out, "Messages": []}
    if next_token:
        result["NextToken"] = next_token
    return ActionResult(result)


# ---------------------------------------------------------------- 7. get_metric_statistics

def _response_get_metric_statistics(self: Any) -> ActionResult:
    namespace = self._get_param("Namespace")
    metric_name = self._get_param("MetricName")
    start, end = _epoch(self._get_param("StartTime")), _epoch(self._get_param("EndTime"))
    period = self._get_int_param("Period")
    statistics = self._get_param("Statistics", []) or []
    extended = self._get_param("ExtendedStatistics", []) or []
    dimensions = self._get_param("Dimensions", []) or []
    unit = self._get_param("Unit")
    if not statistics and not extended:
        raise InvalidParameterCombination("Must specify either Statistics or ExtendedStatistics")
    if statistics and extended:
        raise InvalidParameterCombination(
            "The parameters Statistics and ExtendedStatistics are mutually exclusive and you have specified both.")
    for stat in statistics:
        if stat not in BASIC_STATS:
            raise InvalidParameterValue(f"The value {stat} for parameter Statistics is not supported.")
    for stat in extended:
        if not PERCENTILE_RE.match(stat):
            raise InvalidParameterValue(f"The value {stat} for parameter ExtendedStatistics is not supported.")
    if not period or not VALID_PERIOD(period):
        raise InvalidParameterValue("The parameter Period must be 1, 5, 10, 20, 30 or a multiple of 60.")
    if start >= end:
        raise InvalidParameterValue("The parameter StartTime must be less than the parameter EndTime.")
    requested = math.ceil((end - round_start(start, period)) / period)
    if requested > MAX_STATISTICS_DATAPOINTS:
        raise InvalidParameterCombination(
            f"You have requested up to {requested} datapoints, which exceeds the limit of "
            f"{MAX_STATISTICS_DATAPOINTS}. You may reduce the datapoints requested by increasing Period, "
            "or decreasing the time range.")
    datapoints = []
    for ts, datums in buckets(self.cloudwatch_backend, namespace, metric_name, dimensions, unit,
                              start, end, period):
        point: dict[str, Any] = {"Timestamp": _dt(ts), "Unit": datums[-1].unit or "None"}
        for stat in statistics:
            point[stat] = compute_stat(datums, stat)
        ext = {s: v for s in extended if (v := compute_stat(datums, s)) is not None}
        if ext:
            point["ExtendedStatistics"] = ext
        datapoints.append(point)
    return ActionResult({"Label": metric_name, "Datapoints": datapoints})


# ---------------------------------------------------------------- install

def set_retention(seconds: float) -> None:
    _RETENTION[0] = float(seconds)


def _targets() -> list[tuple[type, str, Any]]:
    return [(sm_models.FakeEndpointConfig, "validate_instance_type", _validate_instance_type),
            (cw_models.CloudWatchBackend, "put_metric_data", _put_metric_data),
            (cw_models.CloudWatchBackend, "get_filtered_metrics", _get_filtered_metrics),
            (cw_responses.CloudWatchResponse, "list_metrics", _response_list_metrics),
            *components.targets(),
            (cw_responses.CloudWatchResponse, "get_metric_data", _response_get_metric_data),
            (cw_responses.CloudWatchResponse, "get_metric_statistics", _response_get_metric_statistics)]


def apply() -> None:
    """Install every patch into moto; each call needs a matching `undo()` (a count, so emulators can overlap)."""
    global _USERS
    with _LOCK:
        if _USERS == 0:
            for owner, name, patch in _targets():
                _ORIGINALS[(owner, name)] = owner.__dict__.get(name, _MISSING)
                setattr(owner, name, patch)
        _USERS += 1


def undo() -> None:
    """Release one `apply()`; the last one puts moto back exactly as it was."""
    global _USERS
    with _LOCK:
        if _USERS == 0:
            return
        _USERS -= 1
        if _USERS == 0:
            for (owner, name), original in _ORIGINALS.items():
                if original is _MISSING:
                    delattr(owner, name)
                else:
                    setattr(owner, name, original)
            _ORIGINALS.clear()
            _LINKS.clear()


def applied() -> bool:
    return _USERS > 0
