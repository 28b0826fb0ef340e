"""Dashboard speed: every wall panel's query against 30 days of synthetic history, as Grafana issues it.

`python -m bench dashboards`:
1. writes 30 days of history for the benchmark fleet (100 SageMaker endpoints, 64 GPUs on 8 hosts,
   16 hosts, `up` per target) as OpenMetrics and imports it with
   `promtool tsdb create-blocks-from openmetrics`;
2. backfills the repo's recording rules (alerts/*.rules.yml) over those 30 days with
   `promtool tsdb create-blocks-from rules`, against the real Prometheus, rule level by rule level;
3. starts Prometheus on the result with the repo's rule files loaded, waits for it to compact
   the backfilled blocks into the layout a 30-day-old server has, and times every query of the
   mlscope-wall dashboard over 24 h and 30 d the way Grafana issues it (query_range with Grafana's
   step for ~1000 points, or an instant query where the panel asks for one), plus the raw-counter
   version of an expensive panel to show what the recording rules buy;
4. prints the table, and stops every process and removes every temp dir, also on failure.

Target: every wall panel under 200 ms (p95) over 30 days.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import shutil
import signal
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from . import backfill
from .backfill import Prometheus

ROOT = Path(__file__).resolve().parent.parent
WALL_UID = "mlscope-wall"
# Environment overrides, for a slower, higher-fidelity run: MLSCOPE_BENCH_DAYS, MLSCOPE_BENCH_RESOLUTION (s),
# MLSCOPE_BENCH_EVAL_INTERVAL (s). The defaults keep `make bench` to about 10-15 minutes on 2 cores.
DAYS = int(os.environ.get("MLSCOPE_BENCH_DAYS", "30"))
RESOLUTION = int(os.environ.get("MLSCOPE_BENCH_RESOLUTION", "600"))  # s between synthetic samples: ~28 M samples
EVAL_INTERVAL = int(os.environ.get("MLSCOPE_BENCH_EVAL_INTERVAL", "600"))  # s between backfilled rule samples
# Range windows shorter than two samples would hold one sample at most evaluation times; they are widened.
MIN_RANGE = 2 * RESOLUTION
LOOKBACK = f"{max(5 * 60, max(RESOLUTION, EVAL_INTERVAL) + 60)}s"  # instant selectors must reach back one sample (and one rule eval)
REPS = 10
RAW_REPS = 3
TARGET_MS = 200.0
QUERY_TIMEOUT = 120.0
COMPACTION_WAIT = 420.0
RANGES = (("24h", 86400), (f"{DAYS}d", DAYS * 86400))
SHORT, LONG = RANGES[0][0], RANGES[1][0]

# Used only when the dashboards package cannot be imported (it is developed in parallel).
FALLBACK_WALL = [
    ("Availability 24h", "fleet:sagemaker_availability:ratio_rate1d", False),
    ("Availability 30d vs SLO", "fleet:sagemaker_availability:ratio_rate30d", False),
    ("Availability 30d vs SLO", "min(endpoint:sagemaker_slo_objective:ratio)", False),
    ("Error budget left (worst endpoint)", "min(endpoint:sagemaker_error_budget_remaining:ratio_30d)", False),
    ("Requests/s", "fleet:sagemaker_requests:rate5m", False),
    ("Error ratio", "fleet:sagemaker_errors:ratio_rate5m", False),
    ("Worst p99 latency", "fleet:sagemaker_model_latency_seconds:p99_max", False),
    ("Spend $/hour", "fleet:mlscope_cost_dollars_per_hour:sum", False),
    ("Projected $/month", "fleet:mlscope_cost_dollars_per_month:projected", False),
    ("Cost per 1k requests", "fleet:sagemaker_cost_per_1k_requests_dollars:1h", False),
    ("GPU utilization", "fleet:gpu_utilization:mean_ratio", False),
    ("Idle GPUs", "fleet:gpus_idle:count", False),
    ("Idle GPUs", "fleet:gpus:count", False),
    ("Idle GPU $/hour", "fleet:gpu_idle_cost_dollars_per_hour:sum", False),
    ("Targets down", "count(up == 0) or vector(0)", False),
    ("CloudWatch data age", "max(time() - sagemaker_data_timestamp_seconds)", False),
    ("GPU power", "fleet:gpu_power_watts:sum", False),
    ("GPU memory used", "fleet:gpu_memory_used:ratio", False),
    ("Error budget left, worst endpoints", "bottomk(10, endpoint:sagemaker_error_budget_remaining:ratio_30d)", True),
]

# The raw-metric versions of expensive wall panels: what each panel would cost without recording rules.
RAW_COMPARISONS = [
    ("Availability 30d (raw counters)", "fleet:sagemaker_availability:ratio_rate30d",
     "1 - sum(rate(sagemaker_invocation_5xx_errors_total[30d])) / sum(rate(sagemaker_invocations_total[30d]))"),
    ("Availability 24h (raw counters)", "fleet:sagemaker_availability:ratio_rate1d",
     "1 - sum(rate(sagemaker_invocation_5xx_errors_total[1d])) / sum(rate(sagemaker_invocations_total[1d]))"),
]


# --------------------------------------------------------------------------- Grafana's view of time

_ROUND = [(0.015, 0.01), (0.035, 0.02), (0.075, 0.05), (0.15, 0.1), (0.35, 0.2), (0.75, 0.5), (1.5, 1), (3.5, 2),
          (7.5, 5), (12.5, 10), (17.5, 15), (25, 20), (45, 30), (90, 60), (210, 120), (450, 300), (750, 600),
          (1050, 900), (1500, 1200), (2700, 1800), (5400, 3600), (9000, 7200), (16200, 10800), (24300, 21600),
          (64800, 43200), (604800, 86400), (1209600, 604800), (3888000, 2592000)]


def grafana_interval(range_s: float, max_points: int = 1000, min_interval: float = 15) -> int:
    """$__interval the way Grafana computes it: range / max data points, rounded to a 'nice' interval."""
    raw = range_s / max_points
    for limit, nice in _ROUND:
        if raw <= limit:
            return int(max(nice, min_interval))
    return int(max(31536000, min_interval))


def grafana_variables(range_s: int, scrape_interval: int) -> dict[str, str]:
    """Grafana's built-in variables for a dashboard over `range_s`. `scrape_interval` is the datasource's
    scrape interval: the history's resolution here, so $__rate_interval covers two samples as it would in
    production."""
    interval = grafana_interval(range_s, min_interval=15)
    rate_interval = max(interval + scrape_interval, 4 * scrape_interval)
    return {
        "__interval": f"{interval}s", "__interval_ms": str(interval * 1000),
        "__rate_interval": f"{rate_interval}s", "__rate_interval_ms": str(rate_interval * 1000),
        "__range": f"{range_s}s", "__range_s": str(range_s), "__range_ms": str(range_s * 1000),
        "__scrape_interval": f"{scrape_interval}s",
    }


def substitute(expr: str, variables: dict[str, str]) -> str:
    for name in sorted(variables, key=len, reverse=True):
        value = variables[name]
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    return expr


# --------------------------------------------------------------------------- the wall's queries

@dataclass
class WallQuery:
    panel: str
    expr: str
    instant: bool
    source: str


def _instant_flags() -> dict[tuple[str, str], bool]:
    """(panel title, raw expr) -> instant, from the generated wall dashboard."""
    import dashboards  # noqa: PLC0415
    model = dashboards.load(WALL_UID)
    flags: dict[tuple[str, str], bool] = {}

    def walk(panels):
        for p in panels or []:
            for t in p.get("targets") or []:
                if "expr" in t:
                    flags[(p.get("title", ""), t["expr"])] = bool(t.get("instant")) and not t.get("range")
            walk(p.get("panels"))
    walk(model.get("panels"))
    return flags


def _may_be_empty() -> frozenset:
    try:
        from dashboards.queries import MAY_BE_EMPTY  # noqa: PLC0415
        return frozenset(MAY_BE_EMPTY)
    except Exception:  # noqa: BLE001 - optional
        return frozenset()


def _find_all_queries():
    import importlib  # noqa: PLC0415
    for mod in ("dashboards.queries", "dashboards", "dashboards.panels"):
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        fn = getattr(m, "all_queries", None)
        if callable(fn):
            return fn, mod
    return None, None


def wall_queries(range_s: int, notes: list[str]) -> list[WallQuery]:
    """Every wall query with Grafana's variables substituted for a dashboard over `range_s`."""
    variables = grafana_variables(range_s, RESOLUTION)
    try:
        flags = _instant_flags()
    except Exception as exc:  # the dashboards package is optional to this benchmark
        flags = {}
        notes.append(f"dashboards.load({WALL_UID!r}) failed ({type(exc).__name__}: {exc}); all queries as range")
    fn, mod = _find_all_queries()
    if fn is not None:
        # The other dashboards' variables as Grafana's "All"; the wall itself has none.
        given = {**variables, **{name: ".*" for name in ("endpoint", "variant", "region", "instance", "gpu")}}
        queries = []
        for _ in range(20):
            try:
                queries = fn(dict(given))
                break
            except KeyError as exc:  # a variable this benchmark does not know yet: use "All"
                missing = re.search(r"\$(\w+)", str(exc))
                if not missing or missing.group(1) in given:
                    notes.append(f"{mod}.all_queries failed: KeyError: {exc}")
                    break
                given[missing.group(1)] = ".*"
            except Exception as exc:  # noqa: BLE001 - fall back to the dashboard model, and say so
                notes.append(f"{mod}.all_queries failed: {type(exc).__name__}: {exc}")
                break
        out = []
        for uid, title, expr in queries:
            if uid != WALL_UID:
                continue
            instant = next((v for (t, e), v in flags.items() if t == title and substitute(e, variables) == expr),
                           False)
            out.append(WallQuery(title, expr, instant, f"{mod}.all_queries"))
        if out:
            return out
        notes.append(f"{mod}.all_queries returned no {WALL_UID} query; using the dashboard model")
    if flags:
        return [WallQuery(t, substitute(e, variables), inst, "dashboards.load") for (t, e), inst in flags.items()]
    notes.append("dashboards package not available: timing the built-in copy of the wall's queries")
    return [WallQuery(t, substitute(e, variables), inst, "built-in") for t, e, inst in FALLBACK_WALL]


