"""PromQL that more than one dashboard shows: per-endpoint SLO signals, the endpoint status and the
health state built from them. Every expression here is tested against known series with promtool
(tests/test_dashboard_promql.py).

Endpoint-level recording rules are `by (account, region, endpoint)` (alerts/sagemaker.rules.yml); raw
series are reduced to the same labels first, so joins never meet the scrape's `job`/`instance`. Raw
series that are summed or shown one line each go through `one_replica` first: two replicas of one
exporter shard (docs/scale.md) then count once.
`sel` narrows every selector, e.g. 'region=~"$region",endpoint=~"$endpoint"'.
"""

from __future__ import annotations

from mlscope.replicas import one_replica

EP = "account, region, endpoint"
MONTH_SECONDS = 30 * 86400          # the SLO window: a burn rate of 1 spends the budget in exactly this time

# Burn rate = error ratio / error budget (1 − objective). 1 spends the 30-day budget in 30 days;
# the paging tiers are 14.4 (1h) and 6 (6h) (Google SRE workbook).
BURN_WARN, BURN_PAGE = 1, 14.4
# Latency: p99 ÷ objective. Orange from 80 % of the objective, red at the objective.
LATENCY_WARN, LATENCY_BAD = 0.8, 1
# CloudWatch data age: a few minutes is the settle delay; 15 min means polls are failing.
STALE_WARN, STALE_BAD = 900, 1800

OK, AT_RISK, FAILING = 0, 1, 2
HEALTH_TEXT = {str(OK): ("OK", "green"), str(AT_RISK): ("AT RISK", "orange"), str(FAILING): ("FAILING", "red")}


def _sel(metric: str, *matchers: str) -> str:
    return f"{metric}{{{','.join(m for m in matchers if m)}}}"


def burn_rate(window: str, sel: str = "", budget: str = "error") -> str:
    """How fast the endpoint spends its error (or latency) budget over `window` (15m, 30m, 1h, 2h, 6h,
    1d, 3d): the recorded burn rate."""
    return _sel(f"endpoint:sagemaker_{budget}_budget_burn_rate:{window}", sel)


def latency_ratio(quantile: str = "99", sel: str = "") -> str:
    """The slowest variant's p95 or p99 model latency ÷ the endpoint's latency objective."""
    return (f"{_sel(f'endpoint:sagemaker_model_latency_seconds:p{quantile}_max', sel)} "
            f"/ on ({EP}) {_sel('endpoint:sagemaker_latency_objective_seconds:value', sel)}")


def data_age(sel: str = "") -> str:
    """Seconds since the stalest variant's newest settled CloudWatch period."""
    return f"time() - min by ({EP}) ({_sel('sagemaker_data_timestamp_seconds', sel)})"


def budget_left(sel: str = "") -> str:
    return _sel("endpoint:sagemaker_error_budget_remaining:ratio_30d", sel)


def budget_exhausted_in(sel: str = "") -> str:
    """Seconds until the 30-day error budget is gone at the last day's burn rate: budget left × 30 d
    ÷ burn rate. 0 when already spent; no value when nothing is burning."""
    return f"clamp_min({budget_left(sel)}, 0) * {MONTH_SECONDS} / on ({EP}) ({burn_rate('1d', sel)} > 0)"


IN_SERVICE, CHANGING, NO_INSTANCE, NOT_SERVING = 1, 2, 3, 4
IN_SERVICE_MATCHER = 'status="InService"'
STATUS_TEXT = {str(IN_SERVICE): ("In service", "green"), str(CHANGING): ("Serving, changing", "blue"),
               str(NO_INSTANCE): ("No running instance", "red"), str(NOT_SERVING): ("Not serving", "red")}


def status(sel: str = "") -> str:
    """One value per endpoint for the status timeline (STATUS_TEXT), as availability counts it:
    InService with a running instance; another serving status (Updating, RollingBack, ... from
    mlscope:config:sagemaker_serving_status) with a running instance; a serving status but no running
    instance in any variant; a status that does not serve (Creating, OutOfService, Failed, Deleting).
    The first two are up, the last two down."""
    info = _sel("sagemaker_endpoint_info", sel)
    in_service = f"max by ({EP}) ({_sel('sagemaker_endpoint_info', IN_SERVICE_MATCHER, sel)})"
    serving = f"max by ({EP}) ({info} * on (status) group_left () mlscope:config:sagemaker_serving_status)"
    no_instance = f"(sum by ({EP}) ({one_replica(_sel('sagemaker_variant_instances', sel))}) == 0)"
    return (f"({in_service} unless on ({EP}) {no_instance}) * {IN_SERVICE}"
            f" or on ({EP}) ({serving} unless on ({EP}) {no_instance}) * {CHANGING}"
            f" or on ({EP}) {serving} * {NO_INSTANCE}"
            f" or on ({EP}) max by ({EP}) ({info}) * {NOT_SERVING}")


PAGES_UNKNOWN = -1   # the banner's value when no Alertmanager counts are scraped


def pages(state: str) -> str:
    """Alerts with severity=page that Alertmanager holds in `state` (notifying, silenced, inhibited), as
    `mlscope alertmanager-exporter` counts them; the largest count of any Alertmanager polled, since the
    members of an HA cluster hold the same alerts."""
    return f'max(sum by (job, instance) (mlscope_alertmanager_alerts{{severity="page",state="{state}"}}))'


def pages_notifying() -> str:
    """Pages Alertmanager sends on now, silences and inhibitions applied; PAGES_UNKNOWN when the exporter
    is down or cannot reach Alertmanager (it then serves no counts), never a false 0."""
    return f"{pages('notifying')} or vector({PAGES_UNKNOWN})"


def state(expr: str, warn: float, bad: float) -> str:
    return f"(({expr}) >= bool {warn}) + (({expr}) >= bool {bad})"


def health(sel: str = "") -> str:
    """0 OK, 1 at risk, 2 failing: the worst of the error-budget burn rate (1h), p99 ÷ objective, data
    age and status (serving while changing: at risk; down: failing). A signal without series (no
    latency quantile yet, say) does not count. alerts/sagemaker.rules.yml records it, unnarrowed, as
    endpoint:sagemaker_health:state (health_state): panels read that, this is its one definition."""
    signals = {
        "burn": state(burn_rate("1h", sel), BURN_WARN, BURN_PAGE),
        "latency": state(latency_ratio("99", sel), LATENCY_WARN, LATENCY_BAD),
        "data": state(data_age(sel), STALE_WARN, STALE_BAD),
        "status": state(status(sel), CHANGING, NO_INSTANCE),
    }
    parts = " or ".join(f'label_replace({expr}, "signal", "{name}", "", "")' for name, expr in signals.items())
    return f"max by ({EP}) ({parts})"


def health_state(sel: str = "") -> str:
    """health(), recorded: one series read per endpoint (the full expression took ~1 s at 1,000 endpoints)."""
    return _sel("endpoint:sagemaker_health:state", sel)


__all__ = ["one_replica", "EP", "MONTH_SECONDS", "BURN_WARN", "BURN_PAGE", "LATENCY_WARN", "LATENCY_BAD", "STALE_WARN",
           "STALE_BAD", "STATUS_TEXT", "HEALTH_TEXT", "burn_rate", "latency_ratio", "data_age",
           "budget_left", "budget_exhausted_in", "status", "health", "health_state", "pages", "pages_notifying", "PAGES_UNKNOWN",
           "IN_SERVICE", "CHANGING", "NO_INSTANCE",
           "NOT_SERVING"]