# --------------------------------------------------------------------------- timing

@dataclass
class Timing:
    times_ms: list[float] = field(default_factory=list)
    error: str | None = None
    series: int = 0
    points: int = 0
    samples: int | None = None  # totalQueryableSamples (stats=all), from one extra untimed run

    def p(self, q: float) -> float | None:
        if not self.times_ms:
            return None
        s = sorted(self.times_ms)
        return s[max(0, math.ceil(q * len(s)) - 1)]


class Client:
    """Keep-alive HTTP client, POSTing form-encoded queries as Grafana's Prometheus datasource does."""

    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, params: dict) -> tuple[float, int, bytes]:
        body = urllib.parse.urlencode(params)
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=QUERY_TIMEOUT + 10)
            try:
                t0 = time.perf_counter()
                self.conn.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})
                resp = self.conn.getresponse()
                data = resp.read()
                return (time.perf_counter() - t0) * 1000, resp.status, data
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def time_query(client: Client, expr: str, instant: bool, now: int, range_s: int, reps: int) -> Timing:
    if instant:
        path, params = "/api/v1/query", {"query": expr, "time": str(now), "timeout": f"{QUERY_TIMEOUT:.0f}s"}
    else:
        step = grafana_interval(range_s)
        start = (now - range_s) // step * step
        end = now // step * step
        path = "/api/v1/query_range"
        params = {"query": expr, "start": str(start), "end": str(end), "step": str(step),
                  "timeout": f"{QUERY_TIMEOUT:.0f}s"}
    t = Timing()
    for n in range(reps + 1):  # the first run warms the page cache and is not counted
        try:
            ms, status, data = client.post(path, params)
        except OSError as exc:
            t.error = f"{type(exc).__name__}: {exc}"
            return t
        try:
            doc = json.loads(data)
        except ValueError:
            doc = {"status": "error", "error": data[:300].decode(errors="replace")}
        if status != 200 or doc.get("status") != "success":
            t.error = f"HTTP {status}: {doc.get('errorType', '')} {doc.get('error', '')}".strip()
            return t
        result = doc["data"]["result"]
        if doc["data"]["resultType"] == "matrix":
            t.series, t.points = len(result), sum(len(r.get("values", ())) for r in result)
        elif doc["data"]["resultType"] == "vector":
            t.series = t.points = len(result)
        else:
            t.series = t.points = 1
        if n:
            t.times_ms.append(ms)
        if ms > 10_000 and n >= 1:  # a very slow query: a couple of runs show it well enough
            break
    try:
        _, status, data = client.post(path, {**params, "stats": "all"})
        t.samples = json.loads(data)["data"]["stats"]["samples"]["totalQueryableSamples"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return t


# --------------------------------------------------------------------------- the run

def _ms(v: float | None) -> str:
    return "-" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.1f}")


def _production_intervals() -> tuple[float, float]:
    """(global scrape_interval, evaluation_interval) of the shipped Prometheus config, in seconds."""
    scrape, evaluation = 15.0, 30.0
    try:
        import yaml  # noqa: PLC0415
        glob = (yaml.safe_load((ROOT / "provisioning/prometheus/prometheus.yml").read_text()) or {}).get("global", {})
        scrape = backfill.seconds(str(glob.get("scrape_interval", "15s"))) or scrape
        evaluation = backfill.seconds(str(glob.get("evaluation_interval", "30s"))) or evaluation
    except (OSError, ValueError, AttributeError):
        pass
    return scrape, evaluation


def _dur(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _count(n: int | None) -> str:
    if n is None:
        return "-"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def _wait_compaction(tsdb: Path, prom: Prometheus, log) -> str:
    n, overlap = backfill.blocks_overlap(tsdb)
    if not overlap:
        return f"{n} blocks, none overlapping"
    t0 = time.monotonic()
    stable = 0
    while time.monotonic() - t0 < COMPACTION_WAIT:
        if prom.proc is None or prom.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited during compaction:\n{prom.output()[-3000:]}")
        time.sleep(5)
        n, overlap = backfill.blocks_overlap(tsdb)
        busy = any(p.name.endswith((".tmp-for-creation", ".tmp-for-deletion")) for p in tsdb.iterdir())
        stable = stable + 1 if not overlap and not busy else 0
        if stable >= 2:
            return f"{n} blocks after Prometheus' own compaction ({time.monotonic() - t0:.0f} s)"
    log(f"WARNING: blocks still overlap after {COMPACTION_WAIT:.0f} s; timing anyway")
    return f"{n} blocks, some still overlapping (compaction unfinished)"


def main() -> None:
    def log(msg: str) -> None:
        print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    for binary in ("prometheus", "promtool"):
        if shutil.which(binary) is None:
            raise RuntimeError(f"{binary} not found on PATH (apt-get install -y prometheus)")
    rule_dir = Path(os.environ.get("MLSCOPE_BENCH_RULES_DIR", ROOT / "alerts"))
    rule_files = sorted(rule_dir.glob("*.rules.yml"))
    if not rule_files:
        print(f"WARNING: no {rule_dir}/*.rules.yml: recording-rule series will be missing and their panels empty")

    # SIGTERM (CI cancelling the job) must still run the clean-up below.
    old_handler = None
    if hasattr(signal, "SIGTERM"):
        def on_term(signum, frame):
            raise SystemExit(143)
        try:
            old_handler = signal.signal(signal.SIGTERM, on_term)
        except ValueError:  # not the main thread
            old_handler = None

    work = backfill.temp_dir("mlscope-bench-dash-")
    tsdb = work / "tsdb"
    tsdb.mkdir()
    prom: Prometheus | None = None
    try:
        notes: list[str] = []  # before the long part, so a broken dashboards package shows at once
        per_range = {label: wall_queries(range_s, notes) for label, range_s in RANGES}
        now = int(time.time()) // RESOLUTION * RESOLUTION
        start = now - DAYS * 86400
        version = backfill.run(["prometheus", "--version"], timeout=30).stdout.splitlines()[0]
        log(f"{version}; history {DAYS} d at {_dur(RESOLUTION)} resolution, {len(rule_files)} rule files")
        hist = backfill.write_history(tsdb, work, start, now + 1, RESOLUTION, log=log)
        rules = backfill.backfill_rules(tsdb, work, rule_files, start, now, EVAL_INTERVAL, MIN_RANGE, LOOKBACK,
                                        log=log) if rule_files else {"rules": 0, "levels": 0, "errors": [],
                                                                    "widened": [], "seconds": 0}
        prom = Prometheus(tsdb, work, rule_files, lookback=LOOKBACK, name="prometheus-bench")
        prom.start()
        layout = _wait_compaction(tsdb, prom, log)
        log(f"Prometheus ready: {layout}")

        client = Client(prom.port)
        rows = []  # (label, instant, {range: Timing}, widened)
        n_q = len(per_range[RANGES[0][0]])
        for idx in range(n_q):
            timings = {}
            widened = False
            q0 = per_range[RANGES[0][0]][idx]
            for label, range_s in RANGES:
                q = per_range[label][idx]
                expr = backfill.widen_ranges(q.expr, MIN_RANGE)
                widened |= expr != q.expr
                timings[label] = time_query(client, expr, q.instant, now, range_s, REPS)
            rows.append((q0, timings, widened))
        raw_rows = []
        for title, rule_expr, raw_expr in RAW_COMPARISONS:
            pair = {}
            for kind, expr, reps in (("rule", rule_expr, REPS), ("raw", raw_expr, RAW_REPS)):
                pair[kind] = {label: time_query(client, expr, False, now, range_s, reps) for label, range_s in RANGES}
            raw_rows.append((title, rule_expr, raw_expr, pair))
        client.close()
        prom.stop()
        prom = None

        # ------------------------------------------------------------------ report
        src = rows[0][0].source if rows else "-"
        steps = ", ".join(f"{label}: step {grafana_interval(r)} s" for label, r in RANGES)
        print()
        print(f"Dashboard {WALL_UID}: {len(rows)} queries (from {src}); {REPS} timed runs each after one warm-up; "
              f"client-side ms (POST, keep-alive), p95 = nearest rank")
        print(f"History: {DAYS} d x {hist['series']:,} series at {_dur(RESOLUTION)} resolution "
              f"({hist['samples']:,} samples); {rules['rules']} recording rules backfilled in {rules['levels']} "
              f"levels at {_dur(EVAL_INTERVAL)} eval interval; {layout}")
        print(f"Grafana steps: {steps} (range/1000, Grafana's rounding); 'now' = end of history; "
              f"lookback-delta {LOOKBACK}; load average {os.getloadavg()[0]:.2f}")
        scrape_s, eval_s = _production_intervals()
        print(f"'points' = samples the 30 d query selects (Prometheus stats=all). Density: raw series here have one "
              f"sample per {_dur(RESOLUTION)}, rule series one per {_dur(EVAL_INTERVAL)}; the shipped "
              f"Prometheus scrapes every {scrape_s:g} s and evaluates rules every {eval_s:g} s, so it decodes up to "
              f"{RESOLUTION / scrape_s:.0f}x (raw) and {EVAL_INTERVAL / eval_s:.0f}x (rules) more samples per "
              f"30 d query than here.")
        hdr = f"{'panel':<44} {'query':<7} {'series':>6} {'points':>7} {SHORT + ' p50':>8} {SHORT + ' p95':>8} {LONG + ' p50':>8} {LONG + ' p95':>8}  verdict"
        print(hdr)
        print("-" * len(hdr))
        misses, errors, empties = [], [], []
        counts: dict[str, int] = {}
        for q, _, _ in rows:
            counts[q.panel] = counts.get(q.panel, 0) + 1
        seen: dict[str, int] = {}
        slowest = (None, -1.0)
        for q, timings, widened in rows:
            seen[q.panel] = seen.get(q.panel, 0) + 1
            name = q.panel if counts[q.panel] == 1 else f"{q.panel} [{chr(64 + seen[q.panel])}]"
            name = name if len(name) <= 44 else name[:43] + "…"
            t24, t30 = timings[SHORT], timings[LONG]
            err = t24.error or t30.error
            if err:
                verdict = "ERROR"
                errors.append((name, q.expr, err))
            elif t30.p(0.95) is not None and t30.p(0.95) > TARGET_MS:
                verdict = f"MISS (> {TARGET_MS:.0f} ms)"
                misses.append((name, q.expr, t30.p(0.95)))
            elif t24.p(0.95) is not None and t24.p(0.95) > TARGET_MS:
                verdict = f"miss over 24h only (> {TARGET_MS:.0f} ms)"
            else:
                verdict = "ok"
            if not err and t30.series == 0:
                by_design = (WALL_UID, q.panel) in _may_be_empty()
                verdict += ", empty (by design)" if by_design else ", EMPTY"
                if not by_design:
                    empties.append((name, q.expr))
            if widened:
                verdict += ", windows widened"
            for t in (t24, t30):
                if t.p(0.95) is not None and t.p(0.95) > slowest[1]:
                    slowest = (name, t.p(0.95))
            print(f"{name:<44} {'instant' if q.instant else 'range':<7} {t30.series:>6} {_count(t30.samples):>7} "
                  f"{_ms(t24.p(0.5)):>8} "
                  f"{_ms(t24.p(0.95)):>8} {_ms(t30.p(0.5)):>8} {_ms(t30.p(0.95)):>8}  {verdict}")
        print("-" * len(hdr))
        if slowest[0]:
            print(f"slowest wall query: {slowest[0]} ({slowest[1]:.1f} ms p95)")
        print()
        print("What the recording rules buy (same panel, range query as the wall issues it):")
        for title, rule_expr, raw_expr, pair in raw_rows:
            for kind, expr in (("rule", rule_expr), ("raw", raw_expr)):
                t24, t30 = pair[kind][SHORT], pair[kind][LONG]
                err = t24.error or t30.error
                print(f"  {title + ' - ' + kind:<50} {_count(t30.samples):>6} points  24h p50 {_ms(t24.p(0.5)):>7} ms   "
                      f"{LONG} p50 {_ms(t30.p(0.5)):>7} ms" + (f"   ERROR: {err}" if err else ""))
                if err:
                    errors.append((f"{title} - {kind}", expr, err))
            r30, w30 = pair["rule"][LONG].p(0.5), pair["raw"][LONG].p(0.5)
            r24, w24 = pair["rule"][SHORT].p(0.5), pair["raw"][SHORT].p(0.5)
            if r30 and w30 and r24 and w24:
                print(f"  {'':<50} raw / rule: {w24 / r24:.0f}x over {SHORT}, {w30 / r30:.0f}x over {LONG}")
            print(f"    raw: {raw_expr}")
        print()
        for note in dict.fromkeys(notes):
            print(f"note: {note}")
        if rules["widened"]:
            print(f"note: backfill widened range windows under {_dur(MIN_RANGE)} (one sample per "
                  f"{_dur(RESOLUTION)}) in {len(rules['widened'])} rules: {', '.join(rules['widened'])}")
        for e in rules["errors"]:
            print(f"RULE BACKFILL ERROR: {e}")
        for name, expr, err in errors:
            print(f"QUERY ERROR: {name}: {err}\n    expr: {expr}")
        for name, expr in empties:
            print(f"EMPTY RESULT over 30d (series or rule missing?): {name}\n    expr: {expr}")
        if misses:
            print(f"Wall panels over {TARGET_MS:.0f} ms (p95, 30 d) - candidates for a recording rule:")
            for name, expr, ms in misses:
                print(f"  {name}: {ms:.0f} ms\n    expr: {expr}")
        else:
            print(f"Every wall query is under {TARGET_MS:.0f} ms (p95) over 30 d." if not errors else "")
        if errors or rules["errors"]:
            raise RuntimeError(f"{len(errors)} query errors, {len(rules['errors'])} rule backfill errors (above)")
    finally:
        if prom is not None:
            prom.stop()
        shutil.rmtree(work, ignore_errors=True)
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)


if __name__ == "__main__":
    main()
